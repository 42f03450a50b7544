"""One signed index ref per node: ``refs/namespaces/<NID>/refs/sigrefs``.

A ref per (node, object) made refs grow as nodes x objects, and git's fetch, push and every
ref read grow with refs. Instead each node keeps one fast-forward-only chain of *index
commits* (the idea of Radicle's ``rad/sigrefs``: one signed statement per node of where all
its objects are). An index commit:

* has a tree ``<typename>/<id[:2]>/<id>`` whose leaves are gitlinks (mode 160000) naming the
  node's tip change of each object — the map object id -> tip;
* has as first parent the previous index commit, and as further parents every tip that
  differs from the first parent's tree, so that the index reaches every change of the node
  (fetch, push and gc follow parents, never gitlinks). The chain starts with a commit with
  no parents and an empty tree, so a first parent is always an index commit;
* is signed by the node (SSHSIG, author and committer its NID) like a change.

Because each commit names its predecessor, the tip's signature vouches for the whole chain:
a hub can neither forge an entry nor move one back without breaking the fast-forward.
"""

from __future__ import annotations

import random
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import pygit2

from . import sshsig
from .change import MALFORMED_ERRORS, commit_buffer
from .refs import NAMESPACES, is_oid
from .syntax import is_typename as is_typename  # re-exported

KIND = "sigrefs"
MESSAGE = "cob: index\n"  # every index commit's message; a change never has it (cob.change)
# Local only, never synced: the last index tip of ours a push delivered. A merge of our own
# index as a remote holds it (cob.migrate.merge_own) is only safe while nothing of our local
# chain was published: peers that took it would refuse the merged chain.
# Its name is the layout's (cob.layout.Layout.published_ref).
GITLINK = pygit2.enums.FileMode.COMMIT
TREE = pygit2.enums.FileMode.TREE
# Index commits one walk of a chain may visit: every write adds one, so years of a busy node.
MAX_CHAIN = 100_000_000
# New tips one index commit names as parents; more are spread over a chain of commits.
MAX_NEW_PER_COMMIT = 255
_FANOUT = re.compile(r"^[0-9a-f]{2}$")

Key = tuple[str, str]  # (typename, object id)


def index_ref(nid: str) -> str:
    return f"{NAMESPACES}{nid}/refs/{KIND}"


def parse_index_ref(name: str) -> str | None:
    """The NID of an index ref name, or None."""
    if not name.startswith(NAMESPACES) or not name.endswith(f"/refs/{KIND}"):
        return None
    nid = name[len(NAMESPACES) : -len(f"/refs/{KIND}")]
    return nid if nid and "/" not in nid else None


def entry_path(typename: str, object_id: str) -> str:
    return f"{typename}/{object_id[:2]}/{object_id}"


# -- reading ---------------------------------------------------------------------------------
def tree_of(repo: pygit2.Repository, tip: str | None) -> pygit2.Tree | None:
    """The tree of index commit ``tip``; None when absent, not a commit, or unreadable."""
    if tip is None:
        return None
    try:
        obj = repo[tip]
        return obj.tree if isinstance(obj, pygit2.Commit) else None
    except MALFORMED_ERRORS:
        return None


def _entry(tree: pygit2.Tree, name: str) -> pygit2.Object | None:
    """The entry ``name`` of ``tree`` as libgit2's lookup finds it (a binary search), or None.

    Every reader uses this one rule, also when listing (a name read while iterating counts
    only as what this lookup returns for it): on an unsorted or repeated-name tree, which
    plain git can bring in (sync refuses it), listing and looking up still agree. A lookup
    costs a fraction of a microsecond; reading a 256-entry directory entry by entry ~200.
    """
    try:
        return tree[sys.intern(name)]  # pygit2 keeps a reference to the name: a fresh str per call would leak
    except (KeyError, *MALFORMED_ERRORS):
        return None


def _subtree(repo: pygit2.Repository, tree: pygit2.Tree | None, name: str) -> pygit2.Tree | None:
    """A subtree by name; None when absent, not a tree, or unreadable (git takes tree entries
    libgit2 cannot parse: a peer's data never raises out of a read)."""
    if tree is None:
        return None
    entry = _entry(tree, name)
    if entry is None or entry.filemode != TREE:
        return None
    try:
        obj = repo[entry.id]
    except MALFORMED_ERRORS:
        return None
    return obj if isinstance(obj, pygit2.Tree) else None


def _names(tree: pygit2.Tree) -> list[str]:
    """The names of ``tree``'s entries, once each, in order; [] when it cannot be read."""
    try:
        return list(dict.fromkeys(e.name or "" for e in tree))
    except MALFORMED_ERRORS:
        return []


# Parsed trees kept in memory (each up to 256 entries): enough for a listing or a diff of two
# indexes, small enough that a long-running writer's new trees do not pile up.
MAX_MEMO = 1024
_DIRS: dict[pygit2.Oid, dict[str, pygit2.Oid]] = {}


def _dirs(tree: pygit2.Tree) -> dict[str, pygit2.Oid]:
    """{name: oid} of the subtrees of ``tree`` (by :func:`_entry`), kept by tree oid: for
    listing and comparing directories, never for finding one entry."""
    found = _DIRS.get(tree.id)
    if found is None:
        if len(_DIRS) >= MAX_MEMO:
            _DIRS.clear()
        found = {}
        for name in _names(tree):
            entry = _entry(tree, name) if name else None
            if entry is not None and entry.filemode == TREE:
                found[name] = entry.id
        _DIRS[tree.id] = found
    return found


# Parsed fan-out directories by tree oid and where they hang (trees never change).
_FANS: dict[tuple[pygit2.Oid, str], dict[str, str]] = {}


def lookup(repo: pygit2.Repository, tree: pygit2.Tree | None, typename: str, object_id: str) -> str | None:
    """The tip this index names for one object, or None: three lookups, no listing."""
    if not is_oid(object_id):
        return None
    fan = _subtree(repo, _subtree(repo, tree, typename), object_id[:2])
    entry = _entry(fan, object_id) if fan is not None else None
    return str(entry.id) if entry is not None and entry.filemode == GITLINK else None


def _fan(repo: pygit2.Repository, fan: pygit2.Tree, xx: str) -> dict[str, str]:
    found = _FANS.get((fan.id, xx))
    if found is None:
        if len(_FANS) >= MAX_MEMO:
            _FANS.clear()
        found = _FANS[(fan.id, xx)] = _leaves(repo, fan, xx)
    return found


def _leaves(repo: pygit2.Repository, fan: pygit2.Tree | None, xx: str) -> dict[str, str]:
    """{object id: tip} of one fan-out directory: gitlinks named by an object id under its
    first two hex digits; anything else is not an entry."""
    if fan is None:
        return {}
    out: dict[str, str] = {}
    for name in _names(fan):
        if is_oid(name) and name[:2] == xx:
            entry = _entry(fan, name)
            if entry is not None and entry.filemode == GITLINK:
                out[name] = str(entry.id)
    return out


def entries(repo: pygit2.Repository, tree: pygit2.Tree | None, typename: str) -> dict[str, str]:
    """{object id: tip} of every object of ``typename`` in the index."""
    out: dict[str, str] = {}
    top = _subtree(repo, tree, typename)
    if top is None:
        return out
    for xx in _dirs(top):
        fan = _subtree(repo, top, xx) if _FANOUT.match(xx) else None
        if fan is not None:
            out.update(_fan(repo, fan, xx))
    return out


def typenames(tree: pygit2.Tree | None) -> list[str]:
    return [] if tree is None else [n for n in _dirs(tree) if is_typename(n)]


def diff(
    repo: pygit2.Repository, old: pygit2.Tree | None, new: pygit2.Tree | None, typename: str
) -> dict[str, str | None]:
    """{object id: new tip, or None when dropped} of the entries of ``typename`` that differ.

    Only subtrees whose ids differ are opened: the cost follows what moved, not the index.
    """
    a, b = _subtree(repo, old, typename), _subtree(repo, new, typename)
    if a is not None and b is not None and a.id == b.id:
        return {}
    dirs_a = _dirs(a) if a is not None else {}
    dirs_b = _dirs(b) if b is not None else {}
    out: dict[str, str | None] = {}
    for xx in sorted(n for n in dirs_a.keys() | dirs_b.keys() if _FANOUT.match(n)):
        if dirs_a.get(xx) == dirs_b.get(xx):
            continue
        fa, fb = _subtree(repo, a, xx), _subtree(repo, b, xx)
        before = _fan(repo, fa, xx) if fa is not None else {}
        after = _fan(repo, fb, xx) if fb is not None else {}
        for object_id, tip in after.items():
            if before.get(object_id) != tip:
                out[object_id] = tip
        out.update((object_id, None) for object_id in before.keys() - after.keys())
    return out


def diff_all(
    repo: pygit2.Repository, old: pygit2.Tree | None, new: pygit2.Tree | None
) -> dict[Key, str | None]:
    """:func:`diff` over every type of either tree."""
    out: dict[Key, str | None] = {}
    for typename in sorted({*typenames(old), *typenames(new)}):
        for object_id, tip in diff(repo, old, new, typename).items():
            out[(typename, object_id)] = tip
    return out


# -- writing ---------------------------------------------------------------------------------
@dataclass(slots=True)
class Built:
    """What writing one index commit made: the trees it wrote (new objects a prune may take
    before the ref names them: :mod:`cob.recovery` checks they are still there) and its tree
    builders, holding that commit's root, its type directories and the fan-out directories
    written last. The next write of this process on that commit continues from the builders
    instead of reading those trees back."""

    repo: pygit2.Repository
    root: pygit2.TreeBuilder
    tops: dict[str, pygit2.TreeBuilder]
    trees: list[pygit2.Oid]
    fans: dict[tuple[str, str], pygit2.TreeBuilder]  # the last MAX_KEPT_FANS fan-outs written


MAX_KEPT_FANS = 64


def _child(repo: pygit2.Repository, builder: pygit2.TreeBuilder, name: str) -> pygit2.Tree | None:
    """The subtree ``name`` of a tree builder's entries, like :func:`_subtree`."""
    try:
        entry = builder.get(sys.intern(name))
        if entry is None or entry.filemode != TREE:
            return None
        obj = repo[entry.id]
    except (KeyError, *MALFORMED_ERRORS):
        return None
    return obj if isinstance(obj, pygit2.Tree) else None


def _write_tree(
    repo: pygit2.Repository, base: pygit2.Tree | None, updates: Mapping[Key, str | None]
) -> pygit2.Oid:
    """``base`` with ``updates`` applied; only the touched subtrees are rewritten."""
    return _build_tree(repo, base, updates)[0]


def _build_tree(
    repo: pygit2.Repository,
    base: pygit2.Tree | None,
    updates: Mapping[Key, str | None],
    start: Built | None = None,
) -> tuple[pygit2.Oid, Built]:
    """``base`` with ``updates`` applied; only the touched subtrees are rewritten. ``start``:
    the builders of ``base`` (consumed), instead of reading it."""
    by_type: dict[str, dict[str, dict[str, str | None]]] = {}
    for (typename, object_id), tip in updates.items():
        by_type.setdefault(typename, {}).setdefault(object_id[:2], {})[object_id] = tip
    if start is not None:
        root, tops, kept = start.root, start.tops, start.fans
    else:
        root, tops, kept = _builder(repo, base), {}, {}
    trees: list[pygit2.Oid] = []
    for typename, fans in sorted(by_type.items()):
        top = tops.get(typename)
        if top is None:
            top = tops[typename] = _builder(repo, _child(repo, root, typename))
        for xx, leaves in sorted(fans.items()):
            fan = kept.pop((typename, xx), None)
            if fan is None:
                fan = _builder(repo, _child(repo, top, xx))
            _set_leaves(fan, leaves)
            _put(top, xx, fan, trees)
            if len(fan):
                kept[(typename, xx)] = fan  # the newest last
        _put(root, typename, top, trees)
        if not len(top):
            del tops[typename]
            kept = {k: v for k, v in kept.items() if k[0] != typename}
    while len(kept) > MAX_KEPT_FANS:
        del kept[next(iter(kept))]
    oid: pygit2.Oid = root.write()
    trees.append(oid)
    return oid, Built(repo, root, tops, trees, kept)


def _builder(repo: pygit2.Repository, tree: pygit2.Tree | None) -> pygit2.TreeBuilder:
    return repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()


def _set_leaves(fan: pygit2.TreeBuilder, leaves: Mapping[str, str | None]) -> None:
    for object_id, tip in sorted(leaves.items()):
        if tip is None:
            if fan.get(sys.intern(object_id)) is not None:
                fan.remove(object_id)
        else:
            fan.insert(object_id, pygit2.Oid(hex=tip), GITLINK)


def _put(parent: pygit2.TreeBuilder, name: str, child: pygit2.TreeBuilder, written: list[pygit2.Oid]) -> None:
    if len(child):
        oid = child.write()
        written.append(oid)
        parent.insert(name, oid, TREE)
    elif parent.get(sys.intern(name)) is not None:
        parent.remove(name)


def write_commit(
    repo: pygit2.Repository,
    signer: sshsig.RawSigner,
    nid: str,
    parent: str | None,
    updates: Mapping[Key, str | None],
    *,
    timestamp: int | None = None,
    also: Sequence[str] = (),
) -> str:
    """Write the index commits that apply ``updates`` on index commit ``parent``; returns the
    last one's oid (no ref moves). More than :data:`MAX_NEW_PER_COMMIT` new tips are spread
    over a chain, each commit signed and naming its own new tips as parents. ``also``: more
    parents of the last commit, after the first (another chain a merge keeps reachable)."""
    if len(updates) <= MAX_NEW_PER_COMMIT:
        tip = parent or _write_one(repo, signer, nid, None, {}, timestamp)  # see the module doc
        return _write_one(repo, signer, nid, tip, updates, timestamp, also)
    # Many tips at once (a migration, a bulk import): oldest first, each commit dated at the
    # newest tip it adds. Commits dated long after the tips they name make git's date-ordered
    # history walks (fetch negotiation, rev-list --not) visit the whole chain: measured at
    # minutes for one pushed change on 100,000 entries.
    items = sorted(updates.items(), key=lambda kv: (_commit_time(repo, kv[1]), kv[0]))
    first = _commit_time(repo, items[0][1]) if timestamp is None else timestamp
    tip = parent or _write_one(repo, signer, nid, None, {}, first)
    floor = _commit_time(repo, tip)
    for start in range(0, len(items), MAX_NEW_PER_COMMIT):
        chunk = dict(items[start : start + MAX_NEW_PER_COMMIT])
        when = max([floor, *(_commit_time(repo, t) for t in chunk.values())])
        last = start + MAX_NEW_PER_COMMIT >= len(items)
        tip = _write_one(
            repo, signer, nid, tip, chunk, when if timestamp is None else timestamp, also if last else ()
        )
        floor = when
    return tip


def _commit_time(repo: pygit2.Repository, oid: str | None) -> int:
    if oid is None:
        return 0
    try:
        obj = repo[oid]
        return int(obj.commit_time) if isinstance(obj, pygit2.Commit) else 0
    except MALFORMED_ERRORS:
        return 0


def _write_one(
    repo: pygit2.Repository,
    signer: sshsig.RawSigner,
    nid: str,
    parent: str | None,
    updates: Mapping[Key, str | None],
    timestamp: int | None,
    also: Sequence[str] = (),
) -> str:
    return write_next(repo, signer, nid, parent, updates, None, timestamp, also)[0]


def write_next(
    repo: pygit2.Repository,
    signer: sshsig.RawSigner,
    nid: str,
    parent: str | None,
    updates: Mapping[Key, str | None],
    start: Built | None,
    timestamp: int | None = None,
    also: Sequence[str] = (),
) -> tuple[str, Built]:
    """One index commit applying ``updates`` (at most :data:`MAX_NEW_PER_COMMIT`) on
    ``parent``, from ``start`` (``parent``'s builders, consumed) when given; (its oid, what
    it built)."""
    if start is not None and start.repo is not repo:
        start = None
    tree, built = _build_tree(repo, tree_of(repo, parent) if start is None else None, updates, start)
    when = int(time.time()) if timestamp is None else timestamp
    new_tips = sorted({t for t in updates.values() if t is not None})
    parents = list(dict.fromkeys([*([parent] if parent else []), *also, *new_tips]))
    buffer = commit_buffer(str(tree), parents, nid, when, MESSAGE)
    signature = sshsig.sign(signer, buffer.encode())
    return str(repo.create_commit_with_signature(buffer, signature)), built


@dataclass(frozen=True, slots=True)
class Moved:
    """An index ref that moved from ``old`` to ``new``."""

    old: str | None
    new: str


def read_tip(repo: pygit2.Repository, nid: str) -> str | None:
    try:
        ref = repo.references.get(sys.intern(index_ref(nid)))
    except (pygit2.GitError, ValueError):
        return None
    if ref is None or ref.type != pygit2.enums.ReferenceType.DIRECT:
        return None
    return str(ref.target)


def backoff(attempt: int) -> None:
    """A short random pause after a lost race, growing with ``attempt``: 200 attempts outlast
    :data:`~cob.refs.STALE_LOCK_SECONDS`, so a lock left by a killed writer is cleared and
    the write goes through, instead of failing within milliseconds."""
    time.sleep(random.uniform(0, min(0.05, 0.001 * (attempt + 1))))


def is_index_commit(repo: pygit2.Repository, oid: str | None) -> bool:
    """Whether ``oid`` is a commit with the index's message (a change never has it)."""
    try:
        obj = repo[oid] if oid else None
        return isinstance(obj, pygit2.Commit) and obj.raw_message == MESSAGE.encode()
    except MALFORMED_ERRORS:
        return False


def is_index_chain(repo: pygit2.Repository, tip: str) -> bool:
    """Whether ``tip`` is a well-formed index from its first commit: every commit on its
    first-parent chain an index commit, the first one parentless with an empty tree, and the
    tip's tree well formed. Reads the whole chain: for the rare merge of our own index."""
    chain = first_parents(repo, tip, None, MAX_CHAIN)
    if not chain or not all(is_index_commit(repo, str(c.id)) for c in chain):
        return False
    first = chain[-1]
    return not first.parent_ids and len(first.tree) == 0 and malformed(repo, None, tree_of(repo, tip)) is None


def first_parents(
    repo: pygit2.Repository, tip: str, stop: str | None, limit: int
) -> list[pygit2.Commit] | None:
    """The index commits from ``tip`` back to, not including, ``stop`` (newest first), by first
    parents; None when ``stop`` is not on that chain within ``limit`` commits (not a fast-forward)."""
    out: list[pygit2.Commit] = []
    try:
        commit = repo[tip]
        while isinstance(commit, pygit2.Commit) and str(commit.id) != stop:
            out.append(commit)
            if len(out) > limit:
                return None
            ids = commit.parent_ids
            if not ids:
                return out if stop is None else None
            commit = repo[ids[0]]
    except (KeyError, ValueError, pygit2.GitError):
        return None
    return out if isinstance(commit, pygit2.Commit) else None


def merged_chain(repo: pygit2.Repository, tip: str, old: str, limit: int) -> list[pygit2.Commit] | None:
    """The index commits ``tip`` reaches and ``old`` does not (newest first), when ``old`` is
    an index commit ``tip`` reaches by *any* parent — a side chain the node merged into its
    index (FORMAT.md 7): a reader that took that side chain takes the merged index as a
    fast-forward. None when ``old`` is not reached, or beyond ``limit`` commits walked."""
    try:
        if not is_index_commit(repo, old) or not repo.descendant_of(pygit2.Oid(hex=tip), pygit2.Oid(hex=old)):
            return None
        walker = repo.walk(pygit2.Oid(hex=tip), pygit2.enums.SortMode.TOPOLOGICAL)
        walker.hide(pygit2.Oid(hex=old))
        out: list[pygit2.Commit] = []
        for walked, commit in enumerate(walker):
            if walked >= limit:
                return None
            if commit.raw_message == MESSAGE.encode():
                out.append(commit)
    except (KeyError, ValueError, pygit2.GitError, *MALFORMED_ERRORS):
        return None
    return out


def count_entries(repo: pygit2.Repository, tree: pygit2.Tree | None, stop: int) -> int:
    """How many entries index ``tree`` holds, counted from its fan-out trees' sizes (no leaf
    is parsed); stops counting once past ``stop``."""
    total = 0
    for typename in typenames(tree):
        top = _subtree(repo, tree, typename)
        for xx in _dirs(top) if top is not None else {}:
            fan = _subtree(repo, top, xx) if _FANOUT.match(xx) else None
            total += len(fan) if fan is not None else 0
            if total > stop:
                return total
    return total


def unreached(
    repo: pygit2.Repository, chain: list[pygit2.Commit], changed: Mapping[Key, str | None]
) -> list[Key]:
    """Changed entries whose tip no commit of ``chain`` names as a parent: an index must reach
    every tip it names (gc and fetch follow parents, not gitlinks)."""
    named = {str(p) for c in chain for p in c.parent_ids[1:]}
    return [key for key, tip in changed.items() if tip is not None and tip not in named]


def walk_entries(repo: pygit2.Repository, tree: pygit2.Tree | None) -> Iterator[tuple[str, str, str]]:
    """(typename, object id, tip) of every entry."""
    for typename in typenames(tree):
        for object_id, tip in entries(repo, tree, typename).items():
            yield typename, object_id, tip


def malformed(repo: pygit2.Repository, old: pygit2.Tree | None, new: pygit2.Tree | None) -> str | None:
    """What is wrong with the parts of index tree ``new`` that differ from ``old``, or None.

    Readers skip what is not an entry, but fetch refuses it: a tree libgit2 cannot parse, an
    entry of the wrong kind or name, or names out of order or repeated (libgit2's path lookup
    assumes sorted, unique names). Only subtrees whose ids differ from ``old`` are read.
    """
    if new is None:
        return "the index commit has no readable tree"
    unreadable = "the index is malformed: a tree git takes but cannot be read here"
    try:
        problem = _shape(new, TREE, is_typename)
        old_types = _dirs(old) if old is not None else {}
        for typename, top_oid in _dirs(new).items():
            if problem or old_types.get(typename) == top_oid:
                continue
            top_new, top_old = _subtree(repo, new, typename), _subtree(repo, old, typename)
            if top_new is None:
                return unreadable
            problem = _shape(top_new, TREE, lambda n: bool(_FANOUT.match(n)))
            old_fans = _dirs(top_old) if top_old is not None else {}
            for xx, oid in _dirs(top_new).items():
                if problem or old_fans.get(xx) == oid:
                    continue
                fan = _subtree(repo, top_new, xx)
                problem = unreadable if fan is None else _shape(fan, GITLINK, _leaf_name(xx))
    except MALFORMED_ERRORS as e:
        return f"the index is malformed ({type(e).__name__}: {e})"[:300]
    return problem


def _leaf_name(xx: str) -> Callable[[str], bool]:
    return lambda name: is_oid(name) and name[:2] == xx


def _shape(tree: pygit2.Tree, mode: int, name_ok: Callable[[str], bool]) -> str | None:
    """Every entry of kind ``mode`` with an allowed name, in git's order: a tree sorts as if
    its name ended in ``/`` (so ``a-b/`` comes before ``a/``), and no name repeats."""
    last = b""
    for entry in tree:
        name = entry.name or ""
        if entry.filemode != mode or not name_ok(name):
            return f"the index holds an entry it may not: {name[:64]!r} (mode {entry.filemode:o})"
        key = name.encode() + (b"/" if mode == TREE else b"")
        if key <= last:
            return f"the index's names are out of order or repeated at {name[:64]!r}"
        last = key
    return None
