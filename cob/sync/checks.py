"""Whether a received tip may be taken: signed by its namespace's node, a fast-forward, an index
that reaches what it names and moves no entry back."""

from __future__ import annotations

import sys
from collections.abc import Mapping

import pygit2

from ..change import MALFORMED_ERRORS, InvalidChangeError, signed_by
from ..family import RefFamily, family_of
from ..refs import is_ancestor
from ..sigrefs import (
    MAX_CHAIN,
    count_entries,
    diff_all,
    first_parents,
    is_index_commit,
    lookup,
    malformed,
    merged_chain,
    parse_index_ref,
    tree_of,
    unreached,
)
from .limits import Limits
from .results import RefusalKind


def check_tip(repo: pygit2.Repository, nid: str, object_id: str, oid: str) -> str | None:
    """Why ``oid`` may not be the tip of ``nid``'s ref for ``object_id``, or None.

    The tip must be a commit signed (SSHSIG) by the namespace's own key and authored as it —
    also when it is the object's root: an unsigned (content-addressed) root can be derived by
    anyone from its ops, so a ref pointing at it carries nothing that namespace's node signed.
    A malformed commit (libgit2 cannot parse it, unknown ``encoding``) is a reason too.
    """
    problem = tip_problem(repo, nid, object_id, oid)
    return None if problem is None else problem[1]


def tip_problem(
    repo: pygit2.Repository, nid: str, object_id: str, oid: str
) -> tuple[RefusalKind, str] | None:
    """:func:`check_tip` with the kind of refusal it means (``not-a-commit`` or ``bad-tip``)."""
    try:
        try:
            obj = repo[oid]
        except (KeyError, ValueError):
            return RefusalKind.BAD_TIP, "the tip object is missing"
        if not isinstance(obj, pygit2.Commit):
            return RefusalKind.NOT_A_COMMIT, f"the tip is not a commit but a {obj.type_str}"
        problem = _check_commit(obj, nid)
    except MALFORMED_ERRORS as e:
        problem = f"the tip is malformed ({type(e).__name__}: {e})"[:300]
    return None if problem is None else (RefusalKind.BAD_TIP, problem)


def ref_problem(
    repo: pygit2.Repository,
    name: str,
    nid: str,
    object_id: str,
    old: str | None,
    new: str,
    limits: Limits | None = None,
    own_nid: str | None = None,
    families: tuple[RefFamily, ...] = (),
    trusted: bool = True,
) -> tuple[RefusalKind, str] | None:
    """Why ``name`` may not move from ``old`` to ``new``, or None: the tip must be signed by
    the namespace's node and a fast-forward; an index ref must also reach every tip it names
    and add at most ``limits.new_entries`` entries (an untrusted node's: hold at most
    ``limits.untrusted_entries``, over at most ``limits.untrusted_chain`` new commits); a family
    ref's tip must have its family's shape. Costs what is new, not the whole index."""
    problem = tip_problem(repo, nid, object_id, new)
    found = family_of(name, families) if families else None
    if problem is None and found is not None and found[0].tip_problem is not None:
        why = found[0].tip_problem(repo, name, new)
        problem = None if why is None else (RefusalKind.BAD_TIP, why)
    if problem is None and object_id and new != object_id and not is_ancestor(repo, object_id, new):
        # a per-object ref (ours, of the layout before the index) naming another object's change
        problem = RefusalKind.BAD_TIP, "the tip is not a change of the object the ref is named after"
    if problem is None and parse_index_ref(name) is None:
        if old is not None and not is_ancestor(repo, old, new):
            problem = RefusalKind.DIVERGED, "the remote's history diverged (would rewrite history)"
    elif problem is None:
        problem = index_problem(repo, old, new, limits or Limits(), trusted)
    if problem is not None and problem[0] is RefusalKind.DIVERGED and nid == own_nid:
        return RefusalKind.OWN_NAMESPACE, "the remote's copy of this node's ref diverged"
    return problem


def index_problem(
    repo: pygit2.Repository, old: str | None, new: str, limits: Limits, trusted: bool = True
) -> tuple[RefusalKind, str] | None:
    """:func:`ref_problem` for an index ref whose tip is signed (see :mod:`cob.sigrefs`)."""
    if not is_index_commit(repo, new):  # one key signs changes and indexes: tell them apart
        return RefusalKind.BAD_TIP, "the tip is not an index commit (a change, or another commit)"
    longest = MAX_CHAIN if trusted else limits.untrusted_chain
    chain = first_parents(repo, new, old, longest)
    if chain is None and old is not None:
        chain = merged_chain(repo, new, old, longest)  # old on a merged side chain (FORMAT.md 7)
    if chain is None:
        if not trusted and _longer_than(repo, new, longest):
            return RefusalKind.TOO_LARGE, (
                f"the index of an untrusted node has more than {longest} new commits"
            )
        return RefusalKind.DIVERGED, "the remote's index diverged (would rewrite history)"
    old_tree, new_tree = tree_of(repo, old), tree_of(repo, new)
    if not trusted and count_entries(repo, new_tree, limits.untrusted_entries) > limits.untrusted_entries:
        return RefusalKind.TOO_LARGE, (
            f"the index of an untrusted node holds more than {limits.untrusted_entries} objects"
        )
    changed = diff_all(repo, old_tree, new_tree)
    if len(changed) > limits.new_entries:
        return RefusalKind.LIMIT, (
            f"the index moves {len(changed)} objects at once (limit {limits.new_entries})"
        )
    backwards = _moved_back(repo, old_tree, changed)
    if backwards is not None:
        return backwards
    missing = unreached(repo, chain, changed)
    if missing:
        typename, object_id = missing[0]
        return RefusalKind.BAD_TIP, (
            f"the index names a tip it does not reach ({len(missing)} objects,"
            f" e.g. {typename} {object_id[:12]})"
        )
    bad = malformed(repo, old_tree, new_tree)
    return None if bad is None else (RefusalKind.BAD_TIP, bad)


def _longer_than(repo: pygit2.Repository, tip: str, limit: int) -> bool:
    """Whether ``tip``'s first-parent chain has more than ``limit`` commits (walks at most
    ``limit + 1``, keeping none)."""
    try:
        commit = repo[tip]
        for _ in range(limit + 1):
            if not isinstance(commit, pygit2.Commit) or not commit.parent_ids:
                return False
            commit = repo[commit.parent_ids[0]]
    except (KeyError, ValueError, pygit2.GitError, *MALFORMED_ERRORS):
        return False
    return True


def _moved_back(
    repo: pygit2.Repository, old_tree: pygit2.Tree | None, changed: Mapping[tuple[str, str], str | None]
) -> tuple[RefusalKind, str] | None:
    """An entry the new index drops, or moves to a tip that does not descend from the old
    one: a node withdrawing what it published (a finished run turned back into an open one)
    is refused like a per-object ref moved backwards. The walks share one budget
    (:data:`MAX_ANCESTRY_WALK`, plus 16 commits per moved entry): beyond it the index is
    refused as ``limit``, and the cost stays in proportion to what was received."""
    budget = [MAX_ANCESTRY_WALK + 16 * len(changed)]
    for (typename, object_id), tip in sorted(changed.items(), key=lambda kv: kv[0]):
        was = lookup(repo, old_tree, typename, object_id)
        if was is None:
            continue
        if tip is None:
            why = f"the index drops {typename} {object_id[:12]} (would rewrite history)"
            return RefusalKind.DIVERGED, why
        found = _descends(repo, tip, was, budget)
        if found is None:
            return RefusalKind.LIMIT, "the index moves too many entries over too long a history at once"
        if not found:
            return RefusalKind.DIVERGED, (
                f"the index moves {typename} {object_id[:12]} back or sideways (would rewrite history)"
            )
    return None


def _descends(repo: pygit2.Repository, tip: str, was: str, budget: list[int]) -> bool | None:
    """Whether ``was`` is ``tip`` or one of its ancestors; None when ``budget[0]`` commits
    (shared by the caller's checks, decremented here) ran out first."""
    if tip == was:
        return True
    target = pygit2.Oid(hex=was)
    seen: set[pygit2.Oid] = set()
    stack = [pygit2.Oid(hex=tip)]
    try:
        while stack:
            oid = stack.pop()
            if oid == target:
                return True
            if oid in seen:
                continue
            seen.add(oid)
            budget[0] -= 1
            if budget[0] < 0:
                return None
            commit = repo[oid]
            if isinstance(commit, pygit2.Commit):
                stack.extend(commit.parent_ids)
    except MALFORMED_ERRORS:
        return False
    return False


def _behind(repo: pygit2.Repository, name: str, old: str, new: str) -> bool:
    """Whether ``new`` is an ancestor of ``old`` (taking it would move the ref back). For an
    index the usual case, a fast-forward, is settled by walking the new part alone."""
    if parse_index_ref(name) is not None:
        if first_parents(repo, new, old, MAX_CHAIN) is not None:
            return False
        # Also behind when reached through a merge's other parent (our own merged chain).
        return first_parents(repo, old, new, MAX_CHAIN) is not None or is_ancestor(repo, new, old)
    return is_ancestor(repo, new, old)


def _check_commit(obj: pygit2.Commit, nid: str) -> str | None:
    try:
        signer = signed_by(obj)
    except InvalidChangeError as e:
        return f"the tip is not a valid signed change: {e}"
    if signer != nid:
        return f"the tip is signed by {signer}, not by the namespace's node"
    return None


def _local_target(repo: pygit2.Repository, name: str) -> str | None:
    try:
        ref = repo.references.get(sys.intern(name))  # pygit2 keeps a reference to the name
    except (pygit2.GitError, ValueError):
        return None
    if ref is None or ref.type != pygit2.enums.ReferenceType.DIRECT:
        return None
    return str(ref.target)


def _has_commit(repo: pygit2.Repository, oid: str) -> bool:
    try:
        return oid in repo
    except (ValueError, pygit2.GitError):
        return False


# Commits the checks of moved entries may walk in one fetch (beyond a few per moved entry):
# each check is a walk from the new tip down to the old one, and a peer could otherwise make
# N entries x H commits of walking from a few kilobytes of new objects.
MAX_ANCESTRY_WALK = 200_000
