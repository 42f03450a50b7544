"""This node's own bookkeeping: the work lock and the journal of runs in flight.

The **lock** (``flock`` on ``<gitdir>/git-jobs/work.lock``) lets exactly one worker of this node
run jobs in a repository at a time; the kernel drops it when the process dies, however it dies.

The **journal** has one file per run this node has started and not yet finished. Whoever holds
the lock and finds an entry knows that run's process died mid-job (µTask's crash recovery):
the run is finished ``error`` and its job becomes eligible again if it is ``idempotent``; as in
µTask, a crash does not use up one of the job's retries (``<gitdir>/git-jobs/recovered/``).
A journal — rather than "every started run of mine" — keeps recovery away from runs a user
started by hand with ``git jobs run``, which are finished by hand too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import pygit2

from cob.errors import TransportError
from cob.gitrun import run_git

from .. import paths
from ..errors import JobsError
from .checkout import remove_tree
from .logs import state_dir


class LockedError(JobsError):
    """Another process of this node is already working in this repository."""


class WorkLock:
    """An exclusive, non-blocking lock; ``acquire()`` raises :class:`LockedError` when held."""

    def __init__(self, repo: pygit2.Repository) -> None:
        self.path = state_dir(repo) / "work.lock"
        self._fh: IO[str] | None = None

    def acquire(self) -> WorkLock:
        if self._fh is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held for the lock's lifetime
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise LockedError(
                f"another `git jobs` worker (pid {holder}) is running jobs in this repository"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> WorkLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass(slots=True)
class Entry:
    run_id: str
    job_id: str
    job: str
    commit: str
    pid: int = 0
    checkout: str = ""


class Journal:
    def __init__(self, repo: pygit2.Repository) -> None:
        self.repo = repo
        self.dir = paths.running_dir(repo)
        self.recovered_dir = paths.recovered_dir(repo)

    def _path(self, run_id: str) -> Path:
        return self.dir / f"{run_id}.json"

    def add(self, entry: Entry) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self._path(entry.run_id).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(entry)))
        os.replace(tmp, self._path(entry.run_id))

    def remove(self, run_id: uuid.UUID | str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(str(run_id)).unlink()

    def mark_recovered(self, run_id: str) -> None:
        """Remember that this run ended ``error`` by crash recovery: it does not use up a retry."""
        directory = self.recovered_dir
        directory.mkdir(parents=True, exist_ok=True)
        (directory / run_id).touch()

    def recovered(self) -> set[str]:
        directory = self.recovered_dir
        return {p.name for p in directory.iterdir()} if directory.is_dir() else set()

    def entries(self) -> list[Entry]:
        out: list[Entry] = []
        if not self.dir.is_dir():
            return out
        for path in sorted(self.dir.glob("*.json")):
            try:
                out.append(Entry(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                path.unlink(missing_ok=True)  # a torn write: the run was never recorded started
        return out


def kill_orphan(entry: Entry) -> None:
    """Kill what is left of a dead worker's job: every process group still carrying its run id.

    Jobs run in their own session, so they outlive a SIGKILLed node. They are found by the
    ``GIT_JOBS_RUN_ID`` in their environment (Linux ``/proc``) rather than by the recorded pid
    alone: the node may have died before recording it, and a pid may have been reused since.
    """
    marker = f"GIT_JOBS_RUN_ID={entry.run_id}".encode()
    groups: set[int] = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                groups.add(os.getpgid(int(proc.name)))
        except (OSError, ValueError):
            continue
    for pgid in groups:
        if pgid > 1 and pgid != os.getpgid(0):
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGKILL)


def remove_checkout(repo: pygit2.Repository, path: str) -> None:
    """Remove a dead run's scratch directory (and a worktree left by an older version)."""
    if not path:
        return
    if Path(path).resolve().is_relative_to(state_dir(repo).resolve()):
        gitdir = repo.path.rstrip("/")
        with contextlib.suppress(TransportError):  # best effort, as the rmtree
            run_git(gitdir, ["worktree", "remove", "--force", path], timeout=60)
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(TransportError):
            run_git(gitdir, ["worktree", "prune"], timeout=60)
        return
    remove_tree(path)
