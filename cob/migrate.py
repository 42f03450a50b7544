"""Migration from per-object refs to one index ref per node (:mod:`cob.sigrefs`).

The layout before the index kept ``refs/namespaces/<NID>/refs/cobs/<TYPENAME>/<id>`` per
object. Nothing of it is lost and nothing needs a command:

* **Our own namespace** moves the first time a store writes (or syncs): each per-object ref
  becomes an entry of our index (signed index commits, new tips as parents), and only then is
  the ref deleted, with its old value checked, in one transaction. An entry already in the
  index that is newer wins; a ref that diverged from its entry is kept, not deleted (the
  index wins when both name an object: such a ref is there for a person to look at).
* **Other namespaces** cannot be migrated here: only their node can sign their index. Their
  per-object refs stay readable (an index entry of the same node wins) and are deleted once
  that node's index names the same tip or a newer one (:func:`drop_superseded`, after a fetch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pygit2

from . import layout, sigrefs
from .change import MALFORMED_ERRORS, MANIFEST, write_merge
from .errors import ConflictError
from .gitrun import run_git
from .reader import RefReader
from .refs import CobRef, common_dir, compare_and_swap, is_ancestor
from .signer import Signer


def covered(repo: pygit2.Repository, entry: str | None, legacy: str) -> bool:
    """Whether an index entry already holds a legacy ref's history."""
    return entry is not None and (entry == legacy or is_ancestor(repo, legacy, entry))


def migrate_own(repo: pygit2.Repository, signer: Signer, refs: RefReader) -> int:
    """Move ``signer``'s per-object refs into its index; returns how many entries moved."""
    nid = signer.nid
    legacy = _legacy_of(refs, nid)
    if not legacy:
        return 0
    moved = 0
    for attempt in range(200):
        tip = sigrefs.read_tip(repo, nid)
        tree = sigrefs.tree_of(repo, tip)
        updates: dict[sigrefs.Key, str | None] = {}
        for ref in legacy:
            if not _of_its_object(repo, ref):
                continue  # a ref naming another object's change (a hub's, fetched): not ours to sign
            entry = sigrefs.lookup(repo, tree, ref.typename, ref.object_id)
            if entry is None or is_ancestor(repo, entry, ref.target):
                updates[(ref.typename, ref.object_id)] = ref.target
        if not updates:
            break
        new = sigrefs.write_commit(repo, signer, nid, tip, updates)
        if compare_and_swap(repo, sigrefs.index_ref(nid), new, tip, "cob: migrate to the index"):
            moved = len(updates)
            break
        sigrefs.backoff(attempt)
    _delete_covered(repo, nid, legacy)
    return moved


def _of_its_object(repo: pygit2.Repository, ref: CobRef) -> bool:
    """Whether the ref's tip belongs to the object it is named after (its root is an
    ancestor): our index signs every entry it holds, so it must not take a ref a hub made up."""
    return ref.target == ref.object_id or is_ancestor(repo, ref.object_id, ref.target)


def drop_superseded(repo: pygit2.Repository, refs: RefReader, nid: str) -> int:
    """Delete ``nid``'s per-object refs that its index now covers; returns how many."""
    legacy = _legacy_of(refs, nid)
    return _delete_covered(repo, nid, legacy) if legacy else 0


def _legacy_of(refs: RefReader, nid: str) -> list[CobRef]:
    """``nid``'s per-object refs of every type (none: a cheap look at two places)."""
    if not refs.has_legacy(nid):
        return []
    return [
        ref
        for typename in sorted(refs.legacy_typenames(nid))
        if sigrefs.is_typename(typename)
        for ref in refs.legacy_refs(typename, nid)
    ]


def _delete_covered(repo: pygit2.Repository, nid: str, legacy: list[CobRef]) -> int:
    """Delete the refs of ``legacy`` the index covers, each only if still at its old value,
    in one ``git update-ref`` transaction (packed-refs is rewritten once, not per ref)."""
    tree = sigrefs.tree_of(repo, sigrefs.read_tip(repo, nid))
    doomed = [
        ref
        for ref in legacy
        if covered(repo, sigrefs.lookup(repo, tree, ref.typename, ref.object_id), ref.target)
    ]
    if not doomed:
        return 0
    lines = "".join(f"delete {ref.name} {ref.target}\n" for ref in doomed)
    res = run_git(common_dir(repo), ["update-ref", "--no-deref", "--stdin"], stdin=lines)
    return len(doomed) if res.returncode == 0 else 0


# What a merge asks of a type before joining two tips of one object: None when both are
# accepted, else why not (cob.Store.merge_own folds them). Objects of types it does not know
# are merged without the question (a merge change changes no state).
MergeCheck = Callable[[str, str, Sequence[str]], str | None]


def merge_own(
    repo: pygit2.Repository, signer: Signer, theirs: str, check: MergeCheck | None = None
) -> list[sigrefs.Key]:
    """Make our index a fast-forward of ``theirs``, our own index as a remote holds it but
    diverged from ours (we wrote before our first sync after a reinstall, or two machines
    write with one key): a new index commit whose first parent is ``theirs`` and whose second
    is ours, with the entries of both. For an object only one side changed, or where one tip
    descends from the other, the newer tip; for an object both changed, a signed *merge
    change* whose parents are both tips (:func:`cob.change.write_merge`), so that nothing
    either copy signed drops out of the object's fold. Returns the objects both changed.

    Raises :class:`ConflictError` (nothing written) when ``theirs`` is not a well-formed index
    chain, when part of our chain was published and ``theirs`` does not build on it (peers that
    took either chain would refuse the merged one: two remotes took two chains), or when
    ``check`` refuses to join two tips (see :func:`_check_chain`)."""
    nid = signer.nid
    conflicts: list[sigrefs.Key] = []
    checked = False
    for attempt in range(200):
        ours = sigrefs.read_tip(repo, nid)
        if ours is not None and (ours == theirs or is_ancestor(repo, theirs, ours)):
            return []  # already merged, or behind ours (a replay of our own chain)
        if not checked:
            _check_chain(repo, theirs)
            checked = True
        mine, other = sigrefs.tree_of(repo, ours), sigrefs.tree_of(repo, theirs)
        updates: dict[sigrefs.Key, str | None] = {}
        conflicts = []
        for (typename, object_id), tip in sigrefs.diff_all(repo, other, mine).items():
            there = sigrefs.lookup(repo, other, typename, object_id)
            if tip is None or covered(repo, there, tip):
                continue  # only theirs has it, or theirs is newer
            if there is None or covered(repo, tip, there):
                updates[(typename, object_id)] = tip
                continue
            problem = check(typename, object_id, (there, tip)) if check is not None else None
            if problem is not None:
                raise ConflictError(
                    f"cannot merge the two copies of this node's {typename} {object_id[:12]}: {problem}"
                )
            updates[(typename, object_id)] = _merge_change(repo, signer, there, tip)
            conflicts.append((typename, object_id))
        # our own chain stays reachable as the second parent (and what it named, too)
        new = sigrefs.write_commit(repo, signer, nid, theirs, updates, also=[ours] if ours else [])
        if compare_and_swap(repo, sigrefs.index_ref(nid), new, ours, "cob: merge our index"):
            return conflicts
        sigrefs.backoff(attempt)
    raise ConflictError(f"gave up merging {sigrefs.index_ref(nid)} after 200 lost races")


def _merge_change(repo: pygit2.Repository, signer: Signer, theirs: str, ours: str) -> str:
    """A signed merge change of ``theirs`` and ``ours`` (two tips of one object), with the
    manifest of our tip (a type and version this repository's readers accepted)."""
    manifest = None
    for tip in (ours, theirs):
        try:
            obj = repo[tip]
            if isinstance(obj, pygit2.Commit) and MANIFEST in obj.tree:
                manifest = obj.tree[MANIFEST].id
                break
        except MALFORMED_ERRORS:
            continue
    if manifest is None:
        raise ConflictError(f"change {ours[:12]} has no manifest: not a change")
    return write_merge(repo, manifest, signer, signer.nid, [theirs, ours])


def _check_chain(repo: pygit2.Repository, theirs: str) -> None:
    """Refuse (:class:`ConflictError`) a ``theirs`` that is not a well-formed index chain, or
    that does not build on what we published.

    Once part of our chain was published (the last tip a push delivered,
    :attr:`cob.layout.Layout.published_ref`), ``theirs`` must have it on its first-parent chain: the
    merged index, whose first parent is ``theirs``, is then a fast-forward for the peers that
    took our published chain as well as for those that took ``theirs`` (the other copy merged
    ours through the same remote). Only the commits above it are read: what we published is
    our own, checked when written. Otherwise two remotes took two chains and no index can be
    a fast-forward for both. Never published: the whole chain must be well formed."""
    published = _target(repo, layout.current().published_ref)
    if published is None:
        if not sigrefs.is_index_chain(repo, theirs):
            raise ConflictError("the remote's copy of this node's index is not a well-formed index")
        return
    above = sigrefs.first_parents(repo, theirs, published, sigrefs.MAX_CHAIN)
    if above is None:
        raise ConflictError(
            "two copies of this node's key published diverging indexes (one from here, another on"
            " this remote): keep one copy and give the other a key of its own"
            + _hint(layout.current().new_key_hint)
        )
    well_formed = all(sigrefs.is_index_commit(repo, str(c.id)) for c in above)
    tree = sigrefs.tree_of(repo, theirs)
    if not well_formed or sigrefs.malformed(repo, sigrefs.tree_of(repo, published), tree) is not None:
        raise ConflictError("the remote's copy of this node's index is not a well-formed index")


def _target(repo: pygit2.Repository, name: str) -> str | None:
    ref = repo.references.get(name)
    return str(ref.target) if ref is not None else None


def _hint(text: str) -> str:
    return f" ({text})" if text else ""
