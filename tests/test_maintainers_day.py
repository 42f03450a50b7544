"""A maintainer's day, end to end: every verdict `git jobs status` gives must be right.

Through a bare hub (a path remote), with real processes and the installed CLI: a policy naming
two trusted nodes and the maintainer as the one requester; history from before CI; a good
commit with a flaky (not required) job; a regression; a contributor's branch that a stranger
"passes" and the maintainer then asks the nodes to build; two quick pushes; a trusted node
SIGKILLed mid-run. Each commit's verdict is checked where a maintainer reads it (exit code,
text, ``--json``), and at the end every replica gives the same verdicts.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.node.test_node_work import CLI, cli, new_key

from .conftest import git, init_repo

pytestmark = pytest.mark.slow

CHECK = """\
set -e
if [ -f slow ] && [ "$GIT_JOBS_NODE" = "$(cat slow)" ]; then
  echo $$ > "${PIDS:?}/$GIT_JOBS_RUN_ID"; echo "hanging"; exec sleep 120
fi
if [ -f regression ] && [ "$1" = "3.12" ]; then echo "assert 1 == 2"; exit 1; fi
echo "ok on python $1"
"""

FLAKY = """\
mark="${MARKS:?}/$GIT_JOBS_NODE"  # each node's first run ever fails
if [ -e "$mark" ]; then echo "passed this time"; exit 0; fi
touch "$mark"; echo "lost a race"; exit 1
"""

DEFS = """\
[policy]
nodes = {{ "{alice}" = "alice", "{bob}" = "bob" }}
requesters = ["{maintainer}"]
required = ["test"]
takeover = "2s"

[jobs.test]
run = "sh check.sh {{matrix.python}}"
matrix = {{ python = ["3.11", "3.12"] }}
retry = {{ max = 3, on = ["error", "timed_out"] }}
timeout = "8s"

[jobs.flaky]
run = "sh flaky.sh"
retry = {{ max = 2, on = ["failed"] }}
"""


@dataclass
class Day:
    tmp: Path
    hub: Path
    maintainer: Path
    keys: dict[str, Path] = field(default_factory=dict)
    nids: dict[str, str] = field(default_factory=dict)
    clones: dict[str, Path] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def gj(self, who: str, *args: str, path: Path | None = None) -> subprocess.CompletedProcess[str]:
        res = cli(path or self.clones[who], *args, key=self.keys[who], timeout=120)
        assert "Traceback" not in res.stderr, res.stderr
        return res

    def ok(self, who: str, *args: str, path: Path | None = None) -> subprocess.CompletedProcess[str]:
        res = self.gj(who, *args, path=path)
        assert res.returncode == 0, (args, res.stdout, res.stderr)
        return res

    def clone(self, who: str) -> Path:
        path = self.tmp / who
        git(self.tmp, "clone", "-q", str(self.hub), str(path))
        git(path, "config", "jobs.isolation", "none")  # the jobs use files the test watches
        git(path, "config", "jobs.lostGrace", "1s")
        for name in ("PIDS", "MARKS"):  # a job's environment is an allowlist: without these the
            git(path, "config", "--add", "jobs.passEnv", name)  # jobs wrote "/$GIT_JOBS_NODE"
        self.clones[who] = path
        return path

    def push(self, message: str, later: int = 0, **files: str | None) -> str:
        """The maintainer commits these files (None: delete) and pushes main; ``later``: the
        commit is dated that many seconds after the previous one (as if made that much later)."""
        for name, text in files.items():
            if text is None:
                git(self.maintainer, "rm", "-q", name)
            else:
                (self.maintainer / name).write_text(text)
                git(self.maintainer, "add", name)
        env = dict(os.environ)
        if later:
            when = f"@{int(git(self.maintainer, 'log', '-1', '--format=%ct')) + later} +0000"
            env.update(GIT_AUTHOR_DATE=when, GIT_COMMITTER_DATE=when)
        commit = ["git", "commit", "-q", "--allow-empty", "-m", message]
        subprocess.run(commit, cwd=self.maintainer, env=env, check=True, capture_output=True)
        git(self.maintainer, "push", "-q", "origin", "HEAD:main")
        return git(self.maintainer, "rev-parse", "HEAD").strip()

    def round(self, *nodes: str, extra: tuple[str, ...] = ("--follow", "origin:refs/heads/main")) -> None:
        """Each node: sync, work what it follows (or was asked), sync."""
        for who in nodes:
            self.ok(who, "sync", "origin")
            res = self.gj(who, "work", "any", "--comprehensive", *extra)
            assert res.returncode in (0, 1, 8), (res.stdout, res.stderr)  # 1: a job failed
            self.ok(who, "sync", "origin")

    def status(self, rev: str, who: str = "maintainer", sync: bool = True) -> tuple[int, dict[str, Any], str]:
        if sync:
            self.ok(who, "sync", "origin")
        res = self.gj(who, "status", rev, "--json")
        text = self.gj(who, "status", rev)
        assert res.returncode == text.returncode, (res.stdout, text.stdout)
        return res.returncode, json.loads(res.stdout), text.stdout

    def settle(self, rev: str, *nodes: str, timeout: float = 120) -> tuple[int, dict[str, Any], str]:
        """Rounds until the commit's verdict is final (bounded): pending never lasts for ever."""
        deadline = time.monotonic() + timeout
        while True:
            code, data, text = self.status(rev)
            if code != 8:
                return code, data, text
            assert time.monotonic() < deadline, f"{rev} still pending:\n{text}"
            self.round(*nodes)


@pytest.fixture
def day(tmp_path: Path) -> Iterator[Day]:
    hub = tmp_path / "hub.git"
    init_repo(hub, bare=True)
    maintainer = tmp_path / "maintainer"
    init_repo(maintainer)
    git(maintainer, "remote", "add", "origin", str(hub))
    d = Day(tmp_path, hub, maintainer)
    for who in ("maintainer", "alice", "bob", "stranger"):
        signer, key = new_key(tmp_path / f"{who}.key")
        d.keys[who], d.nids[who] = key, signer.nid
    d.clones["maintainer"] = maintainer
    git(maintainer, "config", "jobs.lostGrace", "1s")  # the reader's grace past a run's deadline
    for name in ("pids", "marks"):
        (tmp_path / name).mkdir()
    os.environ["PIDS"], os.environ["MARKS"] = str(tmp_path / "pids"), str(tmp_path / "marks")
    try:
        yield d
    finally:
        for proc in d.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        for pidfile in (tmp_path / "pids").iterdir():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
        os.environ.pop("PIDS", None)
        os.environ.pop("MARKS", None)


def _verdicts(data: dict[str, Any]) -> dict[str, str]:
    return {j["name"]: j["verdict"] for j in data["jobs"]}


def test_a_maintainers_day_every_verdict_is_right(day: Day) -> None:
    # History before CI: no definitions at all. Final, never pending.
    before = day.push("README", **{"README": "a library\n"})
    day.clone("alice"), day.clone("bob"), day.clone("stranger")
    code, data, text = day.status(before)
    assert (code, data["outcome"]) == (1, "none") and "no jobs defined" in text

    # CI arrives: a good commit. The flaky job fails once and passes on its retry: flaky, and
    # not required, so it never blocks; the gate is green.
    defs = DEFS.format(alice=day.nids["alice"], bob=day.nids["bob"], maintainer=day.nids["maintainer"])
    good = day.push("ci", **{".git-jobs.toml": defs, "check.sh": CHECK, "flaky.sh": FLAKY})
    code, data, text = day.settle(good, "alice", "bob")
    assert (code, data["outcome"]) == (0, "succeeded"), text
    passed = {"test (python=3.11)": "passed", "test (python=3.12)": "passed"}
    assert _verdicts(data) == {"flaky": "extra", **passed}
    assert "flaky (1 failed)" in text
    names = {c["node_name"] for j in data["jobs"] for c in j["latest"] if c["node"]}
    assert names and names <= {"alice", "bob"} and all(f" {n} " in text for n in names)  # by name

    # A regression on 3.12: a real failure. retry.on covers only infrastructure, so it is
    # failed at once (exit 1), not "retrying" for ever.
    bad = day.push("regress", regression="")
    code, data, text = day.settle(bad, "alice", "bob")
    assert (code, data["outcome"]) == (1, "failed"), text
    assert _verdicts(data)["test (python=3.12)"] == "failed"
    assert _verdicts(data)["test (python=3.11)"] == "passed"
    assert "retrying" not in text

    # A contributor's branch with the fix. A stranger runs it and signs a pass: not counted,
    # no node is "assigned", and the gate waits (8) — silence is never a pass.
    contrib = day.clones["stranger"]
    day.ok("stranger", "sync", "origin")
    git(contrib, "fetch", "-q", "origin")
    git(contrib, "checkout", "-q", "-b", "fix", "origin/main")
    git(contrib, "rm", "-q", "regression")
    git(contrib, "commit", "-q", "-m", "fix the regression")
    git(contrib, "push", "-q", "origin", "fix")
    fix = git(contrib, "rev-parse", "HEAD").strip()
    assert day.gj("stranger", "work", "any", "HEAD").returncode in (0, 8)  # its flaky job waits
    day.ok("stranger", "sync", "origin")
    git(day.maintainer, "fetch", "-q", "origin")
    code, data, text = day.status(fix)
    assert code == 8 and data["outcome"] == "pending", text
    assert all(not c["counted"] for j in data["jobs"] for c in j["latest"] if c["node"])
    assert "assigned to" not in text
    # The nodes follow main only: a round builds nothing of the branch.
    day.round("alice", "bob")
    assert day.status(fix)[0] == 8
    # The maintainer (the policy's requester) asks: the nodes build it, and it passes.
    day.ok("maintainer", "release", fix)
    day.ok("maintainer", "sync", "origin")
    code, data, text = day.status(fix)
    assert code == 8 and "assigned to" in text
    deadline = time.monotonic() + 120
    while code == 8:
        assert time.monotonic() < deadline, text
        day.round("alice", "bob", extra=("--requested",))
        code, data, text = day.status(fix)
    assert (code, data["outcome"]) == (0, "succeeded"), text

    # Two quick pushes, 3 s apart; the nodes look only once, at depth 1. Both get a verdict.
    first = day.push("fix on main", regression=None)
    second = day.push("docs", later=3, **{"NOTES": "more\n"})
    day.round("alice", "bob", extra=("--follow", "origin:refs/heads/main", "--depth", "1"))
    for sha in (first, second):
        code, data, text = day.settle(sha, "alice", "bob")
        assert (code, data["outcome"]) == (0, "succeeded"), text

    # A trusted node dies mid-run: alice's node hangs on every job of this commit and is
    # SIGKILLed once its run is on the hub. Its run turns lost after its deadline (8 s + 1 s
    # grace); bob takes the job over; the gate reaches a verdict without alice ever coming back.
    hang = day.push("hang on alice", slow=day.nids["alice"])
    env = dict(os.environ, GIT_JOBS_KEY=str(day.keys["alice"]))
    log = open(day.tmp / "alice.node.log", "ab")  # noqa: SIM115 - the child owns it
    alice = subprocess.Popen(
        [*CLI, "node", "--remote", "origin", "--follow", "refs/heads/main", "--interval", "0.2s"],
        cwd=day.clones["alice"],
        env=env,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    day.procs.append(alice)
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, (day.tmp / "alice.node.log").read_text()
        _, data, _ = day.status(hang)
        started = [c for j in data["jobs"] for c in j["latest"] if c["node"] == day.nids["alice"]]
        if any(c["state"] == "running" for c in started):
            break
        time.sleep(0.3)
    alice.send_signal(signal.SIGKILL)
    alice.wait(timeout=10)
    assert any((day.tmp / "pids").iterdir())  # the job that hangs (the teardown kills it)
    code, data, text = day.settle(hang, "bob", timeout=120)
    assert (code, data["outcome"]) == (0, "succeeded"), text
    shown = [
        c
        for j in data["jobs"]
        if j["name"].startswith("test")
        for c in j["latest"]
        if c["node"] == day.nids["alice"]
    ]
    assert shown and all(c["state"] in ("retrying", "lost") for c in shown), shown
    assert any(
        c["node"] == day.nids["bob"] and c["reason"] == "succeeded" for j in data["jobs"] for c in j["latest"]
    )

    # Every replica gives the same verdicts: the maintainer, bob, and a fresh clone of the hub.
    fresh = day.tmp / "fresh"
    git(day.tmp, "clone", "-q", str(day.hub), str(fresh))
    day.clones["fresh"], day.keys["fresh"] = fresh, day.keys["stranger"]
    # No node runs any more: one sync per replica brings it all; the maintainer's verdicts are
    # read once and each replica's must equal them.
    shas = (before, good, bad, fix, first, second, hang)
    mine = {sha: day.status(sha, sync=i == 0)[:2] for i, sha in enumerate(shas)}
    for who in ("fresh", "bob"):
        git(day.clones[who], "config", "jobs.lostGrace", "1s")
        for i, sha in enumerate(shas):
            theirs = day.status(sha, who, sync=i == 0)[:2]
            assert (mine[sha][0], mine[sha][1]["outcome"]) == (theirs[0], theirs[1]["outcome"]), (who, sha)
