"""git maintenance next to a writer, and `git jobs doctor` (issue 25, item 3).

``git gc --prune=now`` can delete objects written during its reachability walk: the index
commit a writer just moved its ref to, with its change. Such a tip never reads as "this node
has no jobs": readers fall back to the newest intact index, the next write or sync moves on
from there with every change still present, and ``doctor`` names what was lost.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pygit2
import pytest

import cob
from cob import doctor, indexlog, sigrefs
from jobs import Jobs
from tests.clirunner import GIT_JOBS, gj, ok
from tests.conftest import git, init_repo


def _drop(repo: pygit2.Repository, oid: str) -> None:
    """Delete a loose object, as ``git prune`` does to one it did not see."""
    os.unlink(os.path.join(repo.path, "objects", oid[:2], oid[2:]))


def _tip(repo: pygit2.Repository, nid: str) -> str:
    tip = sigrefs.read_tip(repo, nid)
    assert tip is not None
    return tip


@pytest.mark.slow
def test_a_pruned_index_tip_falls_back_and_the_next_write_moves_on(
    repo: pygit2.Repository, tmp_path: Path
) -> None:
    work = Path(repo.workdir)
    key = cob.Signer.generate().save(tmp_path / "node.key")
    nid = ok(work, "whoami", "--json", key=key).json["nid"]
    first = ok(work, "create", "HEAD", "--name", "build", key=key).line
    run = ok(work, "run", first, "--log", "https://ci.example/1", key=key).line
    ok(work, "finish", first, run, "succeeded", key=key)
    second = ok(work, "create", "HEAD", "--name", "test", key=key).line
    # A third write whose index commit *and* change the prune deleted: lost.
    third = ok(work, "create", "HEAD~1", "--name", "lint", key=key).line
    lost_tip = _tip(repo, nid)
    lost_change = sigrefs.lookup(repo, sigrefs.tree_of(repo, lost_tip), "dev.gitjobs.job", third)
    assert lost_change is not None
    _drop(repo, lost_tip)
    _drop(repo, lost_change)
    os.unlink(os.path.join(repo.path, "git-jobs-index.sqlite3"))  # no cache to hide it

    # Reads: the two jobs before it are still there (not "no jobs").
    listed = {j["id"] for j in ok(work, "list", "--json", key=key).json}
    assert {first, second} <= listed and third not in listed
    status = gj(work, "status", "HEAD", "--json", key=key).json
    assert [j["name"] for j in status["jobs"] if j["latest"]] == ["build"]
    found = gj(work, "doctor", key=key)
    assert found.code == 1 and found.out.startswith("broken-index: this node's index"), found
    assert lost_tip[:12] in found.out

    # The next write moves on from the intact index, and says so once on stderr.
    fourth = ok(work, "create", "HEAD~2", "--name", "docs", key=key)
    assert "fell back to" in fourth.err and "1 write(s) lost" in fourth.err
    listed = {j["id"] for j in ok(work, "list", "--json", key=key).json}
    assert {first, second, fourth.line} <= listed
    shown = ok(work, "show", first, "--json", key=key).json
    assert [r["reason"] for r in shown["runs"]] == ["succeeded"]

    report = gj(work, "doctor", "--json", key=key)
    assert report.code == 1
    lost = [f for f in report.json["findings"] if f["kind"] == "lost"]
    assert len(lost) == 1 and lost[0]["objects"] == [third] and lost[0]["error"]
    # Repair acknowledges the loss; then nothing is wrong (an unpublished note at most).
    fixed = gj(work, "doctor", "--repair", "--json", key=key)
    assert fixed.code == 0 and fixed.json["ok"], fixed
    assert {f["kind"] for f in fixed.json["findings"]} <= {"unpublished"}
    # The lost job can be made again (same id: content-addressed).
    assert ok(work, "create", "HEAD~1", "--name", "lint", key=key).line == third


def test_changes_still_present_survive_a_lost_index_commit(
    repo: pygit2.Repository, signer: cob.Signer
) -> None:
    jobs = Jobs(cob.Store(repo, signer))
    job = jobs.create(str(repo.head.target), "build")
    run_id = job.run("https://ci.example/1")
    tip = _tip(repo, signer.nid)
    _drop(repo, tip)  # the index commit went, the change it named did not
    fresh = Jobs(cob.Store(repo, signer, cache=False))
    got = fresh.get(job.id)
    assert got is not None  # the intact index before it still names the job
    rec = fresh.store.repair_index()
    assert rec is not None and rec.base is not None and rec.lost == [] and len(rec.salvage) == 1
    again = Jobs(cob.Store(repo, signer, cache=False)).get(job.id)
    assert again is not None and list(again.runs_of(signer.nid)) == [run_id]
    assert Jobs(cob.Store(repo, signer, cache=False)).store.repair_index() is None  # readable now


def test_a_peer_index_whose_tip_is_missing_reads_as_its_last_intact_one(
    repo: pygit2.Repository, signer: cob.Signer
) -> None:
    """Another node's tip, taken by a fetch and then pruned here: its jobs stay visible."""
    other = cob.Signer.generate()
    theirs = Jobs(cob.Store(repo, other))
    job = theirs.create(str(repo.head.target), "build")
    job.run("https://ci.example/peer")
    _drop(repo, _tip(repo, other.nid))
    mine = Jobs(cob.Store(repo, signer, cache=False))
    assert [j.id for j in mine.all()] == [job.id]
    findings = doctor.check(repo, signer, objects=False)
    assert [f.kind for f in findings] == [doctor.Kind.BROKEN_INDEX] and not findings[0].repairable


@pytest.mark.slow
def test_doctor_reports_stale_locks_and_a_cache_that_disagrees(
    repo: pygit2.Repository, tmp_path: Path
) -> None:
    work = Path(repo.workdir)
    key = cob.Signer.generate().save(tmp_path / "node.key")
    nid = ok(work, "whoami", "--json", key=key).json["nid"]
    job = ok(work, "create", "HEAD", "--name", "build", key=key).line
    assert ok(work, "doctor", key=key).out.strip() == "ok: nothing to report"
    lock = Path(repo.path) / "refs" / "namespaces" / nid / "refs" / "sigrefs.lock"
    lock.write_text("")
    old = time.time() - 60
    os.utime(lock, (old, old))
    # A cache stamped current whose tips table says otherwise (a bug, or a hand edit).
    import sqlite3

    db = sqlite3.connect(Path(repo.path) / "git-jobs-index.sqlite3")
    db.execute("UPDATE tips SET tip=? WHERE id=?", ("0" * 40, job))
    db.commit()
    db.close()
    found = gj(work, "doctor", "--quick", key=key)
    assert found.code == 1, found
    kinds = [line.split(":", 1)[0] for line in found.out.splitlines()]
    assert sorted(kinds) == ["cache", "stale-lock"], found.out
    fixed = gj(work, "doctor", "--repair", "--quick", key=key)
    assert fixed.code == 0 and "removed stale lock" in fixed.err, fixed
    assert not lock.exists()
    assert [j["id"] for j in ok(work, "list", "--json", key=key).json] == [job]


def test_the_index_log_stays_bounded(tmp_path: Path) -> None:
    gitdir = str(tmp_path)
    nid = "z6Mk" + "a" * 44
    for i in range(3000):
        indexlog.record_move(
            gitdir, nid, f"{i:040x}", f"{i + 1:040x}", {("dev.gitjobs.job", f"{i:040x}"): f"{i:040x}"}
        )
    size = os.path.getsize(indexlog.log_path(gitdir))
    assert size <= indexlog.MAX_BYTES
    records = indexlog.read(gitdir, nid)
    assert records[-1].new == f"{3000:040x}" and len(records[-1].entries) == 1


# -- git gc --prune=now in a loop next to a writer and a sync loop ------------------------------
@pytest.mark.slow
def test_gc_prune_now_in_a_loop_next_to_a_writer_and_a_sync_loop(
    repo: pygit2.Repository, tmp_path: Path
) -> None:
    seconds = float(os.environ.get("GIT_JOBS_GC_SECONDS", "30"))
    work = Path(repo.workdir)
    hub = tmp_path / "hub.git"
    init_repo(hub, bare=True)
    git(work, "remote", "add", "origin", str(hub))
    git(work, "push", "-q", "origin", "main")
    key = cob.Signer.generate().save(tmp_path / "node.key")
    nid = ok(work, "whoami", "--json", key=key).json["nid"]
    commits = git(work, "rev-list", "HEAD").split()
    stop = time.monotonic() + seconds
    gcs: list[tuple[float, float]] = []
    # (job id, run id or None, finished, start, end) of every acknowledged write
    acked: list[tuple[str, str | None, bool, float, float]] = []
    failures: list[str] = []
    syncs: list[int] = []

    def timed(*args: str) -> tuple[subprocess.CompletedProcess[str], float, float]:
        started = time.monotonic()
        proc = subprocess.run(
            [GIT_JOBS, *args],
            cwd=work,
            capture_output=True,
            text=True,
            env={**os.environ, "GIT_JOBS_KEY": str(key)},
            timeout=120,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc, started, time.monotonic()

    def writer() -> None:
        i = 0
        while time.monotonic() < stop:
            name = f"job-{i}"
            made, t0, t1 = timed("create", commits[i % len(commits)], "--name", name)
            i += 1
            if made.returncode != 0:
                failures.append(f"create: {made.stderr.strip()}")
                continue
            job = made.stdout.strip()
            acked.append((job, None, False, t0, t1))
            started, t0, t1 = timed("run", job, "--log", f"https://ci.example/{i}")
            if started.returncode != 0:
                failures.append(f"run: {started.stderr.strip()}")
                continue
            run_id = started.stdout.strip()
            acked.append((job, run_id, False, t0, t1))
            done, t0, t1 = timed("finish", job, run_id, "succeeded")
            if done.returncode != 0:
                failures.append(f"finish: {done.stderr.strip()}")
                continue
            acked.append((job, run_id, True, t0, t1))

    def syncer() -> None:
        while time.monotonic() < stop:
            proc, _, _ = timed("sync")
            syncs.append(proc.returncode)
            time.sleep(0.5)

    def gc() -> None:
        while time.monotonic() < stop:
            t0 = time.monotonic()
            subprocess.run(
                ["git", "gc", "--prune=now", "--quiet"], cwd=work, capture_output=True, timeout=120
            )
            gcs.append((t0, time.monotonic()))
            time.sleep(1.0)  # writes between gc runs are not in flight: none of them may be lost

    threads = [threading.Thread(target=f) for f in (writer, syncer, gc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 240)
    assert gcs and acked

    def in_flight(start: float, end: float) -> bool:
        return any(g0 <= end and start <= g1 + 0.5 for g0, g1 in gcs)

    # The node keeps working: a write, a sync and a read after all that.
    last = ok(work, "create", "HEAD", "--name", "after", key=key).line
    final = gj(work, "sync", key=key)
    assert final.code == 0 or "two copies" not in final.err, final
    ok(work, "sync", key=key)
    jobs = Jobs(cob.Store(str(work), cache=False))
    present = {}
    for job_id in {a[0] for a in acked} | {last}:
        got = jobs.get(job_id)
        present[job_id] = got
    missing = []
    for job_id, run_id, finished, t0, t1 in acked:
        got = present[job_id]
        runs = got.runs_of(nid) if got is not None else None
        if got is None or (run_id is not None and (runs is None or run_id not in {str(r) for r in runs})):
            missing.append((job_id, run_id, finished, t0, t1))
        elif finished:
            assert runs is not None
            if not runs[run_id].is_finished:
                missing.append((job_id, run_id, finished, t0, t1))
    # No more than the ops in flight are lost, and doctor names each lost job.
    assert all(in_flight(t0, t1) for *_, t0, t1 in missing), (missing, gcs)
    report = gj(work, "doctor", "--json", key=key)
    if os.environ.get("GIT_JOBS_GC_DEBUG"):
        import json

        Path(os.environ["GIT_JOBS_GC_DEBUG"]).write_text(
            json.dumps(
                {
                    "missing": missing,
                    "gcs": gcs,
                    "doctor": report.json,
                    "failures": failures,
                    "syncs": syncs,
                    "work": str(work),
                },
                indent=1,
            )
        )
    named = {
        o for f in report.json["findings"] if f["kind"] in ("lost", "missing-objects") for o in f["objects"]
    }
    lost_jobs = {m[0] for m in missing if m[1] is None or m[0] not in present or present[m[0]] is None}
    assert lost_jobs <= named, (lost_jobs, report.json)
    if missing:
        assert report.code == 1
    # The rest stays visible here and on a fresh peer that syncs from the hub.
    assert present[last] is not None
    peer = tmp_path / "peer"
    git(tmp_path, "clone", "-q", str(hub), str(peer))
    ok(peer, "sync", key=cob.Signer.generate().save(tmp_path / "peer.key"))
    seen = Jobs(cob.Store(str(peer), cache=False))
    kept = {a[0] for a in acked if a[0] not in {m[0] for m in missing}}
    assert {j.id for j in seen.all()} >= kept | {last}
    # Failed writes are only the ones whose run a lost write took with it.
    assert len(failures) <= len(missing) + len(gcs), failures
    print(
        f"{len(gcs)} gc runs, {len(acked)} acknowledged writes, {len(missing)} lost,"
        f" {len(failures)} failed, syncs {syncs.count(0)}/{len(syncs)} exit 0"
    )


def test_an_index_commit_whose_new_tree_was_pruned_is_not_built_on(
    repo: pygit2.Repository, signer: cob.Signer
) -> None:
    """A prune took the fan-out tree the last index commit wrote, not the commit: building on
    it would drop every entry of that directory; the write moves on from the intact index."""
    jobs = Jobs(cob.Store(repo, signer, cache=False))
    head = str(repo.head.target)
    made = [jobs.create(head, f"job-{i}").id for i in range(6)]
    tip = _tip(repo, signer.nid)
    tree = sigrefs.tree_of(repo, tip)
    parent = sigrefs.tree_of(repo, str(repo[tip].parent_ids[0]))  # type: ignore[attr-defined]
    assert tree is not None and parent is not None
    top, before = repo[tree["dev.gitjobs.job"].id], repo[parent["dev.gitjobs.job"].id]
    new_fans = [e.id for e in top if e.name not in before or before[e.name].id != e.id]  # type: ignore[attr-defined]
    assert len(new_fans) == 1
    _drop(repo, str(new_fans[0]))
    reader = Jobs(cob.Store(repo, signer, cache=False))
    assert set(made[:5]) <= {j.id for j in reader.all()}  # the intact index before it
    assert doctor.check(repo, signer, objects=False)[0].kind is doctor.Kind.BROKEN_INDEX
    extra = reader.create(head, "job-after").id  # moves on: the last job's change is still here
    fresh = Jobs(cob.Store(repo, signer, cache=False))
    assert {j.id for j in fresh.all()} == {*made, extra}
