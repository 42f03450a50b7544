"""How the index stores folded states: sealed evaluations, and states keyed by their tips.

Two tables (:mod:`cob.cache`) hold evaluations:

- ``evaluations`` (in the index): per object, the last one (the base an incremental fold extends);
- ``kept.states`` (a file of its own, ``<prefix>-states.sqlite3``, attached to the index's
  connection): per object, the last one *keyed by the set of tips it was folded from and the
  type's rules* (:func:`state_key`). It survives ``Cache.clear`` (an application's cache
  rebuild), schema changes of the index and deleting the index file, so a rebuild looks states
  up instead of folding: a fold is a function of the tips (the DAG they reach) and the rules,
  nothing else. One row per object (the newest replaces the older), so it grows with objects,
  not writes.

Every stored evaluation is *sealed*: a keyed BLAKE2b-128 tag under the repository's secret
(:func:`cob.verified.repository_secret`) over what it is stored under and its bytes. An entry
written or edited by anyone without the secret (see :mod:`cob.verified`) fails the check and is
folded again: the index cannot be used to slip in a state that no fold of the refs gives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec

from .change import Codec
from .evaluate import Evaluation, RejectKind, Verdict

TAG_BYTES = 16
STATES_DDL = (
    "CREATE TABLE IF NOT EXISTS kept.states (typename TEXT NOT NULL, id TEXT NOT NULL,"
    " key BLOB NOT NULL, data BLOB NOT NULL, listing BLOB, PRIMARY KEY (typename, id)) WITHOUT ROWID"
)


class _Stored(msgspec.Struct, array_like=True):
    tips: dict[str, str]
    state: bytes | None
    accepted: list[bytes]
    rejected: dict[str, tuple[RejectKind, str]]
    heads: list[str]
    rules: str = ""  # the type's rules when this was folded (see rules_tag)


_stored_decoder = msgspec.msgpack.Decoder(_Stored)
_encoder = msgspec.msgpack.Encoder()


def rules_tag(cobtype: Any) -> str:
    """What a stored fold depends on besides Git: the type's name, the manifest versions it
    reads and its ``rules`` number. A fold made under other rules is folded again."""
    versions = ",".join(str(v) for v in sorted(cobtype.versions))
    return f"{cobtype.typename}/{versions}/{getattr(cobtype, 'rules', 1)}"


def state_key(cobtype: Any, object_id: str, tips: Mapping[str, str]) -> bytes:
    """What a fold is a function of: the rules, the object, its tips (sorted by namespace)."""
    text = "\n".join([rules_tag(cobtype), object_id, *(f"{n} {t}" for n, t in sorted(tips.items()))])
    return hashlib.blake2b(text.encode(), digest_size=20).digest()


def _tag(secret: bytes, where: bytes, data: bytes) -> bytes:
    return hashlib.blake2b(where + b"\0" + data, key=secret, digest_size=TAG_BYTES).digest()


def seal(secret: bytes, where: str | bytes, data: bytes) -> bytes:
    """``data`` with a tag binding it to ``where`` (the row it is stored in) under ``secret``."""
    w = where.encode() if isinstance(where, str) else where
    return _tag(secret, w, data) + data


def unseal(secret: bytes, where: str | bytes, sealed: bytes) -> bytes | None:
    """The data :func:`seal` sealed, or None when the tag does not match (forged, damaged,
    or written under another secret)."""
    w = where.encode() if isinstance(where, str) else where
    data = sealed[TAG_BYTES:]
    return data if len(sealed) > TAG_BYTES and _tag(secret, w, data) == sealed[:TAG_BYTES] else None


def encode(codec: Codec, ev: Evaluation[Any]) -> bytes:
    stored = _Stored(
        ev.tips,
        _encoder.encode(ev.state) if ev.state is not None else None,
        [bytes.fromhex(a) for a in ev.accepted],
        {oid: (v.kind, str(v)) for oid, v in ev.rejected.items()},
        sorted(ev.heads),
        rules_tag(codec.cobtype),
    )
    return _encoder.encode(stored)


def decode(
    codec: Codec, object_id: str, data: bytes, decoders: dict[str, msgspec.msgpack.Decoder[Any]]
) -> Evaluation[Any] | None:
    """The evaluation :func:`encode` wrote; None for one of other rules, or undecodable."""
    cobtype = codec.cobtype
    try:
        stored = _stored_decoder.decode(data)
        if stored.rules != rules_tag(cobtype):
            return None  # folded by other code (an upgrade): fold again
        decoder = decoders.get(cobtype.typename)
        if decoder is None:
            decoder = decoders[cobtype.typename] = msgspec.msgpack.Decoder(cobtype.state_type)
        state = decoder.decode(stored.state) if stored.state is not None else None
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # an old or damaged entry: fold again
    return Evaluation(
        cobtype.typename,
        object_id,
        state,
        tips=stored.tips,
        accepted={a.hex() for a in stored.accepted},
        rejected={oid: Verdict(kind, why) for oid, (kind, why) in stored.rejected.items()},
        heads=set(stored.heads),
    )
