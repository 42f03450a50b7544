"""Trust as a maintainer relies on it: whose results count, and what "passed" means.

Every test goes through the installed `git-jobs` script and a real bare hub (a path): volunteer
nodes record runs in their own clones (through the library, in-process) and sync them through
the hub; the maintainer syncs and asks `status`, whose exit code is the merge gate. The policy
lives in `.git-jobs.toml` on the hub's default branch — never in the commit under test.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import cob
import jobs
from tests.clirunner import gj, ok, user_error
from tests.conftest import git, init_repo

DEFS = """\
[jobs.build]
run = "true"

[jobs.test]
run = "true"
needs = ["build"]
"""


def policy_toml(nodes: dict[str, str], quorum: int = 1, extra: str = "") -> str:
    table = ", ".join(f'"{nid}" = "{name}"' for nid, name in nodes.items())
    return f"\n[policy]\nnodes = {{ {table} }}\nquorum = {quorum}\n{extra}"


def commit_file(repo: Path, text: str, message: str) -> str:
    (repo / ".git-jobs.toml").write_text(text)
    git(repo, "add", ".git-jobs.toml")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


class Project:
    """A hub, the upstream checkout that owns main, a maintainer and some volunteer nodes."""

    def __init__(self, tmp: Path, names: tuple[str, ...] = ("alice", "bob", "mallory")) -> None:
        self.tmp = tmp
        self.hub = tmp / "hub.git"
        init_repo(self.hub, bare=True)
        self.upstream = tmp / "upstream"
        init_repo(self.upstream, commits=1)
        git(self.upstream, "remote", "add", "origin", str(self.hub))
        self.keys = {n: cob.Signer.generate().save(tmp / "keys" / n) for n in names}
        self.nids = {n: cob.Signer.from_file(k).nid for n, k in self.keys.items()}
        self.clones: dict[str, Path] = {}

    def publish(self, text: str, message: str, branch: str = "main") -> str:
        """Commit ``.git-jobs.toml`` upstream on ``branch`` and push it to the hub."""
        git(self.upstream, "checkout", "-q", "-B", branch)
        sha = commit_file(self.upstream, text, message)
        git(self.upstream, "push", "-q", "origin", f"{branch}:{branch}")
        return sha

    def clone(self, name: str) -> Path:
        """A clone of the hub for ``name`` (made once; later calls fetch)."""
        path = self.clones.get(name)
        if path is None:
            path = self.tmp / name
            git(self.tmp, "clone", "-q", str(self.hub), str(path))
            self.clones[name] = path
        else:
            git(path, "fetch", "-q", "origin")
        return path

    def record(self, node: str, sha: str, name: str, *reasons: str) -> None:
        """``node`` runs job ``name`` on ``sha`` once per reason, and syncs with the hub."""
        path, key = self.clone(node), self.keys[node]
        # In-process, as the node's own process writes (the CLI's create/run/finish have their
        # own tests); what is under test here is what the sync carries and `status` reads.
        job = jobs.Jobs.open(str(path), cob.Signer.from_file(key)).create(sha, name)
        for i, reason in enumerate(reasons):
            job.finish(job.run(f"https://ci.example/{node}/{name}/{i}"), reason)
        ok(path, "sync", key=key)

    def maintainer(self) -> Path:
        """The maintainer's clone, freshly fetched (branches and every node's jobs), no key."""
        path = self.clone("maintainer")
        ok(path, "sync")
        return path


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def status(path: Path, *args: str) -> tuple[int, dict[str, object]]:
    r = gj(path, "status", *args, "--json")
    assert r.err == "", r
    return r.code, r.json


def runs(data: dict[str, object]) -> list[dict[str, object]]:
    return [r for j in data["jobs"] for r in j["latest"]]  # type: ignore[attr-defined]


# -- a stranger changes nothing ---------------------------------------------------------------
@pytest.mark.slow
def test_a_strangers_failure_and_a_strangers_pass_change_nothing(project: Project) -> None:
    alice, mallory = project.nids["alice"], project.nids["mallory"]
    green = project.publish(DEFS + policy_toml({alice: "alice-linux"}), "ci: alice is trusted")
    project.record("alice", green, "build", "succeeded")
    project.record("alice", green, "test", "succeeded")
    m = project.maintainer()
    assert gj(m, "status", green).code == 0

    # A stranger with a fresh key fails the green commit: still 0, shown as not counted.
    project.record("mallory", green, "build", "failed")
    m = project.maintainer()
    text = gj(m, "status", green)
    assert text.code == 0, text
    assert "not counted" in text.out and "alice-linux" in text.out and mallory[:7] in text.out
    assert "every node counts" not in text.out
    code, data = status(m, green)
    assert (code, data["outcome"]) == (0, "succeeded")
    counted = {(r["node"], r["counted"]) for r in runs(data)}
    assert counted == {(alice, True), (mallory, False)}
    assert {r["node_name"] for r in runs(data) if r["node"] == alice} == {"alice-linux"}
    # --all-nodes counts everyone: now the stranger's failure decides.
    everyone = gj(m, "status", green, "--all-nodes")
    assert everyone.code == 1 and "--all-nodes: every node's runs counted" in everyone.out
    assert "not counted" not in everyone.out

    # The same stranger passes a commit no trusted node has built: not a pass.
    never = project.publish(DEFS + policy_toml({alice: "alice-linux"}) + "# touched\n", "untested")
    project.record("mallory", never, "build", "succeeded")
    project.record("mallory", never, "test", "succeeded")
    m = project.maintainer()
    code, data = status(m, never)
    assert (code, data["outcome"], data["expected"]) == (8, "pending", ["build", "test"])
    assert [r["counted"] for r in runs(data)] == [False, False]
    assert gj(m, "status", never, "--all-nodes").code == 0


# -- required jobs, expected, quorum ------------------------------------------------------------
@pytest.mark.slow
def test_required_jobs_are_expected_until_a_quorum_of_trusted_nodes_passed_them(project: Project) -> None:
    alice, bob = project.nids["alice"], project.nids["bob"]
    sha = project.publish(DEFS + policy_toml({alice: "alice-linux", bob: "bob-arm"}), "ci: two nodes")
    project.record("alice", sha, "build", "succeeded")
    m = project.maintainer()
    code, data = status(m, sha)
    assert (code, data["outcome"], data["expected"]) == (8, "pending", ["test"])
    assert {j["name"]: j["verdict"] for j in data["jobs"]} == {"build": "passed", "test": "expected"}
    text = gj(m, "status", sha)
    assert text.code == 8 and "expected: test" in text.out and "alice-linux" in text.out

    project.record("alice", sha, "test", "succeeded")
    m = project.maintainer()
    assert status(m, sha)[0] == 0

    # The project raises the quorum to 2 on main: one trusted pass per job is no longer enough.
    policy = policy_toml({alice: "alice-linux", bob: "bob-arm"}, quorum=2)
    project.publish(DEFS + policy, "ci: quorum 2")
    m = project.maintainer()
    code, data = status(m, sha)
    assert (code, data["expected"], data["policy"]["quorum"]) == (8, ["build", "test"], 2)
    project.record("bob", sha, "build", "succeeded")
    project.record("bob", sha, "test", "succeeded")
    m = project.maintainer()
    assert status(m, sha)[0] == 0
    # A trusted failure fails the commit whatever the quorum (failure wins, as gh).
    project.record("bob", sha, "test", "failed")
    assert status(project.maintainer(), sha)[0] == 1


@pytest.mark.slow
def test_policy_required_overrides_the_definitions_and_extras_never_block(project: Project) -> None:
    alice = project.nids["alice"]
    extra = '\n[jobs.lint]\nrun = "true"\n'
    sha = project.publish(
        DEFS + extra + policy_toml({alice: "alice"}, extra='required = ["build"]\n'), "ci: only build"
    )
    project.record("alice", sha, "build", "succeeded")
    project.record("alice", sha, "lint", "failed")
    code, data = status(project.maintainer(), sha)
    assert (code, data["required"]) == (0, ["build"])
    assert {j["name"]: j["verdict"] for j in data["jobs"]} == {
        "build": "passed",
        "lint": "extra",
        "test": "extra",
    }


# -- a pull request cannot vouch for itself ------------------------------------------------------
@pytest.mark.slow
def test_a_pull_request_that_adds_its_own_node_to_the_policy_is_not_trusted(project: Project) -> None:
    alice, mallory = project.nids["alice"], project.nids["mallory"]
    project.publish(DEFS + policy_toml({alice: "alice-linux"}), "ci: alice is trusted")
    # mallory's pull request: the same file, plus mallory's own NID in [policy].
    pr = project.publish(
        DEFS + policy_toml({alice: "alice-linux", mallory: "totally-legit"}), "pr: trust me", branch="pr"
    )
    project.record("mallory", pr, "build", "succeeded")
    project.record("mallory", pr, "test", "succeeded")
    m = project.maintainer()
    git(m, "checkout", "-q", "-b", "pr", "origin/pr")  # reviewing it: HEAD is the pull request
    code, data = status(m)  # HEAD
    assert data["commit"] == pr and code == 8 and data["expected"] == ["build", "test"]
    assert [r["counted"] for r in runs(data)] == [False, False]
    assert data["policy"]["source"]["ref"] == "refs/remotes/origin/main"
    assert [t["nid"] for t in data["policy"]["trusted"]] == [alice]
    listed = ok(m, "trust", "list")
    assert mallory not in listed.out and "totally-legit" not in listed.out and alice in listed.out
    # Even a local `main` the reviewer made from the pull request does not count: the remote's
    # default branch as fetched comes first.
    git(m, "branch", "-f", "main", "pr")
    assert status(m)[0] == 8
    # Merged into main by a maintainer, the policy does change: now mallory counts.
    git(project.upstream, "checkout", "-q", "main")
    git(project.upstream, "merge", "-q", "--ff-only", "pr")
    git(project.upstream, "push", "-q", "origin", "main")
    assert status(project.maintainer())[0] == 0


# -- retrying and stray jobs ---------------------------------------------------------------------
@pytest.mark.slow
def test_a_job_its_node_will_retry_is_pending_and_a_stray_job_does_not_block(project: Project) -> None:
    alice = project.nids["alice"]
    defs = DEFS.replace('[jobs.test]\nrun = "true"', '[jobs.test]\nrun = "true"\nretry = 3')
    sha = project.publish(defs + policy_toml({alice: "alice"}), "ci: test retries")
    project.record("alice", sha, "build", "succeeded")
    project.record("alice", sha, "test", "failed")
    m = project.maintainer()
    code, data = status(m, sha)
    assert (code, data["outcome"], data["counts"]) == (8, "pending", {"retrying": 1, "succeeded": 1})
    test = next(j for j in data["jobs"] if j["name"] == "test")
    assert test["verdict"] == "pending" and test["latest"][0]["reason"] == "failed"
    assert "retrying" in gj(m, "status", sha).out
    # A job made by hand that no definition names: listed, never blocking — even failed.
    project.record("alice", sha, "stray", "failed")
    project.record("alice", sha, "test", "error", "succeeded")
    m = project.maintainer()
    code, data = status(m, sha)
    assert code == 0 and {j["name"]: j["verdict"] for j in data["jobs"]}["stray"] == "extra"
    text = gj(m, "status", sha).out
    assert "stray" in text and "not required" in text
    # Out of retries (3 failed attempts), the failure is final.
    bad = project.publish(defs + policy_toml({alice: "alice"}) + "#\n", "ci: flaky")
    project.record("alice", bad, "build", "succeeded")
    project.record("alice", bad, "test", "failed", "timed_out")
    assert status(project.maintainer(), bad)[0] == 8
    project.record("alice", bad, "test", "error")
    assert status(project.maintainer(), bad)[0] == 1


@pytest.mark.slow
def test_with_a_policy_but_no_jobs_defined_the_jobs_people_made_are_required(project: Project) -> None:
    alice = project.nids["alice"]
    sha = project.publish(policy_toml({alice: "alice"}), "ci: a policy, jobs made by hand")
    project.record("mallory", sha, "ci", "succeeded")
    code, data = status(project.maintainer(), sha)
    assert (code, data["required"], data["expected"]) == (8, ["ci"], ["ci"])
    project.record("alice", sha, "ci", "succeeded")
    assert status(project.maintainer(), sha)[0] == 0


# -- definitions that do not parse ---------------------------------------------------------------
@pytest.mark.slow
def test_a_commit_whose_definitions_do_not_parse_shows_every_error(project: Project) -> None:
    broken = (
        '[jobs.build]\nrun = ""\ntimeout = "soon"\n\n[jobs.test]\nrun = "true"\nneeds = ["nope"]\n'
        '[jobs.lint]\nrun = "true"\nflavour = "x"\n\n[colour]\nx = 1\n'
    )
    sha = project.publish(broken, "ci: broken")
    m = project.maintainer()
    r = gj(m, "status", sha)
    assert r.code == 1 and "no jobs" not in r.out, r
    for key in ("jobs.build.run", "jobs.build.timeout", "jobs.test.needs", "jobs.lint.flavour", "colour"):
        assert key in r.out, (key, r.out)
    code, data = status(m, sha)
    assert (code, data["outcome"], len(data["errors"])) == (1, "failed", 5)
    # The node refuses it with the same list, in one line.
    err = user_error(project.clone("alice"), "work", "any", key=project.keys["alice"])
    assert "jobs.build.timeout" in err and "jobs.lint.flavour" in err


# -- local trust ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_local_trust_adds_to_the_policy_for_one_person_in_git_config(project: Project) -> None:
    alice, mallory = project.nids["alice"], project.nids["mallory"]
    sha = project.publish(DEFS + policy_toml({alice: "alice-linux"}), "ci")
    project.record("mallory", sha, "build", "succeeded")
    project.record("mallory", sha, "test", "succeeded")
    m = project.maintainer()
    assert status(m, sha)[0] == 8
    added = ok(m, "trust", "add", f"did:key:{mallory}", "--name", "my-laptop", "--json").json
    assert added == {"nid": mallory, "name": "my-laptop", "new": True}
    assert git(m, "config", "--local", "--get-all", "jobs.trust").split() == [mallory, "my-laptop"]
    code, data = status(m, sha)
    assert code == 0 and {r["node_name"] for r in runs(data)} == {"my-laptop"}
    assert "my-laptop" in gj(m, "status", sha).out
    assert f"node {mallory}  my-laptop" in ok(m, "show", f"{sha}:build").out
    listed = ok(m, "trust", "list", "--json").json
    assert {(t["nid"], t["name"], t["local"]) for t in listed["trusted"]} == {
        (alice, "alice-linux", False),
        (mallory, "my-laptop", True),
    }
    assert ok(m, "trust", "add", mallory, "--json").json["new"] is False  # renamed: no name now
    assert git(m, "config", "--get-all", "jobs.trust").split() == [mallory]
    assert ok(m, "trust", "remove", mallory, "--json").json == {"nid": mallory, "removed": True}
    assert status(m, sha)[0] == 8
    assert ok(m, "trust", "remove", mallory, "--json").json["removed"] is False
    # Bad input is one line, exit 2; a name that would drive the terminal is refused.
    assert "not a node id" in user_error(m, "trust", "add", "z6Mknope")
    assert "control" in user_error(m, "trust", "add", mallory, "--name", "evil\x1b[2J")
    # A broken hand-edited value is an error, never silently "trust nobody/everybody".
    git(m, "config", "--add", "jobs.trust", "not-a-nid")
    assert "jobs.trust" in user_error(m, "status", sha)


@pytest.mark.slow
def test_with_no_policy_every_node_counts_and_it_is_said_once(project: Project) -> None:
    sha = project.publish(DEFS, "ci: jobs, and nobody says whose runs count")
    project.record("mallory", sha, "build", "succeeded")
    project.record("mallory", sha, "test", "succeeded")
    m = project.maintainer()
    text = gj(m, "status", sha)
    assert text.code == 0 and text.out.count("no policy") == 1 and "every node counts" in text.out
    assert "not counted" not in text.out
    # One locally trusted node makes a policy of its own: the stranger stops counting.
    ok(m, "trust", "add", project.nids["alice"])
    assert status(m, sha)[0] == 8


# -- the policy itself ---------------------------------------------------------------------------
def test_a_policy_that_does_not_validate_is_an_error_listing_every_problem(project: Project) -> None:
    alice = project.nids["alice"]
    bad = (
        DEFS + f'\n[policy]\nnodes = {{ "{alice}" = "a\\u001b[31m", "z6Mkbogus" = "b" }}\n'
        'quorum = 0\nrequired = ["../x"]\nvoters = []\n'
    )
    project.publish(bad, "ci: a bad policy")
    m = project.maintainer()
    err = user_error(m, "status")
    for part in ("control", "z6Mkbogus", "quorum", "required[0]", "policy.voters"):
        assert part in err, (part, err)
    assert "\x1b" not in err
    # jobs.policyRef picks another ref; a missing one is an error, not "no policy".
    git(m, "config", "jobs.policyRef", "refs/heads/nope")
    assert "jobs.policyRef" in user_error(m, "status")
    git(project.upstream, "checkout", "-q", "-b", "ci-policy", "main~1")
    git(project.upstream, "push", "-q", "origin", "ci-policy")
    git(m, "fetch", "-q", "origin")
    git(m, "config", "jobs.policyRef", "origin/ci-policy")
    assert gj(m, "trust", "list").out.startswith("no policy at refs/remotes/origin/ci-policy")


# -- watch, sync -----------------------------------------------------------------------------
@pytest.mark.slow
def test_watch_with_sync_fetches_before_its_first_look_and_timeout_ends_a_wait(project: Project) -> None:
    alice = project.nids["alice"]
    sha = project.publish(DEFS + policy_toml({alice: "alice"}), "ci")
    m = project.maintainer()
    project.record("alice", sha, "build", "succeeded")
    project.record("alice", sha, "test", "succeeded")
    # Nothing local yet; a long interval: only a fetch before the first look can see the pass.
    started = time.monotonic()
    r = gj(m, "status", sha, "--watch", "--sync", "origin", "--interval", "60", "--json")
    assert r.code == 0 and time.monotonic() - started < 30, r
    # A required job nobody runs: --timeout ends the wait, pending (8), with one line.
    other = project.publish(DEFS + policy_toml({alice: "alice"}) + "#\n", "ci: again")
    git(m, "fetch", "-q")
    r = gj(m, "status", other, "--watch", "--interval", "0.2", "--timeout", "1")
    assert r.code == 8 and r.err.startswith("timed out after 1s") and "expected" in r.out
    assert "--timeout goes with --watch" in user_error(m, "status", "--timeout", "5")


@pytest.mark.slow
def test_a_node_set_to_fetch_trusted_nodes_only_never_takes_a_strangers_refs(project: Project) -> None:
    alice, mallory = project.nids["alice"], project.nids["mallory"]
    sha = project.publish(DEFS + policy_toml({alice: "alice"}), "ci")
    project.record("alice", sha, "build", "succeeded")
    project.record("mallory", sha, "build", "failed")
    path = project.clone("carol")
    git(path, "config", "jobs.fetch", "trusted")
    report = ok(path, "sync", "--json").json
    assert report["fetch"] == "trusted" and report["skipped"] == 1
    assert {u["nid"] for u in report["fetched"]} == {alice}
    refs = git(path, "for-each-ref", "--format=%(refname)", "refs/namespaces/")
    assert alice in refs and mallory not in refs
    assert "untrusted refs skipped 1" in ok(path, "sync").out
    git(path, "config", "jobs.fetch", "all")
    assert {u["nid"] for u in ok(path, "sync", "--json").json["fetched"]} == {mallory}
    git(path, "config", "jobs.fetch", "friends")
    assert "jobs.fetch" in user_error(path, "sync")


@pytest.mark.slow
def test_library_policy_and_gate_match_the_cli(project: Project) -> None:
    import jobs

    alice, mallory = project.nids["alice"], project.nids["mallory"]
    sha = project.publish(DEFS + policy_toml({alice: "alice-linux"}), "ci")
    project.record("alice", sha, "build", "succeeded")
    project.record("mallory", sha, "test", "succeeded")
    m = project.maintainer()
    store = jobs.Jobs.open(m)
    policy = store.policy()
    assert policy.trusts(alice) and not policy.trusts(mallory) and policy.name_of(alice) == "alice-linux"
    assert policy.requesters == () and policy.source is not None  # nobody unless named
    gate = store.status(sha)
    assert (gate.outcome, gate.expected, gate.exit_code) == ("pending", ["test"], 8)
    assert [c.node for c in gate.not_counted()] == [mallory]
    shown = gj(m, "status", sha, "--json").json
    assert "progress" in shown  # the CLI adds where each node stands; the verdict is the library's
    assert gate.to_json() == {k: v for k, v in shown.items() if k != "progress"}
    assert store.status(sha, all_nodes=True).outcome == "succeeded"
    explicit = jobs.Policy.none()
    assert store.status(sha, policy=explicit).outcome == "succeeded"


def test_requesters_are_only_those_the_policy_names() -> None:
    import jobs
    from jobs.policy import parse_policy

    a, b = (cob.Signer.generate().nid for _ in range(2))
    p = parse_policy({"nodes": {a: "a"}}, "test")
    assert p.requesters == () and not p.may_request(a) and not p.may_request(b)
    assert p.with_local({b: ""}).requesters == ()  # local trust makes no requester either
    q = parse_policy({"nodes": {a: "a"}, "requesters": [f"did:key:{b}"]}, "test")
    assert q.requesters == (b,) and not q.may_request(a)
    assert jobs.Policy.none().requesters == () and not jobs.Policy.none().may_request(a)


def test_trust_has_help_with_examples(tmp_path: Path) -> None:
    out = ok(tmp_path, "trust", "--help").out
    assert "examples:" in out and "jobs.policyRef" in out and "trust add" in out
