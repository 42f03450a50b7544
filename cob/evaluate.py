"""Loading an object: walk its DAG, verify every change, fold in a deterministic order.

The order is topological; among changes ready at the same step, the least (commit time, oid)
goes first, so every replica with the same DAG folds the same sequence. A change that fails
verification or that the type rejects is dropped *with its descendants* and reported — peer data
never raises out of here. Given a previous :class:`Evaluation` of a commutative type, only
the changes not seen before are read and folded (the cache's incremental path).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pygit2

from .change import MAX_PARENTS, Change, Codec, InvalidChangeError, RejectKind, read_change

__all__ = ["MAX_CHANGES", "Evaluation", "RejectKind", "Rejection", "Verdict", "evaluate"]
from .cobtype import Reject
from .refs import is_ancestor

S = TypeVar("S")

# A DAG bigger than this is not walked further; the rest is reported, not read.
MAX_CHANGES = 200_000
# Changes per fold that get an ancestor bitset (memory ~ n^2/16 bytes: 6 MB at 10,000).
BITSET_LIMIT = 20_000
MISSING_ROOT = "the object's root is missing or invalid"


class Verdict(str):
    """Why one change was dropped: the reason people read, carrying the kind code decides on.

    A ``str`` so that everything showing or comparing reasons keeps working; decisions read
    ``.kind`` (:class:`RejectKind`), never the text.
    """

    kind: RejectKind

    def __new__(cls, kind: RejectKind, reason: str) -> Verdict:
        self = super().__new__(cls, reason)
        self.kind = kind
        return self

    @property
    def reason(self) -> str:
        return str(self)


def _too_large() -> Verdict:
    return Verdict(RejectKind.TOO_LARGE, f"history larger than {MAX_CHANGES} changes")


@dataclass(frozen=True, slots=True)
class Rejection:
    """A change the load dropped: which object, which change, and why."""

    object_id: str
    change: str
    reason: str
    kind: RejectKind = RejectKind.INVALID

    def __str__(self) -> str:
        return f"{self.object_id[:12]} change {self.change[:12]}: {self.reason}"


@dataclass(slots=True)
class Evaluation(Generic[S]):
    """The folded state of one object and what it was built from.

    ``changes`` holds the changes folded by the last evaluation, in fold order (all of them
    for a full load). ``accepted``/``rejected`` cover the whole history, so the next
    evaluation can stop where this one ended.
    """

    typename: str
    object_id: str
    state: S | None
    tips: dict[str, str] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)
    rejected: dict[str, Verdict] = field(default_factory=dict)
    heads: set[str] = field(default_factory=set)

    @property
    def valid(self) -> bool:
        return self.state is not None

    def curable(self) -> bool:
        """Could objects arriving later (a fetch) change this result without any ref moving?"""
        return any(v.kind.transient for v in self.rejected.values())

    def rejections(self) -> list[Rejection]:
        return [Rejection(self.object_id, oid, v.reason, v.kind) for oid, v in sorted(self.rejected.items())]


class _Context:
    """Answers ``is_ancestor`` from the in-memory DAG, falling back to git for old changes."""

    __slots__ = ("_desc", "_nondesc", "bits", "generation", "parents", "repo")

    def __init__(self, repo: pygit2.Repository, parents: Mapping[str, tuple[str, ...]]) -> None:
        self.repo = repo
        self.parents = parents
        self.generation: dict[str, int] = {}
        # Ancestor bitsets of the changes accepted in this fold (bit i = i-th accepted change),
        # kept for the first BITSET_LIMIT of them: answering "is S an ancestor of C" is then one
        # shift, not a walk (a job with 10,000 changes asks this for every finish).
        self.bits: dict[str, int] = {}
        # Per ancestor, changes known to descend from it / known not to. The DAG never changes
        # during a fold, so answers can be remembered: a chain of N changes that each ask about
        # the same ancestor (a hostile run finished N times) costs O(N), not O(N^2).
        self._desc: dict[str, set[str]] = {}
        self._nondesc: dict[str, set[str]] = {}

    def accept(self, oid: str, parents: tuple[str, ...]) -> None:
        """Record an accepted change (its generation, and its ancestor bitset while small)."""
        generation = self.generation
        generation[oid] = 1 + max((generation.get(p, 0) for p in parents), default=0)
        if len(self.bits) < BITSET_LIMIT:
            acc = 1 << len(self.bits)
            for p in parents:
                if p in generation:  # accepted in this fold: must have bits to be exact
                    b = self.bits.get(p)
                    if b is None:
                        return
                    acc |= b
            self.bits[oid] = acc

    def is_ancestor(self, ancestor: str, of: str) -> bool:
        if ancestor == of:
            return True
        by_bits = self._by_bits(ancestor, of)
        if by_bits is not None:
            return by_bits
        desc = self._desc.setdefault(ancestor, set())
        nondesc = self._nondesc.setdefault(ancestor, set())
        if of in desc:
            return True
        if of in nondesc:
            return False
        return self._walk(ancestor, of, desc, nondesc)

    def _by_bits(self, ancestor: str, of: str) -> bool | None:
        """The answer from the ancestor bitsets, or None when they cannot tell."""
        a_bits = self.bits.get(ancestor)
        if a_bits is None:
            return None
        bit = a_bits.bit_length() - 1  # its own bit is its highest
        for p in self.parents.get(of, ()):
            b = self.bits.get(p)
            if b is None:
                if p in self.generation:
                    return None  # a new parent beyond the bitsets: walk instead
                continue  # an older change: cannot lead to a new one
            if b >> bit & 1:
                return True
        return False

    def _walk(self, ancestor: str, of: str, desc: set[str], nondesc: set[str]) -> bool:
        """Walk back from ``of`` through this fold's changes, then ask git about older ones."""
        target_gen = self.generation.get(ancestor)
        stack = [of]
        seen = {of}
        old: list[str] = []
        while stack:
            node = stack.pop()
            for p in self.parents.get(node, ()):
                if p == ancestor or p in desc:
                    desc.add(of)
                    return True
                if p in seen or p in nondesc:
                    continue
                seen.add(p)
                gen = self.generation.get(p)
                if gen is None:
                    old.append(p)
                elif target_gen is None or gen > target_gen:
                    stack.append(p)
        # When the ancestor is new, only new changes can lead to it.
        found = target_gen is None and any(is_ancestor(self.repo, ancestor, p) for p in old)
        if found:
            desc.add(of)
        else:
            nondesc.update(seen)
        return found


def _moved_forward(repo: pygit2.Repository, old: Mapping[str, str], new: Mapping[str, str]) -> bool:
    """True when every old tip is still reached from the same namespace's new tip, so the
    history a previous fold saw is all still there."""
    for nid, before in old.items():
        after = new.get(nid)
        if after == before:
            continue
        if after is None or not is_ancestor(repo, before, after):
            return False
    return True


def _parents_of_unreadable(repo: pygit2.Repository, oid: str) -> tuple[int, tuple[str, ...]]:
    """Time and parents of a rejected commit, to keep walking to what it builds on.

    A commit with more than MAX_PARENTS parents is not followed: a hostile change with
    10,000 parents must not make the walk read them all.
    """
    try:
        obj = repo[oid]
        if isinstance(obj, pygit2.Commit):
            ps = tuple(str(p) for p in obj.parent_ids)
            return obj.commit_time, ps if len(ps) <= MAX_PARENTS else ()
    except (pygit2.GitError, KeyError, ValueError, OverflowError):
        pass
    return 0, ()


def evaluate(
    repo: pygit2.Repository,
    codec: Codec,
    object_id: str,
    tips: Mapping[str, str],
    base: Evaluation[Any] | None = None,
    *,
    trim: bool = True,
    recheck: bool = False,
) -> Evaluation[Any]:
    """Fold the object reachable from ``tips``. ``base`` (consumed) skips what it already saw.

    A history over :data:`MAX_CHANGES` (counting what ``base`` already holds) is handed to
    :func:`_evaluate_trimmed`, which keeps a deterministic subset of the tips; ``trim=False``
    (its own inner fold) rejects what is past the limit instead of trimming again.
    ``recheck``: check every signature again, even those checked before (an application's full verify).

    ``base`` is only extended when that equals a full fold: every namespace's tip must have
    stayed or moved forward (a ref moved backwards or sideways, or was deleted, drops history),
    and none of its rejections may be one that new objects could cure (a missing parent).
    Otherwise the object is folded from scratch.
    """
    ev = _start(repo, codec, object_id, tips, base)
    walk = _Walk.collect(repo, codec, object_id, tips, ev, trim, recheck)
    if walk is None:
        return _evaluate_trimmed(repo, codec, object_id, tips, recheck)
    _fold(repo, codec, ev, walk)
    ev.tips = dict(tips)  # only now: a bail-out above must leave a caller's base consistent
    return ev


def _start(
    repo: pygit2.Repository,
    codec: Codec,
    object_id: str,
    tips: Mapping[str, str],
    base: Evaluation[Any] | None,
) -> Evaluation[Any]:
    """The evaluation to extend: ``base`` when extending it equals a full fold, else empty."""
    if base is not None and (base.curable() or not _moved_forward(repo, base.tips, tips)):
        base = None
    if base is not None and base.state is not None:
        base.changes = []
        return base
    return Evaluation(codec.cobtype.typename, object_id, None)


@dataclass(slots=True)
class _Walk:
    """The changes not seen before, each read and verified once, with what ordering needs."""

    read: dict[str, Change | None] = field(default_factory=dict)
    why: dict[str, Verdict] = field(default_factory=dict)
    parents: dict[str, tuple[str, ...]] = field(default_factory=dict)
    keys: dict[str, tuple[int, str]] = field(default_factory=dict)

    @classmethod
    def collect(
        cls,
        repo: pygit2.Repository,
        codec: Codec,
        object_id: str,
        tips: Mapping[str, str],
        ev: Evaluation[Any],
        trim: bool,
        recheck: bool = False,
    ) -> _Walk | None:
        """Walk back from ``tips`` to what ``ev`` already settled; None: too big, trim."""
        walk = cls()
        known = len(ev.accepted) + len(ev.rejected)
        stack = [t for t in set(tips.values()) if t not in ev.accepted and t not in ev.rejected]
        seen = set(stack)
        while stack:
            oid = stack.pop()
            if len(walk.read) + known >= MAX_CHANGES:
                if trim:
                    return None
                walk.why[oid] = _too_large()
                walk.read[oid], walk.parents[oid], walk.keys[oid] = None, (), (0, oid)
                continue
            walk.visit(repo, codec, oid, oid == object_id, recheck)
            for p in walk.parents[oid]:
                if p not in seen and p not in ev.accepted and p not in ev.rejected:
                    seen.add(p)
                    stack.append(p)
        return walk

    def visit(self, repo: pygit2.Repository, codec: Codec, oid: str, is_root: bool, recheck: bool) -> None:
        try:
            got = read_change(repo, codec, oid, is_root=is_root, recheck=recheck)
            self.read[oid], self.parents[oid], self.keys[oid] = got, got.parents, got.key
        except InvalidChangeError as e:
            self.read[oid], self.why[oid] = None, Verdict(e.kind, str(e))
            ts, ps = _parents_of_unreadable(repo, oid)
            self.parents[oid], self.keys[oid] = ps, (ts, oid)

    def order(self) -> Iterator[str]:
        """Topological order among the new changes; ties by (commit time, oid)."""
        indegree = dict.fromkeys(self.read, 0)
        children: dict[str, list[str]] = {}
        for oid, ps in self.parents.items():
            for p in ps:
                if p in self.read:
                    indegree[oid] += 1
                    children.setdefault(p, []).append(oid)
        ready = [(self.keys[oid], oid) for oid, d in indegree.items() if d == 0]
        heapq.heapify(ready)
        while ready:
            _, oid = heapq.heappop(ready)
            for child in children.get(oid, ()):
                indegree[child] -= 1
                if indegree[child] == 0:
                    heapq.heappush(ready, (self.keys[child], child))
            yield oid


def _fold(repo: pygit2.Repository, codec: Codec, ev: Evaluation[Any], walk: _Walk) -> None:
    """Apply the new changes to ``ev`` in order; parents seen before are already settled."""
    cobtype = codec.cobtype
    ctx = _Context(repo, walk.parents)
    for oid in walk.order():
        change = walk.read[oid]
        verdict = walk.why.get(oid) or _ancestry_problem(oid, ev, walk)
        if verdict is None and change is not None and change.ops:  # a merge change: no ops, no question
            try:
                if oid == ev.object_id:
                    ev.state = cobtype.initial(change)
                else:
                    cobtype.validate(ev.state, change, ctx)
                    cobtype.apply(ev.state, change)
            except Reject as e:
                verdict = Verdict(RejectKind.REFUSED, str(e) or "rejected by the type")
        if verdict is not None:
            ev.rejected[oid] = verdict
            continue
        assert change is not None
        ctx.accept(oid, change.parents)
        ev.accepted.add(oid)
        ev.changes.append(change)
        ev.heads.difference_update(change.parents)
        ev.heads.add(oid)


def _history_size(repo: pygit2.Repository, tips: Iterable[str], limit: int) -> int:
    """How many commits ``tips`` reach, counting no further than ``limit + 1``."""
    walker = repo.walk(None, pygit2.enums.SortMode.NONE)
    for tip in tips:
        try:
            walker.push(pygit2.Oid(hex=tip))
        except (pygit2.GitError, KeyError, ValueError):
            continue
    count = 0
    try:
        for _ in walker:
            count += 1
            if count > limit:
                break
    except (pygit2.GitError, KeyError, ValueError):
        pass  # a missing or broken object: the fold itself will reject what leads to it
    return count


def _evaluate_trimmed(
    repo: pygit2.Repository, codec: Codec, object_id: str, tips: Mapping[str, str], recheck: bool = False
) -> Evaluation[Any]:
    """Fold an object whose history is over :data:`MAX_CHANGES`, deterministically.

    Tips are kept smallest history first (ties by oid) while their union stays within the
    limit; the others are rejected as too large. Every peer with the same refs keeps the same
    tips, so an oversized namespace costs bounded work and cannot make replicas disagree.
    """
    distinct = sorted(set(tips.values()))
    sizes = {t: _history_size(repo, [t], MAX_CHANGES) for t in distinct}
    kept: list[str] = []
    for tip in sorted(distinct, key=lambda t: (sizes[t], t)):
        if sizes[tip] <= MAX_CHANGES and _history_size(repo, [*kept, tip], MAX_CHANGES) <= MAX_CHANGES:
            kept.append(tip)
    dropped = [t for t in distinct if t not in kept]
    kept_tips = {n: t for n, t in tips.items() if t in kept}
    ev = evaluate(repo, codec, object_id, kept_tips, trim=False, recheck=recheck)
    ev.tips = dict(tips)
    for tip in dropped:
        ev.rejected[tip] = _too_large()
    return ev


def _ancestry_problem(oid: str, ev: Evaluation[Any], walk: _Walk) -> Verdict | None:
    """Why a structurally fine change still cannot be folded (root, parents), or None."""
    if oid == ev.object_id:
        return None
    ps = walk.parents[oid]
    if not ps:  # before the state check: a second root may sort before the real one
        return Verdict(RejectKind.ANCESTRY, "a second root (no parents) in the object's history")
    for p in ps:
        if p in ev.rejected:
            return Verdict(RejectKind.ANCESTRY, f"descends from rejected change {p[:12]}")
    if ev.state is None:
        return Verdict(RejectKind.MISSING, MISSING_ROOT)
    for p in ps:
        if p not in ev.accepted:
            if p not in walk.read:
                return Verdict(RejectKind.MISSING, f"parent {p[:12]} is missing")
            return Verdict(RejectKind.ANCESTRY, f"parent {p[:12]} not accepted")
    return None
