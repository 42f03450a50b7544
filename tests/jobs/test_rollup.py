"""The plain rollup (`jobs.rollup`, what the benches compare the merge gate against) counts every
node alike: a commit is pending while a job is queued or running, failed once any node's latest
run failed, succeeded when every node's latest run passed."""

from __future__ import annotations

from collections.abc import Iterator

import pygit2

import cob
import jobs
from jobs.rollup import commit_status
from tests.conftest import head


def test_the_rollup_counts_every_nodes_latest_run(
    repo: pygit2.Repository, signers: Iterator[cob.Signer]
) -> None:
    alice, bob = next(signers), next(signers)
    sha = head(repo)
    assert commit_status(jobs.Jobs.open(repo.path)).outcome == "none"

    store = jobs.Jobs.open(repo.path, signer=alice)
    build = store.create(sha, "build")
    store.create(sha, "test")
    status = commit_status(store)
    assert (status.commit, status.outcome, status.counts()) == (sha, "pending", {"queued": 2})

    build.finish(build.run("https://ci.example/a/1"), jobs.Reason.SUCCEEDED)
    theirs = jobs.Jobs.open(repo.path, signer=bob)
    test = theirs.create(sha, "test")  # the same job (content-addressed), bob's handle
    test.finish(test.run("https://ci.example/b/1"), jobs.Reason.FAILED)
    status = commit_status(jobs.Jobs.open(repo.path), "HEAD")
    assert status.outcome == "failed" and status.exit_code == 1
    assert status.nodes() == sorted([alice.nid, bob.nid])
    shape = status.to_json()
    assert [(j["name"], [c["node"] for c in j["latest"]]) for j in shape["jobs"]] == [
        ("build", [alice.nid]),
        ("test", [bob.nid]),
    ]

    rerun = jobs.Jobs.open(repo.path, signer=bob).create(sha, "test")
    rerun.finish(rerun.run("https://ci.example/b/2"), jobs.Reason.SUCCEEDED)
    assert commit_status(jobs.Jobs.open(repo.path)).outcome == "succeeded"
