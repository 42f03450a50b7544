"""SSHSIG: the SSH signature format that ``git commit -S`` writes with ``gpg.format=ssh``.

We produce and check it byte-for-byte as OpenSSH does (PROTOCOL.sshsig), so stock
``git verify-commit`` accepts our changes and we accept git's. Only Ed25519 keys and the
SHA-512 hash are accepted when verifying peer data: one key type keeps the attack surface small.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Protocol, cast

from .errors import SignatureError
from .identity import ssh_wire_public_key

MAGIC = b"SSHSIG"
VERSION = 1
NAMESPACE = b"git"
HASH = b"sha512"
BEGIN = "-----BEGIN SSH SIGNATURE-----"
END = "-----END SSH SIGNATURE-----"
# An armored Ed25519 SSHSIG is ~300 bytes; refuse to even decode anything much larger.
MAX_ARMORED = 4096


class RawSigner(Protocol):
    @property
    def public_key(self) -> bytes: ...

    def sign_raw(self, data: bytes) -> bytes: ...


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def signed_data(message: bytes, namespace: bytes = NAMESPACE) -> bytes:
    """The blob that is actually signed: magic, namespace, reserved, hash name, H(message)."""
    digest = hashlib.sha512(message).digest()
    return MAGIC + _string(namespace) + _string(b"") + _string(HASH) + _string(digest)


def sign(signer: RawSigner, message: bytes, namespace: bytes = NAMESPACE) -> str:
    """An armored SSHSIG of ``message`` (no trailing newline), as ``ssh-keygen -Y sign`` writes."""
    raw = signer.sign_raw(signed_data(message, namespace))
    blob = (
        MAGIC
        + struct.pack(">I", VERSION)
        + _string(ssh_wire_public_key(signer.public_key))
        + _string(namespace)
        + _string(b"")
        + _string(HASH)
        + _string(_string(b"ssh-ed25519") + _string(raw))
    )
    return armor(blob)


def armor(blob: bytes) -> str:
    """The one canonical armored form of a signature blob: base64 in lines of 70, no newline
    after the END line — what ``ssh-keygen -Y sign`` writes, minus its final newline."""
    b64 = base64.b64encode(blob).decode()
    lines = [b64[i : i + 70] for i in range(0, len(b64), 70)]
    return "\n".join([BEGIN, *lines, END])


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise SignatureError("truncated SSH signature")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def u32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def string(self) -> bytes:
        return self.take(self.u32())


def _layout(namespace: bytes) -> tuple[bytes, bytes, bytes, int]:
    """The fixed parts of an Ed25519 SSHSIG blob of ``namespace``: what comes before the public
    key, between it and the raw signature, and the blob's length (see :func:`sign`)."""
    head = MAGIC + struct.pack(">I", VERSION) + struct.pack(">I", 51) + _string(b"ssh-ed25519")
    head += struct.pack(">I", 32)
    middle = _string(namespace) + _string(b"") + _string(HASH)
    middle += struct.pack(">I", 83) + _string(b"ssh-ed25519") + struct.pack(">I", 64)
    return head, b"", middle, len(head) + 32 + len(middle) + 64


_HEAD, _, _MIDDLE, _LENGTH = _layout(NAMESPACE)
_PK_AT = len(_HEAD)
_MIDDLE_AT = _PK_AT + 32
_SIG_AT = _MIDDLE_AT + len(_MIDDLE)
# What the armor of such a blob looks like (its one canonical form, see armor()).
_B64_LENGTH = 4 * ((_LENGTH + 2) // 3)
_ARMORED_LENGTH = len(BEGIN) + 1 + _B64_LENGTH + (_B64_LENGTH - 1) // 70 + 1 + len(END)
_BREAKS = tuple(70 + 71 * i for i in range((_B64_LENGTH - 1) // 70))  # newlines in the body
_KEYS: dict[bytes, object] = {}  # public key bytes -> Ed25519PublicKey (few distinct signers)


def _fast(armored: str | bytes) -> tuple[bytes, bytes] | None:
    """(public key, raw signature) of a canonical Ed25519 SSHSIG of namespace ``git`` and
    SHA-512, read at fixed offsets; None for anything else (then :func:`parse` decides)."""
    if isinstance(armored, bytes):
        if len(armored) != _ARMORED_LENGTH:
            return None
        try:
            armored = armored.decode("ascii")
        except UnicodeDecodeError:
            return None
    if len(armored) != _ARMORED_LENGTH or not armored.startswith(BEGIN) or not armored.endswith(END):
        return None
    body = armored[len(BEGIN) + 1 : -len(END) - 1]
    if armored[len(BEGIN)] != "\n" or armored[-len(END) - 1] != "\n" or body.count("\n") != len(_BREAKS):
        return None
    if any(body[i] != "\n" for i in _BREAKS):
        return None
    flat = body.replace("\n", "")
    try:
        blob = base64.b64decode(flat, validate=True)
    except ValueError:
        return None
    if (
        len(blob) != _LENGTH
        or base64.b64encode(blob).decode("ascii") != flat
        or blob[:_PK_AT] != _HEAD
        or blob[_MIDDLE_AT:_SIG_AT] != _MIDDLE
    ):
        return None
    return blob[_PK_AT:_MIDDLE_AT], blob[_SIG_AT:]


def parse(armored: str | bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """Decode an armored SSHSIG into (public key, namespace, hash name, raw signature).

    Raises :class:`SignatureError` for anything but a well-formed Ed25519 signature.
    """
    fast = _fast(armored)
    if fast is not None:
        return fast[0], NAMESPACE, HASH, fast[1]
    r = _Reader(_dearmor(armored))
    if r.take(6) != MAGIC:
        raise SignatureError("bad SSHSIG magic")
    if r.u32() != VERSION:
        raise SignatureError("unsupported SSHSIG version")
    key = _Reader(r.string())
    namespace = r.string()
    r.string()  # reserved
    hash_alg = r.string()
    sig = _Reader(r.string())
    if r.pos != len(r.data):
        raise SignatureError("trailing bytes after SSH signature")
    if key.string() != b"ssh-ed25519":
        raise SignatureError("only ssh-ed25519 signatures are accepted")
    public_key = key.string()
    if key.pos != len(key.data) or len(public_key) != 32:
        raise SignatureError("malformed ssh-ed25519 public key")
    if sig.string() != b"ssh-ed25519":
        raise SignatureError("signature algorithm is not ssh-ed25519")
    raw = sig.string()
    if sig.pos != len(sig.data) or len(raw) != 64:
        raise SignatureError("malformed ssh-ed25519 signature")
    return public_key, namespace, hash_alg, raw


def _dearmor(armored: str | bytes) -> bytes:
    """The SSHSIG blob inside its armor, accepted only in its one canonical encoding."""
    if isinstance(armored, bytes):
        try:
            armored = armored.decode("ascii")
        except UnicodeDecodeError:
            raise SignatureError("SSH signature is not ASCII") from None
    if len(armored) > MAX_ARMORED:
        raise SignatureError("SSH signature too large")
    text = armored.strip()
    if not (text.startswith(BEGIN) and text.endswith(END)):
        raise SignatureError("not an SSH signature (missing armor)")
    body = "".join(line.strip() for line in text[len(BEGIN) : -len(END)].splitlines())
    try:
        blob = base64.b64decode(body, validate=True)
    except ValueError:
        raise SignatureError("SSH signature is not valid base64") from None
    if armored != armor(blob):
        # Another wrapping, padding or spacing of the same blob would verify too, and give
        # the commit a new oid: a forced copy of an honest change that peers would take,
        # then refuse the honest history as diverged. Only one encoding is accepted.
        raise SignatureError("SSH signature armor is not canonical (base64 in lines of 70)")
    return blob


def verify(armored: str | bytes, message: bytes, namespace: bytes = NAMESPACE) -> bytes:
    """Check an SSHSIG over ``message``; return the signer's 32-byte public key.

    Raises :class:`SignatureError` when it is malformed, of another namespace or hash, or does
    not verify.
    """
    # imported here, not at the top: reading the ledger from the index verifies nothing
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    public_key, ns, hash_alg, raw = parse(armored)
    if ns != namespace:
        raise SignatureError(f"signature namespace is {ns!r}, expected {namespace!r}")
    if hash_alg != HASH:
        raise SignatureError(f"signature hash is {hash_alg!r}, expected sha512")
    key = _KEYS.get(public_key)
    if key is None:
        if len(_KEYS) >= 4096:
            _KEYS.clear()
        key = _KEYS[public_key] = Ed25519PublicKey.from_public_bytes(public_key)
    try:
        cast(Ed25519PublicKey, key).verify(raw, signed_data(message, ns))
    except InvalidSignature:
        raise SignatureError("signature does not verify") from None
    return public_key
