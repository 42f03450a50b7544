"""Who runs which job: every node computes the same answer from the policy and the ledger alone.

With ``[policy] nodes`` and ``quorum``, a job needs ``quorum`` trusted runs, not one per node.
No node tells another what to do; each ranks the trusted nodes for each job by a *rendezvous
hash* (highest random weight) and the first ``quorum`` of that ranking run it:

    weight(key, nid) = SHA-256( key ‖ 0x0A ‖ nid )     (ASCII; compared as 32-byte strings)
    ranking(key)     = trusted NIDs by weight, highest first

``key`` is a job id (40 lower-case hex digits) and ``nid`` the ``z6Mk…`` form. Jobs joined by
``needs`` (in either direction) form a *group* that is assigned as one, keyed by the id of its
job whose name sorts first: a need is *this node's own* run of it, so a group must run on one
node to mean anything.

Takeover, with no messages either: the ledger says which ranked nodes have *started* a group
(a run of any of its jobs) and when the job was *released* (the earliest ``release`` op a
trusted node signed). While fewer than ``quorum`` have started, the not-started nodes in rank
order are asked for ``quorum - started`` of them, plus one more per ``takeover`` period elapsed
since the release. Once ``quorum`` have started, nobody else is asked: a node that comes back
late finds its job covered and runs nothing. A node whose every run of the group is *lost*
(past its deadline: :mod:`jobs.deadline`) has not started it and is not asked again; takeover
periods then count from the latest loss. See docs/NODE.md for the guarantees and limits.

This module imports nothing of :mod:`jobs.node`: ``status`` shows the assignment too.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pygit2

from .deadline import Judge
from .errors import JobsError
from .model import Job
from .policy import Policy
from .text import safe

CONFIG_KEY = "jobs.assignment"
SHARED = "shared"  # run only the jobs assigned here (the default)
ALL = "all"  # run every job, as without a policy
MODES = (SHARED, ALL)
PASSING = frozenset({"succeeded", "skipped"})


class AssignmentError(JobsError):
    """A bad ``jobs.assignment`` setting."""


def weight(key: str, nid: str) -> bytes:
    """The rendezvous weight of node ``nid`` for job ``key`` (higher runs first)."""
    return hashlib.sha256(f"{key}\n{nid}".encode()).digest()


def rank(key: str, nids: Iterable[str]) -> tuple[str, ...]:
    """``nids`` in the order they are asked to run job ``key``: highest weight first."""
    return tuple(sorted(set(nids), key=lambda nid: weight(key, nid), reverse=True))


def groups(names: Iterable[str], needs: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Each job name → the first name (sorted) of its group: jobs joined by ``needs``."""
    parent = {n: n for n in names}

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for name, wanted in needs.items():
        for need in wanted:
            if name in parent and need in parent:
                a, b = root(name), root(need)
                parent[max(a, b)] = min(a, b)
    return {n: root(n) for n in parent}


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Assignment:
    """The nodes asked to run one group of jobs now, and why (the same on every replica)."""

    key: str  # the job id the ranking hashes
    group: tuple[str, ...]  # the names of the jobs assigned together
    ranking: tuple[str, ...]  # every trusted node, first asked first
    quorum: int
    started: frozenset[str]  # ranked nodes with a run of a job of the group
    released_at: float | None  # earliest trusted release of the group (ledger time)
    takeover: float
    now: float
    done: bool = False  # every job of the group has quorum trusted passes
    # Ranked nodes whose every run of the group is lost (jobs.deadline): not started, not asked;
    # takeover periods count from the latest loss. ``lost_due``: when the earliest run of a
    # started node still in progress would turn lost (when to look again).
    lost: frozenset[str] = frozenset()
    lost_since: float | None = None
    lost_due: float | None = None

    @property
    def periods(self) -> int:
        """Takeover periods elapsed since the release, or since the latest lost run (0 before
        it, or with no release)."""
        if self.released_at is None:
            return 0
        since = max(self.released_at, self.lost_since or self.released_at)
        if self.now < since:
            return 0
        return math.floor((self.now - since) / self.takeover)

    @property
    def waiting(self) -> tuple[str, ...]:
        """Ranked nodes that have not started the group (nor lost a run of it), in rank order."""
        return tuple(n for n in self.ranking if n not in self.started and n not in self.lost)

    @property
    def missing(self) -> int:
        """Starts still needed to reach the quorum."""
        return max(0, self.quorum - len(self.started))

    @property
    def assigned(self) -> tuple[str, ...]:
        """Who is asked now, in rank order: those who started, and while the quorum is not
        reached, the next ``missing`` not-started nodes plus one per takeover period."""
        asked = set(self.started)
        if self.missing:
            asked.update(self.waiting[: self.missing + self.periods])
        return tuple(n for n in self.ranking if n in asked)

    def runs_on(self, nid: str) -> bool:
        return nid in self.assigned

    def takes_over_at(self, nid: str) -> float | None:
        """When ``nid`` would be asked if nothing else starts meanwhile (None: never, or now).
        While the quorum has started, when a run in progress would turn lost (a look again)."""
        if self.runs_on(nid) or self.released_at is None or nid not in self.waiting:
            return None
        if not self.missing:
            return None if self.done else self.lost_due
        since = max(self.released_at, self.lost_since or self.released_at)
        periods = self.waiting.index(nid) - self.missing + 1
        return since + periods * self.takeover

    def why_not(self, nid: str, policy: Policy) -> str:
        """Why ``nid`` leaves this group alone, for a person ("assigned to alice-linux, …")."""
        who = ", ".join(label(policy, n) for n in self.assigned) or "nobody"
        if self.done:
            return f"assigned to {who}: done there (quorum {self.quorum})"
        if not self.missing:
            return f"assigned to {who}: started there (quorum {self.quorum})"
        at = self.takes_over_at(nid)
        if at is None:
            return f"assigned to {who}"
        return f"assigned to {who}; this node takes over at {_when(at)} if they have not started"

    def to_json(self) -> dict[str, object]:
        return {
            "assigned": list(self.assigned),
            "group": list(self.group),
            "ranking": list(self.ranking),
            "started": [n for n in self.ranking if n in self.started],
            "lost": [n for n in self.ranking if n in self.lost],
            "released_at": _when(self.released_at) if self.released_at is not None else None,
            "done": self.done,
        }


def label(policy: Policy, nid: str) -> str:
    """A node as a person knows it: its policy name, else the start of its NID."""
    return policy.name_of(nid) or f"{nid[:12]}…"


_JUDGE = Judge()  # for jobs loaded without a judge: this process remembers what it saw


def _released_at(jobs: Sequence[Job], policy: Policy, key: str, now: float) -> float | None:
    """The earliest release of the group by a trusted node, or request (an asked release or a
    rerun) by a requester — when the ranked nodes were first asked — as a claim held within a
    bound of when this reader first saw one (:meth:`jobs.deadline.Judge.released`): a peer's
    clock alone never starts takeover early (a 1970 clock) nor holds it off (a clock far ahead)."""
    times = [
        r.first_at.timestamp() for j in jobs for nid, r in j.requests().items() if nid in policy.nodes
    ] + [
        r.first_at.timestamp()
        for j in jobs
        for asked in (j.asks(), j.reruns())
        for nid, r in asked.items()
        if policy.may_request(nid)
    ]
    if not times:
        return None
    judge = next((j.judge for j in jobs if j.judge is not None), None) or _JUDGE
    return judge.released(key, min(times), now)


def _done(jobs: Sequence[Job], names: Sequence[str], policy: Policy) -> bool:
    if len(jobs) != len(names):
        return False
    for job in jobs:
        passed = 0
        for nid, runs in job.runs().items():
            latest = runs.latest()
            if nid in policy.nodes and latest and latest[1].reason and latest[1].reason.value in PASSING:
                passed += 1
        if passed < policy.quorum:
            return False
    return True


def shared(policy: Policy) -> bool:
    """Does ``policy`` share the work? Only a repository policy that names nodes does: local
    trust is one person's view, and nodes that disagree on the ranking would not share."""
    return not policy.everyone and bool(policy.nodes)


def assign(
    jobs: Mapping[str, Job],
    needs: Mapping[str, Sequence[str]],
    policy: Policy,
    now: float,
    eligible: Mapping[str, Collection[str]] | None = None,
) -> dict[str, Assignment]:
    """Job name → its :class:`Assignment`, for the jobs of one commit (empty when the policy
    does not share the work). ``needs``: each defined job's needs (the commit's definitions); a
    group whose first job does not exist here (not released yet) has no assignment.
    ``eligible``: job name → the nodes that can run it (their signed profiles, see
    :mod:`jobs.profile`); a group is ranked among the nodes that can run all its jobs, and a
    name not in it may run anywhere."""
    if not shared(policy):
        return {}
    by_group: dict[str, list[str]] = {}
    for name, first in groups([*jobs, *needs], needs).items():
        by_group.setdefault(first, []).append(name)
    out: dict[str, Assignment] = {}
    for first, names in by_group.items():
        if first not in jobs:
            continue
        members = [jobs[n] for n in sorted(names) if n in jobs]
        key = jobs[first].id
        limits = [eligible[m] for m in names if m in eligible] if eligible else []
        able = [n for n in policy.nodes if all(n in can for can in limits)]
        ran = {n for j in members for n, rs in j.runs().items() if rs and n in able}
        live = {n for j in members for n, rs in j.runs().items() if any(not r.lost for r in rs.values())}
        started, lost = ran & live, ran - live
        runs = [(n, r) for j in members for n, rs in j.runs().items() for r in rs.values()]
        losses = [r.lost_at for n, r in runs if n in lost and r.lost_at is not None]
        dues = [r.lost_at for n, r in runs if n in started and r.lost_at is not None and not r.lost]
        a = Assignment(
            key,
            tuple(sorted(names)),
            rank(key, able),
            policy.quorum,
            frozenset(started),
            _released_at(members, policy, key, now),
            policy.takeover,
            now,
            _done(members, names, policy),
            frozenset(lost),
            max(losses, default=None),
            min(dues, default=None),
        )
        out.update((n, a) for n in names)
    return out


def assignment_mode(repo: pygit2.Repository, override: str | None = None) -> str:
    """``shared`` or ``all``: the flag, else ``git config jobs.assignment``, else ``shared``."""
    value = override
    if value is None:
        try:
            value = str(repo.config[CONFIG_KEY])
        except (KeyError, ValueError, pygit2.GitError):
            value = SHARED
    value = value.strip().lower()
    if value not in MODES:
        raise AssignmentError(
            f"git config {CONFIG_KEY}: {safe(value[:40])!r} is not one of {', '.join(MODES)}"
        )
    return value


__all__ = [
    "ALL",
    "CONFIG_KEY",
    "MODES",
    "SHARED",
    "Assignment",
    "AssignmentError",
    "assign",
    "assignment_mode",
    "groups",
    "label",
    "rank",
    "shared",
    "weight",
]
