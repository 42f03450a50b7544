"""A listing reads each node's latest run straight from the folded state (issue 30): what
``job_state`` and the run counts say is what building every ``Run`` says."""

from __future__ import annotations

import pygit2

import jobs
from jobs.summary import LOST, RUNNING, job_state
from tests.conftest import head


def _by_runs(job: jobs.Job) -> set[str]:
    """The states of every node's latest run, from fully built runs (the old way)."""
    out = set()
    for runs in job.runs().values():
        latest = dict(runs.items())
        if latest:
            run = latest[max(latest)]
            out.add(run.reason.value if run.reason is not None else (LOST if run.lost else RUNNING))
    return out


def test_latest_outcomes_agree_with_the_built_runs(repo: pygit2.Repository, signers: object) -> None:
    alice, bob, carol = next(signers), next(signers), next(signers)  # type: ignore[call-overload]
    stores = [jobs.Jobs.open(repo.path, signer=s) for s in (alice, bob, carol)]
    job = stores[0].create(head(repo), name="ci")
    first = job.run("https://a.example/1")
    job.finish(first, "failed")
    job.run("https://a.example/2")  # alice's latest: running
    bob_job = stores[1].get_mut(job.id)
    assert bob_job is not None
    bob_job.finish(bob_job.run("https://b.example/1"), "succeeded")
    carol_job = stores[2].get_mut(job.id)
    assert carol_job is not None
    carol_job.finish(carol_job.run("https://c.example/1"), "timed_out")
    for reader in (jobs.Jobs.open(repo.path), jobs.Jobs.open(repo.path, cache=False)):
        for one in reader.all():
            fresh = reader.get(one.id)
            assert fresh is not None
            outcomes = {reason or (LOST if lost else RUNNING) for reason, lost in fresh.latest_outcomes()}
            assert outcomes == _by_runs(one) == {"running", "succeeded", "timed_out"}
            assert job_state(fresh) == job_state(one) == "failed"
            assert [len(r) for r in fresh.runs().values()] == [
                len(dict(r.items())) for r in one.runs().values()
            ]
            assert fresh.run_totals() == (4, 3) == one.run_totals()
            latest = {nid: r.latest() for nid, r in fresh.runs().items()}
            assert latest == {nid: max(r.items()) for nid, r in one.runs().items()}
