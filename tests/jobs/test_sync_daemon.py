"""A node's daemon syncing one new change in a long-lived process (issue 30): what it costs in
git processes and objects, and that our own results still go out when the remote lacks them.

Real git, real repositories: a bare hub on a local path (read in place) or served by ``git
daemon`` on loopback, and peers cloned from it. Which git
commands ran is read from git's own trace (``GIT_TRACE2_EVENT``), not from mocks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import cob
from jobs import Jobs
from jobs.sync import SyncReport
from tests.conftest import git
from tests.gitdaemon import GitDaemon
from tests.jobs.test_sync import LOG, World, entries, index_ref, index_tip


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def git_commands(trace: Path) -> list[tuple[str, list[str]]]:
    """(command name, argv) of every git process the trace saw (children of children too)."""
    argv: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for line in trace.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "start":
            argv[event["sid"]] = [str(a) for a in event["argv"]]
        elif event.get("event") == "cmd_name":
            names[event["sid"]] = str(event["name"])
    return [(names.get(sid, "?"), args) for sid, args in argv.items()]


def _sync_one_new_change(
    world: World, signers: Iterator[cob.Signer], remote: str, trace: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[cob.Signer, Jobs, SyncReport, str, int]:
    """A warm daemon's sync of one change another node just pushed: (that node's signer, the
    daemon's store, its report, the job, how many objects the sync added)."""
    hub = str(world.hub)
    a, node = world.peer("a", next(signers)), world.peer("node", next(signers))
    assert a.signer is not None and node.signer is not None
    history = [a.create(world.commits[i % 3], f"job{i}") for i in range(12)]
    for i, job in enumerate(history):
        job.run(f"{LOG}{i}")
    assert a.sync(hub, fetch=False).ok
    first = node.sync(remote)  # the daemon's process: warm from here on
    assert first.ok and len(first.changed) == len(history)
    node.create(world.commits[0], "own").run(LOG + "own")
    assert node.sync(remote).pushed  # ours is on the hub: nothing of ours moves below

    job = history[5]
    job.reload()
    job.run(LOG + "new")
    assert a.sync(hub, fetch=False).ok
    before = _objects(node.repo.path)
    monkeypatch.setenv("GIT_TRACE2_EVENT", str(trace))
    report = node.sync(remote)
    monkeypatch.delenv("GIT_TRACE2_EVENT")

    assert report.ok and report.changed == [job.id] and report.pushed == []
    assert [u.ref for u in report.fetched] == [index_ref(a.signer.nid)]
    got = node.get(job.id)
    assert got is not None and len(got.runs_of(a.signer.nid)) == 2
    git(node.repo.path, "fsck", "--strict", "--no-progress")
    return a.signer, node, report, job.id, _objects(node.repo.path) - before


def _objects(repo: str) -> int:
    counts = dict(line.split(": ") for line in git(repo, "count-objects", "-v").splitlines())
    return int(counts["count"]) + int(counts["in-pack"])


def test_one_new_change_from_a_hub_on_a_path_runs_no_git(
    world: World, signers: Iterator[cob.Signer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub on a local path is read in place (cob.sync.localhub): no listing, no fetch, no
    upload-pack; only the new change's objects are copied in (its commit, tree and ops; the
    index commit and the trees on the path to the entry), checked as any fetch's."""
    trace = tmp_path / "trace.json"
    *_, added = _sync_one_new_change(world, signers, str(world.hub), trace, monkeypatch)
    assert not trace.exists() or git_commands(trace) == []
    assert 0 < added <= 10


def test_one_new_change_over_the_network_costs_a_listing_and_one_fetch(
    world: World, signers: Iterator[cob.Signer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = tmp_path / "trace.json"
    with GitDaemon(world.served) as daemon:
        *_, added = _sync_one_new_change(world, signers, daemon.url("hub.git"), trace, monkeypatch)
    commands = git_commands(trace)
    names = [name for name, _ in commands]
    # the listing and the quarantine's fetch (with what git runs under it); no walk of our own
    # history (nothing of ours is unpublished), no listing of our refs by the borrowed
    # repository, no push (the remote holds our index)
    assert "rev-list" in names and "index-pack" in names  # git still checks what it received
    assert names.count("ls-remote") == 1 and names.count("fetch") == 1
    assert "for-each-ref" not in names and "push" not in names
    assert not any("--missing=print" in args for _, args in commands)
    # negotiation: the hub was told what we hold, so only the new change came (its commit,
    # tree and ops; the index commit and the trees on the path to the entry), not a's history
    sizes = [int(m[1]) for _, c in commands for w in c if (m := re.match(r"--pack_header=2,(\d+)$", w))]
    assert len(sizes) == 1 and sizes[0] <= 10
    assert 0 < added <= 10


def test_our_index_is_pushed_again_when_the_remote_is_behind_it(
    world: World, signers: Iterator[cob.Signer]
) -> None:
    hub = str(world.hub)
    node = world.peer("node", next(signers))
    assert node.signer is not None
    nid = node.signer.nid
    job = node.create(world.commits[0])
    job.run(LOG + "1")
    assert node.sync(hub).pushed
    first = index_tip(world.hub, nid)
    job.run(LOG + "2")
    assert node.sync(hub).pushed
    second = index_tip(world.hub, nid)
    assert first is not None and second is not None and first != second
    # the hub loses our last push (restored from a backup): nothing new on either side, but
    # our index is ahead of the remote's, so the next sync sends it again
    git(world.hub, "update-ref", index_ref(nid), first, second)
    report = node.sync(hub)
    assert report.ok and report.fetched == []
    assert [(u.ref, u.old, u.new) for u in report.pushed] == [(index_ref(nid), first, second)]
    assert index_tip(world.hub, nid) == second
    assert entries(world.hub, nid) == {job.id: job.tips[nid]}
