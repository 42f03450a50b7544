"""Verdicts a maintainer can trust (issue 24): every case through the installed CLI.

Real processes, real git: a bare hub at a path, nodes that are clones with keys of their own,
and the maintainer reading `git jobs status` (text, `--json`, `--branch`, `--watch`) and the
static report. The rule under test: *pending means someone will still act*; anything else is a
final state, so `--watch` ends on it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cob
from tests.clirunner import GIT_JOBS, Result, gj, ok
from tests.conftest import git, init_repo
from tests.node.test_node_work import commit_defs


def new_key(tmp: Path, name: str) -> tuple[str, Path]:
    signer = cob.Signer.generate()
    path = tmp / f"{name}.key"
    signer.save(path)
    return signer.nid, path


def policy(nodes: dict[str, str], extra: str = "") -> str:
    table = ", ".join(f'"{nid}" = "{name}"' for nid, name in nodes.items())
    return f"\n[policy]\nnodes = {{ {table} }}\n{extra}"


def status(path: Path, *args: str, key: Path | None = None) -> tuple[int, Any]:
    r = gj(path, "status", *args, "--json", key=key)
    return r.code, r.json


def by_name(data: Any) -> dict[str, Any]:
    return {j["name"]: j for j in data["jobs"]}


def node(tmp: Path, name: str) -> tuple[Path, str, Path]:
    path = tmp / name
    init_repo(path)
    git(path, "config", "jobs.isolation", "none")  # `exit 1` needs no sandbox; faster
    nid, key = new_key(tmp, name)
    return path, nid, key


def report_outcome(path: Path, sha: str, out: Path) -> str:
    ok(path, "report", "--html", str(out), "--branch", "main", "--commits", "5")
    data = json.loads((out / f"commit-{sha}.json").read_text())
    return str(data["status"]["outcome"])


# -- 1. retry.on: one rule for status and the node's plan -------------------------------------
RETRY_ON = """
[jobs.unit]
run = "exit 1"
retry = { max = 3, on = ["error", "timed_out"] }
"""


@pytest.mark.slow
def test_a_failure_retry_on_does_not_cover_is_failed_everywhere_and_the_plan_agrees(tmp_path: Path) -> None:
    path, nid, key = node(tmp_path, "solo")
    sha = commit_defs(path, RETRY_ON)
    assert gj(path, "work", "any", key=key).code == 1  # a real failure: not retried
    code, data = status(path, key=key)
    assert (code, data["outcome"]) == (1, "failed")
    assert by_name(data)["unit"]["state"] == "failed" and by_name(data)["unit"]["verdict"] == "failed"
    plan = ok(path, "work", "any", "--dry-run", "--json", key=key).json
    assert [(j["name"], j["action"]) for j in plan["jobs"]] == [("unit", "exhausted")]
    assert "retry.on" in plan["jobs"][0]["reason"]
    assert data["progress"][nid]["unit"]["state"] == "failed"
    # Every view says the same, and --watch / --fail-fast end at once (they waited forever).
    text = gj(path, "status", key=key)
    assert text.code == 1 and "failed: 1 failed" in text.out and "retrying" not in text.out
    started = time.monotonic()
    for flags in ((), ("--fail-fast",)):
        watched = gj(path, "status", "--watch", "--interval", "30", *flags, key=key)
        assert watched.code == 1 and time.monotonic() - started < 25, watched
    branch = ok(path, "status", "--branch", "main", "--json").json
    assert branch["commits"][0]["commit"] == sha and branch["commits"][0]["outcome"] == "failed"
    assert report_outcome(path, sha, tmp_path / "report") == "failed"


def test_a_failure_retry_on_covers_is_retrying_while_the_plan_waits_for_it(tmp_path: Path) -> None:
    path, nid, key = node(tmp_path, "solo")
    commit_defs(path, RETRY_ON.replace('on = ["error", "timed_out"]', 'on = ["failed"], pattern = "hours"'))
    assert gj(path, "work", "any", key=key).code == 8  # its retry is not due
    code, data = status(path, key=key)
    assert (code, data["outcome"], by_name(data)["unit"]["state"]) == (8, "pending", "retrying")
    plan = ok(path, "work", "any", "--dry-run", "--json", key=key).json
    assert [(j["name"], j["action"]) for j in plan["jobs"]] == [("unit", "wait")]
    assert data["progress"][nid]["unit"]["state"] == "retrying"


# -- 2. required covers a matrix; a required name the commit does not define -------------------
MATRIX = """
[jobs.test]
run = "true"
matrix = { python = ["3.11", "3.12"] }
"""


@pytest.mark.slow
def test_required_names_a_matrix_definition_and_an_undefined_name_fails_the_gate(tmp_path: Path) -> None:
    path, nid, key = node(tmp_path, "alice")
    sha = commit_defs(path, MATRIX + policy({nid: "alice"}, 'required = ["test"]\n'))
    code, data = status(path, key=key)
    assert code == 8 and data["required"] == ["test (python=3.11)", "test (python=3.12)"]
    assert data["undefined"] == [] and data["expected"] == data["required"]
    ok(path, "work", "any", key=key)
    code, data = status(path, key=key)
    assert (code, data["outcome"]) == (0, "succeeded")
    assert {j["verdict"] for j in data["jobs"]} == {"passed"}
    # The policy now requires `docs` too, which this commit does not define: failed, said once.
    other = commit_defs(path, MATRIX + policy({nid: "alice"}, 'required = ["test", "docs"]\n'), "docs")
    ok(path, "work", "any", key=key)
    code, data = status(path, key=key)
    assert (code, data["outcome"], data["undefined"]) == (1, "failed", ["docs"])
    assert "docs" not in data["expected"]
    text = gj(path, "status", key=key)
    assert text.code == 1
    assert text.out.count("required job 'docs' is not defined by this commit") == 1
    watched = gj(path, "status", "--watch", "--interval", "30", key=key)
    assert watched.code == 1
    assert report_outcome(path, other, tmp_path / "report") == "failed"
    assert sha != other


# -- 6. pushes never built; commits with no jobs defined ---------------------------------------
SLOW_OK = """
[jobs.check]
run = "true"
"""


@pytest.mark.slow
def test_two_pushes_3s_apart_with_depth_1_both_get_a_verdict_and_history_before_ci_is_final(
    tmp_path: Path,
) -> None:
    hub = tmp_path / "hub.git"
    init_repo(hub, bare=True)
    dev = tmp_path / "dev"
    init_repo(dev)  # history before CI: no .git-jobs.toml
    git(dev, "remote", "add", "origin", str(hub))
    first = commit_defs(dev, SLOW_OK, "ci")
    git(dev, "push", "-q", "origin", "main")
    follower = tmp_path / "follower"
    git(tmp_path, "clone", "-q", str(hub), str(follower))
    git(follower, "config", "jobs.isolation", "none")
    _, key = new_key(tmp_path, "follower")
    follow = ("work", "any", "--follow", "origin:refs/heads/main", "--depth", "1")
    ok(follower, *follow, key=key)
    # Two pushes 3 s apart; the node looks once, after both (it missed the first).
    second = commit_defs(dev, SLOW_OK + "# 2\n", "second")
    git(dev, "push", "-q", "origin", "main")
    third = _commit_later(dev, 3, SLOW_OK + "# 3\n", "third")  # made 3 s after the second
    git(dev, "push", "-q", "origin", "main")
    worked = ok(follower, *follow, "--json", key=key).json
    assert [c["commit"] for c in worked["commits"]] == [third, second]  # newest first
    ok(follower, "sync", str(hub), key=key)
    maintainer = tmp_path / "maintainer"
    git(tmp_path, "clone", "-q", str(hub), str(maintainer))
    ok(maintainer, "sync", "origin")
    for sha in (first, second, third):
        assert status(maintainer, sha)[1]["outcome"] == "succeeded", sha
    # The commit before CI: no jobs defined — final (exit 1, --watch ends), never pending.
    before = git(maintainer, "rev-parse", f"{first}~1").strip()
    code, data = status(maintainer, before)
    assert (code, data["outcome"]) == (1, "none")
    text = gj(maintainer, "status", before, "--watch", "--interval", "30")
    assert text.code == 1 and "none: no jobs defined" in text.out
    outcomes = [c["outcome"] for c in ok(maintainer, "status", "--branch", "main", "--json").json["commits"]]
    assert outcomes == ["succeeded", "succeeded", "succeeded", "none"]
    # The next pass finds nothing new to look back for: only the tip (already done).
    again = ok(follower, *follow, "--dry-run", "--json", key=key).json
    assert [c["commit"] for c in again["commits"]] == [third]


def _commit_later(path: Path, seconds: int, text: str, message: str) -> str:
    """Commit ``.git-jobs.toml`` dated ``seconds`` after HEAD, as if made that much later."""
    when = f"@{int(git(path, 'log', '-1', '--format=%ct')) + seconds} +0000"
    (path / ".git-jobs.toml").write_text(text)
    git(path, "add", ".git-jobs.toml")
    env = dict(os.environ, GIT_AUTHOR_DATE=when, GIT_COMMITTER_DATE=when)
    subprocess.run(["git", "commit", "-q", "-m", message], cwd=path, env=env, check=True, capture_output=True)
    return git(path, "rev-parse", "HEAD").strip()


def test_a_node_that_never_worked_on_a_branch_starts_from_its_tip(tmp_path: Path) -> None:
    hub = tmp_path / "hub.git"
    init_repo(hub, bare=True)
    dev = tmp_path / "dev"
    init_repo(dev)
    git(dev, "remote", "add", "origin", str(hub))
    for n in range(3):
        tip = commit_defs(dev, SLOW_OK + f"# {n}\n", f"ci {n}")
    git(dev, "push", "-q", "origin", "main")
    follower = tmp_path / "follower"
    git(tmp_path, "clone", "-q", str(hub), str(follower))
    _, key = new_key(tmp_path, "follower")
    git(follower, "fetch", "-q", "origin", "+refs/heads/main:refs/git-jobs/follow/origin/heads/main")
    follow = ("--follow", "origin:refs/heads/main")
    plan = ok(follower, "work", "any", *follow, "--dry-run", "--json", key=key).json
    assert [c["commit"] for c in plan["commits"]] == [tip]  # no backlog to build: a new node


# -- 6. a released job nobody starts: not built, once every ranked node had its takeover ------
@pytest.mark.slow
def test_a_released_job_no_ranked_node_starts_is_not_built_after_their_takeovers(tmp_path: Path) -> None:
    path, alice, alice_key = node(tmp_path, "maintainer")
    bob, _ = new_key(tmp_path, "bob")
    extra = f'takeover = "2s"\nrequesters = ["{alice}"]\n'
    sha = commit_defs(path, SLOW_OK + policy({alice: "alice", bob: "bob"}, extra))
    git(path, "config", "jobs.lostGrace", "2s")  # how long past the last takeover a reader waits
    ok(path, "release", key=alice_key)  # alice asks; neither node ever starts
    code, data = status(path)
    assert code == 8 and by_name(data)["check"]["verdict"] == "expected"
    assert by_name(data)["check"]["assigned"]  # someone is asked: pending
    time.sleep(2.5)  # not every ranked node had its 2 s turn yet, let alone the 2 s grace
    assert status(path)[0] == 8
    time.sleep(4.5)  # both had their turn (4 s), and the grace (2 s) is over
    code, data = status(path)
    assert (code, data["outcome"]) == (1, "not_built")
    assert by_name(data)["check"]["verdict"] == "not_built" and data["counts"] == {"not_built": 1}
    text = gj(path, "status", "--watch", "--interval", "30")
    assert text.code == 1 and "not_built" in text.out
    assert report_outcome(path, sha, tmp_path / "report") == "not_built"


# -- 7. "assigned to X" only where X will run it ------------------------------------------------
@pytest.mark.slow
def test_assigned_is_shown_only_after_a_requester_released_the_job(tmp_path: Path) -> None:
    path, alice, alice_key = node(tmp_path, "maintainer")
    bob, _ = new_key(tmp_path, "bob")
    _, mallory_key = new_key(tmp_path, "mallory")
    asks = f'requesters = ["{alice}"]\n'
    commit_defs(path, SLOW_OK + policy({alice: "alice", bob: "bob"}, asks))
    git(path, "checkout", "-q", "-b", "contrib")
    pr = SLOW_OK + "# a contributor's change\n" + policy({alice: "alice", bob: "bob"}, asks)
    commit_defs(path, pr, "pr")
    ok(path, "release", key=mallory_key)  # only an untrusted key released it
    code, data = status(path)
    assert code == 8 and by_name(data)["check"]["assigned"] is None
    assert "assigned to" not in gj(path, "status").out
    ok(path, "release", key=alice_key)  # a requester asks: now the ranked nodes will run it
    code, data = status(path)
    assigned = by_name(data)["check"]["assigned"]
    assert code == 8 and assigned and set(assigned) <= {alice, bob}
    assert "assigned to" in gj(path, "status").out


# -- 9. solo and small cases -------------------------------------------------------------------
@pytest.mark.slow
def test_solo_rerun_by_the_nodes_own_key_retries_an_exhausted_job(tmp_path: Path) -> None:
    path, nid, key = node(tmp_path, "solo")
    commit_defs(path, "[jobs.unit]\nrun = 'exit 1'\n")
    assert gj(path, "work", "any", key=key).code == 1
    assert status(path, key=key)[1]["outcome"] == "failed"
    plan = ok(path, "work", "any", "--dry-run", "--json", key=key).json
    assert plan["jobs"][0]["action"] == "exhausted"
    rerun = ok(path, "rerun", "HEAD", "--failed", key=key)
    assert "unit" in rerun.out
    code, data = status(path, key=key)  # its node will run it again: pending
    assert (code, by_name(data)["unit"]["state"]) == (8, "retrying")
    assert data["progress"][nid]["unit"]["state"] == "queued"  # fresh attempts on that node
    plan = ok(path, "work", "any", "--dry-run", "--json", key=key).json
    assert plan["jobs"][0]["action"] == "run"
    assert gj(path, "work", "any", key=key).code == 1
    shown = ok(path, "show", "HEAD:unit", "--json").json
    assert [r["reason"] for r in shown["runs"]] == ["failed", "failed"]
    assert status(path, key=key)[1]["outcome"] == "failed"  # one rerun, one fresh attempt


def _note(r: Result) -> list[str]:
    return [line for line in r.err.splitlines() if "will not honour" in line]


@pytest.mark.slow
def test_release_by_a_key_that_is_not_a_requester_says_so_in_one_line(tmp_path: Path) -> None:
    path, alice, alice_key = node(tmp_path, "maintainer")
    _, other_key = new_key(tmp_path, "other")
    commit_defs(path, SLOW_OK)
    assert len(_note(ok(path, "release", key=alice_key))) == 1  # no policy: nobody is a requester
    commit_defs(path, SLOW_OK + policy({alice: "alice"}, f'requesters = ["{alice}"]\n'), "policy")
    assert _note(ok(path, "release", key=alice_key)) == []  # named a requester by the policy
    notes = _note(ok(path, "release", key=other_key))
    assert len(notes) == 1 and "not a requester" in notes[0]


def test_progress_lists_nodes_only_not_a_readers_key(tmp_path: Path) -> None:
    path, alice, alice_key = node(tmp_path, "alice")
    _, reader_key = new_key(tmp_path, "reader")
    commit_defs(path, SLOW_OK + policy({alice: "alice"}))
    ok(path, "work", "any", key=alice_key)
    _, data = status(path, key=reader_key)
    assert list(data["progress"]) == [alice]
    _, data = status(path, key=alice_key)
    assert list(data["progress"]) == [alice]


def test_work_any_dry_run_on_a_node_set_to_follow_a_ref_plans_what_it_follows(tmp_path: Path) -> None:
    hub = tmp_path / "hub.git"
    init_repo(hub, bare=True)
    dev = tmp_path / "dev"
    init_repo(dev)
    git(dev, "remote", "add", "origin", str(hub))
    tip = commit_defs(dev, SLOW_OK)
    git(dev, "push", "-q", "origin", "main")
    follower = tmp_path / "follower"
    init_repo(follower)  # its HEAD is another history: not what it builds
    git(follower, "remote", "add", "origin", str(hub))
    git(follower, "config", "jobs.follow", "origin:refs/heads/main")
    _, key = new_key(tmp_path, "follower")
    empty = gj(follower, "work", "any", "--dry-run", key=key)
    assert empty.code == 0 and "no followed ref matched" in empty.err  # nothing fetched yet
    git(follower, "fetch", "-q", "origin", "+refs/heads/main:refs/git-jobs/follow/origin/heads/main")
    plan = ok(follower, "work", "any", "--dry-run", "--json", key=key).json
    assert [(c["commit"], c["source"]) for c in plan["commits"]] == [
        (tip, "refs/git-jobs/follow/origin/heads/main")
    ]
    assert "check" in ok(follower, "work", "any", "--dry-run", key=key).out


@pytest.mark.slow
def test_a_solo_node_daemon_honours_a_rerun_by_its_own_key(tmp_path: Path) -> None:
    path, _, key = node(tmp_path, "solo")
    commit_defs(path, "[jobs.unit]\nrun = 'exit 1'\n")
    init_repo(tmp_path / "hub.git", bare=True)  # where it publishes (a node needs a remote)
    git(path, "remote", "add", "origin", str(tmp_path / "hub.git"))
    git(path, "push", "-q", "origin", "main")
    env = dict(os.environ, GIT_JOBS_KEY=str(key))
    log = tmp_path / "node.log"
    with open(log, "wb") as out:
        argv = [GIT_JOBS, "node", "--remote", "origin", "--interval", "0.2s"]
        proc = subprocess.Popen(argv, cwd=path, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    try:

        def runs() -> list[str]:
            shown = gj(path, "show", "HEAD:unit", "--json")
            return [r["reason"] for r in shown.json["runs"]] if shown.code == 0 else []

        wait_until(lambda: runs() == ["failed"], log)
        time.sleep(1)  # several passes: an exhausted job is not run again by itself
        assert runs() == ["failed"]
        ok(path, "rerun", "HEAD", "--failed", key=key)
        wait_until(lambda: runs() == ["failed", "failed"], log)
        assert status(path, key=key)[1]["outcome"] == "failed"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert "Traceback" not in log.read_text()


def wait_until(pred: Callable[[], bool], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


@pytest.mark.slow
def test_a_following_node_daemon_builds_two_pushes_3s_apart_with_depth_1(tmp_path: Path) -> None:
    hub = tmp_path / "hub.git"
    init_repo(hub, bare=True)
    dev = tmp_path / "dev"
    init_repo(dev)
    git(dev, "remote", "add", "origin", str(hub))
    first = commit_defs(dev, SLOW_OK, "ci")
    git(dev, "push", "-q", "origin", "main")
    follower = tmp_path / "follower"
    git(tmp_path, "clone", "-q", str(hub), str(follower))
    git(follower, "config", "jobs.isolation", "none")
    _, key = new_key(tmp_path, "follower")
    log = tmp_path / "follower.log"
    env = dict(os.environ, GIT_JOBS_KEY=str(key))
    argv = [
        GIT_JOBS,
        "node",
        "--remote",
        "origin",
        "--follow",
        "refs/heads/main",
        "--depth",
        "1",
        "--interval",
        "4s",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=follower, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    try:

        def outcome(sha: str) -> str:
            r = gj(follower, "status", sha, "--json")
            return str(r.json["outcome"]) if r.code in (0, 1, 8) and r.out else "unknown"

        wait_until(lambda: outcome(first) == "succeeded", log)
        second = commit_defs(dev, SLOW_OK + "# 2\n", "second")
        git(dev, "push", "-q", "origin", "main")
        time.sleep(3)
        third = commit_defs(dev, SLOW_OK + "# 3\n", "third")
        git(dev, "push", "-q", "origin", "main")
        wait_until(lambda: outcome(third) == "succeeded" and outcome(second) == "succeeded", log)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert "Traceback" not in log.read_text()
