"""Hostile peers through a real ``git daemon`` hub: refused or rejected, reported, bounded.

Mallory has a valid key and can push anything to the hub, forced (a plain Git hub has no
per-ref permissions). Bob is honest and syncs with ``Jobs.sync``. For every attack Bob's sync
returns (never raises), reports the attack (``report.refused`` for a tip taken at fetch time,
``report.rejected`` for a change dropped by the load), keeps Alice's data intact, and pays
bounded time and memory. Big sizes (100 MB ops blob, 10,000 parents, 100,000 deep) are measured
by ``python -m tests.stress.hostile``; the limits are in SECURITY.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

import cob
import jobs
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


def _change(arena: Arena, parents: list[str], *, author: str = "mallory",
            signer: str | None = "mallory", corrupt: bool = False,
            timestamp: int = 1_700_000_000, ops: bytes | None = None) -> str:
    r = arena.mallory_repo
    return forge(r, tree_of(r, ops or start_run_ops()), parents, author=arena.nid(author),
                 signer=arena.signers[signer] if signer else None, corrupt=corrupt,
                 timestamp=timestamp)


# -- signatures ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["corrupt", "unsigned", "authored-as-alice"])
def test_a_forged_tip_is_refused_at_fetch(arena: Arena, kind: str) -> None:
    oid = _change(
        arena, [arena.alice_tip()],
        corrupt=kind == "corrupt",
        signer=None if kind == "unsigned" else "mallory",
        author="alice" if kind == "authored-as-alice" else "mallory",
    )
    arena.mallory_push(oid, arena.ref("mallory"))
    report = bob_sync(arena)
    assert refusals(report, arena.ref("mallory")), report.refused
    assert arena.ref("mallory") not in {u.ref for u in report.fetched}
    assert arena.bob.repo.references.get(arena.ref("mallory")) is None
    assert mallory_runs(arena) == 0


@pytest.mark.parametrize("kind", ["corrupt", "unsigned", "authored-as-alice"])
def test_a_forged_change_below_a_valid_tip_is_rejected_with_its_descendants(
    arena: Arena, kind: str
) -> None:
    bad = _change(
        arena, [arena.alice_tip()],
        corrupt=kind == "corrupt",
        signer=None if kind == "unsigned" else "mallory",
        author="alice" if kind == "authored-as-alice" else "mallory",
    )
    tip = _change(arena, [bad], ops=ops_bytes([jobs.StartRun(
        "01900000-0000-7000-8000-0000000000bb", "https://evil.example/2")]))
    arena.mallory_push(tip, arena.ref("mallory"))
    report = bob_sync(arena)
    assert arena.ref("mallory") in {u.ref for u in report.fetched}
    why = rejections(report)
    expected = {"corrupt": "bad signature", "unsigned": "not signed",
                "authored-as-alice": "authored as"}[kind]
    assert expected in why[bad]
    assert "descends from rejected" in why[tip]
    assert mallory_runs(arena) == 0
    # Stock git agrees: the signature is bad, missing, or (git does not compare the principal
    # with the author) good only for Mallory's principal, not Alice's.
    signers = arena.base / "allowed"
    signers.write_text(arena.bob.allowed_signers())
    res = git(arena.paths["bob"], "-c", f"gpg.ssh.allowedSignersFile={signers}",
              "verify-commit", bad, check=False)
    if kind == "authored-as-alice":
        assert f'signature for {arena.nid("mallory")}' in res.stderr
        assert arena.nid("alice") not in res.stderr
    else:
        assert res.returncode != 0


def test_a_validly_signed_change_of_alice_cannot_be_pushed_as_mallorys(arena: Arena) -> None:
    """A replayed change: Alice's own tip under Mallory's namespace."""
    arena.mallory_push(arena.alice_tip(), arena.ref("mallory"))
    report = bob_sync(arena)
    assert any("bad-tip" in r for r in refusals(report, arena.ref("mallory")))


def test_a_change_replayed_into_another_job_is_rejected(arena: Arena) -> None:
    """Alice's change of job A set (forced, by Mallory) as Alice's tip of job B: signature
    and author are Alice's, but its history leads to A's root, not B's."""
    other = arena.alice.create(arena.commit, name="lint")  # never pushed by Alice
    arena.mallory_push(arena.alice_tip(), arena.ref("alice", other.id))
    report = bob_sync(arena)
    assert arena.bob.get(other.id) is None  # no valid root: the job does not exist for Bob
    assert any(r.object_id == other.id for r in report.rejected)
    assert any("not signed" in r.reason for r in report.rejected)


def test_duplicate_changes_and_ops_count_once(arena: Arena) -> None:
    first = _change(arena, [arena.alice_tip()])
    again = _change(arena, [first], timestamp=1_700_000_001)  # the same StartRun again
    arena.mallory_push(again, arena.ref("mallory"))
    other = arena.alice.create(arena.commit, name="dup")
    arena.mallory_push(again, arena.ref("mallory", other.id))  # and under another job's ref
    report = bob_sync(arena)
    assert mallory_runs(arena) == 1
    job = arena.bob.get(arena.job_id)
    assert job is not None
    run = job.runs_of(arena.nid("mallory"))[hostile.RUN_ID]
    assert run.started_at.timestamp() == 1_700_000_000  # the least (time, oid) wins
    assert arena.bob.get(other.id) is None and report.rejected


# -- sizes -------------------------------------------------------------------------------------
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


def test_a_change_with_thousands_of_parents_is_rejected_cheaply(arena: Arena) -> None:
    arena.many_parents(2_000)  # 10,000 in tests/stress/hostile.py
    start = time.monotonic()
    report = bob_sync(arena)
    assert time.monotonic() - start < BOUND_S
    assert any(f"(limit {MAX_PARENTS})" in r for r in rejections(report).values())
    assert mallory_runs(arena) == 0


def test_a_deep_dag_is_folded_in_bounded_time(arena: Arena) -> None:
    arena.deep_chain(1_500)  # 100,000 in tests/stress/hostile.py
    report = bob_sync(arena)
    assert report.rejected == []
    assert mallory_runs(arena) == 1  # 1,500 starts of one run id: one run


def test_a_dag_over_the_limit_is_cut_and_reported(
    arena: Arena, monkeypatch: pytest.MonkeyPatch
) -> None:
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
def test_timestamps_far_in_the_future_or_past(arena: Arena, timestamp: int, accepted: bool) -> None:
    oid = _change(arena, [arena.alice_tip()], timestamp=timestamp)
    arena.mallory_push(oid, arena.ref("mallory"))
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
    arena.mallory_push(oid, arena.ref("mallory"))
    report = bob_sync(arena)
    assert oid in rejections(report)
    assert mallory_runs(arena) == 0


def test_a_signed_tip_with_an_unknown_encoding_header(arena: Arena) -> None:
    """Found by fuzzing ``check_tip``: ``encoding bogus`` made reading the author raise."""
    r = arena.mallory_repo
    oid = forge(r, tree_of(r, start_run_ops()), [arena.alice_tip()], author=arena.nid("mallory"),
                signer=arena.signers["mallory"], extra_header="encoding bogus-charset\n")
    arena.mallory_push(oid, arena.ref("mallory"))
    report = bob_sync(arena)
    assert any("malformed" in x for x in refusals(report, arena.ref("mallory")))
    # Planted past sync: the load rejects it, the allowed-signers walk still works.
    ref = arena.ref("mallory")
    git(arena.paths["bob"], "fetch", "-q", arena.url, f"+{ref}:{ref}")
    fresh = jobs.Jobs.open(arena.paths["bob"])
    assert any(x.change == oid for x in fresh.rejected())
    assert arena.nid("alice") in fresh.allowed_signers()


# -- refs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["blob", "tree"])
def test_a_ref_of_our_type_pointing_at_a_blob_or_tree(arena: Arena, kind: str) -> None:
    r = arena.mallory_repo
    target = str(r.create_blob(b"not a change") if kind == "blob" else tree_of(r, b"[]"))
    ref = arena.ref("mallory")
    tmp = "refs/mallory/obj"
    r.references.create(tmp, pygit2.Oid(hex=target), force=True)
    hostile.push(arena.paths["mallory"], arena.url, f"{tmp}:{ref}")
    report = bob_sync(arena)
    assert any("not-a-commit" in x for x in refusals(report, ref))
    # Planted past sync (a plain `git fetch`): loads still never raise.
    git(arena.paths["bob"], "fetch", "-q", arena.url, f"+{ref}:{ref}")
    fresh = jobs.Jobs.open(arena.paths["bob"], signer=arena.signers["bob"])
    assert [j.id for j in fresh.all()] == [arena.job_id]
    assert any("not a commit" in x.reason for x in fresh.rejected())
    assert arena.bob_alice_state_intact()
    fresh.get_mut(arena.job_id).run("https://ci.example/bob/1")  # type: ignore[union-attr]


def test_a_peer_rewriting_another_nodes_ref_is_refused_everywhere(arena: Arena) -> None:
    forged = _change(arena, [arena.alice_tip()])
    arena.mallory_push(forged, arena.ref("alice"))  # Mallory's change as Alice's tip
    report = bob_sync(arena)
    assert any("bad-tip" in x for x in refusals(report, arena.ref("alice")))
    # Alice is not fooled either, and learns her ref on the hub is not hers.
    job = arena.alice.get_mut(arena.job_id)
    assert job is not None
    job.run("https://ci.example/alice/2")
    alice_report = arena.alice.sync(arena.url)
    assert refusals(alice_report, arena.ref("alice"))
    assert not alice_report.ok


def test_a_peer_rolling_back_another_nodes_ref_is_refused(arena: Arena) -> None:
    old = arena.alice_tip()
    job = arena.alice.get_mut(arena.job_id)
    assert job is not None
    job.run("https://ci.example/alice/2")
    arena.alice.sync(arena.url)
    bob_sync(arena)
    arena.mallory_push(old, arena.ref("alice"))  # replay Alice's older tip
    report = bob_sync(arena)
    assert any(x.startswith("behind") for x in refusals(report, arena.ref("alice")))
    assert len(arena.bob.get(arena.job_id).runs_of(arena.nid("alice"))) == 2  # type: ignore[union-attr]


def test_a_peer_deleting_another_nodes_ref_deletes_nothing(arena: Arena) -> None:
    hostile.push(arena.paths["mallory"], arena.url, f":{arena.ref('alice')}")
    report = bob_sync(arena)
    assert arena.bob.repo.references.get(arena.ref("alice")) is not None
    assert report.fetched == []
    arena.alice.sync(arena.url)  # Alice's next sync puts it back
    assert arena.ref("alice") in git(arena.paths["bob"], "ls-remote", arena.url).stdout
