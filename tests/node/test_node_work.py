"""The node's one-shot commands: definitions, `release`, `work any`, `work trigger`, `logs`.

Real repositories, real `sh -c` processes, the real CLI as a subprocess where the user's view
(exit codes, one-line errors, JSON) is what matters; the library API where time is faked.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pygit2
import pytest

import cob
import jobs
from jobs.node import Workshop, load_definitions
from jobs.node.journal import Entry, Journal
from jobs.node.logs import log_path
from jobs.node.trigger import trigger
from tests.conftest import git, init_repo

CLI = [sys.executable, "-c", "import sys; from jobs.cli import main; sys.exit(main())"]


# -- helpers (also used by test_node_daemon) ---------------------------------------------------
def cli(
    cwd: Path, *args: str, key: Path | None = None, check: bool = False, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`git jobs ARGS` in ``cwd`` as a user would run it."""
    env = dict(os.environ)
    if key is not None:
        env["GIT_JOBS_KEY"] = str(key)
    res = subprocess.run(
        [*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and res.returncode != 0:
        raise AssertionError(f"git jobs {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


def interrupt_work_any(path: Path, key: Path, mark: Path, sig: int) -> tuple[int, str]:
    """Run `git jobs work any`, send ``sig`` once the job has created ``mark``; (exit, stdout)."""
    env = dict(os.environ, GIT_JOBS_KEY=str(key))
    proc = subprocess.Popen([*CLI, "work", "any"], cwd=path, env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not mark.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out


def commit_defs(path: Path, text: str, message: str = "definitions") -> str:
    """Commit ``.git-jobs.toml`` with ``text`` in the work tree at ``path``; return the sha."""
    (path / ".git-jobs.toml").write_text(text)
    git(path, "add", ".git-jobs.toml")
    git(path, "commit", "-q", "-m", message)
    return git(path, "rev-parse", "HEAD").strip()


def new_key(path: Path) -> tuple[cob.Signer, Path]:
    signer = cob.Signer.generate()
    signer.save(path)
    return signer, path


def runs_by_name(store: jobs.Jobs, commit: str, nid: str) -> dict[str, list[jobs.Run]]:
    return {j.name: list(j.runs_of(nid).values()) for j in store.find_by_commit(commit)}


def reasons(store: jobs.Jobs, commit: str, nid: str) -> dict[str, list[str]]:
    return {
        name: [r.reason.value if r.reason else "started" for r in rs]
        for name, rs in runs_by_name(store, commit, nid).items()
    }


class FakeClock:
    """Wall-clock time that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = time.time()
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


BUILD_TEST = """
[jobs.build]
run = "echo building $GIT_JOBS_JOB at $GIT_JOBS_COMMIT run $GIT_JOBS_RUN_ID; test -f .git-jobs.toml"
[jobs.test]
run = "echo testing; cat marker.txt"
needs = ["build"]
"""


@pytest.fixture
def work_repo(tmp_path: Path) -> Path:
    path = tmp_path / "node"
    init_repo(path)
    (path / "marker.txt").write_text("committed marker\n")
    git(path, "add", "marker.txt")
    return path


@pytest.fixture
def key(tmp_path: Path) -> tuple[cob.Signer, Path]:
    return new_key(tmp_path / "node.key")


# -- definitions ------------------------------------------------------------------------------
def test_definitions_are_read_from_the_commit_not_the_working_copy(
    work_repo: Path, key: tuple[cob.Signer, Path]
) -> None:
    sha = commit_defs(work_repo, BUILD_TEST)
    # An uncommitted edit (even an invalid one) and an untracked marker change nothing.
    (work_repo / ".git-jobs.toml").write_text("[jobs.other]\nrun = 'true'\nbogus = 1\n")
    (work_repo / "marker.txt").write_text("DIRTY working copy\n")
    defs = load_definitions(pygit2.Repository(str(work_repo)), "HEAD")
    assert defs is not None and defs.commit == sha and defs.names == ["build", "test"]

    res = cli(work_repo, "work", "any", key=key[1])
    assert res.returncode == 0, res.stderr
    store = jobs.Jobs.open(work_repo)
    assert reasons(store, sha, key[0].nid) == {"build": ["succeeded"], "test": ["succeeded"]}
    test_id = next(iter(next(j for j in store.find_by_commit(sha) if j.name == "test").runs_of(key[0].nid)))
    log = log_path(pygit2.Repository(str(work_repo)), test_id).read_text()
    assert "committed marker" in log and "DIRTY" not in log


def test_invalid_definitions_at_the_cli_are_one_line_and_exit_nonzero(
    work_repo: Path, key: tuple[cob.Signer, Path]
) -> None:
    sha = commit_defs(work_repo, "[jobs.build]\nrun = 'make'\nneeds = ['build']\n")
    for args in (["release"], ["work", "any"], ["work", "any", "--dry-run"]):
        res = cli(work_repo, *args, key=key[1])
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in res.stderr
        assert ".git-jobs.toml" in lines[0] and sha[:12] in lines[0] and "jobs.build.needs" in lines[0]


# -- release ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_release_creates_the_defined_jobs_idempotently_and_identically_on_every_node(
    work_repo: Path, tmp_path: Path, key: tuple[cob.Signer, Path]
) -> None:
    sha = commit_defs(work_repo, BUILD_TEST)
    first = cli(work_repo, "release", "--json", key=key[1], check=True)
    again = cli(work_repo, "release", "--json", key=key[1], check=True)
    _, other_key = new_key(tmp_path / "other.key")
    other = cli(work_repo, "release", sha, "--json", key=other_key, check=True)
    a, b, c = (json.loads(r.stdout) for r in (first, again, other))
    assert [j["name"] for j in a["jobs"]] == ["build", "test"] and all(j["new"] for j in a["jobs"])
    assert not any(j["new"] for j in b["jobs"])
    assert [j["id"] for j in a["jobs"]] == [j["id"] for j in b["jobs"]] == [j["id"] for j in c["jobs"]]
    assert len(jobs.Jobs.open(work_repo).find_by_commit(sha)) == 2


def test_release_without_definitions_says_so(work_repo: Path, key: tuple[cob.Signer, Path]) -> None:
    res = cli(work_repo, "release", key=key[1])
    assert res.returncode == 0 and "no .git-jobs.toml" in res.stderr
    assert list(jobs.Jobs.open(work_repo).all()) == []


# -- work any ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_work_any_runs_in_needs_order_with_logs_and_env(
    work_repo: Path, key: tuple[cob.Signer, Path]
) -> None:
    sha = commit_defs(work_repo, BUILD_TEST)
    res = cli(work_repo, "work", "any", key=key[1])
    assert res.returncode == 0, res.stdout + res.stderr
    store = jobs.Jobs.open(work_repo)
    runs = runs_by_name(store, sha, key[0].nid)
    assert runs["build"][0].started_at <= runs["test"][0].started_at
    build_id = next(iter(store.find_by_commit(sha)[0].runs_of(key[0].nid)))
    # The recorded URL names the run, not a private path; the node keeps the file locally.
    assert runs["build"][0].log == f"git-jobs://{key[0].nid}/{build_id}"
    log = log_path(pygit2.Repository(str(work_repo)), build_id)
    assert log.is_file()
    text = log.read_text()
    assert f"building build at {sha} run {build_id}" in text
    # `git jobs logs RUN` prints it, by full id or unique prefix.
    shown = cli(work_repo, "logs", str(build_id), check=True)
    assert shown.stdout == text
    assert cli(work_repo, "logs", "ffffffff").returncode == 2
    # Nothing left: a second pass records nothing; the checkout is gone.
    again = cli(work_repo, "work", "any", key=key[1], check=True)
    assert reasons(jobs.Jobs.open(work_repo), sha, key[0].nid) == {
        "build": ["succeeded"],
        "test": ["succeeded"],
    }
    assert "succeeded" not in again.stdout
    assert git(work_repo, "worktree", "list").count("\n") == 1


def test_failing_build_means_test_is_skipped_with_a_reason(
    work_repo: Path, key: tuple[cob.Signer, Path]
) -> None:
    sha = commit_defs(work_repo, BUILD_TEST.replace("test -f .git-jobs.toml", "exit 3"))
    res = cli(work_repo, "work", "any", key=key[1])
    assert res.returncode == 1
    assert "skipped" in res.stdout and "need 'build' did not succeed" in res.stdout
    store = jobs.Jobs.open(work_repo)
    assert reasons(store, sha, key[0].nid) == {"build": ["failed"], "test": ["skipped"]}
    skipped = runs_by_name(store, sha, key[0].nid)["test"][0]
    assert skipped.log_blob is not None  # a skip publishes its one-line log too
    assert "need 'build' did not succeed" in cli(work_repo, "logs", "HEAD:test", check=True).stdout
    # Idempotent: the skip is not recorded again while nothing changed.
    cli(work_repo, "work", "any", key=key[1])
    assert reasons(jobs.Jobs.open(work_repo), sha, key[0].nid) == {"build": ["failed"], "test": ["skipped"]}


def test_timeout_is_timed_out_and_kills_the_process_group(
    work_repo: Path, key: tuple[cob.Signer, Path], tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    # the job reports pids and marks through host paths: a sandbox (own /tmp, own pids) would hide them
    git(work_repo, "config", "jobs.isolation", "none")
    sha = commit_defs(
        work_repo,
        f'[jobs.slow]\nrun = "sleep 30 & echo $! > {pidfile}; wait"\ntimeout = "0.5s"\n',
    )
    began = time.monotonic()
    res = cli(work_repo, "work", "any", key=key[1])
    assert time.monotonic() - began < 10
    assert res.returncode == 1 and "timed_out" in res.stdout
    assert reasons(jobs.Jobs.open(work_repo), sha, key[0].nid) == {"slow": ["timed_out"]}
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and "Z" not in _proc_state(child):
        assert time.monotonic() < deadline, "the job's background child survived the timeout"
        time.sleep(0.05)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def test_command_that_cannot_start_is_error(work_repo: Path, key: tuple[cob.Signer, Path]) -> None:
    sha = commit_defs(work_repo, "[jobs.a]\nrun = 'true'\n")
    store = jobs.Jobs.open(work_repo, key[0])
    # A commit that is not in the repository's object store cannot be checked out.
    ws = Workshop(store)
    _, defs = ws.definitions(sha)
    assert defs is not None
    broken = type(defs)("0" * 40, defs.jobs)
    job = store.create(sha, "a")
    outcome = ws.attempt(job, defs.jobs[0], broken)
    assert outcome.reason is jobs.Reason.ERROR and "cannot check out" in outcome.detail


def test_retries_follow_the_pattern_with_a_fake_clock(
    work_repo: Path, key: tuple[cob.Signer, Path], tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    # the job reports pids and marks through host paths: a sandbox (own /tmp, own pids) would hide them
    git(work_repo, "config", "jobs.isolation", "none")
    script = f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; test $n -ge 3"
    sha = commit_defs(
        work_repo, f'[jobs.flaky]\nrun = "{script}"\nretry = {{ max = 3, pattern = "seconds" }}\n'
    )
    clock = FakeClock()
    store = jobs.Jobs.open(work_repo, key[0])
    ws = Workshop(store, clock=clock.time, sleep=clock.sleep)

    first = ws.work_any(sha)  # one pass: one attempt, then the retry is not due yet
    assert [o.reason.value for o in first.outcomes] == ["failed"]
    assert [(p.action, p.attempts) for p in first.plan] == [("wait", 1)]
    assert first.plan[0].not_before == pytest.approx(clock.now + 10.0)
    assert ws.work_any(sha).outcomes == [] and clock.sleeps == []  # not due: nothing run

    report = ws.work_any(sha, comprehensive=True)
    assert [o.reason.value for o in report.outcomes] == ["failed", "succeeded"]
    assert clock.sleeps == [pytest.approx(10.0), pytest.approx(10 + 10 * math.log(2))]
    assert reasons(store, sha, key[0].nid) == {"flaky": ["failed", "failed", "succeeded"]}
    assert report.ok and counter.read_text().strip() == "3"


def test_retry_max_bounds_the_attempts(work_repo: Path, key: tuple[cob.Signer, Path]) -> None:
    sha = commit_defs(work_repo, "[jobs.bad]\nrun = 'exit 1'\nretry = { max = 2 }\n")
    clock = FakeClock()
    ws = Workshop(jobs.Jobs.open(work_repo, key[0]), clock=clock.time, sleep=clock.sleep)
    report = ws.work_any(sha, comprehensive=True)
    assert [o.reason.value for o in report.outcomes] == ["failed", "failed"]
    assert report.plan[0].action == "exhausted" and clock.sleeps == [pytest.approx(10.0)]
    assert ws.work_any(sha, comprehensive=True).outcomes == []


def test_dry_run_prints_the_work_as_json_and_writes_nothing(
    work_repo: Path, key: tuple[cob.Signer, Path]
) -> None:
    sha = commit_defs(work_repo, BUILD_TEST)
    before = git(work_repo, "for-each-ref")
    res = cli(work_repo, "work", "any", "--dry-run", "--json", key=key[1], check=True)
    plan = json.loads(res.stdout)
    assert plan["commit"] == sha and plan["node"] == key[0].nid
    assert [(w["name"], w["action"]) for w in plan["work"]] == [("build", "run")]
    assert [(j["name"], j["action"]) for j in plan["jobs"]] == [("build", "run"), ("test", "blocked")]
    assert git(work_repo, "for-each-ref") == before
    assert not (work_repo / ".git" / "git-jobs" / "logs").exists()


@pytest.mark.slow
def test_dry_run_speaks_to_people_and_lists_no_waiting_retry_as_work_to_do_now(
    work_repo: Path, key: tuple[cob.Signer, Path]
) -> None:
    sha = commit_defs(
        work_repo,
        "[jobs.flaky]\nrun = 'exit 1'\nretry = { max = 3, pattern = 'minutes' }\n[jobs.lint]\nrun = 'true'\n",
    )
    cli(work_repo, "work", "any", key=key[1])  # flaky fails once; its retry is minutes away
    res = cli(work_repo, "work", "any", "--dry-run", key=key[1], check=True)
    assert res.stdout.startswith(f"commit {sha[:12]}: 0 of 2 jobs to do now")
    assert re.search(r"flaky +wait +retry 2 of 3 .* at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", res.stdout)
    plan = json.loads(cli(work_repo, "work", "any", "--dry-run", "--json", key=key[1], check=True).stdout)
    assert plan["work"] == [] and [w["name"] for w in plan["waiting"]] == ["flaky"]
    when = datetime.fromisoformat(plan["waiting"][0]["not_before"])
    assert when.tzinfo is not None and when > datetime.now(UTC)


def test_after_a_cancelled_run_the_plan_says_so(
    work_repo: Path, key: tuple[cob.Signer, Path], tmp_path: Path
) -> None:
    mark = tmp_path / "started"
    git(work_repo, "config", "jobs.isolation", "none")  # the job makes a file the test waits for
    commit_defs(work_repo, f'[jobs.long]\nrun = "touch {mark}; sleep 60"\nidempotent = true\n')
    code, _ = interrupt_work_any(work_repo, key[1], mark, signal.SIGTERM)
    assert code == 130
    res = cli(work_repo, "work", "any", "--dry-run", key=key[1], check=True)
    assert re.search(r"long +run +run again: the last run here ended cancelled", res.stdout), res.stdout
    assert "not run on this node yet" not in res.stdout


def test_a_run_left_started_by_a_dead_worker_is_finished_error_and_rerun_if_idempotent(
    work_repo: Path, key: tuple[cob.Signer, Path]
) -> None:
    sha = commit_defs(
        work_repo, "[jobs.safe]\nrun = 'true'\nidempotent = true\n[jobs.unsafe]\nrun = 'true'\n"
    )
    store = jobs.Jobs.open(work_repo, key[0])
    journal = Journal(store.repo)
    for name in ("safe", "unsafe"):  # what a worker killed mid-job leaves behind
        job = store.create(sha, name)
        run_id = job.run("file:///tmp/x.log")
        journal.add(Entry(str(run_id), job.id, name, sha))
    manual = store.create(sha, "manual").run("https://ci.example/1")  # `git jobs run` by hand

    report = Workshop(store).work_any(sha)
    assert sorted(o.name for o in report.recovered) == ["safe", "unsafe"]
    got = reasons(jobs.Jobs.open(work_repo), sha, key[0].nid)
    assert got["safe"] == ["error", "succeeded"]  # idempotent: rerun
    assert got["unsafe"] == ["error"]  # not idempotent: held, not rerun
    assert got["manual"] == ["started"] and isinstance(manual, uuid.UUID)
    assert {p.name: p.action for p in report.plan} == {"safe": "done", "unsafe": "held"}
    assert journal.entries() == []


def test_only_one_worker_per_repository(work_repo: Path, key: tuple[cob.Signer, Path]) -> None:
    commit_defs(work_repo, "[jobs.a]\nrun = 'true'\n")
    from jobs.node.journal import WorkLock

    with WorkLock(pygit2.Repository(str(work_repo))):
        res = cli(work_repo, "work", "any", key=key[1])
    assert res.returncode == 2 and "another `git jobs` worker" in res.stderr
    assert cli(work_repo, "work", "any", key=key[1]).returncode == 0


# -- work trigger -----------------------------------------------------------------------------
@pytest.mark.slow
def test_trigger_calls_each_other_commit_once_and_survives_a_failing_one(
    work_repo: Path, key: tuple[cob.Signer, Path], tmp_path: Path
) -> None:
    out = tmp_path / "triggered.txt"
    # the trigger reports through a host file: a sandbox (own /tmp) would hide it
    git(work_repo, "config", "jobs.isolation", "none")
    ok = f"[jobs.a]\nrun = 'true'\n[trigger]\nrun = \"echo {{commit}} >> {out}\"\n"
    main = commit_defs(work_repo, ok, "main tip")
    git(work_repo, "checkout", "-q", "-b", "feature")
    mid = commit_defs(work_repo, ok + "# mid\n", "not a tip")
    feature = commit_defs(work_repo, ok + "# feature\n", "feature tip")
    git(work_repo, "checkout", "-q", "-b", "broken")
    broken = commit_defs(work_repo, "[jobs.a]\nrun = 'true'\n[trigger]\nrun = 'echo nope >&2; exit 7'\n")
    git(work_repo, "checkout", "-q", "-b", "done")
    finished = commit_defs(work_repo, ok + "# done\n", "done tip")
    assert cli(work_repo, "work", "any", key=key[1]).returncode == 0  # HEAD = `done`: finished
    assert cli(work_repo, "release", mid, key=key[1]).returncode == 0  # released, not a tip
    git(work_repo, "checkout", "-q", "main")

    res = cli(work_repo, "work", "trigger", key=key[1])
    assert res.returncode == 1, res.stdout + res.stderr  # one trigger failed …
    assert "exit status 7: nope" in res.stdout and broken[:12] in res.stdout
    lines = out.read_text().split()
    assert lines == [feature]  # … the others still ran, once each
    assert main not in lines and finished not in lines  # HEAD, and a commit with nothing left
    assert mid not in lines  # jobs in the ledger are no reason to run a commit's trigger

    out.unlink()
    store = jobs.Jobs.open(work_repo, key[0])
    results = trigger(Workshop(store), intent=True)  # branch tips only
    assert {r.commit: r.ok for r in results} == {feature: True, broken: False}
    assert out.read_text().split() == [feature]


def test_trigger_substitutes_a_shell_quoted_commit(
    work_repo: Path, key: tuple[cob.Signer, Path], tmp_path: Path
) -> None:
    out = tmp_path / "args"
    # the trigger reports through a host file: a sandbox (own /tmp) would hide it
    git(work_repo, "config", "jobs.isolation", "none")
    commit_defs(
        work_repo, f"[jobs.a]\nrun = 'true'\n[trigger]\nrun = \"printf '%s\\\\n' {{commit}} > {out}\"\n"
    )
    git(work_repo, "checkout", "-q", "-b", "side", "HEAD~1")
    res = cli(work_repo, "work", "trigger", "--intent", key=key[1])
    assert res.returncode == 0, res.stdout + res.stderr
    assert out.read_text().strip() == git(work_repo, "rev-parse", "main").strip()


def test_work_any_interrupted_finishes_the_run_cancelled(
    work_repo: Path, key: tuple[cob.Signer, Path], tmp_path: Path
) -> None:
    mark = tmp_path / "started"
    # the job reports pids and marks through host paths: a sandbox (own /tmp, own pids) would hide them
    git(work_repo, "config", "jobs.isolation", "none")
    sha = commit_defs(work_repo, f'[jobs.long]\nrun = "touch {mark}; sleep 60"\n')
    code, out = interrupt_work_any(work_repo, key[1], mark, signal.SIGTERM)
    assert code == 130 and "cancelled" in out
    assert reasons(jobs.Jobs.open(work_repo), sha, key[0].nid) == {"long": ["cancelled"]}
    assert Journal(pygit2.Repository(str(work_repo))).entries() == []


def test_worker_errors_are_classified_and_back_off_with_jitter() -> None:
    from jobs.node.retry import Backoff, classify, policies

    assert classify(cob.TransportError("cannot reach git://x: Connection refused")).policy == "node"
    pressure = classify(cob.TransportError("HTTP 429 Too Many Requests; Retry-After: 7"))
    assert (pressure.policy, pressure.hint) == ("service", 7.0)
    assert classify(cob.TransportError("The requested URL returned error: 503")).policy == "service"
    assert classify(ValueError("something odd")).policy == "degraded"

    table = policies(1.0)
    low, high = Backoff(table, rand=lambda: 0.0), Backoff(table, rand=lambda: 1.0)
    err = cob.TransportError("connection refused")
    lows = [low.next_delay(err)[1] for _ in range(4)]
    highs = [high.next_delay(err)[1] for _ in range(4)]
    assert highs == [1.0, 2.0, 4.0, 8.0] and lows == [0.5, 1.0, 2.0, 4.0]  # exponential, jittered
    assert Backoff(table).next_delay(cob.TransportError("429 retry-after: 300"))[1] >= 300  # the hint
    capped = Backoff(table, rand=lambda: 1.0)
    assert max(capped.next_delay(err)[1] for _ in range(20)) == table["node"].cap
