"""Trusted requests: a signed ``release`` or ``rerun`` from a node the policy allows to request
work makes a commit run on other nodes, and a trusted rerun gives an exhausted job fresh
attempts; the same ops signed by anyone else never make anything run.

Everything goes through the installed ``git-jobs`` and a real hub (a bare repository reached
by its path); nodes are real processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import cob
import jobs
from tests.clirunner import GIT_JOBS, gj, ok
from tests.conftest import git, init_repo
from tests.node.test_node_daemon import wait_for
from tests.node.test_node_work import commit_defs, new_key, reasons

FLAKY = "[jobs.flaky]\nrun = 'exit 3'\n"  # retry.max = 1: one failed attempt uses it up


@dataclass
class Hub:
    tmp: Path
    hub: Path
    maintainer: Path
    maintainer_key: Path
    maintainer_nid: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def node(self, name: str) -> tuple[Path, cob.Signer, Path]:
        path = self.tmp / name
        git(self.tmp, "clone", "-q", str(self.hub), str(path))
        signer, key = new_key(self.tmp / f"{name}.key")
        return path, signer, key

    def push(self, *refs: str) -> None:
        git(self.maintainer, "push", "-q", "origin", *(refs or ("main",)))

    def start_node(self, path: Path, key: Path, *extra: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{path.name}.node.log", "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(
            [GIT_JOBS, "node", "--remote", "origin", "--interval", "0.2s", *extra],
            cwd=path,
            env=dict(os.environ, GIT_JOBS_KEY=str(key)),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0

    def log(self, path: Path) -> str:
        return (self.tmp / f"{path.name}.node.log").read_text()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    bare = tmp_path / "hub.git"
    init_repo(bare, bare=True)
    maintainer = tmp_path / "maintainer"
    init_repo(maintainer)
    git(maintainer, "remote", "add", "origin", str(bare))
    signer, key = new_key(tmp_path / "maintainer.key")
    h = Hub(tmp_path, bare, maintainer, key, signer.nid)
    try:
        yield h
    finally:
        for proc in h.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def policy(*nodes: str, requesters: list[str] | None = None) -> str:
    """A ``[policy]`` table trusting ``nodes`` (named n0, n1, …)."""
    table = ", ".join(f'"{nid}" = "n{i}"' for i, nid in enumerate(nodes))
    out = f"[policy]\nnodes = {{ {table} }}\n"
    if requesters is not None:
        out += "requesters = [" + ", ".join(f'"{r}"' for r in requesters) + "]\n"
    return out


def _passes(path: Path) -> int:
    """How many passes the node's work worker has made (from its heartbeat file)."""
    try:
        beat = json.loads((path / ".git" / "git-jobs" / "node.json").read_text())
        return int(beat["workers"]["worker:work"]["runs"])
    except (OSError, ValueError, KeyError):
        return 0


def flaky_runs(path: Path, sha: str, nid: str) -> list[str]:
    return reasons(jobs.Jobs.open(path), sha, nid).get("flaky", [])


@pytest.mark.slow
def test_a_trusted_rerun_failed_makes_an_exhausted_job_run_again_on_every_node(hub: Hub) -> None:
    a_path, a, a_key = hub.tmp / "a", *new_key(hub.tmp / "a.key")
    b_path, b, b_key = hub.tmp / "b", *new_key(hub.tmp / "b.key")
    # the maintainer alone may request work; the nodes' results count
    defs = policy(hub.maintainer_nid, a.nid, b.nid, requesters=[hub.maintainer_nid]) + FLAKY
    sha = commit_defs(hub.maintainer, defs)
    hub.push()
    for path in (a_path, b_path):
        git(hub.tmp, "clone", "-q", str(hub.hub), str(path))
        # every node runs every job here (not quorum-shared, docs/NODE.md "Sharing the work"):
        # the point is that each node's exhausted job runs again
        git(path, "config", "jobs.assignment", "all")

    # node a: a long-running node following main; node b: one-shot `work any --follow`
    node = hub.start_node(a_path, a_key, "--follow", "refs/heads/main")
    follow = ("work", "any", "--follow", "origin:refs/heads/main")
    assert gj(b_path, *follow, key=b_key).code == 1
    assert gj(b_path, *follow, key=b_key).code == 1  # exhausted: no second attempt
    ok(b_path, "sync", "origin", key=b_key)
    wait_for(
        lambda: flaky_runs(a_path, sha, a.nid) == ["failed"],
        what="node a's attempt",
        log=lambda: hub.log(a_path),
    )
    assert flaky_runs(b_path, sha, b.nid) == ["failed"]

    # the maintainer sees both failures and asks for a rerun of the failed jobs
    def synced() -> bool:
        ok(hub.maintainer, "sync", "origin", key=hub.maintainer_key)
        return flaky_runs(hub.maintainer, sha, a.nid) == flaky_runs(hub.maintainer, sha, b.nid) == ["failed"]

    wait_for(synced, what="both results at the hub")
    res = ok(hub.maintainer, "rerun", sha, "--failed", "--json", key=hub.maintainer_key)
    assert [j["name"] for j in res.json["jobs"]] == ["flaky"] and res.json["may_request"] is True
    ok(hub.maintainer, "sync", "origin", key=hub.maintainer_key)

    # node a picks it up by itself; node b on its next sync and pass
    wait_for(
        lambda: flaky_runs(a_path, sha, a.nid) == ["failed", "failed"],
        what="node a's rerun",
        log=lambda: hub.log(a_path),
    )
    ok(b_path, "sync", "origin", key=b_key)
    assert gj(b_path, *follow, key=b_key).code == 1
    assert flaky_runs(b_path, sha, b.nid) == ["failed", "failed"]
    # one rerun, one more attempt: then the job is exhausted again
    assert gj(b_path, *follow, key=b_key).code == 1
    assert flaky_runs(b_path, sha, b.nid) == ["failed", "failed"]
    hub.stop(node)
    assert flaky_runs(a_path, sha, a.nid) == ["failed", "failed"]
    assert "Traceback" not in hub.log(a_path)


def _foreign(hub: Hub) -> tuple[str, Path]:
    """Mallory (untrusted, with push access to the hub) makes a commit with its own job and
    trigger, releases it and asks for a rerun, and pushes it all."""
    mallory = hub.tmp / "mallory"
    git(hub.tmp, "clone", "-q", str(hub.hub), str(mallory))
    _, mkey = new_key(hub.tmp / "mallory.key")
    ran = hub.tmp / "foreign-ran"
    git(mallory, "checkout", "-q", "-b", "evil")
    defs = f"[jobs.evil]\nrun = 'touch {ran}-job'\n[trigger]\nrun = 'touch {ran}-trigger'\n"
    sha = commit_defs(mallory, defs)
    ok(mallory, "release", key=mkey)
    ok(mallory, "rerun", sha, key=mkey)
    ok(mallory, "sync", "origin", key=mkey)
    git(mallory, "push", "-q", "origin", "evil")
    return sha, ran


@pytest.mark.slow
def test_an_untrusted_release_or_rerun_of_a_foreign_commit_is_never_run(hub: Hub) -> None:
    defs = policy(hub.maintainer_nid) + "[jobs.build]\nrun = 'true'\n"
    main = commit_defs(hub.maintainer, defs)
    hub.push()
    path, signer, key = hub.node("careful")
    git(path, "config", "jobs.isolation", "none")  # markers on the host show whether it ran
    foreign, ran = _foreign(hub)
    ok(path, "sync", "origin", key=key)  # its jobs, release and rerun are in the node's ledger …
    git(path, "fetch", "-q", "origin")  # … and the commit in its object store
    store = jobs.Jobs.open(path)
    [evil] = store.find_by_commit(foreign)
    assert set(evil.requests()) == set(evil.reruns()) != set()  # signed, just not trusted

    res = gj(path, "work", "any", "--requested", "--json", key=key)
    assert res.code == 0 and res.json["commits"] == [], res
    for args in (("work", "trigger"), ("work", "trigger", "--intent")):
        res = gj(path, *args, key=key)
        assert res.code == 0 and foreign[:12] not in res.out, res
    node = hub.start_node(path, key, "--follow", "refs/heads/main")
    wait_for(
        lambda: reasons(jobs.Jobs.open(path), main, signer.nid) == {"build": ["succeeded"]},
        what="the followed commit",
        log=lambda: hub.log(path),
    )
    passes = _passes(path)
    wait_for(lambda: _passes(path) >= passes + 3, what="three more passes", log=lambda: hub.log(path))
    hub.stop(node)
    assert reasons(jobs.Jobs.open(path), foreign, signer.nid) == {"evil": []}
    assert not Path(f"{ran}-job").exists() and not Path(f"{ran}-trigger").exists()


@pytest.mark.slow
def test_with_no_policy_no_request_is_honoured(hub: Hub) -> None:
    commit_defs(hub.maintainer, "[jobs.build]\nrun = 'true'\n")
    hub.push()
    git(hub.maintainer, "checkout", "-q", "-b", "feature")
    wanted = commit_defs(hub.maintainer, "[jobs.build]\nrun = 'true'\n# feature\n")
    ok(hub.maintainer, "release", key=hub.maintainer_key)
    ok(hub.maintainer, "sync", "origin", key=hub.maintainer_key)
    hub.push("feature")
    path, _, key = hub.node("plain")
    ok(path, "sync", "origin", key=key)
    res = gj(path, "work", "any", "--requested", "--json", key=key)
    assert res.code == 0 and res.json["commits"] == [], res
    assert wanted  # released by a node nobody vouched for: not a reason to run


@pytest.mark.slow
def test_a_trusted_release_of_a_commit_no_node_follows_makes_a_node_run_it(hub: Hub) -> None:
    defs = policy(hub.maintainer_nid, requesters=[hub.maintainer_nid]) + "[jobs.build]\nrun = 'true'\n"
    main = commit_defs(hub.maintainer, defs)
    hub.push()
    path, signer, key = hub.node("worker")
    node = hub.start_node(path, key, "--follow", "refs/heads/main")
    wait_for(
        lambda: reasons(jobs.Jobs.open(path), main, signer.nid) == {"build": ["succeeded"]},
        what="main",
        log=lambda: hub.log(path),
    )
    # a branch nobody follows; the maintainer (named a requester) releases it
    git(hub.maintainer, "checkout", "-q", "-b", "feature")
    wanted = commit_defs(hub.maintainer, "[jobs.build]\nrun = 'true'\n[jobs.check]\nrun = 'true'\n")
    hub.push("feature")
    ok(hub.maintainer, "release", key=hub.maintainer_key)
    ok(hub.maintainer, "sync", "origin", key=hub.maintainer_key)
    done = {"build": ["succeeded"], "check": ["succeeded"]}
    wait_for(
        lambda: reasons(jobs.Jobs.open(path), wanted, signer.nid) == done,
        what="the requested commit",
        log=lambda: hub.log(path),
    )
    hub.stop(node)
    assert git(path, "rev-parse", "HEAD").strip() == main  # HEAD never moved
    assert f"{wanted[:12]} (requested by {hub.maintainer_nid}): 2 of 2 jobs done" in hub.log(path)
    assert "fetched 1 requested commit(s)" in hub.log(path)


def test_a_rerun_is_a_signed_change_of_its_own_recorded_per_node(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    init_repo(path)
    alice, alice_key = new_key(tmp_path / "alice.key")
    ok(path, "create", "HEAD", "--name", "test", key=alice_key)
    res = ok(path, "rerun", "HEAD", "--json", key=alice_key)
    [job] = jobs.Jobs.open(path).find_by_commit("HEAD")
    assert res.json["jobs"] == [{"id": job.id, "name": "test"}] and res.json["may_request"] is False
    [(nid, asked)] = job.reruns().items()
    assert nid == alice.nid and asked.change == job.tips[alice.nid]
    assert git(path, "log", "-1", "--format=%s", asked.change).strip() == "Rerun"
    assert set(job.requests()) == {alice.nid}  # a rerun is not a release
    assert "no trust policy here" in res.err  # said, so nobody waits for nothing
