"""Determinism: the same changes fold to the same order and state on every replica.

Hypothesis draws a DAG of signed changes (random parents, authors and clocks with ties, some
changes the type refuses), writes it once, then delivers it into several repositories: objects
copied in shuffled orders (pygit2 odb read/write) or by `git fetch` from a path, and refs
pointed in different shapes (which namespace holds which tip, extra refs on interior changes,
tips delivered in batches with loads — and cache updates — in between). Every replica must fold
exactly what an independent model of the rule computes: topological order, ties by
(commit time, oid), refused changes dropped with their descendants.
"""

from __future__ import annotations

import heapq
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cob
from cob.change import Codec, write_change, write_root
from tests.conftest import git
from tests.toytype import LOG, REJECT_TEXT, TAGS, Append, Create, Tag, point

# Each example makes four repositories: on tmpfs when there is one, for speed.
FAST_TMP = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
SIGNERS = [cob.Signer.generate() for _ in range(3)]
NAMESPACES = [cob.Signer.generate().nid for _ in range(32)]  # refs may live in any namespace


@dataclass
class Spec:
    parents: list[list[int]]  # parents[i] ⊆ range(i); change 0 is the root
    authors: list[int]
    times: list[int]
    refused: list[bool]


@st.composite
def dags(draw: st.DrawFn) -> Spec:
    n = draw(st.integers(2, 12))
    parents: list[list[int]] = [[]]
    for i in range(1, n):
        k = draw(st.integers(1, min(3, i)))
        parents.append(sorted(draw(st.sets(st.integers(0, i - 1), min_size=k, max_size=k))))
    authors = [draw(st.integers(0, len(SIGNERS) - 1)) for _ in range(n)]
    times = [draw(st.integers(1000, 1003)) for _ in range(n)]  # few values: many ties
    refused = [False] + [draw(st.integers(0, 9)) == 0 for _ in range(n - 1)]
    return Spec(parents, authors, times, refused)


def write_dag(repo: pygit2.Repository, spec: Spec, cobtype: Any) -> list[str]:
    codec = Codec(cobtype)
    oids: list[str] = []
    for i, ps in enumerate(spec.parents):
        if i == 0 and cobtype.content_addressed_root:
            oids.append(write_root(repo, codec, [Create("obj")]))
            continue
        text = f"{REJECT_TEXT} c{i}" if spec.refused[i] else f"c{i}"
        op = Append(text) if cobtype is LOG else Tag(text)
        signer = SIGNERS[spec.authors[i]]
        oids.append(
            write_change(
                repo, codec, signer, signer.nid, [op], [oids[p] for p in ps], timestamp=spec.times[i]
            )
        )
    return oids


def model(spec: Spec, oids: list[str], cobtype: Any) -> tuple[list[str], set[str]]:
    """The documented rule, implemented independently: (fold order, rejected set)."""
    n = len(oids)
    root_time = 0 if cobtype.content_addressed_root else spec.times[0]
    key = [(root_time if i == 0 else spec.times[i], oids[i]) for i in range(n)]
    children: dict[int, list[int]] = {i: [] for i in range(n)}
    indegree = [len(ps) for ps in spec.parents]
    for i, ps in enumerate(spec.parents):
        for p in ps:
            children[p].append(i)
    bad = {i for i in range(n) if spec.refused[i]}
    for i in range(n):  # parents come first, so one pass spreads rejection to descendants
        if any(p in bad for p in spec.parents[i]):
            bad.add(i)
    ready = [(key[i], i) for i in range(n) if indegree[i] == 0]
    order: list[str] = []
    while ready:
        _, i = heapq.heappop(ready)
        if i not in bad:
            order.append(oids[i])
        for c in children[i]:
            indegree[c] -= 1
            if indegree[c] == 0:
                heapq.heappush(ready, (key[c], c))
    return order, {oids[i] for i in bad}


def heads(spec: Spec) -> list[int]:
    has_child = {p for ps in spec.parents for p in ps}
    return [i for i in range(len(spec.parents)) if i not in has_child]


def copy_objects(src: pygit2.Repository, dst: pygit2.Repository, rng: random.Random) -> None:
    oids = list(src.odb)
    rng.shuffle(oids)
    for oid in oids:
        kind, data = src.odb.read(oid)
        dst.odb.write(kind, data)


def result(store: cob.Store, cobtype: Any, object_id: str, full: bool) -> tuple[Any, ...]:
    ev = store.load(cobtype, object_id, full=full)
    assert ev is not None
    return (
        [c.oid for c in ev.changes] if full else None,
        msgspec.to_builtins(ev.state),
        set(ev.rejected),
        set(ev.accepted),
        set(ev.heads),
    )


def check(spec: Spec, cobtype: Any, seed: int) -> None:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(dir=FAST_TMP) as tmp:
        base = Path(tmp)
        src = pygit2.init_repository(str(base / "src"), bare=True)
        oids = write_dag(src, spec, cobtype)
        object_id = oids[0]
        order, refused = model(spec, oids, cobtype)
        tips = [oids[i] for i in heads(spec)]
        for n, tip in enumerate(tips):  # the writer's repository: one namespace per head
            point(src, NAMESPACES[n], cobtype.typename, object_id, tip)

        expected = result(cob.Store(src, cache=False), cobtype, object_id, full=True)
        assert expected[0] == order, "fold order differs from the documented rule"
        assert expected[2] == refused
        if cobtype is LOG:
            assert expected[1]["lines"] == [f"c{oids.index(o)}" for o in order]
        else:
            assert expected[1]["tags"] == sorted(f"c{oids.index(o)}" for o in order[1:])

        replicas = []
        # (a) stock git fetch from a path, every namespace
        fetched = base / "fetched"
        git(base, "init", "-q", "--bare", str(fetched))
        git(fetched, "fetch", "-q", str(base / "src"), "refs/namespaces/*:refs/namespaces/*")
        replicas.append(pygit2.Repository(str(fetched)))
        # (b), (c): shuffled object copies with refs in other shapes, delivered in batches
        for r in range(2):
            dst = pygit2.init_repository(str(base / f"copy{r}"), bare=True)
            copy_objects(src, dst, rng)
            cached = cob.Store(dst, cache=True)
            shuffled = tips[:]
            rng.shuffle(shuffled)
            namespaces = rng.sample(NAMESPACES, len(NAMESPACES))
            extra = rng.sample(oids, rng.randint(0, len(oids)))  # refs on interior changes too
            # tips in two batches with a load between (incremental), or all at once
            batches = [shuffled[i::2] for i in range(2)] if r == 0 else [shuffled]
            ns = iter(namespaces[:-1])  # each ref its own namespace: at most 24 of 31
            for batch in batches:
                for tip in batch:
                    point(dst, next(ns), cobtype.typename, object_id, tip)
                for oid in extra[: len(extra) // 2 + 1]:
                    point(dst, next(ns), cobtype.typename, object_id, oid)
                extra = extra[len(extra) // 2 + 1 :]
                cached.load(cobtype, object_id)  # intermediate loads fill the cache
            if rng.random() < 0.5:
                # moving an extra ref forward to a tip must not change anything either
                point(dst, namespaces[-1], cobtype.typename, object_id, rng.choice(tips))
            replicas.append(dst)
            assert result(cached, cobtype, object_id, full=False)[1:] == expected[1:]

        for dst in replicas:
            assert result(cob.Store(dst, cache=False), cobtype, object_id, True) == expected
            assert result(cob.Store(dst, cache=True), cobtype, object_id, False)[1:] == expected[1:]


SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.slow
@SETTINGS
@given(spec=dags(), seed=st.integers(0, 2**32))
def test_log_folds_identically_everywhere(spec: Spec, seed: int) -> None:
    check(spec, LOG, seed)


@pytest.mark.slow
@SETTINGS
@given(spec=dags(), seed=st.integers(0, 2**32))
def test_commutative_type_folds_identically_everywhere(spec: Spec, seed: int) -> None:
    check(spec, TAGS, seed)


def test_content_addressed_object_merges_from_independent_writers() -> None:
    """Two repositories that each create the same object and append, then exchange refs,
    load the same thing whichever way the exchange goes."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        repos = [pygit2.init_repository(str(base / f"r{i}"), bare=True) for i in range(2)]
        stores = [cob.Store(r, s) for r, s in zip(repos, SIGNERS, strict=False)]
        ids = {s.create(TAGS, [Create("same")]).object_id for s in stores}
        assert len(ids) == 1
        (object_id,) = ids
        for i, s in enumerate(stores):
            s.update(TAGS, object_id, [Tag(f"from {i}")])
        for i in range(2):
            other = SIGNERS[1 - i].nid
            git(
                base / f"r{i}",
                "fetch",
                "-q",
                str(base / f"r{1 - i}"),
                f"refs/namespaces/{other}/*:refs/namespaces/{other}/*",
            )
        got = [result(cob.Store(r, cache=False), TAGS, object_id, True) for r in repos]
        assert got[0] == got[1]
        assert got[0][1]["tags"] == ["from 0", "from 1"]
