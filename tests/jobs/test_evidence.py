"""Evidence no other CI gives (issue 27), through the installed CLI.

Two trusted nodes (keys of their own) work in one repository, so each node's outputs tree is
in the object database the reader looks at: agreement is shown file by file. What a pass ran
under is in its signed finish (`show`); `status` says whether the nodes agree, whether a job is
divergent (fails on one trusted node only), and reuses a pass of the same tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pygit2
import pytest

import cob
import jobs
import jobs.model
import jobs.ops
from tests.clirunner import gj, ok
from tests.conftest import git, init_repo
from tests.jobs.test_verdicts import commit_defs, new_key, policy


def two_nodes(tmp: Path, second: str = "bob") -> tuple[Path, tuple[str, Path], tuple[str, Path]]:
    path = tmp / "repo"
    init_repo(path)
    git(path, "config", "jobs.isolation", "none")
    git(path, "config", "jobs.assignment", "all")  # both nodes run every job
    return path, new_key(tmp, "alice"), new_key(tmp, second)


def by_name(data: Any) -> dict[str, Any]:
    return {j["name"]: j for j in data["jobs"]}


BUILDS = """
[jobs.det]
run = "mkdir -p out && echo same > out/a.txt"
outputs = ["out/"]
[jobs.stamp]
run = "mkdir -p out && echo same > out/a.txt && date +%s%N > out/stamp.txt"
outputs = ["out/"]
"""


@pytest.mark.slow
def test_two_nodes_agree_on_a_deterministic_output_and_differ_on_a_timestamp(tmp_path: Path) -> None:
    path, (alice, akey), (bob, bkey) = two_nodes(tmp_path)
    sha = commit_defs(path, BUILDS + policy({alice: "alice", bob: "bob"}))
    ok(path, "work", "any", key=akey)
    ok(path, "work", "any", key=bkey)

    data = gj(path, "status", "--json", key=akey).json
    jobs = by_name(data)
    det, stamp = jobs["det"]["evidence"]["reproducible"], jobs["stamp"]["evidence"]["reproducible"]
    assert (det["reproducible"], det["agree"], det["total"], det["differs"]) == (True, 2, 2, [])
    assert (stamp["reproducible"], stamp["agree"], stamp["total"]) == (False, 1, 2)
    assert stamp["differs"] == [bob]  # a tie: alice's run started first, so hers is the reference
    assert stamp["files"] == {bob: ["out/stamp.txt"]}
    assert len(set(stamp["outputs"].values())) == 2 and len(set(det["outputs"].values())) == 1
    # Not required reproducible: a difference is shown, and the gate still passes.
    assert data["outcome"] == "succeeded"
    text = gj(path, "status", key=akey)
    assert text.code == 0, text
    assert "det: reproducible (2/2 agree)" in text.out
    assert "stamp: differs: bob (out/stamp.txt)" in text.out

    # What a pass ran under is in the signed finish, and `show` displays it.
    tree = git(path, "rev-parse", f"{sha}^{{tree}}").strip()
    defs_blob = git(path, "rev-parse", f"{sha}:.git-jobs.toml").strip()
    shown = ok(path, "show", jobs["det"]["id"], key=akey).out
    assert f"tree    {tree}" in shown and f"defs    {defs_blob}" in shown
    assert f"outputs {det['outputs'][alice]}" in shown and "os=" in shown and "labels=" in shown
    run = ok(path, "show", jobs["det"]["id"], "--json", key=akey).json["runs"][0]
    assert run["evidence"]["tree"] == tree and run["evidence"]["defs"] == defs_blob
    assert run["evidence"]["policy"] == git(path, "rev-parse", "main").strip()
    # The outputs tree is a real tree here: its file is the job's output.
    assert git(path, "cat-file", "-p", f"{det['outputs'][alice]}:out/a.txt").strip() == "same"

    # The web page says the same (the static report writes the served views).
    out = tmp_path / "report"
    ok(path, "report", "--html", str(out), "--branch", "main", "--commits", "1", key=akey)
    page = (out / f"commit-{sha}.html").read_text()
    assert "reproducible (2/2 agree)" in page and "differs: " in page and "(out/stamp.txt)" in page
    run_page = (out / f"run-{jobs['det']['id']}-{run['id']}.html").read_text()
    assert f"tree <code>{tree}</code>" in run_page and "env " in run_page

    # A policy that requires `stamp` reproducible makes the difference a failure of the gate.
    commit_defs(path, BUILDS + policy({alice: "alice", bob: "bob"}, 'reproducible = ["stamp"]\n'), "strict")
    strict = gj(path, "status", sha, "--json", key=akey)
    assert strict.code == 1 and strict.json["outcome"] == "failed"
    assert by_name(strict.json)["stamp"]["verdict"] == "failed"
    assert by_name(strict.json)["det"]["verdict"] == "passed"
    assert strict.json["policy"]["reproducible"] == ["stamp"]


@pytest.mark.slow
def test_a_job_failing_on_one_trusted_node_only_is_divergent_not_flaky(tmp_path: Path) -> None:
    path, (alice, akey), (carol, ckey) = two_nodes(tmp_path, "carol")
    commit_defs(
        path,
        f'[jobs.unit]\nrun = \'test "$GIT_JOBS_NODE" != "{carol}"\'\n'
        + policy({alice: "alice", carol: "carol"}),
    )
    ok(path, "work", "any", key=akey)
    assert gj(path, "work", "any", key=ckey).code == 1
    r = gj(path, "status", "--json", key=akey)
    unit = by_name(r.json)["unit"]
    assert r.code == 1 and unit["verdict"] == "failed"
    assert unit["evidence"]["divergent"] == {"fails_on": [carol]}
    assert unit["evidence"]["flaky"] == []  # flaky is a pass after a retry on the *same* node
    assert "unit: divergent (fails on carol)" in gj(path, "status", key=akey).out


def test_a_policy_reproducible_list_is_strict(tmp_path: Path) -> None:
    path, (alice, akey), _ = two_nodes(tmp_path)
    commit_defs(path, BUILDS + policy({alice: "alice"}, 'reproducible = "stamp"\n'))
    r = gj(path, "status", key=akey)
    assert r.code != 0 and "reproducible" in r.err


REUSE = """
[jobs.slow]
run = "echo ran >> {marker}"
reuse = "tree"
"""


@pytest.mark.slow
def test_a_pass_on_a_branch_is_reused_for_its_merge_with_the_same_tree(tmp_path: Path) -> None:
    path, (alice, akey), (bob, bkey) = two_nodes(tmp_path)
    marker = tmp_path / "ran.txt"
    commit_defs(path, REUSE.format(marker=marker) + policy({alice: "alice", bob: "bob"}), "base")
    git(path, "checkout", "-q", "-b", "pr")
    (path / "feature.txt").write_text("feature\n")
    git(path, "add", "feature.txt")
    git(path, "commit", "-q", "-m", "feature")
    pr = git(path, "rev-parse", "HEAD").strip()
    ok(path, "work", "any", key=akey)
    assert marker.read_text() == "ran\n"

    # The merge to main: a new commit (two parents) with the very same tree as pr.
    git(path, "checkout", "-q", "main")
    git(path, "merge", "-q", "--no-ff", "-m", "merge pr", "pr")
    main = git(path, "rev-parse", "HEAD").strip()
    assert main != pr and git(path, "rev-parse", "main^{tree}") == git(path, "rev-parse", "pr^{tree}")
    plan = ok(path, "work", "any", "--dry-run", "--json", key=bkey).json
    assert [(j["name"], j["action"]) for j in plan["jobs"]] == [("slow", "reused")]
    assert pr[:12] in plan["jobs"][0]["reason"]
    ok(path, "work", "any", key=bkey)
    ok(path, "work", "any", key=akey)
    assert marker.read_text() == "ran\n"  # no node ran it again
    r = gj(path, "status", "--json", key=bkey)
    slow = by_name(r.json)["slow"]
    assert r.code == 0 and r.json["outcome"] == "succeeded" and slow["verdict"] == "passed"
    assert slow["latest"] == [] and slow["evidence"]["reused"]["commit"] == pr
    assert slow["evidence"]["reused"]["node"] == alice
    assert f"passed (reused from {pr[:12]})" in gj(path, "status", key=bkey).out
    out = tmp_path / "report"
    ok(path, "report", "--html", str(out), "--branch", "main", "--commits", "1", key=bkey)
    assert f"passed (reused from <code>{pr[:12]}</code>)" in (out / f"commit-{main}.html").read_text()

    # One byte more in the tree: nothing to reuse, so it runs again.
    (path / "feature.txt").write_text("feature!\n")
    git(path, "commit", "-q", "-am", "one byte")
    plan = ok(path, "work", "any", "--dry-run", "--json", key=bkey).json
    assert [(j["name"], j["action"]) for j in plan["jobs"]] == [("slow", "run")]
    ok(path, "work", "any", key=bkey)
    assert marker.read_text() == "ran\nran\n"


@pytest.mark.slow
def test_an_untrusted_pass_is_never_reused(tmp_path: Path) -> None:
    path, (alice, akey), (_mallory, mkey) = two_nodes(tmp_path, "mallory")
    marker = tmp_path / "ran.txt"
    commit_defs(path, REUSE.format(marker=marker) + policy({alice: "alice"}), "base")
    git(path, "checkout", "-q", "-b", "pr")
    git(path, "commit", "-q", "--allow-empty", "-m", "same tree")
    ok(path, "work", "any", key=mkey)  # mallory (not trusted) passes the tree on pr
    git(path, "checkout", "-q", "main")
    plan = ok(path, "work", "any", "--dry-run", "--json", key=akey).json
    assert [(j["name"], j["action"]) for j in plan["jobs"]] == [("slow", "run")]
    assert by_name(gj(path, "status", "--json", key=akey).json)["slow"]["verdict"] == "expected"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tree", "not-an-oid"),
        ("outputs", "A" * 40),
        ("env", {"os": "\x1b[2Jlinux"}),
        ("env", {"OS": "linux"}),
        ("env", {f"k{i}": "v" for i in range(17)}),
        ("env", {"os": "x" * 201}),
    ],
)
def test_a_finish_with_bad_evidence_is_refused_by_the_type(
    repo: pygit2.Repository, signer: cob.Signer, field: str, value: Any
) -> None:
    """Peer data the signer could write: the type rejects it, so no reader ever shows it."""
    store = jobs.Jobs.open(repo.path, signer=signer)
    job = store.create(str(repo.head.target), "build")
    run_id = job.run("https://ci.example/1")
    with pytest.raises(jobs.JobsError):
        job.finish(run_id, "succeeded", evidence=jobs.model.Evidence(**{field: value}))
    bad = jobs.ops.FinishRun(str(run_id), "succeeded", **{field: value})
    with pytest.raises(jobs.JobsError):
        job._write([bad])  # what a hostile peer's own writer would sign
    fresh = jobs.Jobs.open(repo.path).get(job.id)
    assert fresh is not None and fresh.runs_of(signer.nid)[run_id].is_started


def test_a_finish_without_evidence_keeps_its_bytes() -> None:
    """Old changes keep their bytes: the new fields are omitted when absent."""
    import msgspec

    plain = jobs.ops.FinishRun("0190a4b2-0000-7000-8000-000000000000", "succeeded", exit=0)
    assert msgspec.json.encode(plain) == (
        b'{"type":"finish","run_id":"0190a4b2-0000-7000-8000-000000000000","reason":"succeeded","exit":0}'
    )


def test_flaky_and_divergent_are_told_apart_in_json(repo: pygit2.Repository) -> None:
    """Flaky: a pass after a failed attempt on the same node. Divergent: fails on one trusted
    node while another passes. With no policy every node counts (both are trusted here)."""
    alice, carol = cob.Signer.generate(), cob.Signer.generate()
    sha = str(repo.head.target)
    a = jobs.Jobs.open(repo.path, signer=alice).create(sha, "unit")
    for reason in ("failed", "succeeded"):  # alice: failed, then passed on a retry
        a.finish(a.run("https://ci.example/a"), reason)
    c = jobs.Jobs.open(repo.path, signer=carol).get_mut(a.id)
    assert c is not None
    c.finish(c.run("https://ci.example/c"), "failed")
    status = jobs.gate_status(jobs.Jobs.open(repo.path), sha)
    ev = by_name(status.to_json())["unit"]["evidence"]
    assert ev["flaky"] == [alice.nid] and ev["divergent"] == {"fails_on": [carol.nid]}
    assert status.outcome == "failed"
    # Carol passes on her retry: flaky on both nodes, divergent no more.
    c.finish(c.run("https://ci.example/c2"), "succeeded")
    status = jobs.gate_status(jobs.Jobs.open(repo.path), sha)
    ev = by_name(status.to_json())["unit"]["evidence"]
    assert ev["flaky"] == sorted([alice.nid, carol.nid]) and ev["divergent"] is None
    assert status.outcome == "succeeded"


def test_outputs_not_here_differ_by_digest_only(repo: pygit2.Repository) -> None:
    """Another node's outputs tree is not fetched: the difference is told by its id alone."""
    alice, bob = cob.Signer.generate(), cob.Signer.generate()
    sha = str(repo.head.target)
    for signer, digest in ((alice, "1" * 40), (bob, "2" * 40)):
        store = jobs.Jobs.open(repo.path, signer=signer)
        job = store.create(sha, "build")
        job.finish(job.run("https://ci.example/x"), "succeeded", evidence=jobs.model.Evidence(outputs=digest))
    status = jobs.gate_status(jobs.Jobs.open(repo.path), sha)
    agree = by_name(status.to_json())["build"]["evidence"]["reproducible"]
    assert agree["reproducible"] is False and agree["total"] == 2 and agree["files"] == {}
    assert len(agree["differs"]) == 1
    from jobs.cli.common import Style
    from jobs.cli.statusview import evidence_notes

    assert any("(by digest)" in line for line in evidence_notes(status, Style()))


def test_reuse_takes_only_tree() -> None:
    from jobs.spec.definitions import parse_definitions

    d = parse_definitions('[jobs.a]\nrun = "x"\nreuse = "tree"\n', "0" * 40)
    assert d.jobs[0].reuse == "tree"
    with pytest.raises(jobs.DefinitionError) as e:
        parse_definitions('[jobs.a]\nrun = "x"\nreuse = "name"\n', "0" * 40)
    assert "jobs.a.reuse: must be \"tree\", not 'name'" in str(e.value)


def test_the_outputs_tree_keeps_links_as_links(repo: pygit2.Repository, tmp_path: Path) -> None:
    """Job-made files: a link is recorded as a link (never followed), a FIFO and an empty
    directory are left out, an executable keeps its bit: the same files give the same id."""
    import os

    from jobs.node.evidence import outputs_tree

    root = tmp_path / "kept"
    (root / "dist" / "empty").mkdir(parents=True)
    (root / "dist" / "app.txt").write_text("app\n")
    (root / "dist" / "run.sh").write_text("#!/bin/sh\n")
    (root / "dist" / "run.sh").chmod(0o755)
    os.symlink("/etc/passwd", root / "dist" / "secret")
    os.mkfifo(root / "dist" / "pipe")
    oid = outputs_tree(repo, root)
    assert oid is not None
    tree = repo.get(oid)
    assert isinstance(tree, pygit2.Tree)
    dist = repo.get(tree["dist"].id)
    assert isinstance(dist, pygit2.Tree)
    modes = {e.name: e.filemode for e in dist}
    assert modes == {
        "app.txt": pygit2.enums.FileMode.BLOB,
        "run.sh": pygit2.enums.FileMode.BLOB_EXECUTABLE,
        "secret": pygit2.enums.FileMode.LINK,
    }
    secret = repo.get(dist["secret"].id)
    assert isinstance(secret, pygit2.Blob) and secret.data == b"/etc/passwd"
    assert outputs_tree(repo, root) == oid and outputs_tree(repo, tmp_path / "none") is None
