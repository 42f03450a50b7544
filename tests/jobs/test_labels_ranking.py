"""Labels in the ranking: every reader knows what each trusted node can run, from signed data.

Each node publishes its labels and resource capacities in its own ``dev.gitjobs.node`` profile
(jobs.profile), at ``work any``; the ranking of a job (jobs.assign) counts only the trusted
nodes that can run it. Through the installed CLI, a bare hub and two nodes: a ``runs_on =
["slow"]`` job whose first-ranked node lacks the label is run at once by the one that has it
(before, it waited ``takeover``, here an hour); a job no trusted node can run is a final
``unservable`` with the reason, not ``expected`` forever.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pygit2
import pytest

import cob
from cob.change import write_root
from jobs import Jobs
from jobs.assign import rank
from jobs.jobtype import JOB_TYPE
from jobs.ops import Request
from jobs.policy import Policy
from jobs.profile import PROFILE_TYPE, Announce, announce, profiles
from tests.clirunner import gj, ok, user_error
from tests.conftest import git
from tests.jobs.test_trust import Project, policy_toml
from tests.node.test_node_daemon import BUILD_TEST, World, publish, wait_for, world  # noqa: F401 (fixture)

DEFS = """\
[jobs.build]
run = "true"

[jobs.slow]
run = "true"
runs_on = ["slow"]

[jobs.gpu]
run = "true"
runs_on = ["gpu"]
"""


def job_id(repo: Path, sha: str, name: str) -> str:
    """The id every node derives for (commit, name): the content-addressed root."""
    store = Jobs.open(repo)
    return write_root(store.repo, store.store.codec(JOB_TYPE), [Request(sha, name)])


@pytest.mark.slow
def test_a_labelled_job_goes_to_the_node_that_has_the_label(tmp_path: Path) -> None:
    project = Project(tmp_path, ("one", "two"))
    nids = project.nids
    sha = project.publish(
        DEFS + policy_toml({nids["one"]: "one", nids["two"]: "two"}, extra='takeover = "1h"\n'),
        "ci: two nodes",
    )
    # Give the label to the node the plain ranking asks *second*: only a ranking that knows
    # the labels lets it run the job now rather than an hour after the release.
    first, second = rank(job_id(project.upstream, sha, "slow"), nids.values())
    plain = next(n for n, nid in nids.items() if nid == first)
    labelled = next(n for n, nid in nids.items() if nid == second)

    a = project.clone(plain)
    ok(a, "work", "any", sha, key=project.keys[plain])
    ok(a, "sync", key=project.keys[plain])
    b = project.clone(labelled)
    ok(b, "sync", key=project.keys[labelled])  # the other node's profile and jobs
    report = ok(b, "work", "any", sha, "--label", "slow", "--json", key=project.keys[labelled]).json
    ran = {o["job"] for o in report["outcomes"]} if "outcomes" in report else None
    ok(b, "sync", key=project.keys[labelled])

    m = project.maintainer()
    r = gj(m, "status", sha, "--json")
    slow = next(j for j in r.json["jobs"] if j["name"] == "slow")
    assert slow["verdict"] == "passed", (r, ran)
    assert slow["assigned"] == [second]
    assert [x["node"] for x in slow["latest"]] == [second]
    # Nobody has `gpu`: a final state with its reason, not `expected` forever.
    gpu = next(j for j in r.json["jobs"] if j["name"] == "gpu")
    assert gpu["verdict"] == "unservable" and gpu["state"] == "unservable"
    assert r.json["unservable"] == {"gpu": "no trusted node has label gpu"}
    assert "gpu" not in r.json["expected"] and r.json["outcome"] == "failed" and r.code == 1
    text = gj(m, "status", sha)
    assert text.code == 1 and "no trusted node has label gpu" in text.out
    assert gj(m, "status", sha, "--watch", "--timeout", "5").code == 1  # nothing to wait for
    branch = ok(m, "status", "--branch", "main", "--json").json["commits"][0]
    assert branch["unservable"] == {"gpu": "no trusted node has label gpu"}
    ok(m, "report", "--html", str(tmp_path / "report"), "--branch", "main")
    page = (tmp_path / "report" / f"commit-{sha}.html").read_text()
    row = page[page.index("<tr><th>gpu ") :].split("</tr>", 1)[0]
    assert "st-unservable" in row and "no trusted node has label gpu" in row

    # The profiles are signed data every reader has: the maintainer reads both.
    known = profiles(Jobs.open(m), nids.values())
    assert "slow" in known[second].labels and "slow" not in known[first].labels
    listed = ok(m, "trust", "list", "--json").json["profiles"]
    assert "slow" in listed[second]["labels"] and "slow" not in listed[first]["labels"]
    line = next(x for x in ok(m, "trust", "list").out.splitlines() if second in x)
    assert "labels " in line and "slow" in line


@pytest.mark.slow
def test_a_node_without_a_profile_is_not_known_to_have_a_label(tmp_path: Path) -> None:
    project = Project(tmp_path, ("one", "two"))
    nids = project.nids
    sha = project.publish(DEFS + policy_toml({nids["one"]: "one", nids["two"]: "two"}), "ci")
    project.record("one", sha, "build", "succeeded")  # by hand: no profile published
    m = project.maintainer()
    r = gj(m, "status", sha, "--json")
    why = "no trusted node has label slow (2 trusted nodes published no labels)"
    assert r.json["unservable"]["slow"] == why


def test_only_the_node_itself_announces_and_every_bound_holds(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", str(repo))
    alice, bob = cob.Signer.generate(), cob.Signer.generate()
    mine = Jobs.open(repo, alice)
    assert announce(mine, ["linux", "slow"], {"gpu": 1}) is True
    assert announce(mine, ["slow", "linux"], {"gpu": 1}) is False  # nothing changed: nothing written
    assert announce(mine, ["linux"], {"gpu": 0}) is True
    got = profiles(Jobs.open(repo), [alice.nid])[alice.nid]
    assert got.labels == {"linux"} and got.resources == {"gpu": 0}
    (object_id,) = mine.store.lookup(PROFILE_TYPE, "node", alice.nid)
    theirs = Jobs.open(repo, bob)
    with pytest.raises(cob.InvalidOpsError, match="only node"):
        theirs.store.update(PROFILE_TYPE, object_id, [Announce(["gpu"], {})])
    for labels, resources, why in [
        ([f"l{i}" for i in range(65)], {}, "at most 64 labels"),
        (["\x1b[31mred"], {}, "invalid label"),
        (["b", "a"], {}, "sorted and unique"),
        ([], {"gpu": -1}, "capacity must be"),
    ]:
        with pytest.raises(cob.InvalidOpsError, match=why):
            mine.store.update(PROFILE_TYPE, object_id, [Announce(labels, resources)])
    assert isinstance(pygit2.Repository(str(repo)), pygit2.Repository)


def test_too_many_labels_is_one_line(tmp_path: Path) -> None:
    project = Project(tmp_path, ("one",))
    sha = project.publish(DEFS, "ci")
    a = project.clone("one")
    many = ",".join(f"l{i}" for i in range(70))
    assert "at most 64 labels" in user_error(a, "work", "any", sha, "--label", many, key=project.keys["one"])


def test_capacity_zero_and_needs_make_a_job_unservable(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", str(repo))
    (repo / ".git-jobs.toml").write_text(
        '[jobs.train]\nrun = "true"\nresources = ["gpu"]\n\n'
        '[jobs.report]\nrun = "true"\nneeds = ["train"]\n\n[jobs.lint]\nrun = "true"\n'
    )
    git(repo, "add", ".git-jobs.toml")
    git(repo, "commit", "-q", "-m", "defs")
    alice = cob.Signer.generate()
    mine = Jobs.open(repo, alice)
    policy = Policy(nodes={alice.nid: "alice"})
    # Nothing published: a resource nobody declared is not limited, as on the node.
    assert mine.status("HEAD", policy=policy).unservable == {}
    announce(mine, ["linux"], {"gpu": 0})
    status = mine.status("HEAD", policy=policy)
    assert status.unservable == {
        "train": "every trusted node has capacity 0 of resource gpu",
        "report": "its need train: every trusted node has capacity 0 of resource gpu",
    }
    assert status.verdict("lint") == "expected" and status.outcome == "failed" and status.exit_code == 1
    announce(mine, ["linux"], {"gpu": 1})
    again = mine.status("HEAD", policy=policy)
    assert again.unservable == {} and again.outcome == "pending"


@pytest.mark.slow
def test_the_node_publishes_its_labels_when_it_starts(world: World) -> None:
    publish(world, BUILD_TEST)
    path, signer, key = world.node_repo("carol")
    proc = world.start_node(path, key, "origin", extra=("--label", "gpu", "--resource", "gpu=2"))

    def seen() -> bool:
        ok(world.maintainer, "sync", "hub", key=world.maintainer_key)
        found = profiles(Jobs.open(world.maintainer), [signer.nid]).get(signer.nid)
        return found is not None and "gpu" in found.labels and found.resources == {"gpu": 2}

    wait_for(seen, 60, "carol's profile on the hub", lambda: world.node_log(path))
    assert "published labels" in world.node_log(path) and "gpu" in world.node_log(path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def test_a_forged_announce_in_a_peers_namespace_is_rejected_on_load(tmp_path: Path) -> None:
    """Bob writes, by hand, an announce into alice's profile and points his own index at it
    (as a fetch from him would deliver it): every load drops it and reports it."""
    from cob.change import write_change
    from tests.toytype import point

    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", str(repo))
    alice, bob = cob.Signer.generate(), cob.Signer.generate()
    mine = Jobs.open(repo, alice)
    announce(mine, ["linux"], {})
    (object_id,) = mine.store.lookup(PROFILE_TYPE, "node", alice.nid)
    tip = mine.store.tips(PROFILE_TYPE, object_id)[alice.nid]
    codec = mine.store.codec(PROFILE_TYPE)
    forged = write_change(
        mine.repo, codec, bob, bob.nid, [Announce(["gpu", "linux"], {})], [tip], timestamp=4_000_000_000
    )
    point(mine.repo, bob.nid, PROFILE_TYPE.typename, object_id, forged, signer=bob)
    reader = Jobs.open(repo)
    assert profiles(reader, [alice.nid])[alice.nid].labels == {"linux"}
    ev = reader.store.load(PROFILE_TYPE, object_id, full=True)
    assert ev is not None and [r.change for r in ev.rejections()] == [forged]
    assert "only node" in ev.rejections()[0].reason
