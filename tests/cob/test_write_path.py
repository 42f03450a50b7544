"""The write on a hub (issue 30): own writes reach the SQLite index in batches
(cob/ownwrites.py), and a writer continues from the index commit it wrote last instead of
reading it back (cob/recovery.py ``move``, ``entry_at``). Neither may ever make a reader take a
stale state as current, lose an acknowledged write, or build on an index a prune damaged."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pygit2
import pytest

import cob
from cob import ownwrites, recovery, sigrefs
from cob.reader import RefReader
from jobs import Jobs
from tests.conftest import git, head
from tests.jobs.test_doctor import _drop

URL = "https://ci.example/"


def _runs(jobs: Jobs, job_id: str, nid: str) -> set[str]:
    job = jobs.get(job_id)
    assert job is not None
    return {str(r) for r in job.runs_of(nid)}


def test_a_pending_own_write_is_never_taken_as_current_by_another_reader(
    repo: pygit2.Repository, signer: cob.Signer
) -> None:
    writer = Jobs(cob.Store(repo, signer))
    job = writer.create(head(repo), "build")
    reader = Jobs(cob.Store(repo))  # its own cache connection, as another process has
    assert _runs(reader, job.id, signer.nid) == set()
    run = str(job.run(URL + "1"))
    cache = writer.store.cache
    assert cache is not None and cache.own.runs  # not written to the index yet
    # The stored stamp still names the old index tip: the reader diffs, and sees the run.
    assert _runs(reader, job.id, signer.nid) == {run}
    assert {
        str(r) for j in Jobs(cob.Store(repo)).find_by_commit(head(repo)) for r in j.runs_of(signer.nid)
    } == {run}
    # The writer's own next query writes its runs first, and sees its write too.
    assert [j.id for j in writer.find_by_commit(head(repo))] == [job.id]
    assert not cache.own.runs
    assert _runs(writer, job.id, signer.nid) == {run}


def _write_in_a_process(repo: pygit2.Repository, key: Path, job_id: str, exit_hard: bool) -> str:
    code = (
        "import os, sys, cob, jobs\n"
        f"j = jobs.Jobs.open({repo.path!r}, signer=cob.Signer.from_file({str(key)!r}))\n"
        f"run = j.get_mut({job_id!r}).run({URL!r})\n"
        "print(run, flush=True)\n"
        "del j\n"  # the store is gone before the process ends, as in the CLI
        + ("os._exit(0)\n" if exit_hard else "")
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip()


@pytest.mark.parametrize("exit_hard", [False, True], ids=["exit", "killed"])
def test_a_writer_process_leaves_the_index_current_or_merely_behind(
    repo: pygit2.Repository, signer: cob.Signer, tmp_path: Path, exit_hard: bool
) -> None:
    key = signer.save(tmp_path / "node.key")
    job = Jobs(cob.Store(repo, signer)).create(head(repo), "build")
    Jobs(cob.Store(repo)).find_by_commit(head(repo))  # the index is current before the write
    run = _write_in_a_process(repo, key, job.id, exit_hard)
    reader = Jobs(cob.Store(repo))
    found = reader.find_by_commit(head(repo))
    assert [str(r) for j in found for r in j.runs_of(signer.nid)] == [run]
    cache = reader.store.cache
    assert cache is not None
    # Written at exit: nothing to refresh. Killed first: the index lags and is brought up to date.
    assert cache.refreshes == (1 if exit_hard else 0)


def test_pending_own_writes_stay_bounded(
    repo: pygit2.Repository, signer: cob.Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ownwrites, "MAX_PENDING", 3)
    writer = Jobs(cob.Store(repo, signer))
    made = [writer.create(head(repo), f"job-{i}") for i in range(7)]
    cache = writer.store.cache
    assert cache is not None
    writer.find_by_commit(head(repo))
    runs = {}
    for job in made:
        runs[job.id] = str(job.run(URL))
        assert all(len(r.tips) < 3 for r in cache.own.runs.values())
    cache.own.flush()
    reader = Jobs(cob.Store(repo))
    assert {j.id: {str(r) for r in j.runs_of(signer.nid)} for j in reader.find_by_commit(head(repo))} == {
        i: {r} for i, r in runs.items()
    }
    assert reader.store.cache is not None and reader.store.cache.refreshes == 0  # current as written


def test_entries_a_writer_derives_are_those_its_index_commits_hold(
    repo: pygit2.Repository, signer: cob.Signer
) -> None:
    # What this process remembers of its index commits is bounded (recovery.MAX_WRITTEN, then
    # forgotten at once); other tests in this worker filled part of it: start empty, so that
    # every index commit of this repository is known below (the reader given reads nothing).
    recovery.forget_written()
    writer = Jobs(cob.Store(repo, signer, cache=False))
    made = [writer.create(head(repo), f"job-{i}") for i in range(5)]
    for i in range(12):
        job = made[(i * 3) % len(made)]
        job.run(URL + str(i)) if i % 2 else job.finish(job.run(URL + str(i)), "succeeded")
        tip = sigrefs.read_tip(repo, signer.nid)
        assert tip is not None and recovery.written_here(repo, tip)
        fresh = RefReader(pygit2.Repository(repo.path))
        for other in made:
            key = ("dev.gitjobs.job", other.id)
            derived = recovery.entry_at(repo, tip, key, lambda _: None)
            assert derived == sigrefs.lookup(repo, sigrefs.tree_of(repo, tip), *key)
            assert writer.store.refs.tips(*key) == fresh.tips(*key)
    # An entry removed, then a write next to it (same fan-out directory builders): both hold.
    gone = made[1].id
    tip = sigrefs.read_tip(repo, signer.nid)
    key = ("dev.gitjobs.job", gone)
    assert tip is not None and recovery.set_tip(
        repo, signer, signer.nid, *key, None, sigrefs.lookup(repo, sigrefs.tree_of(repo, tip), *key)
    )
    made[2].run(URL + "after")
    tip = sigrefs.read_tip(repo, signer.nid)
    assert tip is not None and recovery.entry_at(repo, tip, key, lambda _: "read") is None
    fresh = RefReader(pygit2.Repository(repo.path))
    assert gone not in {r.object_id for r in fresh.refs_of_type("dev.gitjobs.job") if r.nid == signer.nid}
    assert writer.store.refs.tips(*key) == fresh.tips(*key) == {}
    # Every index commit written from kept tree builders is well formed: fsck is clean.
    git(repo.path, "fsck", "--strict", "--no-dangling")


def test_a_writer_does_not_build_on_its_last_index_commit_once_a_prune_took_part_of_it(
    repo: pygit2.Repository, signer: cob.Signer
) -> None:
    writer = Jobs(cob.Store(repo, signer, cache=False))
    made = [writer.create(head(repo), f"job-{i}") for i in range(6)]
    first = str(made[0].run(URL + "0"))
    tip = sigrefs.read_tip(repo, signer.nid)
    assert tip is not None and recovery.written_here(repo, tip)
    commit = repo[tip]
    assert isinstance(commit, pygit2.Commit)
    top = repo[commit.tree["dev.gitjobs.job"].id]
    fan = top[made[0].id[:2]]  # type: ignore[index]
    _drop(repo, str(fan.id))  # the fan-out directory that write made, as a racing prune would
    pygit2.Repository(repo.path)  # (nothing of ours keeps the file: the check asks the disk)
    time.sleep(recovery.INTACT_TTL + 0.1)
    second = str(made[3].run(URL + "3"))  # moves on from the intact index, the first run kept
    git(repo.path, "fsck", "--strict", "--no-dangling")
    fresh = Jobs(cob.Store(pygit2.Repository(repo.path), cache=False))
    assert {j.id for j in fresh.all()} == {j.id for j in made}
    assert _runs(fresh, made[0].id, signer.nid) == {first}
    assert _runs(fresh, made[3].id, signer.nid) == {second}


def test_threads_of_one_process_writing_one_node_lose_no_run(
    repo: pygit2.Repository, signer: cob.Signer
) -> None:
    """Writers in one process share what it knows of the index commits it wrote (and the tree
    builders of the newest): each write takes those builders whole, or reads the trees."""
    import threading

    made = [j.id for j in (Jobs(cob.Store(repo, signer)).create(head(repo), f"job-{i}") for i in range(3))]
    started: list[str] = []
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            jobs = Jobs(cob.Store(pygit2.Repository(repo.path), signer))
            for i in range(8):
                job = jobs.get_mut(made[(k + i) % len(made)])
                assert job is not None
                started.append(str(job.run(f"{URL}{k}/{i}")))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    fresh = Jobs(cob.Store(pygit2.Repository(repo.path), cache=False))
    assert set().union(*(_runs(fresh, i, signer.nid) for i in made)) == set(started)
    assert len(started) == 32
    git(repo.path, "fsck", "--strict", "--no-dangling")
