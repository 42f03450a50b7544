"""An embedded SQLite index of collaborative objects, inside the git directory.

It is an accelerator only: Git refs and commits are the truth, so deleting the file loses
nothing and it rebuilds on demand. It keeps, per type, the object ids and the keys each root
declares (``CobType.index_keys``, e.g. a job's commit), and per object the last evaluation
(state, the tips it was built from, the accepted and rejected change ids, the heads), sealed
and also kept by tips across rebuilds (:mod:`cob.statecache`).

Staying exact without trusting anyone to tell us about writes:

- *Which objects exist* is refreshed when the type's ref stamp (``RefReader.stamp``: stats of
  packed-refs and of each namespace's type directory) differs from the one stored with the
  list. A stamp whose newest mtime is too recent to be trusted (the filesystem clock is
  coarse, so a later write could leave it unchanged — git's "racy" problem) is never stored,
  so the next query looks again. Refs moved by plain ``git fetch``/``update-ref``/``pack-refs``
  are therefore noticed.
- *An object's state* is always checked against its refs as they are now (``Store.load``): a
  stored evaluation is used as is only when its tips equal the current ones; otherwise, for
  commutative types, only the changes new since are folded onto it (``evaluate(base=...)``,
  which falls back to a full fold when the old history is no longer all reachable).

Several processes may share the file: SQLite's WAL mode and a busy timeout serialise writers,
every write is one transaction, and the object list is diffed against the database *inside*
the writing transaction, with the stamp stored in the same transaction as the list it
describes. A damaged file, or one deleted or replaced while open, is noticed and rebuilt.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from . import keptstates, layout, listing, objectlist, ownwrites, statecache
from .change import Codec
from .errors import CacheBusyError
from .evaluate import Evaluation
from .reader import RefReader
from .verified import repository_secret

SCHEMA = 6  # 5: per-node index refs; tips of every object kept here. 6: listing rows
FILENAME = "index.sqlite3"  # <gitdir>/<layout prefix>-index.sqlite3 (cob.layout)
# How long one query waits for a cache another process holds locked before the store reads
# from Git instead (the cache is an accelerator); then it leaves the cache alone for BUSY_BACKOFF_S.
BUSY_TIMEOUT_S = 2.0
BUSY_BACKOFF_S = 10.0
# A ref stamp is trusted only once its newest mtime is this far in the past: a write in the same
# tick of the filesystem's coarse clock would not change it. Filesystems that store whole
# seconds (FAT, some network mounts) get the wider window.
RACY_NS = 50_000_000
RACY_COARSE_NS = 2_000_000_000

T = TypeVar("T")

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS roots (
    typename TEXT NOT NULL, id TEXT NOT NULL, valid INTEGER NOT NULL, tipkey BLOB,
    PRIMARY KEY (typename, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS keys (
    typename TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, id TEXT NOT NULL,
    PRIMARY KEY (typename, key, value, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS evaluations (
    typename TEXT NOT NULL, id TEXT NOT NULL, data BLOB NOT NULL, tipkey BLOB, listing BLOB,
    PRIMARY KEY (typename, id));
CREATE TABLE IF NOT EXISTS tips (
    typename TEXT NOT NULL, id TEXT NOT NULL, nid TEXT NOT NULL, tip TEXT NOT NULL,
    PRIMARY KEY (typename, id, nid)) WITHOUT ROWID;
"""
_TABLES = ("roots", "keys", "evaluations", "tips", "meta")  # dropped on a schema change ("states" is not)


def default_path(gitdir: str) -> str:
    return os.path.join(gitdir, layout.current().file(FILENAME))


def is_racy(newest_mtime_ns: int, now_ns: int | None = None) -> bool:
    """Could a ref write happen now and leave a stamp with this newest mtime unchanged?"""
    if newest_mtime_ns <= 0:
        return False
    now = time.time_ns() if now_ns is None else now_ns
    window = RACY_COARSE_NS if newest_mtime_ns % 1_000_000_000 == 0 else RACY_NS
    return now - newest_mtime_ns < window


class Cache:
    """The index of one repository. Cheap to create; opens its database lazily."""

    def __init__(self, gitdir: str, path: str | None = None, secret: bytes | None = None) -> None:
        self.path = path or default_path(gitdir)
        self.states_path = keptstates.states_path(gitdir) if path is None else f"{path}-states"
        # Seals every stored evaluation (cob.statecache): an entry nobody with it wrote is unused.
        self.secret = secret or repository_secret(gitdir) or os.urandom(32)
        self._db: sqlite3.Connection | None = None
        self._ino: int | None = None
        self._decoders: dict[str, msgspec.msgpack.Decoder[Any]] = {}
        self.loads = 0  # evaluations stored (computed, not served from the cache)
        self.refreshes = 0  # rescans of the object list (for tests and benches)
        self.resets = 0  # times a damaged, deleted or replaced file was started afresh
        self.in_memory = False  # True once the file could not be used (see _fallback)
        self.busy_until = 0.0  # monotonic time before which the cache is not asked (was busy)
        self.busy = 0  # times a query gave up on a locked cache (for tests)
        self.own = ownwrites.Pending(self._record_own)  # own writes not written yet

    # -- connection ---------------------------------------------------------------------
    def _connect(self, memory: bool = False) -> sqlite3.Connection:
        if not memory and not os.path.exists(self.path):
            # A WAL or shared-memory file without its database belongs to a deleted index;
            # SQLite would replay it onto the new file.
            keptstates.unlink_sidecars(self.path)
        target = ":memory:" if memory else self.path
        db = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            if _schema(db) != SCHEMA:
                db.execute("BEGIN IMMEDIATE")
                try:
                    if _schema(db) != SCHEMA:  # re-checked under the write lock
                        for table in _TABLES:
                            db.execute(f"DROP TABLE IF EXISTS {table}")
                        for stmt in _DDL.split(";"):
                            if stmt.strip():
                                db.execute(stmt)
                        db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA,))
                    db.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                    raise
            if db.execute("SELECT 1 FROM main.sqlite_master WHERE name='states'").fetchone():
                db.execute("DROP TABLE main.states")  # where an older version kept them
            keptstates.attach(db, ":memory:" if memory else self.states_path)
            # A database that opens but is damaged inside fails here, not in the middle of a query.
            db.execute("SELECT id FROM roots LIMIT 1").fetchone()
        except BaseException:
            db.close()
            raise
        try:
            self._ino = None if memory else os.stat(self.path).st_ino
        except FileNotFoundError:
            self._ino = None
        return db

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is not None and not self.in_memory:
            try:
                same = os.stat(self.path).st_ino == self._ino
            except FileNotFoundError:
                same = False
            if not same:  # deleted or replaced under us: start on the file that is there now
                self.close()
                self.resets += 1
        if self._db is None:
            try:
                self._db = self._connect()
            except sqlite3.DatabaseError as e:
                if keptstates.is_busy(e):
                    raise  # _run retries it
                # A corrupt index is just deleted: everything in it can be rebuilt from Git.
                self.remove_files()
                self.resets += 1
                try:
                    self._db = self._connect()
                except sqlite3.Error:
                    self._db = self._fallback()
        return self._db

    def _fallback(self) -> sqlite3.Connection:
        """An index that cannot be kept on disk (a read-only git directory, a full disk) is kept
        in memory for this process: slower across processes, still exact."""
        self.close()
        self.in_memory = True
        return self._connect(memory=True)

    def _rollback(self) -> None:
        """End a transaction a busy error interrupted, so the retry starts clean."""
        if self._db is not None and self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def _busy(self) -> CacheBusyError:
        """Give up on a locked cache for :data:`BUSY_BACKOFF_S` (the caller reads from Git)."""
        self.busy += 1
        self.busy_until = time.monotonic() + BUSY_BACKOFF_S
        return CacheBusyError(
            f"the job index {self.path} is locked by another process (waited {BUSY_TIMEOUT_S:g} s)"
        )

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the database; a damaged file is thrown away and ``fn`` run once more.

        SQLite answers "busy" at once, without its busy handler, in a few cases (another
        process switching a new file to WAL, a snapshot that cannot be upgraded): those are
        retried here, with a short random pause, until :data:`BUSY_TIMEOUT_S` has passed; then
        :class:`~cob.errors.CacheBusyError` (and at once while a recent one's backoff lasts).
        """
        if time.monotonic() < self.busy_until:
            raise CacheBusyError(f"the job index {self.path} is locked by another process")
        if self.own.runs:  # this process's own writes first, so that it sees them
            self.own.flush()
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                return fn(self.db)
            except sqlite3.DatabaseError as e:
                if not keptstates.is_busy(e):
                    break
                self._rollback()
                if time.monotonic() >= deadline:
                    raise self._busy() from None
                time.sleep(random.uniform(0.005, 0.05))
        self.remove_files()
        self.resets += 1
        try:
            return fn(self.db)
        except sqlite3.DatabaseError as e:
            if keptstates.is_busy(e):
                raise self._busy() from None
        self._db = self._fallback()
        return fn(self._db)

    def remove_files(self) -> None:
        """Delete the index (and its WAL files); the next use creates it afresh."""
        self.close()
        keptstates.unlink_all(self.path)

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
            self._ino = None

    def clear(self) -> None:
        """Forget everything: the next query rebuilds the index from the refs."""

        def do(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            for table in ("roots", "keys", "evaluations", "tips"):
                db.execute(f"DELETE FROM {table}")
            db.execute("DELETE FROM meta WHERE key != 'schema'")
            db.execute("COMMIT")

        self._run(do)

    # -- the object list, tips and keys --------------------------------------------------
    def refresh(
        self,
        codec: Codec,
        refs: RefReader,
        then: Callable[[sqlite3.Connection], T] | None = None,
    ) -> T | None:
        """Bring the objects, their tips and keys up to date with the refs, if they moved.

        The stored stamp names each node's index tip, so a refresh reads only the index
        subtrees that differ from those tips (:func:`cob.sigrefs.diff`): its cost follows what
        moved. Legacy per-object refs that appear, move or go make it a full rescan.

        ``then(db)`` runs in the *same* transaction as the up-to-date check (or the rescan), so
        its answer is never from a snapshot another process changed in between (a rebuild, a
        concurrent rescan); returns what it returns.
        """
        typename = codec.cobtype.typename
        token, newest = refs.stamp(typename)
        racy = is_racy(newest)
        if not racy:
            current, answer = self._run(lambda db: _if_current(db, typename, token, then))
            if current:
                return answer
        self.refreshes += 1

        def write(db: sqlite3.Connection) -> T | None:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT value FROM meta WHERE key=?", ("fp:" + typename,)).fetchone()
                if row is None or row[0] != token:
                    objectlist.sync_tips(db, codec, refs, row[0] if row else None, token)
                if racy:
                    db.execute("DELETE FROM meta WHERE key=?", ("fp:" + typename,))
                else:
                    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", ("fp:" + typename, token))
                answer = then(db) if then is not None else None
                db.execute("COMMIT")
                return answer
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise

        return self._run(write)

    def own_write(
        self, codec: Codec, refs: RefReader, nid: str, moved: Any, object_id: str, tip: str
    ) -> None:
        """Record a write of our own (``moved``: our index ref's :class:`~cob.sigrefs.Moved`)
        without reading any ref: when the index was current just before it, it is current
        after, and the next query need not refresh at all. Kept in memory and written in one
        transaction with the writes that follow it (:mod:`cob.ownwrites`): until then the
        stored stamp differs from the refs, so another process reads the difference itself."""
        self.own.add(codec, refs, nid, moved.old, moved.new, object_id, tip)

    def _record_own(self, run: ownwrites.Run) -> None:
        """One transaction for a run of own writes, if the index was current before it."""
        typename = run.codec.cobtype.typename

        def do(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT value FROM meta WHERE key=?", ("fp:" + typename,)).fetchone()
                parsed = objectlist.parse_token(row[0]) if row else None
                if parsed is None or parsed[0].get(run.nid) != run.old:
                    db.execute("COMMIT")  # not current before: the next refresh diffs
                    return
                heads = {**parsed[0], run.nid: run.new}
                for object_id, tip in run.tips.items():
                    objectlist.set_tip(db, run.codec, run.refs, object_id, run.nid, tip)
                token = objectlist.token(heads, parsed[1])  # legacy refs: as they were
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", ("fp:" + typename, token))
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise

        with contextlib.suppress(CacheBusyError):  # left behind: the next query diffs
            self._run(do)

    def tips(self, codec: Codec, refs: RefReader, ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """{object id: {nid: tip}} of ``ids``, as the refs are now (one refresh)."""
        typename = codec.cobtype.typename
        wanted = list(ids)

        def read(db: sqlite3.Connection) -> dict[str, dict[str, str]]:
            out: dict[str, dict[str, str]] = {}
            for i in range(0, len(wanted), 500):  # a batch of a listing: its rows, not the table
                chunk = wanted[i : i + 500]
                sql = (
                    f"SELECT id, nid, tip FROM tips WHERE typename=? AND id IN ({','.join('?' * len(chunk))})"
                )
                for object_id, nid, tip in db.execute(sql, (typename, *chunk)):
                    out.setdefault(object_id, {})[nid] = tip
            return out

        return self.refresh(codec, refs, read) or {}

    def list_ids(self, codec: Codec, refs: RefReader) -> list[str]:
        """Every object id of the type, as the refs are now."""
        sql = "SELECT id FROM roots WHERE typename=? ORDER BY id"
        typename = codec.cobtype.typename
        out = self.refresh(codec, refs, lambda db: [i for (i,) in db.execute(sql, (typename,))])
        return out or []

    def find(self, codec: Codec, refs: RefReader, key: str, value: str) -> list[str]:
        """Object ids whose root declares (key, value), as the refs are now."""
        return self.find_all(codec, refs, [(key, value)])

    def find_all(self, codec: Codec, refs: RefReader, pairs: Sequence[tuple[str, str]]) -> list[str]:
        """Object ids whose root declares every (key, value) of ``pairs`` (one refresh)."""
        one = "SELECT id FROM keys WHERE typename=? AND key=? AND value=?"
        sql = " INTERSECT ".join([one] * len(pairs)) + " ORDER BY id"
        args = [a for key, value in pairs for a in (codec.cobtype.typename, key, value)]
        return self.refresh(codec, refs, lambda db: [i for (i,) in db.execute(sql, args)]) or []

    def find_prefix(self, codec: Codec, refs: RefReader, prefix: str) -> list[str]:
        """Object ids starting with ``prefix``, as the refs are now."""
        sql = "SELECT id FROM roots WHERE typename=? AND id >= ? AND id < ? ORDER BY id"
        args = (codec.cobtype.typename, prefix, prefix + "g")
        return self.refresh(codec, refs, lambda db: [i for (i,) in db.execute(sql, args)]) or []

    def listing_rows(
        self, codec: Codec, refs: RefReader, ids: Sequence[str] | None
    ) -> tuple[list[tuple[str, Any]], list[str]]:
        """(current listing rows, ids of objects without one), as the refs are now: one refresh
        and one query (:func:`cob.listing.read_rows`)."""
        secret, decoders = self.secret, self._decoders
        found = self.refresh(codec, refs, lambda db: listing.read_rows(db, codec, secret, decoders, ids))
        return found or ([], [])

    def count(self, codec: Codec) -> int:
        """How many objects of the type the index last listed (an estimate: not refreshed)."""
        sql = "SELECT count(*) FROM roots WHERE typename=?"
        row = self._run(lambda db: db.execute(sql, (codec.cobtype.typename,)).fetchone())
        return int(row[0]) if row else 0

    # -- evaluations ------------------------------------------------------------------
    def get(self, codec: Codec, object_id: str) -> Evaluation[Any] | None:
        """The last evaluation stored for ``object_id`` (any tips), or None."""
        cobtype = codec.cobtype
        if cobtype.state_type is None:
            return None
        sql = "SELECT data FROM evaluations WHERE typename=? AND id=?"
        row = self._run(lambda db: db.execute(sql, (cobtype.typename, object_id)).fetchone())
        data = statecache.unseal(self.secret, object_id, row[0]) if row is not None else None
        return None if data is None else statecache.decode(codec, object_id, data, self._decoders)

    def state_at(self, codec: Codec, object_id: str, tips: Mapping[str, str]) -> Evaluation[Any] | None:
        """The evaluation of ``object_id`` at exactly ``tips`` under the type's current rules,
        kept across rebuilds (:mod:`cob.statecache`); None when none is stored."""
        cobtype = codec.cobtype
        if cobtype.state_type is None:
            return None
        key = statecache.state_key(cobtype, object_id, tips)
        sql = "SELECT data FROM kept.states WHERE typename=? AND id=? AND key=?"
        row = self._run(lambda db: db.execute(sql, (cobtype.typename, object_id, key)).fetchone())
        data = statecache.unseal(self.secret, key, row[0]) if row is not None else None
        ev = None if data is None else statecache.decode(codec, object_id, data, self._decoders)
        return ev if ev is not None and ev.tips == tips else None

    def folded_many(self, codec: Codec, tips: Mapping[str, Mapping[str, str]]) -> dict[str, Evaluation[Any]]:
        """What :meth:`get`, then :meth:`state_at`, give a batch of objects (``{id: tips as the
        refs are now}``) at exactly those tips, in a few queries (:func:`keptstates.read_many`)."""
        cobtype = codec.cobtype
        if cobtype.state_type is None or not tips:
            return {}
        typename, secret = cobtype.typename, self.secret
        out, restored = self._run(lambda db: keptstates.read_many(db, codec, secret, tips, self._decoders))
        self.loads += len(restored)
        with contextlib.suppress(CacheBusyError):  # not stored: the next load restores them
            self._run(lambda db: keptstates.store_restored(db, typename, restored))
        return out

    def put(self, codec: Codec, ev: Evaluation[Any]) -> None:
        cobtype = codec.cobtype
        if cobtype.state_type is None:
            return
        data = statecache.encode(codec, ev)
        self.loads += 1
        key = statecache.state_key(cobtype, ev.object_id, ev.tips)
        sealed = statecache.seal(self.secret, ev.object_id, data)
        row = (cobtype.typename, ev.object_id, sealed, key, listing.make_row(codec, self.secret, ev, key))
        # A result that objects arriving later could change is not a function of the tips.
        state = None if ev.curable() else (*row[:2], key, statecache.seal(self.secret, key, data), row[4])

        def do(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR REPLACE INTO evaluations VALUES (?, ?, ?, ?, ?)", row)
            if state is not None:
                db.execute("INSERT OR REPLACE INTO kept.states VALUES (?, ?, ?, ?, ?)", state)
            db.execute("COMMIT")

        self._run(do)

    # -- inspection -------------------------------------------------------------------
    def disagreement(self, codec: Codec, refs: RefReader) -> str | None:
        """What the tips table says that the refs do not, when its stamp claims it is
        current (``doctor``); None when it agrees or is merely stale."""
        typename = codec.cobtype.typename
        token, _ = refs.stamp(typename)

        def read(db: sqlite3.Connection) -> dict[tuple[str, str], str] | None:
            row = db.execute("SELECT value FROM meta WHERE key=?", ("fp:" + typename,)).fetchone()
            if row is None or row[0] != token:
                return None
            rows = db.execute("SELECT id, nid, tip FROM tips WHERE typename=?", (typename,))
            return {(i, n): t for i, n, t in rows}

        stored = self._run(read)
        if stored is None:
            return None
        actual = {(r.object_id, r.nid): r.target for r in refs.refs_of_type(typename)}
        if stored == actual:
            return None
        differ = sorted(k for k in stored.keys() | actual.keys() if stored.get(k) != actual.get(k))
        shown = ", ".join(i[:12] for i, _ in differ[:5])
        return (
            f"the cache {self.path} is stamped current but {len(differ)} tip(s) differ from"
            f" the refs ({shown})"
        )

    def status(self, typename: str, refs: RefReader) -> dict[str, Any]:
        """What the index holds for one type, and whether its object list is current."""

        def read(db: sqlite3.Connection) -> dict[str, Any]:
            objects = db.execute("SELECT count(*) FROM roots WHERE typename=?", (typename,)).fetchone()[0]
            invalid = db.execute(
                "SELECT count(*) FROM roots WHERE typename=? AND NOT valid", (typename,)
            ).fetchone()[0]
            evaluated = db.execute(
                "SELECT count(*) FROM evaluations WHERE typename=?", (typename,)
            ).fetchone()[0]
            row = db.execute("SELECT value FROM meta WHERE key=?", ("fp:" + typename,)).fetchone()
            return {"objects": objects, "invalid_roots": invalid, "evaluated": evaluated, "stamp": row}

        out = self._run(read)
        token, _ = refs.stamp(typename)
        stamp = out.pop("stamp")
        out["current"] = stamp is not None and stamp[0] == token
        out["path"] = self.path
        out["bytes"] = sum(
            os.path.getsize(self.path + s) for s in ("", "-wal") if os.path.exists(self.path + s)
        )
        return out


def _if_current(
    db: sqlite3.Connection, typename: str, token: object, then: Callable[[sqlite3.Connection], T] | None
) -> tuple[bool, T | None]:
    """(True, then(db)) when the stored stamp of the object list is ``token``, in one read
    transaction; (False, None) otherwise."""
    db.execute("BEGIN")
    try:
        row = db.execute("SELECT value FROM meta WHERE key=?", ("fp:" + typename,)).fetchone()
        if row is None or row[0] != token:
            return False, None
        return True, then(db) if then is not None else None
    finally:
        db.execute("COMMIT")


def _schema(db: sqlite3.Connection) -> object:
    if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is None:
        return None
    row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    return None if row is None else row[0]
