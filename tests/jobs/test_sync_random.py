"""Property: whatever the order of runs, finishes and syncs (through a hub or peer to peer), once
everyone has synced with the hub every replica folds the same state and no run is lost."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cob
from jobs import Jobs
from jobs.jobtype import JOB_TYPE
from tests.conftest import git, init_repo

PEERS = 3
JOBS = 2

action = st.one_of(
    st.tuples(st.just("run"), st.integers(0, PEERS - 1), st.integers(0, JOBS - 1)),
    st.tuples(st.just("finish"), st.integers(0, PEERS - 1), st.sampled_from(["succeeded", "failed"])),
    st.tuples(st.just("hub"), st.integers(0, PEERS - 1), st.sampled_from(["both", "fetch", "push"])),
    st.tuples(st.just("p2p"), st.integers(0, PEERS - 1), st.integers(0, PEERS - 1)),
)


def _state(peer: Jobs, job_id: str) -> bytes | None:
    ev = peer.store.load(JOB_TYPE, job_id, full=True)
    if ev is None or ev.state is None:
        return None
    assert not ev.rejected
    return msgspec.msgpack.Encoder(order="deterministic").encode(ev.state)


@pytest.mark.slow
@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(action, min_size=4, max_size=12))
def test_any_interleaving_converges(steps: list[tuple[str, int, object]]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="sync-prop-"))
    try:
        init_repo(tmp / "origin", commits=JOBS)
        hub = tmp / "hub.git"
        git(tmp, "clone", "-q", "--bare", str(tmp / "origin"), str(hub))
        commits = git(hub, "rev-list", "HEAD").split()
        peers: list[Jobs] = []
        for i in range(PEERS):
            git(tmp, "clone", "-q", str(hub), str(tmp / f"p{i}"))
            peers.append(Jobs.open(tmp / f"p{i}", cob.Signer.generate()))
        started: dict[int, list[tuple[str, str]]] = {i: [] for i in range(PEERS)}
        finished: dict[int, set[str]] = {i: set() for i in range(PEERS)}
        for kind, i, arg in steps:
            peer = peers[i]
            if kind == "run":
                mut = peer.create(commits[arg if isinstance(arg, int) else 0])
                started[i].append((mut.id, str(mut.run(f"https://ci.invalid/{i}"))))
            elif kind == "finish":
                open_runs = [r for r in started[i] if r[1] not in finished[i]]
                if open_runs:
                    job_id, run_id = open_runs[0]
                    mut = peer.get_mut(job_id)
                    assert mut is not None
                    mut.finish(run_id, str(arg))
                    finished[i].add(run_id)
            elif kind == "hub":
                report = peer.sync(str(hub), fetch=arg != "push", push=arg != "fetch")
                assert report.rejected == []
                assert [r for r in report.refused if r.kind != "behind"] == []
            else:
                other = tmp / f"p{arg}"
                report = peer.sync(str(other))
                assert report.rejected == [] and [r for r in report.refused if r.kind != "behind"] == []
        for _ in range(2):
            for peer in peers:
                report = peer.sync(str(hub))
                assert [r for r in report.refused if r.kind != "behind"] == []
        job_ids = {job_id for runs in started.values() for job_id, _ in runs}
        for job_id in job_ids:
            assert len({_state(p, job_id) for p in peers}) == 1
            job = peers[0].get(job_id)
            assert job is not None
            for i, runs in started.items():
                nid = peers[i].signer.nid  # type: ignore[union-attr]
                mine = {r for j, r in runs if j == job_id}
                assert {str(r) for r in job.runs_of(nid)} == mine
                for run_id in mine:
                    assert job.runs_of(nid)[run_id].is_finished == (run_id in finished[i])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# The fast lane's twin (`-m "not slow"`): the same property on one short example.
test_an_interleaving_converges = settings(
    max_examples=1,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)(given(st.lists(action, min_size=4, max_size=6))(test_any_interleaving_converges.hypothesis.inner_test))
