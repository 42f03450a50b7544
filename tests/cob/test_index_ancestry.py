"""The fold's fast ancestry answers (bitsets) agree with the graph walk they replace.

A finish is valid only if the same node started the run in an *ancestor* change, so concurrent
branches must be told apart exactly. Random DAGs from several nodes, with finishes of runs
started on other branches (which must be rejected), fold to the same result whatever the bitset
limit: all changes, none, or a few (mixing both paths in one fold).
"""

from __future__ import annotations

import random
import tempfile
import uuid

import msgspec
import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cob
import jobs
from cob import evaluate as ev_mod
from cob.change import Codec, write_change, write_root

SIGNERS = [cob.Signer.generate() for _ in range(3)]


def _uuid7(rng: random.Random) -> str:
    value = (rng.getrandbits(48) << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64)
    value |= (0b10 << 62) | rng.getrandbits(62)
    return str(uuid.UUID(int=value))


def _build(repo: pygit2.Repository, seed: int, changes: int) -> tuple[str, dict[str, str]]:
    """A job whose nodes branch and merge; finishes of runs that are not in the finishing
    change's history (another node's run, or a start on a branch it has not merged) are
    written as dead-end leaves under extra refs, so they are rejected without taking the rest
    of the history with them."""
    rng = random.Random(seed)
    codec = Codec(jobs.JOB_TYPE)
    root = write_root(repo, codec, [jobs.Request("a" * 40, "ci")])
    nodes: list[list[str]] = [[root] for _ in SIGNERS]  # each node's branch
    runs: list[tuple[int, str]] = []  # (node, run id), started anywhere
    leaves: list[str] = []
    for i in range(changes):
        k = rng.randrange(len(SIGNERS))
        leaf = False
        if runs and rng.random() < 0.5:
            node, run_id = rng.choice(runs)
            op: object = jobs.FinishRun(run_id, "failed")
            if rng.random() < 0.8:
                k = node  # its own run, started on its own branch: valid
            else:
                leaf = True  # maybe another node's run: rejected (a dead end)
        else:
            run_id = _uuid7(rng)
            runs.append((k, run_id))
            op = jobs.StartRun(run_id, f"https://n{k}.example/{i}")
        if leaf:
            parents = [rng.choice(rng.choice(nodes))]
        elif rng.random() < 0.2:  # merge every branch
            parents = sorted({b[-1] for b in nodes})
        else:
            parents = [nodes[k][-1]]
        s = SIGNERS[k]
        oid = write_change(repo, codec, s, s.nid, [op], parents, timestamp=1_700_000_000 + i)
        if leaf:
            leaves.append(oid)
        else:
            nodes[k].append(oid)
    tips = {s.nid: nodes[k][-1] for k, s in enumerate(SIGNERS) if nodes[k][-1] != root}
    for i, oid in enumerate(leaves):
        tips[f"leaf{i}"] = oid
    return root, tips


def _fold(repo: pygit2.Repository, root: str, tips: dict[str, str]) -> tuple[object, ...]:
    ev = ev_mod.evaluate(repo, Codec(jobs.JOB_TYPE), root, tips)
    return (msgspec.to_builtins(ev.state), sorted(ev.accepted), sorted(ev.rejected.items()))


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), changes=st.integers(5, 60))
def test_bitsets_agree_with_the_walk(seed: int, changes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = pygit2.init_repository(tmp, bare=True)
        root, tips = _build(repo, seed, changes)
        results = []
        for limit in (ev_mod.BITSET_LIMIT, 0, 3):
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(ev_mod, "BITSET_LIMIT", limit)
                results.append(_fold(repo, root, tips))
        assert results[0] == results[1] == results[2]


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 1 << 30), n=st.integers(2, 80), limit=st.integers(0, 90))
def test_is_ancestor_matches_brute_force(seed: int, n: int, limit: int) -> None:
    """Random DAGs (in memory): every is_ancestor answer equals reachability by brute force."""
    rng = random.Random(seed)
    oids = [f"{i:040x}" for i in range(n)]
    parents: dict[str, tuple[str, ...]] = {oids[0]: ()}
    for i in range(1, n):
        parents[oids[i]] = tuple(sorted(set(rng.sample(oids[:i], rng.randint(1, min(3, i))))))
    ancestors: dict[str, set[str]] = {}
    for o in oids:
        ancestors[o] = {o}.union(*(ancestors[p] for p in parents[o]))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ev_mod, "BITSET_LIMIT", limit)
        ctx = ev_mod._Context(None, parents)  # type: ignore[arg-type]
        for o in oids[:-1]:  # the last one is the change being validated: not accepted yet
            ctx.accept(o, parents[o])
        for _ in range(60):
            a, b = rng.choice(oids), rng.choice(oids)
            assert ctx.is_ancestor(a, b) == (a in ancestors[b]), (a, b)


# The fast lane's twin (`-m "not slow"`): the same property on three small histories.
test_bitsets_agree_with_the_walk_briefly = settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)(
    given(seed=st.integers(0, 10_000), changes=st.integers(5, 20))(
        test_bitsets_agree_with_the_walk.hypothesis.inner_test
    )
)
