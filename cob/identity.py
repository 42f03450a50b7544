"""Node ids: the did:key form of an Ed25519 public key, as Radicle writes it.

A NID is ``z`` + base58btc(0xED 0x01 ‖ 32-byte key). It doubles as the Git author name of every
change and as the namespace a node writes under, so it must round-trip exactly; parsing is strict
(wrong prefix, multicodec or length is an :class:`~cob.errors.InvalidNidError`).
"""

from __future__ import annotations

import base64
import struct

from .errors import InvalidNidError

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
_ED25519_MULTICODEC = b"\xed\x01"
_DID_PREFIX = "did:key:"
# z + base58 of 34 bytes is 47 or 48 characters; anything far longer is not worth decoding.
_MAX_NID_LEN = 64


def b58encode(data: bytes) -> str:
    """Bitcoin-alphabet base58 (leading zero bytes become '1')."""
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_ALPHABET[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        i = _INDEX.get(c)
        if i is None:
            raise InvalidNidError(f"invalid base58 character {c!r}")
        n = n * 58 + i
    pad = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * pad + body


def nid_from_public_key(public_key: bytes) -> str:
    """The NID (``z6Mk…``) of a raw 32-byte Ed25519 public key."""
    if len(public_key) != 32:
        raise InvalidNidError(f"an Ed25519 public key has 32 bytes, not {len(public_key)}")
    return "z" + b58encode(_ED25519_MULTICODEC + public_key)


def public_key_from_nid(nid: str) -> bytes:
    """The raw 32-byte public key of a NID; accepts ``did:key:`` in front."""
    if not isinstance(nid, str):
        raise InvalidNidError(f"a node id is a string, not {type(nid).__name__}")
    text = nid[len(_DID_PREFIX) :] if nid.startswith(_DID_PREFIX) else nid
    if not text.startswith("z") or len(text) > _MAX_NID_LEN:
        raise InvalidNidError(f"not a node id: {nid!r} (expected z6Mk… or did:key:z6Mk…)")
    raw = b58decode(text[1:])
    if len(raw) != 34 or not raw.startswith(_ED25519_MULTICODEC):
        raise InvalidNidError(f"not an Ed25519 node id: {nid!r}")
    return raw[2:]


def normalize_nid(nid: str) -> str:
    """The canonical ``z6Mk…`` form of a NID (strips ``did:key:``), validated."""
    return nid_from_public_key(public_key_from_nid(nid))


_KNOWN_NIDS: set[str] = set()  # canonical NIDs seen, so a sync's listing is not decoded again
_MAX_KNOWN_NIDS = 1 << 16


def is_nid(text: str) -> bool:
    if text in _KNOWN_NIDS:
        return True
    try:
        valid = normalize_nid(text) == text
    except InvalidNidError:
        return False
    if valid:
        if len(_KNOWN_NIDS) >= _MAX_KNOWN_NIDS:
            _KNOWN_NIDS.clear()
        _KNOWN_NIDS.add(text)
    return valid


def ssh_wire_public_key(public_key: bytes) -> bytes:
    """The SSH wire encoding of an Ed25519 key: string "ssh-ed25519", string key."""
    return _ssh_string(b"ssh-ed25519") + _ssh_string(public_key)


def ssh_public_key_line(nid: str) -> str:
    """``ssh-ed25519 AAAA…`` — the OpenSSH public key line of a NID."""
    wire = ssh_wire_public_key(public_key_from_nid(nid))
    return "ssh-ed25519 " + base64.b64encode(wire).decode()


def allowed_signers_line(nid: str) -> str:
    """A line for git's ``gpg.ssh.allowedSignersFile``: the NID is the principal."""
    canonical = normalize_nid(nid)
    return f'{canonical} namespaces="git" {ssh_public_key_line(canonical)}'


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data
