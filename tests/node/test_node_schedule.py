"""Definitions that fan out and depend on outcomes: matrix jobs and needs with states.

Real repositories and the real CLI as a subprocess: what a maintainer writes in
``.git-jobs.toml`` and what every node then records.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cob
import jobs
from jobs.node import Workshop, parse_definitions
from tests.conftest import git
from tests.node.test_node_work import (  # noqa: F401
    FakeClock,
    cli,
    commit_defs,
    key,
    new_key,
    reasons,
    runs_by_name,
    work_repo,
)
from tests.spec.test_definitions import THREE_MISTAKES

MATRIX = """
[jobs.build]
run = "echo built"
[jobs.test]
run = "echo python={matrix.python} os={matrix.os}"
needs = ["build"]
[jobs.test.matrix]
python = ["3.11", "3.12"]
os = ["linux", "mac"]
exclude = [{ os = "mac" }]
include = [{ python = "3.13", os = "linux" }]
[jobs.report]
run = "echo report"
needs = ["test"]
"""

NAMES = [
    "build",
    "test (python=3.11, os=linux)",
    "test (python=3.12, os=linux)",
    "test (python=3.13, os=linux)",
    "report",
]


@pytest.mark.slow
def test_a_matrix_gives_the_same_named_jobs_with_the_same_ids_on_two_nodes(
    work_repo: Path,
    tmp_path: Path,
    key: tuple[cob.Signer, Path],
) -> None:
    sha = commit_defs(work_repo, MATRIX)
    _, other_key = new_key(tmp_path / "other.key")
    one = json.loads(cli(work_repo, "release", "--json", key=key[1], check=True).stdout)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(work_repo), str(clone))
    two = json.loads(cli(clone, "release", sha, "--json", key=other_key, check=True).stdout)
    assert sorted(j["name"] for j in one["jobs"]) == sorted(NAMES)
    assert {j["name"]: j["id"] for j in one["jobs"]} == {j["name"]: j["id"] for j in two["jobs"]}

    res = cli(work_repo, "work", "any", key=key[1])
    assert res.returncode == 0, res.stdout + res.stderr
    assert reasons(jobs.Jobs.open(work_repo), sha, key[0].nid) == {n: ["succeeded"] for n in NAMES}
    log = cli(work_repo, "logs", "HEAD:test (python=3.12, os=linux)", check=True).stdout
    assert "python=3.12 os=linux" in log
    # `report` needs the whole matrix: its plan lists every combination.
    plan = json.loads(cli(work_repo, "work", "any", "--dry-run", "--json", key=key[1], check=True).stdout)
    report = next(p for p in plan["jobs"] if p["name"] == "report")
    assert report["needs"] == NAMES[1:4]


NOTIFY = """
[jobs.test]
run = "echo testing; exit 3"
[jobs.notify]
run = "echo notifying"
needs = { test = "any" }
[jobs.cleanup]
run = "echo cleaning"
needs = { test = "failed" }
[jobs.deploy]
run = "echo deploying"
needs = ["test"]
[jobs.celebrate]
run = "echo yay"
needs = { test = "succeeded" }
"""


def test_needs_with_states_run_notify_and_cleanup_after_a_failure(
    work_repo: Path,
    key: tuple[cob.Signer, Path],
) -> None:
    sha = commit_defs(work_repo, NOTIFY)
    res = cli(work_repo, "work", "any", key=key[1])
    assert res.returncode == 1, res.stdout + res.stderr
    assert reasons(jobs.Jobs.open(work_repo), sha, key[0].nid) == {
        "test": ["failed"],
        "notify": ["succeeded"],
        "cleanup": ["succeeded"],
        "deploy": ["skipped"],
        "celebrate": ["skipped"],
    }
    assert "notifying" in cli(work_repo, "logs", "HEAD:notify", check=True).stdout


def test_a_need_that_must_fail_skips_its_user_after_a_success(
    work_repo: Path,
    key: tuple[cob.Signer, Path],
) -> None:
    sha = commit_defs(work_repo, NOTIFY.replace("exit 3", "true"))
    res = cli(work_repo, "work", "any", key=key[1])
    assert res.returncode == 1, res.stdout + res.stderr
    assert reasons(jobs.Jobs.open(work_repo), sha, key[0].nid) == {
        "test": ["succeeded"],
        "notify": ["succeeded"],
        "cleanup": ["skipped"],
        "deploy": ["succeeded"],
        "celebrate": ["succeeded"],
    }
    assert "need 'test' cannot end failed" in cli(work_repo, "logs", "HEAD:cleanup", check=True).stdout


# -- parallel jobs and resources --------------------------------------------------------------
def _intervals(store: jobs.Jobs, commit: str, nid: str) -> dict[str, tuple[float, float]]:
    out = {}
    for name, runs in runs_by_name(store, commit, nid).items():
        (run,) = runs
        assert run.finished_at is not None and run.succeeded, (name, run)
        out[name] = (run.started_at.timestamp(), run.finished_at.timestamp())
    return out


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


PARALLEL = """
[jobs.one]
run = "sleep 3; test -f .git-jobs.toml; touch mine; ls"
[jobs.two]
run = "sleep 3; test ! -e mine; touch mine"
[jobs.after]
run = "echo after"
needs = ["one", "two"]
"""


@pytest.mark.slow
def test_jobs_2_runs_independent_jobs_at_once_and_needs_after_both(
    work_repo: Path,
    key: tuple[cob.Signer, Path],
) -> None:
    sha = commit_defs(work_repo, PARALLEL)
    res = cli(work_repo, "work", "any", "--jobs", "2", key=key[1])
    assert res.returncode == 0, res.stdout + res.stderr
    spans = _intervals(jobs.Jobs.open(work_repo), sha, key[0].nid)
    # Each in its own checkout (`two` does not see the file `one` made), and at the same time.
    assert _overlap(spans["one"], spans["two"]), spans
    assert spans["after"][0] >= max(spans["one"][1], spans["two"][1])


@pytest.mark.slow
def test_a_resource_of_capacity_1_serialises_the_jobs_that_share_it(
    work_repo: Path,
    key: tuple[cob.Signer, Path],
) -> None:
    text = PARALLEL.replace("[jobs.two]\n", '[jobs.two]\nresources = ["gpu"]\n').replace(
        "[jobs.one]\n", '[jobs.one]\nresources = ["gpu"]\n'
    )
    sha = commit_defs(work_repo, text)
    res = cli(work_repo, "work", "any", "--jobs", "2", "--resource", "gpu=1", key=key[1])
    assert res.returncode == 0, res.stdout + res.stderr
    spans = _intervals(jobs.Jobs.open(work_repo), sha, key[0].nid)
    assert not _overlap(spans["one"], spans["two"]), spans


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--jobs", "0"], "--jobs"),
        (["--jobs", "x"], "--jobs"),
        (["--resource", "gpu"], "NAME=CAPACITY"),
        (["--resource", "gpu=-1"], "capacity"),
    ],
)
@pytest.mark.slow
def test_bad_jobs_or_resource_flags_are_one_line_errors(
    work_repo: Path,
    key: tuple[cob.Signer, Path],
    args: list[str],
    problem: str,
) -> None:
    commit_defs(work_repo, PARALLEL)
    res = cli(work_repo, "work", "any", *args, key=key[1])
    assert res.returncode == 2 and problem in res.stderr and len(res.stderr.strip().splitlines()) == 1


# -- conditions -------------------------------------------------------------------------------
DEPLOY = """
[jobs.test]
run = "echo testing"
[jobs.deploy]
run = "echo deploying"
needs = ["test"]
if = 'branch("main") && !changed("docs/*")'
[jobs.docs]
run = "echo docs"
if = 'changed("docs/*")'
[jobs.after]
run = "echo after"
needs = ["deploy"]
"""


@pytest.mark.slow
def test_a_condition_on_branch_skips_deploy_off_main_and_runs_it_on_main(
    work_repo: Path,
    key: tuple[cob.Signer, Path],
) -> None:
    git(work_repo, "checkout", "-q", "-b", "feature")
    sha = commit_defs(work_repo, DEPLOY)
    res = cli(work_repo, "work", "any", key=key[1])
    assert res.returncode == 1, res.stdout + res.stderr
    store = jobs.Jobs.open(work_repo)
    assert reasons(store, sha, key[0].nid) == {
        "test": ["succeeded"],
        "deploy": ["skipped"],
        "docs": ["skipped"],
        "after": ["skipped"],
    }
    why = cli(work_repo, "logs", "HEAD:deploy", check=True).stdout
    assert "its condition is false" in why and 'branch("main")' in why
    # Recorded once: another pass on the same ref changes nothing.
    cli(work_repo, "work", "any", key=key[1])
    assert reasons(jobs.Jobs.open(work_repo), sha, key[0].nid)["deploy"] == ["skipped"]
    # The same commit reached by main: deploy runs (a skip is not an attempt).
    git(work_repo, "branch", "-f", "main", sha)
    res = cli(work_repo, "work", "any", "main", key=key[1])
    assert res.returncode == 1, res.stdout + res.stderr  # docs is still skipped: no docs/ changed
    got = reasons(jobs.Jobs.open(work_repo), sha, key[0].nid)
    assert got["deploy"] == ["skipped", "succeeded"] and got["after"] == ["skipped", "succeeded"]
    assert got["docs"] == ["skipped"]


def test_a_condition_on_changed_paths_and_on_a_needs_outcome(
    work_repo: Path,
    key: tuple[cob.Signer, Path],
) -> None:
    commit_defs(work_repo, "[jobs.x]\nrun = 'true'\n")
    (work_repo / "docs").mkdir()
    (work_repo / "docs" / "a.md").write_text("hello\n")
    git(work_repo, "add", "docs")
    text = """
[jobs.docs]
run = "echo docs"
if = 'changed("docs/*")'
[jobs.test]
run = "exit 1"
[jobs.report]
run = "echo reporting failure"
needs = { test = "any" }
if = 'failed("test") || (true && !true)'
"""
    sha = commit_defs(work_repo, text)
    res = cli(work_repo, "work", "any", key=key[1])
    assert res.returncode == 1
    assert reasons(jobs.Jobs.open(work_repo), sha, key[0].nid) == {
        "docs": ["succeeded"],
        "test": ["failed"],
        "report": ["succeeded"],
    }


# -- labels -----------------------------------------------------------------------------------
LABELS = """
[jobs.any]
run = "echo anywhere"
[jobs.gpu]
run = "echo on a gpu"
runs_on = ["gpu", "linux"]
[jobs.after]
run = "echo after the gpu"
needs = ["gpu"]
"""


@pytest.mark.slow
def test_a_job_that_runs_on_gpu_is_left_alone_without_the_label_and_run_with_it(
    work_repo: Path,
    tmp_path: Path,
    key: tuple[cob.Signer, Path],
) -> None:
    sha = commit_defs(work_repo, LABELS)
    res = cli(work_repo, "work", "any", key=key[1])
    assert res.returncode == 0, res.stdout + res.stderr  # all it may serve has succeeded
    store = jobs.Jobs.open(work_repo)
    # Nothing recorded about the jobs it cannot serve: no run, not even the job.
    assert reasons(store, sha, key[0].nid) == {"any": ["succeeded"]}
    plan = json.loads(cli(work_repo, "work", "any", "--dry-run", "--json", key=key[1], check=True).stdout)
    actions = {p["name"]: p["action"] for p in plan["jobs"]}
    assert actions == {"any": "done", "gpu": "elsewhere", "after": "elsewhere"}
    # Another node, with the label from its git config, serves them.
    _, other_key = new_key(tmp_path / "other.key")
    git(work_repo, "config", "jobs.labels", "gpu")
    res = cli(work_repo, "work", "any", key=other_key)
    assert res.returncode == 0, res.stdout + res.stderr
    got = {j.name: j for j in jobs.Jobs.open(work_repo).find_by_commit(sha)}
    nid = next(n for n in got["gpu"].runs() if n != key[0].nid)
    assert reasons(jobs.Jobs.open(work_repo), sha, nid) == {
        "any": ["succeeded"],
        "gpu": ["succeeded"],
        "after": ["succeeded"],
    }
    # and --label is checked like any input
    bad = cli(work_repo, "work", "any", "--label", "G PU", key=key[1])
    assert bad.returncode == 2 and "label" in bad.stderr


# -- failure classes and flakiness ------------------------------------------------------------
def test_retry_on_retries_only_the_named_failure_classes(
    work_repo: Path,
    key: tuple[cob.Signer, Path],
) -> None:
    text = """
[jobs.test]
run = "exit 1"
retry = { max = 3, on = ["error", "timed_out"] }
[jobs.slow]
run = "sleep 5"
timeout = "200ms"
retry = { max = 2, on = ["error", "timed_out"] }
"""
    sha = commit_defs(work_repo, text)
    clock = FakeClock()
    ws = Workshop(jobs.Jobs.open(work_repo, key[0]), clock=clock.time, sleep=clock.sleep)
    report = ws.work_any(sha, comprehensive=True)
    # A test's own failure is not retried; the timeout (an infrastructure class here) is.
    assert reasons(jobs.Jobs.open(work_repo), sha, key[0].nid) == {
        "test": ["failed"],
        "slow": ["timed_out", "timed_out"],
    }
    plan = {p.name: p for p in report.plan}
    assert plan["test"].action == "exhausted" and "retry.on" in plan["test"].reason
    with pytest.raises(jobs.DefinitionError, match=r"jobs\.a\.retry\.on"):
        parse_definitions("[jobs.a]\nrun = 'x'\nretry = { on = ['cancelled'] }\n", "ab" * 20)


def test_a_job_that_passed_only_on_a_later_attempt_is_flaky_in_status_and_show(
    work_repo: Path,
    key: tuple[cob.Signer, Path],
    tmp_path: Path,
) -> None:
    counter = tmp_path / "count"
    git(work_repo, "config", "jobs.isolation", "none")  # the counter lives outside the checkout
    script = f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; test $n -ge 2"
    sha = commit_defs(work_repo, f'[jobs.wobbly]\nrun = "{script}"\nretry = 2\n[jobs.steady]\nrun = "true"\n')
    clock = FakeClock()
    ws = Workshop(jobs.Jobs.open(work_repo, key[0]), clock=clock.time, sleep=clock.sleep)
    assert ws.work_any(sha, comprehensive=True).ok
    status = cli(work_repo, "status", key=key[1], check=True).stdout
    line = next(x for x in status.splitlines() if "wobbly" in x)
    assert "flaky (1 failed)" in line
    assert "flaky" not in next(x for x in status.splitlines() if "steady" in x)
    shown = cli(work_repo, "show", _job_id(work_repo, sha, "wobbly"), check=True)
    assert "flaky: passed only after 1 failed attempt" in shown.stdout


def _job_id(path: Path, sha: str, name: str) -> str:
    return next(j.id for j in jobs.Jobs.open(path).find_by_commit(sha) if j.name == name)


# -- outputs ----------------------------------------------------------------------------------
def test_a_build_output_is_seen_by_the_test_that_needs_it_on_this_node(
    work_repo: Path,
    key: tuple[cob.Signer, Path],
) -> None:
    text = """
[jobs.build]
run = "mkdir -p dist && echo wheel > dist/x.whl && ln -s /etc/hostname dist/link && echo junk > other"
outputs = ["dist/", "missing/"]
[jobs.test]
run = "test -f dist/x.whl && grep -q wheel dist/x.whl && test -L dist/link && test ! -e other"
needs = ["build"]
[jobs.unrelated]
run = "test ! -e dist"
"""
    sha = commit_defs(work_repo, text)
    res = cli(work_repo, "work", "any", key=key[1])
    assert res.returncode == 0, res.stdout + res.stderr + cli(work_repo, "logs", "HEAD:test").stdout
    assert reasons(jobs.Jobs.open(work_repo), sha, key[0].nid) == {
        "build": ["succeeded"],
        "test": ["succeeded"],
        "unrelated": ["succeeded"],
    }
    assert "outputs of build copied" in cli(work_repo, "logs", "HEAD:test", check=True).stdout


# -- every error at once; an invalid file is a permanent fact ---------------------------------
@pytest.mark.slow
def test_a_node_records_an_invalid_file_once_and_never_retries_it(
    work_repo: Path,
    key: tuple[cob.Signer, Path],
) -> None:
    import os
    import signal
    import subprocess
    import time

    from tests.node.test_node_work import CLI

    sha = commit_defs(work_repo, THREE_MISTAKES)
    log = work_repo.parent / "node.log"
    hub = work_repo.parent / "hub.git"
    git(work_repo.parent, "clone", "-q", "--bare", str(work_repo), str(hub))
    git(work_repo, "remote", "add", "origin", str(hub))

    def _passes(pid: int) -> int:
        """Passes of the work worker of the node process ``pid`` (its heartbeat file)."""
        try:
            beat = json.loads((work_repo / ".git" / "git-jobs" / "node.json").read_text())
            return int(beat["workers"]["worker:work"]["runs"]) if beat["pid"] == pid else 0
        except (OSError, ValueError, KeyError):
            return 0

    def run_node_until(pred: str) -> str:
        env = dict(os.environ, GIT_JOBS_KEY=str(key[1]))
        with open(log, "wb") as fh:
            args = ["node", "--remote", "origin", "--interval", "0.2s", "--isolation", "none"]
            proc = subprocess.Popen([*CLI, *args], cwd=work_repo, env=env, stdout=fh, stderr=fh)
        try:
            deadline = time.monotonic() + 60
            while pred not in log.read_text():
                assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
                time.sleep(0.1)
            seen = _passes(proc.pid)
            while _passes(proc.pid) < seen + 6:  # several more passes of this process's work
                assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        return log.read_text()

    first = run_node_until("not tried again")
    assert first.count("jobs.a.if") <= 2 and "not tried again" in first  # work (and release) once
    recorded = (work_repo / ".git" / "git-jobs" / "invalid-definitions").read_text()
    assert sha in recorded
    again = run_node_until("node started")
    assert "jobs.a.if" not in again  # after a restart: neither released nor worked, not reported


@pytest.mark.slow
def test_the_node_runs_jobs_in_parallel_with_its_labels_and_resources(
    work_repo: Path,
    key: tuple[cob.Signer, Path],
) -> None:
    import os
    import signal
    import subprocess
    import time

    from tests.node.test_node_work import CLI

    text = PARALLEL + '[jobs.gpu]\nrun = "true"\nruns_on = ["gpu"]\nresources = ["gpu"]\n'
    sha = commit_defs(work_repo, text)
    hub = work_repo.parent / "hub.git"
    git(work_repo.parent, "clone", "-q", "--bare", str(work_repo), str(hub))
    git(work_repo, "remote", "add", "origin", str(hub))
    git(work_repo, "config", "jobs.resources", "gpu=1")
    env = dict(os.environ, GIT_JOBS_KEY=str(key[1]))
    args = ["node", "--remote", "origin", "--interval", "0.2s", "--jobs", "2", "--label", "gpu"]
    log = work_repo.parent / "node.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([*CLI, *args], cwd=work_repo, env=env, stdout=fh, stderr=fh)
    want = {"one": ["succeeded"], "two": ["succeeded"], "after": ["succeeded"], "gpu": ["succeeded"]}
    try:
        deadline = time.monotonic() + 90
        while reasons(jobs.Jobs.open(work_repo), sha, key[0].nid) != want:
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    spans = _intervals(jobs.Jobs.open(work_repo), sha, key[0].nid)
    assert _overlap(spans["one"], spans["two"]), spans
