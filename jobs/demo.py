"""The demo behind `git jobs demo`: three nodes, one hub, a few commits — all on this machine.

A new user's first command must work on a fresh machine with nothing but Python and git: no
server, no network, no key of their own. So everything lives in one directory: a project
repository with a few commits, a bare *hub* repository (what a forge would be), and three
simulated CI nodes — alice, bob and carol — each a clone of the hub with its own freshly
generated key. They create jobs, start and finish runs with a mix of outcomes, and sync through
the hub by path; at the end every node holds the same state for every job, which is the point
of the whole design. The function returns the data; the CLI prints it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pygit2
import uuid6

import cob

from .gate import GateStatus
from .logs import publish as publish_log
from .model import Reason
from .store import JobMut, Jobs
from .summary import job_json

NODE_NAMES = ("alice", "bob", "carol")

_FILES = (
    ("Start the parser", "parser.py", "def parse(text):\n    return text.split()\n"),
    ("Handle empty input", "parser.py", "def parse(text):\n    return text.split() if text else []\n"),
    ("Add a command line", "cli.py", "import sys\nfrom parser import parse\nprint(parse(sys.argv[1]))\n"),
)


class DemoError(Exception):
    """The demo could not set up its directory (it exists and is not empty, or is unwritable)."""


@dataclass(frozen=True, slots=True)
class DemoNode:
    name: str
    nid: str
    path: Path
    key: Path


@dataclass(slots=True)
class DemoResult:
    """What the demo built: where, which nodes, and each commit's status as alice sees it."""

    directory: Path
    hub: Path
    nodes: list[DemoNode]
    commits: list[tuple[str, str]]  # (sha, subject), oldest first
    statuses: list[GateStatus] = field(default_factory=list)
    converged: bool = False

    def to_json(self) -> dict[str, Any]:
        subjects = dict(self.commits)
        return {
            "directory": str(self.directory),
            "hub": str(self.hub),
            "nodes": [
                {"name": n.name, "nid": n.nid, "path": str(n.path), "key": str(n.key)} for n in self.nodes
            ],
            "commits": [{**s.to_json(), "subject": subjects.get(s.commit, "")} for s in self.statuses],
            "converged": self.converged,
        }


def _make_project(path: Path) -> list[tuple[str, str]]:
    """A small repository with a few commits on ``main``; returns (sha, subject), oldest first."""
    repo = pygit2.init_repository(str(path), initial_head="main")
    who = pygit2.Signature("Demo Maintainer", "maintainer@example.invalid")
    files: dict[str, str] = {}
    parents: list[Any] = []
    out = []
    for subject, name, content in _FILES:
        files[name] = content
        builder = repo.TreeBuilder()
        for fname, text in sorted(files.items()):
            builder.insert(fname, repo.create_blob(text.encode()), pygit2.GIT_FILEMODE_BLOB)
        oid = repo.create_commit("refs/heads/main", who, who, subject + "\n", builder.write(), parents)
        parents = [oid]
        out.append((str(oid), subject))
    repo.checkout_head(strategy=pygit2.GIT_CHECKOUT_FORCE)  # type: ignore[no-untyped-call]
    return out


def _prepare(directory: Path) -> None:
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise DemoError(f"demo directory {directory} exists and is not empty")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DemoError(f"cannot create demo directory {directory}: {e.strerror or e}") from None


class _Cast:
    """The demo's nodes (each a clone of the hub with its own key) and what they do."""

    def __init__(self, root: Path, hub: Path, log: Callable[[str], None]) -> None:
        self.hub = hub
        self.log = log
        self.counter = iter(range(1, 1000))
        self.nodes: list[DemoNode] = []
        self.stores: dict[str, Jobs] = {}
        for name in NODE_NAMES:
            path = root / name
            pygit2.clone_repository(str(hub), str(path))
            signer = cob.Signer.generate()
            key = signer.save(root / "keys" / name)
            repo = pygit2.Repository(str(path))
            repo.config["jobs.key"] = str(key)  # so `git jobs` inside the clone acts as this node
            self.stores[name] = Jobs.open(repo, signer)
            self.nodes.append(DemoNode(name, signer.nid, path, key))
            log(f"{name:<5}  node {signer.nid}")

    def work(self, node: str, commit: str, name: str, *outcomes: Reason | None) -> JobMut:
        """``node`` runs job ``name`` on ``commit`` once per outcome (None: still running).

        alice publishes her logs in Git, as a node does by default (`git jobs logs` reads them
        on every clone after a sync); bob and carol record where they publish theirs on the web.
        """
        store = self.stores[node]
        job = store.create(commit, name)
        for outcome in outcomes:
            run_id = uuid6.uuid7()
            nid = store.signer.nid if store.signer is not None else ""
            web = f"https://ci.{node}.example/logs/{next(self.counter)}"
            job.run(f"git-jobs://{nid}/{run_id}" if node == "alice" else web, run_id=run_id)
            if outcome is not None and node == "alice" and store.signer is not None:
                text = f"$ ./ci {name}\n{name} on {commit[:12]}: {outcome.value}\n".encode()
                blob = publish_log(store.repo, store.signer, run_id, text)
                status = 0 if outcome is Reason.SUCCEEDED else 1
                job.finish(run_id, outcome, log_blob=blob, exit_status=status)
            elif outcome is not None:
                job.finish(run_id, outcome)
            said = outcome.value if outcome is not None else "running"
            self.log(f"{node:<5}  {name:<5} on {commit[:12]}  {said}")
        return job

    def sync(self, node: str) -> None:
        report = self.stores[node].sync(str(self.hub))
        self.log(
            f"{node:<5}  sync with hub: fetched {len(report.fetched)}, pushed {len(report.pushed)}"
            f", jobs changed {len(report.changed)}"
        )


def _script(cast: _Cast, commits: list[str]) -> None:
    """Who runs what, and when they sync."""
    work, sync = cast.work, cast.sync
    c1, c2, c3 = commits
    ok, bad, err = Reason.SUCCEEDED, Reason.FAILED, Reason.ERROR
    # alice requests build and test on every commit and runs them all; one test fails.
    for commit in (c1, c2, c3):
        work("alice", commit, "build", ok)
    work("alice", c1, "test", ok)
    work("alice", c2, "test", bad)
    work("alice", c3, "test", ok)
    sync("alice")
    # bob picks up alice's jobs through the hub; his first build hits an infrastructure error
    # and the retry passes (the latest run is what counts).
    sync("bob")
    work("bob", c1, "build", err, ok)
    work("bob", c3, "test", ok)
    sync("bob")
    # carol adds a lint job, confirms the failing test, and is still running the newest test.
    sync("carol")
    work("carol", c2, "test", bad)
    work("carol", c3, "lint", ok)
    work("carol", c3, "test", None)
    sync("carol")
    for name in ("alice", "bob"):
        sync(name)


def run_demo(directory: str | os.PathLike[str], log: Callable[[str], None] = lambda _: None) -> DemoResult:
    """Build the demo in ``directory`` (new or empty) and return what happened.

    ``log`` receives one line per step (node, action, outcome), for narration.
    """
    root = Path(directory).resolve()
    _prepare(root)
    commits = _make_project(root / "project")
    hub = root / "hub.git"
    pygit2.clone_repository(str(root / "project"), str(hub), bare=True)
    log(f"project with {len(commits)} commits; bare hub at {hub}")
    cast = _Cast(root, hub, log)
    nodes = cast.nodes
    stores = cast.stores
    _script(cast, [sha for sha, _ in commits])
    result = DemoResult(root, hub, nodes, commits)
    result.statuses = [stores["alice"].status(sha) for sha, _ in reversed(commits)]
    views = [
        sorted((job_json(j) for j in Jobs.open(stores[n].repo).all()), key=lambda j: j["id"])
        for n in NODE_NAMES
    ]
    result.converged = all(v == views[0] for v in views)
    return result
