"""Listing rows: a few fields per object, stored beside its evaluation and read without it.

A listing of every object that decoded each object's whole state spent most of its time and
memory making Python objects nobody printed (~2 M for 5,000 objects of 20 nodes' changes each,
at 100k index entries). A type that sets :attr:`cob.cobtype.CobType.listing_type` gives a small
row per evaluation (:meth:`~cob.cobtype.CobType.listing`); the index stores it sealed under the
key of the tips it was folded from (:func:`cob.statecache.state_key`), and a listing takes, in
one query, the rows whose key equals their object's *current* tips' key (kept by
:mod:`cob.objectlist` as the refs move). An object without such a row (never loaded here, moved
since, a result that may change) is loaded as :meth:`cob.store.Store.load` would, in bounded
batches, and its row is made then: the answer is what loading every object gives, with memory
bounded by a batch, not by the ledger.

A row is sealed like a state (:mod:`cob.statecache`): one nobody with the repository's secret
wrote is not used, so the index cannot make a listing say what no fold of the refs says.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from . import statecache
from .change import Codec
from .cobtype import CobType
from .evaluate import Evaluation

if TYPE_CHECKING:
    from .store import Store

BATCH = 500  # objects loaded at once for rows the index lacks (bounds a cold listing's memory)
# The index's row, else the one kept with the state (which outlives the index: a listing after
# the index was deleted decodes no state). Both are sealed under the tips' key.
_ROWS = (
    "SELECT r.id, r.tipkey, coalesce(e.listing, k.listing) FROM roots r"
    " LEFT JOIN evaluations e ON e.typename = r.typename AND e.id = r.id AND e.tipkey = r.tipkey"
    " LEFT JOIN kept.states k ON k.typename = r.typename AND k.id = r.id AND k.key = r.tipkey"
    " WHERE r.typename = ? AND r.valid"
)
_encoder = msgspec.msgpack.Encoder()


def _where(key: bytes) -> bytes:
    """What a row is sealed under: its tips' key, apart from the state kept under the same key."""
    return b"listing\0" + key


def make_row(codec: Codec, secret: bytes, ev: Evaluation[Any], key: bytes) -> bytes | None:
    """The sealed row of ``ev`` (folded at the tips whose key is ``key``), or None when the type
    has no rows or the result may still change without a ref moving (it is loaded again)."""
    cobtype = codec.cobtype
    if cobtype.listing_type is None or ev.state is None or ev.curable():
        return None
    return statecache.seal(secret, _where(key), _encoder.encode(cobtype.listing(ev)))


def sealed_row(secret: bytes, key: bytes, sealed: bytes | None) -> bool:
    """Whether ``sealed`` is a row sealed under ``secret`` for the tips whose key is ``key``."""
    return bool(sealed) and statecache.unseal(secret, _where(key), sealed or b"") is not None


def read_rows(
    db: sqlite3.Connection,
    codec: Codec,
    secret: bytes,
    decoders: dict[str, msgspec.msgpack.Decoder[Any]],
    ids: Sequence[str] | None,
) -> tuple[list[tuple[str, Any]], list[str]]:
    """(current rows, ids of the objects without one), every object of the type or ``ids``,
    in id order; inside the caller's transaction, so the rows match the object list."""
    cobtype = codec.cobtype
    decoder = decoders.get("listing:" + cobtype.typename)
    if decoder is None:
        decoder = decoders["listing:" + cobtype.typename] = msgspec.msgpack.Decoder(cobtype.listing_type)
    found: list[tuple[str, Any]] = []
    missing: list[str] = []
    for object_id, tipkey, sealed in _select(db, cobtype.typename, ids):
        data = statecache.unseal(secret, _where(tipkey), sealed) if sealed and tipkey else None
        row = None
        if data is not None:
            try:
                row = decoder.decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                row = None  # an older row shape: loaded again
        if row is None:
            missing.append(object_id)
        else:
            found.append((object_id, row))
    return found, missing


def _select(db: sqlite3.Connection, typename: str, ids: Sequence[str] | None) -> list[tuple[str, Any, Any]]:
    if ids is None:
        return db.execute(_ROWS + " ORDER BY r.id", (typename,)).fetchall()
    out: list[tuple[str, Any, Any]] = []
    wanted = sorted(set(ids))
    for i in range(0, len(wanted), BATCH):
        chunk = wanted[i : i + BATCH]
        sql = f"{_ROWS} AND r.id IN ({','.join('?' * len(chunk))}) ORDER BY r.id"
        out.extend(db.execute(sql, (typename, *chunk)).fetchall())
    return out


def rows(store: Store, cobtype: CobType[Any], ids: Sequence[str] | None = None) -> Iterator[tuple[str, Any]]:
    """For :meth:`cob.store.Store.listing`: (object id, row) of every valid object of the type
    (or of ``ids``), in id order; objects whose row the index lacks are loaded in batches."""
    if cobtype.listing_type is None:
        raise TypeError(f"{cobtype.typename} has no listing rows")
    found, missing = store._listing_rows(cobtype, ids)
    made: dict[str, Any] = {}
    for i in range(0, len(missing), BATCH):
        batch = missing[i : i + BATCH]
        loaded = {object_id: ev for object_id, ev in store.load_many(cobtype, batch) if ev and ev.state}
        stored, _ = store._listing_rows(cobtype, list(loaded))  # the loads stored their rows
        made.update(stored)
        for object_id, ev in loaded.items():
            if object_id not in made:  # no index, or a result that may still change
                made[object_id] = cobtype.listing(ev)
    if not made:
        yield from found
        return
    everything = [*found, *made.items()]
    everything.sort(key=lambda pair: pair[0])
    yield from everything


__all__ = ["BATCH", "make_row", "read_rows", "rows"]
