"""The verified set: which changes' signatures this repository has checked, kept apart from the
index so that deleting or rebuilding the index does not mean checking them all again.

A change's oid names its bytes, signature included, so a signature checked once stays good:
the load (:func:`cob.change.read_change`) asks this set before it runs Ed25519, and records
every signature it checked. A full verify (``Store.load(full=True)``) asks nothing and
checks everything again.

The set must not become a way to slip a forged change in, so an entry is not the oid but a
*tag*: keyed BLAKE2b-128 of ``oid NUL signer-NID`` under a 32-byte secret of this repository
(:func:`secret_file`, mode 0600, made on first use). Whoever cannot read the secret — a member
of a group-shared repository who can write the git directory's files, a copy of the set
restored from elsewhere, a peer (which never writes either file: fetch writes objects and refs
only) — cannot make an entry that matches any change; a tag that matches nothing is simply
unused. Whoever can read the secret is the repository's owner, trusted like the node key.

The file (:func:`set_file`) is a 16-byte header and then 16-byte tags, appended in one
``write`` each batch with ``O_APPEND`` (several processes may append at once). A torn tail
(a crash mid-write) is skipped and padded over by the next append. A new secret (the old one
deleted) starts a new file: the old tags would match nothing. Without a usable git directory
(read-only, or a secret file others can read) the set lives in this process's memory only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat

from . import layout

SECRET = "secret"  # <gitdir>/<prefix>-secret (the layout's prefix: cob.layout)
SET = "verified"  # <gitdir>/<prefix>-verified


def secret_file() -> str:
    return layout.current().file(SECRET)


def set_file() -> str:
    return layout.current().file(SET)


SECRET_BYTES = 32
TAG_BYTES = 16
HEADER = b"cob-verified-v1\n"
assert len(HEADER) == TAG_BYTES
FLUSH_AT = 4096  # tags kept pending before an append (flush() writes them earlier)


def repository_secret(gitdir: str, name: str | None = None) -> bytes | None:
    """This repository's secret (made on first use, mode 0600), or None when it cannot be kept
    (read-only git directory) or cannot be trusted (a file of another size, or that another
    user could read or write)."""
    path = os.path.join(gitdir, name or secret_file())
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return _new_secret(path)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077 or info.st_uid != os.geteuid():
            return None
        data = os.read(fd, SECRET_BYTES + 1)
    finally:
        os.close(fd)
    return data if len(data) == SECRET_BYTES else None


def _new_secret(path: str) -> bytes | None:
    secret = os.urandom(SECRET_BYTES)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, secret)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # fails if another process made one first: then theirs is the one
    except FileExistsError:
        secret = b""
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return None
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    if not secret:
        return repository_secret(os.path.dirname(path), os.path.basename(path))
    # Tags under an older secret match nothing now: start the set again.
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(os.path.dirname(path), set_file()))
    return secret


class VerifiedSet:
    """The tags of (change oid, signer NID) whose signature was checked in one repository."""

    __slots__ = ("_pending", "_pos", "_tags", "checked", "hits", "path", "secret")

    def __init__(
        self, gitdir: str | None, *, secret_name: str | None = None, name: str | None = None
    ) -> None:
        secret = repository_secret(gitdir, secret_name) if gitdir is not None else None
        self.path: str | None = (
            os.path.join(gitdir, name or set_file()) if gitdir is not None and secret else None
        )
        self.secret = secret or os.urandom(SECRET_BYTES)  # memory only: nothing kept
        self._tags: set[bytes] | None = None
        self._pending: list[bytes] = []
        self._pos = 0
        self.hits = 0  # signatures not checked because the set had them (tests, benches)
        self.checked = 0  # signatures recorded as checked

    def tag(self, oid: str, nid: str) -> bytes:
        msg = oid.encode() + b"\0" + nid.encode()
        return hashlib.blake2b(msg, key=self.secret, digest_size=TAG_BYTES).digest()

    def known(self, oid: str, nid: str) -> bool:
        """Was the signature of change ``oid`` by ``nid`` checked here before?"""
        tags = self._tags if self._tags is not None else self._load()
        if self.tag(oid, nid) in tags:
            self.hits += 1
            return True
        return False

    def add(self, oid: str, nid: str) -> None:
        """Record that the signature of ``oid`` by ``nid`` verified (appended by :meth:`flush`)."""
        tags = self._tags if self._tags is not None else self._load()
        tag = self.tag(oid, nid)
        if tag not in tags:
            tags.add(tag)
            self._pending.append(tag)
            self.checked += 1
            if len(self._pending) >= FLUSH_AT:
                self.flush()

    def empty(self) -> bool:
        """Whether no signature was recorded yet (here or by another process), without reading
        the set (a first-ever load asks this before deciding to check on every core)."""
        if self._tags:
            return False
        if self.path is None:
            return True
        try:
            return os.stat(self.path).st_size <= TAG_BYTES
        except OSError:
            return True

    def __len__(self) -> int:
        return len(self._tags if self._tags is not None else self._load())

    def _load(self) -> set[bytes]:
        """Read what other processes appended since the last read (all of it the first time)."""
        tags = self._tags if self._tags is not None else set()
        self._tags = tags
        if self.path is None:
            return tags
        try:
            with open(self.path, "rb") as f:
                if self._pos == 0:
                    if f.read(TAG_BYTES) != HEADER:
                        return tags
                    self._pos = TAG_BYTES
                f.seek(self._pos)
                data = f.read()
        except OSError:
            return tags
        whole = len(data) - len(data) % TAG_BYTES
        tags.update(data[i : i + TAG_BYTES] for i in range(0, whole, TAG_BYTES))
        self._pos += whole
        return tags

    def flush(self) -> None:
        """Append the pending tags to the file (one write); a failure only costs re-checking."""
        pending, self._pending = self._pending, []
        if not pending or self.path is None:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError:
            return
        try:
            size = os.fstat(fd).st_size
            head = HEADER if size == 0 else b"\0" * (-size % TAG_BYTES)  # pad over a torn tail
            os.write(fd, head + b"".join(pending))
        except OSError:
            pass
        finally:
            os.close(fd)

    def forget(self) -> None:
        """Delete the file (and what this process holds): every signature is checked again."""
        self._tags, self._pending, self._pos = None, [], 0
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


class NoneVerified:
    """No verified set: every signature is checked (the default of a :class:`~cob.change.Codec`)."""

    __slots__ = ()

    def known(self, oid: str, nid: str) -> bool:
        return False

    def add(self, oid: str, nid: str) -> None:
        return None

    def flush(self) -> None:
        return None
