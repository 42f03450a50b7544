"""The shortest path a user takes: create a job, run, finish, read it back."""

from __future__ import annotations

import pygit2

import cob
import jobs
from tests.conftest import head


def test_create_run_finish(repo: pygit2.Repository, signer: cob.Signer) -> None:
    store = jobs.Jobs.open(repo.path, signer=signer)
    job = store.create(head(repo))
    run_id = job.run("https://ci.example/logs/1")
    job.finish(run_id, jobs.Reason.SUCCEEDED)
    again = jobs.Jobs.open(repo.path).get(job.id)
    assert again is not None
    run = again.runs_of(signer.nid)[run_id]
    assert run.status is jobs.Status.FINISHED and run.reason is jobs.Reason.SUCCEEDED
