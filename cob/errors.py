"""Typed errors of the `cob` package.

Every failure a caller can see derives from :class:`CobError`, so a program (or the CLI) can
turn any of them into one clear line. Peer data never raises: it is *rejected* and reported
(see :class:`cob.store.Rejection`); these errors are for callers and for the local machine.

The tree, each with when it is raised (decide on the class, never on the message)::

    CobError                 base of everything below: catch it to report any cob failure
    ├── KeyFileError         a key file is missing, unreadable, encrypted or not Ed25519
    │   └── NoKeyError       no key resolved, or a write on a store opened without a signer
    ├── InvalidNidError      a string is not a node id (``z6Mk…`` or ``did:key:z6Mk…``)
    ├── SignatureError       an SSH signature (SSHSIG) is malformed or does not verify
    ├── UnknownObjectError   no ref of the type names the object id asked for
    ├── InvalidOpsError      a caller's ops do not fit the type's structs or rules; nothing written
    ├── ConflictError        a ref kept losing compare-and-swap races, or our own index on a
    │                        remote diverged beyond a merge; nothing written
    ├── RepositoryError      not a Git repository, or Git refused a local read or write
    │   └── CacheBusyError   the SQLite cache stayed locked past the bounded wait (the store
    │                        then reads from Git: the cache is an accelerator only)
    └── TransportError       a fetch or push could not talk to the remote (network, protocol,
                             permissions, a timeout)

Two exceptions are signals inside an evaluation, not errors a caller sees (they derive from
``Exception`` only, and a load turns them into a reported rejection):

    cob.Reject               raised by a type's ``validate`` to refuse a change (its reason)
    cob.InvalidChangeError   a commit is not a valid change (signature, manifest, ops); has
                             a ``kind`` (:class:`cob.RejectKind`)
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
