"""`git jobs sync` through a real bare hub, and `git jobs demo` exactly as the README runs it."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pygit2
import pytest

import cob
from tests.clirunner import GIT_JOBS, gj, ok, user_error
from tests.conftest import git, init_repo
from tests.gitdaemon import free_port

ROOT = Path(__file__).resolve().parents[2]
REPORT_KEYS = {
    "version",
    "remote",
    "fetched",
    "pushed",
    "refused",
    "changed",
    "rejected",
    "logs",
    "published",
    "unpublished",
    "merged",
    "policy_kept",
    "remembered",
    "ignored",
    "deferred",
    "fetch_error",
    "fetch",
    "skipped",
}


@pytest.mark.slow
def test_sync_through_a_bare_hub(repo: pygit2.Repository, tmp_path: Path) -> None:
    hub = tmp_path / "hub.git"
    init_repo(hub, bare=True)
    alice = Path(repo.workdir)
    git(alice, "remote", "add", "origin", str(hub))
    git(alice, "push", "-q", "origin", "main")
    bob = tmp_path / "bob"
    git(tmp_path, "clone", "-q", str(hub), str(bob))
    a = cob.Signer.generate().save(tmp_path / "a.key")
    b = cob.Signer.generate().save(tmp_path / "b.key")

    job = ok(alice, "create", "HEAD", "--name", "test", key=a).line
    run = ok(alice, "run", job, "--log", "https://ci.example/a/1", key=a).line
    ok(alice, "finish", job, run, "succeeded", key=a)
    pushed = ok(alice, "sync", key=a)  # the only remote, origin
    assert "pushed 1" in pushed.out and "refused 0" in pushed.out

    got = ok(bob, "sync", "--json", key=b).json
    assert got.keys() == REPORT_KEYS and got["changed"] == [job] and got["rejected"] == []
    assert len(got["fetched"]) == 1 and got["pushed"] == [] and got["refused"] == []
    assert gj(bob, "status", "--json").json["outcome"] == "succeeded"
    # bob runs it too and fails; only pushes; alice only fetches, by URL.
    run_b = ok(bob, "run", "HEAD:test", "--log", "https://ci.example/b/1", key=b).line
    ok(bob, "finish", "HEAD:test", run_b, "failed", key=b)
    up = ok(bob, "sync", "--no-fetch", "--json", key=b).json
    assert len(up["pushed"]) == 1 and up["fetched"] == []
    down = ok(alice, "sync", str(hub), "--no-push", "--json", key=a).json
    assert down["changed"] == [job] and down["pushed"] == []
    assert gj(alice, "status").code == 1
    assert ok(alice, "show", job, "--json").json == ok(bob, "show", job, "--json").json

    # A maintainer waiting on a commit: `status --watch --sync` fetches until the verdict.
    carol = tmp_path / "carol"
    git(tmp_path, "clone", "-q", str(hub), str(carol))
    assert gj(carol, "status").code == 1  # no jobs here yet
    watched = gj(carol, "status", "--watch", "--sync", "origin", "--interval", "0.1", "--json")
    assert watched.code == 1 and watched.json["outcome"] == "failed"
    # Without a key, a sync only fetches (and says so).
    keyless = ok(carol, "sync")
    assert "fetched 0" in keyless.out and "fetched only" in keyless.err
    assert gj(carol, "status").code == 1

    # Choosing the remote: origin wins; several others is a question back to the user.
    git(carol, "remote", "rename", "origin", "hub")
    assert ok(carol, "sync", "--json").json["remote"] == "hub"
    git(carol, "remote", "add", "mirror", str(hub))
    assert "name one of hub, mirror" in user_error(carol, "sync")
    # A remote nobody answers on: one line, exit 2, and nothing local lost.
    dead = f"git://127.0.0.1:{free_port()}/hub.git"
    assert "127.0.0.1" in user_error(carol, "sync", dead)
    assert gj(carol, "status").code == 1


@pytest.mark.slow
def test_readme_quickstart_demo_works_as_written(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"(\S*git-jobs demo)\s*$", readme, re.M)
    assert command, "the README's quick start runs `git-jobs demo`"
    started = time.monotonic()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    # No key, no repository, no network: a fresh machine.
    demo = ok(tmp_path, "demo", TMPDIR=str(scratch))
    took = time.monotonic() - started
    assert took < 30, took
    out = demo.out
    for name in ("alice", "bob", "carol"):
        assert f"{name:<5}  sync with hub" in out
    assert out.count("\ncommit ") == 3
    assert "pending: 1 running, 4 succeeded" in out
    assert "failed: 2 failed, 1 succeeded" in out
    assert "succeeded: 3 succeeded" in out
    assert "all 3 nodes hold the same state for every job" in out
    assert str(scratch) in out  # it worked in the temporary directory…
    assert not list(scratch.iterdir())  # …and left nothing behind
    assert "\x1b[" not in out


@pytest.mark.slow
def test_demo_json_and_keep(tmp_path: Path) -> None:
    data = ok(tmp_path, "demo", "--json").json
    assert data["converged"] is True and len(data["nodes"]) == 3
    assert [c["outcome"] for c in data["commits"]] == ["pending", "failed", "succeeded"]
    assert [c["subject"] for c in data["commits"]] == [
        "Add a command line",
        "Handle empty input",
        "Start the parser",
    ]

    kept = tmp_path / "kept"
    ok(tmp_path, "demo", "--keep", str(kept))
    bob = kept / "bob"
    # Each clone is configured as its node: `git jobs` inside it acts as that node.
    assert ok(bob, "whoami", "--json").json["origin"] == "jobs.key"
    assert gj(bob, "status").code == 8
    assert gj(bob, "status", "HEAD~1").code == 1
    assert gj(bob, "status", "HEAD~2").code == 0
    assert len(ok(kept / "hub.git", "list", "--json").json) == 7  # build, test x 3; lint
    assert ok(bob, "verify").code == 0
    assert Path(GIT_JOBS).exists()


@pytest.mark.slow
def test_a_big_first_sync_prints_a_summary_and_lists_jobs_only_when_asked(
    repo: pygit2.Repository, tmp_path: Path
) -> None:
    import jobs

    hub = tmp_path / "hub.git"
    init_repo(hub, bare=True)
    alice = jobs.Jobs.open(repo.workdir, signer=cob.Signer.generate())
    made = [alice.create("HEAD", name=f"job{i}") for i in range(25)]
    for job in made:
        job.run("https://ci.example/1")
    alice.sync(str(hub), fetch=False)
    bob, b = tmp_path / "bob", cob.Signer.generate().save(tmp_path / "b.key")
    init_repo(bob)
    first = ok(bob, "sync", str(hub), "--no-push", key=b)
    assert "jobs changed 25" in first.out and len(first.out.strip().splitlines()) <= 2, first
    alice_more = [job.run("https://ci.example/2") for job in made[:3]]
    assert len(alice_more) == 3
    alice.sync(str(hub), fetch=False)
    verbose = ok(bob, "sync", str(hub), "--no-push", "--verbose", key=b)
    assert sorted(re.findall(r"changed  job (\w+)", verbose.out)) == sorted(j.id[:12] for j in made[:3])


def test_two_syncs_racing_on_one_hub_are_never_reported_as_a_hook_refusal(
    repo: pygit2.Repository, tmp_path: Path
) -> None:
    """Both push the same ref at once (a slow hook holds them together): at most `busy`."""
    import subprocess

    hub = tmp_path / "hub.git"
    init_repo(hub, bare=True)
    hook = hub / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\ncat >/dev/null\nsleep 1\n")
    hook.chmod(0o755)
    key = cob.Signer.generate().save(tmp_path / "a.key")
    wd = Path(repo.workdir)
    job = ok(wd, "create", "HEAD", key=key).line
    ok(wd, "run", job, "--log", "https://ci.example/1", key=key)
    procs = [
        subprocess.Popen(
            [GIT_JOBS, "sync", str(hub), "--no-fetch", "--json"],
            cwd=wd,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**__import__("os").environ, "GIT_JOBS_KEY": str(key)},
        )
        for _ in range(2)
    ]
    reports = [p.communicate(timeout=60) for p in procs]
    kinds = [r["kind"] for out, _ in reports for r in __import__("json").loads(out)["refused"]]
    assert all(p.returncode == 0 for p in procs), reports
    assert "rejected" not in kinds and set(kinds) <= {"busy"}
