"""The index's object list, kept in step with the refs: which objects exist, their tips per
node, the keys their roots declare (:meth:`cob.cobtype.CobType.index_keys`), and the key of
each object's current tips (:func:`cob.statecache.state_key`), against which a stored
evaluation or listing row is current (:mod:`cob.listing`).

All of it runs inside a write transaction of :mod:`cob.cache`, which owns the connection.
"""

from __future__ import annotations

import sqlite3

from . import sigrefs, statecache
from .change import Codec, InvalidChangeError, read_change
from .reader import RefReader


def token(heads: dict[str, str], legacy: str) -> str:
    """The stamp of :meth:`cob.refs.RefReader.stamp` for these index tips."""
    return ",".join(f"{n}={t}" for n, t in sorted(heads.items())) + "|" + legacy


def parse_token(token: object) -> tuple[dict[str, str], str] | None:
    """(index tips, legacy part) of a stored stamp; None when it is not one."""
    if not isinstance(token, str) or "|" not in token:
        return None
    head_text, _, legacy = token.partition("|")
    heads: dict[str, str] = {}
    for part in filter(None, head_text.split(",")):
        nid, eq, tip = part.partition("=")
        if not eq:
            return None
        heads[nid] = tip
    return heads, legacy


def sync_tips(db: sqlite3.Connection, codec: Codec, refs: RefReader, stored: object, token: str) -> None:
    """Make the tips table match ``token`` (inside the caller's write transaction): by diffing
    the index trees of the nodes whose tips moved when the stored stamp allows it, else by a
    full rescan. Then add the roots of new objects and drop objects no node names any more."""
    typename = codec.cobtype.typename
    old, new = parse_token(stored), parse_token(token)
    touched: set[str] = set()
    if old is not None and new is not None and old[1] == new[1]:  # legacy refs did not move
        for nid in old[0].keys() | new[0].keys():
            a, b = old[0].get(nid), new[0].get(nid)
            if a == b:
                continue
            old_tree = refs.tree(a) if a else None
            if a and old_tree is None:  # that index commit is gone (rewritten by plain git, gc):
                db.execute("DELETE FROM tips WHERE typename=? AND nid=?", (typename, nid))
                touched.update(i for (i,) in db.execute("SELECT id FROM roots WHERE typename=?", (typename,)))
            moved = sigrefs.diff(refs.repo, old_tree, refs.tree(b) if b else None, typename)
            for object_id, tip in moved.items():
                key = (typename, object_id, nid)
                if tip is None:  # a per-object ref of the same node shows again (the index won)
                    tip = refs.legacy_tip(typename, object_id, nid)
                if tip is None:
                    db.execute("DELETE FROM tips WHERE typename=? AND id=? AND nid=?", key)
                else:
                    db.execute("INSERT OR REPLACE INTO tips VALUES (?, ?, ?, ?)", (*key, tip))
            touched.update(moved)
    else:
        touched = {i for (i,) in db.execute("SELECT id FROM roots WHERE typename=?", (typename,))}
        db.execute("DELETE FROM tips WHERE typename=?", (typename,))
        rows = [(typename, r.object_id, r.nid, r.target) for r in refs.refs_of_type(typename)]
        db.executemany("INSERT OR REPLACE INTO tips VALUES (?, ?, ?, ?)", rows)
        touched.update(r[1] for r in rows)
    settle(db, codec, refs, touched)


def settle(db: sqlite3.Connection, codec: Codec, refs: RefReader, ids: set[str]) -> None:
    """Roots and keys for ``ids`` that some node names; nothing kept for those none names.

    A root that was invalid (e.g. not fetched yet) is read again when its tips move: an entry
    naming a job before its root arrives must not hide that job for good. Each object's
    ``tipkey`` is the key of its tips as they are now: a stored row is current when its own
    key equals it (compared in SQL, :mod:`cob.listing`).
    """
    typename = codec.cobtype.typename
    for object_id in sorted(ids):
        key = (typename, object_id)
        tips = dict(db.execute("SELECT nid, tip FROM tips WHERE typename=? AND id=?", key).fetchall())
        if not tips:
            for table in ("roots", "keys", "evaluations"):
                db.execute(f"DELETE FROM {table} WHERE typename=? AND id=?", key)
            continue
        tipkey = statecache.state_key(codec.cobtype, object_id, tips)
        row = db.execute("SELECT valid FROM roots WHERE typename=? AND id=?", key).fetchone()
        if row is not None and row[0]:
            db.execute("UPDATE roots SET tipkey=? WHERE typename=? AND id=?", (tipkey, *key))
            continue
        valid, keys = read_root(refs, codec, object_id)
        db.execute("INSERT OR REPLACE INTO roots VALUES (?, ?, ?, ?)", (*key, valid, tipkey))
        db.executemany(
            "INSERT OR IGNORE INTO keys VALUES (?, ?, ?, ?)", [(typename, k, v, object_id) for k, v in keys]
        )


def set_tip(
    db: sqlite3.Connection, codec: Codec, refs: RefReader, object_id: str, nid: str, tip: str
) -> None:
    typename = codec.cobtype.typename
    db.execute("INSERT OR REPLACE INTO tips VALUES (?, ?, ?, ?)", (typename, object_id, nid, tip))
    settle(db, codec, refs, {object_id})


def read_root(refs: RefReader, codec: Codec, object_id: str) -> tuple[bool, list[tuple[str, str]]]:
    try:
        root = read_change(refs.repo, codec, object_id, is_root=True)
        return True, list(codec.cobtype.index_keys(root))
    except (InvalidChangeError, IndexError):
        return False, []
