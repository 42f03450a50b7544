"""Every flag of `git jobs status` works with every view, or is refused with one clear line.

The views: one commit (the default), ``--watch``, ``--branch B`` and a range ``A..B``; ``--json``
goes with each. Each (view, flag) pair is run through the installed CLI against a real bare hub
where a stranger (untrusted) recorded a pass of ``test`` and a failure of ``lint``: so
``--sync`` shows whether the fetch happened (the reader starts with no job at all) and
``--all-nodes`` whether the stranger's runs were counted (the verdict turns ``failed``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clirunner import gj, ok, user_error
from tests.conftest import git
from tests.jobs.test_trust import Project, policy_toml

DEFS = """\
[jobs.test]
run = "true"

[jobs.lint]
run = "true"
"""

VIEWS: dict[str, list[str]] = {
    "commit": [],
    "watch": ["--watch", "--interval", "0.2", "--timeout", "1"],
    "branch": ["--branch", "main"],
    "range": ["HEAD~1..main"],
}
FLAGS: dict[str, list[str]] = {
    "sync": ["--sync", "origin"],
    "all-nodes": ["--all-nodes"],
    "interval": ["--interval", "0.1"],
    "timeout": ["--timeout", "1"],
    "fail-fast": ["--fail-fast"],
    "limit": ["--limit", "1"],
    "page": ["--page", "1"],
}
WATCH_ONLY = {"interval", "timeout", "fail-fast"}
BRANCH_ONLY = {"limit", "page"}


def refusal(view: str, flag: str) -> str | None:
    """The documented matrix (docs/CLI.md): why ``flag`` is refused in ``view``, or None."""
    if flag in WATCH_ONLY and view != "watch":
        return f"--{flag} goes with --watch"
    if flag in BRANCH_ONLY and view not in ("branch", "range"):
        return f"--{flag} goes with --branch B or a range A..B"
    return None


class World:
    def __init__(self, project: Project, fresh: Path, synced: Path) -> None:
        self.project, self.fresh, self.synced = project, fresh, synced
        self.stranger = project.nids["mallory"]

    def reader(self, tmp: Path, *, synced: bool) -> Path:
        """A copy of a maintainer's clone: with every node's jobs fetched, or none at all."""
        dest = tmp / "reader"
        shutil.copytree(self.synced if synced else self.fresh, dest, symlinks=True)
        return dest


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("flags")
    home = tmp / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        "[user]\n\tname = T\n\temail = t@example.invalid\n[init]\n\tdefaultBranch = main\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "NO_COLOR": "1",
        }.items():
            mp.setenv(k, v)
        mp.delenv("GIT_JOBS_KEY", raising=False)
        project = Project(tmp, ("alice", "mallory"))
        sha = project.publish(DEFS + policy_toml({project.nids["alice"]: "alice"}), "ci: alice")
        project.record("mallory", sha, "test", "succeeded")
        project.record("mallory", sha, "lint", "failed")
        fresh = tmp / "fresh"
        git(tmp, "clone", "-q", str(project.hub), str(fresh))
        synced = tmp / "synced"
        git(tmp, "clone", "-q", str(project.hub), str(synced))
        ok(synced, "sync")
        yield World(project, fresh, synced)


def _runs(value: dict[str, Any], view: str) -> list[dict[str, Any]]:
    status = value["commits"][0] if view in ("branch", "range") else value
    return [r for j in status["jobs"] for r in j["latest"]]


def _outcome(value: dict[str, Any], view: str) -> str:
    return str(value["commits"][0]["outcome"] if view in ("branch", "range") else value["outcome"])


@pytest.mark.slow
@pytest.mark.parametrize("flag", list(FLAGS))
@pytest.mark.parametrize("view", list(VIEWS))
def test_every_flag_works_with_every_view_or_is_refused(
    world: World, tmp_path: Path, view: str, flag: str
) -> None:
    reader = world.reader(tmp_path, synced=flag != "sync")
    args = ["status", *VIEWS[view], *FLAGS[flag], "--json"]
    why = refusal(view, flag)
    if why is not None:
        assert user_error(reader, *args) == f"error: {why}"
        return
    r = gj(reader, *args)
    listing = view in ("branch", "range")
    assert r.code != 2, r
    value = r.json
    if flag == "sync":  # the reader had no job: what it shows came from the hub
        assert any(run["node"] == world.stranger and not run["counted"] for run in _runs(value, view)), r
        assert _outcome(value, view) == "pending"
        assert r.code == (0 if listing else 8)
    elif flag == "all-nodes":  # the stranger's failure of lint counts now
        assert _outcome(value, view) == "failed"
        assert all(run["counted"] for run in _runs(value, view))
        assert r.code == (0 if listing else 1)
    elif flag == "limit":  # the branch has 2 commits, the range 1
        assert len(value["commits"]) == 1 and value["more"] is (view == "branch") and value["per_page"] == 1
    elif flag == "page":
        assert value["page"] == 1 and len(value["commits"]) == (2 if view == "branch" else 1)
    else:  # a --watch flag with --watch: the verdict stays pending, --timeout ends it
        assert r.code == 8 and value["outcome"] == "pending" and "timed out after 1s" in r.err


@pytest.mark.slow
def test_text_branch_view_syncs_and_counts_every_node(world: World, tmp_path: Path) -> None:
    reader = world.reader(tmp_path, synced=False)
    plain = ok(reader, "status", "--branch", "main")
    assert plain.out.splitlines()[0].endswith("pending  2 expected")  # nothing fetched here
    shown = ok(reader, "status", "--branch", "main", "--sync", "origin", "--all-nodes")
    first = shown.out.splitlines()[0]
    assert "failed" in first and "1 failed, 1 succeeded" in first, shown
    counted_apart = ok(reader, "status", "HEAD~1..main")
    assert "2 expected" in counted_apart.out.splitlines()[0]


NO_WATCH = "--watch follows one commit; it does not combine with --branch or a range"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--branch", "main", "HEAD"], "--branch main lists a branch; give REV or --branch, not both"),
        pytest.param(["--branch", "main", "--watch"], NO_WATCH, marks=pytest.mark.slow),
        pytest.param(["HEAD~1..main", "--watch"], NO_WATCH, marks=pytest.mark.slow),
        pytest.param(
            ["--watch", "--interval", "0"],
            "--interval must be a number of seconds from 0 to 86400, not 0.0",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["--watch", "--timeout", "nan"],
            "--timeout must be a number of seconds from 0 to 604800, not nan",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["--branch", "main", "--limit", "0"],
            "a page holds 1 to 200 commits, not 0",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["--branch", "main", "--page", "0"],
            "page 0 is out of range (at most 100000 commits are walked)",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_conflicting_or_bad_flags_are_one_line(
    world: World, tmp_path: Path, args: list[str], message: str
) -> None:
    reader = world.reader(tmp_path, synced=True)
    assert user_error(reader, "status", *args) == f"error: {message}"
    assert user_error(reader, "status", *args, "--json") == f"error: {message}"
