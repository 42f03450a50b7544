"""The Job type: radicle-job's API, authorization, one id per (commit, name), caller errors."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pygit2
import pytest

import cob
import jobs
from cob.change import write_change
from cob.sigrefs import lookup, read_tip, tree_of
from jobs.ops import FinishRun, StartRun
from tests.conftest import commits_of, git, head
from tests.jobhelpers import exchange


def _odb_count(repo: pygit2.Repository) -> int:
    return sum(1 for _ in repo.odb)


def _refs(repo: pygit2.Repository) -> dict[str, str]:
    return {r: str(repo.references[r].target) for r in repo.listall_references()}


def test_radicle_job_scenario(repo: pygit2.Repository, signers: object) -> None:
    """alice and bob each run the same job; one succeeds, one fails; every query agrees."""
    alice, bob = next(signers), next(signers)  # type: ignore[call-overload]
    a = jobs.Jobs.open(repo.path, signer=alice)
    b = jobs.Jobs.open(repo.path, signer=bob)
    job = a.create(head(repo), name="ci")
    assert job.runs() == {} and job.latest() is None and job.partition() == {}

    ra = job.run("https://ci.alice.example/logs/1")
    bob_job = b.get_mut(job.id)
    assert bob_job is not None
    rb = bob_job.run("https://ci.bob.example/logs/1")
    job.reload()
    # Both started, nothing finished.
    assert set(job.started()) == {alice.nid, bob.nid}
    assert job.finished() == {} and job.succeeded() == {} and job.failed() == {}
    assert job.runs_of(alice.nid)[ra].status is jobs.Status.STARTED
    assert job.runs_of(alice.nid)[ra].finished_at is None

    job.finish(ra, jobs.Reason.SUCCEEDED)
    bob_job.finish(rb, jobs.Reason.FAILED)
    final = jobs.Jobs.open(repo.path).get(job.id)
    assert final is not None
    assert final.id == job.id and final.commit == head(repo) and final.name == "ci"
    runs = final.runs()
    assert list(runs) == sorted([alice.nid, bob.nid])
    assert list(runs[alice.nid]) == [ra] and list(runs[bob.nid]) == [rb]

    run_a = runs[alice.nid][ra]
    assert run_a.status is jobs.Status.FINISHED and run_a.reason is jobs.Reason.SUCCEEDED
    assert run_a.log == "https://ci.alice.example/logs/1"
    assert run_a.started_at.tzinfo is not None and run_a.finished_at is not None
    run_b = runs[bob.nid][rb]
    assert run_b.reason is jobs.Reason.FAILED and run_b.log == "https://ci.bob.example/logs/1"

    assert final.latest_of(alice.nid) == (ra, run_a)
    assert final.latest_of(bob.nid) == (rb, run_b)
    assert final.latest_of(cob.Signer.generate().nid) is None
    latest = final.latest()
    assert latest is not None and latest[1] == max(ra, rb)  # uuid7: the later start
    assert final.started() == {}
    assert set(final.finished()) == {alice.nid, bob.nid}
    assert set(final.succeeded()) == {alice.nid} and list(final.succeeded()[alice.nid]) == [ra]
    assert set(final.failed()) == {bob.nid} and list(final.failed()[bob.nid]) == [rb]
    part = final.partition()
    started, succeeded, failed = part[alice.nid]
    assert (len(started), list(succeeded), len(failed)) == (0, [ra], 0)
    started, succeeded, failed = part[bob.nid]
    assert (len(started), len(succeeded), list(failed)) == (0, 0, [rb])
    assert final.rejected == []
    # find_by_commit and all() see the same job.
    assert [j.id for j in a.find_by_commit(head(repo))] == [job.id]
    assert [j.id for j in a.all()] == [job.id]


def test_runs_are_in_uuid7_order_and_latest_is_last(repo: pygit2.Repository, signer: cob.Signer) -> None:
    store = jobs.Jobs.open(repo.path, signer=signer)
    job = store.create(head(repo))
    ids = [job.run(f"https://ci.example/logs/{i}") for i in range(5)]
    assert all(i.version == 7 for i in ids)
    runs = jobs.Jobs.open(repo.path).get(job.id).runs_of(signer.nid)  # type: ignore[union-attr]
    assert list(runs) == sorted(ids) == ids
    assert runs.latest() == (ids[-1], runs[ids[-1]])
    assert len(runs.started()) == 5 and runs.partition()[0] == runs.started()


def _forge(
    repo: pygit2.Repository, author: cob.Signer, job_id: str, ops: list[object], parents: list[str]
) -> str:
    """Write a correctly signed change by ``author`` and point its index entry at it (no type
    checks): what a hostile node publishes in its own, validly signed index."""
    store = cob.Store(repo)
    codec = store.codec(jobs.JOB_TYPE)
    oid = write_change(repo, codec, author, author.nid, ops, parents)
    current = lookup(repo, tree_of(repo, read_tip(repo, author.nid)), jobs.TYPENAME, job_id)
    assert cob.set_tip(repo, author, author.nid, jobs.TYPENAME, job_id, oid, current)
    return oid


def test_bob_cannot_finish_alices_run(repo: pygit2.Repository, signers: object) -> None:
    alice, bob = next(signers), next(signers)  # type: ignore[call-overload]
    a = jobs.Jobs.open(repo.path, signer=alice)
    job = a.create(head(repo))
    ra = job.run("https://ci.alice.example/1")
    before = jobs.Jobs.open(repo.path).get(job.id)

    # Through the API it is a typed error, and nothing is written.
    b = jobs.Jobs.open(repo.path, signer=bob)
    bob_job = b.get_mut(job.id)
    assert bob_job is not None
    refs, objects = _refs(repo), _odb_count(repo)
    with pytest.raises(jobs.UnknownRunError, match="belongs to"):
        bob_job.finish(ra, "failed")
    assert _refs(repo) == refs and _odb_count(repo) == objects

    # Written by hand (a hostile bob), it is rejected on load with its descendants.
    heads = sorted(job.tips.values())
    bad = _forge(repo, bob, job.id, [FinishRun(str(ra), "failed")], heads)
    rb = str(uuid.UUID(int=(uuid.UUID(str(ra)).int + 1)))  # a later uuid7
    child = _forge(repo, bob, job.id, [StartRun(rb, "https://ci.bob.example/2")], [bad])
    ghost = str(uuid.UUID(int=(uuid.UUID(str(ra)).int + 2)))
    carol = cob.Signer.generate()
    unknown = _forge(repo, carol, job.id, [FinishRun(ghost, "succeeded")], heads)

    after = jobs.Jobs.open(repo.path, cache=False).get(job.id)
    assert after is not None
    reasons = {r.change: r.reason for r in after.rejected}
    assert set(reasons) == {bad, child, unknown}
    assert "belongs to" in reasons[bad] and alice.nid in reasons[bad]
    assert "descends from rejected change" in reasons[child]
    assert "unknown run" in reasons[unknown]
    # alice's state is untouched; bob's run built on the forgery does not exist.
    assert after.runs() == before.runs()  # type: ignore[union-attr]
    assert after.runs_of(alice.nid)[ra].status is jobs.Status.STARTED
    assert after.runs_of(bob.nid) == {}
    # The cached path reports and folds the same.
    cached = jobs.Jobs.open(repo.path).get(job.id)
    assert cached is not None and cached.runs() == after.runs()
    assert {r.change for r in cached.rejected} == {bad, child, unknown}
    # alice can still finish, building only on accepted history.
    job.reload()
    job.finish(ra, jobs.Reason.SUCCEEDED)
    done = jobs.Jobs.open(repo.path, cache=False).get(job.id)
    assert done is not None and done.runs_of(alice.nid)[ra].reason is jobs.Reason.SUCCEEDED
    latest_change = repo[done.tips[alice.nid]]
    assert {str(p) for p in latest_change.parent_ids}.isdisjoint({bad, child, unknown})


def test_a_finish_with_a_bad_log_blob_or_exit_status_is_rejected(
    repo: pygit2.Repository, signer: cob.Signer
) -> None:
    store = jobs.Jobs.open(repo.path, signer=signer)
    job = store.create(head(repo))
    rid = str(job.run("https://ci.example/1"))
    heads = sorted(job.tips.values())
    peer = cob.Signer.generate()  # field checks come before ownership: any signer gets them
    bad_blob = _forge(repo, peer, job.id, [FinishRun(rid, "failed", "x" * 40, None)], heads)
    other = cob.Signer.generate()
    bad_exit = _forge(repo, other, job.id, [FinishRun(rid, "failed", None, 1000)], heads)
    after = jobs.Jobs.open(repo.path, cache=False).get(job.id)
    assert after is not None
    reasons = {r.change: r.reason for r in after.rejected}
    assert "log blob id" in reasons[bad_blob] and "exit status must be in 0..255" in reasons[bad_exit]
    good = "0" * 40
    job.reload()
    job.finish(rid, "failed", log_blob=good, exit_status=1)
    run = jobs.Jobs.open(repo.path, cache=False).get(job.id).runs_of(signer.nid)[uuid.UUID(rid)]  # type: ignore[union-attr]
    assert (run.log_blob, run.exit_status) == (good, 1)


def test_duplicate_finishes_least_time_and_oid_wins(repo: pygit2.Repository, signer: cob.Signer) -> None:
    """Two finishes of one run on concurrent branches: the earliest commit time wins, in any order."""
    store = jobs.Jobs.open(repo.path, signer=signer)
    job = store.create(head(repo))
    rid = str(job.run("https://ci.example/1"))
    start = job.tips[signer.nid]
    codec = cob.Store(repo).codec(jobs.JOB_TYPE)
    now = int(time.time())
    nid = signer.nid
    late = write_change(repo, codec, signer, nid, [FinishRun(rid, "failed")], [start], timestamp=now + 10)
    early = write_change(repo, codec, signer, nid, [FinishRun(rid, "succeeded")], [start], timestamp=now + 5)
    # A merge change on top of both, so one ref sees the whole DAG.
    merge = write_change(
        repo,
        codec,
        signer,
        signer.nid,
        [StartRun(str(uuid.UUID(int=uuid.UUID(rid).int + 1)), "https://x.example/2")],
        sorted([late, early]),
        timestamp=now + 20,
    )
    assert cob.set_tip(repo, signer, signer.nid, jobs.TYPENAME, job.id, merge, start)
    got = jobs.Jobs.open(repo.path, cache=False).get(job.id)
    assert got is not None and got.rejected == []
    run = got.runs_of(signer.nid)[rid]
    assert run.reason is jobs.Reason.SUCCEEDED and run.finished_at.timestamp() == now + 5  # type: ignore[union-attr]


def test_same_commit_and_name_give_same_id_everywhere(
    make_repo: Callable[..., pygit2.Repository], tmp_path: Path, signers: object
) -> None:
    alice, bob = next(signers), next(signers)  # type: ignore[call-overload]
    origin = make_repo("origin", commits=2)
    git(tmp_path, "clone", "-q", origin.path, "a")
    git(tmp_path, "clone", "-q", origin.path, "b")
    ra, rb = pygit2.Repository(str(tmp_path / "a")), pygit2.Repository(str(tmp_path / "b"))
    commit = head(origin)
    ja = jobs.Jobs.open(ra, signer=alice).create(commit, "ci")
    jb = jobs.Jobs.open(rb, signer=bob).create(commit, "ci")
    assert ja.id == jb.id
    assert jobs.Jobs.open(ra, signer=alice).create(commit, "ci").id == ja.id  # idempotent
    assert jobs.Jobs.open(ra, signer=alice).create(commit, "lint").id != ja.id
    other = commits_of(origin)[1]
    assert jobs.Jobs.open(ra, signer=alice).create(other, "ci").id != ja.id
    run_a = ja.run("https://a.example/1")
    run_b = jb.run("https://b.example/1")
    exchange(ra, rb)
    exchange(rb, ra)
    for r in (ra, rb):
        store = jobs.Jobs.open(r)
        found = [j for j in store.find_by_commit(commit) if j.name == "ci"]
        assert len(found) == 1
        job = found[0]
        assert set(job.runs()) == {alice.nid, bob.nid}
        assert run_a in job.runs_of(alice.nid) and run_b in job.runs_of(bob.nid)


@pytest.mark.slow
def test_find_by_commit_reads_only_that_commits_jobs(repo: pygit2.Repository, signer: cob.Signer) -> None:
    store = jobs.Jobs.open(repo.path, signer=signer)
    target = head(repo)
    mine = [store.create(target, name) for name in ("build", "test")]
    # 1,000 jobs on other (possibly absent) commits, written through the low-level store.
    cstore = cob.Store(repo, signer)
    for i in range(1000):
        fake = f"{i:040x}"
        cstore.create(jobs.JOB_TYPE, [jobs.Request(fake, "ci")])
    fresh = jobs.Jobs.open(repo.path)
    fresh.find_by_commit(commits_of(repo)[1])  # warms the list of roots
    before = fresh.store.loads
    found = fresh.find_by_commit(target)
    assert sorted(j.id for j in found) == sorted(j.id for j in mine)
    assert fresh.store.loads - before == 2
    # Short sha works too; a second call folds nothing (served by the index).
    before, folds = fresh.store.loads, fresh.store.evaluations
    assert sorted(j.id for j in fresh.find_by_commit(target[:8])) == sorted(j.id for j in mine)
    assert fresh.store.loads - before == 2 and fresh.store.evaluations == folds
    # Without the index the answer is the same.
    assert sorted(j.id for j in jobs.Jobs.open(repo.path, cache=False).find_by_commit(target)) == sorted(
        j.id for j in mine
    )


def test_caller_errors_are_typed_and_write_nothing(repo: pygit2.Repository, signer: cob.Signer) -> None:
    store = jobs.Jobs.open(repo.path, signer=signer)
    job = store.create(head(repo))
    rid = job.run("https://ci.example/1")
    job.finish(rid, "succeeded")
    refs, objects = _refs(repo), _odb_count(repo)

    cases: list[tuple[type[Exception], str, Callable[[], object]]] = [
        (jobs.InvalidInputError, "absolute URL", lambda: job.run("logs/1")),
        (jobs.InvalidInputError, "absolute URL", lambda: job.run("https:///nohost")),
        (jobs.InvalidInputError, "spaces", lambda: job.run("https://ci.example/a b")),
        (jobs.InvalidInputError, "unknown reason", lambda: job.finish(rid, "great")),
        (jobs.AlreadyFinishedError, "already finished", lambda: job.finish(rid, "failed")),
        (jobs.UnknownRunError, "no run", lambda: job.finish(uuid.UUID(int=rid.int + 1), "failed")),
        (jobs.InvalidInputError, "not a run id", lambda: job.finish("nope", "failed")),
        (jobs.InvalidInputError, "log blob", lambda: job.finish(rid, "failed", log_blob="ABC")),
        (jobs.InvalidInputError, "exit status", lambda: job.finish(rid, "failed", exit_status=256)),
        (jobs.InvalidInputError, "exit status", lambda: job.finish(rid, "failed", exit_status=-1)),
        (jobs.MissingCommitError, "not in this repository", lambda: store.create("f" * 40)),
        (jobs.MissingCommitError, "not in this repository", lambda: store.create("no-such-branch")),
        (jobs.InvalidInputError, "job name", lambda: store.create(head(repo), name="")),
        (jobs.InvalidInputError, "job name", lambda: store.create(head(repo), name="bad  name")),
    ]
    readonly = jobs.Jobs.open(repo.path)
    ro_job = readonly.get_mut(job.id)
    assert ro_job is not None
    cases += [
        (jobs.ReadOnlyError, "read-only", lambda: readonly.create(head(repo))),
        (jobs.ReadOnlyError, "read-only", lambda: ro_job.run("https://ci.example/2")),
        (jobs.ReadOnlyError, "read-only", lambda: ro_job.finish(rid, "failed")),
    ]
    for error, text, call in cases:
        with pytest.raises(error, match=text) as info:
            call()
        assert isinstance(info.value, jobs.JobsError)
        assert "\n" not in str(info.value)
    assert _refs(repo) == refs and _odb_count(repo) == objects
    assert readonly.get("0" * 40) is None and readonly.get_mut("nonsense") is None


def test_job_for_missing_commit_from_a_peer_is_kept(
    make_repo: Callable[..., pygit2.Repository], signer: cob.Signer
) -> None:
    """A peer's job on a commit we do not have yet is kept, not rejected."""
    peer = make_repo("peer", commits=1)
    local = make_repo("local", commits=1)
    job = jobs.Jobs.open(peer, signer=signer).create(head(peer))
    job.run("https://ci.example/1")
    exchange(peer, local)
    assert head(peer) not in local
    got = jobs.Jobs.open(local).find_by_commit(head(peer))
    assert [j.id for j in got] == [job.id] and got[0].rejected == []
    assert len(got[0].runs_of(signer.nid)) == 1


def test_resolve_prefix_and_rev_name(repo: pygit2.Repository, signer: cob.Signer) -> None:
    store = jobs.Jobs.open(repo.path, signer=signer)
    build = store.create("HEAD", "build")
    store.create("HEAD~1", "build")
    assert store.resolve(build.id[:10]) == build.id
    assert store.resolve("HEAD:build") == build.id
    assert store.resolve(f"{head(repo)[:7]}:build") == build.id
    with pytest.raises(jobs.UnknownJobError):
        store.resolve("HEAD:nope")
    with pytest.raises(jobs.UnknownJobError):
        store.resolve("zzzz")
    ids = [j.id for j in store.all()]
    common = next((a[:1] for a in ids for b in ids if a != b and a[0] == b[0]), None)
    if common:
        with pytest.raises(jobs.AmbiguousJobError):
            store.resolve(common)


def test_cached_state_follows_a_ref_moved_backwards_behind_its_back(
    repo: pygit2.Repository, signer: cob.Signer
) -> None:
    """An index ref rewound by plain git drops what only it reached; the cache must not keep it."""
    store = jobs.Jobs.open(repo.path, signer=signer)
    job = store.create(head(repo))
    before_run = read_tip(repo, signer.nid)  # the index before the run
    assert before_run is not None
    created = lookup(repo, tree_of(repo, before_run), jobs.TYPENAME, job.id)
    assert created == job.tips[signer.nid]
    job.run("https://ci.example/1")
    assert job.tips[signer.nid] != created
    assert len(jobs.Jobs.open(repo.path).get(job.id).runs_of(signer.nid)) == 1  # type: ignore[union-attr]
    git(Path(repo.workdir), "update-ref", cob.index_ref(signer.nid), before_run)  # back before the run
    cached = jobs.Jobs.open(repo.path).get(job.id)
    full = jobs.Jobs.open(repo.path, cache=False).get(job.id)
    assert cached is not None and full is not None
    assert cached.runs() == full.runs() == {}
