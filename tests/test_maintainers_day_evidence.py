"""A maintainer's day, the evidence half: what leaves the nodes must be right too.

The same hub, nodes and maintainer as test_maintainers_day (its helpers), with a pipeline:
`plan` writes structured outputs; `build` makes a wheel and publishes it; `cover` is a dynamic
matrix over the targets `plan` chose, with a `check` on the coverage each cell reports; `upload`
needs the wheel and a node secret. Through the installed CLI the maintainer fetches and verifies
the wheel, exports its attestation and verifies it offline with only the node's NID, and
reproduces a verdict from a bundle in an empty directory with no remote. A contributor's branch,
built on the maintainer's request, never sees the secret. Every verdict is checked in exit code,
text and ``--json``.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.clirunner import gj
from tests.conftest import git
from tests.test_maintainers_day import Day, _verdicts, day

__all__ = ["day"]  # the fixture

pytestmark = pytest.mark.slow

TOKEN = "pypi-AgEIcHlwaS5vcmcCJGE0ZjM5day"

PLAN = """\
echo "version=1.4.2" >> "$GIT_JOBS_OUTPUT"
echo "targets=$(cat targets)" >> "$GIT_JOBS_OUTPUT"
"""

BUILD = """\
mkdir -p dist
printf 'PK\\003\\004 the wheel of %s\\n' "$1" > "dist/pkg-$1-py3-none-any.whl"
echo "built $1"
"""

COVER = """\
c=91
if [ -f "coverage-$1" ]; then c=$(cat "coverage-$1"); fi
echo "coverage=$c" >> "$GIT_JOBS_OUTPUT"
echo "coverage on $1: $c%"
"""

UPLOAD = """\
ls dist
echo "uploading with token $PYPI_TOKEN"
if [ -n "$PYPI_TOKEN" ]; then echo "token=given" >> "$GIT_JOBS_OUTPUT"; fi
"""

# The contributor's upload tries to take the token out of the node (the jobs run unsandboxed
# here, so a file under $MARKS is where a leak would land).
STEAL = """\
printf '%s' "$PYPI_TOKEN" > "${MARKS:?}/stolen-$GIT_JOBS_NODE"
echo "stealing $PYPI_TOKEN"
"""

DEFS = """\
[policy]
nodes = {{ "{alice}" = "alice", "{bob}" = "bob" }}
requesters = ["{maintainer}"]
required = ["build", "cover", "upload"]
takeover = "2s"

[jobs.plan]
run = "sh plan.sh"

[jobs.build]
needs = ["plan"]
run = "sh build.sh {{needs.plan.outputs.version}}"
outputs = ["dist/"]
publish = true

[jobs.cover]
needs = ["plan"]
matrix = {{ target = "{{needs.plan.outputs.targets}}" }}
run = "sh cover.sh {{matrix.target}}"
check = 'output("coverage") >= 80'

[jobs.upload]
needs = ["build"]
run = "sh upload.sh"
secrets = ["PYPI_TOKEN"]
"""

WHEEL = "dist/pkg-1.4.2-py3-none-any.whl"


def _no_network(home: Path) -> dict[str, str]:
    """An empty home and no transport but local files: nothing could reach a network."""
    home.mkdir()
    return {"HOME": str(home), "GIT_ALLOW_PROTOCOL": "file", "XDG_CONFIG_HOME": str(home / ".config")}


def _latest(data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The counted latest runs of job NAME in a status --json."""
    (job,) = [j for j in data["jobs"] if j["name"] == name]
    return [c for c in job["latest"] if c["counted"]]


def _all_done(day: Day, rev: str, data: dict[str, Any], text: str) -> tuple[int, dict[str, Any], str]:
    """Rounds until no job of ``rev`` is left to run (bounded): a failed verdict is final at
    once, while the commit's other jobs may still be expected or running."""
    code, deadline = 1, time.monotonic() + 120
    while set(data["counts"]) - {"succeeded", "failed"}:
        assert time.monotonic() < deadline, f"{rev} still has jobs to run:\n{text}"
        day.round("alice", "bob")
        code, data, text = day.status(rev)
    return code, data, text


def _airgap(day: Day, name: str) -> Path:
    path = day.tmp / name
    path.mkdir()
    return path


def test_a_maintainers_day_the_evidence_is_right(day: Day) -> None:
    # A release commit: plan chooses two targets, the nodes expand `cover` over them. The
    # nodes clone the hub once it has main (the policy's ref), and hold the token.
    defs = DEFS.format(alice=day.nids["alice"], bob=day.nids["bob"], maintainer=day.nids["maintainer"])
    scripts = {"plan.sh": PLAN, "build.sh": BUILD, "cover.sh": COVER, "upload.sh": UPLOAD}
    good = day.push("ci", **{".git-jobs.toml": defs, "targets": "x86 arm\n", **scripts})
    (day.tmp / "token").write_text(TOKEN + "\n")
    for who in ("alice", "bob", "stranger"):
        day.clone(who)
    for who in ("alice", "bob"):
        git(day.clones[who], "config", "--add", "jobs.secret", f"PYPI_TOKEN=file:{day.tmp / 'token'}")
    trusted = {day.nids["alice"]: "alice", day.nids["bob"]: "bob"}
    # Before plan has run, `cover` is one job the gate expects: pending, never a pass.
    code, data, text = day.status(good)
    assert (code, data["outcome"]) == (8, "pending") and "cover" in data["expected"], text
    code, data, text = day.settle(good, "alice", "bob")
    assert (code, data["outcome"]) == (0, "succeeded"), text
    assert text.splitlines()[-1] == "succeeded: 4 succeeded", text
    cells = {"cover (target=x86)": "passed", "cover (target=arm)": "passed"}
    assert _verdicts(data) == {"plan": "extra", "build": "passed", "upload": "passed", **cells}, text
    assert sorted(data["required"]) == sorted(["build", "upload", *cells]), data["required"]
    assert data["counts"] == {"succeeded": 4}, data["counts"]  # the gate counts each cell
    assert all(f"{name} " in text or f"{name}:" in text for name in cells), text
    assert all(_latest(data, n) and _latest(data, n)[0]["node"] in trusted for n in (*cells, "build"))
    assert {c["values"]["coverage"] for n in cells for c in _latest(data, n)} == {"91"}
    show = json.loads(day.ok("maintainer", "show", f"{good}:cover", "--json").stdout)
    assert set(show["fanout"]) <= set(trusted) and show["fanout"], show
    assert all(sorted(cells) == sorted(v) for v in show["fanout"].values()), show

    # The wheel `build` published on one node: the maintainer fetches it, verified against the
    # signed finish, from whichever trusted node built it.
    (built,) = _latest(data, "build")
    builder = built["node"]
    wheel_dir = day.tmp / "wheel"
    got = day.ok("maintainer", "artifacts", f"{good}:build", "-o", str(wheel_dir))
    assert (wheel_dir / WHEEL).read_bytes() == b"PK\003\004 the wheel of 1.4.2\n"
    assert built["id"] in got.stderr and built["evidence"]["outputs"] in got.stderr, got.stderr
    as_json = json.loads(
        day.ok("maintainer", "artifacts", f"{good}:build", "-o", str(day.tmp / "w2"), "--json").stdout
    )
    assert (as_json["node"], as_json["run_id"], as_json["files"]) == (builder, built["id"], 1), as_json
    assert as_json["tree"] == built["evidence"]["outputs"]

    # The secret reached main's upload, whichever node ran it, and only redacted.
    (upload,) = _latest(data, "upload")
    assert upload["values"] == {"token": "given"} and upload["evidence"]["env"]["secrets"] == "PYPI_TOKEN"
    log = day.ok("maintainer", "logs", f"{good}:upload", "--node", upload["node"]).stdout
    assert "uploading with token [REDACTED]" in log and TOKEN not in log, log
    assert "pkg-1.4.2-py3-none-any.whl" in log  # the wheel reached it (published, or on its node)

    # The attestation of the wheel: exported on the maintainer's clone, verified offline.
    airgap = _airgap(day, "airgap")
    day.ok("maintainer", "attest", good, "--job", "build", "-o", str(airgap / "build.intoto.json"))
    env = _no_network(day.tmp / "airgap-home")
    checked = gj(
        airgap,
        *("attest", "--verify", "build.intoto.json", "--trusted", builder, "--outputs", str(wheel_dir)),
        **env,
    )
    assert checked.code == 0 and checked.line.startswith("verified: 1 subject(s) of job 'build'"), checked
    assert "1 output file(s) match" in checked.line and builder in checked.line
    verified = gj(airgap, "attest", "--verify", "build.intoto.json", "--trusted", builder, "--json", **env)
    assert verified.code == 0, verified
    assert (verified.json["verified"], verified.json["signer"], verified.json["commit"]) == (
        True,
        builder,
        good,
    )
    assert verified.json["subjects"][0]["name"] == WHEEL and verified.json["job"] == "build"
    statement = json.loads(
        base64.b64decode(json.loads((airgap / "build.intoto.json").read_bytes())["payload"])
    )
    assert statement["predicate"]["runDetails"]["metadata"]["invocationId"] == built["id"]
    other = next(nid for nid in trusted if nid != builder)
    refused = gj(airgap, "attest", "--verify", "build.intoto.json", "--trusted", other, **env)
    assert refused.code == 1 and "no valid signature" in refused.err and len(refused.err.splitlines()) == 1
    (wheel_dir / WHEEL).write_bytes(b"PK\003\004 a wheel swapped after the fact\n")
    swapped = gj(
        airgap,
        "attest",
        "--verify",
        "build.intoto.json",
        "--trusted",
        builder,
        "--outputs",
        str(wheel_dir),
        **env,
    )
    assert swapped.code == 1 and f"{WHEEL}: its sha256 is not the one attested" in swapped.err, swapped
    assert sorted(p.name for p in airgap.iterdir()) == ["build.intoto.json"]  # nothing written there

    # The release commit's bundle gives its verdict in an empty directory with no remote.
    _bundle_reproduces(day, good, "good", code=0, text=text, data=data)

    # The next commit adds a target, and arm's coverage drops: its run exits 0 and the check
    # fails it. The gate says failed (exit 1), and so does its bundle.
    low = day.push("more targets, less coverage", **{"targets": "x86 arm riscv\n", "coverage-arm": "72\n"})
    code, data, text = day.settle(low, "alice", "bob")
    assert (code, data["outcome"]) == (1, "failed"), text
    code, data, text = _all_done(day, low, data, text)  # failure wins at once; the rest still run
    assert (code, data["outcome"]) == (1, "failed"), text
    assert text.splitlines()[-1].startswith("failed"), text
    cells = {"cover (target=x86)": "passed", "cover (target=arm)": "failed", "cover (target=riscv)": "passed"}
    assert {n: v for n, v in _verdicts(data).items() if n.startswith("cover")} == cells, text
    assert data["counts"] == {"succeeded": 4, "failed": 1}, data["counts"]
    (arm,) = _latest(data, "cover (target=arm)")
    assert (arm["reason"], arm["exit"], arm["values"]) == ("failed", 0, {"coverage": "72"}), arm
    assert any("cover (target=arm)" in line and "failed" in line for line in text.splitlines()), text
    arm_log = day.ok("maintainer", "logs", f"{low}:cover (target=arm)", "--node", arm["node"]).stdout
    assert "check is false" in arm_log, arm_log
    _bundle_reproduces(day, low, "low", code=1, text=text, data=data)

    # A contributor's branch whose upload tries to take the token. The maintainer asks the
    # nodes to build it: it runs, without the secret, and says why in its log.
    contrib = day.clones["stranger"]
    git(contrib, "fetch", "-q", "origin")
    git(contrib, "checkout", "-q", "-b", "steal", good)
    (contrib / "upload.sh").write_text(STEAL)
    git(contrib, "commit", "-qam", "faster uploads")
    git(contrib, "push", "-q", "origin", "steal")
    theirs = git(contrib, "rev-parse", "HEAD").strip()
    git(day.maintainer, "fetch", "-q", "origin")
    day.ok("maintainer", "release", theirs)
    day.ok("maintainer", "sync", "origin")
    code, data, text = day.status(theirs)
    deadline = time.monotonic() + 120
    while code == 8:  # pending never lasts for ever
        assert time.monotonic() < deadline, text
        day.round("alice", "bob", extra=("--requested",))
        code, data, text = day.status(theirs)
    assert (code, data["outcome"]) == (0, "succeeded") and "succeeded" in text.splitlines()[-1], text
    (upload,) = _latest(data, "upload")
    assert upload["values"] is None and "secrets" not in (upload["evidence"]["env"] or {}), upload
    log = day.ok("maintainer", "logs", f"{theirs}:upload", "--node", upload["node"]).stdout
    assert "secrets not given (PYPI_TOKEN)" in log and TOKEN not in log, log
    stolen = list((day.tmp / "marks").glob("stolen-*"))
    assert stolen and all(p.read_text() == "" for p in stolen), stolen  # it ran, and got nothing

    # Nowhere on the hub is the token: not in a log, a value, an artifact or a change.
    every = subprocess.run(
        ["git", "cat-file", "--batch-all-objects", "--batch"], cwd=day.hub, capture_output=True, check=True
    ).stdout
    assert len(every) > 10_000 and TOKEN.encode() not in every

    # A fresh clone of the hub gives the same verdicts, the expanded cells included.
    fresh = day.tmp / "fresh"
    git(day.tmp, "clone", "-q", str(day.hub), str(fresh))
    day.clones["fresh"], day.keys["fresh"] = fresh, day.keys["stranger"]
    for i, sha in enumerate((good, low, theirs)):  # no node runs any more: one sync each
        (mine, mine_data, _), (other, other_data, _) = (
            day.status(sha, sync=i == 0),
            day.status(sha, "fresh", sync=i == 0),
        )
        assert (mine, _verdicts(mine_data)) == (other, _verdicts(other_data)), sha


def _bundle_reproduces(day: Day, rev: str, name: str, *, code: int, text: str, data: dict[str, Any]) -> None:
    """`bundle REV` on the maintainer's clone; `verify --bundle` in an empty directory, no remote."""
    made = day.ok("maintainer", "bundle", rev, "-o", str(day.tmp / f"{name}.bundle"))
    assert "node index(es)" in made.stderr, made.stderr
    empty = _airgap(day, f"empty-{name}")
    (empty / "e.bundle").write_bytes((day.tmp / f"{name}.bundle").read_bytes())
    env = _no_network(day.tmp / f"nohome-{name}")
    got = gj(empty, "verify", "--bundle", "e.bundle", rev, **env)
    assert got.code == code, got
    lines = [line.replace(" (you)", "") for line in text.splitlines()]
    assert got.out.splitlines()[: len(lines)] == lines, (got.out, text)
    assert got.out.splitlines()[len(lines)].startswith("evidence bundle: intact"), got.out
    as_json = gj(empty, "verify", "--bundle", "e.bundle", rev, "--json", **env)
    assert as_json.code == code, as_json
    mine = as_json.json
    assert (mine["commit"], mine["outcome"], mine["counts"]) == (rev, data["outcome"], data["counts"])
    assert _verdicts(mine) == _verdicts(data) and mine["bundle"]["problems"] == [], mine["bundle"]
    assert mine["bundle"]["attestations_verified"] >= 1, mine["bundle"]
    assert sorted(p.name for p in empty.iterdir()) == ["e.bundle"]  # nothing written where it ran
