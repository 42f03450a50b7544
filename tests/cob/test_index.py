"""The embedded index (cob/cache.py) is exact: whatever happened to the refs — our writes, other
nodes' writes, plain `git update-ref`/`fetch`/`pack-refs` behind its back, a deleted or corrupt
index file — its answers equal a fold from scratch with the index switched off."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cob
import jobs
from cob.cache import RACY_NS, default_path
from jobs.cli import main as cli_main
from tests.conftest import git, init_repo
from tests.jobhelpers import copy_objects

REASONS = [r.value for r in jobs.Reason]


# -- helpers ---------------------------------------------------------------------------------
def state_of(job: jobs.Job) -> dict[str, Any]:
    """Everything a job answer carries, with list order that means nothing normalised away."""
    raw = msgspec.to_builtins(job._state)  # [commit, name, {nid: {run_id: [log, ...]}}]
    for node_runs in raw[2].values():
        for run in node_runs.values():
            run[3] = sorted(run[3])  # start_changes: a set kept as a list
    return {
        "id": job.id,
        "state": raw,
        "tips": dict(job.tips),
        "rejected": sorted((r.change, r.reason) for r in job.rejected),
    }


def answers(j: jobs.Jobs, commits: list[str]) -> dict[str, Any]:
    """find_by_commit for every commit, get for every job, and all()."""
    every = {job.id: state_of(job) for job in j.all()}
    by_commit = {c: [state_of(job) for job in j.find_by_commit(c)] for c in commits}
    got = {}
    for job_id in every:
        job = j.get(job_id)
        assert job is not None
        got[job_id] = state_of(job)
    return {"all": every, "by_commit": by_commit, "get": got}


def fresh(repo: pygit2.Repository, commits: list[str]) -> dict[str, Any]:
    return answers(jobs.Jobs.open(repo.path, cache=False), commits)


def settle() -> None:
    """Wait until the ref stamps are old enough to be trusted (not "racy")."""
    time.sleep(RACY_NS / 1e9 + 0.02)


def index_path(repo: pygit2.Repository) -> Path:
    return Path(default_path(repo.path.rstrip("/")))


def index_tip(repo: pygit2.Repository, nid: str) -> str:
    tip = cob.sigrefs.read_tip(repo, nid)
    assert tip is not None
    return tip


def entry(repo: pygit2.Repository, index: str | None, job_id: str) -> str | None:
    """The tip an index commit names for one job."""
    return cob.sigrefs.lookup(repo, cob.sigrefs.tree_of(repo, index), jobs.TYPENAME, job_id)


def hand_index(repo: pygit2.Repository, signer: cob.Signer, updates: dict[str, str | None]) -> str:
    """An index commit of ``signer`` on its current one with ``updates`` ({job id: tip or
    None}), written without moving the ref (for a plain `git update-ref` to move it)."""
    keyed = {(jobs.TYPENAME, job_id): tip for job_id, tip in updates.items()}
    return cob.sigrefs.write_commit(repo, signer, signer.nid, index_tip(repo, signer.nid), keyed)


@pytest.fixture
def commits(repo: pygit2.Repository) -> list[str]:
    return [str(c.id) for c in repo.walk(repo.head.target)]


# -- random histories ------------------------------------------------------------------------
step = st.one_of(
    st.tuples(st.just("create"), st.integers(0, 2), st.integers(0, 2), st.sampled_from(["ci", "lint"])),
    st.tuples(st.just("run"), st.integers(0, 2), st.integers(0, 9)),
    st.tuples(st.just("finish"), st.integers(0, 2), st.integers(0, 20), st.sampled_from(REASONS)),
    st.tuples(st.just("rewind"), st.integers(0, 2), st.integers(0, 9)),  # git update-ref to an older index
    st.tuples(st.just("delete"), st.integers(0, 2), st.integers(0, 9)),  # git update-ref -d of an index
    st.tuples(st.just("back"), st.integers(0, 2), st.integers(0, 9)),  # an entry set to an older change
    st.tuples(st.just("drop"), st.integers(0, 2), st.integers(0, 9)),  # an entry removed
    st.tuples(
        st.just("pack"),
    ),  # git pack-refs --all
    st.tuples(
        st.just("drop-index"),
    ),  # rm the index file while open
    st.tuples(
        st.just("check"),
    ),
)


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=3, max_size=25), settle_first=st.booleans())
def test_index_answers_equal_a_fresh_fold(steps: list[tuple[Any, ...]], settle_first: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = init_repo(Path(tmp) / "r", commits=3)
        commits = [str(c.id) for c in repo.walk(repo.head.target)]
        signers = [cob.Signer.generate() for _ in range(3)]
        # One long-lived, indexed store per node, as a CI node process would hold.
        nodes = [jobs.Jobs.open(repo.path, signer=s) for s in signers]
        reader = jobs.Jobs.open(repo.path)  # an indexed reader that only ever queries
        job_ids: list[str] = []
        started: list[list[tuple[str, str]]] = [[], [], []]
        # (node, job id, change, index commit) of every change written
        history: list[tuple[int, str, str, str]] = []
        for s in steps:
            kind = s[0]
            if kind == "create":
                job = nodes[s[1]].create(commits[s[2]], s[3])
                if job.id not in job_ids:
                    job_ids.append(job.id)
            elif kind == "run" and job_ids:
                mut = nodes[s[1]].get_mut(job_ids[s[2] % len(job_ids)])
                if mut is None:
                    continue
                run_id = mut.run(f"https://n{s[1]}.example/{len(started[s[1]])}")
                started[s[1]].append((mut.id, str(run_id)))
                nid = signers[s[1]].nid
                history.append((s[1], mut.id, mut.tips[nid], index_tip(repo, nid)))
            elif kind == "finish" and started[s[1]]:
                job_id, run_id = started[s[1]][s[2] % len(started[s[1]])]
                mut = nodes[s[1]].get_mut(job_id)
                if mut is None:
                    continue
                try:
                    mut.finish(run_id, s[3])
                except jobs.errors.JobsError:
                    continue  # already finished, or the run was rewound away
                nid = signers[s[1]].nid
                history.append((s[1], job_id, mut.tips[nid], index_tip(repo, nid)))
            elif kind == "rewind" and history:
                node, _, _, index = history[s[2] % len(history)]
                git(repo.path, "update-ref", cob.index_ref(signers[node].nid), index)
            elif kind == "delete" and history:
                node, _, _, _ = history[s[2] % len(history)]
                git(repo.path, "update-ref", "-d", cob.index_ref(signers[node].nid))
            elif kind in ("back", "drop") and history:
                node, job_id, change, _ = history[s[2] % len(history)]
                signer = signers[node]
                current = entry(repo, cob.sigrefs.read_tip(repo, signer.nid), job_id)
                want = change if kind == "back" else None
                cob.set_tip(repo, signer, signer.nid, jobs.TYPENAME, job_id, want, current)
            elif kind == "pack":
                git(repo.path, "pack-refs", "--all")
            elif kind == "drop-index":
                for suffix in ("", "-wal", "-shm"):
                    p = Path(str(index_path(repo)) + suffix)
                    if p.exists():
                        p.unlink()
            elif kind == "check":
                if settle_first:
                    settle()
                assert answers(reader, commits) == fresh(repo, commits)
        if settle_first:
            settle()
        expected = fresh(repo, commits)
        assert answers(reader, commits) == expected
        for node in nodes:
            assert answers(node, commits) == expected


# -- incremental -----------------------------------------------------------------------------
def test_only_moved_objects_are_refolded_and_only_new_changes_read(
    repo: pygit2.Repository, commits: list[str], signers: Any
) -> None:
    alice, bob = next(signers), next(signers)
    a = jobs.Jobs.open(repo.path, signer=alice)
    ids = [a.create(c, n).id for c in commits for n in ("build", "test")]
    for job_id in ids:
        mut = a.get_mut(job_id)
        assert mut is not None
        mut.finish(mut.run("https://a.example/1"), "succeeded")
    reader = jobs.Jobs.open(repo.path)
    assert len(list(reader.all())) == len(ids)
    warm = reader.store.evaluations
    assert len(list(reader.all())) == len(ids)
    assert reader.store.evaluations == warm  # nothing moved: nothing folded

    b = jobs.Jobs.open(repo.path, signer=bob)
    mut = b.get_mut(ids[3])
    assert mut is not None
    mut.run("https://b.example/1")
    before = reader.store.evaluations
    assert answers(reader, commits) == fresh(repo, commits)
    assert reader.store.evaluations == before + 1  # only the job whose ref moved
    # ...and it folded only bob's one new change onto the stored state.
    mut.run("https://b.example/2")
    ev = reader.store.load(jobs.JOB_TYPE, ids[3])
    assert ev is not None and len(ev.changes) == 1


@pytest.mark.slow
def test_find_by_commit_loads_only_that_commits_jobs(repo: pygit2.Repository, signer: cob.Signer) -> None:
    j = jobs.Jobs.open(repo.path, signer=signer)
    target = str(repo.head.target)
    mine = [j.create(target, f"job{i}").id for i in range(3)]
    # 1,000 jobs on other commits (jobs may name commits this repository does not have yet).
    store = j.store
    codec = store.codec(jobs.JOB_TYPE)
    others: dict[cob.sigrefs.Key, str | None] = {}
    for i in range(1000):
        root = cob.change.write_root(repo, codec, [jobs.Request(f"{i + 1:040x}", "ci")])
        others[(jobs.TYPENAME, root)] = root
    assert cob.recovery.move(repo, signer, signer.nid, others, {}) is not None
    reader = jobs.Jobs.open(repo.path)
    found = reader.find_by_commit(target)
    assert sorted(x.id for x in found) == sorted(mine)
    assert reader.store.loads == 3
    assert reader.store.evaluations <= 3
    again = jobs.Jobs.open(repo.path)
    assert [x.id for x in again.find_by_commit(target)] == [x.id for x in found]
    assert again.store.loads == 3 and again.store.evaluations == 0  # served from the index


# -- behind its back -------------------------------------------------------------------------
def _populated(repo: pygit2.Repository, signer: cob.Signer, commits: list[str]) -> list[str]:
    j = jobs.Jobs.open(repo.path, signer=signer)
    ids = []
    for c in commits:
        mut = j.create(c, "ci")
        mut.finish(mut.run("https://x.example/1"), "failed")
        ids.append(mut.id)
    return ids


@pytest.mark.parametrize("wait", [False, True], ids=["racy", "settled"])
def test_notices_git_update_ref(
    repo: pygit2.Repository, commits: list[str], signers: Any, wait: bool
) -> None:
    alice = next(signers)
    ids = _populated(repo, alice, commits)
    reader = jobs.Jobs.open(repo.path)
    assert answers(reader, commits) == fresh(repo, commits)
    if wait:
        settle()
        reader.find_by_commit(commits[0])  # stores a stamp old enough to trust
        refreshes = reader.store.cache.refreshes  # type: ignore[union-attr]
        reader.find_by_commit(commits[0])
        assert reader.store.cache.refreshes == refreshes  # type: ignore[union-attr]
    ref = cob.index_ref(alice.nid)
    populated = index_tip(repo, alice.nid)
    tip = entry(repo, populated, ids[0])
    assert tip is not None
    parent = str(repo[tip].parent_ids[0])
    # The index ref moved by plain git to index commits written by hand (none by the store).
    git(repo.path, "update-ref", ref, hand_index(repo, alice, {ids[0]: parent}))  # the finish is gone
    assert answers(reader, commits) == fresh(repo, commits)
    assert reader.get(ids[0]).runs_of(alice.nid).latest()[1].reason is None  # type: ignore[union-attr,index]
    git(repo.path, "update-ref", ref, hand_index(repo, alice, {ids[1]: None}))  # a job disappears
    assert answers(reader, commits) == fresh(repo, commits)
    assert reader.get(ids[1]) is None and ids[1] not in [x.id for x in reader.all()]
    git(repo.path, "update-ref", ref, hand_index(repo, alice, {ids[1]: ids[1]}))  # back, root only
    assert answers(reader, commits) == fresh(repo, commits)
    assert ids[1] in [x.id for x in reader.find_by_commit(commits[1])]
    assert reader.get(ids[1]).runs() == {}  # type: ignore[union-attr]
    git(repo.path, "update-ref", ref, populated)  # rewound to an older index: all finished again
    assert answers(reader, commits) == fresh(repo, commits)
    assert reader.get(ids[0]).runs_of(alice.nid).latest()[1].reason is jobs.Reason.FAILED  # type: ignore[union-attr,index]
    git(repo.path, "update-ref", "-d", ref)  # the whole index deleted: every job disappears
    assert answers(reader, commits) == fresh(repo, commits)
    assert list(reader.all()) == []


@pytest.mark.parametrize("wait", [False, True], ids=["racy", "settled"])
def test_notices_git_fetch_and_pack_refs(make_repo: Any, signers: Any, wait: bool) -> None:
    upstream = make_repo("upstream", commits=3)
    commits = [str(c.id) for c in upstream.walk(upstream.head.target)]
    clone_dir = Path(upstream.workdir).parent / "clone"
    git(clone_dir.parent, "clone", "-q", upstream.workdir, str(clone_dir))
    clone = pygit2.Repository(str(clone_dir))
    alice = next(signers)
    reader = jobs.Jobs.open(clone.path)
    assert answers(reader, commits) == {"all": {}, "by_commit": {c: [] for c in commits}, "get": {}}
    ids = _populated(upstream, alice, commits)
    if wait:
        settle()
    git(clone_dir, "fetch", "-q", upstream.workdir, "refs/namespaces/*:refs/namespaces/*")
    assert sorted(x.id for x in reader.all()) == sorted(ids)
    assert answers(reader, commits) == fresh(clone, commits)
    # More changes upstream; fetched again: the index folds them in.
    up = jobs.Jobs.open(upstream.path, signer=alice)
    mut = up.get_mut(ids[2])
    assert mut is not None
    mut.run("https://x.example/2")
    if wait:
        settle()
    git(clone_dir, "fetch", "-q", upstream.workdir, "refs/namespaces/*:refs/namespaces/*")
    assert answers(reader, commits) == fresh(clone, commits)
    if wait:
        settle()
    loose = clone_dir / ".git" / "refs" / "namespaces" / alice.nid / "refs" / "sigrefs"
    assert loose.is_file()
    git(clone_dir, "pack-refs", "--all")
    assert not loose.exists()  # the index ref now lives in packed-refs only
    assert answers(reader, commits) == fresh(clone, commits)
    git(clone_dir, "fetch", "-q", upstream.workdir, "refs/namespaces/*:refs/namespaces/*")
    assert answers(reader, commits) == fresh(clone, commits)


def test_a_cured_rejection_is_refolded(make_repo: Any, signers: Any) -> None:
    """A change rejected because its parent had not arrived is accepted once the parent does."""
    src, dst = make_repo("src"), make_repo("dst")
    alice = next(signers)
    commit = str(src.head.target)
    j = jobs.Jobs.open(src.path, signer=alice)
    mut = j.create(commit, "ci")
    run_id = mut.run("https://x.example/1")
    middle = mut.tips[alice.nid]
    mut.finish(run_id, "succeeded")
    tip = mut.tips[alice.nid]
    # dst gets the root and the tip, but not the middle change (a damaged or partial transfer).
    for oid in (mut.id, tip):
        c = src[oid]
        for entry in [c.tree, *c.tree]:
            if entry.id not in dst.odb:
                dst.odb.write(*src.odb.read(entry.id))
        dst.odb.write(*src.odb.read(c.id))
    index = cob.sigrefs.write_commit(dst, alice, alice.nid, None, {(jobs.TYPENAME, mut.id): tip})
    dst.create_reference_direct(cob.index_ref(alice.nid), pygit2.Oid(hex=index), False)
    reader = jobs.Jobs.open(dst.path)
    assert reader.get(mut.id) is None  # the root is only reachable through the missing change
    bob = cob.Store(dst.path, next(signers))
    bob.create(jobs.JOB_TYPE, [jobs.Request(commit, "ci")])  # now it is, through bob's ref
    job = reader.get(mut.id)
    assert job is not None and job.rejected and not job.runs()
    copy_objects(src, dst)  # the middle change arrives
    assert dst.get(middle) is not None
    again = reader.get(mut.id)
    assert again is not None and not again.rejected
    assert again.runs_of(alice.nid).latest()[1].reason is jobs.Reason.SUCCEEDED  # type: ignore[index]
    assert answers(reader, [commit]) == fresh(dst, [commit])


# -- the file itself ---------------------------------------------------------------------
def test_deleting_the_index_mid_use_loses_nothing(
    repo: pygit2.Repository, commits: list[str], signer: cob.Signer
) -> None:
    ids = _populated(repo, signer, commits)
    j = jobs.Jobs.open(repo.path, signer=signer)
    expected = answers(j, commits)
    path = index_path(repo)
    assert path.exists()
    path.unlink()  # only the database; its -wal and -shm are left behind, as `rm` would
    assert answers(j, commits) == expected
    assert path.exists()
    for p in path.parent.glob(path.name + "*"):
        p.unlink()
    mut = j.get_mut(ids[0])
    assert mut is not None
    mut.run("https://x.example/again")
    assert answers(j, commits) == fresh(repo, commits)
    assert jobs.Jobs.open(repo.path).store.cache.status(  # type: ignore[union-attr]
        jobs.TYPENAME, j.store.refs
    )["objects"] == len(ids)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "zeroed-pages"])
def test_a_corrupt_index_is_rebuilt(
    repo: pygit2.Repository, commits: list[str], signer: cob.Signer, damage: str
) -> None:
    _populated(repo, signer, commits)
    j = jobs.Jobs.open(repo.path)
    expected = answers(j, commits)
    path = index_path(repo)
    with contextlib.closing(sqlite3.connect(path)) as db:  # move everything out of the WAL
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    j.store.cache.close()  # type: ignore[union-attr]
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 3])
    else:
        page = 4096
        path.write_bytes(data[:page] + b"\xff" * (len(data) - page))
    again = jobs.Jobs.open(repo.path)
    assert answers(again, commits) == expected
    assert again.store.cache.resets >= 1  # type: ignore[union-attr]


def test_rebuild_api_and_cli(
    repo: pygit2.Repository, commits: list[str], signer: cob.Signer, capsys: Any, monkeypatch: Any
) -> None:
    ids = _populated(repo, signer, commits)
    j = jobs.Jobs.open(repo.path)
    assert j.rebuild_index() == len(ids)
    folded = j.store.evaluations
    assert answers(j, commits) == fresh(repo, commits)
    assert j.store.evaluations == folded  # the rebuild left every state warm
    monkeypatch.chdir(repo.workdir)
    settle()  # so the rebuilt list's ref stamp is old enough to be stored as current
    assert cli_main(["cache", "rebuild"]) == 0
    assert cli_main(["cache", "status", "--json"]) == 0
    out = capsys.readouterr().out
    status = msgspec.json.decode(out)
    assert status["objects"] == len(ids) and status["evaluated"] == len(ids) and status["current"]
    assert answers(jobs.Jobs.open(repo.path), commits) == fresh(repo, commits)


def test_cli_cache_outside_a_repository(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli_main(["cache", "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_an_index_that_cannot_be_written_falls_back_to_memory(
    repo: pygit2.Repository, commits: list[str], signer: cob.Signer
) -> None:
    """A read-only git directory (here: the index path is taken by a directory, which also
    stops root) still answers every query, exactly, from an index kept in memory."""
    _populated(repo, signer, commits)
    for p in index_path(repo).parent.glob(index_path(repo).name + "*"):
        p.unlink()
    index_path(repo).mkdir()
    j = jobs.Jobs.open(repo.path)
    assert answers(j, commits) == fresh(repo, commits)
    assert j.store.cache.in_memory  # type: ignore[union-attr]
    assert index_path(repo).is_dir()


def test_cli_cache_without_an_action(repo: pygit2.Repository, monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.chdir(repo.workdir)
    assert cli_main(["cache"]) == 2
    err = capsys.readouterr().err
    assert "status or rebuild" in err and len(err.strip().splitlines()) == 1
    assert cli_main(["cache", "status"]) == 0
    assert "jobs:" in capsys.readouterr().out


# The fast lane's twin (`-m "not slow"`): the same property on three short examples.
test_index_answers_equal_a_fresh_fold_briefly = settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)(
    given(steps=st.lists(step, min_size=3, max_size=10), settle_first=st.booleans())(
        test_index_answers_equal_a_fresh_fold.hypothesis.inner_test
    )
)
