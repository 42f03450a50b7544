"""Where a node keeps what it runs: ``<gitdir>/git-jobs/`` — logs, checkouts, journal, lock.

Logs live beside the repository (not in a temp dir) so that ``git jobs logs RUN`` works after a
restart and ``--follow`` can stream a run in progress. Other nodes get a run's log as Git data
(:mod:`jobs.logs`), so the default recorded URL names the run, not a private path:
``git-jobs://<NID>/<run id>`` (read it with ``git jobs logs <run id>``). A ``[log] url`` template
in the definitions replaces the *recorded* URL, for a node that also publishes logs elsewhere;
the local file and the Git copy are kept either way.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pygit2

from ..errors import JobsError
from .templates import render

SCHEME = "git-jobs"  # the default log URL: the log travels in Git, `git jobs logs RUN` reads it


def state_dir(repo: pygit2.Repository) -> Path:
    return Path(repo.path) / "git-jobs"


def logs_dir(repo: pygit2.Repository) -> Path:
    return state_dir(repo) / "logs"


def log_path(repo: pygit2.Repository, run_id: uuid.UUID | str) -> Path:
    return logs_dir(repo) / f"{run_id}.log"


def log_url(
    nid: str, run_id: uuid.UUID, commit: str, job: str, template: str | None
) -> str:
    """The URL recorded with a run: the definitions' template, else ``git-jobs://NID/RUN``."""
    if template:
        return render(template, {"run_id": run_id, "commit": commit, "job": job})
    return f"{SCHEME}://{nid}/{run_id}"


def find_log(repo: pygit2.Repository, run: str) -> Path:
    """The local log of a run id (full, or a unique prefix; with or without dashes)."""
    text = run.strip().lower()
    wanted = text.replace("-", "")
    if not wanted or any(c not in "0123456789abcdef" for c in wanted):
        raise JobsError(f"not a run id: {run!r}")
    directory = logs_dir(repo)
    logs = sorted(directory.glob("*.log")) if directory.is_dir() else []
    found = [p for p in logs if p.stem.replace("-", "").startswith(wanted)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        shown = ", ".join(p.stem for p in found[:5])
        raise JobsError(f"run prefix {run!r} is ambiguous: {shown}")
    raise JobsError(
        f"no log for run {run!r} on this node (a log is kept only by the node that ran it; "
        "`git jobs show` lists each run's log URL)"
    )
