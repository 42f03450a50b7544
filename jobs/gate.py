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
- **What is final.** A failed run that its node will retry (the commit's ``retry.max`` is not
  used up by that node's failed attempts) is ``retrying``: pending, not failed.

Who is asked to run each job (:mod:`jobs.assign`: ``quorum`` trusted nodes of a rendezvous
ranking, and takeovers) is shown beside the verdict; it never changes the verdict.

Per required job: ``failed`` if some counted latest run failed for good; else ``pending`` if
one is running or retrying; else ``passed`` once ``quorum`` counted nodes succeeded (or
skipped); else ``expected``. The commit: ``failed`` if its definitions do not parse or a
required job failed; ``none`` if nothing is required; ``pending`` until every required job
passed; then ``succeeded``. Exit codes as ``gh pr checks``: 0, 1 (failed, none), 8 (pending).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import DefinitionError

if TYPE_CHECKING:
    from .assign import Assignment
    from .node.definitions import Definitions
from .model import Job, Reason, Run
from .policy import Policy
from .store import Jobs
from .summary import OUTCOME_EXIT, QUEUED, RUNNING, run_json, run_state

EXPECTED = "expected"
RETRYING = "retrying"
UNSERVABLE = "unservable"  # required, and no trusted node can run it (jobs.profile): final
# Failed attempts that use up a retry (as the node counts them: jobs.node.work.COUNTED).
RETRIED = frozenset({Reason.FAILED, Reason.TIMED_OUT, Reason.ERROR})
PASSING = frozenset({Reason.SUCCEEDED, Reason.SKIPPED})
VERDICTS = ("passed", "failed", "pending", EXPECTED, "extra", UNSERVABLE)


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
        return self.state in (RUNNING, RETRYING)

    @property
    def failed(self) -> bool:
        return self.run is not None and self.run.failed and self.state != RETRYING

    @property
    def passed(self) -> bool:
        return self.run is not None and self.run.reason in PASSING

    def to_json(self, policy: Policy) -> dict[str, Any]:
        if self.run is None or self.node is None or self.run_id is None:
            return {"node": None, "node_name": None, "id": None, "status": None, "reason": None,
                    "state": self.state, "log": None, "started_at": None, "finished_at": None,
                    "counted": self.counted}
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
    unservable: dict[str, str] = field(default_factory=dict)  # job name → why no trusted node can

    def assigned(self, name: str) -> list[str] | None:
        """The nodes asked to run job ``name`` now; None when the work is not shared (no
        policy naming nodes: every node runs everything) or nobody released the job yet."""
        a = self.assignment.get(name)
        return list(a.assigned) if a is not None else None

    def mark_unservable(self, why: dict[str, str]) -> None:
        """Required jobs no trusted node can run (by their signed profiles): a final state,
        shown with the reason ("no trusted node has label slow") instead of ``expected``."""
        self.unservable = {n: w for n, w in why.items() if n in self.required}
        self.cells = [
            GateCell(c.name, c.job, None, None, None, UNSERVABLE, True, True)
            if c.run is None and c.name in self.unservable else c
            for c in self.cells
        ]

    def _cells(self, name: str) -> list[GateCell]:
        return [c for c in self.cells if c.name == name]

    def verdict(self, name: str) -> str:
        """passed | failed | pending | expected for a required job; extra otherwise."""
        if name not in self.required:
            return "extra"
        counted = [c for c in self._cells(name) if c.counted and c.run is not None]
        if any(c.failed for c in counted):
            return "failed"
        if any(c.in_progress for c in counted):
            return "pending"
        if sum(c.passed for c in counted) >= self.quorum:
            return "passed"
        return UNSERVABLE if name in self.unservable else EXPECTED

    @property
    def expected(self) -> list[str]:
        """Required jobs still awaited: no counted result at all, or fewer passes than quorum."""
        return [n for n in self.required if self.verdict(n) == EXPECTED]

    @property
    def outcome(self) -> str:
        verdicts = {self.verdict(n) for n in self.required}
        if self.errors or "failed" in verdicts or UNSERVABLE in verdicts:
            return "failed"
        if not self.required:
            return "none"
        if verdicts - {"passed"}:
            return "pending"
        return "succeeded"

    @property
    def exit_code(self) -> int:
        return OUTCOME_EXIT[self.outcome]

    @property
    def pending(self) -> bool:
        """Is a verdict still to come? (A commit with nothing yet is waited for too.)"""
        return self.outcome == "pending" or (self.outcome == "none" and not self.errors)

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
        if any(c.failed for c in self._cells(name) if c.counted):
            return "failed"
        if RUNNING in states or RETRYING in states:
            return RUNNING if RUNNING in states else RETRYING
        if not states and name in self.unservable:
            return UNSERVABLE
        if not states:
            return EXPECTED if name in self.required else QUEUED
        return "skipped" if states == {"skipped"} else "succeeded"

    def names(self) -> list[str]:
        return sorted({*self.required, *self.defined, *(j.name for j in self.jobs)})

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of ``git jobs status`` (see docs/CLI.md)."""
        by_name = {j.name: j for j in self.jobs}
        return {
            "commit": self.commit,
            "outcome": self.outcome,
            "counts": self.counts(),
            "expected": self.expected,
            "required": list(self.required),
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
                }
                for n in self.names()
            ],
        }


def _retrying(run: Run, attempts: int, max_attempts: int | None) -> bool:
    return max_attempts is not None and run.reason in RETRIED and attempts < max_attempts


def _job_cells(
    name: str, job: Job | None, policy: Policy, required: bool, retries: int | None, all_nodes: bool
) -> list[GateCell]:
    cells: list[GateCell] = []
    for nid, runs in (job.runs() if job else {}).items():
        latest = runs.latest()
        if latest is None:
            continue
        run_id, run = latest
        attempts = sum(1 for r in runs.values() if r.reason in RETRIED)
        state = RETRYING if _retrying(run, attempts, retries) else run_state(run)
        counted = all_nodes or policy.trusts(nid)
        cells.append(GateCell(name, job, nid, run_id, run, state, counted, required))
    if not any(c.counted for c in cells):
        state = EXPECTED if required else QUEUED
        cells.insert(0, GateCell(name, job, None, None, None, state, True, required))
    return cells


_DEFINITIONS: dict[str, tuple[Definitions | None, list[str]]] = {}


def _definitions(store: Jobs, commit: str) -> tuple[Definitions | None, list[str]]:
    """The commit's definitions and the errors in them (none when the commit is not here).

    A commit's tree never changes, so the answer is kept for the process (bounded)."""
    from .node.definitions import load_definitions

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
    if policy.required is not None:
        required = list(policy.required)
    elif defs is not None and defs.names:
        required = list(defs.names)
    elif errors:
        required = []
    else:  # no definitions (or a file with only [policy]): every job someone made
        required = sorted({j.name for j in jobs})
    status = GateStatus(commit, policy, jobs, sorted(required), errors=errors,
                        defined=list(defs.names) if defs else [], all_nodes=all_nodes,
                        quorum=policy.quorum)
    by_name = {j.name: j for j in jobs}
    for name in status.names():
        d = defs.get(name) if defs is not None else None
        retries = d.retry.max if d is not None else None
        status.cells.extend(
            _job_cells(name, by_name.get(name), policy, name in required, retries, all_nodes)
        )
    if not policy.everyone:  # with no policy nothing is shared, and nothing to import for it
        from .assign import assign
        from .profile import eligibility

        needs = {d.name: list(d.needs) for d in defs} if defs is not None else {}
        eligible, nobody = eligibility(store, defs, policy)
        status.assignment = assign(by_name, needs, policy, time.time() if now is None else now, eligible)
        status.mark_unservable(nobody)
    return status


__all__ = ["EXPECTED", "RETRYING", "UNSERVABLE", "VERDICTS", "GateCell", "GateStatus", "gate_status"]
