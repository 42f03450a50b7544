"""Hostile peers through a real ``git daemon`` hub: refused or rejected, reported, bounded.

Mallory has a valid key and can push anything to the hub, forced (a plain Git hub has no
per-ref permissions): her own index ref (one signed ref per node naming its tip of every job,
``cob.sigrefs``), index commits forged into Alice's namespace, any change below them. Bob is
honest and syncs with ``Jobs.sync``. For every attack Bob's sync returns (never raises), reports
the attack (``report.refused`` for an index tip refused at fetch time, ``report.rejected`` for a
change dropped by the load), keeps Alice's data intact, and pays bounded time and memory. Big
sizes (100 MB ops blob, 10,000 parents, 100,000 deep) are measured by
``python -m tests.stress.hostile``; the limits are in SECURITY.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

import cob
import jobs
from cob import sigrefs
from cob.change import MAX_OPS_BYTES, MAX_PARENTS, MAX_TIMESTAMP
from tests.gitdaemon import GitDaemon
from tests.stress import hostile
from tests.stress.common import git
from tests.stress.hostile import Arena, forge, ops_bytes, start_run_ops, tree_of

BOUND_S = 15.0  # generous: a loaded 2-core CI box; the figures in README are far lower


@pytest.fixture
def arena(tmp_path: Path) -> Iterator[Arena]:
    served = tmp_path / "served"
    served.mkdir()
    git(tmp_path, "init", "-q", "--bare", str(served / "hub.git"))
    with GitDaemon(served) as daemon:
        yield Arena(tmp_path / "arena", daemon.url("hub.git"))


def bob_sync(arena: Arena) -> jobs.sync.SyncReport:
    start = time.monotonic()
    report = arena.bob.sync(arena.url)
    assert time.monotonic() - start < BOUND_S
    assert arena.bob_alice_state_intact()
    return report


def refusals(report: jobs.sync.SyncReport, ref: str) -> list[str]:
    return [f"{r.kind}: {r.reason}" for r in report.refused if r.ref == ref]


def rejections(report: jobs.sync.SyncReport) -> dict[str, str]:
    return {r.change: r.reason for r in report.rejected}


def mallory_runs(arena: Arena) -> int:
    job = arena.bob.get(arena.job_id)
    assert job is not None
    return len(job.runs_of(arena.nid("mallory")))


def _change(
    arena: Arena,
    parents: list[str],
    *,
    author: str = "mallory",
    signer: str | None = "mallory",
    corrupt: bool = False,
    timestamp: int = 1_700_000_000,
    ops: bytes | None = None,
) -> str:
    r = arena.mallory_repo
    return forge(
        r,
        tree_of(r, ops or start_run_ops()),
        parents,
        author=arena.nid(author),
        signer=arena.signers[signer] if signer else None,
        corrupt=corrupt,
        timestamp=timestamp,
    )


# -- signatures ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["corrupt", "unsigned", "authored-as-alice"])
@pytest.mark.slow
def test_a_forged_tip_is_refused_at_fetch(arena: Arena, kind: str) -> None:
    """The tip of Mallory's index ref (the index commit) is forged: nothing of it is taken,
    not even the valid change it names."""
    change = _change(arena, [arena.alice_tip()])
    oid = arena.mallory_publish(
        change,
        corrupt=kind == "corrupt",
        signer=None if kind == "unsigned" else "mallory",
        author="alice" if kind == "authored-as-alice" else "mallory",
    )
    report = bob_sync(arena)
    assert any(x.startswith("bad-tip") for x in refusals(report, arena.ref("mallory"))), report.refused
    assert arena.ref("mallory") not in {u.ref for u in report.fetched}
    assert arena.bob.repo.references.get(arena.ref("mallory")) is None
    assert oid not in arena.bob.repo and change not in arena.bob.repo  # the quarantine dropped them
    assert mallory_runs(arena) == 0


@pytest.mark.parametrize("kind", ["corrupt", "unsigned", "authored-as-alice"])
@pytest.mark.slow
def test_a_forged_change_named_by_a_valid_index_is_rejected_at_load(arena: Arena, kind: str) -> None:
    """Mallory's index is her signed word, so it is taken; the forged change it names as her
    tip is only data: the load rejects it, reports it, and counts nothing of it."""
    oid = _change(
        arena,
        [arena.alice_tip()],
        corrupt=kind == "corrupt",
        signer=None if kind == "unsigned" else "mallory",
        author="alice" if kind == "authored-as-alice" else "mallory",
    )
    arena.mallory_publish(oid)
    report = bob_sync(arena)
    assert arena.ref("mallory") in {u.ref for u in report.fetched}
    expected = {"corrupt": "bad signature", "unsigned": "not signed", "authored-as-alice": "authored as"}[
        kind
    ]
    assert expected in rejections(report)[oid]
    assert mallory_runs(arena) == 0
    assert not arena.bob.get(arena.job_id).runs_of(arena.nid("alice")).get(hostile.RUN_ID)  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["corrupt", "unsigned", "authored-as-alice"])
@pytest.mark.slow
def test_a_forged_change_below_a_valid_tip_is_rejected_with_its_descendants(arena: Arena, kind: str) -> None:
    bad = _change(
        arena,
        [arena.alice_tip()],
        corrupt=kind == "corrupt",
        signer=None if kind == "unsigned" else "mallory",
        author="alice" if kind == "authored-as-alice" else "mallory",
    )
    tip = _change(
        arena,
        [bad],
        ops=ops_bytes([jobs.StartRun("01900000-0000-7000-8000-0000000000bb", "https://evil.example/2")]),
    )
    arena.mallory_publish(tip)
    report = bob_sync(arena)
    assert arena.ref("mallory") in {u.ref for u in report.fetched}
    why = rejections(report)
    expected = {"corrupt": "bad signature", "unsigned": "not signed", "authored-as-alice": "authored as"}[
        kind
    ]
    assert expected in why[bad]
    assert "descends from rejected" in why[tip]
    assert mallory_runs(arena) == 0
    # Stock git agrees: the signature is bad, missing, or (git does not compare the principal
    # with the author) good only for Mallory's principal, not Alice's.
    signers = arena.base / "allowed"
    signers.write_text(arena.bob.allowed_signers())
    res = git(
        arena.paths["bob"], "-c", f"gpg.ssh.allowedSignersFile={signers}", "verify-commit", bad, check=False
    )
    if kind == "authored-as-alice":
        assert f"signature for {arena.nid('mallory')}" in res.stderr
        assert arena.nid("alice") not in res.stderr
    else:
        assert res.returncode != 0


def test_a_validly_signed_change_of_alice_cannot_be_pushed_as_mallorys(arena: Arena) -> None:
    """A replayed signature: Alice's own index commit as Mallory's index ref."""
    alice_index = arena.hub_index("alice")
    assert alice_index is not None
    arena.mallory_push(alice_index, arena.ref("mallory"))
    report = bob_sync(arena)
    assert any(
        x.startswith("bad-tip") and "not by the namespace's node" in x
        for x in refusals(report, arena.ref("mallory"))
    )
    assert arena.bob.repo.references.get(arena.ref("mallory")) is None


def test_a_change_replayed_into_another_job_is_rejected(arena: Arena) -> None:
    """Alice's change of job A named (in Mallory's own, validly signed index: Alice's index
    cannot be forged, see below) as a tip of job B: signature and author are Alice's, but its
    history leads to A's root, not B's."""
    other = arena.alice.create(arena.commit, name="lint")  # never pushed by Alice
    arena.mallory_publish(arena.alice_tip(), other.id)
    report = bob_sync(arena)
    assert arena.ref("mallory") in {u.ref for u in report.fetched}
    assert arena.bob.get(other.id) is None  # no valid root: the job does not exist for Bob
    assert any(r.object_id == other.id for r in report.rejected)
    assert any("not signed" in r.reason for r in report.rejected)


def test_duplicate_changes_and_ops_count_once(arena: Arena) -> None:
    first = _change(arena, [arena.alice_tip()])
    again = _change(arena, [first], timestamp=1_700_000_001)  # the same StartRun again
    other = arena.alice.create(arena.commit, name="dup")
    # Named as Mallory's tip of the job and of another job (one index, two entries).
    arena.mallory_push(arena.mallory_index({arena.job_id: again, other.id: again}), arena.ref("mallory"))
    report = bob_sync(arena)
    assert mallory_runs(arena) == 1
    job = arena.bob.get(arena.job_id)
    assert job is not None
    run = job.runs_of(arena.nid("mallory"))[hostile.RUN_ID]
    assert run.started_at.timestamp() == 1_700_000_000  # the least (time, oid) wins
    assert arena.bob.get(other.id) is None and report.rejected


# -- sizes -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_an_oversized_ops_blob_is_rejected_without_reading_it(arena: Arena) -> None:
    size = 16 * MAX_OPS_BYTES  # compressible: cheap to push, 16 MiB if inflated
    oid = arena.big_ops(size)
    cost = hostile.measured_sync(arena.paths["bob"], arena.keys["bob"], arena.url)
    assert cost.seconds < BOUND_S
    assert cost.peak_rss_mb - cost.base_rss_mb < 0.5 * size / (1 << 20), cost.result
    assert any("ops blob is" in r and "limit" in r for r in cost.result["rejected"])
    job = jobs.Jobs.open(arena.paths["bob"]).get(arena.job_id)
    assert job is not None and not job.runs_of(arena.nid("mallory"))
    assert any(r.change == oid for r in job.rejected)


@pytest.mark.slow
def test_a_change_with_thousands_of_parents_is_rejected_cheaply(arena: Arena) -> None:
    arena.many_parents(2_000)  # 10,000 in tests/stress/hostile.py
    start = time.monotonic()
    report = bob_sync(arena)
    assert time.monotonic() - start < BOUND_S
    assert any(f"(limit {MAX_PARENTS})" in r for r in rejections(report).values())
    assert mallory_runs(arena) == 0


@pytest.mark.slow
def test_a_deep_dag_is_folded_in_bounded_time(arena: Arena) -> None:
    arena.deep_chain(1_500)  # 100,000 in tests/stress/hostile.py
    report = bob_sync(arena)
    assert report.rejected == []
    assert mallory_runs(arena) == 1  # 1,500 starts of one run id: one run


@pytest.mark.slow
def test_a_dag_over_the_limit_is_cut_and_reported(arena: Arena, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cob.evaluate, "MAX_CHANGES", 300)
    arena.deep_chain(400)
    report = arena.bob.sync(arena.url)
    assert any("history larger than 300 changes" in r.reason for r in report.rejected)
    job = jobs.Jobs.open(arena.paths["bob"], cache=False)
    assert all(not j.runs_of(arena.nid("mallory")) for j in job.all())


# -- time ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("timestamp", "accepted"),
    [(0, True), (221_845_392_000, True), (MAX_TIMESTAMP + 1, False), (2**62, False)],
    ids=["1970", "year-9000", "after-9999", "2^62"],
)
@pytest.mark.slow
def test_timestamps_far_in_the_future_or_past(arena: Arena, timestamp: int, accepted: bool) -> None:
    oid = _change(arena, [arena.alice_tip()], timestamp=timestamp)
    arena.mallory_publish(oid)
    report = bob_sync(arena)
    job = arena.bob.get(arena.job_id)
    assert job is not None
    runs = job.runs_of(arena.nid("mallory"))
    if accepted:
        assert runs[hostile.RUN_ID].started_at.timestamp() == timestamp
        assert job.latest() is not None  # the views render any accepted time
    else:
        assert not runs
        assert "out of range" in rejections(report)[oid]


def test_negative_timestamps_are_rejected(arena: Arena) -> None:
    oid = _change(arena, [arena.alice_tip()], timestamp=-1)
    arena.mallory_publish(oid)
    report = bob_sync(arena)
    assert oid in rejections(report)
    assert mallory_runs(arena) == 0


def test_a_signed_tip_with_an_unknown_encoding_header(arena: Arena) -> None:
    """Found by fuzzing ``check_tip``: ``encoding bogus`` made reading the author raise. Both
    Mallory's index commit and the change it names carry the header."""
    r = arena.mallory_repo
    bogus = "encoding bogus-charset\n"
    oid = forge(
        r,
        tree_of(r, start_run_ops()),
        [arena.alice_tip()],
        author=arena.nid("mallory"),
        signer=arena.signers["mallory"],
        extra_header=bogus,
    )
    arena.mallory_publish(oid, extra_header=bogus)
    report = bob_sync(arena)
    assert any(x.startswith("bad-tip") and "malformed" in x for x in refusals(report, arena.ref("mallory")))
    assert arena.bob.repo.references.get(arena.ref("mallory")) is None
    # Planted past sync (the index is not checked by a plain fetch): the load rejects the
    # change it names, the allowed-signers walk still works.
    ref = arena.ref("mallory")
    git(arena.paths["bob"], "fetch", "-q", arena.url, f"+{ref}:{ref}")
    fresh = jobs.Jobs.open(arena.paths["bob"])
    assert any(x.change == oid for x in fresh.rejected())
    assert arena.nid("alice") in fresh.allowed_signers()


# -- refs ------------------------------------------------------------------------------------
def _blob_or_tree(arena: Arena, kind: str) -> str:
    r = arena.mallory_repo
    return str(r.create_blob(b"not a change") if kind == "blob" else tree_of(r, b"[]"))


@pytest.mark.parametrize("kind", ["blob", "tree"])
@pytest.mark.slow
def test_a_ref_of_our_type_pointing_at_a_blob_or_tree(arena: Arena, kind: str) -> None:
    """Mallory's index ref itself points at a blob or a tree."""
    target = _blob_or_tree(arena, kind)
    ref = arena.ref("mallory")
    arena.mallory_push(target, ref)
    report = bob_sync(arena)
    assert any(x.startswith("not-a-commit") for x in refusals(report, ref))
    assert arena.bob.repo.references.get(ref) is None
    # Planted past sync (a plain `git fetch`): loads still never raise, an index that is not
    # a commit names nothing.
    git(arena.paths["bob"], "fetch", "-q", arena.url, f"+{ref}:{ref}")
    fresh = jobs.Jobs.open(arena.paths["bob"], signer=arena.signers["bob"])
    assert [j.id for j in fresh.all()] == [arena.job_id]
    assert fresh.get(arena.job_id).runs_of(arena.nid("mallory")) == {}  # type: ignore[union-attr]
    assert arena.bob_alice_state_intact()
    fresh.get_mut(arena.job_id).run("https://ci.example/bob/1")  # type: ignore[union-attr]
    assert (
        jobs.Jobs.open(arena.paths["bob"], cache=False)
        .get(arena.job_id)
        .runs_of(  # type: ignore[union-attr]
            arena.nid("bob")
        )
    )


@pytest.mark.parametrize("kind", ["blob", "tree"])
@pytest.mark.slow
def test_an_index_entry_naming_a_blob_or_tree(arena: Arena, kind: str) -> None:
    """Mallory's validly signed index names a blob or a tree as her tip of the job (a commit
    cannot have it as a parent: the index does not reach it). The object rides in the index
    commit's tree under a name that is not an entry, so a plain fetch brings it along."""
    target = _blob_or_tree(arena, kind)
    r = arena.mallory_repo
    parent = sigrefs.write_commit(r, arena.signers["mallory"], arena.nid("mallory"), None, {})
    builder = r.TreeBuilder(r[hostile.index_tree(r, parent, {arena.job_id: target})])
    mode = pygit2.enums.FileMode.BLOB if kind == "blob" else pygit2.enums.FileMode.TREE
    builder.insert("x", pygit2.Oid(hex=target), mode)
    index = hostile.forge_index(
        r,
        parent,
        {arena.job_id: target},
        author=arena.nid("mallory"),
        signer=arena.signers["mallory"],
        reach=False,
        tree=str(builder.write()),
    )
    ref = arena.ref("mallory")
    arena.mallory_push(index, ref)
    report = bob_sync(arena)
    assert any(x.startswith("bad-tip") and "does not reach" in x for x in refusals(report, ref))
    assert arena.bob.repo.references.get(ref) is None
    # Planted past sync: the load rejects the entry, still lists the job, writes still work.
    git(arena.paths["bob"], "fetch", "-q", arena.url, f"+{ref}:{ref}")
    fresh = jobs.Jobs.open(arena.paths["bob"], signer=arena.signers["bob"])
    assert [j.id for j in fresh.all()] == [arena.job_id]
    assert any(x.change == target and "not a commit" in x.reason for x in fresh.rejected())
    assert arena.bob_alice_state_intact()
    fresh.get_mut(arena.job_id).run("https://ci.example/bob/1")  # type: ignore[union-attr]


@pytest.mark.parametrize("where", ["tree", "type", "fan-out"])
@pytest.mark.slow
def test_an_index_tree_git_takes_but_libgit2_cannot_parse(arena: Arena, where: str) -> None:
    """Mallory's validly signed index whose tree, or its type or fan-out subtree, has a file
    mode git takes (fsck only warns: badFilemode; a fetch does not check) and libgit2 cannot
    parse. Bob's sync refuses it and returns; planted past sync, no load breaks."""
    r = arena.mallory_repo
    change = _change(arena, [arena.alice_tip()])

    def subtree(name: str, oid: pygit2.Oid) -> pygit2.Oid:
        return r.odb.write(pygit2.enums.ObjectType.TREE, b"40000 " + name.encode() + b"\0" + oid.raw)

    tree = bad = r.odb.write(pygit2.enums.ObjectType.TREE, b"777777 x\0" + r.create_blob(b"x").raw)
    if where == "fan-out":
        tree = subtree(jobs.TYPENAME, subtree(arena.job_id[:2], bad))
    elif where == "type":
        tree = subtree(jobs.TYPENAME, bad)
    parent = sigrefs.write_commit(r, arena.signers["mallory"], arena.nid("mallory"), None, {})
    index = forge(r, tree, [parent, change], author=arena.nid("mallory"), signer=arena.signers["mallory"])
    ref = arena.ref("mallory")
    arena.mallory_push(index, ref)
    report = bob_sync(arena)
    assert any(x.startswith("bad-tip") for x in refusals(report, ref)), report.refused
    assert arena.bob.repo.references.get(ref) is None
    assert change not in arena.bob.repo and mallory_runs(arena) == 0
    # Planted past sync: every read of the index leaves the malformed part out.
    git(arena.paths["bob"], "fetch", "-q", arena.url, f"+{ref}:{ref}")
    for cache in (True, False):
        fresh = jobs.Jobs.open(arena.paths["bob"], signer=arena.signers["bob"], cache=cache)
        assert [j.id for j in fresh.all()] == [arena.job_id]
        assert fresh.get(arena.job_id).runs_of(arena.nid("mallory")) == {}  # type: ignore[union-attr]
    assert arena.bob_alice_state_intact()


def test_an_index_naming_tips_it_does_not_reach_is_refused(arena: Arena) -> None:
    """A validly signed index whose commit does not have its new tip as a parent: fetch and gc
    follow parents, never the index's gitlinks, so such a tip could be missing anywhere."""
    change = _change(arena, [arena.alice_tip()])
    index = arena.mallory_publish(change, signer="mallory", author="mallory", reach=False)
    assert change not in arena.mallory_repo[index].parent_ids
    report = bob_sync(arena)
    assert any(
        x.startswith("bad-tip") and "does not reach" in x for x in refusals(report, arena.ref("mallory"))
    ), report.refused
    assert arena.bob.repo.references.get(arena.ref("mallory")) is None
    assert change not in arena.bob.repo and index not in arena.bob.repo
    assert mallory_runs(arena) == 0


@pytest.mark.slow
def test_a_peer_rewriting_another_nodes_ref_is_refused_everywhere(arena: Arena) -> None:
    """Mallory signs an index commit for Alice's namespace, on Alice's own index (a
    fast-forward), naming Mallory's change as Alice's tip of the job."""
    real = arena.hub_index("alice")
    forged = _change(arena, [arena.alice_tip()])
    index = arena.mallory_publish(forged, who="alice", signer="mallory", author="mallory")
    assert arena.mallory_repo[index].parent_ids[0] == pygit2.Oid(hex=real)  # type: ignore[arg-type]
    report = bob_sync(arena)
    assert any(
        x.startswith("bad-tip") and "not by the namespace's node" in x
        for x in refusals(report, arena.ref("alice"))
    )
    assert str(arena.bob.repo.references[arena.ref("alice")].target) == real
    assert forged not in arena.bob.repo
    # Alice is not fooled either, and learns her ref on the hub is not hers.
    job = arena.alice.get_mut(arena.job_id)
    assert job is not None
    job.run("https://ci.example/alice/2")
    alice_report = arena.alice.sync(arena.url)
    assert refusals(alice_report, arena.ref("alice"))
    assert not alice_report.ok


def test_a_peer_rolling_back_another_nodes_ref_is_refused(arena: Arena) -> None:
    """The hub rewinds Alice's index ref to her older (validly signed) index commit."""
    old = arena.hub_index("alice")
    assert old is not None
    job = arena.alice.get_mut(arena.job_id)
    assert job is not None
    job.run("https://ci.example/alice/2")
    arena.alice.sync(arena.url)
    bob_sync(arena)
    now = str(arena.bob.repo.references[arena.ref("alice")].target)
    assert now != old
    arena.mallory_push(old, arena.ref("alice"))  # replay Alice's older index
    report = bob_sync(arena)
    assert any(x.startswith("behind") for x in refusals(report, arena.ref("alice")))
    assert str(arena.bob.repo.references[arena.ref("alice")].target) == now
    assert len(arena.bob.get(arena.job_id).runs_of(arena.nid("alice"))) == 2  # type: ignore[union-attr]


@pytest.mark.slow
def test_a_sideways_index_is_refused_even_validly_signed(arena: Arena) -> None:
    """An index of Alice's, signed by her key, that does not descend from the one Bob has
    (her node restored from a backup, a second machine with her key, or a hub replaying a
    fork): fetch is fast-forward only, per node."""
    old, old_tip = arena.hub_index("alice"), arena.alice_tip()
    job = arena.alice.get_mut(arena.job_id)
    assert job is not None
    job.run("https://ci.example/alice/2")
    arena.alice.sync(arena.url)
    bob_sync(arena)
    now = str(arena.bob.repo.references[arena.ref("alice")].target)
    r = arena.mallory_repo
    fork = forge(
        r,
        tree_of(r, start_run_ops("01900000-0000-7000-8000-0000000000cc")),
        [old_tip],
        author=arena.nid("alice"),
        signer=arena.signers["alice"],
    )
    sideways = sigrefs.write_commit(
        r, arena.signers["alice"], arena.nid("alice"), old, {(jobs.TYPENAME, arena.job_id): fork}
    )
    arena.mallory_push(sideways, arena.ref("alice"))
    report = bob_sync(arena)
    assert any(x.startswith("diverged") for x in refusals(report, arena.ref("alice"))), report.refused
    assert str(arena.bob.repo.references[arena.ref("alice")].target) == now
    runs = arena.bob.get(arena.job_id).runs_of(arena.nid("alice"))  # type: ignore[union-attr]
    assert len(runs) == 2 and "01900000-0000-7000-8000-0000000000cc" not in {str(k) for k in runs}


@pytest.mark.parametrize("move", ["back", "sideways", "dropped"])
@pytest.mark.slow
def test_a_signed_index_moving_an_entry_back_or_sideways_is_refused(arena: Arena, move: str) -> None:
    """Mallory's own index, a fast-forward and validly signed, moves her entry of the job back
    to an older change, sideways to one that does not descend from it, or drops it: un-saying
    a run result she published. Per job, a node's history only grows, as with one ref per job."""
    first = _change(arena, [arena.alice_tip()])
    done = _change(
        arena, [first], timestamp=1_700_000_001, ops=ops_bytes([jobs.FinishRun(hostile.RUN_ID, "failed")])
    )
    arena.mallory_publish(done)
    bob_sync(arena)
    before = str(arena.bob.repo.references[arena.ref("mallory")].target)
    run = arena.bob.get(arena.job_id).runs_of(arena.nid("mallory"))[hostile.RUN_ID]  # type: ignore[union-attr]
    assert run.reason is jobs.Reason.FAILED
    other = _change(arena, [arena.alice_tip()], timestamp=1_700_000_002)
    arena.mallory_publish({"back": first, "sideways": other, "dropped": None}[move])
    report = bob_sync(arena)
    assert any(x.startswith(("behind", "diverged")) for x in refusals(report, arena.ref("mallory"))), (
        report.refused,
        report.fetched,
    )
    assert str(arena.bob.repo.references[arena.ref("mallory")].target) == before
    fresh = jobs.Jobs.open(arena.paths["bob"], cache=False).get(arena.job_id)
    assert fresh is not None
    assert fresh.runs_of(arena.nid("mallory"))[hostile.RUN_ID].reason is jobs.Reason.FAILED


def test_a_peer_deleting_another_nodes_ref_deletes_nothing(arena: Arena) -> None:
    hostile.push(arena.paths["mallory"], arena.url, f":{arena.ref('alice')}")
    report = bob_sync(arena)
    assert arena.bob.repo.references.get(arena.ref("alice")) is not None
    assert report.fetched == []
    arena.alice.sync(arena.url)  # Alice's next sync puts it back
    assert arena.ref("alice") in git(arena.paths["bob"], "ls-remote", arena.url).stdout
