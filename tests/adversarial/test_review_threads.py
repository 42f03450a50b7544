"""An attacker's review of own writes kept for later (cob/ownwrites.py): a thread's pending
writes are written by whichever thread flushes them (another thread's writes past MAX_HELD, or
the main thread at exit). A connection of one thread used from another raises
``sqlite3.ProgrammingError``, a ``DatabaseError``: the cache took it for a damaged file and
deleted the whole index, which every process and thread shares, on every such flush."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pygit2

import cob
from jobs import Jobs
from tests.conftest import head

URL = "https://ci.example/"


def _index_rows(path: str) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM evaluations").fetchone()[0])
    finally:
        db.close()


def test_a_worker_threads_pending_write_flushed_at_exit_keeps_the_index(
    repo: pygit2.Repository, signer: cob.Signer, tmp_path: Path
) -> None:
    key = signer.save(tmp_path / "node.key")
    writer = Jobs(cob.Store(repo, signer))
    job = writer.create(head(repo), "build")
    cache = writer.store.cache
    assert cache is not None
    path = cache.path
    Jobs(cob.Store(repo)).find_by_commit(head(repo))  # the index is current and holds the job
    assert _index_rows(path) >= 1
    before = os.stat(path).st_ino
    code = (
        "import threading, cob, jobs\n"
        "def work():\n"
        f"    j = jobs.Jobs.open({repo.path!r}, signer=cob.Signer.from_file({str(key)!r}))\n"
        f"    print(j.get_mut({job.id!r}).run({URL!r}), flush=True)\n"  # pending, in this thread
        "t = threading.Thread(target=work)\n"
        "t.start(); t.join()\n"  # the main thread exits: atexit writes the worker's runs
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    run = out.stdout.strip()
    # The index is the same file, still holding what it held: nothing was thrown away.
    assert os.stat(path).st_ino == before
    assert _index_rows(path) >= 1
    reader = Jobs(cob.Store(repo))
    assert [str(r) for j in reader.find_by_commit(head(repo)) for r in j.runs_of(signer.nid)] == [run]


def test_pending_writes_of_more_threads_than_held_keep_the_index(
    repo: pygit2.Repository, signer: cob.Signer
) -> None:
    import threading

    from cob import ownwrites

    writer = Jobs(cob.Store(repo, signer))
    jobs = [writer.create(head(repo), f"build-{i}") for i in range(ownwrites.MAX_HELD + 2)]
    cache = writer.store.cache
    assert cache is not None
    Jobs(cob.Store(repo)).find_by_commit(head(repo))
    resets: list[int] = []
    stores: list[Jobs] = []  # kept alive, as a daemon's threads keep theirs
    errors: list[BaseException] = []

    def work(job_id: str) -> None:
        try:
            j = Jobs(cob.Store(pygit2.Repository(repo.path), signer))
            j.get(job_id)  # this thread's connection is opened
            j.get_mut(job_id).run(URL)  # its write is left pending
            stores.append(j)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    for job in jobs:  # one after another: each thread's pending runs outlive it
        t = threading.Thread(target=work, args=(job.id,))
        t.start()
        t.join()
    assert not errors
    for j in stores:
        c = j.store.cache
        assert c is not None
        resets.append(c.resets)
    assert resets == [0] * len(stores)
    ownwrites._flush_all()  # as at exit, from this thread
    for j in stores:
        c = j.store.cache
        assert c is not None and c.resets == 0
    reader = Jobs(cob.Store(repo))
    assert all(len(reader.get(job.id).runs_of(signer.nid)) == 1 for job in jobs)  # type: ignore[union-attr]


def test_a_kept_listing_row_that_fails_its_seal_is_made_again(
    repo: pygit2.Repository, signer: cob.Signer
) -> None:
    """Another user who can write the kept states' file (not read the secret) puts bytes in a
    job's listing row: the listing is still right, and the row is made again from the state
    restored with it, not copied into the index to be refolded on every listing."""
    from cob import keptstates
    from jobs.jobtype import JOB_TYPE

    writer = Jobs(cob.Store(repo, signer))
    job = writer.create(head(repo), "build")
    job.run(URL)
    other = writer.create(head(repo), "test")  # two: a batch is read from the kept states
    want = sorted([(job.id, "running", 1), (other.id, "queued", 0)])
    assert [(j.id, j.state, j.runs) for j in Jobs(cob.Store(repo)).listing()] == want
    cache = writer.store.cache
    assert cache is not None
    states = keptstates.states_path(os.path.dirname(cache.path))
    db = sqlite3.connect(states)
    assert db.execute("UPDATE states SET listing = ?", (b"\x00" * 40,)).rowcount == 2
    db.commit()
    db.close()
    keptstates.unlink_all(cache.path)  # the index is gone; the kept states outlive it
    first = Jobs(cob.Store(repo))
    assert [(j.id, j.state, j.runs) for j in first.listing()] == want
    again = cob.Store(repo)
    found, missing = again._listing_rows(JOB_TYPE, None)
    assert sorted(i for i, _ in found) == sorted([job.id, other.id]) and missing == []
