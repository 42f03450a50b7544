"""Fast reads of the cob refs of one repository (:class:`RefReader`).

Listing goes straight to the loose ref files and ``packed-refs`` instead of asking libgit2 for
every ref in the repository: a repository with 100,000 job refs and a few branches should not
pay for the refs it does not ask about. Loose refs are read *before* packed-refs so that a
concurrent ``git pack-refs`` (which writes packed-refs, then deletes the loose file) can never
hide a ref from us. Repositories using reftable fall back to libgit2's iterator.

Here, not in :mod:`cob.refs`: a reader reads each node's index (:mod:`cob.sigrefs`) and falls
back on :mod:`cob.recovery`, both of which write refs through :mod:`cob.refs`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator

import pygit2

from .recovery import entry_at, forget_written, intact_index, recover, written_here
from .refs import NAMESPACES, CobRef, common_dir, is_oid, object_ref, parse_ref
from .sigrefs import entries, index_ref, lookup, parse_index_ref, tree_of

PRESENT_TTL = 5.0  # seconds a reader trusts that an index tip it found is still there
RECENT_S = 3600  # index commits younger than this are checked whole (see RefReader._intact)


class RefReader:
    """Reads the cob refs of one repository: each node's index ref (:mod:`cob.sigrefs`), and
    the per-object refs of the layout before it (*legacy*: read until migrated, never written).

    The parsed ``packed-refs`` is cached by its stat, and only its ``refs/namespaces/`` section
    is parsed (found by bisection in the sorted file): a repository with thousands of branches
    or tags does not pay for them on every command.
    """

    def __init__(self, repo: pygit2.Repository) -> None:
        self.repo = repo
        self.gitdir = common_dir(repo)
        self._packed_stat: tuple[int, int, int] | None = None
        self._packed: dict[str, str] = {}
        self._packed_nids: frozenset[str] = frozenset()  # namespaces in packed-refs, parsed once
        self._packed_index: dict[str, str] = {}  # index refs in packed-refs, parsed once
        self._packed_legacy = False  # packed-refs holds per-object refs
        self._reftable = os.path.isdir(os.path.join(self.gitdir, "reftable"))
        self._packed_path = os.path.join(self.gitdir, "packed-refs")
        self._namespaces_dir = os.path.join(self.gitdir, "refs", "namespaces")
        self._trees: dict[str, pygit2.Tree | None] = {}
        self._present: dict[str, tuple[float, str | None]] = {}  # tip -> (checked, what to read)
        # (index tip, type, object id) -> entry: other nodes' indexes rarely move between two
        # writes of ours, so a write on a 20-node hub looks up its object in one index, not 20.
        self._found: dict[tuple[str, str, str], str | None] = {}

    # -- packed-refs -------------------------------------------------------------------
    def _packed_refs(self) -> dict[str, str]:
        path = self._packed_path
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._packed_stat, self._packed, self._packed_nids = None, {}, frozenset()
            self._packed_index = {}
            self._packed_legacy = False
            return self._packed
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if key != self._packed_stat:
            with open(path, "rb") as f:
                data = f.read()
            refs: dict[str, str] = {}
            for raw in _namespace_section(data).split(b"\n"):
                if raw[:1] in (b"#", b"^", b""):
                    continue
                oid, _, name = raw.decode("utf-8", "replace").partition(" ")
                if name.startswith(NAMESPACES):
                    refs[name] = oid
            self._packed_stat, self._packed = key, refs
            self._packed_index = {}  # {nid: tip} of the index refs, read once per parse
            for name, target in refs.items():
                nid = parse_index_ref(name)
                if nid is not None and name == index_ref(nid):
                    self._packed_index[nid] = target
            self._packed_nids = frozenset(n[len(NAMESPACES) :].split("/", 1)[0] for n in refs)
            self._packed_legacy = any("/refs/cobs/" in n for n in refs)
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

    # -- index refs --------------------------------------------------------------------
    def namespaces(self) -> list[str]:
        """Every NID with at least one ref (loose or packed)."""
        if self._reftable:
            names = self.repo.listall_references()
            return sorted({n[len(NAMESPACES) :].split("/", 1)[0] for n in names if n.startswith(NAMESPACES)})
        found: set[str] = set()
        with contextlib.suppress(FileNotFoundError):
            found.update(os.listdir(os.path.join(self.gitdir, "refs", "namespaces")))
        self._packed_refs()
        found.update(self._packed_nids)  # not a scan of every packed ref on each call
        return sorted(found)

    def index_tips(self) -> dict[str, str]:
        """{nid: tip of its index ref}: one small file per node, plus packed ones."""
        if self._reftable:
            out = {}
            for name in self.repo.listall_references():
                nid = parse_index_ref(name)
                ref = self.repo.references.get(name) if nid else None
                if nid and ref is not None and ref.type == pygit2.enums.ReferenceType.DIRECT:
                    out[nid] = str(ref.target)
            return self._intact(out)
        loose: dict[str, str] = {}
        base = self._namespaces_dir
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for nid in os.listdir(base):
                target = self._read_loose(f"{base}/{nid}/refs/sigrefs")
                if target is not None:
                    loose[nid] = target
        self._packed_refs()  # read *after* the loose refs
        for nid, target in self._packed_index.items():
            loose.setdefault(nid, target)
        return self._intact(loose)

    def _recent(self, tip: str) -> bool:
        """Whether index commit ``tip`` is recent enough that a prune racing its writer may
        have taken part of it (its trees are then checked, not only the commit and tree)."""
        try:
            commit = self.repo[tip]
            when = int(commit.commit_time) if isinstance(commit, pygit2.Commit) else 0
        except (KeyError, ValueError, pygit2.GitError):
            return True
        return abs(time.time() - when) < RECENT_S

    def forget(self) -> None:
        """Drop what this reader remembers of index commits (objects may have vanished)."""
        self._trees.clear()
        self._present.clear()
        self._found.clear()
        forget_written()

    def _intact(self, tips: dict[str, str]) -> dict[str, str]:
        """``tips`` with each one that names no readable commit (pruned by ``git gc`` next
        to a writer) replaced by the newest intact index of that node (:mod:`cob.recovery`),
        or left out when none is known: a broken tip never reads as "no objects". A tip is
        looked up again after :data:`PRESENT_TTL` seconds (a long-lived reader)."""
        now = time.monotonic()
        out = dict(tips)
        for nid, tip in tips.items():
            seen = self._present.get(tip)
            if seen is not None and now - seen[0] < PRESENT_TTL:
                fallback = seen[1]
            else:
                fallback = tip
                if written_here(self.repo, tip):  # by this process: checked without reading it
                    broken = not intact_index(self.repo, tip)
                else:
                    broken = self.tree(tip) is None or (
                        self._recent(tip) and not intact_index(self.repo, tip)
                    )
                if broken:
                    self._trees.pop(tip, None)
                    fallback = recover(self.repo, nid, tip).base
                if len(self._present) > 2 * len(tips) + 256:
                    self._present.clear()
                self._present[tip] = (now, fallback)
            if fallback is None:
                del out[nid]
            else:
                out[nid] = fallback
        return out

    def tree(self, tip: str) -> pygit2.Tree | None:
        """The tree of an index commit, kept for the life of this reader (commits never change)."""
        if tip not in self._trees:
            if len(self._trees) > 2 * len(self._present) + 256:  # about two per node, not per write
                self._trees.clear()
            self._trees[tip] = tree_of(self.repo, tip)
        return self._trees[tip]

    # -- queries -----------------------------------------------------------------------
    def tips(self, typename: str, object_id: str) -> dict[str, str]:
        """{nid: target} of every namespace's entry (or legacy ref) for one object."""
        out: dict[str, str] = {}
        found = self._found
        for nid, tip in self.index_tips().items():
            key = (tip, typename, object_id)
            if key in found:
                target = found[key]
            else:
                if len(found) >= 4096:
                    found.clear()
                target = found[key] = entry_at(
                    self.repo, tip, (typename, object_id), self._lookup(typename, object_id)
                )
            if target is not None:
                out[nid] = target
        for nid, target in self._legacy_tips(typename, object_id).items():
            out.setdefault(nid, target)
        return out

    def _lookup(self, typename: str, object_id: str) -> Callable[[str], str | None]:
        return lambda tip: lookup(self.repo, self.tree(tip), typename, object_id)

    def refs_of_type(self, typename: str) -> list[CobRef]:
        """Every entry of one type, in every namespace (index entries win over legacy refs)."""
        seen: dict[tuple[str, str], CobRef] = {}
        for nid, tip in self.index_tips().items():
            for object_id, target in entries(self.repo, self.tree(tip), typename).items():
                seen[(nid, object_id)] = CobRef(index_ref(nid), nid, typename, object_id, target)
        for ref in self.legacy_refs(typename):
            seen.setdefault((ref.nid, ref.object_id), ref)
        return list(seen.values())

    def objects_of(self, nid: str, typename: str) -> dict[str, str]:
        """{object id: tip} of one node's objects of ``typename``: one index read, whatever
        the other nodes hold."""
        tip = self.index_tips().get(nid)
        out = entries(self.repo, self.tree(tip), typename) if tip else {}
        for ref in self.legacy_refs(typename, nid) if self.has_legacy(nid) else []:
            out.setdefault(ref.object_id, ref.target)
        return out

    def stamp(self, typename: str) -> tuple[str, int]:
        """(token, newest mtime in ns): the token changes whenever an object of ``typename``
        may have been added, moved or removed in any namespace.

        Index refs are compared by value (an oid names its whole tree), so they are never
        "racy". Legacy refs are stat-ed as before: creating, moving or deleting a loose ref
        renames a file in its directory, and packing rewrites packed-refs; the newest mtime
        lets a caller tell a token too fresh to trust (a write in the same tick of the
        filesystem's coarse clock would leave it unchanged).
        """
        heads = ",".join(f"{n}={t}" for n, t in sorted(self.index_tips().items()))
        legacy, newest = self.legacy_stamp(typename)
        return f"{heads}|{legacy}", newest

    # -- legacy per-object refs (the layout before the index; read until migrated) ---------
    def has_legacy(self, nid: str | None = None) -> bool:
        """Whether any per-object ref (of ``nid``, or of anyone) is left to migrate."""
        if self._reftable:
            return any(
                parse_ref(n) and (nid is None or n.startswith(f"{NAMESPACES}{nid}/"))
                for n in self.repo.listall_references()
            )
        nids = [nid] if nid else self._loose_namespace_dirs()
        for one in nids:
            cobs = os.path.join(self.gitdir, "refs", "namespaces", one, "refs", "cobs")
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                for typename in os.listdir(cobs):
                    if os.listdir(os.path.join(cobs, typename)):
                        return True
        packed = self._packed_refs()
        if not self._packed_legacy:
            return False
        prefix = NAMESPACES if nid is None else f"{NAMESPACES}{nid}/refs/cobs/"
        return any(n.startswith(prefix) and parse_ref(n) for n in packed)

    def _loose_namespace_dirs(self) -> list[str]:
        try:
            return os.listdir(self._namespaces_dir)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _legacy_tips(self, typename: str, object_id: str) -> dict[str, str]:
        if self._reftable:
            return {r.nid: r.target for r in self._iter_libgit2(typename) if r.object_id == object_id}
        out: dict[str, str] = {}
        for nid in self._loose_namespace_dirs():
            name = object_ref(nid, typename, object_id)
            target = self._read_loose(f"{self.gitdir}/{name}")
            if target is not None:
                out[nid] = target
        self._packed_refs()
        if not self._packed_legacy:
            return out
        for nid in self._packed_nids:  # read *after* the loose refs (see compare_and_swap)
            if nid not in out:
                target = self._packed.get(object_ref(nid, typename, object_id))
                if target is not None:
                    out[nid] = target
        return out

    def legacy_tip(self, typename: str, object_id: str, nid: str) -> str | None:
        """``nid``'s per-object ref of one object, if it has one left."""
        if not self.has_legacy(nid):
            return None
        return self._legacy_tips(typename, object_id).get(nid)

    def legacy_refs(self, typename: str, nid: str | None = None) -> list[CobRef]:
        """Every per-object ref of one type (of one namespace, or of all)."""
        if self._reftable:
            return [r for r in self._iter_libgit2(typename) if nid is None or r.nid == nid]
        seen: dict[str, CobRef] = {}
        for one in [nid] if nid else self._loose_namespace_dirs():
            tdir = os.path.join(self.gitdir, "refs", "namespaces", one, "refs", "cobs", typename)
            try:
                found = list(os.scandir(tdir))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in found:
                target = self._read_loose(entry.path) if is_oid(entry.name) else None
                if target is not None:
                    name = object_ref(one, typename, entry.name)
                    seen[name] = CobRef(name, one, typename, entry.name, target)
        self._packed_refs()
        if self._packed_legacy:
            for name, target in self._packed.items():
                parsed = parse_ref(name)
                if name not in seen and parsed and parsed[1] == typename and nid in (None, parsed[0]):
                    seen[name] = CobRef(name, parsed[0], typename, parsed[2], target)
        return list(seen.values())

    def legacy_typenames(self, nid: str) -> set[str]:
        """Types with per-object refs in ``nid``'s namespace."""
        found: set[str] = set()
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            found.update(os.listdir(os.path.join(self.gitdir, "refs", "namespaces", nid, "refs", "cobs")))
        self._packed_refs()
        if self._packed_legacy or self._reftable:
            names = self.repo.listall_references() if self._reftable else list(self._packed)
            for name in names:
                parsed = parse_ref(name)
                if parsed and parsed[0] == nid:
                    found.add(parsed[1])
        return found

    def legacy_stamp(self, typename: str) -> tuple[str, int]:
        """The stat stamp of per-object refs ('' with none); see :meth:`stamp`."""
        if self._reftable:
            tdir = os.path.join(self.gitdir, "reftable")
            stats = sorted((e.name, e.stat()) for e in os.scandir(tdir))
            newest = max((st.st_mtime_ns for _, st in stats), default=0)
            return repr([(n, st.st_mtime_ns, st.st_size) for n, st in stats]), newest
        parts: list[str] = []
        newest = 0
        tail = os.path.join("refs", "cobs", typename)
        for nid in sorted(self._loose_namespace_dirs()):
            try:
                st = os.stat(os.path.join(self.gitdir, "refs", "namespaces", nid, tail))
            except (FileNotFoundError, NotADirectoryError):
                continue
            parts.append(f"{nid}:{st.st_mtime_ns}.{st.st_ino}")
            newest = max(newest, st.st_mtime_ns)
        self._packed_refs()
        if self._packed_legacy and self._packed_stat is not None:
            mtime, size, ino = self._packed_stat
            parts.append(f"packed:{mtime}.{size}.{ino}")
            newest = max(newest, mtime)
        return "|".join(parts), newest

    def _iter_libgit2(self, typename: str) -> Iterator[CobRef]:
        for name in self.repo.listall_references():
            parsed = parse_ref(name)
            if parsed is None or (typename and parsed[1] != typename):
                continue
            ref = self.repo.references.get(name)
            if ref is not None and ref.type == pygit2.enums.ReferenceType.DIRECT:
                yield CobRef(name, parsed[0], parsed[1], parsed[2], str(ref.target))


def _namespace_section(data: bytes) -> bytes:
    """The lines of a packed-refs file whose ref names start with ``refs/namespaces/``.

    git writes packed-refs sorted (its header says ``sorted``), so the section is found by
    bisection; an unsorted file (old writers) is read whole.
    """
    header = data[: data.find(b"\n") + 1] if data.startswith(b"#") else b""
    if b" sorted" not in header:
        return data
    prefix = NAMESPACES.encode()

    def name_at(pos: int) -> tuple[bytes, int]:
        """(ref name of the first ref line starting at or after ``pos``, its start)."""
        while pos < len(data):
            end = data.find(b"\n", pos)
            end = len(data) if end < 0 else end
            line = data[pos:end]
            if line[:1] not in (b"#", b"^") and len(line) > 41:
                return line[41:], pos
            pos = end + 1
        return b"\xff", len(data)

    def line_after(pos: int) -> int:
        """The start of the first line starting at or after ``pos``."""
        if pos <= len(header) or data[pos - 1 : pos] == b"\n":
            return max(pos, len(header))
        nl = data.find(b"\n", pos)
        return len(data) if nl < 0 else nl + 1

    def first_at_least(key: bytes) -> int:
        # name_at(line_after(p)) never decreases with p: bisect for the smallest p reaching key.
        lo, hi = len(header), len(data)
        while lo < hi:
            mid = (lo + hi) // 2
            if name_at(line_after(mid))[0] < key:
                lo = mid + 1
            else:
                hi = mid
        return name_at(line_after(lo))[1]

    start = first_at_least(prefix)
    end = first_at_least(prefix[:-1] + bytes([prefix[-1] + 1]))
    return data[start:end]
