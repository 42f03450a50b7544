"""Runs whose node died never block the verdict: every run carries a deadline, readers judge it.

A `run` op records the deadline its node promised (`timeout`, FORMAT.md 11.1); every reader shows
a run still started past that deadline plus a grace (`jobs.lostGrace`) as `lost`: a failure,
retried as an infrastructure `error`, and its job is taken over by the next ranked trusted node.
Library tests fake the reader's clock; the CLI tests use real processes, real time, a bare hub.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pygit2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import cob
import jobs
from jobs.assign import assign, rank
from jobs.deadline import DEFAULT_GRACE, DEFAULT_TIMEOUT, MAX_SKEW, Judge
from jobs.errors import InvalidInputError
from jobs.gate import gate_status
from jobs.jobtype import JOB_TYPE
from jobs.model import Reason, Runs
from jobs.node import Workshop
from jobs.node.journal import Journal
from jobs.ops import StartRun
from jobs.policy import Policy
from jobs.summary import flaky_attempts, run_state
from tests.clirunner import GIT_JOBS, env_with, gj, ok, user_error
from tests.conftest import git, init_repo

LOG = "https://ci.example/log"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path, signer: cob.Signer) -> jobs.Jobs:
    init_repo(tmp_path / "repo")
    return jobs.Jobs.open(str(tmp_path / "repo"), signer)


def judged(store: jobs.Jobs, clock: Clock) -> jobs.Jobs:
    store.judge = Judge.load(store.repo, clock)
    return store


def only_run(store: jobs.Jobs, job_id: str) -> jobs.Run:
    job = store.get(job_id)
    assert job is not None
    [runs] = job.runs().values()
    [run] = runs.values()
    return run


# -- the op --------------------------------------------------------------------------------------
def test_a_run_without_a_timeout_keeps_the_bytes_it_had_and_one_with_it_says_so() -> None:
    enc = msgspec.json.Encoder()
    rid = "01a233de-46bf-79d3-992f-170f198e7174"
    assert enc.encode(StartRun(rid, LOG)) == f'{{"type":"run","run_id":"{rid}","log":"{LOG}"}}'.encode()
    assert b'"timeout":60' in enc.encode(StartRun(rid, LOG, timeout=60))


def test_the_api_records_the_promised_timeout_rounded_up_and_bounded(store: jobs.Jobs) -> None:
    job = store.create("HEAD", "ci")
    job.run(LOG, timeout=2.5)
    assert only_run(store, job.id).timeout == 3
    for bad in (0, -1, 8 * 86400, float("nan"), float("inf")):
        with pytest.raises(InvalidInputError, match="timeout"):
            job.run(LOG, timeout=bad)
    assert len(store.get(job.id).runs_of(store.signer.nid)) == 1  # type: ignore[union-attr]


def test_a_peer_run_op_with_an_out_of_bounds_timeout_is_rejected(store: jobs.Jobs) -> None:
    job = store.create("HEAD", "ci")
    for bad in (0, 7 * 86400 + 1):
        with pytest.raises(cob.InvalidOpsError, match="timeout"):
            store.store.update(JOB_TYPE, job.id, [StartRun("0190d3a4-7b1c-7000-8000-000000000001", LOG, bad)])


# -- readers judge the deadline ------------------------------------------------------------------
def test_a_started_run_turns_lost_after_its_timeout_plus_the_grace(store: jobs.Jobs) -> None:
    clock = Clock()
    judged(store, clock)
    job = store.create("HEAD", "ci")
    job.run(LOG, timeout=60)
    started = only_run(store, job.id).started_at.timestamp()
    clock.now = started + 60 + DEFAULT_GRACE - 1
    run = only_run(store, job.id)
    assert (run_state(run), run.lost, run.failed) == ("running", False, False)
    assert gate_status(store, "HEAD").outcome == "pending"
    clock.now = started + 60 + DEFAULT_GRACE + 1
    run = only_run(store, job.id)
    assert (run_state(run), run.lost, run.failed, run.outcome) == ("lost", True, True, Reason.ERROR)
    status = gate_status(store, "HEAD")
    assert (status.outcome, status.exit_code) == ("failed", 1)
    [cell] = status.to_json()["jobs"][0]["latest"]
    assert cell["state"] == "lost" and cell["timeout"] == 60 and cell["lost_at"]
    # a finish that arrives later is what the run is
    job.finish(run_id=next(iter(store.get(job.id).runs_of(store.signer.nid))), reason="succeeded")  # type: ignore[union-attr]
    assert run_state(only_run(store, job.id)) == "succeeded"


def test_a_run_that_records_no_deadline_gets_the_documented_default(store: jobs.Jobs) -> None:
    clock = Clock()
    judged(store, clock)
    job = store.create("HEAD", "ci")
    job.run(LOG)  # as old writers, and `git jobs run` without --timeout, write it
    run = only_run(store, job.id)
    assert run.timeout is None and run.lost_at == run.started_at.timestamp() + DEFAULT_TIMEOUT + DEFAULT_GRACE
    clock.now = run.started_at.timestamp() + 6 * 3600 + DEFAULT_GRACE + 1
    assert only_run(store, job.id).lost


def test_the_grace_is_a_reader_setting(store: jobs.Jobs) -> None:
    git(store.repo.workdir, "config", "jobs.lostGrace", "2s")
    assert Judge.load(store.repo).grace == 2.0
    git(store.repo.workdir, "config", "jobs.lostGrace", "0")
    assert Judge.load(store.repo).grace == 0.0
    git(store.repo.workdir, "config", "jobs.lostGrace", "soon")
    with pytest.raises(jobs.JobsError, match=r"jobs\.lostGrace"):
        Judge.load(store.repo)


def test_a_start_claimed_in_the_future_cannot_keep_a_run_alive(store: jobs.Jobs) -> None:
    """Readers judge time, not writers: a claim beyond the skew bound counts from first sight."""
    clock = Clock()
    judged(store, clock)
    job = store.create("HEAD", "ci")
    year_2100 = 4102444800
    rid = "0190d3a4-7b1c-7000-8000-000000000002"
    store.store.update(JOB_TYPE, job.id, [StartRun(rid, LOG, 60)], timestamp=year_2100)
    first = clock.now
    assert run_state(only_run(store, job.id)) == "running"
    clock.now = first + MAX_SKEW + 60 + DEFAULT_GRACE + 1
    assert run_state(only_run(store, job.id)) == "lost"
    # another process of this reader remembers when it first saw the claim
    other = jobs.Jobs.open(store.repo.path)
    other.judge = Judge.load(other.repo, clock)
    assert run_state(only_run(other, job.id)) == "lost"
    # a claim within the skew bound is believed
    job2 = store.create("HEAD", "near")
    store.store.update(JOB_TYPE, job2.id, [StartRun(rid, LOG, 60)], timestamp=int(clock.now + 100))
    run = only_run(store, job2.id)
    assert run.lost_at == int(clock.now + 100) + 60 + DEFAULT_GRACE


def test_a_lost_run_is_retried_as_an_error_and_not_awaited_once_another_node_passed(
    tmp_path: Path, signers: Iterator[cob.Signer]
) -> None:
    repo = init_repo(tmp_path / "repo")
    defs = '[jobs.ci]\nrun = "true"\nretry = { max = 2, on = ["error"] }\n'
    (tmp_path / "repo" / ".git-jobs.toml").write_text(defs)
    git(tmp_path / "repo", "add", ".")
    git(tmp_path / "repo", "commit", "-qm", "defs")
    alice, bob = next(signers), next(signers)
    clock = Clock()
    a = judged(jobs.Jobs.open(repo.path, alice), clock)
    job = a.create("HEAD", "ci")
    job.run(LOG, timeout=10)
    policy = Policy(nodes={alice.nid: "alice", bob.nid: "bob"}, quorum=1)
    clock.now += 10 + DEFAULT_GRACE + 1
    status = gate_status(a, "HEAD", policy)
    assert [c.state for c in status.counted()] == ["retrying"] and status.outcome == "pending"
    b = judged(jobs.Jobs.open(repo.path, bob), clock)
    bj = b.create("HEAD", "ci")
    rid = bj.run(LOG, timeout=10)
    bj.finish(rid, "succeeded")
    status = gate_status(b, "HEAD", policy)
    assert sorted(c.state for c in status.counted()) == ["retrying", "succeeded"]
    assert (status.outcome, status.exit_code) == ("succeeded", 0)


def test_a_node_whose_only_run_is_lost_is_not_started_and_the_next_ranked_is_asked(
    tmp_path: Path, signers: Iterator[cob.Signer]
) -> None:
    repo = init_repo(tmp_path / "repo")
    nodes = [next(signers) for _ in range(3)]
    clock = Clock()
    job_id = jobs.Jobs.open(repo.path, nodes[0]).create("HEAD", "ci").id
    by_nid = {s.nid: s for s in nodes}
    first, second, third = (by_nid[n] for n in rank(job_id, list(by_nid)))
    policy = Policy(nodes={s.nid: f"n{i}" for i, s in enumerate(nodes)}, quorum=1, takeover=600.0)
    mine = judged(jobs.Jobs.open(repo.path, first), clock)
    mine.create("HEAD", "ci").run(LOG, timeout=30)

    def assigned() -> tuple[tuple[str, ...], float | None]:
        a = assign({j.name: j for j in mine.find_by_commit("HEAD")}, {}, policy, clock.now)["ci"]
        return a.assigned, a.takes_over_at(second.nid)

    got, due = assigned()
    lost_at = only_run(mine, job_id).lost_at
    assert got == (first.nid,) and due == lost_at  # the others look again when it would be lost
    clock.now = lost_at + 1  # type: ignore[operator]
    got, _ = assigned()
    assert got == (second.nid,)  # taken over at once by the next ranked, not by everyone
    clock.now += 600
    got, _ = assigned()
    assert got == (second.nid, third.nid)  # and one more per takeover period if it does not start
    assert third.nid not in got[:1]


def test_an_infrastructure_error_before_a_pass_is_not_flaky(store: jobs.Jobs) -> None:
    job = store.create("HEAD", "ci")
    for reason in ("error", "succeeded"):
        job.finish(job.run(LOG), reason)
    assert flaky_attempts(store.get(job.id).runs_of(store.signer.nid)) == 0  # type: ignore[union-attr]
    for reason in ("failed", "succeeded"):
        job.finish(job.run(LOG), reason)
    assert flaky_attempts(store.get(job.id).runs_of(store.signer.nid)) == 1  # type: ignore[union-attr]
    assert flaky_attempts(Runs()) == 0


# -- the CLI -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_git_jobs_run_timeout_then_nothing_shows_lost_and_exits_1(tmp_path: Path, signer: cob.Signer) -> None:
    path = tmp_path / "repo"
    init_repo(path)
    key = signer.save(tmp_path / "key")
    git(path, "config", "jobs.lostGrace", "1s")
    ok(path, "create", "HEAD", "--name", "ci", key=key)
    run = ok(path, "run", "HEAD:ci", "--log", LOG, "--timeout", "1s", "--json", key=key).json
    assert run["timeout"] == 1
    res = gj(path, "status", "HEAD")
    assert res.code == 8 and "running" in res.out, res
    time.sleep(2.2)
    res = gj(path, "status", "HEAD")
    assert res.code == 1 and "lost" in res.out, res
    data = gj(path, "status", "HEAD", "--json").json
    assert data["outcome"] == "failed" and data["jobs"][0]["latest"][0]["state"] == "lost"
    shown = ok(path, "show", "HEAD:ci", "--json").json
    assert shown["state"] == "failed" and shown["runs"][0]["state"] == "lost"
    # every view agrees: the branch view and the static web report
    branch = git(path, "branch", "--show-current").strip()
    [commit] = ok(path, "status", "--branch", branch, "--json").json["commits"]
    assert commit["outcome"] == "failed" and commit["counts"] == {"lost": 1}
    ok(path, "report", "--html", str(tmp_path / "site"))
    page = next((tmp_path / "site").glob("commit-*.html")).read_text()
    assert 'st-lost">lost<' in page


@pytest.mark.slow
def test_a_lost_run_of_a_job_whose_retry_covers_errors_is_pending(tmp_path: Path, signer: cob.Signer) -> None:
    path = tmp_path / "repo"
    init_repo(path)
    (path / ".git-jobs.toml").write_text('[jobs.ci]\nrun = "true"\nretry = { max = 2, on = ["error"] }\n')
    git(path, "add", ".")
    git(path, "commit", "-qm", "defs")
    key = signer.save(tmp_path / "key")
    git(path, "config", "jobs.lostGrace", "0")
    ok(path, "create", "HEAD", "--name", "ci", key=key)
    ok(path, "run", "HEAD:ci", "--log", LOG, "--timeout", "1s", key=key)
    time.sleep(2.2)
    res = gj(path, "status", "HEAD", "--json")
    assert res.code == 8 and res.json["jobs"][0]["latest"][0]["state"] == "retrying", res
    assert ok(path, "show", "HEAD:ci", "--json").json["runs"][0]["state"] == "lost"


def test_git_jobs_run_refuses_a_timeout_it_cannot_record(tmp_path: Path, signer: cob.Signer) -> None:
    path = tmp_path / "repo"
    init_repo(path)
    key = signer.save(tmp_path / "key")
    ok(path, "create", "HEAD", "--name", "ci", key=key)
    assert "7 days" in user_error(path, "run", "HEAD:ci", "--log", LOG, "--timeout", "365d", key=key)
    assert "--timeout" in user_error(path, "run", "HEAD:ci", "--log", LOG, "--timeout", "soon", key=key)
    assert ok(path, "show", "HEAD:ci", "--json").json["runs"] == []


def _node_repo(tmp_path: Path, defs: str) -> tuple[Path, Path, cob.Signer]:
    path = tmp_path / "node"
    init_repo(path)
    (path / ".git-jobs.toml").write_text(defs)
    git(path, "add", ".")
    git(path, "commit", "-qm", "defs")
    git(path, "config", "jobs.isolation", "none")
    signer = cob.Signer.generate()
    return path, signer.save(tmp_path / "node.key"), signer


@pytest.mark.slow
def test_the_node_caps_every_job_at_jobs_max_timeout(tmp_path: Path) -> None:
    path, key, signer = _node_repo(
        tmp_path, '[jobs.forever]\nrun = "sleep 30"\n\n[jobs.year]\nrun = "sleep 30"\ntimeout = "365d"\n'
    )
    git(path, "config", "jobs.maxTimeout", "1s")
    began = time.monotonic()
    res = gj(path, "work", "any", key=key)
    assert time.monotonic() - began < 20, res
    store = jobs.Jobs.open(str(path))
    for job in store.find_by_commit("HEAD"):
        [run] = job.runs_of(signer.nid).values()
        assert (run.reason, run.timeout) == (Reason.TIMED_OUT, 1), job.name
    year = next(j for j in store.find_by_commit("HEAD") if j.name == "year")
    [rid] = year.runs_of(signer.nid)
    assert "capped to 1s (jobs.maxTimeout)" in ok(path, "logs", str(rid)).out


def test_a_job_timeout_under_the_cap_is_what_the_run_promises(tmp_path: Path) -> None:
    defs = '[jobs.quick]\nrun = "true"\ntimeout = "90s"\n\n[jobs.plain]\nrun = "true"\n'
    path, key, signer = _node_repo(tmp_path, defs)
    ok(path, "work", "any", key=key)
    found = jobs.Jobs.open(str(path)).find_by_commit("HEAD")
    got = {j.name: next(iter(j.runs_of(signer.nid).values())).timeout for j in found}
    assert got == {"quick": 90, "plain": DEFAULT_TIMEOUT}


def test_a_max_timeout_past_seven_days_is_refused(tmp_path: Path) -> None:
    path, key, _ = _node_repo(tmp_path, '[jobs.quick]\nrun = "true"\n')
    git(path, "config", "jobs.maxTimeout", "365d")
    res = gj(path, "work", "any", key=key)
    assert res.code != 0 and "maxTimeout" in res.err and len(res.err.strip().splitlines()) == 1, res
    assert jobs.Jobs.open(str(path)).find_by_commit("HEAD") == [] or all(
        not j.runs() for j in jobs.Jobs.open(str(path)).find_by_commit("HEAD")
    )


# -- a trusted node dies mid-run -----------------------------------------------------------------
# The first attempt (no mark yet) sleeps well past its deadline, so the node dies mid-run
# whatever the load; the takeover's attempt is quick.
SLOW = """
[jobs.slow]
run = "if [ -e {mark} ]; then sleep 1; else touch {mark}; sleep 30; fi"
timeout = "8s"
retry = {{ max = 2, on = ["error"] }}
"""


def _wait_for(pred: Callable[[], bool], timeout: float, what: str, logs: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{logs()}")
        time.sleep(0.2)


@pytest.mark.slow
def test_a_trusted_node_sigkilled_mid_run_is_lost_and_another_takes_its_job_over(tmp_path: Path) -> None:
    hub = tmp_path / "hub.git"
    init_repo(hub, bare=True)
    upstream = tmp_path / "upstream"
    init_repo(upstream)
    keys, nids = {}, {}
    for i, name in enumerate(("alice", "bob")):
        signer = cob.Signer(Ed25519PrivateKey.from_private_bytes(bytes([40 + i]) * 32))
        keys[name], nids[name] = signer.save(tmp_path / f"{name}.key"), signer.nid
    table = ", ".join(f'"{nid}" = "{name}"' for name, nid in nids.items())
    policy = f'[policy]\nnodes = {{ {table} }}\nquorum = 1\ntakeover = "10m"\n'
    mark = tmp_path / "first-attempt"
    (upstream / ".git-jobs.toml").write_text(SLOW.format(mark=mark) + "\n" + policy)
    git(upstream, "add", ".")
    git(upstream, "commit", "-qm", "ci")
    git(upstream, "push", "-q", str(hub), "HEAD:refs/heads/main")
    sha = git(upstream, "rev-parse", "HEAD").strip()
    paths: dict[str, Path] = {}
    for name in ("alice", "bob", "maintainer"):
        paths[name] = tmp_path / name
        git(tmp_path, "clone", "-q", str(hub), str(paths[name]))
        git(paths[name], "config", "jobs.isolation", "none")
        git(paths[name], "config", "jobs.lostGrace", "1s")  # documented reader setting (default 10m)
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def logs() -> str:
        return "\n".join(f"== {n}\n" + (tmp_path / f"{n}.log").read_text() for n in procs)

    def start(name: str) -> None:
        with open(tmp_path / f"{name}.log", "ab") as log:
            procs[name] = subprocess.Popen(
                [GIT_JOBS, "node", "--remote", "origin", "--follow", "refs/heads/main", "--interval", "0.3s"],
                cwd=paths[name],
                env=env_with(GIT_JOBS_KEY=str(keys[name])),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def runs() -> dict[str, list[jobs.Run]]:
        ok(paths["maintainer"], "sync")
        [job] = jobs.Jobs.open(str(paths["maintainer"])).find_by_commit(sha) or [None]
        if job is None:
            return {}
        return {name: list(job.runs_of(nid).values()) for name, nid in nids.items() if job.runs_of(nid)}

    orphans: list[int] = []
    try:
        start("alice")
        start("bob")
        _wait_for(mark.exists, 60, "the first attempt to start", logs)
        _wait_for(lambda: bool(runs()), 60, "a run on the hub", logs)
        [dead] = runs()  # quorum 1: only the first ranked node started it
        other = "bob" if dead == "alice" else "alice"
        # SIGKILL the node mid-run (its job's process group outlives it: killed below, by the test)
        orphans.extend(e.pid for e in Journal(pygit2.Repository(str(paths[dead]))).entries() if e.pid)
        procs[dead].send_signal(signal.SIGKILL)
        procs[dead].wait(timeout=10)
        assert [r.is_started for r in runs()[dead]] == [True]

        def taken_over() -> bool:
            got = runs()
            return bool(got.get(other)) and got[other][-1].succeeded

        _wait_for(taken_over, 60, "the other node to take the job over", logs)
        got = runs()
        lost_at = got[dead][0].started_at.timestamp() + 8 + 1  # timeout 8s + jobs.lostGrace 1s
        assert got[other][0].started_at.timestamp() >= lost_at - 1  # not before (whole seconds)
        assert got[dead][0].lost and got[dead][0].lost_at == lost_at
        res = gj(paths["maintainer"], "status", sha, "--json")
        assert res.code == 0 and res.json["outcome"] == "succeeded", res
        states = {c["node_name"]: c["state"] for c in res.json["jobs"][0]["latest"]}
        assert states == {dead: "retrying", other: "succeeded"}  # lost: an error its retry covers
        shown = ok(paths["maintainer"], "show", f"{sha}:slow", "--json").json
        assert {r["state"] for r in shown["runs"]} == {"lost", "succeeded"}
        assert procs[other].poll() is None  # nobody restarted the dead node; the live one still runs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        for pid in orphans:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)


def test_a_nodes_own_lost_run_is_run_again_not_awaited(tmp_path: Path) -> None:
    path, _, signer = _node_repo(tmp_path, '[jobs.ci]\nrun = "true"\ntimeout = "10s"\n')
    store = jobs.Jobs.open(str(path), signer)
    clock = Clock()
    judged(store, clock)
    ws = Workshop(store, isolation=None)
    _, defs = ws.definitions("HEAD")
    assert defs is not None
    store.create("HEAD", "ci").run(LOG, timeout=10)  # then this process "died"
    [item] = ws.plan(defs)
    assert item.action == "running"
    clock.now += 10 + DEFAULT_GRACE + 1
    [item] = ws.plan(defs)
    assert (item.action, item.attempts) == ("run", 0) and "lost" in item.reason
    assert signer.nid in store.find_by_commit("HEAD")[0].runs()
