"""The quarantine: a scratch repository that receives a fetch's objects; only what the accepted
tips reach leaves it."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterable, Mapping

import pygit2

from .. import layout
from ..errors import TransportError
from ..family import RefFamily, family_of
from ..gitrun import describe, first_error, run_git
from ..refs import is_oid
from ..sigrefs import (
    parse_index_ref,
)
from .checks import (
    _local_target,
    ref_problem,
)
from .limits import Limits
from .listing import _gitdir, _owner
from .localhub import loose_is_regular, objects_dir
from .results import FETCH, FetchResult, Refusal, RefusalKind

QUARANTINE = "quarantine"  # <gitdir>/<layout prefix>-quarantine/<pid>-<hex>/: see _Quarantine


def _config_quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


# The quarantine's fetch: one pack (a few files to delete, not a directory per object); only our
# refspecs (--refmap= stops git from also moving refs through a configured fetch refspec); no
# prune, tags or submodules; progress lines are how a slow transfer shows it is alive.
_QUARANTINE_FETCH = (
    "-c",
    "fetch.unpackLimit=1",
    "fetch",
    "--refmap=",
    "--no-prune",
    "--no-tags",
    "--no-recurse-submodules",
    "--no-write-fetch-head",
    "--no-auto-maintenance",
    "--progress",
    "--stdin",
)


class _Quarantine:
    """A scratch repository that borrows this one's objects (``objects/info/alternates``).

    Fetched objects land there, not here. Tips are checked there (it sees both object sets);
    only the objects the accepted tips reach are then fetched into the real repository, and the
    scratch directory — with whatever a refused tip brought — is deleted. So a peer cannot park
    a commit of its own in our object store by pointing a ref we refuse at it. Git's own
    ``receive-pack`` quarantine works the same way.
    """

    def __init__(
        self,
        repo: pygit2.Repository,
        timeout: float | None,
        idle: float | None,
        own_nid: str | None = None,
        trust: set[str] | None = None,
        hub: pygit2.Repository | None = None,
    ) -> None:
        self.repo = repo
        self.hub = hub  # the remote, opened in place (cob.sync.localhub): borrowed, not fetched
        self.own_nid = own_nid
        self.trust = trust
        self.timeout = timeout
        self.idle = idle
        self.tag = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.gitdir = os.path.join(_gitdir(repo), layout.current().file(QUARANTINE), self.tag)
        self.staged: dict[str, str] = {}
        self._staging: dict[str, str] = {}  # remote ref -> its staging ref in the quarantine
        self.checked: dict[str, tuple[str | None, str]] = {}  # ref -> (old, new) that passed
        self.unsendable: set[str] = set()  # refs the remote listed but could not send
        self._scratch: pygit2.Repository | None = None

    def __enter__(self) -> _Quarantine:
        return self

    def __exit__(self, *exc: object) -> None:
        self._scratch = None
        shutil.rmtree(self.gitdir, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(self.gitdir))

    def _create(self, borrowed: str | None = None) -> None:
        """The smallest bare repository git accepts, written by hand: ``git init`` copies its
        templates (sample hooks), which cost more to create and delete than a small fetch.
        ``borrowed``: a local hub's object directory, read through ``alternates`` too."""
        if os.path.isdir(self.gitdir):
            return
        main = os.path.abspath(_gitdir(self.repo))
        os.makedirs(os.path.join(self.gitdir, "objects", "info"))
        os.makedirs(os.path.join(self.gitdir, "refs"))
        with open(os.path.join(self.gitdir, "objects", "info", "alternates"), "w") as f:
            f.write(os.path.join(main, "objects") + "\n" + (f"{borrowed}\n" if borrowed else ""))
        with open(os.path.join(self.gitdir, "HEAD"), "w") as f:
            f.write("ref: refs/heads/main\n")
        # The repository's own config first (remote names, insteadOf, credential helpers),
        # then the scratch repository's, which wins (it is bare).
        with open(os.path.join(self.gitdir, "config"), "w") as f:
            f.write(
                f'[include]\n\tpath = "{_config_quote(os.path.join(main, "config"))}"\n'
                "[core]\n\trepositoryformatversion = 0\n\tbare = true\n"
                # No listing of the borrowed repository's refs (a git process, twice per
                # fetch): the tips to negotiate with are our own refs (_write_haves). `true`
                # prints no tip; were it missing, git would go on without alternate tips.
                "\talternateRefsCommand = true\n"
            )

    def fetch(
        self, remote: str, wanted: Mapping[str, str], *, retry: bool, haves: Iterable[str] = ()
    ) -> bool:
        """Download ``wanted`` into the quarantine; False when a ref vanished (list again).
        ``haves``: the tips this repository holds of the refs the remote lists (what git
        tells the remote we have)."""
        if self.hub is not None and self._borrow(wanted):
            return True
        self._create()
        self._write_haves(haves)
        names = sorted(wanted)
        # Staging refs are flat (refs/<prefix>-staging/<n>): one directory to create and delete.
        staging = layout.current().staging_refs
        lines = [f"+{n}:{staging}{i}\n" for i, n in enumerate(names)]
        self._staging = {n: f"{staging}{i}" for i, n in enumerate(names)}
        res = run_git(
            self.gitdir,
            [*_QUARANTINE_FETCH, remote],
            stdin="".join(lines),
            timeout=self.timeout,
            idle=self.idle,
        )
        if res.returncode != 0:
            message = first_error(res.stderr)
            if "couldn't find remote ref" in message and retry:
                return False
            raise TransportError(f"cannot fetch from {describe(remote)}: {message}")
        scratch = self.scratch()
        for name in names:
            target = _local_target(scratch, self._staging[name])
            if target is not None:
                self.staged[name] = target
        return True

    def _borrow(self, wanted: Mapping[str, str]) -> bool:
        """Take ``wanted`` from the local hub in place (:mod:`cob.sync.localhub`): the
        quarantine reads the hub's objects too. What the tips reach and this repository lacks
        must all be there, within the copy's bounds; otherwise (False) the quarantine is made
        again without the hub, and git fetches."""
        assert self.hub is not None
        borrowed = objects_dir(self.hub)
        self._create(borrowed)
        names = sorted(wanted)
        if not _reached(self.scratch(), self.repo, [wanted[n] for n in names], borrowed):
            self.hub = None
            self.__exit__()
            return False
        self.staged.update(wanted)
        return True

    def _write_haves(self, haves: Iterable[str]) -> None:
        """The tips git negotiates with, as the quarantine's own refs (``refs/<prefix>-have/``,
        one packed-refs file). Git would otherwise ask the borrowed repository for every ref it
        holds, by running ``git for-each-ref`` there twice per fetch (to negotiate, then for
        the connectivity check): ``core.alternateRefsCommand`` (see :meth:`_create`) turns that
        off. Git still checks that what it received connects to these tips."""
        base = f"refs/{layout.current().prefix}-have/"
        lines = [f"{oid} {base}{i}\n" for i, oid in enumerate(sorted(set(haves))) if is_oid(oid)]
        with open(os.path.join(self.gitdir, "packed-refs"), "w") as f:
            f.write("# pack-refs with: peeled fully-peeled sorted \n" + "".join(sorted(lines, key=_ref_name)))

    def _copy_reached(self, tips: Iterable[str]) -> bool:
        try:
            return _copy_objects(self.scratch(), self.repo, tips)
        except (KeyError, ValueError, pygit2.GitError):
            return False  # let git fetch say what is wrong

    def scratch(self) -> pygit2.Repository:
        if self._scratch is None:
            self._scratch = pygit2.Repository(self.gitdir)
        return self._scratch

    def check(
        self,
        wanted: Mapping[str, str],
        result: FetchResult,
        families: tuple[RefFamily, ...] = (),
        limits: Limits | None = None,
    ) -> dict[str, str]:
        """{ref: tip} of the received tips that may be taken; the others are refused."""
        passed: dict[str, str] = {}
        for name in sorted(wanted):
            new = self.staged.get(name)
            if new is None:
                continue  # not received: _apply reports it
            nid, _, object_id = _owner(name, families)
            old = _local_target(self.repo, name)
            trusted = self.trust is None or nid in self.trust
            problem = ref_problem(
                self.scratch(), name, nid, object_id, old, new, limits, self.own_nid, families, trusted
            )
            if problem is None:
                passed[name] = new
                self.checked[name] = (old, new)
                continue
            kind, why = problem
            own_kind = parse_index_ref(name) is not None or family_of(name, families) is not None
            if kind is RefusalKind.OWN_NAMESPACE and own_kind:
                passed[name] = new  # signed by us: its objects are kept to merge (see _apply)
                continue
            result.refused.append(Refusal(name, why, FETCH, kind, _local_target(self.repo, name), new))
        return passed

    def migrate(self, passed: Mapping[str, str]) -> None:
        """Move what the accepted tips reach into the repository: copied object by object when
        that is little (one new change is a handful of objects, and a second ``git fetch``
        cost more than the first), else by a local fetch."""
        if not passed or self._copy_reached(passed.values()):
            return
        if self.hub is not None:
            # Never git on a quarantine that borrows the hub: git would take the hub's
            # commit-graph, bitmaps and multi-pack-index as true, and a forged one makes it
            # send objects no accepted tip reaches (an unsigned commit parked here).
            raise TransportError("cannot keep the fetched objects: the hub's objects cannot be read in place")
        lines = "".join(f"{self._staging[n]}\n" for n in sorted(passed))
        res = run_git(
            _gitdir(self.repo),
            [
                "fetch",
                "--refmap=",
                "--no-tags",
                "--no-write-fetch-head",
                "--no-auto-maintenance",
                "--quiet",
                "--stdin",
                self.gitdir,
            ],
            stdin=lines,
            timeout=self.timeout,
        )
        if res.returncode != 0:
            raise TransportError(f"cannot keep the fetched objects: {first_error(res.stderr)}")


def _ref_name(line: str) -> str:
    return line.split(" ", 1)[1]


MAX_COPIED_OBJECTS = 2_000  # beyond this many new objects, or bytes, migrate() lets git fetch them
MAX_COPIED_BYTES = 1 << 20


def _reached(
    scratch: pygit2.Repository, main: pygit2.Repository, tips: Iterable[str], borrowed: str | None = None
) -> bool:
    """Whether every object ``tips`` reach that ``main`` lacks is in ``scratch``, within
    :func:`_copy_objects`' bounds: the connectivity check ``git fetch`` makes, for objects
    borrowed rather than received. ``borrowed``: the hub's object directory, whose loose
    objects must be regular files (libgit2 would block on a FIFO for good)."""
    try:
        return _walk(scratch, main, tips, borrowed) is not None
    except (KeyError, ValueError, pygit2.GitError):
        return False


def _copy_objects(scratch: pygit2.Repository, main: pygit2.Repository, tips: Iterable[str]) -> bool:
    """Copy into ``main`` every object ``tips`` reach in ``scratch`` that ``main`` lacks; False
    (having copied nothing) when that is more than :data:`MAX_COPIED_OBJECTS` objects or
    :data:`MAX_COPIED_BYTES` bytes. A commit or tree ``main`` already has is not entered: what
    it reaches is there too (git's own assumption), which holds because every object is
    written after everything it names (a crash midway leaves no commit without its parents)."""
    roots = [pygit2.Oid(hex=t) for t in tips]
    children = _walk(scratch, main, roots)
    if children is None:
        return False
    for oid in _dependencies_first(roots, children):
        kind, data = scratch.odb.read(oid)
        main.odb.write(kind, data)
    return True


def _walk(
    scratch: pygit2.Repository,
    main: pygit2.Repository,
    tips: Iterable[str | pygit2.Oid],
    borrowed: str | None = None,
) -> dict[pygit2.Oid, list[pygit2.Oid]] | None:
    """{object: the objects it names} of what ``tips`` reach in ``scratch`` and ``main``
    lacks; None beyond :data:`MAX_COPIED_OBJECTS` objects or :data:`MAX_COPIED_BYTES` bytes.
    KeyError: an object is missing (or, in ``borrowed``, not a regular file)."""
    children: dict[pygit2.Oid, list[pygit2.Oid]] = {}
    stack = [t if isinstance(t, pygit2.Oid) else pygit2.Oid(hex=t) for t in tips]
    budget = MAX_COPIED_BYTES
    while stack:
        oid = stack.pop()
        if oid in children or oid in main.odb:
            continue
        if borrowed is not None and not loose_is_regular(borrowed, str(oid)):
            raise KeyError(str(oid))
        kind, size = scratch.odb.read_header(oid)  # from the header: a big blob is never inflated
        budget -= size
        if len(children) >= MAX_COPIED_OBJECTS or budget < 0:
            return None
        named: list[pygit2.Oid] = []
        if kind != pygit2.enums.ObjectType.BLOB:
            obj = scratch[oid]
            if isinstance(obj, pygit2.Commit):
                named = [obj.tree_id, *obj.parent_ids]
            elif isinstance(obj, pygit2.Tree):
                named = [e.id for e in obj if e.filemode != pygit2.enums.FileMode.COMMIT]
        children[oid] = named
        stack.extend(named)
    return children


def _dependencies_first(
    roots: list[pygit2.Oid], children: Mapping[pygit2.Oid, list[pygit2.Oid]]
) -> list[pygit2.Oid]:
    """The objects of ``children`` in post-order: each after every object it names."""
    order: list[pygit2.Oid] = []
    placed: set[pygit2.Oid] = set()
    for root in roots:
        stack: list[tuple[pygit2.Oid, bool]] = [(root, False)]
        while stack:
            oid, done = stack.pop()
            if done:
                order.append(oid)
                continue
            if oid in placed or oid not in children:
                continue
            placed.add(oid)
            stack.append((oid, True))
            stack.extend((c, False) for c in children[oid] if c not in placed)
    return order


def _clean_stale(repo: pygit2.Repository, timeout: float | None) -> None:
    """Delete what a sync whose process died (kill -9, power loss) left: its quarantine
    directory, and staging refs of older versions, which fetched into the repository itself."""
    gitdir = _gitdir(repo)
    base = os.path.join(gitdir, layout.current().file(QUARANTINE))
    staging = layout.current().staging_refs
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for tag in os.listdir(base):
            pid_text = tag.split("-", 1)[0]
            if not (pid_text.isdigit() and _alive(int(pid_text))):
                shutil.rmtree(os.path.join(base, tag), ignore_errors=True)
    packed = os.path.join(gitdir, "packed-refs")
    loose = os.path.join(gitdir, staging.rstrip("/"))
    if not os.path.isdir(loose):
        try:
            with open(packed, "rb") as f:
                if staging.encode() not in f.read():
                    return
        except FileNotFoundError:
            return
    res = run_git(gitdir, ["for-each-ref", "--format=%(refname)", staging], timeout=timeout)
    stale = []
    for name in res.stdout.split():
        tag = name[len(staging) :].split("/", 1)[0]
        pid_text = tag.split("-", 1)[0]
        if pid_text.isdigit() and _alive(int(pid_text)):
            continue
        stale.append(name)
    if stale:
        commands = "".join(f"delete {name}\n" for name in stale)
        run_git(gitdir, ["update-ref", "--stdin"], stdin=commands, timeout=timeout)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
