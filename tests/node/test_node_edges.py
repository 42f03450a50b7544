"""Regression tests from a first-user review of the CLI and the node: each case once misbehaved."""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path

import pygit2
import pytest
import uuid6

import cob
import jobs
from jobs import logs
from jobs.node.retry import MAX_HINT, Backoff, Policy, policies
from tests.clirunner import gj
from tests.conftest import git, init_repo
from tests.node.test_node_work import cli, commit_defs, interrupt_work_any, new_key, reasons


@pytest.fixture
def node(tmp_path: Path) -> tuple[Path, cob.Signer, Path]:
    path = tmp_path / "node"
    init_repo(path)
    signer, key = new_key(tmp_path / "node.key")
    return path, signer, key


def test_backoff_stays_finite_after_any_number_of_failures() -> None:
    policy = Policy("node", base=30.0, cap=960.0)
    assert math.isfinite(policy.delay(5000)) and policy.delay(5000, lambda: 1.0) <= 960.0
    backoff = Backoff(policies(30.0))
    backoff.failures = 10_000
    _, wait = backoff.next_delay(cob.TransportError("HTTP 429 Too Many Requests; retry-after: 1e12"))
    assert math.isfinite(wait) and wait <= MAX_HINT


def test_whoami_nid_makes_the_readme_push_refspec_work(
    node: tuple[Path, cob.Signer, Path], tmp_path: Path
) -> None:
    """The README's plain-git lines (fetch refspec, and the push of the index ref and the log
    buckets) carry a finished run and its published log to another repository."""
    path, signer, key = node
    hub = tmp_path / "hub.git"
    git(tmp_path, "init", "-q", "--bare", str(hub))
    git(path, "remote", "add", "origin", str(hub))
    store = jobs.Jobs.open(path, signer=cob.Signer.from_file(key))
    job = store.create("HEAD")
    run_id = uuid6.uuid7()
    job.run(f"git-jobs://{signer.nid}/{run_id}", run_id=run_id)
    blob = logs.publish(store.repo, signer, run_id, b"built\n")
    job.finish(run_id, "succeeded", log_blob=blob, exit_status=0)
    nid = gj(path, "whoami", "--nid", key=key).out.strip()
    assert nid == signer.nid
    ns = f"refs/namespaces/{nid}/refs"  # NS="refs/namespaces/$(git jobs whoami --nid)/refs"
    git(path, "push", "-q", "origin", f"{ns}/sigrefs:{ns}/sigrefs", f"{ns}/logs/*:{ns}/logs/*")
    mine = git(path, "for-each-ref", "--format=%(refname) %(objectname)", f"refs/namespaces/{nid}/")
    pushed = git(hub, "for-each-ref", "--format=%(refname) %(objectname)", f"refs/namespaces/{nid}/")
    assert pushed == mine
    assert sorted(line.split()[0] for line in pushed.splitlines()) == sorted(
        [cob.index_ref(nid), logs.bucket_ref(nid, logs.bucket_of(run_id))]
    )
    # A peer with the README's fetch refspec gets the finished run and its log from plain git.
    peer = tmp_path / "peer"
    init_repo(peer)
    git(peer, "remote", "add", "origin", str(hub))
    git(peer, "config", "--add", "remote.origin.fetch", "refs/namespaces/*:refs/namespaces/*")
    git(peer, "fetch", "-q", "origin")
    seen = jobs.Jobs.open(peer).get(job.id)
    assert seen is not None and seen.rejected == []
    run = seen.runs_of(nid)[run_id]
    assert run.reason is jobs.Reason.SUCCEEDED
    got = logs.read(pygit2.Repository(str(peer)), nid, run_id, run)
    assert (got.status, got.data) == (logs.LogStatus.SHOWN, b"built\n")


def test_sync_with_a_broken_key_fails_instead_of_silently_not_pushing(
    node: tuple[Path, cob.Signer, Path], tmp_path: Path
) -> None:
    path, _, _ = node
    hub = tmp_path / "hub.git"
    git(tmp_path, "init", "-q", "--bare", str(hub))
    broken = tmp_path / "broken.key"
    broken.write_text("not a key\n")
    res = gj(path, "sync", str(hub), key=broken)
    assert res.code == 2 and str(broken) in res.err
    # With no key at all, sync is a fetch-only mirror, as documented.
    res = gj(path, "sync", str(hub), GIT_JOBS_KEY=None, XDG_CONFIG_HOME=str(tmp_path / "nokeys"))
    assert res.code == 0, res


@pytest.mark.parametrize("interval", ["nan", "inf", "1e10", "0"])
def test_status_watch_refuses_intervals_it_cannot_sleep(
    node: tuple[Path, cob.Signer, Path], interval: str
) -> None:
    path, _, key = node
    res = gj(path, "status", "--watch", "--interval", interval, key=key)
    assert res.code == 2 and "--interval" in res.err


@pytest.mark.slow
def test_logs_accepts_a_run_id_without_dashes_and_held_jobs_can_be_rerun(
    node: tuple[Path, cob.Signer, Path], tmp_path: Path
) -> None:
    path, signer, key = node
    mark = tmp_path / "started"
    # the job reports pids and marks through host paths: a sandbox (own /tmp, own pids) would hide them
    git(path, "config", "jobs.isolation", "none")
    sha = commit_defs(
        path, f'[jobs.long]\nrun = "if [ -f {mark} ]; then echo again; else touch {mark}; sleep 60; fi"\n'
    )
    interrupt_work_any(path, key, mark, signal.SIGINT)
    assert reasons(jobs.Jobs.open(path), sha, signer.nid) == {"long": ["cancelled"]}
    job = jobs.Jobs.open(path).find_by_commit(sha)[0]
    run_id = next(iter(job.runs_of(signer.nid)))
    res = gj(path, "logs", run_id.hex, key=key)  # 32 hex digits, no dashes
    assert res.code == 0 and "sleep 60" in res.out
    held = cli(path, "work", "any", key=key)
    assert held.returncode == 1 and "held" in held.stdout
    assert reasons(jobs.Jobs.open(path), sha, signer.nid) == {"long": ["cancelled"]}
    rerun = cli(path, "work", "any", "--rerun-held", key=key)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert reasons(jobs.Jobs.open(path), sha, signer.nid) == {"long": ["cancelled", "succeeded"]}


def test_a_run_ends_with_its_command_and_leaves_no_background_process(
    node: tuple[Path, cob.Signer, Path], tmp_path: Path
) -> None:
    path, signer, key = node
    pidfile = tmp_path / "bg.pid"
    # the job reports pids and marks through host paths: a sandbox (own /tmp, own pids) would hide them
    git(path, "config", "jobs.isolation", "none")
    sha = commit_defs(path, f'[jobs.bg]\nrun = "sleep 30 & echo $! > {pidfile}; echo started"\n')
    assert cli(path, "work", "any", key=key).returncode == 0
    assert reasons(jobs.Jobs.open(path), sha, signer.nid) == {"bg": ["succeeded"]}
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists():
        state = Path(f"/proc/{child}/stat").read_text().split(")")[-1].split()[0]
        if state == "Z":
            break
        assert time.monotonic() < deadline, "the job's background process outlived its run"
        time.sleep(0.05)
    assert pygit2.Repository(str(path))  # repository still fine


def test_a_command_that_could_not_start_is_retried_not_held(
    node: tuple[Path, cob.Signer, Path],
) -> None:
    """`error` is infrastructure and retryable: a non-idempotent job whose command never started
    is not held for a human (only crash-recovered and cancelled runs are)."""
    from jobs.node.work import Workshop

    path, signer, _ = node
    sha = commit_defs(path, '[jobs.a]\nrun = "true"\nretry = { max = 2, pattern = "seconds" }\n')
    store = jobs.Jobs.open(path, signer)
    ws = Workshop(store)
    _, defs = ws.definitions(sha)
    assert defs is not None
    broken = type(defs)("0" * 40, defs.jobs)  # cannot be checked out
    outcome = ws.attempt(store.create(sha, "a"), defs.jobs[0], broken)
    assert outcome.reason is jobs.Reason.ERROR
    plan = {p.name: p.action for p in ws.plan(defs)}
    assert plan == {"a": "wait"}  # a retry, due after the pattern's delay — not "held"
