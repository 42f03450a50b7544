"""What a node runs: the tips of the refs it follows, never a commit that merely arrived.

A node started once with ``--follow refs/heads/main`` builds every commit pushed to the hub's
main, with nothing run on the node in between and without its HEAD or branches moving. A
commit someone else made present in the node's object store — with its own definitions, its
own trigger and jobs in the ledger signed by another key — is never run by ``work any``,
``work trigger`` or ``node``.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

import jobs
from jobs.node import Workshop, load_definitions
from jobs.node.config import ConfigError, load_config
from jobs.node.follow import FollowError, parse_follow
from jobs.node.isolation import load_isolation
from jobs.requests import Reruns
from tests.conftest import git, init_repo
from tests.node.test_node_daemon import BUILD_TEST, World, publish, wait_for
from tests.node.test_node_work import cli, commit_defs, new_key, reasons

from . import test_node_daemon

world = test_node_daemon.world  # the hub-and-maintainer fixture
DONE = {"build": ["succeeded"], "test": ["succeeded"]}


def _built(path: Path, sha: str, nid: str) -> bool:
    return reasons(jobs.Jobs.open(path), sha, nid) == DONE


@pytest.mark.slow
def test_a_node_started_once_builds_every_commit_pushed_to_a_followed_branch(world: World) -> None:
    first = publish(world, BUILD_TEST)
    path, signer, key = world.node_repo("follower")
    head, branches = git(path, "rev-parse", "HEAD"), git(path, "for-each-ref", "refs/heads")
    world.start_node(path, key, "origin", extra=("--follow", "refs/heads/main"))
    log = lambda: world.node_log(path)  # noqa: E731
    wait_for(lambda: _built(path, first, signer.nid), what="the first commit", log=log)
    pushed = [first]
    for n in range(3):
        sha = commit_defs(world.maintainer, BUILD_TEST + f"# change {n}\n", f"change {n}")
        git(world.maintainer, "push", "-q", "hub", "main")
        wait_for(lambda sha=sha: _built(path, sha, signer.nid), what=f"change {n}", log=log)  # type: ignore[misc]
        pushed.append(sha)
    # Nothing was run on the node in between; HEAD and the branches never moved.
    assert git(path, "rev-parse", "HEAD") == head
    assert git(path, "for-each-ref", "refs/heads") == branches
    tip = git(path, "rev-parse", "refs/git-jobs/follow/origin/heads/main").strip()
    assert tip == pushed[-1]
    assert "follows origin:refs/heads/main" in world.node_log(path)

    # Where each commit stands on this node, in its heartbeat file.
    def progress() -> tuple[str, dict[str, str]]:
        shown = _beat(path).get("progress", {}).get(pushed[-1], {"source": "", "jobs": {}})
        return shown["source"], {n: j["state"] for n, j in shown["jobs"].items()}

    done = ("refs/git-jobs/follow/origin/heads/main", {"build": "succeeded", "test": "succeeded"})
    wait_for(lambda: progress() == done, what="progress in node.json", log=lambda: str(progress()))


def _beat(path: Path) -> dict[str, Any]:
    try:
        beat: dict[str, Any] = json.loads((path / ".git" / "git-jobs" / "node.json").read_text())
    except (OSError, ValueError):
        return {}
    return beat


def _passes(path: Path) -> int:
    """How many passes the node's work worker has made (from its heartbeat file)."""
    try:
        return int(_beat(path)["workers"]["worker:work"]["runs"])
    except (KeyError, ValueError):
        return 0


def _foreign(world: World, tmp: Path) -> str:
    """Someone with push access to the hub makes a commit with its own jobs and trigger."""
    mallory = tmp / "mallory"
    git(tmp, "clone", "-q", world.url, str(mallory))
    _, mkey = new_key(tmp / "mallory.key")
    ran = tmp / "foreign-ran"
    defs = f"[jobs.evil]\nrun = 'touch {ran}-job'\n[trigger]\nrun = 'touch {ran}-trigger'\n"
    git(mallory, "checkout", "-q", "-b", "evil")
    sha = commit_defs(mallory, defs, "evil")
    cli(mallory, "release", key=mkey, check=True)  # jobs for it, in the ledger, signed by mallory
    cli(mallory, "sync", "origin", key=mkey, check=True)
    git(mallory, "push", "-q", "origin", "evil")
    return sha


@pytest.mark.slow
def test_a_foreign_commit_in_the_object_store_and_ledger_is_never_run(world: World) -> None:
    main = publish(world, BUILD_TEST)
    path, signer, key = world.node_repo("careful")
    # markers on the host show whether anything of the foreign commit ran at all
    git(path, "config", "jobs.isolation", "none")
    foreign = _foreign(world, world.tmp)
    git(path, "fetch", "-q", "origin")  # the commit is in the node's object store …
    cli(path, "sync", "origin", key=key, check=True)  # … and its jobs are in the node's ledger
    store = jobs.Jobs.open(path)
    assert git(path, "cat-file", "-t", foreign).strip() == "commit"
    assert [j.name for j in store.find_by_commit(foreign)] == ["evil"]

    assert cli(path, "work", "any", key=key).returncode == 0
    assert cli(path, "work", "any", "--follow", "origin:refs/heads/main", key=key).returncode == 0
    assert _built(path, main, signer.nid)  # what it follows does run
    for args in (("work", "trigger"), ("work", "trigger", "--intent")):
        res = cli(path, *args, key=key)
        assert res.returncode == 0 and foreign[:12] not in res.stdout, res
    node = world.start_node(path, key, "origin", extra=("--follow", "refs/heads/main"))
    wait_for(lambda: _passes(path) >= 3, what="three passes of the node", log=lambda: world.node_log(path))
    node.send_signal(signal.SIGTERM)
    assert node.wait(timeout=30) == 0
    store = jobs.Jobs.open(path)
    assert reasons(store, foreign, signer.nid) == {"evil": []}
    assert not (world.tmp / "foreign-ran-job").exists()
    assert not (world.tmp / "foreign-ran-trigger").exists()
    # Following it is the node's own decision: then, and only then, it runs.
    res = cli(path, "work", "any", "--follow", "origin:refs/heads/evil", "--json", key=key)
    assert res.returncode == 0, res
    assert reasons(jobs.Jobs.open(path), foreign, signer.nid) == {"evil": ["succeeded"]}
    assert (world.tmp / "foreign-ran-job").exists()


@pytest.mark.slow
def test_work_any_takes_revisions_and_a_one_shot_follow_with_depth(world: World) -> None:
    first = publish(world, BUILD_TEST)
    path, signer, key = world.node_repo("oneshot")
    second = commit_defs(world.maintainer, BUILD_TEST + "# 2\n", "second")
    third = commit_defs(world.maintainer, BUILD_TEST + "# 3\n", "third")
    git(world.maintainer, "push", "-q", "hub", "main")
    res = cli(path, "work", "any", "--follow", "origin:refs/heads/main", "--depth", "2", "--json", key=key)
    assert res.returncode == 0, res
    data = json.loads(res.stdout)
    assert [c["commit"] for c in data["commits"]] == [third, second]  # newest first, depth 2
    store = jobs.Jobs.open(path)
    assert reasons(store, third, signer.nid) == DONE and reasons(store, second, signer.nid) == DONE
    assert not any(reasons(store, first, signer.nid).values())  # beyond the depth: not run
    res = cli(path, "work", "any", first, key=key)  # a revision named by the user
    assert res.returncode == 0, res
    assert reasons(jobs.Jobs.open(path), first, signer.nid) == DONE
    assert git(path, "rev-parse", "HEAD").strip() == first  # the clone's HEAD never moved


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("refs/heads/main", [("origin", "refs/heads/main")]),
        ("main", [("origin", "refs/heads/main")]),
        ("hub:refs/pull/*/head", [("hub", "refs/pull/*/head")]),
        ("git@host:repo.git:refs/heads/*", [("git@host:repo.git", "refs/heads/*")]),
    ],
)
def test_follow_specs(text: str, expected: list[tuple[str, str]]) -> None:
    assert [(f.remote, f.spec) for f in parse_follow(text, ["origin"])] == expected


@pytest.mark.parametrize(
    "text", ["refs/heads/a..b", "refs/*/*", "refs/heads/", "-x:refs/heads/main", "refs/heads/x y"]
)
def test_bad_follow_specs_are_refused(text: str) -> None:
    with pytest.raises(FollowError):
        parse_follow(text, ["origin"])


def test_a_rerun_request_newer_than_the_last_attempt_gives_an_exhausted_job_fresh_attempts(
    tmp_path: Path,
) -> None:
    """A signed rerun counts only from a requester the Workshop is told to trust, and only
    against the runs this node started before it had seen the rerun (causally: no clock)."""
    path = tmp_path / "node"
    init_repo(path)
    signer, _ = new_key(tmp_path / "node.key")
    maintainer, _ = new_key(tmp_path / "maintainer.key")
    sha = commit_defs(path, "[jobs.flaky]\nrun = 'exit 3'\n")
    store = jobs.Jobs.open(path, signer)
    assert [o.reason.value for o in Workshop(store).work_any(sha).outcomes] == ["failed"]
    again = Workshop(store).work_any(sha)
    assert again.outcomes == [] and [p.action for p in again.plan] == ["exhausted"]
    [job] = store.find_by_commit(sha)
    mut = jobs.Jobs.open(path, maintainer).get_mut(job.id)
    assert mut is not None
    mut.rerun()  # in the same second as the failure: ordering is by ancestry, not by time
    for nobody in (set(), {signer.nid}):  # not trusted to request: still exhausted
        plan = Workshop(store, reruns=Reruns(store.repo, nobody)).plan(load_definitions(store.repo, sha))
        assert [p.action for p in plan] == ["exhausted"]
    rerun = Workshop(store, reruns=Reruns(store.repo, {maintainer.nid}))
    assert [o.reason.value for o in rerun.work_any(sha).outcomes] == ["failed"]  # ran again
    assert [p.action for p in rerun.plan(load_definitions(store.repo, sha))] == ["exhausted"]  # once
    assert reasons(jobs.Jobs.open(path), sha, signer.nid) == {"flaky": ["failed", "failed"]}


def test_node_settings_come_from_git_config_and_flags_replace_them(tmp_path: Path) -> None:
    path = tmp_path / "node"
    init_repo(path)
    git(path, "remote", "add", "origin", str(tmp_path / "hub.git"))
    repo = jobs.Jobs.open(path).repo
    assert load_config(repo).follows == [] and load_config(repo).remotes == []
    git(path, "config", "--add", "jobs.remote", "hub")
    git(path, "config", "--add", "jobs.follow", "main")
    git(path, "config", "--add", "jobs.follow", "upstream:refs/pull/*/head")
    git(path, "config", "jobs.depth", "3")
    git(path, "config", "jobs.interval", "10s")
    config = load_config(repo)
    assert config.remotes == ["hub"] and config.depth == 3 and config.interval == 10.0
    assert [str(f) for f in config.follows] == ["hub:refs/heads/main", "upstream:refs/pull/*/head"]
    flags = load_config(repo, remotes=["a", "b"], follows=["refs/heads/*"], depth="2", interval="1s")
    assert [str(f) for f in flags.follows] == ["a:refs/heads/*", "b:refs/heads/*"]
    assert (flags.remotes, flags.depth, flags.interval) == (["a", "b"], 2, 1.0)
    git(path, "config", "--unset-all", "jobs.remote")
    assert [str(f) for f in load_config(repo).follows] == [  # a bare spec falls back to origin
        "origin:refs/heads/main",
        "upstream:refs/pull/*/head",
    ]
    git(path, "config", "jobs.depth", "0")
    with pytest.raises(ConfigError):
        load_config(repo)


def test_status_json_shows_each_nodes_progress_queued_running_retrying(tmp_path: Path) -> None:
    path = tmp_path / "node"
    init_repo(path)
    signer, key = new_key(tmp_path / "node.key")
    defs = (
        "[jobs.build]\nrun = 'exit 1'\nretry = { max = 3, pattern = \"hours\" }\n"
        "[jobs.test]\nrun = 'true'\nneeds = ['build']\n[jobs.lint]\nrun = 'true'\n"
    )
    sha = commit_defs(path, defs)
    assert cli(path, "work", "any", key=key).returncode == 8  # build failed; its retry is not due
    shown = json.loads(cli(path, "status", "--json", key=key).stdout)["progress"]  # exit 1: failed
    mine = {n: j["state"] for n, j in shown[signer.nid].items()}
    assert mine == {"build": "retrying", "test": "queued", "lint": "succeeded"}
    build = shown[signer.nid]["build"]
    assert build["attempts"] == 1 and build["max_attempts"] == 3 and build["not_before"] > time.time()
    # Another replica with the ledger sees the same for that node, and its own jobs queued.
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(path), str(other))
    git(other, "fetch", "-q", str(path), "refs/namespaces/*:refs/namespaces/*")
    other_signer, other_key = new_key(tmp_path / "other.key")
    seen = json.loads(cli(other, "status", sha, "--json", key=other_key).stdout)["progress"]
    assert {n: j["state"] for n, j in seen[signer.nid].items()} == mine
    assert {j["state"] for j in seen[other_signer.nid].values()} == {"queued"}


def test_trigger_considers_followed_tips_only_and_runs_isolated(tmp_path: Path) -> None:
    hub = tmp_path / "hub.git"
    init_repo(hub, bare=True)
    path = tmp_path / "node"
    init_repo(path)
    signer, key = new_key(tmp_path / "node.key")
    git(path, "remote", "add", "hub", str(hub))
    plant = path / ".git" / "hooks" / "pwned"
    shas = {}
    for branch in ("feature", "other"):
        git(path, "checkout", "-q", "-b", branch, "main")
        shas[branch] = commit_defs(
            path, f"[jobs.a]\nrun = 'true'\n[trigger]\nrun = 'touch {plant}; echo {branch}'\n", branch
        )
        git(path, "push", "-q", "hub", branch)
    git(path, "checkout", "-q", "main")
    git(path, "branch", "-q", "-D", "feature", "other")  # the node knows them only from the hub
    git(path, "config", "jobs.follow", "hub:refs/heads/feature")
    # what the node's follow worker does on its interval: everything fetched, one ref followed
    git(path, "fetch", "-q", "hub", "+refs/heads/*:refs/git-jobs/follow/hub/heads/*")
    for args in ((), ("--intent",)):
        res = cli(path, "work", "trigger", *args, "--json", key=key)
        assert res.returncode == 0, res
        assert [(r["commit"], r["triggered"]) for r in json.loads(res.stdout)] == [(shas["feature"], True)]
    if _sandboxed(path):
        assert not plant.exists()  # the trigger ran in the sandbox: the node's .git is not there
    assert reasons(jobs.Jobs.open(path), shas["other"], signer.nid) == {}


def _sandboxed(path: Path) -> bool:
    return load_isolation(jobs.Jobs.open(path).repo).mode == "bwrap"
