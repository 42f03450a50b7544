"""Did this commit pass? The per-commit rollup of jobs x nodes, and the stable JSON shapes.

Many nodes may run the same job; what a maintainer wants is the answer ``gh pr checks`` gives:
for each job and each node, the latest run and its outcome, and one verdict for the commit.
It lives in the library (not the CLI) so that the CLI, the demo, a web page and Python callers
all give the same verdict, and so the JSON the CLI prints is the JSON a program gets here.

States of one job x node cell (the node's latest run): ``running``, ``lost`` (still started past
its deadline plus the reader's grace: :mod:`jobs.deadline`; a failure, retried as ``error``) or
the finish reason (``succeeded``, ``failed``, ``error``, ``cancelled``, ``timed_out``,
``skipped``). A job that no node has run yet is ``queued``. The commit's outcome, in order of precedence:

- ``failed``    — some node's latest run of some job failed (failed, error, timed_out, cancelled,
  lost);
- ``pending``   — otherwise, some job is queued or running;
- ``succeeded`` — otherwise every latest run succeeded or was skipped;
- ``none``      — the commit has no jobs at all.

That rollup (:mod:`jobs.rollup`) counts every node alike. `git jobs status` gives the merge
verdict instead (:mod:`jobs.gate`: only trusted nodes count, required jobs are expected until
they pass); the run and job shapes here are shared by both.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import cob

from .model import FAILING, Job, Reason, Run, Runs

RUNNING = "running"
LOST = "lost"
QUEUED = "queued"
# What makes a pass on a later attempt "flaky": the test's own failures. Infrastructure
# (error, and so a crash-recovered or lost run) and cancellations say nothing about the test.
FLAKY = frozenset({Reason.FAILED, Reason.TIMED_OUT})

# Commit outcomes and the exit code `git jobs status` gives for each (as gh pr checks does:
# 1 = failed, 8 = pending). A commit without jobs is not a pass: gh exits 1 for "no checks".
OUTCOME_EXIT = {"succeeded": 0, "failed": 1, "pending": 8, "none": 1}


def iso(when: datetime | None) -> str | None:
    """``2026-11-23T16:00:01Z`` (UTC, whole seconds: change times are commit times)."""
    return None if when is None else when.strftime("%Y-%m-%dT%H:%M:%SZ")


def run_state(run: Run) -> str:
    """``running``, ``lost`` or the finish reason's value."""
    if run.reason is None:
        return LOST if run.lost else RUNNING
    return run.reason.value


def run_json(nid: str, run_id: uuid.UUID, run: Run) -> dict[str, Any]:
    """The JSON shape of one run (see docs/CLI.md)."""
    return {
        "node": nid,
        "id": str(run_id),
        "status": run.status.value,
        "reason": run.reason.value if run.reason else None,
        "state": run_state(run),
        "log": run.log,
        "log_blob": run.log_blob,
        "exit": run.exit_status,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "timeout": run.timeout,
        "lost_at": iso(datetime.fromtimestamp(run.lost_at, UTC)) if run.lost_at is not None else None,
        "evidence": run.evidence.to_json() if run.evidence else None,
        "values": dict(run.values) if run.values is not None else None,  # structured outputs
    }


def rejection_json(r: cob.Rejection) -> dict[str, str]:
    return {"job": r.object_id, "change": r.change, "reason": r.reason}


def flaky_attempts(runs: Runs) -> int:
    """How many failed attempts (failed, timed_out) came right before a node's latest run, when
    that run succeeded: a job that passed only on a later attempt is *flaky*. 0 if not. An
    ``error`` (infrastructure: could not start, crash-recovered) or a lost run is not one."""
    items = list(runs.values())
    if not items or not items[-1].succeeded:
        return 0
    failed = 0
    for run in reversed(items[:-1]):
        if run.succeeded:
            break
        if run.reason in FLAKY:
            failed += 1
    return failed


def job_state(job: Job) -> str:
    """One word for a job over all nodes' latest runs: queued, running, failed, skipped,
    succeeded (failure wins, then running; all-skipped is skipped)."""
    return state_word(job.latest_outcomes())


def state_word(outcomes: list[tuple[str | None, bool]]) -> str:
    """:func:`job_state` of a job whose nodes' latest runs are ``outcomes`` ((finish reason or
    None while started, lost), one per node: :meth:`Job.latest_outcomes`)."""
    states = {reason or (LOST if lost else RUNNING) for reason, lost in outcomes}
    if not states:
        return QUEUED
    if any(_failing(s) for s in states):
        return "failed"
    if RUNNING in states:
        return RUNNING
    if states == {"skipped"}:
        return "skipped"
    return "succeeded"


_FAILING_STATES = frozenset({LOST, *(r.value for r in FAILING)})


def _failing(state: str) -> bool:
    return state in _FAILING_STATES


def job_json(job: Job, *, runs: bool = True) -> dict[str, Any]:
    """The JSON shape of one job: with every run (``show``) or counts only (``list``)."""
    all_runs = [
        run_json(nid, rid, run) for nid, node_runs in job.runs().items() for rid, run in node_runs.items()
    ]
    out: dict[str, Any] = {
        "id": job.id,
        "commit": job.commit,
        "name": job.name,
        "state": job_state(job),
        "nodes": len(job.runs()),
    }
    if runs:
        out["runs"] = all_runs
        out["rejected"] = [rejection_json(r) for r in job.rejected]
        out["fanout"] = job.fanouts()  # a dynamic matrix's jobs, per node that expanded it
    else:
        out["runs"] = len(all_runs)
        out["rejected"] = len(job.rejected)
    return out
