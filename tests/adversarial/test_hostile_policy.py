"""Hostile hubs and peers against the trust policy and the logs (issue 26, items 3-6, 13, 16).

Each attack is replayed through the installed ``git-jobs`` against a real hub (a bare
repository reached by its path), with real node processes where the attack needs one; each is
now refused or bounded, the honest nodes' data stays intact and the refusal is reported.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.request
from pathlib import Path

import pytest

import jobs
from tests.clirunner import gj, ok
from tests.conftest import git
from tests.node.test_node_daemon import wait_for
from tests.node.test_node_requests import Hub, _passes, hub, policy
from tests.node.test_node_work import commit_defs, new_key, reasons

hub = hub  # the hub-and-maintainer fixture of test_node_requests

BUILD = "[jobs.build]\nrun = 'true'\n"


def _clone(hub: Hub, name: str) -> Path:
    """A node's clone of the hub as it is now (its origin/HEAD names the hub's main)."""
    path = hub.tmp / name
    git(hub.tmp, "clone", "-q", str(hub.hub), str(path))
    git(path, "config", "jobs.isolation", "none")  # markers and runs on the host are the point
    return path


def _trusted(path: Path) -> set[str]:
    return {t["nid"] for t in ok(path, "trust", "list", "--json").json["trusted"]}


# -- 3. only keys the policy names as requesters ask for work ------------------------------------
@pytest.mark.slow
def test_a_trusted_nodes_own_release_of_a_branch_it_follows_is_no_request(hub: Hub) -> None:
    """Node B (trusted, even a named requester) follows a contributor's branch and releases its
    jobs; node A follows only main and must not build that branch. Only B's person asking
    (`git jobs release`, a signed ask) makes A build it."""
    a, a_key = new_key(hub.tmp / "a.key")
    b, b_key = new_key(hub.tmp / "b.key")
    main = commit_defs(hub.maintainer, policy(a.nid, b.nid, requesters=[b.nid]) + BUILD)
    hub.push()
    git(hub.maintainer, "checkout", "-q", "-b", "feature")
    feature = commit_defs(hub.maintainer, BUILD + "# a contributor's change\n")
    hub.push("feature")
    a_path, b_path = _clone(hub, "a"), _clone(hub, "b")
    # B builds the branch it follows: its release is in the ledger, a plain (un-asked) one
    done = ok(b_path, "work", "any", "--follow", "refs/heads/feature", "--all", "--json", key=b_key)
    assert [c["commit"] for c in done.json["commits"]] == [feature], done
    ok(b_path, "sync", "origin", key=b_key)

    git(a_path, "config", "jobs.assignment", "all")  # B passed it already: A would leave it to B
    node = hub.start_node(a_path, a_key, "--follow", "refs/heads/main")
    wait_for(
        lambda: reasons(jobs.Jobs.open(a_path), main, a.nid) == {"build": ["succeeded"]},
        what="main on A",
        log=lambda: hub.log(a_path),
    )
    store = jobs.Jobs.open(a_path)
    [job] = store.find_by_commit(feature)
    assert b.nid in job.requests() and job.asks() == {}  # released by B, asked by nobody
    passes = _passes(a_path)
    wait_for(lambda: _passes(a_path) >= passes + 3, what="three more passes", log=lambda: hub.log(a_path))
    assert reasons(jobs.Jobs.open(a_path), feature, a.nid) == {"build": []}  # not run on A
    res = gj(a_path, "work", "any", "--requested", "--dry-run", "--json", key=a_key)
    assert res.code == 0 and res.json["commits"] == [], res

    # B's person asks: that is a request by a named requester, and A builds the branch
    ok(b_path, "release", feature, key=b_key)
    ok(b_path, "sync", "origin", key=b_key)
    wait_for(
        lambda: reasons(jobs.Jobs.open(a_path), feature, a.nid) == {"build": ["succeeded"]},
        what="the asked commit on A",
        log=lambda: hub.log(a_path),
    )
    hub.stop(node)
    assert f"requested by {b.nid}" in hub.log(a_path)
    assert reasons(jobs.Jobs.open(a_path), feature, b.nid) == {"build": ["succeeded"]}  # B's data intact


@pytest.mark.slow
def test_a_trusted_node_not_named_a_requester_asks_for_nothing(hub: Hub) -> None:
    a, a_key = new_key(hub.tmp / "a.key")
    commit_defs(hub.maintainer, policy(a.nid, hub.maintainer_nid) + BUILD)  # no requesters list
    hub.push()
    git(hub.maintainer, "checkout", "-q", "-b", "feature")
    feature = commit_defs(hub.maintainer, BUILD + "# asked\n")
    hub.push("feature")
    a_path = _clone(hub, "a")
    ok(hub.maintainer, "release", key=hub.maintainer_key)  # a trusted node's person asks
    note = gj(hub.maintainer, "rerun", feature, key=hub.maintainer_key)
    assert "it is not a requester here" in note.err
    ok(hub.maintainer, "sync", "origin", key=hub.maintainer_key)
    ok(a_path, "sync", "origin", key=a_key)
    git(a_path, "fetch", "-q", "origin")
    res = gj(a_path, "work", "any", "--requested", "--dry-run", "--json", key=a_key)
    assert res.code == 0 and res.json["commits"] == [], res
    assert ok(a_path, "trust", "list", "--json").json["requesters"] == []


# -- 4. revocation reaches a node that follows another branch ----------------------------------
@pytest.mark.slow
def test_a_node_following_release_reads_the_current_policy_every_pass(hub: Hub) -> None:
    signer, key = new_key(hub.tmp / "n.key")
    mallory = new_key(hub.tmp / "mallory.key")[0].nid
    commit_defs(hub.maintainer, policy(signer.nid, mallory) + BUILD)
    hub.push()
    git(hub.maintainer, "branch", "release")
    hub.push("release")
    path = _clone(hub, "n")
    assert mallory in _trusted(path)
    node = hub.start_node(path, key, "--follow", "refs/heads/release")
    wait_for(lambda: _passes(path) >= 2, what="two passes", log=lambda: hub.log(path))
    revoked = commit_defs(hub.maintainer, policy(signer.nid) + BUILD, "revoke mallory")
    hub.push()
    wait_for(lambda: mallory not in _trusted(path), what="the revocation", log=lambda: hub.log(path))
    assert git(path, "rev-parse", "refs/remotes/origin/main").strip() == revoked
    # a hub pusher forces main back before the revocation: the node keeps what it had seen
    git(hub.maintainer, "push", "-q", "-f", "origin", "HEAD~1:main")
    wait_for(lambda: "kept as it was" in hub.log(path), what="the refusal", log=lambda: hub.log(path))
    hub.stop(node)
    assert git(path, "rev-parse", "refs/remotes/origin/main").strip() == revoked
    assert mallory not in _trusted(path)


# -- 5. a rewound or deleted policy fails closed ------------------------------------------------
def _reviewer_with_a_stranger_pass(hub: Hub) -> tuple[Path, str, str]:
    """main gets a policy trusting alice; a stranger passes `build` of a commit on it. Returns
    (a reviewer's clone, the commit before the policy, the commit under review)."""
    alice = new_key(hub.tmp / "alice.key")[0].nid
    before = commit_defs(hub.maintainer, BUILD, "no policy yet")
    commit_defs(hub.maintainer, policy(alice) + BUILD, "policy")
    hub.push()
    review = commit_defs(hub.maintainer, policy(alice) + BUILD + "# change\n", "a change")
    git(hub.maintainer, "push", "-q", "origin", "HEAD:refs/heads/review")
    stranger = hub.tmp / "stranger"
    git(hub.tmp, "clone", "-q", str(hub.hub), str(stranger))
    _, skey = new_key(hub.tmp / "stranger.key")
    git(stranger, "config", "jobs.isolation", "none")
    ok(stranger, "work", "any", review, key=skey)  # the stranger's pass: succeeded
    ok(stranger, "sync", "origin", key=skey)
    reviewer = hub.tmp / "reviewer"
    git(hub.tmp, "clone", "-q", str(hub.hub), str(reviewer))
    ok(reviewer, "sync", "origin")
    assert gj(reviewer, "status", review).code == 8  # only a stranger passed: expected
    return reviewer, before, review


@pytest.mark.slow
def test_a_policy_rewound_on_the_hub_fails_closed_until_a_person_accepts(hub: Hub) -> None:
    reviewer, before, review = _reviewer_with_a_stranger_pass(hub)
    git(hub.maintainer, "push", "-q", "-f", "origin", f"{before}:main")  # the hub pusher's rewind
    git(reviewer, "fetch", "-q", "origin")  # a plain fetch takes the forced update
    line = gj(reviewer, "status", review)
    assert line.code == 2 and line.err.count("\n") == 1, line
    assert "policy refused" in line.err and "not a fast-forward" in line.err and "accept-policy" in line.err
    assert gj(reviewer, "status", review, "--json").code == 2
    assert gj(reviewer, "trust", "list").code == 2
    # the honest data is intact: the ledger still shows every run
    assert ok(reviewer, "list", "--json").json
    # a person who means it takes the policy ref as it is (here: no policy, everyone counts)
    ok(reviewer, "trust", "accept-policy")
    assert gj(reviewer, "status", review).code == 0


@pytest.mark.slow
def test_a_policy_removed_or_deleted_fails_closed(hub: Hub) -> None:
    reviewer, _, review = _reviewer_with_a_stranger_pass(hub)
    commit_defs(hub.maintainer, BUILD, "drop the policy")  # a fast-forward without [policy]
    hub.push()
    git(reviewer, "fetch", "-q", "origin")
    res = gj(reviewer, "status", review)
    assert res.code == 2 and "has no [policy]" in res.err, res
    # the policy branch deleted on the hub (and pruned here): still refused, never "no policy"
    git(hub.hub, "symbolic-ref", "HEAD", "refs/heads/review")
    git(hub.hub, "update-ref", "-d", "refs/heads/main")
    git(reviewer, "fetch", "-q", "--prune", "origin")
    git(reviewer, "checkout", "-q", "--detach")
    git(reviewer, "branch", "-q", "-D", "main")
    res = gj(reviewer, "status", review)
    assert res.code == 2 and "policy refused" in res.err, res
    # a policy that moves forward is taken as before
    fresh = hub.tmp / "fresh"
    git(hub.tmp, "clone", "-q", str(hub.hub), str(fresh))
    assert gj(fresh, "status", review).code == 8


@pytest.mark.slow
def test_the_policy_ref_moves_forward_normally(hub: Hub) -> None:
    reviewer, _, review = _reviewer_with_a_stranger_pass(hub)
    seen = json.loads((reviewer / ".git" / "git-jobs" / "policy-seen").read_text())["commit"]
    bob = new_key(hub.tmp / "bob.key")[0].nid
    later = commit_defs(hub.maintainer, policy(bob) + BUILD, "trust bob")
    hub.push()
    git(reviewer, "fetch", "-q", "origin")
    assert gj(reviewer, "status", review).code == 8
    now = json.loads((reviewer / ".git" / "git-jobs" / "policy-seen").read_text())["commit"]
    assert (seen, now) != (now, now) and now == later


# -- 6. a pull request cannot skip its own required check --------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    "pr_defs",
    [
        "[jobs.test]\nrun = 'true'\nif = 'false'\n",
        "[jobs.never]\nrun = 'true'\nif = 'false'\n[jobs.test]\nrun = 'true'\nneeds = ['never']\n",
    ],
    ids=["if-false", "unmeetable-needs"],
)
def test_a_pull_request_skipping_its_required_job_stays_expected(hub: Hub, pr_defs: str) -> None:
    node, key = hub.tmp / "maintainer", hub.maintainer_key
    git(node, "config", "jobs.isolation", "none")
    base = policy(hub.maintainer_nid, requesters=[hub.maintainer_nid])
    main = commit_defs(
        node, base + "[jobs.test]\nrun = 'true'\n" + "[jobs.docs]\nrun = 'true'\nif = 'changed(\"docs/*\")'\n"
    )
    hub.push()
    assert gj(node, "work", "any", main, key=key).code in (0, 1)  # 1: a job was skipped
    assert gj(node, "status", main).code == 0  # the maintainers' own skip (docs) still passes
    git(node, "checkout", "-q", "-b", "pr")
    pr = commit_defs(node, base + pr_defs, "skip the tests")
    assert gj(node, "work", "any", pr, key=key).code in (0, 1)
    assert "skipped" in reasons(jobs.Jobs.open(node), pr, hub.maintainer_nid)["test"]
    res = gj(node, "status", pr, "--json")
    assert res.code == 8, res
    assert "test" in res.json["expected"]
    [test] = [j for j in res.json["jobs"] if j["name"] == "test"]
    assert test["verdict"] == "expected" and test["latest"][0]["state"] == "skipped"


# -- 13. redaction comes before the cap -------------------------------------------------------
@pytest.mark.slow
def test_a_secret_cut_by_the_cap_is_never_published_in_halves(hub: Hub) -> None:
    _, key = new_key(hub.tmp / "n.key")
    token = "SECRET-" + secrets.token_hex(16)
    # one long line of the secret across the head's end, then enough to cap the log
    script = (
        f"printf 'pad\\n%.0s' $(seq 150); for i in $(seq 120); do printf '{token} '; done; echo; "
        "printf 'tail line\\n%.0s' $(seq 300)"
    )
    commit_defs(hub.maintainer, f'[jobs.t]\nrun = "{script}"\n')
    hub.push()
    path = _clone(hub, "n")
    git(path, "config", "jobs.logs.maxBytes", "4096")
    git(path, "config", "--add", "jobs.logs.redact", "SECRET-[0-9a-f]{32}")
    ok(path, "work", "any", key=key)
    ok(path, "sync", "origin", key=key)
    peer = hub.tmp / "peer"
    git(hub.tmp, "clone", "-q", str(hub.hub), str(peer))
    ok(peer, "sync", "origin")
    shown = ok(peer, "logs", "HEAD:t").out
    assert "log capped" in shown and "[REDACTED]" in shown
    pieces = {token[i : i + 6] for i in range(len(token) - 5)}
    assert not [p for p in pieces if p in shown], shown[:300]
    own = ok(path, "logs", "HEAD:t", key=key).out
    assert not [p for p in pieces if p in own]


def test_the_capture_redacts_a_secret_straddling_the_cut(tmp_path: Path) -> None:
    from jobs.node.capture import CappedLog

    token = b"SECRET-" + secrets.token_hex(16).encode()
    log = tmp_path / "log"
    with CappedLog(log, 4096, [re.compile(rb"SECRET-[0-9a-f]{32}")]) as capped:
        capped.write(b"x" * 2040 + token + b"\n" + b"y" * 2100 + b"\n")  # the cut is in the secret
    data = log.read_bytes()
    assert b"log capped" in data
    assert not [token[i : i + 5] for i in range(len(token) - 4) if token[i : i + 5] in data]


# -- 16. a log page renders a bounded window -------------------------------------------------
@pytest.mark.slow
def test_a_log_of_two_mebibytes_of_newlines_renders_a_bounded_page(hub: Hub) -> None:
    from tests.webhelpers import WebRepo, serving

    signer, key = new_key(hub.tmp / "n.key")
    commit_defs(hub.maintainer, "[jobs.t]\nrun = \"head -c 2097152 /dev/zero | tr '\\\\0' '\\\\n'\"\n")
    hub.push()
    path = _clone(hub, "n")
    ok(path, "work", "any", key=key)
    [job] = jobs.Jobs.open(path).find_by_commit(git(path, "rev-parse", "HEAD").strip())
    [(run_id, _)] = job.runs_of(signer.nid).items()
    repo = WebRepo(path, key, key, signer.nid, signer.nid, "", "")
    with serving(repo) as url:
        started = time.monotonic()
        with urllib.request.urlopen(f"{url}run-{job.id}-{run_id}.html", timeout=60) as r:
            page = r.read()
        took = time.monotonic() - started
        assert len(page) < 1_000_000, len(page)  # was 162 MB
        lines = re.findall(rb'id="L(\d+)"', page)
        assert 0 < len(lines) <= 1000
        last = int(lines[-1])
        assert last > 2_000_000  # the end of the log, where a failure is
        earlier = re.search(rb'href="(run-[^"]+-L(\d+)\.html)">earlier lines', page)
        assert earlier is not None, page[-2000:]
        with urllib.request.urlopen(url + earlier.group(1).decode(), timeout=60) as r:
            before = r.read()
        shown = [int(n) for n in re.findall(rb'id="L(\d+)"', before)]
        assert shown[0] == int(earlier.group(2)) and shown[-1] == int(lines[0]) - 1
        with urllib.request.urlopen(f"{url}run-{job.id}-{run_id}-L1.html", timeout=60) as r:
            first = r.read()
        assert b'id="L1"' in first and b"later lines" in first and len(first) < 1_000_000
    assert took < 30  # generous: a bound on work, not a benchmark (it was 16 s for the HTML alone)
