"""Sharing the work: each job runs on `quorum` trusted nodes, chosen with no coordination.

Every node here is a real clone of a real bare hub (a path), driven through the installed
`git-jobs` script: it syncs, works and syncs, as a volunteer's machine would. The policy sits
on the hub's default branch. Keys and the commit are fixed, so the ranking (a hash of job id
and NID) is the same on every run of this file: the balance asserted below is a property of
these inputs, not luck.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import cob
import jobs
from jobs.assign import rank
from tests.clirunner import gj, ok
from tests.conftest import git, init_repo

NODES = ("alice", "bob", "carol")
FIXED = {"GIT_AUTHOR_DATE": "2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE": "2026-01-02T03:04:05Z"}


def defs(count: int) -> str:
    return "".join(f'[jobs.j{i:02d}]\nrun = "true"\n\n' for i in range(count))


class Cluster:
    """A hub, an upstream that owns main, and trusted nodes with fixed keys."""

    def __init__(self, tmp: Path, seed: int = 1) -> None:
        self.tmp = tmp
        self.hub = tmp / "hub.git"
        init_repo(self.hub, bare=True)
        self.upstream = tmp / "upstream"
        self.upstream.mkdir()
        git(self.upstream, "init", "-q")
        git(self.upstream, "remote", "add", "origin", str(self.hub))
        self.keys: dict[str, Path] = {}
        self.nids: dict[str, str] = {}
        for i, name in enumerate(NODES):
            signer = cob.Signer(Ed25519PrivateKey.from_private_bytes(bytes([seed * 16 + i]) * 32))
            self.keys[name] = signer.save(tmp / "keys" / name)
            self.nids[name] = signer.nid
        self.paths: dict[str, Path] = {}

    def publish(self, jobs_text: str, quorum: int, takeover: str = "10m") -> str:
        table = ", ".join(f'"{nid}" = "{name}-linux"' for name, nid in self.nids.items())
        policy = f'[policy]\nnodes = {{ {table} }}\nquorum = {quorum}\ntakeover = "{takeover}"\n'
        (self.upstream / ".git-jobs.toml").write_text(jobs_text + policy)
        env = dict(os.environ, **FIXED)
        steps = (["add", ".git-jobs.toml"], ["commit", "-qm", "ci"], ["push", "-q", "origin", "HEAD:main"])
        for args in steps:
            subprocess.run(["git", *args], cwd=self.upstream, env=env, check=True, capture_output=True)
        return git(self.upstream, "rev-parse", "HEAD").strip()

    def node(self, name: str) -> Path:
        path = self.paths.get(name)
        if path is None:
            path = self.tmp / name
            git(self.tmp, "clone", "-q", str(self.hub), str(path))
            git(path, "config", "jobs.isolation", "none")  # `true` needs no sandbox; faster
            self.paths[name] = path
        return path

    def turn(self, name: str) -> Any:
        """One node's turn: sync, work on HEAD, sync. Returns `work any --json`."""
        path, key = self.node(name), self.keys[name]
        ok(path, "sync", key=key)
        # 8: work remains — e.g. a takeover fell due while this pass ran others; the next turn
        result = gj(path, "work", "any", "--json", key=key)
        assert result.code in (0, 8), result
        ok(path, "sync", key=key)
        return result.json

    def maintainer(self) -> Path:
        path = self.paths.get("maintainer") or self.node("maintainer")
        ok(path, "sync")
        return path

    def runs(self, sha: str) -> dict[str, list[tuple[str, jobs.Run]]]:
        """Job name → every run of it (node, run), as the maintainer sees after a sync."""
        store = jobs.Jobs.open(str(self.maintainer()))
        return {
            j.name: [(nid, run) for nid, rs in j.runs().items() for run in rs.values()]
            for j in store.find_by_commit(sha)
        }

    def who(self, nid: str) -> str:
        return next(n for n, x in self.nids.items() if x == nid)


def status(path: Path, sha: str) -> tuple[int, dict[str, Any]]:
    r = gj(path, "status", sha, "--json")
    return r.code, r.json


def test_the_documented_ranking_is_sha256_of_job_id_newline_nid() -> None:
    key = "a" * 40
    nids = [cob.Signer.generate().nid for _ in range(5)]
    by_hand = sorted(nids, key=lambda n: hashlib.sha256(f"{key}\n{n}".encode()).hexdigest(), reverse=True)
    assert list(rank(key, nids)) == by_hand
    assert rank(key, reversed(nids)) == rank(key, nids)  # the order nodes are listed in is irrelevant


@pytest.mark.slow
def test_three_nodes_quorum_one_each_job_runs_once_and_the_load_is_shared(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    sha = c.publish(defs(30), quorum=1)
    for name in NODES:
        work = c.turn(name)
        elsewhere = [j for j in work["jobs"] if j["action"] == "elsewhere"]
        assert elsewhere and all("assigned to " in j["reason"] for j in elsewhere), work
    runs = c.runs(sha)
    assert sorted(runs) == [f"j{i:02d}" for i in range(30)]
    assert all(len(r) == 1 and r[0][1].succeeded for r in runs.values()), runs
    per_node = {n: sum(1 for r in runs.values() if c.who(r[0][0]) == n) for n in NODES}
    assert max(per_node.values()) <= 15 and min(per_node.values()) > 0, per_node
    code, data = status(c.maintainer(), sha)
    assert code == 0, data
    for job in data["jobs"]:  # status names the node each job is assigned to: the one that ran it
        assert job["assigned"] == [r["node"] for r in job["latest"]], job

    # A second round changes nothing: every job is covered, no node runs anything again.
    for name in NODES:
        assert c.turn(name)["runs"] == []
    assert all(len(r) == 1 for r in c.runs(sha).values())


@pytest.mark.slow
def test_three_nodes_quorum_two_each_job_runs_on_exactly_two_nodes(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    sha = c.publish(defs(30), quorum=2)
    for name in NODES:
        c.turn(name)
    runs = c.runs(sha)
    assert len(runs) == 30
    for name, rs in runs.items():
        assert len(rs) == 2 and len({nid for nid, _ in rs}) == 2, (name, rs)
    assert status(c.maintainer(), sha)[0] == 0


@pytest.mark.slow
def test_a_node_that_never_comes_up_is_taken_over_after_the_delay(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    sha = c.publish(defs(12), quorum=1, takeover="2s")
    m = c.maintainer()
    store = jobs.Jobs.open(str(m))
    carol = c.nids["carol"]
    # Carol never comes up. Alice and Bob take turns until the gate is green (bounded).
    deadline = time.monotonic() + 90
    code = 8
    while code != 0:
        assert time.monotonic() < deadline, status(m, sha)
        for name in ("alice", "bob"):
            c.turn(name)
        code, data = status(c.maintainer(), sha)
        if code != 0:
            assert code == 8 and data["expected"], data
            time.sleep(0.5)
    runs = c.runs(sha)
    carols = []
    for job in store.find_by_commit(sha):
        assert len(runs[job.name]) == 1, runs[job.name]
        nid, run = runs[job.name][0]
        assert nid != carol
        if rank(job.id, c.nids.values())[0] == carol:  # carol was asked first
            carols.append(job.name)
            released = min(r.first_at for r in job.requests().values())
            assert (run.started_at - released).total_seconds() >= 2, (job.name, run, released)
    assert carols, "with these fixed keys carol ranks first for some jobs"

    # Carol comes back: everything is done, she runs nothing and says why.
    path, key = c.node("carol"), c.keys["carol"]
    ok(path, "sync", key=key)
    plan = ok(path, "work", "any", "--dry-run", "--json", key=key).json
    assert {j["action"] for j in plan["jobs"]} == {"elsewhere"}, plan
    assert all("done there" in j["reason"] for j in plan["jobs"])
    work = ok(path, "work", "any", "--json", key=key).json
    assert work["runs"] == [] and {j["action"] for j in work["jobs"]} == {"elsewhere"}
    ok(path, "sync", key=key)
    assert all(len(r) == 1 for r in c.runs(sha).values())


@pytest.mark.slow
@pytest.mark.parametrize("how", ["flag", "config"])
def test_all_runs_every_job_as_without_sharing(tmp_path: Path, how: str) -> None:
    c = Cluster(tmp_path)
    sha = c.publish(defs(6), quorum=1)
    path, key = c.node("alice"), c.keys["alice"]
    if how == "config":
        git(path, "config", "jobs.assignment", "all")
    args = ["--all"] if how == "flag" else []
    plan = ok(path, "work", "any", "--dry-run", "--json", *args, key=key).json
    assert plan["assignment"]["mode"] == "all"
    work = ok(path, "work", "any", "--json", *args, key=key).json
    assert len(work["runs"]) == 6
    # Her runs cover every job, so the others, sharing, have nothing left to do.
    ok(path, "sync", key=key)
    assert c.turn("bob")["runs"] == []
    assert status(c.maintainer(), sha)[0] == 0


@pytest.mark.slow
def test_dry_run_and_status_say_who_a_job_is_assigned_to(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    sha = c.publish(defs(6), quorum=1)
    path, key = c.node("alice"), c.keys["alice"]
    ok(path, "release", key=key)
    ok(path, "sync", key=key)
    text = ok(path, "work", "any", "--dry-run", key=key).out
    assert "assignment: shared (quorum 1 of 3 trusted nodes)" in text
    assert "elsewhere" in text and ("assigned to bob-linux" in text or "assigned to carol-linux" in text)
    assert "(assigned to this node)" in text
    m = c.maintainer()
    shown = gj(m, "status", sha)
    assert shown.code == 8 and "assigned to " in shown.out and "-linux" in shown.out
    code, data = status(m, sha)
    assert code == 8
    for job in data["jobs"]:
        assert len(job["assigned"]) == 1 and job["assigned"][0] in c.nids.values()


def test_a_bad_assignment_setting_is_one_line_and_exit_2(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    c.publish(defs(1), quorum=1)
    path = c.node("alice")
    git(path, "config", "jobs.assignment", "some")
    r = gj(path, "work", "any", key=c.keys["alice"])
    assert r.code == 2 and "jobs.assignment" in r.err and len(r.err.strip().splitlines()) == 1


def test_takeover_is_a_validated_duration_in_the_policy() -> None:
    from jobs.policy import DEFAULT_TAKEOVER, parse_policy

    nid = cob.Signer.generate().nid
    assert parse_policy({"nodes": {nid: "a"}}, "here").takeover == DEFAULT_TAKEOVER == 600.0
    assert parse_policy({"nodes": {nid: "a"}, "takeover": "1m30s"}, "here").takeover == 90.0
    assert parse_policy({"nodes": {nid: "a"}, "takeover": 5}, "here").to_json()["takeover"] == 5.0
    for bad in ("soon", "0.5s", 0, True, [1]):
        with pytest.raises(jobs.PolicyError) as e:
            parse_policy({"nodes": {nid: "a"}, "takeover": bad}, "here")
        assert "here: takeover:" in str(e.value), bad


def test_jobs_joined_by_needs_are_one_group_keyed_by_their_first_name() -> None:
    from jobs.assign import groups

    found = groups(["build", "test", "lint", "deploy"], {"test": ["build"], "deploy": ["test"]})
    assert found == {"build": "build", "test": "build", "deploy": "build", "lint": "lint"}


@pytest.mark.slow
def test_a_job_and_its_needs_run_together_on_the_same_node(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    pipeline = '[jobs.build]\nrun = "true"\n\n[jobs.test]\nrun = "true"\nneeds = ["build"]\n\n'
    sha = c.publish(pipeline + defs(4), quorum=1)
    for name in NODES:
        c.turn(name)
    runs = c.runs(sha)
    assert all(len(r) == 1 for r in runs.values()), runs
    assert runs["build"][0][0] == runs["test"][0][0]  # test needs *this node's* build
    assert status(c.maintainer(), sha)[0] == 0
