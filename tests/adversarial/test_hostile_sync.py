"""Hostile hubs and peers, round three (issue 26: 1, 2, 11, 12, 14, 15), through a real hub.

The hub is a ``git daemon`` on 127.0.0.1 (tests/gitdaemon.py). Mallory can push anything to
it and move any ref, sometimes with a throwaway key; Alice and Bob are honest. Each attack is
replayed at a size that runs in seconds; it is now refused or bounded, reported in the
``SyncReport``, and the honest nodes' data stays intact. The full-size figures are
``benches/hostile_sync.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

import cob
import jobs
from cob import sigrefs
from jobs import logs
from jobs.assign import assign
from jobs.deadline import MAX_SKEW, Judge
from jobs.policy import parse_policy
from tests.gitdaemon import GitDaemon
from tests.stress.common import git
from tests.stress.hostile import Arena, forge_index

GIT_JOBS = str(Path(sys.executable).parent / "git-jobs")


@pytest.fixture
def arena(tmp_path: Path) -> Iterator[Arena]:
    served = tmp_path / "served"
    served.mkdir()
    git(tmp_path, "init", "-q", "--bare", str(served / "hub.git"))
    with GitDaemon(served) as daemon:
        yield Arena(tmp_path / "arena", daemon.url("hub.git"))


def hub(tmp_path: Path) -> Path:
    return tmp_path / "served" / "hub.git"


def kinds(report: jobs.sync.SyncReport) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in report.refused:
        out[str(r.kind)] = out.get(str(r.kind), 0) + 1
    return out


def junk_commit(repo: Path) -> str:
    """An unsigned commit written straight into the hub (a keyless hub pusher's)."""
    tree = git(repo, "hash-object", "-w", "-t", "tree", "/dev/null").stdout.strip()
    return git(repo, "commit-tree", tree, "-m", "junk").stdout.strip()


def point_refs(repo: Path, refs: dict[str, str]) -> None:
    commands = "".join(f"update {name} {oid}\n" for name, oid in refs.items())
    subprocess.run(["git", "-C", str(repo), "update-ref", "--stdin"], input=commands, text=True, check=True)


def months(n: int, start: int = 2000) -> list[str]:
    return [f"{start + i // 12:04d}-{i % 12 + 1:02d}" for i in range(n)]


def new_peer(arena: Arena, name: str) -> jobs.Jobs:
    path = arena.base / name
    git(arena.base, "clone", "-q", str(arena.base / "origin"), str(path))
    return jobs.Jobs.open(path, signer=cob.Signer.generate())


def alice_runs_again(arena: Arena, url: str = "https://ci.example/alice/2") -> None:
    job = arena.alice.get_mut(arena.job_id)
    assert job is not None
    job.run(url)
    arena.alice.sync(arena.url)


# -- 1. junk refs under a trusted node's namespace ----------------------------------------------
JUNK = 200


@pytest.mark.slow
def test_junk_log_buckets_under_a_node_cost_once_and_never_stop_a_sync(arena: Arena, tmp_path: Path) -> None:
    """A keyless hub pusher points 200 log-bucket refs under Alice's namespace at an unsigned
    commit (the review used 20,000: every peer's sync failed after ~32 s, nothing fetched or
    pushed, and new peers refused Alice's whole namespace). Now a new peer takes Alice's
    index at once, checks at most 32 new buckets of a namespace per sync (newest first, the
    rest deferred), remembers each refusal, and its own push happens every time."""
    alice = arena.nid("alice")
    bad = junk_commit(hub(tmp_path))
    junk = {logs.bucket_ref(alice, m): bad for m in months(JUNK)}
    future = {logs.bucket_ref(alice, "2999-01"): bad}  # a month to come: not even fetched
    point_refs(hub(tmp_path), {**junk, **future})
    alice_runs_again(arena)  # Alice moves on meanwhile

    carol = new_peer(arena, "carol")
    carol.create(arena.commit)  # Carol has results of her own to publish
    first = carol.sync(arena.url)

    assert arena.ref("alice") in {u.ref for u in first.fetched}  # the namespace is not refused
    seen = carol.get(arena.job_id)
    assert seen is not None and len(seen.runs_of(alice)) == 2  # Alice's data, intact
    assert kinds(first) == {"bad-tip": cob.sync.MAX_NEW_FAMILY_REFS}
    assert first.deferred == JUNK - cob.sync.MAX_NEW_FAMILY_REFS
    assert first.ignored >= 1 and first.publication is jobs.sync.Publication.PUBLISHED
    assert {u.ref for u in first.pushed} == {cob.index_ref(carol.signer.nid)}  # type: ignore[union-attr]
    assert bad not in pygit2.Repository(str(carol.repo.path))  # nothing of the junk kept

    second = carol.sync(arena.url)
    assert second.remembered == cob.sync.MAX_NEW_FAMILY_REFS  # refused once, not again
    assert kinds(second) == {"bad-tip": cob.sync.MAX_NEW_FAMILY_REFS}
    assert "refused before, not fetched again 32" in second.summary()

    # An existing peer: Alice's next update still comes through, and Bob's own push happens.
    bob_job = arena.bob.get_mut(arena.job_id)
    assert bob_job is not None
    bob_job.run("https://ci.example/bob/1")
    alice_runs_again(arena, "https://ci.example/alice/3")
    report = arena.bob.sync(arena.url)
    assert arena.ref("alice") in {u.ref for u in report.fetched}
    assert arena.ref("bob") in {u.ref for u in report.pushed}
    for _ in range(JUNK // cob.sync.MAX_NEW_FAMILY_REFS + 1):
        report = arena.bob.sync(arena.url)
    assert report.refused == [] and report.deferred == 0 and report.remembered == JUNK


@pytest.mark.slow
def test_a_junk_ref_replaced_by_a_real_bucket_is_taken(arena: Arena, tmp_path: Path) -> None:
    """A remembered refusal is keyed by the ref's value: when the node publishes a real bucket
    under a name the hub had pointed at junk, the next sync takes it."""
    alice = arena.nid("alice")
    job = arena.alice.get_mut(arena.job_id)
    assert job is not None
    run = job.run("https://ci.example/alice/2")
    name = logs.bucket_ref(alice, logs.bucket_of(run))
    point_refs(hub(tmp_path), {name: junk_commit(hub(tmp_path))})
    assert kinds(arena.bob.sync(arena.url)) == {"bad-tip": 1}
    assert arena.bob.sync(arena.url).remembered == 1
    blob = logs.publish(arena.alice.repo, arena.signers["alice"], run, b"the real log\n")
    assert blob is not None
    git(arena.paths["alice"], "push", "-q", "--force", arena.url, f"{name}:{name}")
    report = arena.bob.sync(arena.url)
    assert name in {u.ref for u in report.logs_fetched} and report.refused == []


@pytest.mark.slow
def test_a_broken_ref_on_the_hub_does_not_fail_the_fetch(arena: Arena, tmp_path: Path) -> None:
    """A ref the hub lists but cannot send (its object is missing there) used to fail every
    peer's whole fetch ("not our ref"). It is refused, remembered, and the rest comes."""
    alice = arena.nid("alice")
    name = logs.bucket_ref(alice, "2020-01")
    alice_runs_again(arena)  # (a hub with a broken ref refuses every push: it is broken)
    loose = hub(tmp_path) / name
    loose.parent.mkdir(parents=True, exist_ok=True)
    loose.write_text("1" * 40 + "\n")
    report = arena.bob.sync(arena.url, push=False)
    assert arena.ref("alice") in {u.ref for u in report.fetched}
    assert [(r.ref, str(r.kind)) for r in report.refused] == [(name, "bad-tip")]
    assert arena.bob.sync(arena.url, push=False).remembered == 1


@pytest.mark.slow
def test_our_own_push_happens_when_the_fetch_fails(arena: Arena, tmp_path: Path, isolated_home: Path) -> None:
    """The hub cannot serve a pack (its upload-pack fails): the sync says so and exits
    non-zero, but this node's own results still reach the hub."""
    job = arena.bob.get_mut(arena.job_id)
    assert job is not None
    job.run("https://ci.example/bob/1")
    alice_runs_again(arena)
    hook = tmp_path / "broken-pack.sh"
    hook.write_text("#!/bin/sh\necho 'pack failed' >&2\nexit 1\n")
    hook.chmod(0o755)
    gitconfig = isolated_home / ".gitconfig"
    gitconfig.write_text(gitconfig.read_text() + f"[uploadpack]\n\tpackObjectsHook = {hook}\n")
    env = dict(os.environ, GIT_JOBS_KEY=str(arena.keys["bob"]))
    result = subprocess.run(
        [GIT_JOBS, "sync", arena.url],
        cwd=arena.paths["bob"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode != 0 and "cannot fetch from" in result.stderr
    assert "Traceback" not in result.stderr
    listed = git(tmp_path, "ls-remote", str(hub(tmp_path)), arena.ref("bob")).stdout.split()
    assert listed and listed[0] == sigrefs.read_tip(arena.bob.repo, arena.nid("bob"))


# -- 2. a stranger's index is bounded ----------------------------------------------------------
def stranger_index(arena: Arena, signer: cob.Signer, entries: int, chain: int = 0) -> str:
    """A stranger's index naming ``entries`` objects (all at Alice's tip: no new objects),
    with ``chain`` unsigned index commits below its signed tip."""
    r = arena.mallory_repo
    nid = signer.nid
    tip = arena.alice_tip()
    git(arena.paths["mallory"], "fetch", "-q", arena.url, "+refs/namespaces/*:refs/namespaces/*")
    updates = {(jobs.TYPENAME, f"{i:040x}"): tip for i in range(entries)}
    base = sigrefs.write_commit(r, signer, nid, None, updates, timestamp=1_700_000_000)
    for i in range(chain):
        base = forge_index(r, base, {}, author=nid, signer=None, timestamp=1_700_000_001 + i)
    return sigrefs.write_commit(r, signer, nid, base, {(jobs.TYPENAME, arena.job_id): tip})


@pytest.mark.slow
def test_a_strangers_index_is_bounded_and_refused_once(arena: Arena) -> None:
    """With a policy (here: Bob's local trust of Alice), a throwaway key's index over the
    untrusted bounds is refused as ``too-large`` (and remembered), while Alice's flows."""
    from jobs.trust import trust_add

    trust_add(arena.bob.repo, arena.nid("alice"), "alice")
    limits = cob.sync.Limits(untrusted_entries=50, untrusted_chain=40)
    wide, deep = cob.Signer.generate(), cob.Signer.generate()
    arena.mallory_push(stranger_index(arena, wide, entries=60), cob.index_ref(wide.nid))
    arena.mallory_push(stranger_index(arena, deep, entries=1, chain=60), cob.index_ref(deep.nid))
    small = cob.Signer.generate()
    arena.mallory_push(stranger_index(arena, small, entries=5), cob.index_ref(small.nid))
    alice_runs_again(arena)

    report = jobs.sync.sync(arena.bob, arena.url, limits=limits)
    refused = {r.ref: (str(r.kind), r.reason) for r in report.refused}
    assert refused[cob.index_ref(wide.nid)][0] == "too-large"
    assert "more than 50 objects" in refused[cob.index_ref(wide.nid)][1]
    assert refused[cob.index_ref(deep.nid)][0] == "too-large"
    assert "more than 40 new commits" in refused[cob.index_ref(deep.nid)][1]
    assert {u.ref for u in report.fetched} == {arena.ref("alice"), cob.index_ref(small.nid)}
    assert arena.bob_alice_state_intact()
    again = jobs.sync.sync(arena.bob, arena.url, limits=limits)
    assert again.refused == [] and again.remembered == 2
    # A trusted node is held to the trusted bounds only: the same index taken from it.
    trust_add(arena.bob.repo, wide.nid, "wide")
    third = jobs.sync.sync(arena.bob, arena.url, limits=limits)
    assert cob.index_ref(wide.nid) in {u.ref for u in third.fetched}


# -- 11. a merge's side chain never wedges a peer ----------------------------------------------
@pytest.mark.slow
def test_a_peer_that_took_a_side_chain_takes_the_merged_index(arena: Arena) -> None:
    """Alice's two copies wrote two chains; her index merged them (first parent one chain,
    second the other). The hub served the side chain's tip to a new peer, which took it;
    Alice's merged index (and everything after it) is still a fast-forward for that peer."""
    r = arena.mallory_repo
    signer, nid = arena.signers["alice"], arena.nid("alice")
    base = arena.hub_index("alice")
    main = sigrefs.write_commit(r, signer, nid, base, {}, timestamp=1_800_000_000)
    side = sigrefs.write_commit(r, signer, nid, base, {}, timestamp=1_800_000_001)
    merged = sigrefs.write_commit(r, signer, nid, main, {}, timestamp=1_800_000_002, also=[side])
    later = sigrefs.write_commit(r, signer, nid, merged, {}, timestamp=1_800_000_003)
    git(
        arena.paths["mallory"],
        "push",
        "-q",
        "--force",
        arena.url,
        f"{side}:refs/heads/tmp-side",
        f"{merged}:refs/heads/tmp-merged",
    )
    git(arena.paths["mallory"], "push", "-q", "--force", arena.url, f"{side}:{arena.ref('alice')}")

    carol = new_peer(arena, "carol")
    assert sigrefs.read_tip(carol.repo, nid) is None
    carol.sync(arena.url)
    assert sigrefs.read_tip(carol.repo, nid) == side  # the hub's side chain, taken

    git(arena.paths["mallory"], "push", "-q", "--force", arena.url, f"{merged}:{arena.ref('alice')}")
    report = carol.sync(arena.url)
    assert report.refused == [] and sigrefs.read_tip(carol.repo, nid) == merged
    git(arena.paths["mallory"], "push", "-q", "--force", arena.url, f"{later}:{arena.ref('alice')}")
    carol.sync(arena.url)
    assert sigrefs.read_tip(carol.repo, nid) == later
    # Served back the side chain, the peer keeps what it has (behind), never goes back.
    git(arena.paths["mallory"], "push", "-q", "--force", arena.url, f"{side}:{arena.ref('alice')}")
    assert kinds(carol.sync(arena.url)) == {"behind": 1}
    assert sigrefs.read_tip(carol.repo, nid) == later


# -- 12. a log bucket has a bucket's shape -----------------------------------------------------
@pytest.mark.slow
def test_an_index_or_a_change_passed_off_as_a_log_bucket_is_refused(arena: Arena) -> None:
    """Any commit Alice signed used to pass as her log bucket (an index commit did), wedging
    new peers. A bucket tip must be a log commit whose tree is that month's bucket."""
    alice = arena.nid("alice")
    index_tip = arena.hub_index("alice")
    assert index_tip is not None
    as_index, as_change = logs.bucket_ref(alice, "2024-01"), logs.bucket_ref(alice, "2024-02")
    arena.mallory_push(index_tip, as_index)
    arena.mallory_push(arena.alice_tip(), as_change)
    carol = new_peer(arena, "carol")
    report = carol.sync(arena.url)
    refused = {r.ref: r.reason for r in report.refused}
    assert set(refused) == {as_index, as_change}
    assert all("not a log bucket commit" in why for why in refused.values())
    assert arena.ref("alice") in {u.ref for u in report.fetched}
    # Alice's real bucket is still taken (the shape every honest bucket has).
    job = arena.alice.get_mut(arena.job_id)
    assert job is not None
    run = job.run("https://ci.example/alice/2")
    assert logs.publish(arena.alice.repo, arena.signers["alice"], run, b"ok\n") is not None
    arena.alice.sync(arena.url)
    name = logs.bucket_ref(alice, logs.bucket_of(run))
    assert name in {u.ref for u in carol.sync(arena.url).logs_fetched}


# -- 14. what a sync lists and ignores -----------------------------------------------------------
@pytest.mark.slow
def test_old_layout_refs_of_other_nodes_are_ignored_and_counted(arena: Arena, tmp_path: Path) -> None:
    """2,000 keyless per-object refs (the layout before the index) under other namespaces: a
    sync never takes them, keeps none of them in its listing, and says how many it ignored
    (from the installed CLI too)."""
    bad = junk_commit(hub(tmp_path))
    stranger = cob.Signer.generate().nid
    refs = {f"refs/namespaces/{stranger}/refs/cobs/{jobs.TYPENAME}/{i:040x}": bad for i in range(2000)}
    point_refs(hub(tmp_path), refs)
    report = arena.bob.sync(arena.url)
    assert report.ignored >= 2000 and report.refused == []
    assert "refs never taken, ignored" in report.summary()
    result = subprocess.run(
        [GIT_JOBS, "sync", "--json", arena.url],
        cwd=arena.paths["bob"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert '"ignored": 20' in result.stdout


# -- 15. a trusted node's wrong clock ----------------------------------------------------------
def test_a_release_dated_1970_does_not_make_every_node_take_over(
    arena: Arena, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trusted node whose clock says 1970 releases a job: takeover waits from when this
    reader first saw the release (within MAX_SKEW of it), not from the claim — one node is
    asked, not all three; a takeover period later, a second one."""
    real = time.time
    with monkeypatch.context() as m:
        m.setattr(time, "time", lambda: 1.0)
        old = arena.alice.create(arena.commit, name="late")
    assert old.requests()[arena.nid("alice")].first_at.year == 1970
    nids = [arena.nid("alice"), arena.nid("bob"), cob.Signer.generate().nid]
    policy = parse_policy(
        {"nodes": {n: f"n{i}" for i, n in enumerate(nids)}, "quorum": 1, "takeover": "10m"}, "here"
    )
    job = arena.alice.get(old.id)
    assert job is not None and job.judge is not None
    now = real()
    first = assign({"late": job}, {"late": []}, policy, now)["late"]
    assert len(first.assigned) == 1 and first.released_at is not None
    assert first.released_at >= now - MAX_SKEW
    later = assign({"late": job}, {"late": []}, policy, now - MAX_SKEW + 600 + 1)["late"]
    assert len(later.assigned) == 2
    # A clock far ahead cannot hold takeover off either.
    judge = Judge()
    assert judge.released("k", now + 10**9, now) == now + MAX_SKEW


def test_the_request_scan_reads_only_the_jobs_its_requesters_name(
    arena: Arena, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stranger's index naming 300 jobs costs a node's request scan nothing: the scan loads
    only the jobs the requesters' (and this node's) own indexes name."""
    from jobs.requests import requested_commits

    stranger = cob.Signer.generate()
    arena.mallory_push(stranger_index(arena, stranger, entries=300), cob.index_ref(stranger.nid))
    report = arena.bob.sync(arena.url)
    assert cob.index_ref(stranger.nid) in {u.ref for u in report.fetched}
    loaded: list[str] = []
    get_many = arena.bob._get_many

    def spy(ids: list[str]) -> Iterator[jobs.Job]:
        loaded.extend(ids)
        return get_many(ids)

    monkeypatch.setattr(arena.bob, "_get_many", spy)
    asked = requested_commits(arena.bob, {arena.nid("alice")})
    assert loaded == [arena.job_id]
    assert asked == []  # Alice's plain release is not a request (SECURITY.md 7)
