"""Fetch: screen the listing, download into the quarantine, check, then move refs by
compare-and-swap (see :mod:`cob.sync`)."""

from __future__ import annotations

import random
import re
from collections.abc import Collection, Mapping

import pygit2

from .. import layout
from ..errors import TransportError
from ..family import RefFamily, family_of
from ..gitrun import DEFAULT_IDLE, DEFAULT_TIMEOUT, describe
from ..identity import is_nid
from ..reader import RefReader
from ..refs import NAMESPACES, compare_and_swap, parse_ref
from ..refused import RefusedMemory
from ..sigrefs import (
    parse_index_ref,
)
from .checks import (
    _behind,
    _has_commit,
    _local_target,
    ref_problem,
    tip_problem,
)
from .limits import Limits
from .listing import _gitdir, _listing, _owner, _pruned
from .localhub import local_hub
from .quarantine import _clean_stale, _Quarantine
from .results import FETCH, REMEMBERED_KINDS, FetchResult, RefUpdate, Refusal, RefusalKind


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
    hub = local_hub(repo, remote)
    with _Quarantine(repo, timeout, idle, own_nid, trust, hub) as q:
        for attempt in range(3):
            listed, ignored = _listing(repo, remote, typenames, timeout, idle, families, own_nid or "", hub)
            followed = _followed(listed, namespaces, own_nid, families)
            result = FetchResult(remote_refs=listed, skipped=len(listed) - len(followed), ignored=ignored)
            candidates = _screen(repo, result, followed, own_nid, limits, families, memory, trust)
            ours = {name: _local_target(repo, name) for name in candidates}
            wanted = {
                name: oid
                for name, oid in candidates.items()
                if ours[name] != oid and not _has_commit(repo, oid)
            }
            # what we tell the remote we have: our tips of the refs taken, and every index
            haves = {oid for oid in ours.values() if oid is not None}
            haves.update(RefReader(repo).index_tips().values())
            if not wanted or _download(q, remote, wanted, result, retry=attempt < 2, haves=haves):
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
    q: _Quarantine,
    remote: str,
    wanted: dict[str, str],
    result: FetchResult,
    *,
    retry: bool,
    haves: Collection[str] = (),
) -> bool:
    """:meth:`_Quarantine.fetch`; a ref the remote lists but cannot send (it points at an
    object the hub does not have: one broken ref would fail every peer's whole fetch) is
    refused — and remembered — and the others are fetched without it."""
    for _ in range(MAX_UNSENDABLE_ROUNDS):
        try:
            return q.fetch(remote, wanted, retry=retry, haves=haves)
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
    from ..migrate import drop_superseded

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
        if compare_and_swap(repo, name, new, old, f"{layout.current().prefix}: sync fetch"):
            result.updated.append(RefUpdate(name, old, new))
            return
    result.refused.append(Refusal(name, "the local ref kept moving", FETCH, RefusalKind.BUSY, None, new))
