"""Convergence: three nodes, random ops, random exchanges — every replica folds the same state,
and the incremental (cached) fold always equals a fold from scratch."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cob
import jobs
from tests.jobhelpers import all_states, exchange

COMMITS = [f"{i:040x}" for i in (0xA1, 0xB2)]
NAMES = ["build", "test"]
REASONS = [r.value for r in jobs.Reason]

step = st.one_of(
    st.tuples(st.just("run"), st.integers(0, 2), st.integers(0, 3)),
    st.tuples(st.just("finish"), st.integers(0, 2), st.integers(0, 20), st.sampled_from(REASONS)),
    st.tuples(st.just("exchange"), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("check"), st.integers(0, 2)),
)


def _job_ids(store: cob.Store) -> list[str]:
    return store.list(jobs.JOB_TYPE)


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=5, max_size=40), final_order=st.permutations([0, 1, 2]))
def test_three_nodes_converge(steps: list[tuple[object, ...]], final_order: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repos = [pygit2.init_repository(str(Path(tmp) / f"n{i}"), bare=True) for i in range(3)]
        signers = [cob.Signer.generate() for _ in range(3)]
        stores = [jobs.Jobs.open(r, signer=s) for r, s in zip(repos, signers, strict=True)]
        # Each node creates every job on its own: content-addressed ids must coincide.
        ids = []
        for store in stores:
            ids = [
                store.store.create(jobs.JOB_TYPE, [jobs.Request(c, n)]).object_id
                for c in COMMITS
                for n in NAMES
            ]
        started: list[list[tuple[str, str]]] = [[], [], []]
        for s in steps:
            kind = s[0]
            if kind == "run":
                node, j = int(s[1]), int(s[2])  # type: ignore[call-overload]
                mut = stores[node].get_mut(ids[j])
                assert mut is not None
                started[node].append((ids[j], str(mut.run(f"https://n{node}.example/{len(started[node])}"))))
            elif kind == "finish":
                node, k, reason = int(s[1]), int(s[2]), str(s[3])  # type: ignore[call-overload]
                if not started[node]:
                    continue
                job_id, run_id = started[node][k % len(started[node])]
                mut = stores[node].get_mut(job_id)
                assert mut is not None
                with contextlib.suppress(jobs.AlreadyFinishedError):
                    mut.finish(run_id, reason)
            elif kind == "exchange":
                src, dst = int(s[1]), int(s[2])  # type: ignore[call-overload]
                if src != dst:
                    exchange(repos[src], repos[dst])
            else:
                node = int(s[1])  # type: ignore[call-overload]
                # The cached, incremental fold equals a fold from scratch at every point.
                assert all_states(repos[node], cache=True) == all_states(repos[node], cache=False)
                for job_id in _job_ids(stores[node].store):
                    cached = stores[node].store.load(jobs.JOB_TYPE, job_id)
                    full = stores[node].store.load(jobs.JOB_TYPE, job_id, full=True)
                    assert cached is not None and full is not None
                    assert cached.rejected == full.rejected == {}
        # Everyone talks to everyone, in a random order, until nothing moves.
        moved = True
        while moved:
            moved = False
            for a in final_order:
                for b in final_order:
                    if a != b and exchange(repos[a], repos[b]):
                        moved = True
        states = [all_states(r, cache=False) for r in repos]
        assert states[0] == states[1] == states[2]
        assert sorted(states[0]) == sorted(ids)
        for r in repos:
            assert all_states(r, cache=True) == states[0]
        # Every run that any node started is present everywhere.
        for node, runs in enumerate(started):
            for job_id, run_id in runs:
                assert run_id in [rid for rid, *_ in states[0][job_id]["runs"][signers[node].nid]]


# The fast lane's twin (`-m "not slow"`): the same property on two short examples.
test_three_nodes_converge_on_a_few_examples = settings(
    max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)(
    given(steps=st.lists(step, min_size=5, max_size=8), final_order=st.permutations([0, 1, 2]))(
        test_three_nodes_converge.hypothesis.inner_test
    )
)
