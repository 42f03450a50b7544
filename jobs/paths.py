"""Where this clone keeps its own files: ``<gitdir>/git-jobs/``, one owner for every path.

Nothing here travels: peers see only Git data. A reader keeps the last policy it saw and the
clock memories of :mod:`jobs.deadline`; a node adds its logs, checkouts' journal, lock, kept
outputs, caches and progress. Every module asks this one for a path, so the layout is read
in one place (docs/NODE.md lists it for people).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pygit2

STATE = "git-jobs"  # the directory under the git dir


def state_dir(repo: pygit2.Repository) -> Path:
    """``<gitdir>/git-jobs/``: what a clone keeps beside its repository."""
    return Path(repo.path) / STATE


def state_file(repo: pygit2.Repository, name: str) -> Path:
    """One file of its own directly under :func:`state_dir` (``policy-seen``, ``node.json``…)."""
    return state_dir(repo) / name


def logs_dir(repo: pygit2.Repository) -> Path:
    return state_dir(repo) / "logs"


def log_path(repo: pygit2.Repository, run_id: object) -> Path:
    """The local file of a run's log on the node that ran it."""
    return logs_dir(repo) / f"{run_id}.log"


def outputs_root(repo: pygit2.Repository) -> Path:
    """Kept outputs of the jobs this node ran, by commit (:mod:`jobs.node.outputs`)."""
    return state_dir(repo) / "outputs"


def outputs_dir(repo: pygit2.Repository, commit: str, job: str) -> Path:
    """One job's kept outputs: the job's name is hashed (it may hold any character)."""
    key = hashlib.sha256(job.encode()).hexdigest()[:24]
    return outputs_root(repo) / commit / key


def caches_root(repo: pygit2.Repository) -> Path:
    """Job caches of this node, by scope (:mod:`jobs.node.cache`)."""
    return state_dir(repo) / "caches"


def running_dir(repo: pygit2.Repository) -> Path:
    """The journal of runs in progress (:mod:`jobs.node.journal`)."""
    return state_dir(repo) / "running"


def recovered_dir(repo: pygit2.Repository) -> Path:
    """Runs a dead process of this node left, already finished ``error``."""
    return state_dir(repo) / "recovered"
