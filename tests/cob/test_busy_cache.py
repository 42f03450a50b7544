"""A cache another process holds locked never fails a read or loses a write (issue 25, item 6).

The SQLite cache is an accelerator: with it locked (``BEGIN EXCLUSIVE`` held by this test,
as a stuck or slow process would), reads fold from Git after a bounded wait and say so on
stderr in one line; writes go to Git, where they count, and show once the lock is gone.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pygit2
import pytest

import cob
from cob.cache import default_path
from jobs import Jobs
from tests.clirunner import GIT_JOBS, Result, env_with, ok


@contextmanager
def locked(path: Path, *, exclusive_mode: bool = False) -> Iterator[None]:
    """Hold the cache locked for writing (and, with ``exclusive_mode``, for reading too)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        if exclusive_mode:
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("BEGIN EXCLUSIVE")
        if exclusive_mode:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('held', 1)")  # takes the lock now
        yield
    finally:
        if db.in_transaction:
            db.execute("ROLLBACK")
        db.close()


def run(cwd: Path, *args: str, key: Path) -> Result:
    """The CLI with a 20 s limit: waiting out SQLite's old 60 s busy timeout fails here."""
    proc = subprocess.run(
        [GIT_JOBS, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=20,
        env=env_with(GIT_JOBS_KEY=str(key)),
        stdin=subprocess.DEVNULL,
    )
    result = Result(proc)
    assert "Traceback" not in result.err, result
    return result


@pytest.mark.slow
def test_a_locked_cache_falls_back_to_git_for_reads_and_writes(
    repo: pygit2.Repository, tmp_path: Path
) -> None:
    work = Path(repo.workdir)
    key = cob.Signer.generate().save(tmp_path / "node.key")
    first = ok(work, "create", "HEAD", "--name", "build", key=key).line
    ok(work, "list", key=key)  # the cache exists and is current
    cache = Path(default_path(repo.path.rstrip("/")))
    assert cache.exists()

    with locked(cache):
        # A write while the cache is locked: acknowledged, and in Git.
        made = run(work, "create", "HEAD~1", "--name", "test", key=key)
        assert made.code == 0, made
        second = made.out.strip()
        started = time.monotonic()
        listed = run(work, "list", "--json", key=key)
        took = time.monotonic() - started
        assert listed.code == 0, listed
        assert {j["id"] for j in listed.json} == {first, second}  # the new job, read from Git
        assert "locked by another process" in listed.err and "from Git" in listed.err
        assert len(listed.err.strip().splitlines()) == 1, listed.err
        assert took < 15, took  # bounded: not SQLite's 60 s busy timeout
        ran = run(work, "run", second, "--log", "https://ci.example/1", key=key)
        assert ran.code == 0, ran
        shown = run(work, "show", second, "--json", key=key)
        assert shown.code == 0 and len(shown.json["runs"]) == 1, shown

    # The lock is gone: the cache catches up with what was written meanwhile.
    after = ok(work, "list", "--json", key=key)
    assert {j["id"] for j in after.json} == {first, second} and after.err == ""
    assert len(ok(work, "show", second, "--json", key=key).json["runs"]) == 1


def test_a_cache_locked_even_for_readers_falls_back_in_process(
    repo: pygit2.Repository, tmp_path: Path, signer: cob.Signer
) -> None:
    jobs = Jobs(cob.Store(repo, signer))
    made = jobs.create(str(repo.head.target), "build")
    assert [j.id for j in jobs.all()] == [made.id]
    cache = Path(default_path(repo.path.rstrip("/")))
    assert jobs.store.cache is not None
    jobs.store.cache.close()  # SQLite's exclusive locking mode waits for every other connection
    with locked(cache, exclusive_mode=True):
        other = Jobs(cob.Store(repo, signer))  # another process's view: a fresh store
        started = time.monotonic()
        assert [j.id for j in other.all()] == [made.id]
        mut = other.get_mut(made.id)
        assert mut is not None
        run_id = mut.run("https://ci.example/2")
        job = other.get(made.id)
        assert job is not None and list(job.runs_of(signer.nid)) == [run_id]
        assert time.monotonic() - started < 15
        assert other.store.cache is not None and other.store.cache.busy >= 1
    again = Jobs(cob.Store(repo, signer))
    job = again.get(made.id)
    assert job is not None and list(job.runs_of(signer.nid)) == [run_id]
