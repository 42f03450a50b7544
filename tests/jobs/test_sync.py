"""Sync over real Git remotes: a `git daemon` hub on loopback, peer-to-peer paths, hostile peers.

Every peer is its own repository (a clone of one origin, so the job commits exist) with its own
key. Nothing here is mocked: transports are stock git, refs are checked with stock git.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pygit2
import pytest
import uuid6

import cob
import jobs
from cob.change import write_change
from jobs import FinishRun, Jobs, StartRun
from jobs.jobtype import JOB_TYPE, TYPENAME
from jobs.sync import SyncReport
from tests.conftest import git, init_repo
from tests.gitdaemon import GitDaemon

LOG = "https://ci.example.invalid/log/"


# -- helpers ---------------------------------------------------------------------------------
def jobs_uuid() -> str:
    return str(uuid6.uuid7())


def index_ref(nid: str | None) -> str:
    assert nid is not None
    return cob.index_ref(nid)


def index_tip(path: Path | str, nid: str | None) -> str | None:
    """``nid``'s index tip in the repository at ``path`` (a work tree or a bare hub)."""
    assert nid is not None
    return cob.reader.RefReader(pygit2.Repository(str(path))).index_tips().get(nid)


def entries(path: Path | str, nid: str | None) -> dict[str, str]:
    """{job id: tip} of ``nid``'s index in the repository at ``path``."""
    repo = pygit2.Repository(str(path))
    tip = index_tip(path, nid)
    return cob.sigrefs.entries(repo, cob.sigrefs.tree_of(repo, tip), TYPENAME)


def unsigned_index(
    repo: pygit2.Repository, nid: str, parent: str | None, updates: dict[str, str | None]
) -> str:
    """An index commit as an honest one would be (tree, parents, author), but unsigned."""
    base = cob.sigrefs.tree_of(repo, parent)
    tree = cob.sigrefs._write_tree(repo, base, {(TYPENAME, k): v for k, v in updates.items()})
    ident = pygit2.Signature(nid, nid)
    parents = ([parent] if parent else []) + sorted({t for t in updates.values() if t})
    oids = [pygit2.Oid(hex=p) for p in parents]
    return str(repo.create_commit(None, ident, ident, cob.sigrefs.MESSAGE, tree, oids))


def has_object(path: Path | str, oid: str) -> bool:
    """Whether a fresh open of the repository at ``path`` holds ``oid``."""
    return oid in pygit2.Repository(str(path))


def state_of(peer: Jobs, job_id: str) -> bytes:
    """The folded state, full fold from scratch, as canonical bytes (comparable across peers)."""
    ev = peer.store.load(JOB_TYPE, job_id, full=True)
    assert ev is not None and ev.state is not None
    return msgspec.msgpack.Encoder(order="deterministic").encode(ev.state)


def cob_refs(path: Path | str) -> dict[str, str]:
    """Every ref under refs/namespaces/, read by stock git."""
    out = git(path, "for-each-ref", "--format=%(objectname) %(refname)", "refs/namespaces/")
    return {name: oid for oid, name in (line.split(" ", 1) for line in out.splitlines())}


def staging_refs(path: Path | str) -> str:
    return git(path, "for-each-ref", "refs/git-jobs-staging/")


class World:
    """An origin with a few commits, a bare hub under ``served`` and peers cloned from it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.served = tmp / "served"
        self.served.mkdir()
        origin = tmp / "origin"
        init_repo(origin, commits=3)
        self.hub = self.served / "hub.git"
        git(tmp, "clone", "-q", "--bare", str(origin), str(self.hub))
        self.commits = git(origin, "rev-list", "HEAD").split()

    def peer(self, name: str, signer: cob.Signer, remote: str | None = None) -> Jobs:
        path = self.tmp / name
        git(self.tmp, "clone", "-q", str(self.hub), str(path))
        if remote is not None:
            git(path, "remote", "set-url", "origin", remote)
        return Jobs.open(path, signer)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.fixture
def daemon(world: World) -> Iterator[GitDaemon]:
    with GitDaemon(world.served) as d:
        yield d


# -- the hub ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_three_peers_converge_through_a_git_daemon_hub(
    world: World, daemon: GitDaemon, signers: Iterator[cob.Signer]
) -> None:
    url = daemon.url("hub.git")
    peers = [world.peer(f"peer{i}", next(signers), url) for i in range(3)]
    nids = [p.signer.nid for p in peers if p.signer is not None]
    open_runs: dict[int, list[tuple[str, str]]] = {i: [] for i in range(3)}
    job_ids: set[str] = set()
    orders = itertools.cycle([(0, 1, 2), (2, 0, 1), (1, 2, 0), (0, 2, 1)])
    rounds = 3
    for rnd in range(rounds):
        for i in next(orders):
            peer = peers[i]
            report = peer.sync("origin")
            assert report.refused == [] and report.rejected == []
            # finish what this peer started last round, start new runs on the same jobs
            for job_id, run_id in open_runs[i]:
                mut = peer.get_mut(job_id)
                assert mut is not None
                mut.finish(run_id, "succeeded" if (rnd + i) % 2 else "failed")
            open_runs[i] = []
            moved = {}
            for commit in world.commits[:2]:
                for name in ("ci", "lint"):
                    mut = peer.create(commit, name)
                    job_ids.add(mut.id)
                    open_runs[i].append((mut.id, str(mut.run(f"{LOG}{i}/{rnd}"))))
                    moved[mut.id] = mut.tips[nids[i]]
            pushed = peer.sync("origin")
            # one ref per node: its index, naming the four jobs it just moved at their new tips
            assert pushed.refused == [] and [u.ref for u in pushed.pushed] == [index_ref(nids[i])]
            assert entries(world.hub, nids[i]) == moved
    for _ in range(2):  # everyone hears about everyone's last pushes
        for peer in peers:
            peer.sync("origin")

    assert len(job_ids) == 4  # same (commit, name) -> same job id on every peer
    for job_id in job_ids:
        states = {state_of(p, job_id) for p in peers}
        assert len(states) == 1
        job = peers[0].get(job_id)
        assert job is not None and len(job.nodes()) == 3
        for p in peers:
            assert p.signer is not None
            runs = job.runs_of(p.signer.nid)
            assert len(runs) == rounds and len(runs.finished()) == rounds - 1
            assert len(runs.started()) == 1
    refs = [cob_refs(p.repo.workdir) for p in peers]
    assert refs[0] == refs[1] == refs[2] == cob_refs(world.hub)
    assert sorted(refs[0]) == sorted(index_ref(n) for n in nids)  # refs grow with nodes, not jobs
    for p in peers:
        for n in nids:
            assert set(entries(p.repo.workdir, n)) == job_ids
    for p in peers:
        assert staging_refs(p.repo.workdir) == ""
        git(p.repo.workdir, "fsck", "--strict", "--no-progress")


def test_report_says_what_moved_and_what_changed(
    world: World, daemon: GitDaemon, signers: Iterator[cob.Signer]
) -> None:
    url = daemon.url("hub.git")
    a, b = world.peer("a", next(signers), url), world.peer("b", next(signers), url)
    job = a.create(world.commits[0])
    job.run(LOG + "a")
    assert a.signer is not None
    nid = a.signer.nid
    first = a.sync("origin")
    assert first.fetched == [] and first.changed == []
    index = index_tip(world.tmp / "a", nid)
    assert [(u.ref, u.old, u.new) for u in first.pushed] == [(index_ref(nid), None, index)]
    assert entries(world.hub, nid) == {job.id: job.tips[nid]}

    got = b.sync("origin")
    assert [u.ref for u in got.fetched] == [index_ref(nid)]
    assert got.changed == [job.id] and got.pushed == [] and got.ok
    data = got.to_json()
    assert data["version"] == 1 and data["remote"] == "origin"
    assert data["fetched"] == [
        {
            "ref": index_ref(nid),
            "nid": nid,
            "type": None,  # an index ref holds every object of its node: `changed` names the jobs
            "object": None,
            "old": None,
            "new": index,
        }
    ]
    assert msgspec.json.decode(msgspec.json.encode(data)) == data  # plain JSON

    again = b.sync("origin")  # nothing new: nothing reported
    assert again.to_json()["fetched"] == [] and again.changed == [] and again.pushed == []

    old_tip = job.tips[nid]
    job.reload()
    run_id = job.run(LOG + "a2")
    job.finish(run_id, "succeeded")
    a.sync("origin")
    new_index = index_tip(world.tmp / "a", nid)
    assert new_index != index
    moved = b.sync("origin")
    assert [(u.old, u.new) for u in moved.fetched] == [(index, new_index)]
    assert entries(world.tmp / "b", nid) == {job.id: job.tips[nid]} and job.tips[nid] != old_tip
    assert moved.changed == [job.id]
    seen = b.get(job.id)
    assert seen is not None and seen.runs_of(nid)[run_id].succeeded


# -- peer to peer ----------------------------------------------------------------------------
def test_two_peers_sync_directly_by_path(world: World, signers: Iterator[cob.Signer]) -> None:
    a, b = world.peer("a", next(signers)), world.peer("b", next(signers))
    apath, bpath = str(world.tmp / "a"), str(world.tmp / "b")
    ja = a.create(world.commits[1], "build")
    ra = ja.run(LOG + "a")
    jb = b.create(world.commits[1], "build")
    rb = jb.run(LOG + "b")
    assert ja.id == jb.id

    report = a.sync(bpath)  # fetch b's, push a's into b (a non-bare repository)
    assert report.changed == [ja.id] and [u.ref for u in report.pushed] == [index_ref(a.signer.nid)]  # type: ignore[union-attr]
    assert entries(bpath, a.signer.nid) == {ja.id: ja.tips[a.signer.nid]}  # type: ignore[union-attr]
    jb.reload()
    assert set(jb.nodes()) == {a.signer.nid, b.signer.nid}  # type: ignore[union-attr]

    jb.finish(rb, "failed")
    ja.reload()
    ja.finish(ra, "succeeded")
    b.sync("file://" + apath)  # any URL git understands
    a.sync(bpath)
    assert state_of(a, ja.id) == state_of(b, ja.id)
    assert cob_refs(apath) == cob_refs(bpath)
    done = a.get(ja.id)
    assert done is not None
    assert done.runs_of(b.signer.nid)[rb].failed and done.runs_of(a.signer.nid)[ra].succeeded  # type: ignore[union-attr]


def test_fetch_only_and_push_only(world: World, signers: Iterator[cob.Signer]) -> None:
    a, b = world.peer("a", next(signers)), world.peer("b", next(signers))
    a.create(world.commits[0]).run(LOG)
    hub = str(world.hub)
    assert a.sync(hub, push=False).pushed == [] and cob_refs(world.hub) == {}
    assert len(a.sync(hub, fetch=False).pushed) == 1
    reader = Jobs.open(world.tmp / "b")  # no key: read-only, fetch only
    report = reader.sync(hub)
    assert len(report.fetched) == 1 and report.pushed == []
    assert b.get(report.changed[0]) is not None


# -- remotes in every state ------------------------------------------------------------------
def test_empty_remote_and_foreign_refs_are_handled(world: World, signers: Iterator[cob.Signer]) -> None:
    a = world.peer("a", next(signers))
    empty = world.tmp / "empty.git"
    git(world.tmp, "init", "-q", "--bare", str(empty))
    job = a.create(world.commits[0])
    job.run(LOG)
    assert a.sync(str(empty)).fetched == []
    assert set(cob_refs(empty)) == {index_ref(a.signer.nid)}  # type: ignore[union-attr]

    # Branches, tags, other namespaced refs, per-object refs of the layout before the index
    # (never fetched from a remote), refs beside or below an index ref's name: all ignored.
    other = next(signers).nid
    head = world.commits[0]
    for ref in (
        "refs/heads/feature",
        "refs/tags/v1",
        f"refs/namespaces/{other}/refs/heads/main",
        f"refs/namespaces/{other}/refs/cobs/xyz.radicle.issue/{head}",
        f"refs/namespaces/{other}/refs/cobs/{TYPENAME}/not-an-oid",
        f"refs/namespaces/{other}/refs/cobs/{TYPENAME}/{job.id}",
        f"refs/namespaces/{other}/refs/sigrefs-old",
        f"refs/namespaces/{other}/refs/sigrefs/x",
        f"refs/namespaces/{other}/sigrefs",
    ):
        git(world.hub, "update-ref", ref, head)
    report = a.sync(str(world.hub))
    assert report.fetched == [] and report.refused == [] and report.changed == []
    mine = cob_refs(world.tmp / "a")
    assert set(mine) == {index_ref(a.signer.nid)}  # type: ignore[union-attr]
    assert index_ref(a.signer.nid) in cob_refs(world.hub)  # type: ignore[union-attr]


def test_refs_to_non_commits_are_refused(world: World, signers: Iterator[cob.Signer]) -> None:
    a, other, third = world.peer("a", next(signers)), next(signers), next(signers)
    job = a.create(world.commits[0])
    a.sync("origin")
    blob = subprocess.run(
        ["git", "hash-object", "-w", "--stdin"], cwd=world.hub, input="x", capture_output=True, text=True
    ).stdout.strip()
    git(world.hub, "tag", "-a", "-m", "t", "annotated", world.commits[0])
    tag = git(world.hub, "rev-parse", "refs/tags/annotated").strip()
    a.create(world.commits[1])
    git(world.hub, "update-ref", index_ref(other.nid), blob)  # an index that is a blob
    git(world.hub, "update-ref", index_ref(third.nid), tag)  # an index that is an annotated tag
    report = a.sync("origin")
    assert sorted((r.ref, r.kind) for r in report.refused) == sorted(
        [(index_ref(other.nid), "not-a-commit"), (index_ref(third.nid), "not-a-commit")]
    )
    namespaces = {name.split("/")[2] for name in cob_refs(world.tmp / "a")}
    assert other.nid not in namespaces and third.nid not in namespaces
    assert not has_object(world.tmp / "a", blob)  # nothing a refused tip brought is kept
    assert a.get(job.id) is not None and staging_refs(world.tmp / "a") == ""


def test_staging_refs_of_a_dead_sync_are_cleaned_up(world: World, signers: Iterator[cob.Signer]) -> None:
    a = world.peer("a", next(signers))
    adir = world.tmp / "a"
    dead = f"refs/git-jobs-staging/{2**22 + 7}-deadbeef/x/refs/cobs/{TYPENAME}/{world.commits[0]}"
    alive = f"refs/git-jobs-staging/{os.getppid()}-cafe/x/refs/cobs/{TYPENAME}/{world.commits[0]}"
    git(adir, "update-ref", dead, world.commits[0])
    git(adir, "update-ref", alive, world.commits[0])
    a.sync("origin")
    assert staging_refs(adir).split() == [world.commits[0], "commit", alive]


def test_behind_and_diverged_remote_refs_are_left_and_reported(
    world: World, signers: Iterator[cob.Signer]
) -> None:
    a, b = world.peer("a", next(signers)), world.peer("b", next(signers))
    hub, stale = str(world.hub), world.tmp / "stale.git"
    git(world.tmp, "init", "-q", "--bare", str(stale))
    job = a.create(world.commits[0])
    run_id = job.run(LOG)
    a.sync(hub)
    b.sync(hub)
    git(world.tmp / "a", "push", "-q", str(stale), "refs/namespaces/*:refs/namespaces/*")
    job.finish(run_id, "succeeded")
    a.sync(hub)
    b.sync(hub)
    assert a.signer is not None
    ref = index_ref(a.signer.nid)
    newest = cob_refs(world.tmp / "b")[ref]
    older = cob_refs(stale)[ref]
    assert older != newest

    behind = b.sync(str(stale), push=False)  # a's index there is older than b's copy
    assert [(r.ref, r.kind, r.side) for r in behind.refused] == [(ref, "behind", "fetch")]
    assert cob_refs(world.tmp / "b")[ref] == newest

    # Sideways: a valid change by a, in an index validly signed by a, but on top of a's older
    # index: not a's current history.
    codec = a.store.codec(JOB_TYPE)
    sideways = write_change(
        a.repo, codec, a.signer, a.signer.nid, [StartRun(str(jobs_uuid()), LOG)], [job.id]
    )
    side_index = cob.sigrefs.write_commit(
        a.repo, a.signer, a.signer.nid, older, {(TYPENAME, job.id): sideways}
    )
    git(world.tmp / "a", "push", "-q", "--force", str(stale), f"{side_index}:{ref}")
    diverged = b.sync(str(stale), push=False)
    assert [(r.kind, r.local, r.remote) for r in diverged.refused] == [("diverged", newest, side_index)]
    assert cob_refs(world.tmp / "b")[ref] == newest
    assert diverged.changed == [] and diverged.fetched == []
    assert not has_object(world.tmp / "b", side_index) and not has_object(world.tmp / "b", sideways)
    assert entries(world.tmp / "b", a.signer.nid) == {job.id: job.tips[a.signer.nid]}


def test_reinstalled_node_gets_its_own_history_back(world: World, signers: Iterator[cob.Signer]) -> None:
    key = next(signers)
    a = world.peer("a", key)
    job = a.create(world.commits[0])
    run_id = job.run(LOG)
    a.sync(str(world.hub))
    again = world.peer("a-again", key)  # same key, fresh clone: its own refs come from the hub
    report = again.sync(str(world.hub))
    assert [u.ref for u in report.fetched] == [index_ref(key.nid)]
    assert entries(world.tmp / "a-again", key.nid) == {job.id: job.tips[key.nid]}
    mut = again.get_mut(job.id)
    assert mut is not None
    mut.finish(run_id, "succeeded")
    pushed = again.sync(str(world.hub))
    assert pushed.refused == [] and [u.ref for u in pushed.pushed] == [index_ref(key.nid)]
    assert entries(world.hub, key.nid) == {job.id: mut.tips[key.nid]} != {job.id: job.tips[key.nid]}


# -- hostile peers ---------------------------------------------------------------------------
@pytest.mark.slow
def test_hostile_peer_cannot_forge_or_rewrite(
    world: World, daemon: GitDaemon, signers: Iterator[cob.Signer]
) -> None:
    url = daemon.url("hub.git")
    alice, bob, eve = (world.peer(n, next(signers), url) for n in ("alice", "bob", "eve"))
    assert alice.signer and bob.signer and eve.signer
    x = alice.create(world.commits[0], "x")
    y = alice.create(world.commits[0], "y")
    z = alice.create(world.commits[0], "z")
    run_x = x.run(LOG + "alice")
    alice.sync("origin")
    bmut = bob.create(world.commits[0], "y")
    bob_run = bmut.run(LOG + "bob")
    bob.sync("origin")
    alice.sync("origin")
    eve.sync("origin")
    before_alice = {j: state_of(alice, j) for j in (x.id, y.id, z.id)}
    before_bob_refs = cob_refs(world.tmp / "bob")

    codec = eve.store.codec(JOB_TYPE)
    eve_dir = world.tmp / "eve"

    def heads(job_id: str) -> list[str]:
        ev = eve.store.load(JOB_TYPE, job_id, full=True)
        assert ev is not None
        return sorted(ev.heads)

    # 1. A validly signed change by eve that finishes alice's run: the type rejects it.
    unauthorized = write_change(
        eve.repo, codec, eve.signer, eve.signer.nid, [FinishRun(str(run_x), "failed")], heads(x.id)
    )
    # 2. A change forged as bob's (signed by eve's key), buried under a valid change of eve.
    forged = write_change(
        eve.repo, codec, eve.signer, bob.signer.nid, [FinishRun(str(bob_run), "failed")], heads(y.id)
    )
    on_top = write_change(
        eve.repo, codec, eve.signer, eve.signer.nid, [StartRun(jobs_uuid(), LOG + "eve")], [forged]
    )
    # Eve's own index, validly signed by her, names both tips: taken, and every load rejects them.
    assert cob.set_tip(eve.repo, eve.signer, eve.signer.nid, TYPENAME, x.id, unauthorized, None)
    assert cob.set_tip(eve.repo, eve.signer, eve.signer.nid, TYPENAME, y.id, on_top, None)
    git(eve_dir, "push", "-q", "origin", f"{index_ref(eve.signer.nid)}:{index_ref(eve.signer.nid)}")
    hub = world.hub
    alice_index, bob_index = index_tip(hub, alice.signer.nid), index_tip(hub, bob.signer.nid)
    assert alice_index is not None and bob_index is not None
    # 3. An unsigned index on top of bob's, as the hub may write: it moves bob's entry for y back
    #    to the job's bare root and names an unsigned change of z.
    tree = eve.repo[unauthorized].tree_id
    ident = pygit2.Signature(eve.signer.nid, eve.signer.nid)
    unsigned = str(eve.repo.create_commit(None, ident, ident, "Run: started\n", tree, [pygit2.Oid(hex=z.id)]))
    bob_forged = unsigned_index(eve.repo, bob.signer.nid, bob_index, {y.id: y.id, z.id: unsigned})
    # 4. A fast-forward of alice's index, authored as alice but signed by eve's key.
    alice_forged = cob.sigrefs.write_commit(
        eve.repo, eve.signer, alice.signer.nid, alice_index, {(TYPENAME, x.id): on_top}
    )
    git(eve_dir, "push", "-q", "--force", "origin", f"{bob_forged}:{index_ref(bob.signer.nid)}")
    git(eve_dir, "push", "-q", "--force", "origin", f"{alice_forged}:{index_ref(alice.signer.nid)}")

    report = alice.sync("origin")
    assert [u.ref for u in report.fetched] == [index_ref(eve.signer.nid)]
    rejected = {(r.object_id, r.change) for r in report.rejected}
    assert rejected == {(x.id, unauthorized), (y.id, forged), (y.id, on_top)}
    reasons = {r.change: r.reason for r in report.rejected}
    assert "signed by" in reasons[forged] and "descends from rejected" in reasons[on_top]
    refused = {(r.ref, r.side, r.kind) for r in report.refused}
    assert refused == {
        (index_ref(bob.signer.nid), "fetch", "bad-tip"),  # unsigned, moving an entry back
        (index_ref(alice.signer.nid), "fetch", "bad-tip"),  # signed by eve, not alice
        (index_ref(alice.signer.nid), "push", "non-fast-forward"),  # cannot repair it
    }
    assert "not signed" in next(r.reason for r in report.refused if r.ref == index_ref(bob.signer.nid))
    assert eve.signer.nid in next(
        r.reason for r in report.refused if r.ref == index_ref(alice.signer.nid) and r.side == "fetch"
    )
    assert {j: state_of(alice, j) for j in (x.id, y.id, z.id)} == before_alice
    assert alice.get(x.id).runs_of(alice.signer.nid)[run_x].status == jobs.Status.STARTED  # type: ignore[union-attr]
    assert index_tip(world.tmp / "alice", bob.signer.nid) == bob_index
    assert index_tip(world.tmp / "alice", alice.signer.nid) == alice_index
    for oid in (unsigned, bob_forged, alice_forged):  # nothing of a refused index is kept
        assert not has_object(world.tmp / "alice", oid)

    # Alice's next push is refused (the hub's copy of her index was rewritten), and says so.
    x.reload()
    x.finish(run_x, "succeeded")
    after = alice.sync("origin")
    assert [(r.ref, r.side, r.kind) for r in after.refused if r.side == "push"] == [
        (index_ref(alice.signer.nid), "push", "non-fast-forward")
    ]
    assert "fetch" in next(r.reason for r in after.refused if r.side == "push")

    # Bob keeps his data too; the unsigned index never enters his repository, nor its tips.
    bob_report = bob.sync("origin")
    assert {(r.object_id, r.change) for r in bob_report.rejected} == rejected
    assert {(r.ref, r.side, r.kind) for r in bob_report.refused if r.side == "fetch"} == {
        (index_ref(bob.signer.nid), "fetch", "bad-tip"),
        (index_ref(alice.signer.nid), "fetch", "bad-tip"),
    }
    mine = cob_refs(world.tmp / "bob")
    for ref, oid in before_bob_refs.items():
        assert mine[ref] == oid
    assert z.id not in entries(world.tmp / "bob", bob.signer.nid)
    assert not has_object(world.tmp / "bob", unsigned) and not has_object(world.tmp / "bob", bob_forged)
    assert bob.get(y.id).runs_of(bob.signer.nid)[bob_run].status == jobs.Status.STARTED  # type: ignore[union-attr]
    # Loads keep reporting the rejected changes; nothing crashes.
    assert {(r.object_id, r.change) for r in bob.rejected()} >= rejected


# -- failures --------------------------------------------------------------------------------
def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def _kill_server(d: GitDaemon) -> None:
    """SIGKILL the daemon and every process it forked, as if the server machine died."""
    assert d.proc is not None
    victims = _descendants(d.proc.pid)
    d.kill()
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _kill_when(marker: Path, d: GitDaemon) -> threading.Thread:
    """Kill the server (in a thread) as soon as ``marker`` appears."""

    def killer() -> None:
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        _kill_server(d)

    t = threading.Thread(target=killer)
    t.start()
    return t


def test_daemon_killed_mid_sync_then_next_sync_converges(
    world: World, daemon: GitDaemon, signers: Iterator[cob.Signer], isolated_home: Path
) -> None:
    url = daemon.url("hub.git")
    a, b = world.peer("a", next(signers), url), world.peer("b", next(signers), url)
    job = a.create(world.commits[0])
    run_a = job.run(LOG + "a")
    a.sync("origin")
    jb = b.create(world.commits[0])
    run_b = jb.run(LOG + "b")
    b_refs = cob_refs(world.tmp / "b")

    # The server stalls while packing (a pack-objects hook from the global config, which
    # upload-pack honours), and dies while b waits for the pack.
    marker = world.tmp / "packing"
    hook = world.tmp / "slow-pack.sh"
    hook.write_text(f'#!/bin/sh\ntouch {marker}\nsleep 60\nexec "$@"\n')
    hook.chmod(0o755)
    gitconfig = isolated_home / ".gitconfig"
    original = gitconfig.read_text()
    gitconfig.write_text(original + f"[uploadpack]\n\tpackObjectsHook = {hook}\n")

    t = _kill_when(marker, daemon)
    with pytest.raises(cob.TransportError) as info:
        b.sync("origin")
    t.join()
    assert isinstance(info.value, jobs.JobsError)
    message = str(info.value)
    assert "\n" not in message and "cannot fetch from origin" in message
    assert cob_refs(world.tmp / "b") == b_refs  # nothing lost, nothing half-moved
    assert staging_refs(world.tmp / "b") == ""

    # Stopped: a clear error at once, no hang.
    with pytest.raises(jobs.SyncError, match="cannot list origin"):
        b.sync("origin")

    gitconfig.write_text(original)
    daemon.start()  # same port
    report = b.sync("origin")
    assert report.changed == [job.id] and len(report.pushed) == 1
    a.sync("origin")
    assert state_of(a, job.id) == state_of(b, job.id)
    final = a.get(job.id)
    assert final is not None and set(final.nodes()) == {a.signer.nid, b.signer.nid}  # type: ignore[union-attr]
    assert run_a in final.runs_of(a.signer.nid) and run_b in final.runs_of(b.signer.nid)  # type: ignore[union-attr]


@pytest.mark.parametrize("remote", ["no-such-remote", "/nonexistent/repo.git", "git://127.0.0.1:1/x.git"])
def test_unreachable_remote_is_one_clear_error(
    world: World, signers: Iterator[cob.Signer], remote: str
) -> None:
    a = world.peer("a", next(signers))
    a.create(world.commits[0]).run(LOG)
    with pytest.raises(jobs.SyncError) as info:
        a.sync(remote)
    assert "\n" not in str(info.value) and str(info.value).startswith("cannot list ")
    assert info.value.report is not None


def test_failed_push_is_a_clear_error_keeping_the_fetch(world: World, signers: Iterator[cob.Signer]) -> None:
    a, b = world.peer("a", next(signers)), world.peer("b", next(signers))
    a.create(world.commits[0]).run(LOG)
    a.sync("origin")
    b.create(world.commits[0]).run(LOG)
    git(world.tmp / "b", "remote", "set-url", "--push", "origin", str(world.tmp / "gone.git"))
    with pytest.raises(jobs.SyncError) as info:
        b.sync("origin")
    assert str(info.value).startswith("cannot push to origin") and "\n" not in str(info.value)
    report = info.value.report
    assert isinstance(report, SyncReport) and len(report.fetched) == 1
    assert len(report.changed) == 1  # what was fetched is kept (and listed)


def test_push_declined_by_a_remote_hook_is_reported(world: World, signers: Iterator[cob.Signer]) -> None:
    a = world.peer("a", next(signers))
    a.create(world.commits[0]).run(LOG)
    hook = world.hub / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho no jobs here >&2\nexit 1\n")
    hook.chmod(0o755)
    report = a.sync("origin")
    assert [(r.side, r.kind) for r in report.refused] == [("push", "rejected")]
    assert "declined" in report.refused[0].reason and report.pushed == []


# -- interop with stock git ------------------------------------------------------------------
def test_plain_git_fetch_with_documented_refspec_is_seen_by_the_api(
    world: World, signers: Iterator[cob.Signer]
) -> None:
    a, b = world.peer("a", next(signers)), world.peer("b", next(signers))
    job = a.create(world.commits[0])
    run_id = job.run(LOG)
    assert a.signer is not None and b.signer is not None
    # README: push your own index with plain git
    ns = f"refs/namespaces/{a.signer.nid}/refs"
    git(world.tmp / "a", "push", "-q", "origin", f"{ns}/sigrefs:{ns}/sigrefs")
    # README: fetch every namespace, fast-forward only
    bdir = world.tmp / "b"
    git(bdir, "config", "--add", "remote.origin.fetch", "refs/namespaces/*:refs/namespaces/*")
    assert b.get(job.id) is None and list(b.all()) == []  # cache warmed with "nothing"
    git(bdir, "fetch", "-q", "origin")
    seen = b.get(job.id)
    assert seen is not None and run_id in seen.runs_of(a.signer.nid)
    assert [j.id for j in b.find_by_commit(world.commits[0])] == [job.id]

    # a finishes; b's plain fetch again; the cache notices the moved ref
    job.finish(run_id, "succeeded")
    git(world.tmp / "a", "push", "-q", "origin", f"{ns}/sigrefs:{ns}/sigrefs")
    git(bdir, "fetch", "-q", "origin")
    seen = b.get(job.id)
    assert seen is not None and seen.runs_of(a.signer.nid)[run_id].succeeded

    # the non-forced refspec is fast-forward only in stock git: a rewound hub index is refused
    ref = index_ref(a.signer.nid)
    kept = cob_refs(bdir)[ref]
    first = git(world.hub, "rev-list", "--first-parent", "--max-parents=0", ref).split()
    assert len(first) == 1 and first[0] != kept  # the chain's parentless start, signed by a
    git(world.hub, "update-ref", ref, first[0])
    res = subprocess.run(["git", "fetch", "origin"], cwd=bdir, capture_output=True, text=True)
    assert res.returncode != 0 and "rejected" in res.stderr
    assert cob_refs(bdir)[ref] == kept
    git(world.hub, "update-ref", ref, kept)

    # with that refspec configured, `git jobs sync` still checks every tip itself: an unsigned
    # fast-forward of the index (moving the job's entry back to its root) is refused, not
    # slipped in by git's own mapping of refs/namespaces/*
    hub = pygit2.Repository(str(world.hub))
    forged = unsigned_index(hub, a.signer.nid, kept, {job.id: job.id})
    git(world.hub, "update-ref", ref, forged)
    report = b.sync("origin")
    assert [(r.ref, r.kind) for r in report.refused] == [(ref, "bad-tip")]
    assert cob_refs(bdir)[ref] == kept
    assert entries(bdir, a.signer.nid) == {job.id: job.tips[a.signer.nid]}
    assert not has_object(bdir, forged)


def test_allowed_signers_verify_synced_changes_with_stock_git(
    world: World, signers: Iterator[cob.Signer]
) -> None:
    a, b = world.peer("a", next(signers)), world.peer("b", next(signers))
    assert a.signer is not None and b.signer is not None
    job = a.create(world.commits[0])
    job.run(LOG)
    a.sync(str(world.hub))
    b.get_mut(b.sync(str(world.hub)).changed[0]).run(LOG + "b")  # type: ignore[union-attr]
    text = b.allowed_signers()
    assert text.splitlines() == sorted(cob.allowed_signers_line(n) for n in (a.signer.nid, b.signer.nid))
    bdir = world.tmp / "b"
    signers_file = world.tmp / "allowed_signers"
    signers_file.write_text(text)
    tip = job.tips[a.signer.nid]
    res = subprocess.run(
        ["git", "-c", f"gpg.ssh.allowedSignersFile={signers_file}", "verify-commit", tip],
        cwd=bdir,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert f'Good "git" signature for {a.signer.nid}' in res.stderr
    log = git(bdir, "-c", f"gpg.ssh.allowedSignersFile={signers_file}", "log", "--show-signature", "-1", tip)
    assert "Good" in log
    # without a's line, stock git refuses
    signers_file.write_text(cob.allowed_signers_line(b.signer.nid) + "\n")
    bad = subprocess.run(
        ["git", "-c", f"gpg.ssh.allowedSignersFile={signers_file}", "verify-commit", tip],
        cwd=bdir,
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0


def test_concurrent_syncs_of_one_repository_do_not_clash(world: World, signers: Iterator[cob.Signer]) -> None:
    a, key = world.peer("a", next(signers)), next(signers)
    for commit in world.commits:
        a.create(commit).run(LOG)
    a.sync("origin")
    world.peer("b", key)
    results: list[object] = []

    def one() -> None:
        try:
            results.append(Jobs.open(world.tmp / "b", key).sync("origin"))
        except Exception as e:  # collected and asserted below
            results.append(e)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(r, SyncReport) for r in results), results
    fetched = [u.ref for r in results for u in r.fetched]  # type: ignore[attr-defined]
    assert a.signer is not None
    assert fetched == [index_ref(a.signer.nid)]  # taken by exactly one of the three
    assert len(entries(world.tmp / "b", a.signer.nid)) == len(world.commits)
    assert cob_refs(world.tmp / "b") == cob_refs(world.hub)
    assert staging_refs(world.tmp / "b") == ""


def test_daemon_killed_mid_push_then_next_sync_converges(
    world: World, daemon: GitDaemon, signers: Iterator[cob.Signer]
) -> None:
    url = daemon.url("hub.git")
    a, b = world.peer("a", next(signers), url), world.peer("b", next(signers), url)
    job = a.create(world.commits[0])
    run_id = job.run(LOG)
    job.finish(run_id, "succeeded")
    a_refs = cob_refs(world.tmp / "a")
    marker = world.tmp / "receiving"
    hook = world.hub / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\nsleep 60\n")
    hook.chmod(0o755)
    t = _kill_when(marker, daemon)
    with pytest.raises(jobs.SyncError) as info:
        a.sync("origin")
    t.join()
    assert str(info.value).startswith("cannot push to origin: ") and "\n" not in str(info.value)
    assert cob_refs(world.tmp / "a") == a_refs and cob_refs(world.hub) == {}

    hook.unlink()
    daemon.start()
    assert len(a.sync("origin").pushed) == 1
    assert b.sync("origin").changed == [job.id]
    assert state_of(a, job.id) == state_of(b, job.id)
