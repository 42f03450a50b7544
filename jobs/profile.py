"""What each node can run, from signed data it publishes: the ``dev.gitjobs.node`` profile.

Every reader ranks a job (:mod:`jobs.assign`) only among the trusted nodes that can run it, so
each needs every trusted node's labels (``runs_on``) and resource capacities. A node says them
in a small collaborative object of its own type, one per node: the content-addressed root
``profile {node}`` (the same object id on every replica, derived from the NID alone) and signed
``announce {labels, resources}`` changes **by that node only**; the latest by (commit time,
change oid) wins. Signing, sync (it travels in the node's index like its jobs), verification
and caching are `cob`'s, as for jobs. The node announces at ``git jobs node`` start and
``work any`` whenever its labels or capacities differ from what it last published.

A node *can run* a job when it has published a profile holding every label of the job's
``runs_on`` and no capacity 0 for a resource the job holds (a resource it does not declare is
not limited, as on the node). A node that has published nothing is not known to have any
label: it can run only jobs without ``runs_on``. See docs/FORMAT.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

import cob
from cob import Change, CobType, EvalContext, Reject

from .errors import JobsError
from .layout import ROOT_AUTHOR
from .spec.labels import LABEL
from .spec.resources import MAX_CAPACITY, RESOURCE
from .text import safe

if TYPE_CHECKING:
    from .policy import Policy
    from .spec.definitions import Definitions, JobDef
    from .store import Jobs

TYPENAME = "dev.gitjobs.node"
MAX_LABELS = 64  # labels one node publishes (detected OS/arch aliases included)
MAX_RESOURCES = 32  # resource capacities one node publishes


class Profile(msgspec.Struct, tag="profile", tag_field="type", forbid_unknown_fields=True):
    """The root op: this object is the profile of ``node`` (a NID)."""

    node: str


class Announce(msgspec.Struct, tag="announce", tag_field="type", forbid_unknown_fields=True):
    """The node's labels (sorted, unique) and resource capacities, replacing earlier ones."""

    labels: list[str]
    resources: dict[str, int]


ProfileOp = Profile | Announce


class ProfileState(msgspec.Struct, array_like=True):
    node: str
    labels: list[str] = msgspec.field(default_factory=list)
    resources: dict[str, int] = msgspec.field(default_factory=dict)
    key: tuple[int, str] | None = None  # (commit time, oid) of the announce in force
    announced: bool = False


def check_announce(labels: Sequence[str], resources: Mapping[str, int]) -> str | None:
    """Why an ``announce`` is out of bounds, or None."""
    if len(labels) > MAX_LABELS:
        return f"a node publishes at most {MAX_LABELS} labels, not {len(labels)}"
    if len(resources) > MAX_RESOURCES:
        return f"a node publishes at most {MAX_RESOURCES} resources, not {len(resources)}"
    for label in labels:
        if not isinstance(label, str) or not LABEL.match(label):
            return f"invalid label {safe(str(label)[:40])!r}"
    if list(labels) != sorted(set(labels)):
        return "labels must be sorted and unique"
    for name, capacity in resources.items():
        if not RESOURCE.match(name):
            return f"invalid resource name {safe(name[:40])!r}"
        if isinstance(capacity, bool) or not 0 <= capacity <= MAX_CAPACITY:
            return f"resource {name}: capacity must be from 0 to {MAX_CAPACITY}"
    return None


class ProfileType(CobType[ProfileState]):
    typename: ClassVar[str] = TYPENAME
    op_type: ClassVar[Any] = ProfileOp
    state_type: ClassVar[Any] = ProfileState
    content_addressed_root: ClassVar[bool] = True
    root_author: ClassVar[str] = ROOT_AUTHOR
    commutative: ClassVar[bool] = True

    def initial(self, root: Change) -> ProfileState:
        if len(root.ops) != 1 or not isinstance(root.ops[0], Profile):
            raise Reject("a node profile's root carries exactly one profile op")
        if not cob.is_nid(root.ops[0].node):
            raise Reject(f"a profile names an invalid node id {safe(root.ops[0].node[:80])!r}")
        return ProfileState(root.ops[0].node)

    def validate(self, state: ProfileState, change: Change, ctx: EvalContext) -> None:
        if change.author != state.node:
            raise Reject(f"only node {state.node} may announce its profile, not {change.author}")
        for op in change.ops:
            if not isinstance(op, Announce):
                raise Reject("a profile op may only appear in the root")
            problem = check_announce(op.labels, op.resources)
            if problem:
                raise Reject(problem)

    def apply(self, state: ProfileState, change: Change) -> None:
        key = change.key
        for op in change.ops:
            if isinstance(op, Announce) and (state.key is None or key > tuple(state.key)):
                state.labels, state.resources = list(op.labels), dict(op.resources)
                state.key, state.announced = key, True

    def summary(self, ops: Sequence[Any]) -> str:
        if ops and isinstance(ops[0], Profile):
            return f"Profile of {ops[0].node}"
        return f"Announce {len(ops[-1].labels)} label(s)" if ops else "empty change"

    def index_keys(self, root: Change) -> Iterable[tuple[str, str]]:
        if root.ops and isinstance(root.ops[0], Profile):
            yield ("node", root.ops[0].node)


PROFILE_TYPE = ProfileType()


class ProfileError(JobsError):
    """A profile this node was asked to publish is out of bounds."""


@dataclass(frozen=True, slots=True)
class NodeProfile:
    """What a node published about itself (its latest ``announce``)."""

    node: str
    labels: frozenset[str]
    resources: Mapping[str, int]

    def can_run(self, runs_on: Iterable[str], resources: Iterable[str]) -> bool:
        return set(runs_on) <= self.labels and all(self.resources.get(r, 1) > 0 for r in resources)

    def to_json(self) -> dict[str, Any]:
        return {"labels": sorted(self.labels), "resources": dict(sorted(self.resources.items()))}


def profiles(store: Jobs, nids: Iterable[str]) -> dict[str, NodeProfile]:
    """The published profile of each of ``nids`` that has one (verified, latest announce)."""
    out: dict[str, NodeProfile] = {}
    for nid in nids:
        for object_id in store.store.lookup(PROFILE_TYPE, "node", nid):
            ev = store.store.load(PROFILE_TYPE, object_id)
            state = ev.state if ev is not None else None
            if state is not None and state.node == nid and state.announced:
                out[nid] = NodeProfile(nid, frozenset(state.labels), dict(state.resources))
    return out


def announce(store: Jobs, labels: Iterable[str], resources: Mapping[str, int]) -> bool:
    """Publish this node's labels and capacities, unless its profile already says exactly that.

    Returns True when a change was written. The profile object is created on first use."""
    signer = store._signer()
    wanted_labels = sorted(set(labels))
    wanted = Announce(wanted_labels, dict(sorted(resources.items())))
    problem = check_announce(wanted.labels, wanted.resources)
    if problem:
        raise ProfileError(problem)
    found = store.store.lookup(PROFILE_TYPE, "node", signer.nid)
    ev = store.store.load(PROFILE_TYPE, found[0]) if found else None
    state = ev.state if ev is not None else None
    if (
        state is not None
        and state.announced
        and (state.labels, state.resources) == (wanted.labels, wanted.resources)
    ):
        return False
    if found:
        # Later than the announce in force even within the same second: the latest by (commit
        # time, oid) wins, so this node's own announces must be strictly ordered in time.
        last = state.key[0] if state is not None and state.key is not None else 0
        store.store.update(PROFILE_TYPE, found[0], [wanted], timestamp=max(int(time.time()), last + 1))
    else:
        store.store.create(PROFILE_TYPE, [Profile(signer.nid)], then=[wanted])
    return True


def capable(d: JobDef, nid: str, known: Mapping[str, NodeProfile]) -> bool:
    """Can node ``nid`` run definition ``d``, by what it published?"""
    profile = known.get(nid)
    if profile is None:  # nothing published: no label known, no resource limited
        return not d.runs_on
    return profile.can_run(d.runs_on, d.resources)


def why_nobody(d: JobDef, nids: Sequence[str], known: Mapping[str, NodeProfile]) -> str:
    """Why no node of ``nids`` can run ``d``, for a person ("no trusted node has label slow")."""
    have = [known[n] for n in nids if n in known]
    for label in d.runs_on:
        if not any(label in p.labels for p in have):
            why = f"no trusted node has label {safe(label)}"
            break
    else:
        zero = [r for r in d.resources if all(p.resources.get(r, 1) == 0 for p in have)]
        if zero and have:
            why = f"every trusted node has capacity 0 of resource {safe(zero[0])}"
        else:
            why = f"no trusted node has labels {', '.join(safe(x) for x in d.runs_on)} together"
    silent = len(nids) - len(have)
    if silent:
        why += f" ({silent} trusted node{'s' if silent != 1 else ''} published no labels)"
    return why


def eligibility(
    store: Jobs, defs: Definitions | None, policy: Policy
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(job name → the trusted nodes that can run it, job name → why none can), for the jobs
    of ``defs`` that need a label or a resource, or whose needs do (a need runs on the same
    node). Empty with no policy: then every node runs what it can, and nothing is shared."""
    if defs is None or policy.everyone:
        return {}, {}
    trusted = list(policy.trusted)
    eligible: dict[str, list[str]] = {}
    nobody: dict[str, str] = {}
    known: dict[str, NodeProfile] | None = None
    for d in defs:  # needs first: a job inherits what its needs ask of a node
        limited = [n for n in d.needs if n in eligible]
        if not (d.runs_on or d.resources or limited):
            continue
        if known is None:
            known = profiles(store, trusted)
        able = [n for n in trusted if capable(d, n, known) and all(n in eligible[x] for x in limited)]
        eligible[d.name] = able
        if not able:
            need = next((x for x in limited if x in nobody), None)
            if need is not None:
                nobody[d.name] = f"its need {safe(need)}: {nobody[need]}"
            elif any(capable(d, n, known) for n in trusted):
                nobody[d.name] = "no trusted node can run both it and all its needs"
            else:
                nobody[d.name] = why_nobody(d, trusted, known)
    return eligible, nobody


__all__ = [
    "MAX_LABELS",
    "MAX_RESOURCES",
    "PROFILE_TYPE",
    "TYPENAME",
    "Announce",
    "NodeProfile",
    "Profile",
    "ProfileError",
    "ProfileState",
    "announce",
    "capable",
    "check_announce",
    "eligibility",
    "profiles",
    "why_nobody",
]
