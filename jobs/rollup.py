"""The plain rollup of one commit: every job x every node's latest run, every node alike.

What `git jobs status` printed before trust existed (see :mod:`jobs.summary` for the states
and outcomes); the merge gate (:mod:`jobs.gate`) counts trusted nodes only. Kept apart so a
status check does not import it; the benches compare the gate against it.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .model import Job, Run
from .store import Jobs
from .summary import OUTCOME_EXIT, QUEUED, job_state, run_json, run_state


@dataclass(frozen=True, slots=True)
class Cell:
    """One job x one node: the node's latest run. ``node``/``run`` are None when queued."""

    job: Job
    node: str | None
    run_id: uuid.UUID | None
    run: Run | None

    @property
    def state(self) -> str:
        return QUEUED if self.run is None else run_state(self.run)

    @property
    def failed(self) -> bool:
        return self.run is not None and self.run.failed

    @property
    def pending(self) -> bool:
        return self.run is None or self.run.reason is None

    def to_json(self) -> dict[str, Any]:
        if self.run is None or self.node is None or self.run_id is None:
            return {
                "node": None,
                "id": None,
                "status": None,
                "reason": None,
                "state": QUEUED,
                "log": None,
                "log_blob": None,
                "exit": None,
                "started_at": None,
                "finished_at": None,
            }
        return run_json(self.node, self.run_id, self.run)


@dataclass(frozen=True, slots=True)
class CommitStatus:
    """Every job of one commit, each node's latest run, and the commit's outcome."""

    commit: str
    jobs: list[Job]
    cells: list[Cell] = field(default_factory=list)

    @classmethod
    def of(cls, commit: str, jobs: Iterable[Job]) -> CommitStatus:
        ordered = sorted(jobs, key=lambda j: (j.name, j.id))
        cells: list[Cell] = []
        for job in ordered:
            latest = [(nid, runs.latest()) for nid, runs in job.runs().items()]
            found = [(nid, pair) for nid, pair in latest if pair is not None]
            if not found:
                cells.append(Cell(job, None, None, None))
            for nid, pair in found:
                cells.append(Cell(job, nid, pair[0], pair[1]))
        return cls(commit, ordered, cells)

    @property
    def outcome(self) -> str:
        if not self.jobs:
            return "none"
        if any(c.failed for c in self.cells):
            return "failed"
        if any(c.pending for c in self.cells):
            return "pending"
        return "succeeded"

    @property
    def exit_code(self) -> int:
        return OUTCOME_EXIT[self.outcome]

    @property
    def pending(self) -> bool:
        """Is anything still to come (a queued or running job, or no job yet)?"""
        return not self.jobs or any(c.pending for c in self.cells)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(c.state for c in self.cells).items()))

    def nodes(self) -> list[str]:
        return sorted({c.node for c in self.cells if c.node is not None})

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of ``git jobs status`` (see docs/CLI.md)."""
        by_job: dict[str, list[dict[str, Any]]] = {j.id: [] for j in self.jobs}
        for c in self.cells:
            if c.run is not None:
                by_job[c.job.id].append(c.to_json())
        return {
            "commit": self.commit,
            "outcome": self.outcome,
            "counts": self.counts(),
            "jobs": [
                {"id": j.id, "name": j.name, "state": job_state(j), "latest": by_job[j.id]} for j in self.jobs
            ],
        }


def commit_status(store: Jobs, rev: str = "HEAD") -> CommitStatus:
    """The status of one commit (any rev git resolves, or a full sha not present locally)."""
    commit = store.resolve_commit(rev, must_exist=False)
    return CommitStatus.of(commit, store.find_by_commit(commit))
