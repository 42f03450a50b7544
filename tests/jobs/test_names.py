"""Names everywhere: a node is called what `status` calls it.

`git jobs logs REV:JOB --node NAME` takes a trusted node's name from the policy or from this
person's local trust (`git jobs trust add … --name`), as `status` prints it; the web page and
the static report (`git jobs report`) show those names, not NIDs, and mark required jobs.
Through the installed CLI, a bare hub and two nodes that ran the job for real (`work any`).
"""

from __future__ import annotations

import re
from pathlib import Path

from jobs.web.views import short_nid
from tests.clirunner import gj, ok
from tests.jobs.test_trust import Project, policy_toml

DEFS = """\
[jobs.test]
run = "cat /proc/sys/kernel/random/uuid"
"""


def test_logs_status_web_and_report_call_nodes_by_name(tmp_path: Path) -> None:
    project = Project(tmp_path, ("alice", "bob"))
    alice, bob = project.nids["alice"], project.nids["bob"]
    sha = project.publish(DEFS + policy_toml({alice: "alice-linux"}), "ci: alice is trusted")
    for who in ("alice", "bob"):
        path, key = project.clone(who), project.keys[who]
        ok(path, "work", "any", sha, "--all", key=key)
        ok(path, "sync", key=key)
    m = project.maintainer()
    ok(m, "trust", "add", bob, "--name", "bobby")  # bob: trusted here only, by this name
    ok(m, "create", sha, "--name", "extra", key=project.keys["alice"])  # a job nothing requires

    status = gj(m, "status", sha)
    assert "alice-linux" in status.out and "bobby" in status.out, status

    by_nid = {nid: ok(m, "logs", f"{sha}:test", "--node", nid).out for nid in (alice, bob)}
    assert by_nid[alice] != by_nid[bob]  # each run printed its own random id
    assert ok(m, "logs", f"{sha}:test", "--node", "alice-linux").out == by_nid[alice]
    assert ok(m, "logs", f"{sha}:test", "--node", "bobby").out == by_nid[bob]
    assert ok(m, "logs", f"{sha}:test", "--node", alice[:12]).out == by_nid[alice]  # a prefix still works
    listed = ok(m, "list", "--node", "bobby", "--json").json
    assert [j["name"] for j in listed] == ["test"]
    nobody = gj(m, "logs", f"{sha}:test", "--node", "carol")
    assert nobody.code != 0 and len(nobody.err.strip().splitlines()) == 1 and "'carol'" in nobody.err
    ok(m, "trust", "add", bob, "--name", "alice-linux")  # two trusted nodes, one name
    twice = gj(m, "logs", f"{sha}:test", "--node", "alice-linux")
    assert twice.code == 2 and twice.err.strip() == (
        "error: 2 trusted nodes are named 'alice-linux': give a NID"
    ), twice
    ok(m, "trust", "add", bob, "--name", "bobby")

    out = tmp_path / "report"
    ok(m, "report", "--html", str(out), "--branch", "main")
    page = (out / f"commit-{sha}.html").read_text()
    for nid, name in ((alice, "alice-linux"), (bob, "bobby")):
        assert f'<span title="{nid}">{name}</span>' in page
        assert short_nid(nid) not in page  # the name, not the NID
    row = re.search(r"<tr><th>test .*?</tr>", page)
    assert row and 'class="st st-required">required<' in row.group(0), page
    extra = re.search(r"<tr><th>extra .*?</tr>", page)
    assert extra and "not required" in extra.group(0) and "st-required" not in extra.group(0)
    run_pages = sorted(out.glob("run-*.html"))
    assert run_pages and all(
        '">alice-linux</span>' in p.read_text() or '">bobby</span>' in p.read_text() for p in run_pages
    )
    node_page = (out / f"node-{alice}.html").read_text()
    assert "<h1>Node alice-linux <code" in node_page and "<title>node alice-linux" in node_page
