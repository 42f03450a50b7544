"""A listing reads each node's latest run straight from the folded state (issue 30): what
``job_state`` and the run counts say is what building every ``Run`` says."""

from __future__ import annotations

import time

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


# -- listing rows (issue 30): `Jobs.listing` reads a small row per job, never its whole state --
def _expected(reader: jobs.Jobs) -> list[tuple[object, ...]]:
    """What every job's full state says a listing shows (the way before rows)."""
    out = []
    for job in sorted(reader.all(), key=lambda j: j.id):
        total, _ = job.run_totals()
        nodes = tuple(sorted(job.runs()))
        out.append((job.id, job.commit, job.name, job_state(job), total, len(job.rejected), nodes))
    return out


def _listed(reader: jobs.Jobs, commit: str | None = None) -> list[tuple[object, ...]]:
    return [(j.id, j.commit, j.name, j.state, j.runs, j.rejected, j.nodes) for j in reader.listing(commit)]


def test_a_listing_says_what_every_jobs_state_says(repo: pygit2.Repository, signers: object) -> None:
    alice, bob = next(signers), next(signers)  # type: ignore[call-overload]
    a, b = jobs.Jobs.open(repo.path, signer=alice), jobs.Jobs.open(repo.path, signer=bob)
    ci, docs = a.create(head(repo), name="ci"), a.create(head(repo), name="docs")
    ci.finish(ci.run("https://a.example/1"), "failed")
    other = b.get_mut(ci.id)
    assert other is not None
    other.run("https://b.example/1")
    docs.finish(docs.run("https://a.example/2"), "succeeded")
    a.create(head(repo), name="queued")
    expected = _expected(jobs.Jobs.open(repo.path, cache=False))
    assert [row[3] for row in expected] != [] and {row[3] for row in expected} >= {
        "failed",
        "succeeded",
        "queued",
    }
    for reader in (jobs.Jobs.open(repo.path), jobs.Jobs.open(repo.path, cache=False), a):
        assert _listed(reader) == expected
        assert _listed(reader, head(repo)) == expected
        assert _listed(reader, "0" * 40) == []
    long_lived = jobs.Jobs.open(repo.path)
    assert _listed(long_lived) == expected
    ci.run("https://a.example/3")  # a row moves (now 3 runs, running): read afresh
    assert _listed(long_lived) == _expected(jobs.Jobs.open(repo.path, cache=False)) != expected


def test_a_listing_judges_a_started_run_lost_as_the_reader_does(
    repo: pygit2.Repository, signers: object
) -> None:
    from jobs.deadline import DEFAULT_GRACE, Judge

    now = [time.time()]
    store = jobs.Jobs.open(repo.path, signer=next(signers))  # type: ignore[call-overload]
    job = store.create(head(repo), name="ci")
    job.run("https://a.example/1", timeout=60)
    reader = jobs.Jobs.open(repo.path)
    reader.judge = Judge.load(reader.repo, lambda: now[0])
    [listed] = reader.listing()
    assert listed.state == "running" == job_state(reader.get(job.id))  # type: ignore[arg-type]
    now[0] += 60 + DEFAULT_GRACE + 5  # the same stored row, a later reader's clock
    [listed] = reader.listing()
    assert listed.state == "failed" == job_state(reader.get(job.id))  # type: ignore[arg-type]
