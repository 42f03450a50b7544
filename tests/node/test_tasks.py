"""A node's tasks: named preflights and workers, the node's own and those given from Python.

The node runs in-process (a thread) against a real bare remote, runs real jobs, and writes its
real ``node.json``; the tasks given are plain functions wrapped by ``jobs.node.tasks``.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import cob
import jobs
from jobs.node.daemon import Node, PreflightError
from jobs.node.logs import state_dir
from jobs.node.tasks import Preflight, Worker, preflight, worker
from tests.conftest import git, init_repo
from tests.node.test_node_daemon import wait_for
from tests.node.test_node_work import commit_defs, new_key, reasons


@dataclass
class Setup:
    path: Path
    hub: Path
    signer: cob.Signer
    sha: str


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    path = tmp_path / "node"
    init_repo(path)
    sha = commit_defs(path, '[jobs.build]\nrun = "echo built"\n')
    hub = tmp_path / "hub.git"
    git(tmp_path, "clone", "-q", "--bare", str(path), str(hub))
    git(path, "remote", "add", "origin", str(hub))
    signer, _ = new_key(tmp_path / "node.key")
    return Setup(path, hub, signer, sha)


@pytest.fixture
def running() -> Iterator[list[tuple[Node, threading.Thread]]]:
    started: list[tuple[Node, threading.Thread]] = []
    yield started
    for node, thread in started:  # never leave a node thread behind
        node.stop.set()
        thread.join(timeout=60)


def start(node: Node, running: list[tuple[Node, threading.Thread]]) -> list[int]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(node.run()), daemon=True)
    thread.start()
    running.append((node, thread))
    return result


def test_a_worker_added_from_python_runs_on_its_interval_and_its_failure_leaves_the_others_running(
    setup: Setup, running: list[tuple[Node, threading.Thread]]
) -> None:
    ticks: list[float] = []
    checked: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom on purpose")

    stream = io.StringIO()
    node = Node(
        str(setup.path),
        setup.signer,
        [str(setup.hub)],
        interval=0.5,
        stream=stream,
        workers=[
            worker("ticker", lambda: ticks.append(time.monotonic()), 0.05),
            worker("broken", broken, 0.05),
        ],
        preflights=[preflight("custom", lambda: checked.append("custom"))],
    )
    assert isinstance(node.workers[0], Worker) and isinstance(node.preflights[0], Preflight)
    result = start(node, running)
    store = jobs.Jobs.open(setup.path)

    def settled() -> bool:
        broken_status = node.status.get("worker:broken")
        return (
            reasons(store, setup.sha, setup.signer.nid) == {"build": ["succeeded"]}
            and broken_status is not None
            and broken_status.failures >= 2
            and len(ticks) >= 20
        )

    wait_for(settled, timeout=60, what="the job, the ticker and the broken worker", log=stream.getvalue)
    assert checked == ["custom"]  # the given preflight ran, once, before any work
    # its own interval: the ticker ran far more often than the node's heartbeat (0.5 s)
    assert node.status["worker:ticker"].runs >= 3 * node.status["worker:heartbeat"].runs
    assert node.status["worker:ticker"].failures == 0
    wait_for(
        lambda: "worker:broken" in json.loads((state_dir(store.repo) / "node.json").read_text())["workers"],
        what="node.json to list the given workers",
    )
    beat = json.loads((state_dir(store.repo) / "node.json").read_text())
    assert beat["workers"]["worker:broken"]["last_error"] == "boom on purpose"
    assert beat["workers"]["worker:broken"]["failures"] >= 1 and "worker:ticker" in beat["workers"]
    assert {"worker:work", "worker:sync:" + str(setup.hub), "worker:heartbeat"} <= set(beat["workers"])
    log = stream.getvalue()
    assert "worker:broken error (degraded policy" in log and "boom on purpose" in log
    assert "Traceback" not in log
    node.stop.set()
    running[0][1].join(timeout=60)
    assert result == [0] and "stopped cleanly" in stream.getvalue()


def test_a_failing_preflight_given_from_python_stops_the_node_before_any_work(
    setup: Setup, running: list[tuple[Node, threading.Thread]]
) -> None:
    def refuse() -> None:
        raise RuntimeError("the licence server is down\nmore detail")

    ran: list[str] = []
    node = Node(
        str(setup.path),
        setup.signer,
        [str(setup.hub)],
        interval=0.1,
        stream=io.StringIO(),
        preflights=[preflight("licence", refuse)],
        workers=[worker("never", lambda: ran.append("x"))],
    )
    with pytest.raises(PreflightError) as err:
        node.run()
    assert str(err.value) == "preflight:licence: the licence server is down"
    assert ran == [] and reasons(jobs.Jobs.open(setup.path), setup.sha, setup.signer.nid) == {}
    # nothing was held: the same node starts once the check passes
    node.preflights = [preflight("licence", lambda: None)]
    result = start(node, running)
    wait_for(lambda: ran != [], what="the given worker", log=node.stream.getvalue)  # type: ignore[attr-defined]
    node.stop.set()
    running[0][1].join(timeout=60)
    assert result == [0]


@pytest.mark.parametrize(
    ("workers", "says"),
    [
        ([worker("work", lambda: None)], "worker:work is the name of one of the node's own tasks"),
        ([worker("sync:origin", lambda: None)], "worker:sync:origin is the name of one of the node's own"),
        ([worker("a", lambda: None), worker("a", lambda: None)], "two tasks are named worker:a"),
        ([worker("bad name", lambda: None)], "must look like worker:NAME"),
        ([worker("slow", lambda: None, interval=0)], "interval must be a positive number"),
    ],
)
def test_tasks_with_bad_or_taken_names_stop_the_node_before_any_work(
    setup: Setup, workers: list[Worker], says: str
) -> None:
    node = Node(str(setup.path), setup.signer, [str(setup.hub)], stream=io.StringIO(), workers=workers)
    with pytest.raises(PreflightError, match=says):
        node.run()
    assert reasons(jobs.Jobs.open(setup.path), setup.sha, setup.signer.nid) == {}
