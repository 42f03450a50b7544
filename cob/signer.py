"""Ed25519 signers backed by OpenSSH key files.

A node's whole identity is one OpenSSH ed25519 private key — the same file ``ssh-keygen -t
ed25519`` writes — so a user can reuse the key git already signs with. Every failure to find or
read it is a :class:`~cob.errors.KeyFileError` naming the path. Which file is a node's key (the
resolution order: environment, git config, a default path) is the application's to say.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import KeyFileError
from .identity import allowed_signers_line, nid_from_public_key

# cryptography's key classes are imported where a key is made, read or used: a command that only
# reads objects from the index only then never loads them.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where a key was found: the path and which rule of the resolution order found it."""

    path: Path
    origin: str  # which rule found it, named by the application's resolution order, e.g. "argument"


def _private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents as 0700, whatever the umask (an existing
    directory is left as it is: it is the user's)."""
    missing = []
    for d in (path, *path.parents):
        if d.exists():
            break
        missing.append(d)
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(0o700)
            os.chmod(d, 0o700)  # mkdir's mode is filtered by the umask; chmod's is not


def _write_public(path: Path, data: bytes) -> None:
    """The public key, 0644 whatever the umask (a umask of 000 made it world-writable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o644)
        f.write(data)


class Signer:
    """Signs changes as one node. ``signer.nid`` is the node's id (``z6Mk…``)."""

    __slots__ = ("_key", "nid", "public_key", "source")

    def __init__(self, key: Ed25519PrivateKey, source: KeySource | None = None) -> None:
        from cryptography.hazmat.primitives import serialization

        self._key = key
        self.public_key: bytes = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.nid: str = nid_from_public_key(self.public_key)
        self.source = source

    def __repr__(self) -> str:
        return f"Signer({self.nid})"

    @property
    def path(self) -> Path | None:
        return self.source.path if self.source else None

    @classmethod
    def generate(cls) -> Signer:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], origin: str = "argument") -> Signer:
        """Read an OpenSSH ed25519 private key (unencrypted)."""
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        p = Path(path).expanduser()
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise KeyFileError(f"key file not found: {p}") from None
        except OSError as e:
            raise KeyFileError(f"cannot read key file {p}: {e.strerror or e}") from None
        try:
            key = serialization.load_ssh_private_key(data, password=None)
        except TypeError:
            raise KeyFileError(f"key file {p} is encrypted; use an unencrypted key") from None
        except (ValueError, UnsupportedAlgorithm):
            try:
                key = serialization.load_pem_private_key(data, password=None)  # type: ignore[assignment]
            except Exception:
                raise KeyFileError(f"not an OpenSSH private key: {p}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"key file {p} is not an ed25519 key")
        return cls(key, KeySource(p, origin))

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the private key in OpenSSH format, mode 0600 (and ``path.pub`` beside it).

        An existing file is never replaced by another key unless ``overwrite=True``: a node's
        key is its identity, and losing it orphans every run it signed. Saving the same key
        again is a no-op.
        """
        from cryptography.hazmat.primitives import serialization

        p = Path(path).expanduser()
        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        pub = self._key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
        try:
            _private_dirs(p.parent)
            fd = os.open(p, flags, 0o600)
        except FileExistsError:
            try:
                existing = Signer.from_file(p).nid
            except KeyFileError:
                existing = None
            if existing != self.nid:
                raise KeyFileError(
                    f"{p} already exists and holds another key; refusing to overwrite it"
                ) from None
            object.__setattr__(self, "source", KeySource(p, "saved"))
            return p
        except OSError as e:
            raise KeyFileError(f"cannot write key file {p}: {e.strerror or e}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(pem)
            _write_public(Path(str(p) + ".pub"), pub + b" " + self.nid.encode() + b"\n")
        except OSError as e:
            raise KeyFileError(f"cannot write key file {p}: {e.strerror or e}") from None
        object.__setattr__(self, "source", KeySource(p, "saved"))
        return p

    def sign_raw(self, data: bytes) -> bytes:
        """A raw Ed25519 signature (used by :mod:`cob.sshsig`)."""
        return self._key.sign(data)

    @property
    def allowed_signers_line(self) -> str:
        return allowed_signers_line(self.nid)
