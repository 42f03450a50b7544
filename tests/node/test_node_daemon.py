"""The node as users run it: separate machines (repositories + keys) around a `git daemon` hub.

Real processes only, on loopback: `git jobs work any` / `git jobs node` as subprocesses, stopped
with real SIGTERM and SIGKILL. After every scenario the ledger must still verify (nothing
rejected), no run may be left `started`, and stock `git fsck --strict` must pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import cob
import jobs
from tests.conftest import git, init_repo
from tests.gitdaemon import GitDaemon, free_port
from tests.node.test_node_work import CLI, cli, commit_defs, new_key, reasons

INTERVAL = "0.2s"

BUILD_TEST = """
[jobs.build]
run = "echo built by $GIT_JOBS_NODE > build.out; cat build.out"
idempotent = true
[jobs.test]
run = "echo tested $GIT_JOBS_COMMIT"
needs = ["build"]
"""


@dataclass
class World:
    tmp: Path
    daemon: GitDaemon
    maintainer: Path
    maintainer_key: Path
    url: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    pidfiles: list[Path] = field(default_factory=list)

    def node_repo(self, name: str) -> tuple[Path, cob.Signer, Path]:
        path = self.tmp / name
        git(self.tmp, "clone", "-q", self.url, str(path))
        signer, key = new_key(self.tmp / f"{name}.key")
        return path, signer, key

    def start_node(
        self, path: Path, key: Path, *remotes: str, extra: tuple[str, ...] = ()
    ) -> subprocess.Popen[bytes]:
        env = dict(os.environ, GIT_JOBS_KEY=str(key))
        args = [arg for r in (remotes or ("origin",)) for arg in ("--remote", r)] + list(extra)
        log = open(path.parent / f"{path.name}.node.log", "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(
            [*CLI, "node", *args, "--interval", INTERVAL],
            cwd=path,
            env=env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def node_log(self, path: Path) -> str:
        return (path.parent / f"{path.name}.node.log").read_text()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    maintainer = tmp_path / "maintainer"
    init_repo(maintainer)
    _, maintainer_key = new_key(tmp_path / "maintainer.key")
    served = tmp_path / "served"
    served.mkdir()
    with GitDaemon(served) as daemon:
        w = World(tmp_path, daemon, maintainer, maintainer_key, daemon.url("hub.git"))
        try:
            yield w
        finally:
            for proc in w.procs:  # always reap what we started
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=10)
            for pidfile in w.pidfiles:  # and any job a SIGKILLed node left behind
                with contextlib.suppress(OSError, ValueError):
                    os.killpg(int(pidfile.read_text()), signal.SIGKILL)


def publish(world: World, defs: str) -> str:
    """The maintainer commits definitions, releases them and publishes both to the hub."""
    sha = commit_defs(world.maintainer, defs)
    git(world.tmp / "served", "clone", "-q", "--bare", str(world.maintainer), "hub.git")
    git(world.maintainer, "remote", "add", "hub", world.url)
    cli(world.maintainer, "release", key=world.maintainer_key, check=True)
    cli(world.maintainer, "sync", "hub", key=world.maintainer_key, check=True)
    return sha


def wait_for(
    pred: Callable[[], bool],
    timeout: float = 30,
    what: str = "condition",
    log: Callable[[], str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f"\n{log()}" if log else ""))
        time.sleep(0.05)


def assert_ledger_sound(repo: Path) -> None:
    """Everything verifies, nothing is left started, and stock git agrees the repo is sound."""
    store = jobs.Jobs.open(repo)
    assert store.rejected() == []
    for job in store.all():
        assert job.started() == {}, f"{job.name} has a run left started"
    fsck = subprocess.run(["git", "fsck", "--strict"], cwd=repo, capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr


# -- the whole story ---------------------------------------------------------------------------
@pytest.mark.slow
def test_two_nodes_work_and_a_maintainer_sees_both_results_with_working_logs(world: World) -> None:
    sha = publish(world, BUILD_TEST)
    nodes = []
    for name in ("alice", "bob"):
        path, signer, key = world.node_repo(name)
        cli(path, "sync", "origin", key=key, check=True)
        res = cli(path, "work", "any", key=key)
        assert res.returncode == 0, res.stdout + res.stderr
        cli(path, "sync", "origin", key=key, check=True)
        nodes.append((path, signer))

    cli(world.maintainer, "sync", "hub", key=world.maintainer_key, check=True)
    res = cli(world.maintainer, "status", "--json", key=world.maintainer_key)
    assert res.returncode == 0, res.stdout + res.stderr
    status = json.loads(res.stdout)
    assert status["commit"] == sha
    seen = {(job["name"], n["node"]): n for job in status["jobs"] for n in job["latest"]}
    for _path, signer in nodes:
        for name, expected in (("build", f"built by {signer.nid}"), ("test", f"tested {sha}")):
            run = seen[(name, signer.nid)]
            assert run["reason"] == "succeeded" and run["exit"] == 0
            # The log came with the sync: the maintainer reads it, verified, with no server.
            assert run["log"] == f"git-jobs://{signer.nid}/{run['id']}"
            shown = cli(world.maintainer, "logs", run["id"], key=world.maintainer_key, check=True)
            assert expected in shown.stdout
    assert len(seen) == 4
    for repo in (world.maintainer, world.tmp / "served" / "hub.git", *(p for p, _ in nodes)):
        assert_ledger_sound(repo)


@pytest.mark.slow
def test_a_failing_preflight_stops_the_node_before_any_work(world: World) -> None:
    publish(world, BUILD_TEST)
    path, _, key = world.node_repo("carol")
    dead = f"git://127.0.0.1:{free_port()}/x.git"
    began = time.monotonic()
    proc = world.start_node(path, key, "origin", dead)
    assert proc.wait(timeout=60) != 0
    assert time.monotonic() - began < 30
    lines = world.node_log(path).strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0]
    assert "preflight" in lines[0] and "not reachable for fetch" in lines[0] and "127.0.0.1" in lines[0]
    assert not lines[0].rstrip().endswith(":") and "refused" in lines[0].lower()  # the whole reason
    assert not (path / ".git" / "git-jobs" / "logs").exists()
    assert git(path, "for-each-ref", "refs/namespaces") == ""

    # A remote that serves fetch but refuses push fails too, naming push.
    ro_url = world.url.replace("hub.git", "readonly.git")
    git(world.tmp / "served", "clone", "-q", "--bare", str(world.maintainer), "readonly.git")
    git(world.tmp / "served" / "readonly.git", "config", "daemon.receivepack", "false")
    proc = world.start_node(path, key, ro_url)
    assert proc.wait(timeout=60) != 0
    last = world.node_log(path).strip().splitlines()[-1]
    assert "not reachable for push" in last
    # A bad key is a clear line as well.
    (world.tmp / "bad.key").write_text("not a key")
    proc = world.start_node(path, world.tmp / "bad.key", "origin")
    assert proc.wait(timeout=60) != 0
    assert "bad.key" in world.node_log(path).strip().splitlines()[-1]


def _slow_once(tmp: Path, name: str) -> tuple[str, Path, Path]:
    """A job that blocks the first time (after writing its pid) and succeeds on a rerun."""
    mark, pidfile = tmp / f"{name}.started", tmp / f"{name}.pid"
    defs = (
        "[jobs.build]\n"
        f'run = "echo $$ > {pidfile}; if [ -e {mark} ]; then echo second run; '
        f'else touch {mark}; echo first run; sleep 60; fi"\n'
        "idempotent = true\n"
        '[jobs.test]\nrun = "echo tested"\nneeds = ["build"]\n'
    )
    return defs, mark, pidfile


def _alive(pidfile: Path) -> bool:
    """Whether any live (non-zombie) process is left in the job's process group."""
    try:
        pid = int(pidfile.read_text())
    except (OSError, ValueError):
        return False
    try:  # the job's shell is not the group's leader: the reaper it runs under is (isolation.py)
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        pgid = pid
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@pytest.mark.slow
def test_sigterm_mid_job_finishes_it_cancelled_and_exits_cleanly(world: World) -> None:
    defs, mark, pidfile = _slow_once(world.tmp, "term")
    sha = publish(world, defs)
    path, signer, key = world.node_repo("dave")
    # the job reports pids and marks through host paths: a sandbox (own /tmp, own pids) would hide them
    git(path, "config", "jobs.isolation", "none")
    world.pidfiles.append(pidfile)
    proc = world.start_node(path, key)
    wait_for(mark.exists, what="the job to start")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "", what="pid")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, world.node_log(path)
    assert not _alive(pidfile), "the job's processes outlived the node"
    assert reasons(jobs.Jobs.open(path), sha, signer.nid) == {"build": ["cancelled"], "test": []}
    log = world.node_log(path)
    assert "worker:work" in log and "stopped cleanly" in log
    # The final sync published the cancelled run: the maintainer sees it.
    cli(world.maintainer, "sync", "hub", key=world.maintainer_key, check=True)
    assert reasons(jobs.Jobs.open(world.maintainer), sha, signer.nid)["build"] == ["cancelled"]
    assert_ledger_sound(path)
    assert_ledger_sound(world.maintainer)


@pytest.mark.slow
def test_sigkill_mid_job_then_restart_recovers_and_reruns_an_idempotent_job(world: World) -> None:
    defs, mark, pidfile = _slow_once(world.tmp, "kill")
    sha = publish(world, defs)
    path, signer, key = world.node_repo("erin")
    # the job reports pids and marks through host paths: a sandbox (own /tmp, own pids) would hide them
    git(path, "config", "jobs.isolation", "none")
    world.pidfiles.append(pidfile)
    proc = world.start_node(path, key)
    wait_for(mark.exists, what="the job to start")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "", what="pid")
    proc.kill()
    proc.wait(timeout=10)
    assert reasons(jobs.Jobs.open(path), sha, signer.nid)["build"] == ["started"]  # a crash
    assert _alive(pidfile)  # its job outlived it
    orphan = world.tmp / "orphan.pid"
    orphan.write_text(pidfile.read_text())
    world.pidfiles.append(orphan)

    proc = world.start_node(path, key)

    def settled() -> bool:
        got = reasons(jobs.Jobs.open(path), sha, signer.nid)
        return got.get("test") == ["succeeded"]

    wait_for(settled, what="the rerun to finish")

    # …and to reach the hub, where the maintainer reads it.
    def published() -> bool:
        cli(world.maintainer, "sync", "hub", "--no-push", key=world.maintainer_key, check=True)
        return reasons(jobs.Jobs.open(world.maintainer), sha, signer.nid).get("test") == ["succeeded"]

    wait_for(published, what="the results to be pushed")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    got = reasons(jobs.Jobs.open(path), sha, signer.nid)
    assert got == {"build": ["error", "succeeded"], "test": ["succeeded"]}
    log = world.node_log(path)
    assert "recovered 1 run(s)" in log and "the node stopped mid-run" in log
    first, second = jobs.Jobs.open(path).find_by_commit(sha)[0].runs_of(signer.nid)
    # Both logs reached the maintainer: the recovered one ends with what recovery said.
    shown = cli(world.maintainer, "logs", str(first), key=world.maintainer_key, check=True).stdout
    assert shown.rstrip().endswith("the node stopped mid-run; finished as error")
    shown = cli(world.maintainer, "logs", str(second), key=world.maintainer_key, check=True).stdout
    assert "second run" in shown
    assert not _alive(orphan)  # the orphan was killed at recovery
    assert_ledger_sound(path)
    assert_ledger_sound(world.maintainer)
    assert_ledger_sound(world.tmp / "served" / "hub.git")


def test_a_worker_that_loses_its_remote_backs_off_under_the_node_policy_and_keeps_going(world: World) -> None:
    sha = publish(world, '[jobs.build]\nrun = "echo ok"\n')
    path, signer, key = world.node_repo("frank")
    proc = world.start_node(path, key)
    wait_for(
        lambda: reasons(jobs.Jobs.open(path), sha, signer.nid).get("build") == ["succeeded"], what="work"
    )
    world.daemon.stop()  # the hub goes away (GitDaemon.kill() would leave git-daemon running)
    task = "worker:sync:origin"
    wait_for(
        lambda: f"{task} error (node policy" in world.node_log(path),
        what="a classified error",
        log=lambda: world.node_log(path),
    )
    assert proc.poll() is None  # still running
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    log = world.node_log(path)
    assert "final sync failed" in log and "stopped cleanly" in log and "Traceback" not in log
    assert_ledger_sound(path)
