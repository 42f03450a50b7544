"""Writers killed with SIGKILL at random points lose nothing that was acknowledged.

The harness (``tests/stress/crash.py``; run it by hand with ``--iterations 300``) kills a
worker process during ``run``, ``finish``, ``sync`` and the index update, then checks
``git fsck --strict``, that every acknowledged operation is in a fresh fold, that the index
equals a fresh fold, and that the next call works. A SIGKILL while libgit2 holds ``<ref>.lock``
leaves the lock behind; the store removes such a lock once it is older than
``cob.refs.STALE_LOCK_SECONDS`` and no writer of ours is live (``git-jobs-writers.lock``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pygit2
import pytest

import cob
import jobs
from cob.refs import STALE_LOCK_SECONDS, _writers_lock, clear_stale_lock
from tests.conftest import head
from tests.stress import crash
from tests.stress.common import ROOT, worker_env

ITERATIONS = int(os.environ.get("GIT_JOBS_CRASH_ITERATIONS", "30"))


@pytest.mark.slow
def test_sigkill_at_random_points_loses_no_acknowledged_operation(tmp_path: Path) -> None:
    figures = crash.run(ITERATIONS, tmp_path / "world", seed=11, max_delay=0.4)
    print("\n".join(figures.lines()))
    assert figures.killed == ITERATIONS
    assert figures.acked_ops > ITERATIONS  # the kills landed while work was going on
    assert figures.lost == []
    assert figures.fsck_failures == []
    assert figures.index_mismatches == []
    assert figures.next_call_failures == []


@pytest.mark.slow
def test_sigkill_during_index_updates_leaves_a_usable_index(tmp_path: Path) -> None:
    """Kills that mostly land in SQLite writes: the index still equals a fresh fold."""
    world = crash.World.make(tmp_path / "w")
    for seed in range(6):
        proc = subprocess.Popen(
            world.worker_cmd(ops=10_000, seed=seed, hub=False, mix="run=1,finish=1,index=6"),
            cwd=world.base,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=worker_env(),
        )
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(0.05 + 0.07 * seed)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert crash.check_index(world.repo, world.job_ids) == []


def _ref_lock(store: jobs.Jobs, signer: cob.Signer) -> Path:
    """The lock of the ref every write of this node moves: its index ref."""
    return Path(store.repo.path) / (cob.index_ref(signer.nid) + ".lock")


def test_a_stale_ref_lock_is_removed_and_the_next_call_works(
    repo: pygit2.Repository, signer: cob.Signer
) -> None:
    store = jobs.Jobs.open(repo.path, signer=signer)
    job = store.create(head(repo))
    lock = _ref_lock(store, signer)
    lock.write_text("0" * 40 + "\n")
    old = time.time() - STALE_LOCK_SECONDS - 5
    os.utime(lock, (old, old))
    start = time.monotonic()
    run_id = job.run("https://ci.example/logs/after-crash")
    assert time.monotonic() - start < 1.0
    assert not lock.exists()
    assert run_id in jobs.Jobs.open(repo.path, cache=False).get(job.id).runs_of(signer.nid)  # type: ignore[union-attr]


def test_a_fresh_lock_or_a_live_writer_is_never_broken(repo: pygit2.Repository, signer: cob.Signer) -> None:
    store = jobs.Jobs.open(repo.path, signer=signer)
    store.create(head(repo))  # the index ref exists
    lock = _ref_lock(store, signer)
    name = cob.index_ref(signer.nid)
    lock.write_text("")
    assert clear_stale_lock(store.repo, name) is False  # young: maybe a writer at work
    old = time.time() - 60
    os.utime(lock, (old, old))
    with _writers_lock(store.repo.path.rstrip("/"), exclusive=False):  # a live writer of ours
        assert clear_stale_lock(store.repo, name) is False
    assert lock.exists()
    assert clear_stale_lock(store.repo, name) is True
    assert not lock.exists()


@pytest.mark.slow
def test_a_writer_killed_while_holding_the_ref_lock_blocks_it_briefly(
    repo: pygit2.Repository, signer: cob.Signer
) -> None:
    """A real process takes the ref lock (O_EXCL, like libgit2) inside our writers' lock and is
    SIGKILLed there. The next write waits for the lock to turn stale, clears it, and succeeds."""
    store = jobs.Jobs.open(repo.path, signer=signer)
    job = store.create(head(repo))
    lock = _ref_lock(store, signer)
    child = textwrap.dedent(f"""
        import os, sys, time
        from cob.refs import _writers_lock
        with _writers_lock({store.repo.path.rstrip("/")!r}, exclusive=False):
            fd = os.open({str(lock)!r}, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, b"half")
            print("locked", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, cwd=ROOT, env=worker_env())
    assert proc.stdout is not None and proc.stdout.readline() == b"locked\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lock.exists()
    start = time.monotonic()
    run_id = job.run("https://ci.example/logs/after-kill")
    waited = time.monotonic() - start
    assert waited < STALE_LOCK_SECONDS + 2.5, waited
    assert not lock.exists()
    assert run_id in jobs.Jobs.open(repo.path, cache=False).get(job.id).runs_of(signer.nid)  # type: ignore[union-attr]
    subprocess.run(["git", "fsck", "--strict"], cwd=repo.workdir, check=True, capture_output=True)


@pytest.mark.parametrize("victim", ["run", "finish"])
@pytest.mark.slow
def test_a_killed_call_is_either_fully_there_or_absent(tmp_path: Path, victim: str) -> None:
    """Kill right after many calls of one kind: no half-applied op (a change is one commit and
    one ref move), and what is there folds without rejections."""
    world = crash.World.make(tmp_path / "w", n_jobs=1)
    mix = "run=1" if victim == "run" else "run=1,finish=3"
    proc = subprocess.Popen(
        world.worker_cmd(ops=10_000, seed=3, hub=False, mix=mix),
        cwd=world.base,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=worker_env(),
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    acks = crash.Acks()
    acks.feed(world.signer.nid, out.decode())
    fresh = jobs.Jobs.open(world.repo, cache=False)
    assert crash.check_acked(fresh, acks) == []
    assert crash.check_no_duplicates(world.repo, world.job_ids) == []
    job = fresh.get(world.job_ids[0])
    assert job is not None and job.rejected == []
    assert crash.fsck(world.repo) is None
