"""The ref layout, and moving refs safely.

``refs/namespaces/<NID>/refs/cobs/<TYPENAME>/<object-id>``: one ref per node per object (the
layout before each node's index, :mod:`cob.sigrefs`). Refs move only by compare-and-swap
(:func:`compare_and_swap`), under a shared writers' lock that lets a stale ``<ref>.lock`` be
cleared. Fast reads of the refs are :class:`cob.reader.RefReader`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pygit2

from . import layout
from .errors import RepositoryError
from .indexlog import record_move
from .syntax import is_oid as is_oid  # re-exported: cob.refs.is_oid is public

NAMESPACES = "refs/namespaces/"


def common_dir(repo: pygit2.Repository) -> str:
    """The git directory that holds the refs, objects and our index, without a trailing ``/``.

    For a linked worktree (``git worktree add``) ``repo.path`` is ``.git/worktrees/<name>``,
    which has only that checkout's HEAD and index; everything shared is in the directory its
    ``commondir`` file names. Reading refs from ``repo.path`` showed no jobs at all there.
    """
    found = _COMMON.get(repo.path)
    if found is None:
        if len(_COMMON) >= 256:
            _COMMON.clear()
        found = _COMMON[repo.path] = _read_common_dir(repo.path.rstrip("/"))
    return found


_COMMON: dict[str, str] = {}  # by repo.path: a git directory's commondir never changes (a write asks twice)


def _read_common_dir(gitdir: str) -> str:
    try:
        with open(os.path.join(gitdir, "commondir"), encoding="utf-8") as f:
            target = f.read().strip()
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return gitdir
    if not target:
        return gitdir
    return os.path.normpath(os.path.join(gitdir, target))


def is_ancestor(repo: pygit2.Repository, ancestor: str, of: str) -> bool:
    """True when commit ``ancestor`` is reached from ``of`` (not ``of`` itself); a missing or
    malformed object is just False: peer data never raises out of a ref decision."""
    try:
        return bool(repo.descendant_of(pygit2.Oid(hex=of), pygit2.Oid(hex=ancestor)))
    except (pygit2.GitError, KeyError, ValueError):
        return False


def object_ref(nid: str, typename: str, object_id: str) -> str:
    return f"{NAMESPACES}{nid}/refs/cobs/{typename}/{object_id}"


@dataclass(frozen=True, slots=True)
class CobRef:
    name: str
    nid: str
    typename: str
    object_id: str
    target: str


def parse_ref(name: str) -> tuple[str, str, str] | None:
    """(nid, typename, object_id) of a cob ref name, or None if it is not one."""
    if not name.startswith(NAMESPACES):
        return None
    parts = name[len(NAMESPACES) :].split("/")
    if len(parts) != 5 or parts[1] != "refs" or parts[2] != "cobs":
        return None
    nid, _, _, typename, object_id = parts
    if not is_oid(object_id):
        return None
    return nid, typename, object_id


# A ``<ref>.lock`` older than this, while no writer of ours is inside compare_and_swap, was
# left by a writer that died (SIGKILL, power loss) and is removed. libgit2 holds a ref lock for
# microseconds; the age also protects locks taken by stock git (fetch, pack-refs), which does not
# take our writers' lock.
STALE_LOCK_SECONDS = 2.0
WRITERS_LOCK = "writers.lock"  # <gitdir>/<layout prefix>-writers.lock (cob.layout)


_LOCK_PATHS: dict[tuple[str, str], str] = {}  # by (gitdir, layout prefix)


def _lock_path(gitdir: str) -> str:
    name = layout.current().file(WRITERS_LOCK)
    found = _LOCK_PATHS.get((gitdir, name))
    if found is None:
        if len(_LOCK_PATHS) >= 256:
            _LOCK_PATHS.clear()
        found = _LOCK_PATHS[(gitdir, name)] = os.path.join(gitdir, name)
    return found


@contextlib.contextmanager
def _writers_lock(gitdir: str, exclusive: bool) -> Iterator[bool]:
    """flock on ``<gitdir>/<prefix>-writers.lock`` (:mod:`cob.layout`): shared while writing a ref, exclusive
    (non-blocking; yields False when busy) to clear a stale lock. The kernel drops a dead
    process's flock, so "exclusive acquired" means no live writer of ours holds a ref lock."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no stale-lock recovery, plain writes still work
        yield not exclusive
        return
    try:
        fd = os.open(_lock_path(gitdir), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield not exclusive
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB if exclusive else fcntl.LOCK_SH)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def clear_stale_lock(repo: pygit2.Repository, name: str, max_age: float = STALE_LOCK_SECONDS) -> bool:
    """Remove ``<name>.lock`` if it is older than ``max_age`` and no writer of ours is live.

    Returns True when a lock was removed. Called after a lost compare-and-swap, so a writer
    killed while holding a ref lock blocks that ref for ``max_age`` seconds, not forever.
    """
    gitdir = common_dir(repo)
    path = os.path.join(gitdir, name + ".lock")
    try:
        st = os.stat(path)
    except OSError:
        return False
    if time.time() - st.st_mtime < max_age:
        return False
    with _writers_lock(gitdir, exclusive=True) as alone:
        if not alone:
            return False
        try:
            if os.stat(path).st_ino != st.st_ino:
                return False
            os.unlink(path)
        except OSError:
            return False
    return True


def compare_and_swap(
    repo: pygit2.Repository,
    name: str,
    new: str,
    old: str | None,
    message: str,
    *,
    updates: Mapping[tuple[str, str], str | None] | None = None,
) -> bool:
    """Move ``name`` from ``old`` (None: absent) to ``new`` atomically. False on a lost race.

    libgit2 takes ``<ref>.lock`` with O_EXCL and re-checks the current value under the lock,
    so two processes can never both win. A lost race caused by a stale lock (its writer died)
    clears that lock, so the caller's retry can win (see :func:`clear_stale_lock`). A move of
    an index ref is recorded in the local index log (:mod:`cob.recovery`; ``updates``: the
    entries it set), so that a tip git's prune deletes falls back to an intact one.
    """
    with _writers_lock(common_dir(repo), exclusive=False):
        won = _compare_and_swap(repo, name, new, old, message)
    if not won:
        clear_stale_lock(repo, name)
    elif name.startswith(NAMESPACES) and name.endswith("/refs/sigrefs"):
        record_move(common_dir(repo), name[len(NAMESPACES) : -len("/refs/sigrefs")], old, new, updates)
    return won


def _compare_and_swap(repo: pygit2.Repository, name: str, new: str, old: str | None, message: str) -> bool:
    try:
        if old is None:
            repo.create_reference_direct(name, pygit2.Oid(hex=new), False, message=message)
            return True
        ref = repo.references.get(sys.intern(name))  # pygit2 keeps a reference to the name
        if ref is None or str(ref.target) != old:
            return False
        ref.set_target(new, message)
        return True
    except pygit2.AlreadyExistsError:
        return False
    except pygit2.GitError as e:
        text = str(e)
        if "lock" in text or "modified" in text or "exists" in text or "old reference" in text:
            return False
        raise RepositoryError(f"cannot update {name}: {text}") from None
    except (ValueError, OSError) as e:  # pygit2 maps GIT_EMODIFIED / GIT_ELOCKED to these
        text = str(e)
        if "lock" in text or "modified" in text or "changed" in text:
            return False
        raise RepositoryError(f"cannot update {name}: {text}") from None
