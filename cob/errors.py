"""Typed errors of the `cob` package.

Every failure a caller can see derives from :class:`CobError`, so a program (or the CLI) can
turn any of them into one clear line. Peer data never raises: it is *rejected* and reported
(see :class:`cob.store.Rejection`); these errors are for callers and for the local machine.
"""

from __future__ import annotations


class CobError(Exception):
    """Base class of every error raised by `cob`."""


class KeyFileError(CobError):
    """A private key is missing, unreadable, encrypted, or not Ed25519. Names the path."""


class NoKeyError(KeyFileError):
    """No key resolved through the documented order, or a write was attempted without one."""


class InvalidNidError(CobError):
    """A string is not a node id (`z6Mk…` or `did:key:z6Mk…` for an Ed25519 key)."""


class SignatureError(CobError):
    """An SSH signature is malformed or does not verify."""


class UnknownObjectError(CobError):
    """No ref of this type names this object id."""


class InvalidOpsError(CobError):
    """Operations given by a caller do not fit the type's structs or rules; nothing was written."""


class ConflictError(CobError):
    """A compare-and-swap ref update kept losing races; nothing was written."""


class RepositoryError(CobError):
    """The path is not a Git repository, or Git refused an I/O operation."""


class TransportError(CobError):
    """A fetch or push could not talk to the remote (network, protocol, permissions)."""


class CacheBusyError(RepositoryError):
    """The SQLite cache stayed locked by another process past the bounded wait: the store
    reads from Git instead (the cache is an accelerator only)."""
