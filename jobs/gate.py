"""Status as a merge gate: did this commit pass, counting only the runs the policy trusts?

A verdict a maintainer can merge on needs three things :mod:`jobs.summary`'s plain rollup does
not give (learned from GitHub's required status checks and Gerrit's CI votes):

- **Whose runs count.** Only trusted nodes' latest runs (:class:`~jobs.policy.Policy`; every
  node when there is no policy, or with ``all_nodes``). Other runs are shown as *not counted*
  and never change the verdict: a stranger can neither fail nor pass a commit.
- **What must pass.** The *required* jobs: the policy's ``required``, else every job the
  commit's own definitions declare, else (no definitions file, or one that declares no job)
  every job that exists.
  A required job with no counted result is ``expected`` — silence is never a pass. Other jobs
  (made by hand, or not in ``required``) are *extra*: shown, never blocking.
- **What is final.** *Pending means someone will still act*: a run in progress, a retry the
  definition allows (:func:`jobs.retries.exhausted`, the rule the node plans with: ``retry.max``
  not used up and the failure in ``retry.on``; a trusted ``rerun`` gives fresh attempts), or a
  trusted node assigned by a requester's release and not yet past its takeover. Anything else
  is final: ``failed``, ``not_built`` (every ranked node had its takeover period and none
  started), a required name the commit does not define, or ``none`` (no jobs defined).

Who is asked to run each job (:mod:`jobs.assign`: ``quorum`` trusted nodes of a rendezvous
ranking, and takeovers) is shown beside the verdict; it never changes the verdict.

Per required job: ``failed`` if some counted latest run failed for good; else ``pending`` if
one is running or retrying; else ``passed`` once ``quorum`` counted nodes succeeded (or
skipped); else ``not_built`` when nobody will act any more; else ``expected``. The commit:
``failed`` if its definitions do not parse, a required job failed or a required name is not
defined by it; ``none`` if nothing is required (no jobs defined); ``pending`` while a required
job is pending or expected; ``not_built`` when a required job is not built and none is pending;
then ``succeeded``. Exit codes as ``gh pr checks``: 0, 1 (failed, none, not_built), 8 (pending).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import DefinitionError

if TYPE_CHECKING:
    from .assign import Assignment
    from .evidence import JobEvidence, Reuse
    from .spec.definitions import Definitions
    from .store import Jobs  # a type only: Jobs.status() calls the gate
from .model import FAILING, Job, Reason, Run, Runs
from .policy import Policy, skips_refused
from .retries import ATTEMPTS, will_retry
from .summary import LOST, OUTCOME_EXIT, QUEUED, RUNNING, run_json, run_state

EXPECTED = "expected"
RETRYING = "retrying"
NOT_BUILT = "not_built"  # every ranked trusted node had its takeover period; none started
# Failed attempts that use up a retry (the node's rule: jobs.retries).
RETRIED = ATTEMPTS
PASSING = frozenset({Reason.SUCCEEDED, Reason.SKIPPED})
UNSERVABLE = "unservable"  # required, and no trusted node can run it (jobs.profile): final
REUSED = "reused"  # no run here: a trusted pass of the same tree elsewhere counts (jobs.evidence)
VERDICTS = ("passed", "failed", "pending", EXPECTED, NOT_BUILT, "extra", UNSERVABLE)
# What a counted cell's state means for the verdict — the one place a new run state goes
# (e.g. an infrastructure failure): someone will still act on it, it failed for good, it passed.
PENDING_STATES = frozenset({RUNNING, RETRYING})
FAILING_STATES = frozenset({*(r.value for r in FAILING), LOST})
PASSING_STATES = frozenset(r.value for r in PASSING)
GATE_EXIT = {**OUTCOME_EXIT, NOT_BUILT: 1}


@dataclass(frozen=True, slots=True)
class GateCell:
    """One job x one node: that node's latest run, or a placeholder (``node`` None) for a job
    nobody counted has run (``expected`` when required, ``queued`` when extra)."""

    name: str
    job: Job | None
    node: str | None
    run_id: uuid.UUID | None
    run: Run | None
    state: str
    counted: bool
    required: bool

    @property
    def in_progress(self) -> bool:
        return self.state in PENDING_STATES

    @property
    def lost(self) -> bool:
        """Its run is lost (past its deadline): retried as an ``error``, by takeover if need be."""
        return self.run is not None and self.run.lost

    @property
    def failed(self) -> bool:
        return self.run is not None and self.state in FAILING_STATES

    @property
    def passed(self) -> bool:
        return self.run is not None and self.state in PASSING_STATES

    def to_json(self, policy: Policy) -> dict[str, Any]:
        if self.run is None or self.node is None or self.run_id is None:
            return {
                "node": None,
                "node_name": None,
                "id": None,
                "status": None,
                "reason": None,
                "state": self.state,
                "log": None,
                "started_at": None,
                "finished_at": None,
                "counted": self.counted,
            }
        out = run_json(self.node, self.run_id, self.run)
        out.update(state=self.state, counted=self.counted, node_name=policy.name_of(self.node))
        return out


@dataclass(slots=True)
class GateStatus:
    """One commit's jobs under a policy, each node's latest run, and the merge verdict."""

    commit: str
    policy: Policy
    jobs: list[Job]
    required: list[str]
    cells: list[GateCell] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    defined: list[str] = field(default_factory=list)  # jobs the commit's definitions declare
    all_nodes: bool = False
    quorum: int = 1
    assignment: dict[str, Assignment] = field(default_factory=dict)  # empty: not shared
    undefined: list[str] = field(default_factory=list)  # required names the commit does not define
    present: bool = True  # the commit is in this repository (else its definitions are unknown)
    requested: frozenset[str] = frozenset()  # jobs a requester released or reruns

    skip_refused: frozenset[str] = frozenset()  # required jobs a skip does not pass (policy.py)
    unservable: dict[str, str] = field(default_factory=dict)  # job name → why no trusted node can
    grace: float = 0.0  # the reader's jobs.lostGrace: how long past its last takeover a job waits
    evidence: dict[str, JobEvidence] = field(default_factory=dict)  # job name → jobs.evidence
    fanned: dict[str, list[str]] = field(default_factory=dict)  # dynamic matrix → its jobs (signed)

    def _asked(self, a: Assignment) -> bool:
        """Will the ranked nodes run a job of the group? A requester asked for it, or a trusted
        node released it (it works on the commit: nodes follow the same refs). Never for a
        branch only untrusted keys released."""
        return a.released_at is not None and any(n in self.requested for n in a.group)

    def assigned(self, name: str) -> list[str] | None:
        """The nodes asked to run job ``name`` now; None when the work is not shared (no
        policy naming nodes: every node runs everything) or no requester released the job: the
        nodes run only what they follow or a requester asked for (shown only where they will)."""
        a = self.assignment.get(name)
        return list(a.assigned) if a is not None and self._asked(a) else None

    def mark_unservable(self, why: dict[str, str]) -> None:
        """Required jobs no trusted node can run (by their signed profiles): a final state,
        shown with the reason ("no trusted node has label slow") instead of ``expected``."""
        self.unservable = {n: w for n, w in why.items() if n in self.required}
        self.cells = [
            GateCell(c.name, c.job, None, None, None, UNSERVABLE, True, True)
            if c.run is None and c.name in self.unservable
            else c
            for c in self.cells
        ]

    def _cells(self, name: str) -> list[GateCell]:
        return [c for c in self.cells if c.name == name]

    def verdict(self, name: str) -> str:
        """passed | failed | pending | expected for a required job; extra otherwise."""
        if name not in self.required:
            return "extra"
        counted = [c for c in self._cells(name) if c.counted and c.run is not None]
        if any(c.failed for c in counted) or self.differs(name):
            return "failed"
        if any(c.in_progress and not c.lost for c in counted):
            return "pending"
        skips = name not in self.skip_refused
        if sum(c.passed and (skips or c.state != "skipped") for c in counted) >= self.quorum:
            return "passed"  # a lost run's retry is not waited for once others passed
        if self.reused(name) is not None:
            return "passed"  # a trusted signed pass of the same tree and definitions
        if any(c.in_progress for c in counted):
            return "pending"
        a = self.assignment.get(name)
        if a is not None and self._asked(a) and _abandoned(a, self.grace):
            return NOT_BUILT  # nobody will act any more: final
        return UNSERVABLE if name in self.unservable else EXPECTED

    def differs(self, name: str) -> bool:
        """The policy requires ``name`` reproducible and trusted nodes' outputs differ."""
        from .evidence import covers

        ev = self.evidence.get(name)
        return bool(
            ev and ev.agreement and not ev.agreement.reproducible and covers(self.policy.reproducible, name)
        )

    def reused(self, name: str) -> Reuse | None:
        """The reusable pass of ``name`` (enough trusted signers for the quorum), or None."""
        ev = self.evidence.get(name)
        r = ev.reused if ev is not None else None
        return r if r is not None and len(r.nodes) >= self.quorum else None

    @property
    def expected(self) -> list[str]:
        """Required jobs still awaited: no counted result at all, or fewer passes than quorum."""
        return [n for n in self.required if self.verdict(n) == EXPECTED]

    @property
    def outcome(self) -> str:
        verdicts = {self.verdict(n) for n in self.required}
        if self.errors or self.undefined or "failed" in verdicts or UNSERVABLE in verdicts:
            return "failed"
        if not self.required:
            return "none"
        if verdicts & {"pending", EXPECTED}:
            return "pending"
        if NOT_BUILT in verdicts:
            return NOT_BUILT
        return "succeeded"

    @property
    def exit_code(self) -> int:
        return GATE_EXIT[self.outcome]

    @property
    def pending(self) -> bool:
        """Is a verdict still to come? ``none`` is final for a commit here (no jobs defined);
        for a commit not in this repository (its definitions unknown) it is waited for."""
        return self.outcome == "pending" or (self.outcome == "none" and not self.present)

    def counted(self) -> list[GateCell]:
        return [c for c in self.cells if c.counted]

    def not_counted(self) -> list[GateCell]:
        return [c for c in self.cells if not c.counted]

    def counts(self) -> dict[str, int]:
        """Counted cells of required jobs by state (``expected`` included)."""
        return dict(sorted(Counter(c.state for c in self.counted() if c.required).items()))

    def job_state(self, name: str) -> str:
        """One word over the counted latest runs of a job (as :func:`jobs.summary.job_state`)."""
        states = {c.state for c in self._cells(name) if c.counted and c.run is not None}
        if any(c.failed for c in self._cells(name) if c.counted) or self.differs(name):
            return "failed"
        if RUNNING in states or RETRYING in states:
            return RUNNING if RUNNING in states else RETRYING
        if not states and name in self.unservable:
            return UNSERVABLE
        if not states and self.reused(name) is not None:
            return REUSED
        if not states:
            if name in self.required:
                return NOT_BUILT if self.verdict(name) == NOT_BUILT else EXPECTED
            return QUEUED
        return "skipped" if states == {"skipped"} else "succeeded"

    def names(self) -> list[str]:
        names = {*self.required, *self.defined, *(j.name for j in self.jobs)}
        return sorted(names - (set(self.fanned) - set(self.required)))

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of ``git jobs status`` (see docs/CLI.md)."""
        by_name = {j.name: j for j in self.jobs}
        return {
            "commit": self.commit,
            "outcome": self.outcome,
            "counts": self.counts(),
            "expected": self.expected,
            "required": list(self.required),
            "undefined": list(self.undefined),
            "unservable": dict(self.unservable),
            "errors": list(self.errors),
            "policy": {**self.policy.to_json(), "all_nodes": self.all_nodes, "quorum": self.quorum},
            "jobs": [
                {
                    "id": by_name[n].id if n in by_name else None,
                    "name": n,
                    "state": self.job_state(n),
                    "required": n in self.required,
                    "verdict": self.verdict(n),
                    "assigned": self.assigned(n),
                    "latest": [c.to_json(self.policy) for c in self._cells(n) if c.run is not None],
                    "evidence": self.evidence[n].to_json() if n in self.evidence else None,
                }
                for n in self.names()
            ],
        }


def _abandoned(a: Assignment, grace: float) -> bool:
    """Had every ranked node its ``takeover`` period since the release, ``grace`` ago already
    (the reader's ``jobs.lostGrace``: a node polls, and a slow one still starts), and too few
    of them started? Then nobody will act any more: the job is not built (a final state)."""
    if a.released_at is None or a.done or not a.missing:
        return False
    then = dataclasses.replace(a, now=a.now - grace)
    return then.periods > len(then.waiting) - then.missing


def _cell_state(run: Run, fresh: Runs, retry: tuple[int, tuple[str, ...]] | None, run_id: uuid.UUID) -> str:
    """``retrying`` when the node will run the job again (jobs.retries, or a trusted rerun
    asked after this run); else the run's own state."""
    outcome = run.outcome  # the finish reason; ``error`` for a lost run (infrastructure)
    if retry is None or outcome is None:
        return run_state(run)
    if run_id not in fresh and outcome is not Reason.SUCCEEDED:
        return RETRYING  # a rerun its node honours came after it: fresh attempts
    attempts = sum(1 for r in fresh.values() if r.outcome in RETRIED)
    return RETRYING if will_retry(outcome, attempts, *retry) else run_state(run)


def _job_cells(
    name: str,
    job: Job | None,
    policy: Policy,
    required: bool,
    retry: tuple[int, tuple[str, ...]] | None,
    all_nodes: bool,
    fresh: Callable[[Job, str], Runs],
    not_built: bool = False,
) -> list[GateCell]:
    cells: list[GateCell] = []
    for nid, runs in (job.runs() if job else {}).items():
        latest = runs.latest()
        if latest is None or job is None:
            continue
        run_id, run = latest
        state = _cell_state(run, fresh(job, nid), retry, run_id)
        counted = all_nodes or policy.trusts(nid)
        cells.append(GateCell(name, job, nid, run_id, run, state, counted, required))
    if not any(c.counted for c in cells):
        state = (NOT_BUILT if not_built else EXPECTED) if required else QUEUED
        cells.insert(0, GateCell(name, job, None, None, None, state, True, required))
    return cells


def _fanned(defs: Definitions | None, jobs: list[Job], trusts: Callable[[str], bool]) -> dict[str, list[str]]:
    """{dynamic matrix definition: the jobs trusted nodes' signed ``fanout`` releases expanded
    it into (all they name, in order)}; a definition nobody trusted expanded yet is left out:
    it stays required by its own name, so ``expected`` (FORMAT.md 11.6)."""
    by_name = {j.name: j for j in jobs}
    out: dict[str, list[str]] = {}
    for d in defs or ():
        job = by_name.get(d.name)
        if d.dynamic and job is not None:
            names = [n for nid, ns in job.fanouts().items() if trusts(nid) for n in ns]
            if names:
                out[d.name] = list(dict.fromkeys(names))
    return out


def _required(
    policy: Policy,
    defs: Definitions | None,
    errors: list[str],
    jobs: list[Job],
    present: bool,
    fanned: dict[str, list[str]] | None = None,
) -> tuple[list[str], list[str]]:
    """(the required job names, the policy's required names this commit does not define).

    A required name covers the definition of that name: one job, or every job of a matrix
    (``test`` → ``test (python=3.12)`` …), as ``needs`` does. A commit here with no job defined
    and none in the ledger requires nothing: no jobs defined, a final state."""
    fanned = fanned or {}
    defined = [n for name in defs.names for n in fanned.get(name, [name])] if defs is not None else []
    if errors:
        return (list(policy.required) if policy.required is not None else []), []
    if not defined and present and not jobs:
        return [], []
    if policy.required is None:
        return (list(defined) if defined else sorted({j.name for j in jobs})), []
    if defs is None or not defined:
        return list(policy.required), []
    required: list[str] = []
    undefined: list[str] = []
    for want in policy.required:
        covers = [d.name for d in defs if d.name == want or (d.matrix and d.base == want)]
        covers = [n for name in covers for n in fanned.get(name, [name])]  # a dynamic matrix's jobs
        if covers:
            required.extend(n for n in covers if n not in required)
        else:
            undefined.append(want)
    return required, undefined


def _fresh(store: Jobs, policy: Policy) -> Callable[[Job, str], Runs]:
    """(job, node) → that node's runs that still count after the reruns it honours (a
    requester's, or its own key's) — the node's own rule (jobs.requests, no runner code)."""
    from .requests import Reruns

    return Reruns(store.repo, policy.requesters)


_DEFINITIONS: dict[str, tuple[Definitions | None, list[str]]] = {}


def _definitions(store: Jobs, commit: str) -> tuple[Definitions | None, list[str]]:
    """The commit's definitions and the errors in them (none when the commit is not here).

    A commit's tree never changes, so the answer is kept for the process (bounded)."""
    from .spec.definitions import load_definitions

    if commit not in store.repo:
        return None, []
    cached = _DEFINITIONS.get(commit)
    if cached is None:
        try:
            cached = (load_definitions(store.repo, commit), [])
        except DefinitionError as e:
            cached = (None, list(e.errors))
        if len(_DEFINITIONS) >= 256:
            _DEFINITIONS.pop(next(iter(_DEFINITIONS)))
        _DEFINITIONS[commit] = cached
    return cached[0], list(cached[1])


def _evidence(store: Jobs, status: GateStatus, defs: Definitions | None) -> None:
    """What the counted runs say beyond pass or fail; a reused job's placeholder is ``reused``."""
    from .evidence import annotate

    annotate(store, status, defs)
    status.cells = [
        dataclasses.replace(c, state=REUSED) if c.run is None and status.reused(c.name) else c
        for c in status.cells
    ]


def _assign(
    store: Jobs,
    status: GateStatus,
    defs: Definitions | None,
    policy: Policy,
    by_name: dict[str, Job],
    now: float | None,
) -> dict[str, str]:
    """Fill the status's assignment and requested jobs; {job: why no trusted node can run it}."""
    if policy.everyone:  # with no policy nothing is shared, and nothing to import for it
        return {}
    from .artifacts import grouping_needs  # published needs do not bind their users to one node
    from .assign import assign
    from .profile import eligibility

    needs = grouping_needs(defs) if defs is not None else {}
    eligible, nobody = eligibility(store, defs, policy)
    status.assignment = assign(by_name, needs, policy, time.time() if now is None else now, eligible)
    status.requested = frozenset(
        j.name
        for j in by_name.values()
        if any(policy.may_request(n) for n in (*j.asks(), *j.reruns()))
        or any(n in policy.nodes for n in j.requests())
    )
    return nobody


def gate_status(
    store: Jobs,
    rev: str = "HEAD",
    policy: Policy | None = None,
    *,
    all_nodes: bool = False,
    now: float | None = None,
) -> GateStatus:
    """The merge verdict for one commit (any rev, or a full sha not present locally).

    ``policy`` defaults to the one in force here (:func:`jobs.policy.load_policy`);
    ``all_nodes`` counts every node's runs whatever the policy says; ``now`` is the time the
    assignment's takeovers are judged at (default: the clock).
    """
    from .policy import load_policy

    commit = store.resolve_commit(rev, must_exist=False)
    policy = policy if policy is not None else load_policy(store.repo)
    jobs = store.find_by_commit(commit)
    defs, errors = _definitions(store, commit)
    present = commit in store.repo
    fanned = _fanned(defs, jobs, lambda nid: all_nodes or policy.trusts(nid))
    required, undefined = _required(policy, defs, errors, jobs, present, fanned)
    status = GateStatus(
        commit,
        policy,
        jobs,
        sorted(required),
        errors=errors,
        defined=[n for name in defs.names for n in fanned.get(name, [name])] if defs else [],
        all_nodes=all_nodes,
        quorum=policy.quorum,
        undefined=undefined,
        present=present,
        grace=store.judge.grace,
        fanned=fanned,
    )
    by_name = {j.name: j for j in jobs}
    nobody = _assign(store, status, defs, policy, by_name, now)
    fresh = _fresh(store, policy)
    for name in status.names():
        d = defs.get(name) if defs is not None else None
        retry = (d.retry.max, d.retry.on) if d is not None else None
        a = status.assignment.get(name)
        gone = a is not None and status._asked(a) and _abandoned(a, status.grace)
        status.cells.extend(
            _job_cells(name, by_name.get(name), policy, name in required, retry, all_nodes, fresh, gone)
        )
    status.mark_unservable(nobody)
    _evidence(store, status, defs)  # agreement, divergence, reuse (jobs.evidence, issue 27)
    skipped = [n for n in required if any(c.counted and c.state == "skipped" for c in status._cells(n))]
    status.skip_refused = skips_refused(
        store.repo, policy, commit, skipped, lambda n: any(c.failed for c in status._cells(n) if c.counted)
    )
    return status


__all__ = [
    "EXPECTED",
    "FAILING_STATES",
    "NOT_BUILT",
    "PASSING_STATES",
    "PENDING_STATES",
    "RETRYING",
    "UNSERVABLE",
    "REUSED",
    "VERDICTS",
    "GateCell",
    "GateStatus",
    "gate_status",
]
