"""The ref layout, and fast reads of it.

``refs/namespaces/<NID>/refs/cobs/<TYPENAME>/<object-id>``: one ref per node per object.
Listing goes straight to the loose ref files and ``packed-refs`` instead of asking libgit2 for
every ref in the repository: a repository with 100,000 job refs and a few branches should not
pay for the refs it does not ask about. Loose refs are read *before* packed-refs so that a
concurrent ``git pack-refs`` (which writes packed-refs, then deletes the loose file) can never
hide a ref from us. Repositories using reftable fall back to libgit2's iterator.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pygit2

from .errors import RepositoryError

NAMESPACES = "refs/namespaces/"
_HEX = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def common_dir(repo: pygit2.Repository) -> str:
    """The git directory that holds the refs, objects and our index, without a trailing ``/``.

    For a linked worktree (``git worktree add``) ``repo.path`` is ``.git/worktrees/<name>``,
    which has only that checkout's HEAD and index; everything shared is in the directory its
    ``commondir`` file names. Reading refs from ``repo.path`` showed no jobs at all there.
    """
    gitdir = repo.path.rstrip("/")
    try:
        with open(os.path.join(gitdir, "commondir"), encoding="utf-8") as f:
            target = f.read().strip()
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return gitdir
    if not target:
        return gitdir
    return os.path.normpath(os.path.join(gitdir, target))


def is_oid(text: str) -> bool:
    return bool(_HEX.fullmatch(text))


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
    parts = name[len(NAMESPACES):].split("/")
    if len(parts) != 5 or parts[1] != "refs" or parts[2] != "cobs":
        return None
    nid, _, _, typename, object_id = parts
    if not is_oid(object_id):
        return None
    return nid, typename, object_id


class RefReader:
    """Reads cob refs of one repository, caching the parsed packed-refs by its stat."""

    def __init__(self, repo: pygit2.Repository) -> None:
        self.repo = repo
        self.gitdir = common_dir(repo)
        self._packed_stat: tuple[int, int, int] | None = None
        self._packed: dict[str, str] = {}
        self._packed_nids: frozenset[str] = frozenset()  # namespaces in packed-refs, parsed once
        self._reftable = os.path.isdir(os.path.join(self.gitdir, "reftable"))

    # -- packed-refs -------------------------------------------------------------------
    def _packed_refs(self) -> dict[str, str]:
        path = os.path.join(self.gitdir, "packed-refs")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._packed_stat, self._packed, self._packed_nids = None, {}, frozenset()
            return self._packed
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if key != self._packed_stat:
            refs: dict[str, str] = {}
            with open(path, "rb") as f:
                for raw in f:
                    if raw[:1] in (b"#", b"^"):
                        continue
                    line = raw.decode("utf-8", "replace").rstrip("\n")
                    oid, _, name = line.partition(" ")
                    if name.startswith(NAMESPACES):
                        refs[name] = oid
            self._packed_stat, self._packed = key, refs
            self._packed_nids = frozenset(n[len(NAMESPACES):].split("/", 1)[0] for n in refs)
        return self._packed

    @staticmethod
    def _read_loose(path: str) -> str | None:
        # os.open/os.read: a buffered file object costs more than the read itself here.
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            text = os.read(fd, 100).decode("ascii", "replace").strip()
        except IsADirectoryError:
            return None
        finally:
            os.close(fd)
        return text if is_oid(text) else None

    # -- queries -----------------------------------------------------------------------
    def namespaces(self) -> list[str]:
        """Every NID with at least one ref (loose or packed)."""
        if self._reftable:
            return sorted({r.nid for r in self._iter_libgit2("")})
        found: set[str] = set()
        with contextlib.suppress(FileNotFoundError):
            found.update(os.listdir(os.path.join(self.gitdir, "refs", "namespaces")))
        self._packed_refs()
        found.update(self._packed_nids)  # not a scan of every packed ref on each call
        return sorted(found)

    def tips(self, typename: str, object_id: str) -> dict[str, str]:
        """{nid: target} of every namespace's ref for one object."""
        if self._reftable:
            return {r.nid: r.target for r in self._iter_libgit2(typename) if r.object_id == object_id}
        out: dict[str, str] = {}
        nids = self.namespaces()
        for nid in nids:
            name = object_ref(nid, typename, object_id)
            target = self._read_loose(os.path.join(self.gitdir, name))
            if target is not None:
                out[nid] = target
        if len(out) == len(nids):
            return out  # every namespace had a loose ref: packed-refs cannot add one
        packed = self._packed_refs()  # read again, *after* the loose refs (see module doc)
        for nid in nids:
            if nid not in out:
                target = packed.get(object_ref(nid, typename, object_id))
                if target is not None:
                    out[nid] = target
        return out

    def _loose_type_dirs(self, typename: str) -> Iterator[tuple[str, str]]:
        """(nid, directory of that namespace's loose refs of ``typename``) per namespace dir."""
        base = os.path.join(self.gitdir, "refs", "namespaces")
        try:
            nids = os.listdir(base)
        except FileNotFoundError:
            return
        for nid in nids:
            yield nid, os.path.join(base, nid, "refs", "cobs", typename)

    def refs_of_type(self, typename: str) -> list[CobRef]:
        """Every ref of one type, in every namespace."""
        if self._reftable:
            return list(self._iter_libgit2(typename))
        seen: dict[str, CobRef] = {}
        for nid, tdir in self._loose_type_dirs(typename):
            try:
                entries = list(os.scandir(tdir))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if not is_oid(entry.name):
                    continue
                target = self._read_loose(entry.path)
                if target is not None:
                    name = object_ref(nid, typename, entry.name)
                    seen[name] = CobRef(name, nid, typename, entry.name, target)
        for name, target in self._packed_refs().items():
            if name in seen:
                continue
            parsed = parse_ref(name)
            if parsed and parsed[1] == typename:
                seen[name] = CobRef(name, parsed[0], typename, parsed[2], target)
        return list(seen.values())

    def _iter_libgit2(self, typename: str) -> Iterator[CobRef]:
        for name in self.repo.listall_references():
            parsed = parse_ref(name)
            if parsed is None or (typename and parsed[1] != typename):
                continue
            ref = self.repo.references.get(name)
            if ref is not None and ref.type == pygit2.enums.ReferenceType.DIRECT:
                yield CobRef(name, parsed[0], parsed[1], parsed[2], str(ref.target))

    def stamp(self, typename: str) -> tuple[str, int]:
        """(token, newest mtime in ns): the token changes whenever an object of ``typename``
        may have been added or removed in any namespace. Creating, moving or deleting a loose
        ref renames a file in its directory (changing the directory's mtime) and packing
        rewrites packed-refs, so stat-ing those is enough.

        The newest mtime lets a caller tell a token that is too fresh to trust: a write in the
        same tick of the filesystem's coarse clock would leave it unchanged.
        """
        if self._reftable:
            tdir = os.path.join(self.gitdir, "reftable")
            entries = sorted((e.name, e.stat()) for e in os.scandir(tdir))
            newest = max((st.st_mtime_ns for _, st in entries), default=0)
            return repr([(n, st.st_mtime_ns, st.st_size) for n, st in entries]), newest
        parts: list[str] = []
        newest = 0
        base = os.path.join(self.gitdir, "refs", "namespaces")
        for path in (os.path.join(self.gitdir, "packed-refs"), base):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                parts.append("-")
                continue
            parts.append(f"{st.st_mtime_ns}.{st.st_size}.{st.st_ino}")
            newest = max(newest, st.st_mtime_ns)
        try:
            nids = sorted(os.listdir(base))
        except FileNotFoundError:
            nids = []
        tail = os.path.join("refs", "cobs", typename)
        for nid in nids:
            try:
                st = os.stat(os.path.join(base, nid, tail))
            except (FileNotFoundError, NotADirectoryError):
                continue
            parts.append(f"{nid}:{st.st_mtime_ns}.{st.st_ino}")
            newest = max(newest, st.st_mtime_ns)
        return "|".join(parts), newest

    def object_ids(self, typename: str) -> set[str]:
        """Ids of every object of ``typename`` with a ref in some namespace.

        Only directory names are read, not the ref files: which objects exist does not depend
        on where their refs point, and listing is what makes a rescan of 50,000 refs cheap.
        """
        if self._reftable:
            return {r.object_id for r in self._iter_libgit2(typename)}
        found: set[str] = set()
        for _, tdir in self._loose_type_dirs(typename):
            try:
                names = os.listdir(tdir)
            except (FileNotFoundError, NotADirectoryError):
                continue
            found.update(n for n in names if len(n) in (40, 64) and is_oid(n))
        for name in self._packed_refs():
            parsed = parse_ref(name)
            if parsed is not None and parsed[1] == typename:
                found.add(parsed[2])
        return found


# A ``<ref>.lock`` older than this, while no git-jobs writer is inside compare_and_swap, was
# left by a writer that died (SIGKILL, power loss) and is removed. libgit2 holds a ref lock for
# microseconds; the age also protects locks taken by stock git (fetch, pack-refs), which does not
# take our writers' lock.
STALE_LOCK_SECONDS = 2.0
WRITERS_LOCK = "git-jobs-writers.lock"


@contextlib.contextmanager
def _writers_lock(gitdir: str, exclusive: bool) -> Iterator[bool]:
    """flock on ``<gitdir>/git-jobs-writers.lock``: shared while writing a ref, exclusive
    (non-blocking; yields False when busy) to clear a stale lock. The kernel drops a dead
    process's flock, so "exclusive acquired" means no live writer of ours holds a ref lock."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no stale-lock recovery, plain writes still work
        yield not exclusive
        return
    try:
        fd = os.open(os.path.join(gitdir, WRITERS_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
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


def compare_and_swap(repo: pygit2.Repository, name: str, new: str, old: str | None, message: str) -> bool:
    """Move ``name`` from ``old`` (None: absent) to ``new`` atomically. False on a lost race.

    libgit2 takes ``<ref>.lock`` with O_EXCL and re-checks the current value under the lock,
    so two processes can never both win. A lost race caused by a stale lock (its writer died)
    clears that lock, so the caller's retry can win (see :func:`clear_stale_lock`).
    """
    with _writers_lock(common_dir(repo), exclusive=False):
        won = _compare_and_swap(repo, name, new, old, message)
    if not won:
        clear_stale_lock(repo, name)
    return won


def _compare_and_swap(
    repo: pygit2.Repository, name: str, new: str, old: str | None, message: str
) -> bool:
    try:
        if old is None:
            repo.create_reference_direct(name, pygit2.Oid(hex=new), False, message=message)
            return True
        ref = repo.references.get(name)
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

