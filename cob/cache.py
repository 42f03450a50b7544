"""An embedded SQLite index of collaborative objects, inside the git directory.

It is an accelerator only: Git refs and commits are the truth, so deleting the file loses
nothing and it rebuilds on demand. It keeps, per type, the object ids and the keys each root
declares (``CobType.index_keys``, e.g. a job's commit), and per object the last evaluation
(state, the tips it was built from, the accepted and rejected change ids). A load compares the
stored tips with the refs as they are now — so refs moved by plain ``git fetch`` are noticed —
and, for commutative types, folds only the changes that are new since.

Several processes may share it: SQLite's WAL mode and a busy timeout serialise writers, and
every write is one transaction.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable
from typing import Any

import msgspec

from .change import Codec, InvalidChange, read_change
from .evaluate import Evaluation
from .refs import RefReader

SCHEMA = 2
FILENAME = "git-jobs-index.sqlite3"

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS roots (
    typename TEXT NOT NULL, id TEXT NOT NULL, valid INTEGER NOT NULL,
    PRIMARY KEY (typename, id));
CREATE TABLE IF NOT EXISTS keys (
    typename TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, id TEXT NOT NULL,
    PRIMARY KEY (typename, key, value, id));
CREATE TABLE IF NOT EXISTS evaluations (
    typename TEXT NOT NULL, id TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (typename, id));
"""


class _Stored(msgspec.Struct, array_like=True):
    tips: dict[str, str]
    state: bytes | None
    accepted: list[bytes]
    rejected: dict[str, str]
    heads: list[str]


_stored_decoder = msgspec.msgpack.Decoder(_Stored)
_encoder = msgspec.msgpack.Encoder()


def default_path(gitdir: str) -> str:
    return os.path.join(gitdir, FILENAME)


class Cache:
    """The index of one repository. Cheap to create; opens its database lazily."""

    def __init__(self, gitdir: str, path: str | None = None) -> None:
        self.path = path or default_path(gitdir)
        self._db: sqlite3.Connection | None = None
        self._decoders: dict[str, msgspec.msgpack.Decoder[Any]] = {}
        self._fingerprints: dict[str, bytes] = {}
        self.loads = 0  # evaluations computed (not served from the cache): for tests and benches

    # -- connection ---------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_DDL)
        row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None or int(row[0]) != SCHEMA:
            with db:
                db.execute("BEGIN IMMEDIATE")
                for table in ("roots", "keys", "evaluations", "meta"):
                    db.execute(f"DELETE FROM {table}")
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA,))
        return db

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self._db = self._connect()
            except sqlite3.DatabaseError:
                # A corrupt index is just deleted: everything in it can be rebuilt from Git.
                self.remove_files()
                self._db = self._connect()
        return self._db

    def remove_files(self) -> None:
        self.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path + suffix)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._fingerprints.clear()

    def clear(self) -> None:
        """Forget everything (``git jobs cache rebuild``)."""
        db = self.db
        with db:
            db.execute("BEGIN IMMEDIATE")
            for table in ("roots", "keys", "evaluations"):
                db.execute(f"DELETE FROM {table}")
            db.execute("DELETE FROM meta WHERE key != 'schema'")
        self._fingerprints.clear()

    # -- the object list and keys --------------------------------------------------------
    def refresh(self, codec: Codec, refs: RefReader) -> None:
        """Bring the list of objects and their keys up to date with the refs, if they moved."""
        typename = codec.cobtype.typename
        fp = repr(refs.fingerprint(typename)).encode()
        if self._fingerprints.get(typename) == fp:
            return
        db = self.db
        row = db.execute("SELECT value FROM meta WHERE key=?", ("fp:" + typename,)).fetchone()
        if row is not None and row[0] == fp:
            self._fingerprints[typename] = fp
            return
        ids = {r.object_id for r in refs.refs_of_type(typename)}
        known = {i for (i,) in db.execute("SELECT id FROM roots WHERE typename=?", (typename,))}
        added = []
        for object_id in sorted(ids - known):
            try:
                root = read_change(refs.repo, codec, object_id, is_root=True)
                keys = list(codec.cobtype.index_keys(root))
                added.append((object_id, True, keys))
            except (InvalidChange, IndexError):
                added.append((object_id, False, []))
        with db:
            db.execute("BEGIN IMMEDIATE")
            for object_id, valid, keys in added:
                db.execute(
                    "INSERT OR REPLACE INTO roots VALUES (?, ?, ?)", (typename, object_id, valid)
                )
                db.executemany(
                    "INSERT OR IGNORE INTO keys VALUES (?, ?, ?, ?)",
                    [(typename, k, v, object_id) for k, v in keys],
                )
            for object_id in known - ids:
                for table in ("roots", "keys", "evaluations"):
                    db.execute(f"DELETE FROM {table} WHERE typename=? AND id=?", (typename, object_id))
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", ("fp:" + typename, fp))
        self._fingerprints[typename] = fp

    def ids(self, typename: str) -> list[str]:
        rows = self.db.execute("SELECT id FROM roots WHERE typename=? ORDER BY id", (typename,))
        return [i for (i,) in rows]

    def lookup(self, typename: str, key: str, value: str) -> list[str]:
        rows = self.db.execute(
            "SELECT id FROM keys WHERE typename=? AND key=? AND value=? ORDER BY id",
            (typename, key, value),
        )
        return [i for (i,) in rows]

    def lookup_prefix(self, typename: str, prefix: str) -> list[str]:
        rows = self.db.execute(
            "SELECT id FROM roots WHERE typename=? AND id >= ? AND id < ? ORDER BY id",
            (typename, prefix, prefix + "g"),
        )
        return [i for (i,) in rows]

    # -- evaluations ------------------------------------------------------------------
    def get(self, codec: Codec, object_id: str) -> Evaluation[Any] | None:
        cobtype = codec.cobtype
        if cobtype.state_type is None:
            return None
        row = self.db.execute(
            "SELECT data FROM evaluations WHERE typename=? AND id=?", (cobtype.typename, object_id)
        ).fetchone()
        if row is None:
            return None
        try:
            stored = _stored_decoder.decode(row[0])
            decoder = self._decoders.get(cobtype.typename)
            if decoder is None:
                decoder = self._decoders[cobtype.typename] = msgspec.msgpack.Decoder(
                    cobtype.state_type
                )
            state = decoder.decode(stored.state) if stored.state is not None else None
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None  # an old or damaged entry: fold again
        return Evaluation(
            cobtype.typename,
            object_id,
            state,
            tips=stored.tips,
            accepted={a.hex() for a in stored.accepted},
            rejected=stored.rejected,
            heads=set(stored.heads),
        )

    def put(self, codec: Codec, ev: Evaluation[Any]) -> None:
        if codec.cobtype.state_type is None:
            return
        stored = _Stored(
            ev.tips,
            _encoder.encode(ev.state) if ev.state is not None else None,
            [bytes.fromhex(a) for a in ev.accepted],
            ev.rejected,
            sorted(ev.heads),
        )
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO evaluations VALUES (?, ?, ?)",
                (codec.cobtype.typename, ev.object_id, _encoder.encode(stored)),
            )

    def forget(self, typename: str, object_ids: Iterable[str]) -> None:
        with self.db:
            self.db.executemany(
                "DELETE FROM evaluations WHERE typename=? AND id=?",
                [(typename, i) for i in object_ids],
            )
