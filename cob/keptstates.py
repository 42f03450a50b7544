"""The file of the states kept by tips (:mod:`cob.statecache`), ``<prefix>-states.sqlite3``.

It is attached to the index's SQLite connection (:mod:`cob.cache`) as ``kept`` and outlives
the index file: deleting the index (a user starting afresh) does not mean folding every object
again. Every row is sealed under the repository's secret, so a damaged or foreign file costs
folding, never a wrong answer; a damaged one is deleted and started again.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from . import layout, listing, statecache
from .change import Codec
from .cobtype import CobType
from .errors import CacheBusyError
from .evaluate import Evaluation

if TYPE_CHECKING:
    from .store import Store

MEMORY = ":memory:"
# A kept state restored as an object's last evaluation: (id, sealed data, tips' key, sealed
# listing row or None, the row when it was made now for a kept state from before rows).
Restored = tuple[str, bytes, bytes, bytes | None, bytes | None]
FILENAME = "states.sqlite3"  # <gitdir>/<layout prefix>-states.sqlite3 (cob.layout)


def states_path(gitdir: str) -> str:
    """The kept states' file, beside the index."""
    return os.path.join(gitdir, layout.current().file(FILENAME))


def is_busy(e: sqlite3.Error) -> bool:
    text = str(e).lower()
    return "locked" in text or "busy" in text


def unlink_sidecars(path: str) -> None:
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(OSError):
            os.unlink(path + suffix)


def unlink_all(path: str) -> None:
    if path != MEMORY:
        with contextlib.suppress(OSError):
            os.unlink(path)
        unlink_sidecars(path)


def attach(db: sqlite3.Connection, path: str) -> None:
    """Attach the kept states at ``path`` (or :data:`MEMORY`) as ``kept``; a damaged file is
    deleted and started again, one that cannot be opened is kept in memory."""
    for target in [MEMORY] if path == MEMORY else [path, path, MEMORY]:
        if target != MEMORY and not os.path.exists(target):
            unlink_sidecars(target)  # a deleted file's WAL would be replayed onto the new one
        try:
            db.execute("ATTACH DATABASE ? AS kept", (target,))
        except sqlite3.DatabaseError as e:
            if is_busy(e):
                raise
            unlink_all(target)
            continue
        try:
            if target != MEMORY:
                db.execute("PRAGMA kept.journal_mode=WAL")
                db.execute("PRAGMA kept.synchronous=NORMAL")
            db.execute(statecache.STATES_DDL)
            _add_listing(db)
            db.execute("SELECT key, listing FROM kept.states LIMIT 1").fetchone()
            return
        except sqlite3.DatabaseError as e:
            with contextlib.suppress(sqlite3.Error):
                db.execute("DETACH DATABASE kept")
            if is_busy(e):
                raise
            unlink_all(target)
    raise sqlite3.DatabaseError("the kept states cannot be attached")


def _add_listing(db: sqlite3.Connection) -> None:
    """A file from before listing rows (:mod:`cob.listing`) gets their column (empty)."""
    columns = {row[1] for row in db.execute("PRAGMA kept.table_info(states)")}
    if "listing" not in columns:
        db.execute("ALTER TABLE kept.states ADD COLUMN listing BLOB")


def folded_for(
    store: Store, cobtype: CobType[Any], ids: list[str], tips_of: Callable[[str], dict[str, str]]
) -> dict[str, Evaluation[Any]]:
    """For :meth:`cob.store.Store.load_many`: the objects whose state the index (or the kept
    states) holds at their current tips, as :meth:`~cob.store.Store.load` would return them."""
    cache = store.cache
    if cache is None or not cobtype.commutative or len(ids) < 2 or time.monotonic() < cache.busy_until:
        return {}
    wanted = {object_id: tips for object_id in ids if (tips := tips_of(object_id))}
    try:
        found = cache.folded_many(store.codec(cobtype), wanted)
    except CacheBusyError:
        return {}  # each object is then loaded alone (and the busy index said once)
    for ev in found.values():
        store.loads += 1
        ev.changes = []
    return found


def read_many(
    db: sqlite3.Connection,
    codec: Codec,
    secret: bytes,
    tips_of: Mapping[str, Mapping[str, str]],
    decoders: dict[str, msgspec.msgpack.Decoder[Any]],
) -> tuple[dict[str, Evaluation[Any]], list[Restored]]:
    """For :meth:`cob.cache.Cache.folded_many`: the usable evaluations of the batch (the last
    one stored, else the kept one), and the kept ones to store as the last one (sealed rows)."""
    cobtype = codec.cobtype
    ids = list(tips_of)
    out: dict[str, Evaluation[Any]] = {}
    for object_id, _, sealed, _ in _rows(db, cobtype.typename, "evaluations", ids):
        data = statecache.unseal(secret, object_id, sealed)
        ev = None if data is None else statecache.decode(codec, object_id, data, decoders)
        if ev is not None and _usable(ev, tips_of[object_id]):
            out[object_id] = ev
    restored: list[Restored] = []
    for object_id, key, sealed, row in _rows(
        db, cobtype.typename, "kept.states", [i for i in ids if i not in out]
    ):
        tips = tips_of[object_id]
        if key != statecache.state_key(cobtype, object_id, tips):
            continue
        data = statecache.unseal(secret, key, sealed)
        if data is None:
            continue
        ev = statecache.decode(codec, object_id, data, decoders)
        if ev is not None and _usable(ev, tips):
            out[object_id] = ev
            # Kept before rows, or bytes that are not one (another user wrote the file): made now
            made = None if listing.sealed_row(secret, key, row) else listing.make_row(codec, secret, ev, key)
            restored.append((object_id, statecache.seal(secret, object_id, data), key, made or row, made))
    return out, restored


def store_restored(db: sqlite3.Connection, typename: str, restored: list[Restored]) -> None:
    """Store restored states as the objects' last evaluations, in one transaction; kept
    states from before listing rows get theirs."""
    if not restored:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        sql = "INSERT OR REPLACE INTO evaluations VALUES (?, ?, ?, ?, ?)"
        db.executemany(sql, [(typename, *row[:4]) for row in restored])
        sql = "UPDATE kept.states SET listing=? WHERE typename=? AND id=? AND key=?"
        db.executemany(sql, [(made, typename, i, key) for i, _, key, _, made in restored if made])
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise


def _usable(ev: Evaluation[Any], tips: Mapping[str, str]) -> bool:
    """Is ``ev`` what a load at ``tips`` gives as is (complete, at exactly these tips)?"""
    return ev.tips == tips and ev.state is not None and not ev.curable()


def _rows(
    db: sqlite3.Connection, typename: str, table: str, wanted: list[str]
) -> list[tuple[str, bytes, bytes, bytes | None]]:
    """(id, key or None, sealed data, sealed listing row or None) of the ``wanted`` objects'
    rows of ``table``."""
    key = "key" if table == "kept.states" else "NULL"
    found: list[tuple[str, bytes, bytes, bytes | None]] = []
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT id, {key}, data, listing FROM {table} WHERE typename=? AND id IN ({marks})"
        found.extend(db.execute(sql, (typename, *chunk)).fetchall())
    return found
