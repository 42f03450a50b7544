"""Two copies of one node's key, through the installed CLI and a bare hub (issue 25, 1, 2, 4).

Nothing this node acknowledged is lost when a second copy of its key writes: a reinstalled
node's first sync keeps both its old and its new results (the index merge joins the job's two
tips with a signed merge change), two live copies writing through one hub converge round
after round, and a sync that could not publish this node's own results says so and exits 4.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pygit2
import pytest

import cob
import jobs
from cob import recovery, sigrefs, sshsig
from cob.change import Codec, commit_buffer, write_change, write_merge
from cob.evaluate import evaluate
from jobs import logs
from jobs.sync import Publication
from tests.clirunner import GIT_JOBS, env_with, gj, ok
from tests.conftest import git, init_repo
from tests.toytype import LOG, Append

EXIT_UNPUBLISHED = 4


def _hub(tmp_path: Path) -> Path:
    origin = tmp_path / "origin"
    init_repo(origin, commits=2)
    hub = tmp_path / "hub.git"
    git(tmp_path, "clone", "-q", "--bare", str(origin), str(hub))
    return hub


def _clone(tmp_path: Path, hub: Path, name: str) -> Path:
    git(tmp_path, "clone", "-q", str(hub), str(tmp_path / name))
    return tmp_path / name


def _runs(path: Path, job: str) -> dict[str, str | None]:
    """{run id: reason} of every run of ``job`` as the CLI shows it here."""
    return {r["id"]: r["reason"] for r in ok(path, "show", job, "--json").json["runs"]}


def _hub_runs(hub: Path, job: str) -> dict[str, str | None]:
    """The runs the hub itself holds (read in-process: a bare repository has no work tree)."""
    found = jobs.Jobs.open(str(hub), cache=False).get(job)
    if found is None:
        return {}
    return {
        str(r): (run.reason.value if run.reason else None)
        for rs in found.runs().values()
        for r, run in rs.items()
    }


@pytest.mark.slow
def test_a_reinstalled_node_keeps_its_old_and_new_results(tmp_path: Path) -> None:
    """The key restored on a fresh clone recreates HEAD's job (same id), runs and finishes it;
    after its first sync both runs are on the node, the hub and a fresh peer, and status
    shows the newer result."""
    hub = _hub(tmp_path)
    key = cob.Signer.generate().save(tmp_path / "node.key")
    old = _clone(tmp_path, hub, "old")
    job = ok(old, "create", "HEAD", "--name", "test", key=key).line
    first = ok(old, "run", job, "--log", "https://ci.example/old", key=key).line
    ok(old, "finish", job, first, "failed", key=key)
    ok(old, "sync", key=key)

    again = _clone(tmp_path, hub, "again")  # reinstalled: the same key, nothing synced yet
    assert ok(again, "create", "HEAD", "--name", "test", key=key).line == job
    second = ok(again, "run", job, "--log", "https://ci.example/new", key=key).line
    ok(again, "finish", job, second, "succeeded", key=key)
    report = ok(again, "sync", "--json", key=key).json

    both = {first: "failed", second: "succeeded"}
    peer = _clone(tmp_path, hub, "peer")
    ok(peer, "sync")
    for where in (again, peer):
        assert _runs(where, job) == both, where
        assert gj(where, "status", "--json").json["outcome"] == "succeeded", where
    assert _hub_runs(hub, job) == both
    assert report["published"] == "published" and report["unpublished"] == []
    assert report["merged"] == [job] and report["refused"] == [], report
    # The old copy takes the merged index as a fast-forward, and sees both too.
    assert ok(old, "sync", "--json", key=key).json["refused"] == []
    assert _runs(old, job) == both
    # Every change verifies from scratch (the merge change included), and stock git agrees.
    for where in (again, peer, old):
        assert gj(where, "verify").code == 0, where
    git(again, "fsck", "--strict", "--no-dangling")
    repo = pygit2.Repository(str(again))
    nid = ok(again, "whoami", "--nid", key=key).line
    merge = sigrefs.lookup(repo, sigrefs.tree_of(repo, sigrefs.read_tip(repo, nid)), jobs.TYPENAME, job)
    assert merge is not None and len(repo[merge].parent_ids) == 2  # the job's two tips, joined
    ok(again, "allowed-signers", "-o", str(tmp_path / "signers"))
    git(again, "-c", f"gpg.ssh.allowedSignersFile={tmp_path / 'signers'}", "verify-commit", merge)


def _copy_op(path: Path, key: Path, job: str, tag: str) -> str:
    """One acknowledged op of this copy: a run started and finished with its log published in
    this month's bucket, as a node does (exit 0 from the CLI)."""
    run = ok(path, "run", job, "--log", f"https://ci.example/{tag}", key=key).line
    log = path.parent / f"{tag}.log"
    log.write_text(f"log of {tag}\n")
    ok(path, "finish", job, run, "succeeded", "--log-file", str(log), key=key)
    return run


@pytest.mark.slow
def test_two_live_copies_of_one_key_converge_through_one_hub(tmp_path: Path) -> None:
    """A node moved to a new machine while the old one still runs: both write the same jobs
    and new ones, and sync through one hub, for several rounds (in turn, then at the same
    moment, when one loses the push race and merges again). Every sync publishes (exit 0),
    every acknowledged run is on every replica, and a peer that followed along took every
    index as a fast-forward (it never refused this node's index)."""
    hub = _hub(tmp_path)
    signer = cob.Signer.generate()
    key = signer.save(tmp_path / "node.key")
    nid = ok(tmp_path, "whoami", "--nid", key=key).line
    a, b, peer = (_clone(tmp_path, hub, n) for n in ("a", "b", "peer"))
    shared = ok(a, "create", "HEAD", "--name", "test", key=key).line
    ok(a, "sync", key=key)
    assert ok(b, "create", "HEAD", "--name", "test", key=key).line == shared
    acked: set[str] = set()
    syncs: list[tuple[int, str | None]] = []  # (exit code, "published") of every sync
    refused: list[object] = []  # the peer's refusals of this node's index
    for round_ in range(4):
        for name, copy in (("a", a), ("b", b)):
            acked.add(_api_op(copy, signer, shared, f"{name}{round_}"))
            own = _api_store(copy, signer).create("HEAD~1", f"{name}{round_}").id
            acked.add(_api_op(copy, signer, own, f"{name}{round_}own"))
        for copy in (b, a) if round_ % 2 else (a, b):  # either copy syncs first
            report = gj(copy, "sync", "--json", key=key)
            syncs.append((report.code, report.json.get("published")))
        got = ok(peer, "sync", "--json").json
        refused.extend(r for r in got["refused"] if nid in r["ref"])
    for round_ in range(4, 6):  # both copies sync at the same moment: one loses the race
        for name, copy in (("a", a), ("b", b)):
            acked.add(_api_op(copy, signer, shared, f"{name}{round_}"))
        racing = [
            subprocess.Popen(
                [GIT_JOBS, "sync", "--json"],
                cwd=copy,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env_with(GIT_JOBS_KEY=str(key)),
            )
            for copy in (a, b)
        ]
        for proc in racing:
            out, err = proc.communicate(timeout=120)
            assert "Traceback" not in err
            syncs.append((proc.returncode, json.loads(out).get("published")))
        got = ok(peer, "sync", "--json").json
        refused.extend(r for r in got["refused"] if nid in r["ref"])
    assert syncs == [(0, "published")] * 12  # every sync of either copy published
    assert refused == []  # and the peer took each of this node's refs as a fast-forward
    ok(a, "sync", key=key)  # a saw b's last sync only now
    every = {}
    for where in (a, b, peer):
        ok(where, "sync", key=key if where != peer else None)
        listed = {j["id"] for j in ok(where, "list", "--json").json}
        every[where.name] = {run for job in listed for run in _hub_runs(where, job)}
    for name, runs in every.items():
        assert acked <= runs, (name, acked - runs)
    for where in (a, b, peer):  # and every log, verified against its signed finish, on every replica
        store = jobs.Jobs.open(str(where), cache=False)
        for run in acked:
            found = logs.locate(store, run)
            got_log = logs.read(store.repo, found.nid, found.run_id, found.run)
            assert got_log.status is logs.LogStatus.SHOWN, (where.name, run, got_log)
            assert got_log.data is not None and got_log.data.startswith(b"log of "), (where.name, run)
    assert acked <= {r for j in jobs.Jobs.open(str(hub), cache=False).all() for r in _hub_runs(hub, j.id)}
    tip = git(hub, "rev-parse", cob.index_ref(nid)).strip()
    assert sigrefs.read_tip(pygit2.Repository(str(peer)), nid) == tip
    assert gj(peer, "logs", sorted(acked)[0]).out.startswith("log of ")  # and the CLI shows one


def _api_store(path: Path, signer: cob.Signer) -> jobs.Jobs:
    """This copy's store, opened afresh as each CLI command opens it."""
    return jobs.Jobs.open(str(path), signer)


def _api_op(path: Path, signer: cob.Signer, job: str, tag: str) -> str:
    """What `_copy_op` does through the CLI, in-process (the setup of the sync test): a run
    started and finished with its log published in this month's bucket."""
    store = _api_store(path, signer)
    mut = store.resolve_mut(job)
    run = mut.run(f"https://ci.example/{tag}")
    blob = logs.publish(store.repo, signer, run, f"log of {tag}\n".encode())
    assert blob is not None
    mut.finish(run, "succeeded", log_blob=blob)
    return str(run)


def _refusing_hub(hub: Path) -> None:
    """A read-only hub: its pre-receive hook refuses every push (tests run as root, and
    chmod does not stop root)."""
    hook = hub / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'this hub is read-only' >&2\nexit 1\n")
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.mark.slow
def test_a_sync_that_cannot_publish_exits_4_and_says_so(tmp_path: Path) -> None:
    """A read-only hub: the sync fetches, but this node's results are not on the remote, so
    it exits 4 with one line (and --json says `unpublished`); once pushes work again, 0."""
    hub = _hub(tmp_path)
    key = cob.Signer.generate().save(tmp_path / "node.key")
    node = _clone(tmp_path, hub, "node")
    job = ok(node, "create", "HEAD", "--name", "test", key=key).line
    _copy_op(node, key, job, "x")
    _refusing_hub(hub)
    text = gj(node, "sync", key=key)
    assert text.code == EXIT_UNPUBLISHED, text
    errors = [line for line in text.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not published" in errors[0], text.err
    as_json = gj(node, "sync", "--json", key=key)
    assert as_json.code == EXIT_UNPUBLISHED
    report = json.loads(as_json.out)
    assert report["published"] == "unpublished"
    refused = sorted((r["side"], r["kind"], "/refs/logs/" in r["ref"]) for r in report["unpublished"])
    assert refused == [("push", "rejected", False), ("push", "rejected", True)]  # index, log bucket
    # Fetching only is not a failure to publish; nor is a keyless sync.
    assert gj(node, "sync", "--no-push", key=key).code == 0
    (hub / "hooks" / "pre-receive").unlink()
    back = gj(node, "sync", "--json", key=key)
    assert back.code == 0 and back.json["published"] == "published", back


@pytest.mark.slow
def test_two_copies_that_published_to_two_hubs_fail_loudly(tmp_path: Path) -> None:
    """Truly impossible to merge: each copy's chain was taken by another hub (and its peers).
    The sync reports it (exit 4, one line with the remedy) and signs nothing."""
    hub = _hub(tmp_path)
    other = tmp_path / "other.git"
    git(tmp_path, "clone", "-q", "--bare", str(hub), str(other))
    key = cob.Signer.generate().save(tmp_path / "node.key")
    one, two = _clone(tmp_path, hub, "one"), _clone(tmp_path, other, "two")
    ok(one, "create", "HEAD", "--name", "one", key=key)
    ok(one, "sync", key=key)
    ok(two, "create", "HEAD", "--name", "two", key=key)
    ok(two, "sync", key=key)
    nid = ok(tmp_path, "whoami", "--nid", key=key).line
    before = sigrefs.read_tip(pygit2.Repository(str(one)), nid)
    res = gj(one, "sync", str(other), key=key)
    assert res.code == EXIT_UNPUBLISHED, res
    errors = [line for line in res.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "give the other a key of its own" in errors[0], res.err
    assert sigrefs.read_tip(pygit2.Repository(str(one)), nid) == before  # nothing signed


@pytest.mark.slow
def test_a_node_shows_itself_degraded_until_a_push_works(tmp_path: Path) -> None:
    """`git jobs node` against a hub that refuses pushes: its log says `degraded` and node.json
    has status `degraded` with why; once the hub takes pushes again, `recovered` and `ok`."""
    hub = _hub(tmp_path)
    key = cob.Signer.generate().save(tmp_path / "node.key")
    node = _clone(tmp_path, hub, "node")
    git(node, "config", "jobs.isolation", "none")
    job = ok(node, "create", "HEAD", "--name", "test", key=key).line
    _copy_op(node, key, job, "x")
    _refusing_hub(hub)
    beat = node / ".git" / "git-jobs" / "node.json"
    log_path = tmp_path / "node.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [GIT_JOBS, "node", "--remote", str(hub), "--interval", "0.2s"],
            cwd=node,
            env=env_with(GIT_JOBS_KEY=str(key)),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
    try:
        _wait(lambda: _beat(beat).get("status") == "degraded", log_path)
        (unpublished,) = _beat(beat)["unpublished"].values()
        assert "not published" in unpublished["reason"] and unpublished["refused"][0]["kind"] == "rejected"
        assert "degraded: this node's results were not published" in log_path.read_text()
        (hub / "hooks" / "pre-receive").unlink()
        _wait(lambda: _beat(beat).get("status") == "ok", log_path)
        assert _beat(beat)["unpublished"] == {} and "recovered:" in log_path.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert _hub_runs(hub, job) == _runs(node, job)


def _beat(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _wait(pred: Callable[[], bool], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def test_a_merge_change_joins_two_heads_of_any_type_and_changes_no_state(tmp_path: Path) -> None:
    """A merge change (no ops, two parents) is accepted without asking the type — also a
    non-commutative one — and leaves the state as it was; empty ops with one parent stay
    invalid; a change on top of the merge folds as usual."""
    repo = init_repo(tmp_path / "r")
    signer = cob.Signer.generate()
    store = cob.Store(repo, signer)
    root = store.create(LOG, [Append("root")]).object_id
    codec = store.codec(LOG)
    left = write_change(repo, codec, signer, signer.nid, [Append("left")], [root], timestamp=10)
    right = write_change(repo, codec, signer, signer.nid, [Append("right")], [root], timestamp=20)
    before = evaluate(repo, codec, root, {"a": left, "b": right})
    manifest = repo[left].tree["manifest"].id
    merge = write_merge(repo, manifest, signer, signer.nid, [left, right])
    after = evaluate(repo, codec, root, {"a": merge})
    assert after.rejected == {} and merge in after.accepted and after.heads == {merge}
    assert after.state == before.state and after.state is not None
    assert after.state.lines == ["root", "left", "right"]
    on_top = write_change(repo, codec, signer, signer.nid, [Append("next")], [merge])
    assert evaluate(repo, codec, root, {"a": on_top}).state.lines[-1] == "next"
    tree = repo[merge].tree.id  # the same tree, one parent: not a merge, and no ops
    lone = commit_buffer(str(tree), [left], signer.nid, 30, "cob: merge\n")
    lonely = str(repo.create_commit_with_signature(lone, sshsig.sign(signer, lone.encode())))
    assert "carries no ops" in evaluate(repo, codec, root, {"a": lonely}).rejected[lonely]


def test_a_merge_never_joins_a_change_our_rules_reject(tmp_path: Path) -> None:
    """The other copy's chain builds on what we published, but its tip of a job both copies
    changed is one our fold rejects (an unknown run finished): nothing is merged or signed,
    and the sync says our results are not published (the other copy's data stays its own)."""
    hub = _hub(tmp_path)
    signer = cob.Signer.generate()
    a = jobs.Jobs.open(str(_clone(tmp_path, hub, "a")), signer)
    job = a.create(a.resolve_commit("HEAD"))
    assert a.sync(str(hub)).publication is Publication.PUBLISHED
    b = jobs.Jobs.open(str(_clone(tmp_path, hub, "b")), signer)
    assert b.sync(str(hub)).publication is Publication.PUBLISHED  # b takes a's chain
    tip = sigrefs.lookup(
        b.repo, sigrefs.tree_of(b.repo, sigrefs.read_tip(b.repo, signer.nid)), jobs.TYPENAME, job.id
    )
    assert tip is not None
    bad = write_change(
        b.repo,
        Codec(jobs.JOB_TYPE),
        signer,
        signer.nid,
        [jobs.FinishRun("0189c0de-0000-7000-8000-000000000001", "succeeded")],
        [tip],
    )
    assert recovery.set_tip(b.repo, signer, signer.nid, jobs.TYPENAME, job.id, bad, tip)
    assert b.sync(str(hub)).publication is Publication.PUBLISHED
    job.run("https://ci.example/a")  # a changes the same job
    ours = sigrefs.read_tip(a.repo, signer.nid)
    report = a.sync(str(hub))
    assert report.publication is Publication.UNPUBLISHED
    assert "is rejected" in report.unpublished[0].reason
    assert sigrefs.read_tip(a.repo, signer.nid) == ours


def test_a_hub_cannot_make_us_leave_what_we_published_for_a_side_chain(tmp_path: Path) -> None:
    """Two copies through one hub merge; then the hub (forced) shows us the other copy's
    chain that does not build on our last published index: refused, nothing signed, our
    results reported unpublished — and a stale tip we already reach signs nothing either."""
    hub = _hub(tmp_path)
    signer = cob.Signer.generate()
    a = jobs.Jobs.open(str(_clone(tmp_path, hub, "a")), signer)
    a.create(a.resolve_commit("HEAD"), "one")
    assert a.sync(str(hub)).publication is Publication.PUBLISHED
    b = jobs.Jobs.open(str(_clone(tmp_path, hub, "b")), signer)
    assert b.sync(str(hub)).publication is Publication.PUBLISHED
    b.create(b.resolve_commit("HEAD"), "two")
    assert b.sync(str(hub)).publication is Publication.PUBLISHED
    stale = sigrefs.read_tip(b.repo, signer.nid)
    assert stale is not None
    a.create(a.resolve_commit("HEAD"), "three")
    merged = a.sync(str(hub))  # the other copy's chain builds on ours: merged, published
    assert merged.publication is Publication.PUBLISHED and merged.refused == []
    published = sigrefs.read_tip(a.repo, signer.nid)
    index = cob.index_ref(signer.nid)
    b.create(b.resolve_commit("HEAD"), "four")  # b has not seen a's merge
    git(Path(b.repo.path), "push", "-q", "-f", str(hub), f"{index}:{index}")  # the hub takes it anyway
    report = a.sync(str(hub))
    assert report.publication is Publication.UNPUBLISHED
    assert [r.kind for r in report.unpublished][:1] == [cob.sync.RefusalKind.OWN_NAMESPACE]
    assert sigrefs.read_tip(a.repo, signer.nid) == published  # nothing signed
    git(hub, "update-ref", index, stale)  # a stale tip of ours: behind, nothing to sign
    again = a.sync(str(hub))
    assert again.publication is Publication.PUBLISHED and sigrefs.read_tip(a.repo, signer.nid) == published
