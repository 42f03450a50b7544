"""Artifacts that leave the node: `publish = true` outputs travel as Git data, verified.

Through the installed `git-jobs` script: node A builds a wheel and syncs through a hub (a real
`git daemon`); maintainer M syncs and `git jobs artifacts` writes the wheel after checking the
tree against A's signed finish — or refuses it, one line, when anything does not match. With a
policy of two trusted nodes, a matrix of four cells needing `build` spreads over both nodes,
the cells on the other node taking the published wheel.
"""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path

import pygit2
import pytest

import jobs
from jobs import artifacts, logs
from jobs.assign import rank
from tests.conftest import git
from tests.jobs.test_assign import Cluster
from tests.jobs.test_logs import Net, clone_m, commit_defs, gjb, net, ok, only_run

__all__ = ["net"]  # the fixture

WHEEL = b"PK\x03\x04 a wheel built on node a \x00\xff"
BUILD = (
    "[jobs.build]\nrun = \"mkdir -p dist && printf 'PK\\\\003\\\\004 a wheel built on node a \\\\000\\\\377'"
    ' > dist/pkg-1.0-py3-none-any.whl"\noutputs = ["dist/"]\npublish = true\n'
)


@pytest.mark.slow
def test_a_wheel_built_on_node_a_is_fetched_and_verified_by_the_maintainer(net: Net, tmp_path: Path) -> None:
    commit_defs(net, BUILD)
    ok(net.a, "work", "any", key=net.a_key)
    ok(net.a, "sync", "hub", key=net.a_key)
    run_id, run = only_run(net.a, "build", net.a_nid)
    assert run.evidence is not None and run.evidence.outputs
    m = clone_m(net)
    ok(m, "sync", key=net.m_key)
    ok(m, "trust", "add", net.a_nid, "--name", "a", key=net.m_key)
    out = tmp_path / "wheel"
    got = ok(m, "artifacts", "HEAD:build", "-o", str(out), key=net.m_key)
    assert (out / "dist" / "pkg-1.0-py3-none-any.whl").read_bytes() == WHEEL
    assert f"run {run_id}" in got.err and run.evidence.outputs in got.err
    as_json = json.loads(
        ok(m, "artifacts", str(run_id), "-o", str(tmp_path / "j"), "--json", key=net.m_key).out
    )
    assert as_json["tree"] == run.evidence.outputs and as_json["files"] == 1
    # a second fetch into a directory that holds files is refused (nothing overwritten)
    again = gjb(m, "artifacts", "HEAD:build", "-o", str(out), key=net.m_key)
    assert again.code == 1 and "not an empty directory" in again.err and len(again.err.splitlines()) == 1


@pytest.mark.slow
def test_an_untrusted_nodes_artifact_is_not_taken(net: Net, tmp_path: Path) -> None:
    commit_defs(net, BUILD)
    ok(net.a, "work", "any", key=net.a_key)
    ok(net.a, "sync", "hub", key=net.a_key)
    m = clone_m(net)
    ok(m, "sync", key=net.m_key)
    got = gjb(m, "artifacts", "HEAD:build", "-o", str(tmp_path / "x"), key=net.m_key)
    assert got.code == 1 and got.err.startswith("error: refused: node") and "not trusted" in got.err
    assert not (tmp_path / "x").exists()


def _forge(repo_path: Path, nid: str, run_id: object, data: bytes) -> str:
    """M's copy of A's bucket moved to a commit listing another tree for the run (unsigned)."""
    repo = pygit2.Repository(str(repo_path))
    name = artifacts.bucket_ref(nid, logs.bucket_of(str(run_id)))
    tip = repo.references[name].target
    blob = repo.create_blob(data)
    inner = repo.TreeBuilder()
    inner.insert("pkg-1.0-py3-none-any.whl", blob, pygit2.enums.FileMode.BLOB)
    dist = repo.TreeBuilder()
    dist.insert("dist", inner.write(), pygit2.enums.FileMode.TREE)
    fan, leaf = logs.entry_path(str(run_id))
    sub = repo.TreeBuilder()
    sub.insert(leaf, dist.write(), pygit2.enums.FileMode.TREE)
    top = repo.TreeBuilder()
    top.insert(fan, sub.write(), pygit2.enums.FileMode.TREE)
    who = pygit2.Signature(nid, nid)
    forged = repo.create_commit(None, who, who, f"Artifacts {run_id}\n", top.write(), [tip])
    repo.references[name].set_target(forged)
    return str(forged)


@pytest.mark.slow
def test_a_tampered_artifact_is_refused(net: Net, tmp_path: Path) -> None:
    commit_defs(net, BUILD)
    ok(net.a, "work", "any", key=net.a_key)
    ok(net.a, "sync", "hub", key=net.a_key)
    run_id, run = only_run(net.a, "build", net.a_nid)
    m = clone_m(net)
    ok(m, "sync", key=net.m_key)
    ok(m, "trust", "add", net.a_nid, "--name", "a", key=net.m_key)
    _forge(m, net.a_nid, run_id, b"PK\x03\x04 a wheel with a backdoor")
    out = tmp_path / "wheel"
    got = gjb(m, "artifacts", "HEAD:build", "--node", "a", "-o", str(out), key=net.m_key)
    assert got.code == 1, got
    assert got.err.startswith("error: refused: the artifact of run") and len(got.err.splitlines()) == 1
    assert run.evidence is not None and run.evidence.outputs[:12] in got.err
    assert not out.exists()


def test_a_corrupt_object_of_an_artifact_is_refused(net: Net, tmp_path: Path) -> None:
    commit_defs(net, BUILD)
    ok(net.a, "work", "any", key=net.a_key)
    _, run = only_run(net.a, "build", net.a_nid)
    repo = pygit2.Repository(str(net.a))
    assert run.evidence is not None and run.evidence.outputs
    assert artifacts.verify_tree(repo, run.evidence.outputs) is None
    # swap the wheel's loose object for other bytes under the same id
    wheel = repo.revparse_single(f"{run.evidence.outputs}:dist/pkg-1.0-py3-none-any.whl").id
    loose = Path(repo.path) / "objects" / str(wheel)[:2] / str(wheel)[2:]
    loose.chmod(0o644)
    loose.write_bytes(zlib.compress(b"blob 5\x00evil!"))
    got = gjb(net.a, "artifacts", "HEAD:build", "-o", str(tmp_path / "w"), key=net.a_key)
    assert got.code == 1 and "does not hash to its id" in got.err, got


@pytest.mark.slow
def test_prune_artifacts_drops_old_buckets_and_the_reader_says_so(net: Net, tmp_path: Path) -> None:
    commit_defs(net, BUILD)
    ok(net.a, "work", "any", key=net.a_key)
    repo = pygit2.Repository(str(net.a))
    assert list(repo.references.iterator()) and any("/refs/artifacts/" in r for r in repo.references)
    bad = gjb(net.a, "prune-artifacts", "--older-than", "soon", key=net.a_key)
    assert bad.code == 2 and len(bad.err.splitlines()) == 1
    pruned = json.loads(ok(net.a, "prune-artifacts", "--older-than", "1s", "--json", key=net.a_key).out)
    assert pruned["deleted"] == []  # whole months only: this month's bucket stays
    point, gone = artifacts.prune(repo, 1, now=time.time() + 70 * 86400)  # two months on
    assert gone and all("/refs/artifacts/" in r for r in gone)
    assert repo.config["jobs.artifacts.prunedBefore"] == point
    got = gjb(net.a, "artifacts", "HEAD:build", "-o", str(tmp_path / "w"), key=net.a_key)
    assert got.code == 1 and "pruned" in got.err


@pytest.mark.slow
def test_publish_is_checked_and_capped_by_the_node(net: Net) -> None:
    bad = commit_defs(net, BUILD.replace("publish = true", 'publish = "yes"'))
    res = gjb(net.a, "release", bad, key=net.a_key)
    assert res.code != 0 and "jobs.build.publish: must be true or false" in res.err
    alone = commit_defs(net, '[jobs.build]\nrun = "true"\npublish = true\n')
    res = gjb(net.a, "release", alone, key=net.a_key)
    assert (
        res.code != 0 and "jobs.build.publish: publishes the job's outputs: list them in `outputs`" in res.err
    )
    commit_defs(net, BUILD)
    git(net.a, "config", "jobs.artifactsMax", "4")
    ok(net.a, "work", "any", key=net.a_key)
    run_id, _ = only_run(net.a, "build", net.a_nid)
    log = ok(net.a, "logs", str(run_id), key=net.a_key).out
    assert b"outputs not published: over jobs.artifactsMax (4 bytes)" in log


# -- a matrix needing `build` spreads over two nodes ------------------------------------------
MATRIX = BUILD + (
    '\n[jobs.test]\nrun = "test -f dist/pkg-1.0-py3-none-any.whl && echo cell {matrix.n} on $GIT_JOBS_NODE"\n'
    'needs = ["build"]\nmatrix = { n = ["1", "2", "3", "4"] }\n\n'
)


@pytest.mark.slow
def test_a_matrix_of_four_cells_needing_build_is_spread_over_two_nodes(tmp_path: Path) -> None:
    c = Cluster(tmp_path, seed=2)
    c.nids = {n: c.nids[n] for n in ("alice", "bob")}  # two trusted nodes
    sha = c.publish(MATRIX, quorum=1)
    for name in c.nids:
        git(c.node(name), "config", "jobs.parallel", "2")  # cells run in worker threads
    for _ in range(2):
        for name in ("alice", "bob"):
            c.turn(name)
    runs = c.runs(sha)
    cells = [f"test (n={i})" for i in range(1, 5)]
    assert sorted(runs) == ["build", *cells], runs
    assert all(len(runs[n]) == 1 and runs[n][0][1].succeeded for n in ["build", *cells]), runs
    builder = runs["build"][0][0]
    where = {n: runs[n][0][0] for n in cells}
    assert set(where.values()) == set(c.nids.values()), where  # both nodes ran cells
    # the ranking says the same: each cell is its own group now (its need is published)
    store = jobs.Jobs.open(str(c.maintainer()))
    ids = {j.name: j.id for j in store.find_by_commit(sha)}
    assert all(rank(ids[n], c.nids.values())[0] == where[n] for n in cells)
    other = next(n for n in cells if where[n] != builder)
    helper = next(p for name, p in c.paths.items() if c.nids.get(name) == where[other])
    log = ok(helper, "logs", f"{sha}:{other}", key=c.keys[c.who(where[other])]).out
    assert b"outputs of build (published by" in log, log
    # the node that took the published build did not run it
    plan = json.loads(ok(helper, "work", "any", "--dry-run", "--json", key=c.keys[c.who(where[other])]).out)
    build = next(j for j in plan["jobs"] if j["name"] == "build")
    assert build["action"] in ("reused", "elsewhere"), build
