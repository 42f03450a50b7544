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

import pygit2

from ..logs import log_path as log_path  # re-exported: the node's files have one owner
from ..logs import logs_dir
from ..logs import state_dir as state_dir
from ..spec.templates import render

SCHEME = "git-jobs"  # the default log URL: the log travels in Git, `git jobs logs RUN` reads it


def log_url(nid: str, run_id: uuid.UUID, commit: str, job: str, template: str | None) -> str:
    """The URL recorded with a run: the definitions' template, else ``git-jobs://NID/RUN``."""
    if template:
        return render(template, {"run_id": run_id, "commit": commit, "job": job})
    return f"{SCHEME}://{nid}/{run_id}"


def prune_local(repo: pygit2.Repository, pruned_before: str) -> int:
    """Delete this node's local log files of runs in months before ``pruned_before``."""
    from ..logs import bucket_of

    directory = logs_dir(repo)
    count = 0
    for path in sorted(directory.glob("*.log")) if directory.is_dir() else []:
        try:
            old = bucket_of(path.stem) < pruned_before
        except ValueError:
            continue
        if old:
            path.unlink(missing_ok=True)
            count += 1
    return count
