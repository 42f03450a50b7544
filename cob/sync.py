"""Fetch and push cob namespaces over plain Git remotes, fast-forward only.

Git is the transport: any remote name or URL the git CLI understands (path, ``file://``,
``git://``, ``ssh://``, ``https://``). libgit2's transports are weaker than git's (ssh config,
credential helpers, protocol v2), so this module runs the git CLI for the wire and does every
ref decision itself, in-process:

* **Fetch** lists the remote's index refs, one per node (``git ls-remote``; :mod:`cob.sigrefs`),
  refuses at once the refs that cannot be taken whatever they point at (a namespace that is
  not a NID, a tip already here that its node did not sign, new refs or namespaces beyond
  :class:`Limits`), downloads the tips this repository lacks into a *quarantine* (a scratch
  repository borrowing this one's objects), then decides ref by ref: create or fast-forward,
  or leave the local ref as it is and report a :class:`Refusal` (remote behind, diverged, not a
  commit, tip not signed by the namespace's node, an index that names what it does not reach,
  moves an entry back, or is malformed). These checks read only what is new. Only the objects
  of accepted tips leave the quarantine. Local refs move only by compare-and-swap; nothing is
  ever force-updated.
* **Push** sends the node's own namespace only (its index ref), never forced; git's own
  rejections (non-fast-forward, hooks) come back as refusals.
* **Ref families** (:mod:`cob.family`, e.g. run-log buckets) ride along in the same listing,
  fetch and push, under the same rules; their pruned leaves are not fetched, and our own are
  deleted on the remote — with our per-object refs of the layout before the index, once
  migrated, the only deletions a push ever makes.

Checking the tip's signature at fetch time matters: if a forged tip were taken into a
namespace, that node's real next change would no longer be a fast-forward and its updates would
be refused forever. Everything *below* a valid tip is still only data: the evaluation verifies
every change and rejects (and reports) bad ones.

Running git (timeouts, idle stop, process groups, environment, stderr) is :mod:`cob.gitrun`;
its names are re-exported here. A failure to talk to the remote is a :class:`TransportError`
with one clear line; nothing local has changed at that point, and the next sync completes.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import secrets
import shutil
import sys
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import pygit2

from .change import MALFORMED_ERRORS, InvalidChangeError, signed_by
from .errors import TransportError
from .family import RefFamily, family_of, family_refs
from .gitrun import DEFAULT_IDLE, DEFAULT_TIMEOUT, deadline, describe, first_error, git_env, run_git
from .identity import is_nid
from .refs import NAMESPACES, RefReader, common_dir, compare_and_swap, is_ancestor, is_oid, parse_ref
from .refused import RefusedMemory
from .sigrefs import (
    MAX_CHAIN,
    PUBLISHED,
    count_entries,
    diff_all,
    first_parents,
    index_ref,
    is_index_commit,
    lookup,
    malformed,
    merged_chain,
    parse_index_ref,
    tree_of,
    unreached,
)

__all__ = [  # the runner's names stay importable from here (cob.gitrun owns them)
    "DEFAULT_IDLE",
    "DEFAULT_TIMEOUT",
    "FetchResult",
    "Limits",
    "PushResult",
    "RefUpdate",
    "Refusal",
    "RefusalKind",
    "check_tip",
    "tip_problem",
    "deadline",
    "describe",
    "fetch",
    "first_error",
    "git_env",
    "ls_remote",
    "push",
    "run_git",
]

STAGING = "refs/git-jobs-staging/"
QUARANTINE = "git-jobs-quarantine"  # <gitdir>/git-jobs-quarantine/<pid>-<hex>/: see _Quarantine
FETCH = "fetch"
PUSH = "push"


@dataclass(frozen=True, slots=True)
class RefUpdate:
    """A ref that moved: ``old`` is None when it was created."""

    ref: str
    old: str | None
    new: str

    def to_json(self) -> dict[str, object]:
        """``type`` and ``object`` are null for an index ref (it holds every object of its node)."""
        parsed = parse_ref(self.ref)
        nid, typename, object_id = parsed if parsed else (parse_index_ref(self.ref), None, None)
        return {
            "ref": self.ref,
            "nid": nid,
            "type": typename,
            "object": object_id,
            "old": self.old,
            "new": self.new,
        }


class RefusalKind(StrEnum):
    """Why a ref was left as it is, as a stable code (the values are the JSON ``kind``)."""

    BEHIND = "behind"
    DIVERGED = "diverged"
    NOT_A_COMMIT = "not-a-commit"
    BAD_TIP = "bad-tip"
    BAD_NAMESPACE = "bad-namespace"
    LIMIT = "limit"
    OWN_NAMESPACE = "own-namespace"
    MISSING = "missing"
    BUSY = "busy"
    NON_FAST_FORWARD = "non-fast-forward"
    REJECTED = "rejected"
    TOO_LARGE = "too-large"


# Verdicts on the data itself: unchanged while neither the remote's ref nor ours moves, so
# remembered (cob.refused) and not downloaded or checked again.
REMEMBERED_KINDS = frozenset(
    {
        RefusalKind.BAD_TIP,
        RefusalKind.NOT_A_COMMIT,
        RefusalKind.BAD_NAMESPACE,
        RefusalKind.DIVERGED,
        RefusalKind.TOO_LARGE,
    }
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A ref left as it is, and why.

    ``side`` is ``"fetch"`` (a peer's ref we did not take) or ``"push"`` (a ref the remote did
    not take). ``kind`` is a stable short code: ``behind``, ``diverged``, ``not-a-commit``,
    ``bad-tip`` (tip not validly signed by the namespace's node), ``bad-namespace`` (not a
    NID), ``limit`` (over :class:`Limits`, taken by a later fetch), ``own-namespace`` (the remote
    has changes of ours we do not have and cannot verify), ``non-fast-forward``, ``rejected``
    (by the remote, e.g. a hook). ``local`` / ``remote`` are the two oids when known.
    """

    ref: str
    reason: str
    side: str
    kind: RefusalKind
    local: str | None = None
    remote: str | None = None

    def __str__(self) -> str:
        return f"{self.side}: {self.ref}: {self.reason}"

    def to_json(self) -> dict[str, object]:
        return {
            "ref": self.ref,
            "side": self.side,
            "kind": str(self.kind),
            "reason": self.reason,
            "local": self.local,
            "remote": self.remote,
        }


@dataclass(slots=True)
class FetchResult:
    updated: list[RefUpdate] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    remote_refs: dict[str, str] = field(default_factory=dict)  # every cob ref the remote had
    skipped: int = 0  # remote refs outside the namespaces asked for (left untouched)
    # Our own index on the remote, signed by us but diverged from ours (a node that wrote
    # before its first sync after a reinstall): its objects are kept for Store.merge_own.
    own_index: str | None = None
    # Our own ref-family refs (e.g. log buckets) on the remote, signed by us but diverged from
    # ours (two copies of one key published into one bucket): {ref: remote tip}, objects kept
    # so that the caller can merge them (jobs.logs.merge_own).
    own_families: dict[str, str] = field(default_factory=dict)
    # Refs refused before with the same values (cob.refused): skipped unread, only counted.
    remembered: int = 0
    # Refs listed that no fetch takes (other nodes' per-object refs, pruned or future leaves).
    ignored: int = 0
    # New family refs of a namespace beyond Limits.new_family_refs: taken by later fetches.
    deferred: int = 0


@dataclass(slots=True)
class PushResult:
    pushed: list[RefUpdate] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # pruned family refs removed from the remote


def _gitdir(repo: pygit2.Repository) -> str:
    return common_dir(repo)  # refs and objects live there, also for a linked worktree


# -- listing ---------------------------------------------------------------------------------
def ls_remote(
    repo: pygit2.Repository,
    remote: str,
    typenames: Collection[str] | None = None,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    idle: float | None = DEFAULT_IDLE,
    families: tuple[RefFamily, ...] = (),
) -> dict[str, str]:
    """{ref: oid} of the remote's cob refs (of ``typenames``, or of every type), and of
    ``families`` (every leaf, pruned ones too: push deletes our own)."""
    return _listing(repo, remote, typenames, timeout, idle, families, None)[0]


def _listing(
    repo: pygit2.Repository,
    remote: str,
    typenames: Collection[str] | None,
    timeout: float | None,
    idle: float | None,
    families: tuple[RefFamily, ...],
    legacy_of: str | None,
) -> tuple[dict[str, str], int]:
    """:func:`ls_remote`, and how many listed refs were ignored. ``legacy_of``: keep per-object
    refs (the layout before the index) of that namespace only — the only ones a sync uses (our
    own, for push to delete) — so a hub's 200,000 old-layout refs cost a line each, not a
    parse, a dict entry and a check each. (Git's ``ls-remote`` sends no protocol v2
    ``ref-prefix`` for a pattern, so the remote still sends every name under the prefix.)"""
    _check_remote(remote)
    res = run_git(
        _gitdir(repo), ["ls-remote", "--refs", remote, NAMESPACES + "*"], timeout=timeout, idle=idle
    )
    if res.returncode != 0:
        raise TransportError(f"cannot list {describe(remote)}: {first_error(res.stderr)}")
    out: dict[str, str] = {}
    ignored = 0
    own_legacy = None if legacy_of is None else f"{NAMESPACES}{legacy_of}/refs/cobs/"
    for line in res.stdout.splitlines():
        oid, _, name = line.partition("\t")
        if own_legacy is not None and "/refs/cobs/" in name and not name.startswith(own_legacy):
            ignored += 1  # another node's per-object ref: never fetched
            continue
        parsed = parse_ref(name)
        if is_oid(oid) and parse_index_ref(name) is not None:
            out[name] = oid
            continue
        if families and parsed is None and is_oid(oid) and family_of(name, families):
            out[name] = oid
            continue
        if parsed is None or not is_oid(oid):
            ignored += 1
            continue
        if typenames is not None and parsed[1] not in typenames:
            ignored += 1
            continue
        out[name] = oid
    return out, ignored


def _check_remote(remote: str) -> None:
    if not remote or remote.startswith("-") or "\n" in remote or "\0" in remote:
        raise TransportError(f"not a remote name or URL: {remote!r}")


# -- fetch -----------------------------------------------------------------------------------
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


# New refs and namespaces taken from one remote per fetch; the rest is refused ("limit") and
# taken by a later fetch. A hub can hold any number of namespaces; without these bounds one
# pusher with throwaway keys would make every peer download, verify and then carry them all.
MAX_NEW_NAMESPACES = 256
MAX_NEW_REFS = 20_000
# Objects one node's index may add or move in one fetch, and index commits between its old and
# new tip that are walked: bounds on what one namespace costs to check.
MAX_NEW_ENTRIES = 1_000_000
# Commits the checks of moved entries may walk in one fetch (beyond a few per moved entry):
# each check is a walk from the new tip down to the old one, and a peer could otherwise make
# N entries x H commits of walking from a few kilobytes of new objects.
MAX_ANCESTRY_WALK = 200_000
# New refs of one ref family (log buckets) taken from one namespace per fetch, newest first:
# a hub pusher's thousands of junk buckets under a node's namespace cost a few per sync (and
# once each: cob.refused), never the node's index or its current bucket.
MAX_NEW_FAMILY_REFS = 32
# What a namespace whose node the caller does not trust may hold: objects in its index, and
# index commits between the tip we have and its new tip. A stranger's index is data nobody's
# verdict reads; beyond these it is refused as ``too-large`` (and remembered).
MAX_UNTRUSTED_ENTRIES = 10_000
MAX_UNTRUSTED_CHAIN = 10_000


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-fetch bounds on what is new to this repository (see :data:`MAX_NEW_REFS`)."""

    new_namespaces: int = MAX_NEW_NAMESPACES
    new_refs: int = MAX_NEW_REFS
    new_entries: int = MAX_NEW_ENTRIES
    new_family_refs: int = MAX_NEW_FAMILY_REFS
    untrusted_entries: int = MAX_UNTRUSTED_ENTRIES
    untrusted_chain: int = MAX_UNTRUSTED_CHAIN


def fetch(
    repo: pygit2.Repository,
    remote: str,
    *,
    own_nid: str | None = None,
    typenames: Collection[str] | None = None,
    limits: Limits | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    idle: float | None = DEFAULT_IDLE,
    families: tuple[RefFamily, ...] = (),
    namespaces: Collection[str] | None = None,
    trusted: Collection[str] | None = None,
) -> FetchResult:
    """Take the remote's cob refs as fast-forwards; report the refs left as they are.

    ``own_nid``'s namespace is special: a peer never rewrites it; a tip that is ours (signed by
    our key) and a fast-forward is taken, so a node reinstalled from a hub gets its history back.
    Only each node's index ref (:mod:`cob.sigrefs`) and the ``families`` are taken; per-object
    refs of the layout before it are listed (a push deletes our own) but never fetched; every
    type travels in the index, so ``typenames`` no longer narrows a fetch. A listed tip this
    repository already holds that its namespace did not sign (a job's unsigned root) is
    refused before download and before any budget is spent on it. Objects are received
    into a quarantine (:class:`_Quarantine`): only what the accepted tips
    reach is moved into the repository, the rest is deleted with it. ``families``: ref families
    taken by the same rules (:mod:`cob.family`); their pruned leaves are not fetched, but stay
    in ``remote_refs`` so that a push can delete our own. ``namespaces``: take only the refs of
    these NIDs (and our own); the others are neither downloaded nor applied, only counted in
    ``skipped`` (a follow policy, as Radicle's scopes). ``trusted``: the NIDs whose data the
    caller's verdicts read (None: all); the others get :class:`Limits`' smaller bounds. A
    refusal of the data itself is remembered (:mod:`cob.refused`), not fetched again.
    """
    limits = limits or Limits()
    result = FetchResult()
    _clean_stale(repo, timeout)
    memory = RefusedMemory(_gitdir(repo))
    trust = None if trusted is None else {*trusted, *([own_nid] if own_nid else [])}
    with _Quarantine(repo, timeout, idle, own_nid, trust) as q:
        for attempt in range(3):
            listed, ignored = _listing(repo, remote, typenames, timeout, idle, families, own_nid or "")
            followed = _followed(listed, namespaces, own_nid, families)
            result = FetchResult(remote_refs=listed, skipped=len(listed) - len(followed), ignored=ignored)
            candidates = _screen(repo, result, followed, own_nid, limits, families, memory, trust)
            wanted = {
                name: oid
                for name, oid in candidates.items()
                if _local_target(repo, name) != oid and not _has_commit(repo, oid)
            }
            if not wanted or _download(q, remote, wanted, result, retry=attempt < 2):
                break
        passed = q.check(wanted, result, families, limits)
        q.migrate(passed)
    _apply_all(repo, candidates, q, passed, own_nid, result, families, limits, trust)
    _drop_superseded(repo, result)
    _remember(memory, result, families, trust)
    return result


def _apply_all(
    repo: pygit2.Repository,
    candidates: Mapping[str, str],
    q: _Quarantine,
    passed: Mapping[str, str],
    own_nid: str | None,
    result: FetchResult,
    families: tuple[RefFamily, ...],
    limits: Limits,
    trust: set[str] | None,
) -> None:
    """Move each candidate ref that passed (or needed no download) to its new tip."""
    for name in sorted(candidates):
        if (name in q.staged and name not in passed) or name in q.unsendable:
            continue  # refused in quarantine or by _download, reported there
        trusted_here = trust is None or _owner(name, families)[0] in trust
        tip = passed.get(name, candidates[name])
        _apply(repo, name, tip, own_nid, result, families, limits, q.checked, trusted_here)


def _remember(
    memory: RefusedMemory, result: FetchResult, families: tuple[RefFamily, ...], trust: set[str] | None
) -> None:
    """Record the fetch's refusals of the data itself (:data:`REMEMBERED_KINDS`)."""
    for refusal in result.refused:
        if refusal.side == FETCH and refusal.kind in REMEMBERED_KINDS and refusal.remote is not None:
            owner = _owner_or_none(refusal.ref, families)
            memory.add(refusal.ref, refusal.remote, _memory_key(refusal.local, owner, trust))
    memory.save()


def _memory_key(local: str | None, nid: str | None, trust: set[str] | None) -> str | None:
    """Our side of a remembered refusal: our tip, and whether the node was trusted then (the
    bounds differ), so that a verdict is reused only while neither has changed."""
    untrusted = trust is not None and nid not in trust
    return (local or "-") + ("~untrusted" if untrusted else "") if untrusted else local


def _owner_or_none(name: str, families: tuple[RefFamily, ...]) -> str | None:
    if parse_ref(name) is None and parse_index_ref(name) is None and family_of(name, families) is None:
        return name[len(NAMESPACES) :].split("/", 1)[0] if name.startswith(NAMESPACES) else None
    return _owner(name, families)[0]


_NOT_OUR_REF = re.compile(r"not our ref ([0-9a-f]{40})")
MAX_UNSENDABLE_ROUNDS = 16


def _download(
    q: _Quarantine, remote: str, wanted: dict[str, str], result: FetchResult, *, retry: bool
) -> bool:
    """:meth:`_Quarantine.fetch`; a ref the remote lists but cannot send (it points at an
    object the hub does not have: one broken ref would fail every peer's whole fetch) is
    refused — and remembered — and the others are fetched without it."""
    for _ in range(MAX_UNSENDABLE_ROUNDS):
        try:
            return q.fetch(remote, wanted, retry=retry)
        except TransportError as e:
            bad = set(_NOT_OUR_REF.findall(str(e)))
            names = [n for n, o in wanted.items() if o in bad]
            if not names:
                raise
            for name in names:
                why = "the remote lists it but cannot send its object (a broken ref on the remote)"
                result.refused.append(Refusal(name, why, FETCH, RefusalKind.BAD_TIP, None, wanted.pop(name)))
                q.unsendable.add(name)
            if not wanted:
                return True
    raise TransportError(f"cannot fetch from {describe(remote)}: too many refs it cannot send")


def _drop_superseded(repo: pygit2.Repository, result: FetchResult) -> None:
    """Per-object refs (the layout before the index) of nodes whose index just moved, and
    now covers them, are deleted (:func:`cob.migrate.drop_superseded`)."""
    from .migrate import drop_superseded

    reader = RefReader(repo)
    for update in result.updated:
        nid = parse_index_ref(update.ref)
        if nid is not None:
            drop_superseded(repo, reader, nid)


def _followed(
    refs: Mapping[str, str],
    namespaces: Collection[str] | None,
    own_nid: str | None,
    families: tuple[RefFamily, ...],
) -> dict[str, str]:
    """The refs of ``namespaces`` (and of ``own_nid``); every ref when ``namespaces`` is None."""
    if namespaces is None:
        return dict(refs)
    keep = {*namespaces, *([own_nid] if own_nid else [])}
    return {n: o for n, o in refs.items() if _owner(n, families)[0] in keep}


def _pruned(name: str, families: tuple[RefFamily, ...]) -> bool:
    found = family_of(name, families) if families else None
    return found is not None and found[0].is_pruned(found[2])


def _owner(name: str, families: tuple[RefFamily, ...]) -> tuple[str, str | None, str]:
    """(nid, typename, object id) of a fetched ref; a family ref has neither type nor object
    (its tip must be signed by the namespace's node like any other)."""
    parsed = parse_ref(name)
    if parsed is not None:
        return parsed
    nid = parse_index_ref(name)
    if nid is not None:
        return nid, None, ""
    found = family_of(name, families)
    assert found is not None
    return found[1], None, ""


def _screen(
    repo: pygit2.Repository,
    result: FetchResult,
    listed: Mapping[str, str],
    own_nid: str | None,
    limits: Limits,
    families: tuple[RefFamily, ...] = (),
    memory: RefusedMemory | None = None,
    trust: set[str] | None = None,
) -> dict[str, str]:
    """The remote refs worth fetching; the others are refused at once, before any download.

    Refused here: a namespace that is not a NID, a tip that is an unsigned root, and new refs
    or new namespaces beyond ``limits``: new refs of known namespaces first, then new
    namespaces in a random order (so a flood delays a new honest peer but cannot lock it out
    for good; a follow policy is the real answer). Refs we already have are never held back.
    A ref refused before at the same values (``memory``) is skipped unread. A namespace's new
    family refs count at most ``limits.new_family_refs`` (newest first; the rest ``deferred``),
    so junk family refs under a node's namespace never cost its index or the namespace itself.
    """
    known = set(RefReader(repo).namespaces())
    budget = limits.new_refs
    too_many = f"more than {limits.new_refs} new refs in one fetch: taken by a later one"
    out: dict[str, str] = {}
    new: dict[str, list[str]] = {}
    family_new: dict[str, int] = {}
    for name, oid in sorted(listed.items(), key=_newest_first):
        local = _local_target(repo, name)
        if _set_aside(result, name, oid, local, own_nid, limits, families, memory, trust, family_new):
            continue
        nid = _owner(name, families)[0]
        problem = _known_bad(repo, name, nid, oid)
        if not is_nid(nid):
            result.refused.append(
                Refusal(name, "the namespace is not a node id", FETCH, RefusalKind.BAD_NAMESPACE, None, oid)
            )
        elif problem is not None:
            result.refused.append(Refusal(name, problem[1], FETCH, problem[0], None, oid))
        elif local is not None:
            out[name] = oid  # a ref we have: never held back
        elif nid in known or nid == own_nid:
            if budget > 0:
                budget -= 1
                out[name] = oid
            else:
                result.refused.append(Refusal(name, too_many, FETCH, RefusalKind.LIMIT, None, oid))
        else:
            new.setdefault(nid, []).append(name)
    _take_new_namespaces(new, result, out, budget, limits)
    return out


def _set_aside(
    result: FetchResult,
    name: str,
    oid: str,
    local: str | None,
    own_nid: str | None,
    limits: Limits,
    families: tuple[RefFamily, ...],
    memory: RefusedMemory | None,
    trust: set[str] | None,
    family_new: dict[str, int],
) -> bool:
    """Whether :func:`_screen` leaves a listed ref alone, counted in ``result``: ``ignored``
    (pruned leaves, listed for push's deletions; per-object refs of the layout before the index
    but our own, which our store migrates; leaves not valid yet), ``remembered`` (refused before
    at the same values), ``deferred`` (a namespace's new family refs beyond the bound)."""
    legacy = parse_ref(name)
    found = family_of(name, families) if families else None
    if (
        _pruned(name, families)
        or (legacy is not None and legacy[0] != own_nid)
        or (found is not None and found[0].is_future(found[2]))
    ):
        result.ignored += 1
        return True
    nid = _owner(name, families)[0]
    if memory is not None and memory.knows(name, oid, _memory_key(local, nid, trust)):
        result.remembered += 1
        return True
    if found is not None and local is None:  # our own too: junk under our name is junk
        family_new[nid] = family_new.get(nid, 0) + 1
        if family_new[nid] > limits.new_family_refs:
            result.deferred += 1
            return True
    return False


def _newest_first(item: tuple[str, str]) -> tuple[str, int, str]:
    """Sort key: by namespace; in one, the index and per-object refs before family refs, and
    family leaves newest first (a node's current log bucket before a hub's old junk)."""
    name = item[0]
    rest = name[len(NAMESPACES) :] if name.startswith(NAMESPACES) else name
    nid, _, tail = rest.partition("/")
    if not tail.startswith("refs/") or tail.startswith(("refs/sigrefs", "refs/cobs/")):
        return nid, 0, tail
    inverted = "".join(chr(0x10FFFF - ord(c)) if ord(c) < 0x10FFFF else c for c in tail)
    return nid, 1, inverted


def _known_bad(repo: pygit2.Repository, name: str, nid: str, oid: str) -> tuple[RefusalKind, str] | None:
    """Why a listed tip this repository already holds (e.g. a job's unsigned root, which anyone
    can point a keyless ref at) may not be taken, checked before any budget is spent on it and
    without a download; None when it is not here or may be."""
    if _local_target(repo, name) is not None or not _has_commit(repo, oid):
        return None
    return tip_problem(repo, nid, "", oid)


def _take_new_namespaces(
    new: Mapping[str, list[str]],
    result: FetchResult,
    out: dict[str, str],
    budget: int,
    limits: Limits,
) -> None:
    """Add whole new namespaces to ``out``, in a random order, within the limits; refuse the
    others' refs as ``limit``."""
    order = sorted(new)
    random.SystemRandom().shuffle(order)
    for i, nid in enumerate(order):
        names = new[nid]
        if i < limits.new_namespaces and len(names) <= budget:
            budget -= len(names)
            out.update((n, result.remote_refs[n]) for n in names)
            continue
        why = (
            f"more than {limits.new_namespaces} new namespaces in one fetch: taken by a later one"
            if i >= limits.new_namespaces
            else f"more than {limits.new_refs} new refs in one fetch: taken by a later one"
        )
        result.refused.extend(
            Refusal(n, why, FETCH, RefusalKind.LIMIT, None, result.remote_refs[n]) for n in names
        )


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
    ) -> None:
        self.repo = repo
        self.own_nid = own_nid
        self.trust = trust
        self.timeout = timeout
        self.idle = idle
        self.tag = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.gitdir = os.path.join(_gitdir(repo), QUARANTINE, self.tag)
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

    def _create(self) -> None:
        """The smallest bare repository git accepts, written by hand: ``git init`` copies its
        templates (sample hooks), which cost more to create and delete than a small fetch."""
        if os.path.isdir(self.gitdir):
            return
        main = os.path.abspath(_gitdir(self.repo))
        os.makedirs(os.path.join(self.gitdir, "objects", "info"))
        os.makedirs(os.path.join(self.gitdir, "refs"))
        with open(os.path.join(self.gitdir, "objects", "info", "alternates"), "w") as f:
            f.write(os.path.join(main, "objects") + "\n")
        with open(os.path.join(self.gitdir, "HEAD"), "w") as f:
            f.write("ref: refs/heads/main\n")
        # The repository's own config first (remote names, insteadOf, credential helpers),
        # then the scratch repository's, which wins (it is bare).
        with open(os.path.join(self.gitdir, "config"), "w") as f:
            f.write(
                f'[include]\n\tpath = "{_config_quote(os.path.join(main, "config"))}"\n'
                "[core]\n\trepositoryformatversion = 0\n\tbare = true\n"
            )

    def fetch(self, remote: str, wanted: Mapping[str, str], *, retry: bool) -> bool:
        """Download ``wanted`` into the quarantine; False when a ref vanished (list again)."""
        self._create()
        names = sorted(wanted)
        # Staging refs are flat (refs/git-jobs-staging/<n>): one directory to create and delete.
        lines = [f"+{n}:{STAGING}{i}\n" for i, n in enumerate(names)]
        self._staging = {n: f"{STAGING}{i}" for i, n in enumerate(names)}
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


MAX_COPIED_OBJECTS = 2_000  # beyond this many new objects, or bytes, migrate() lets git fetch them
MAX_COPIED_BYTES = 1 << 20


def _copy_objects(scratch: pygit2.Repository, main: pygit2.Repository, tips: Iterable[str]) -> bool:
    """Copy into ``main`` every object ``tips`` reach in ``scratch`` that ``main`` lacks; False
    (having copied nothing) when that is more than :data:`MAX_COPIED_OBJECTS` objects or
    :data:`MAX_COPIED_BYTES` bytes. A commit or tree ``main`` already has is not entered: what
    it reaches is there too (git's own assumption), which holds because every object is
    written after everything it names (a crash midway leaves no commit without its parents)."""
    children: dict[pygit2.Oid, list[pygit2.Oid]] = {}
    stack = [pygit2.Oid(hex=t) for t in tips]
    roots = list(stack)
    budget = MAX_COPIED_BYTES
    while stack:
        oid = stack.pop()
        if oid in children or oid in main.odb:
            continue
        kind, size = scratch.odb.read_header(oid)  # from the header: a big blob is never inflated
        budget -= size
        if len(children) >= MAX_COPIED_OBJECTS or budget < 0:
            return False
        named: list[pygit2.Oid] = []
        if kind != pygit2.enums.ObjectType.BLOB:
            obj = scratch[oid]
            if isinstance(obj, pygit2.Commit):
                named = [obj.tree_id, *obj.parent_ids]
            elif isinstance(obj, pygit2.Tree):
                named = [e.id for e in obj if e.filemode != pygit2.enums.FileMode.COMMIT]
        children[oid] = named
        stack.extend(named)
    for oid in _dependencies_first(roots, children):
        kind, data = scratch.odb.read(oid)
        main.odb.write(kind, data)
    return True


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


def _apply(
    repo: pygit2.Repository,
    name: str,
    new: str,
    own_nid: str | None,
    result: FetchResult,
    families: tuple[RefFamily, ...] = (),
    limits: Limits | None = None,
    checked: Mapping[str, tuple[str | None, str]] | None = None,
    trusted: bool = True,
) -> None:
    """Move ``name`` to ``new`` if it may; ``checked``: (old, new) pairs the quarantine
    already passed, not walked again while the local ref is still at that old value."""
    nid, _, object_id = _owner(name, families)
    for _ in range(20):  # only repeats when another process moved the ref meanwhile
        old = _local_target(repo, name)
        if old == new:
            return
        if not _has_commit(repo, new):
            result.refused.append(
                Refusal(name, "the remote's tip was not received", FETCH, RefusalKind.MISSING, old, new)
            )
            return
        passed = (checked or {}).get(name) == (old, new)  # a fast-forward, checked already
        if old is not None and not passed and _behind(repo, name, old, new):
            if nid != own_nid:  # our own namespace being behind is what push is for
                result.refused.append(
                    Refusal(
                        name,
                        "the remote is behind this repository (would move the ref backwards)",
                        FETCH,
                        RefusalKind.BEHIND,
                        old,
                        new,
                    )
                )
            return
        problem = (
            None
            if passed
            else ref_problem(repo, name, nid, object_id, old, new, limits, own_nid, families, trusted)
        )
        if problem is not None:
            kind, why = problem
            if kind is RefusalKind.OWN_NAMESPACE and parse_index_ref(name) is not None:
                result.own_index = new
                why += "; its entries are merged into ours by the next write (Store.merge_own)"
            elif kind is RefusalKind.OWN_NAMESPACE and family_of(name, families) is not None:
                result.own_families[name] = new
            result.refused.append(Refusal(name, why, FETCH, kind, old, new))
            return
        if compare_and_swap(repo, name, new, old, "git-jobs: sync fetch"):
            result.updated.append(RefUpdate(name, old, new))
            return
    result.refused.append(Refusal(name, "the local ref kept moving", FETCH, RefusalKind.BUSY, None, new))


def _clean_stale(repo: pygit2.Repository, timeout: float | None) -> None:
    """Delete what a sync whose process died (kill -9, power loss) left: its quarantine
    directory, and staging refs of older versions, which fetched into the repository itself."""
    gitdir = _gitdir(repo)
    base = os.path.join(gitdir, QUARANTINE)
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for tag in os.listdir(base):
            pid_text = tag.split("-", 1)[0]
            if not (pid_text.isdigit() and _alive(int(pid_text))):
                shutil.rmtree(os.path.join(base, tag), ignore_errors=True)
    packed = os.path.join(gitdir, "packed-refs")
    loose = os.path.join(gitdir, STAGING.rstrip("/"))
    if not os.path.isdir(loose):
        try:
            with open(packed, "rb") as f:
                if STAGING.encode() not in f.read():
                    return
        except FileNotFoundError:
            return
    res = run_git(gitdir, ["for-each-ref", "--format=%(refname)", STAGING], timeout=timeout)
    stale = []
    for name in res.stdout.split():
        tag = name[len(STAGING) :].split("/", 1)[0]
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


# -- push ------------------------------------------------------------------------------------
def own_refs(repo: pygit2.Repository, nid: str, typenames: Collection[str] | None = None) -> dict[str, str]:
    """{ref: oid} of this node's index ref (it holds every type: ``typenames`` is kept for
    callers of the per-object layout). Reads one ref, whatever the repository holds."""
    name = index_ref(nid)
    target = _local_target(repo, name)
    return {name: target} if target is not None else {}


def push_refspecs(nid: str, typenames: Collection[str] | None = None) -> list[str]:
    """The non-forced refspec that pushes ``nid``'s index ref."""
    name = index_ref(nid)
    return [f"{name}:{name}"]


_PORCELAIN = re.compile(r"^(?P<flag>[ +\-*=!])\t(?P<src>[^:\t]*):(?P<dst>[^\t]+)\t(?P<summary>.*)$")


def push(
    repo: pygit2.Repository,
    remote: str,
    nid: str,
    *,
    typenames: Collection[str],
    remote_refs: Mapping[str, str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    idle: float | None = DEFAULT_IDLE,
    families: tuple[RefFamily, ...] = (),
) -> PushResult:
    """Push ``nid``'s refs of ``typenames``, never forced; report what the remote refused.

    ``remote_refs`` (the remote's cob refs, as listed by a fetch just before) lets a push with
    nothing new skip the connection entirely. ``families``: our own refs of those families are
    pushed too (never forced), and our pruned ones the remote still lists are deleted there.
    """
    _check_remote(remote)
    result = PushResult()
    mine = own_refs(repo, nid, typenames)
    specs = push_refspecs(nid, typenames) if mine else []
    for family in families:
        ours = {n: o for n, o in family_refs(repo, family, nid).items() if not _pruned(n, families)}
        mine.update(ours)
        if ours:
            specs.append(f"{family.prefix(nid)}*:{family.prefix(nid)}*")
    deletions = _deletions(nid, remote_refs, families)
    specs.extend(f":{name}" for name in deletions)
    legacy = _legacy_deletions(repo, nid, remote_refs)
    if not specs and not legacy:
        return result
    index = index_ref(nid)
    if remote_refs is not None and not deletions and all(remote_refs.get(n) == o for n, o in mine.items()):
        specs = []  # nothing new to send
    if specs:
        _push(repo, remote, specs, [], mine, remote_refs, result, timeout, idle)
    index_there = (remote_refs or {}).get(index) == mine.get(index) or any(
        u.ref == index for u in result.pushed
    )
    if index_there and mine.get(index) is not None:
        _mark_published(repo, mine[index])
    if legacy and index_there and mine.get(index) is not None:
        # Only once our index is on the remote, and each only if it still holds the value our
        # index covers (a lease): the remote never loses what no index of ours holds there.
        leases = [f"--force-with-lease={name}:{oid}" for name, oid in legacy.items()]
        _push(repo, remote, [f":{name}" for name in legacy], leases, mine, remote_refs, result, timeout, idle)
    return result


def _mark_published(repo: pygit2.Repository, tip: str) -> None:
    """Remember that a remote holds our index at ``tip`` (see :data:`cob.sigrefs.PUBLISHED`)."""
    with contextlib.suppress(pygit2.GitError, ValueError, OSError):
        repo.references.create(PUBLISHED, pygit2.Oid(hex=tip), force=True)


def _push(
    repo: pygit2.Repository,
    remote: str,
    specs: list[str],
    options: list[str],
    mine: Mapping[str, str],
    remote_refs: Mapping[str, str] | None,
    result: PushResult,
    timeout: float | None,
    idle: float | None,
) -> None:
    # Level-1 packing: a family's blobs (run logs, up to megabytes) are deflated again for the
    # pack; zlib's fastest level costs a third of git's default for a slightly larger transfer
    # (a hub that unpacks a small push stores loose objects at level 1 anyway).
    args = ["-c", "pack.compression=1", "push", "--porcelain", "--progress", "--no-verify", *options, remote]
    res = run_git(_gitdir(repo), [*args, *specs], timeout=timeout, idle=idle)
    seen = _read_porcelain(repo, res.stdout, mine, remote_refs, result)
    if res.returncode != 0 and not (seen and result.refused):
        # git exits 1 when it refused refs (reported above); anything else is the transport.
        raise TransportError(f"cannot push to {describe(remote)}: {first_error(res.stderr)}")


def _legacy_deletions(
    repo: pygit2.Repository, nid: str, remote_refs: Mapping[str, str] | None
) -> dict[str, str]:
    """{ref: remote oid} of our own per-object refs (the layout before the index) the remote
    still lists whose value our index holds (the same tip, or an older one of its history)."""
    from .migrate import covered

    if remote_refs is None:
        return {}
    tree = tree_of(repo, _local_target(repo, index_ref(nid)))
    out = {}
    for name, oid in sorted(remote_refs.items()):
        parsed = parse_ref(name)
        mine = parsed is not None and parsed[0] == nid and _has_commit(repo, oid)
        if mine and parsed and covered(repo, lookup(repo, tree, parsed[1], parsed[2]), oid):
            out[name] = oid
    return out


def _read_porcelain(
    repo: pygit2.Repository,
    stdout: str,
    mine: Mapping[str, str],
    remote_refs: Mapping[str, str] | None,
    result: PushResult,
) -> bool:
    """Record what ``git push --porcelain`` says of each ref; False when it said nothing."""
    seen = False
    for line in stdout.splitlines():
        m = _PORCELAIN.match(line)
        if m is None:
            continue
        seen = True
        flag, src, dst, summary = m["flag"], m["src"], m["dst"], m["summary"]
        local = mine.get(src) or _local_target(repo, src)
        old = remote_refs.get(dst) if remote_refs is not None else None
        if flag == "=":
            continue
        if flag == "-":
            result.deleted.append(dst)
        elif flag == "!":
            why = re.sub(r"^\[[^\]]*\]\s*", "", summary).strip("() ") or summary
            kind, reason = _push_refusal(why)
            result.refused.append(Refusal(dst, reason, PUSH, kind, local, old))
        elif local is not None and flag == "*":
            result.pushed.append(RefUpdate(dst, None, local))
        elif local is not None:
            if old is None and ".." in summary:
                old = _expand(repo, summary.split("..", 1)[0].strip())
            result.pushed.append(RefUpdate(dst, old, local))
    return seen


# What `git push --porcelain` says when another push moved the same ref at the same moment:
# harmless (our tip is there or the next sync sends it), so not a hook's refusal.
_LOST_RACE = ("failed to update ref", "cannot lock ref", "incorrect old value", "failed to lock")


def _push_refusal(why: str) -> tuple[RefusalKind, str]:
    """The kind and one-line reason of a ref the remote refused, from git's porcelain summary."""
    if "fast-forward" in why or "fetch first" in why:
        return RefusalKind.NON_FAST_FORWARD, (
            f"the remote refused it ({why}); the remote has changes this node lacks: fetch, then sync again"
        )
    if any(marker in why for marker in _LOST_RACE):
        return RefusalKind.BUSY, (
            f"another push updated it at the same moment ({why}); the next sync completes"
        )
    return RefusalKind.REJECTED, f"the remote refused it ({why})"


def _deletions(nid: str, remote_refs: Mapping[str, str] | None, families: tuple[RefFamily, ...]) -> list[str]:
    """Our own pruned family refs that the remote still lists (known only after a listing)."""
    if remote_refs is None:
        return []
    out = []
    for name in sorted(remote_refs):
        found = family_of(name, families)
        if found is not None and found[1] == nid and found[0].is_pruned(found[2]):
            out.append(name)
    return out


def _expand(repo: pygit2.Repository, short: str) -> str | None:
    if is_oid(short):
        return short
    try:
        return str(repo.revparse_single(short).id)
    except (KeyError, ValueError, pygit2.GitError):
        return None
