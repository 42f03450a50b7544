"""What each page shows, as JSON built from the CLI's documented shapes.

Every view's data is made of the shapes `git jobs` prints with ``--json`` (docs/CLI.md),
built by the same library functions: ``status --json`` (:meth:`jobs.gate.GateStatus.to_json`),
``show --json`` (:func:`job_json`), ``status --branch --json`` (:func:`branch_json`) and the
run object. The HTML views only render these dicts, so a field the CLI gains (a run's
``counted``, an ``expected`` outcome) reaches the page by rendering that field, and the page's
``.json`` URLs serve exactly what it rendered.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import cob

from ..errors import DefinitionError, JobsError
from ..gate import gate_status
from ..history import branch_json, subject_of
from ..jobtype import TYPENAME
from ..model import FAILING, run_prefix
from ..names import node_names
from ..store import Jobs
from ..summary import job_json, run_json
from .logs import read_log
from .svg import Point

MAX_NODE_RUNS = 500  # the node page lists this many of its most recent runs
MAX_CHART_DAYS = 60


class NotFoundError(JobsError):
    """The page names a commit, job, run or node this repository does not have."""


def branch_data(store: Jobs, spec: str | None, page: int, per_page: int) -> dict[str, Any]:
    """The branch view: ``git jobs status --branch B --json``."""
    return branch_json(store, spec, page=page, per_page=per_page)


def definitions_json(store: Jobs, commit: str) -> dict[str, Any] | None:
    """The commit's ``.git-jobs.toml``: its job names, or its error; None when it has none."""
    from ..spec.definitions import DEFINITIONS_FILE, load_definitions

    try:
        defs = load_definitions(store.repo, commit)
    except DefinitionError as e:
        return {"file": DEFINITIONS_FILE, "jobs": [], "error": str(e)}
    if defs is None:
        return None
    return {"file": defs.path, "jobs": list(defs.names), "error": None}


def commit_data(store: Jobs, rev: str) -> dict[str, Any]:
    """The commit view: ``status --json``, each job's ``show --json`` and the definitions."""
    try:
        commit = store.resolve_commit(rev, must_exist=False)
    except JobsError:
        raise NotFoundError(f"no commit {rev!r}") from None
    status = gate_status(store, commit)  # counted and not-counted runs under the trust policy
    in_repo = store.repo.get(commit) is not None
    return {
        "commit": commit,
        "subject": subject_of(store.repo, commit),
        "status": status.to_json(),
        "jobs": [job_json(j) for j in status.jobs],
        "definitions": definitions_json(store, commit) if in_repo else None,
        "me": store.signer.nid if store.signer else None,
        "names": node_names(store, status.policy),
    }


def run_data(store: Jobs, job_id: str, run_id: str, *, local_ok: bool = True) -> dict[str, Any]:
    """The run view: the job's ``show --json`` (runs elided), the run object and its log."""
    job = store.get(job_id)
    whole = run_prefix(run_id)
    found = job.runs_by_prefix(whole) if job is not None and whole and len(whole) == 32 else []
    if job is None or len(found) != 1:
        raise NotFoundError(f"no run {run_id} of job {job_id[:12]}")
    nid, rid, run = found[0]
    shape = job_json(job)
    attempts = [r for r in shape["runs"] if r["node"] == nid]
    shape["runs"] = len(shape["runs"])
    return {
        "job": shape,
        "run": run_json(nid, rid, run),
        "attempts": attempts,
        "subject": subject_of(store.repo, job.commit),
        "log": read_log(store, nid, rid, run, local_ok=local_ok).to_json(),
        "me": store.signer.nid if store.signer else None,
        "names": node_names(store),
    }


def _day(iso: str) -> str:
    return iso[:10]


def pass_rate(runs: list[dict[str, Any]]) -> list[Point]:
    """Per UTC day, runs that succeeded out of those that succeeded or failed (skipped and
    unfinished runs are no verdict), for the last :data:`MAX_CHART_DAYS` days with any."""
    failing = {r.value for r in FAILING}
    by_day: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in runs:
        state, when = r.get("state"), r.get("finished_at")
        if when is None or (state != "succeeded" and state not in failing):
            continue
        cell = by_day[_day(when)]
        cell[1] += 1
        cell[0] += state == "succeeded"
    days = sorted(by_day)[-MAX_CHART_DAYS:]
    return [Point(d, by_day[d][0], by_day[d][1]) for d in days]


def node_data(store: Jobs, node: str) -> dict[str, Any]:
    """The node view: its most recent runs (run objects with their job) and its pass rate."""
    try:
        nid = cob.normalize_nid(node)
    except (cob.CobError, ValueError):
        raise NotFoundError(f"not a node id: {node!r}") from None
    runs: list[dict[str, Any]] = []
    # A node writes only under its own namespace: its index names every job it has runs in, so
    # only those jobs are loaded (not every job of the repository).
    mine = sorted(store.store.refs.objects_of(nid, TYPENAME))
    for job_id in mine:
        job = store.get(job_id)
        if job is None:
            continue
        for rid, run in job.runs_of(nid).items():
            runs.append({**run_json(nid, rid, run), "job": job_id, "name": job.name, "commit": job.commit})
    runs.sort(key=lambda r: r["id"], reverse=True)  # uuid7: newest start first
    points = pass_rate(runs)
    return {
        "node": nid,
        "total": len(runs),
        "runs": runs[:MAX_NODE_RUNS],
        "rate": [{"day": p.label, "passed": p.passed, "total": p.total} for p in points],
        "me": store.signer.nid if store.signer else None,
        "names": node_names(store),
    }
