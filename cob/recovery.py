"""A missing index tip never reads as "this node has no objects".

``git gc --prune=now`` (or ``git prune --expire=now``) next to a writer can delete objects
written during its reachability walk: the new index commit after the index ref already moved
to it, with the change it names. The ref then names nothing, and without this module every
read saw an empty node and every write failed ("object not found").

So every move of an index ref is also recorded in a small local log beside the refs
(:data:`cob.indexlog.LOG_NAME`, in the common git directory; never synced): the old and new tip, and the
entries the move set. git keeps no reflog of ``refs/namespaces/...`` by default
(``core.logAllRefUpdates`` covers branches only, and is off in bare repositories), so the
log is ours. When an index tip is missing or unreadable:

* readers use the newest *intact* index this log (or the last published tip,
  :attr:`cob.layout.Layout.published_ref`) knows of (:func:`recover`);
* the next write, sync or ``doctor --repair`` moves forward from there
  (:func:`repair`): a new index commit on that intact index, plus every entry recorded
  after it whose change is still complete and descends from the intact entry; the others
  are lost and recorded as such, for ``doctor`` to report.

Nothing here is trusted for authority: entries still name signed changes that every load
verifies, and the log only says where to look.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pygit2

from . import layout, sigrefs
from .change import MALFORMED_ERRORS
from .errors import ConflictError
from .indexlog import MAX_RECORDED, Record, append, read
from .refs import common_dir, compare_and_swap, is_ancestor
from .sshsig import RawSigner

# Index records scanned per recovery (newest first).
MAX_SCAN = 20_000

log = logging.getLogger("cob")


# -- checking --------------------------------------------------------------------------------
def present(repo: pygit2.Repository, oid: str | None) -> bool:
    try:
        return oid is not None and oid in repo
    except MALFORMED_ERRORS:
        return False


# Index tips found intact, by (repository, tip) -> when: a write checks its base twice (reading
# the tips, then moving the ref), as long as a reader trusts a tip it found (refs.PRESENT_TTL).
INTACT_TTL = 1.0
_INTACT: dict[tuple[str, str], float] = {}


def intact_index(repo: pygit2.Repository, tip: str | None, *, fresh: bool = False) -> bool:
    """Whether index commit ``tip`` can be read: the commit, its parents (the previous index
    and the changes it added), its tree, each type's tree, and every fan-out tree that differs
    from its first parent's (what that commit wrote, so what a prune could have deleted with
    it). Not the rest of what the entries name: loads check those. A tip found intact less
    than :data:`INTACT_TTL` seconds ago (or written here by :func:`move`) is not read again,
    unless ``fresh`` (a repair, ``doctor``: what is on disk now)."""
    key = (repo.path, tip or "")
    seen = _INTACT.get(key)
    if not fresh and seen is not None and time.monotonic() - seen < INTACT_TTL:
        return True
    known = _WRITTEN.get(key) if tip is not None else None
    if tip is not None and known is not None and known.trees is not None:
        intact = _written_intact(repo, tip, known, known.trees)
    else:
        intact = _intact_index(repo, tip)
    if not intact:
        return False
    _remember_intact(repo, tip)
    return True


def _remember_intact(repo: pygit2.Repository, tip: str | None) -> None:
    if len(_INTACT) >= 64:
        _INTACT.clear()
    _INTACT[(repo.path, tip or "")] = time.monotonic()


# Index commits :func:`move` wrote here, by (repository, tip): what each was built on and what it
# set (so an entry of it is known without reading a tree: :func:`entry_at`), and what it wrote
# (checked present, not read: libgit2 serves objects it read from memory, also after a prune).
@dataclass(slots=True)
class _Written:
    parent: str | None  # the index commit it was built on
    updates: dict[sigrefs.Key, str | None]
    dirs: tuple[tuple[str, str], ...]  # (type, fan-out directory name) of what it changed
    trees: tuple[pygit2.Oid, ...] | None = None  # the trees it wrote (one commit written)


MAX_WRITTEN = 64
_WRITTEN: dict[tuple[str, str], _Written] = {}
_BUILDERS: dict[tuple[str, str], sigrefs.Built] = {}  # of the newest ones (sigrefs.Built)


def _remember_written(
    repo: pygit2.Repository,
    tip: str,
    updates: Mapping[sigrefs.Key, str | None],
    parent: str | None = None,
    built: sigrefs.Built | None = None,
) -> None:
    if len(_WRITTEN) >= MAX_WRITTEN:
        _WRITTEN.clear()
    dirs = tuple(sorted({(t, object_id[:2]) for t, object_id in updates}))
    trees = tuple(built.trees) if built is not None else None
    _WRITTEN[(repo.path, tip)] = _Written(parent, dict(updates), dirs, trees)
    if built is not None:  # taken whole by the next write (dict.pop: one thread gets them)
        if len(_BUILDERS) >= 8:
            _BUILDERS.clear()
        _BUILDERS[(repo.path, tip)] = built


def _reader(repo: pygit2.Repository, key: sigrefs.Key) -> Callable[[str], str | None]:
    return lambda tip: sigrefs.lookup(repo, sigrefs.tree_of(repo, tip), *key)


def written_here(repo: pygit2.Repository, tip: str) -> bool:
    """Whether :func:`move` wrote index commit ``tip`` in this process (and still knows it)."""
    known = _WRITTEN.get((repo.path, tip))
    return known is not None and known.trees is not None


def forget_written() -> None:
    """Drop what is known of the index commits written here (objects may have vanished)."""
    _WRITTEN.clear()
    _BUILDERS.clear()
    _INTACT.clear()


def entry_at(
    repo: pygit2.Repository, tip: str | None, key: sigrefs.Key, read: Callable[[str], str | None]
) -> str | None:
    """The entry ``key`` of index commit ``tip``: an index commit :func:`move` wrote here is the
    one it was built on plus what it set, so no tree is read; else ``read(tip)``."""
    for _ in range(MAX_WRITTEN):
        if tip is None:
            return None
        written = _WRITTEN.get((repo.path, tip))
        if written is None:
            return read(tip)
        if key in written.updates:
            return written.updates[key]
        if written.parent is None:
            return None
        tip = written.parent
    return None if tip is None else read(tip)


def _written_intact(
    repo: pygit2.Repository, tip: str, known: _Written, trees: tuple[pygit2.Oid, ...]
) -> bool:
    """An index commit written here as one commit: it, its parents and the trees it wrote are
    on disk (asked of the object database, ``git_odb_exists``, never read: libgit2 serves
    objects it parsed before from memory), the rest it shares with the commit it was built on."""
    tips = [t for t in known.updates.values() if t is not None]
    parents = [known.parent] if known.parent is not None else []
    try:
        odb = repo.odb
        return all(odb.exists(o) for o in (tip, *parents, *tips)) and all(odb.exists(o) for o in trees)
    except MALFORMED_ERRORS:
        return False


def _intact_index(repo: pygit2.Repository, tip: str | None) -> bool:
    tree = sigrefs.tree_of(repo, tip)
    if tip is None or tree is None:  # the message is not checked: readers take what plain git wrote
        return False
    try:
        commit = repo[tip]
        if not all(p in repo for p in commit.parent_ids):  # type: ignore[attr-defined]
            return False  # a change it names was pruned with it: no push could send it
        written = _WRITTEN.get((repo.path, tip))
        if written is not None:  # our own write: which directories it changed is known
            for typename in sigrefs.typenames(tree):
                repo[tree[typename].id]
            for typename, xx in written.dirs:
                top = repo[tree[typename].id] if typename in tree else None
                entry = sigrefs._entry(top, xx) if isinstance(top, pygit2.Tree) else None
                if entry is not None:
                    repo[entry.id]
            return True
        parent = commit.parent_ids[0] if commit.parent_ids else None  # type: ignore[attr-defined]
        before = sigrefs.tree_of(repo, str(parent)) if parent is not None else None
        for typename in sigrefs.typenames(tree):
            top = repo[tree[typename].id]
            old = before[typename].id if before is not None and typename in before else None
            if old == top.id or not isinstance(top, pygit2.Tree):
                continue
            # Fan-out directories by name, kept per tree id (sigrefs._dirs): the previous index's
            # were read when it was new, so a write reads its own new directory once.
            old_tree = repo[old] if old is not None else None
            old_fans = sigrefs._dirs(old_tree) if isinstance(old_tree, pygit2.Tree) else {}
            for name, fan in sigrefs._dirs(top).items():
                if old_fans.get(name) != fan:
                    repo[fan]
    except MALFORMED_ERRORS:
        return False
    return True


def complete_change(repo: pygit2.Repository, oid: str, budget: int = 10_000) -> bool:
    """Whether change commit ``oid`` can be read whole: the commit, its tree and blobs, and
    its parents (present: their own history is the index's to reach)."""
    try:
        commit = repo[oid]
        if not isinstance(commit, pygit2.Commit):
            return False
        if not all(str(p) in repo for p in commit.parent_ids):
            return False
        stack = [commit.tree_id]
        while stack:
            budget -= 1
            if budget < 0:
                return False
            obj = repo[stack.pop()]
            if isinstance(obj, pygit2.Tree):
                for entry in obj:
                    if entry.filemode == sigrefs.TREE:
                        stack.append(entry.id)
                    elif entry.filemode != sigrefs.GITLINK and entry.id not in repo:
                        return False
    except MALFORMED_ERRORS:
        return False
    return True


# -- recovering ------------------------------------------------------------------------------
@dataclass(slots=True)
class Recovery:
    """Where a broken index of ``nid`` falls back to, what survives and what is lost."""

    nid: str
    bad: str | None  # the tip the ref names that cannot be read
    base: str | None  # the newest intact index known, or None
    salvage: dict[sigrefs.Key, str] = field(default_factory=dict)
    lost: list[tuple[sigrefs.Key, str]] = field(default_factory=list)
    incomplete: bool = False  # the tip is readable but reaches missing objects (republish)

    def describe(self) -> str:
        base = self.base[:12] if self.base else "nothing (no intact index is known)"
        bad = self.bad[:12] if self.bad else "an unreadable value"
        what = "reaches missing objects" if self.incomplete else "is missing or unreadable"
        text = (
            f"the index of node {self.nid} names {bad}, which {what} (pruned by git gc?); fell back to {base}"
        )
        if self.salvage:
            text += f", kept {len(self.salvage)} later change(s) still present"
        if self.lost:
            shown = ", ".join(i[:12] for (_, i), _ in self.lost[:5])
            text += f"; {len(self.lost)} write(s) lost (objects {shown})"
        return text


def recover(repo: pygit2.Repository, nid: str, bad: str | None) -> Recovery:
    """The newest intact index of ``nid`` the log (or the last published tip) knows, and the
    entries recorded after it: still complete (``salvage``) or gone (``lost``)."""
    gitdir = common_dir(repo)
    records = [r for r in read(gitdir, nid) if r.kind == "M"][-MAX_SCAN:]
    base: str | None = None
    after: list[Record] = records
    for pos in range(len(records) - 1, -1, -1):
        rec = records[pos]
        if rec.new != bad and intact_index(repo, rec.new):
            base, after = rec.new, records[pos + 1 :]
            break
        if rec.old is not None and intact_index(repo, rec.old):
            base, after = rec.old, records[pos:]
            break
    published = _published(repo, nid)
    if published is not None and published != base and (base is None or is_ancestor(repo, base, published)):
        base = published
        after = [r for r in after if not intact_index(repo, r.new)]
    out = Recovery(nid, bad, base)
    tree = sigrefs.tree_of(repo, base)
    latest: dict[sigrefs.Key, str] = {}
    for rec in after:
        for typename, object_id, tip in rec.entries:
            latest[(typename, object_id)] = tip
    for key, tip in sorted(latest.items()):
        entry = sigrefs.lookup(repo, tree, *key)
        if entry == tip or (entry is not None and is_ancestor(repo, tip, entry)):
            continue  # the intact index has it already
        if complete_change(repo, tip) and (entry is None or is_ancestor(repo, entry, tip)):
            out.salvage[key] = tip
        else:
            out.lost.append((key, tip))
    return out


def _published(repo: pygit2.Repository, nid: str) -> str | None:
    """The last index tip of ours a push delivered, when it is ``nid``'s and intact."""
    try:
        ref = repo.references.get(layout.current().published_ref)
        tip = str(ref.target) if ref is not None else None
        commit = repo[tip] if tip else None
    except MALFORMED_ERRORS:
        return None
    if not isinstance(commit, pygit2.Commit) or commit.author.name != nid:
        return None
    return tip if intact_index(repo, tip) else None


def broken(repo: pygit2.Repository, nid: str) -> str | None:
    """The tip of ``nid``'s index ref when it is not an intact index, else None."""
    tip = sigrefs.read_tip(repo, nid)
    if tip is None or intact_index(repo, tip, fresh=True):
        return None
    return tip


def repair(repo: pygit2.Repository, signer: RawSigner, nid: str, *, quiet: bool = False) -> Recovery | None:
    """Move ``nid``'s broken index forward from its newest intact one (:func:`recover`), with
    every later change still present; None when the index is readable. Records what was
    lost in the log and says it once (``logging``, one line)."""
    for attempt in range(50):
        bad = broken(repo, nid)
        if bad is None:
            return None
        rec = recover(repo, nid, bad)
        new = sigrefs.write_commit(repo, signer, nid, rec.base, dict(rec.salvage))
        if compare_and_swap(
            repo, sigrefs.index_ref(nid), new, bad, "cob: recover the index", updates=dict(rec.salvage)
        ):
            gitdir = common_dir(repo)
            now = int(time.time())
            lost = tuple((t, i, tip) for (t, i), tip in rec.lost[:MAX_RECORDED])
            append(gitdir, [Record("L", nid, bad, rec.base, now, lost)])
            if not quiet:
                log.warning("warning: %s", rec.describe())
            return rec
        sigrefs.backoff(attempt)
    return None


# -- an index that reaches a missing object -------------------------------------------------
def missing_since_published(repo: pygit2.Repository, nid: str) -> list[str]:
    """Objects the index tip of ``nid`` reaches (not through its last published tip) that are
    missing: a change the prune deleted under an index commit that survived it, and that later
    writes built on. ``git push`` cannot pack such a history (the remote says "unpacker
    error"), on every sync. Costs one walk of what the next push sends."""
    from .gitrun import run_git

    tip = sigrefs.read_tip(repo, nid)
    if tip is None or not present(repo, tip):
        return []
    published = _published(repo, nid)
    if published == tip:  # nothing since: the walk would be empty (a process per sync saved)
        return []
    args = ["rev-list", "--objects", "--missing=print", tip, *(["--not", published] if published else [])]
    res = run_git(common_dir(repo), args, timeout=600)
    missing = [line[1:41] for line in res.stdout.splitlines() if line.startswith("?")]
    if res.returncode != 0 and not missing:
        missing = [tip]  # the walk itself failed on a missing or unreadable object
    return missing


def history_complete(repo: pygit2.Repository, tip: str, stop: str | None, budget: int = 100_000) -> bool:
    """Whether every change of ``tip``'s history down to ``stop`` (its published value, whose
    history a remote holds) can be read whole: what a push of it must send."""
    try:
        walker = repo.walk(tip, pygit2.enums.SortMode.NONE)
        if stop is not None and present(repo, stop):
            walker.hide(stop)
        for commit in walker:
            budget -= 1
            if budget < 0 or not complete_change(repo, str(commit.id)):
                return False
    except MALFORMED_ERRORS:
        return False
    return True


def republish(
    repo: pygit2.Repository, signer: RawSigner, nid: str, *, quiet: bool = False
) -> Recovery | None:
    """When ``nid``'s index reaches missing objects (:func:`missing_since_published`), move it
    on from its last published tip (or from nothing) with one new index commit: each entry at
    its newest value on the index chain whose history is complete, the others lost and
    recorded as such. A fast-forward of what the remote holds, so the next push goes through.
    None when nothing is missing."""
    for attempt in range(50):
        if not missing_since_published(repo, nid):
            return None
        bad = sigrefs.read_tip(repo, nid)
        if bad is None:
            return None
        out = Recovery(nid, bad, _published(repo, nid), incomplete=True)
        updates = _complete_entries(repo, out)
        new = sigrefs.write_commit(repo, signer, nid, out.base, updates)
        if compare_and_swap(
            repo, sigrefs.index_ref(nid), new, bad, "cob: recover the index", updates=updates
        ):
            lost = tuple((t, i, tip) for (t, i), tip in out.lost[:MAX_RECORDED])
            append(common_dir(repo), [Record("L", nid, bad, out.base, int(time.time()), lost)])
            if not quiet:
                log.warning("warning: %s", out.describe())
            return out
        sigrefs.backoff(attempt)
    return None


def _complete_entries(repo: pygit2.Repository, out: Recovery) -> dict[sigrefs.Key, str | None]:
    """The updates on ``out.base`` that set each entry of ``out.bad`` to its newest value on
    the index chain between them whose history is complete; fills ``salvage`` and ``lost``."""
    assert out.bad is not None
    chain: list[pygit2.Commit] = sigrefs.first_parents(repo, out.bad, out.base, MAX_SCAN) or []
    if not chain:  # not within reach of the published tip: the tip alone
        with contextlib.suppress(*MALFORMED_ERRORS):
            commit = repo[out.bad]
            chain = [commit] if isinstance(commit, pygit2.Commit) else []
    trees = [t for t in (sigrefs.tree_of(repo, str(c.id)) for c in chain) if t is not None]
    base_tree = sigrefs.tree_of(repo, out.base)
    keys = {(t, i) for t, i, _ in sigrefs.walk_entries(repo, trees[0])} if trees else set()
    keys.update((t, i) for t, i, _ in sigrefs.walk_entries(repo, base_tree))
    updates: dict[sigrefs.Key, str | None] = {}
    for key in sorted(keys):
        before = sigrefs.lookup(repo, base_tree, *key)
        newest = sigrefs.lookup(repo, trees[0], *key) if trees else before
        if newest is None:  # removed since: a removal sends nothing
            if before is not None:
                updates[key] = None
            continue
        chosen = before
        for tree in trees:
            tip = sigrefs.lookup(repo, tree, *key)
            if tip is None or tip == before:
                break
            if history_complete(repo, tip, before):
                chosen = tip
                break
        if chosen != newest and newest is not None:
            out.lost.append((key, newest))
        if chosen != before:
            updates[key] = chosen
            if chosen is not None:
                out.salvage[key] = chosen
    return updates


# -- writing ---------------------------------------------------------------------------------
def move(
    repo: pygit2.Repository,
    signer: RawSigner,
    nid: str,
    updates: Mapping[sigrefs.Key, str | None],
    expect: Mapping[sigrefs.Key, str | None],
    *,
    attempts: int = 200,
) -> sigrefs.Moved | None:
    """Set ``updates`` in ``nid``'s index, if each entry of ``expect`` still holds there.

    Here, beside :func:`repair`, not in :mod:`cob.sigrefs`: an index pruned under the writer
    (``git gc``) is repaired first.

    None when an expected entry moved (another process of this node wrote that object first:
    the caller rebuilds its change). A lost race on the index ref itself, with our entries
    unchanged, only rewrites the index commit. Raises :class:`~cob.errors.ConflictError` when
    the ref never stops moving.
    """
    name = sigrefs.index_ref(nid)
    for attempt in range(attempts):
        old = sigrefs.read_tip(repo, nid)
        mine = _WRITTEN.get((repo.path, old)) if old is not None else None
        tree = sigrefs.tree_of(repo, old) if mine is None else None  # ours: known, not read
        if old is not None and ((mine is None and tree is None) or not intact_index(repo, old)):
            repair(repo, signer, nid)  # pruned under us (git gc): move on from an intact index
            continue
        for key, want in expect.items():
            if entry_at(repo, old, key, _reader(repo, key)) != want:
                return None
        if old is not None and len(updates) <= sigrefs.MAX_NEW_PER_COMMIT:  # one commit
            start = _BUILDERS.pop((repo.path, old), None)  # changed by this write: taken
            new, built = sigrefs.write_next(repo, signer, nid, old, updates, start)
        else:
            new, built = sigrefs.write_commit(repo, signer, nid, old, updates), None
        if compare_and_swap(repo, name, new, old, sigrefs.MESSAGE.strip(), updates=updates):
            _remember_written(repo, new, updates, old, built)
            return sigrefs.Moved(old, new)
        sigrefs.backoff(attempt)
    raise ConflictError(f"gave up updating {name} after {attempts} lost races")


def set_tip(
    repo: pygit2.Repository,
    signer: RawSigner,
    nid: str,
    typename: str,
    object_id: str,
    new: str | None,
    old: str | None,
) -> bool:
    """Move ``nid``'s entry for one object from ``old`` to ``new`` (None: absent), as a
    compare-and-swap; False when the entry was not ``old``. For tools and tests that write
    changes themselves (``write_change``): the store's writes go through :func:`move`."""
    key = (typename, object_id)
    return move(repo, signer, nid, {key: new}, {key: old}) is not None
