"""The node's periodic workers beyond its work: ``worker:schedule`` and ``worker:notify``.

Each is a body for :func:`.tasks.worker` that keeps its own store (pygit2 repositories are not
shared across threads) and state between rounds: the scheduler's last ticks, the notifier's
last verdicts (kept in ``<gitdir>/git-jobs/notify-seen.json`` so a restart does not lose them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import paths
from ..gate import gate_status
from ..history import subject_of
from ..notify import Change, Watcher, notify_all
from ..spec.labels import node_labels
from ..store import Jobs
from .schedule import Scheduler

if TYPE_CHECKING:
    from .daemon import Node

MAX_NOTIFIED = 100  # commits the notifier looks at, newest first (as the node's progress keeps)
NOTIFY_SEEN = "notify-seen.json"  # the notify worker's last verdicts, for the next process


def scheduler(node: Node) -> Callable[[], None]:
    """``[schedule]`` of the policy ref: due schedules rerun jobs on the followed tips."""
    scheduler = Scheduler(node.clock)
    jobs: list[Jobs] = []

    def body() -> None:
        if not jobs:
            jobs.append(node._jobs())
        store = jobs[0]
        fired = scheduler.tick(
            store,
            node._tips(store),
            lambda line: node.log("worker:schedule", line),
            node.labels if node.labels is not None else node_labels(),
        )
        for f in fired:  # look at the commit again: its reruns are new work
            node._settled = {s for s in node._settled if s[0] != f.commit}

    return body


def notifier(node: Node) -> Callable[[], None]:
    """``jobs.notify``: the command runs when a worked-on commit's verdict changes."""
    jobs: list[Jobs] = []
    watchers: list[Watcher] = []

    def body() -> None:
        if not jobs:
            jobs.append(node._jobs())
            watchers.append(Watcher.load(paths.state_file(jobs[0].repo, NOTIFY_SEEN)))
        store, watcher = jobs[0], watchers[0]
        policy = store.policy()
        found = node._commits(store)[:MAX_NOTIFIED]
        why = {c.commit: c.source for c in found}
        changes = [
            Change(s, before, subject_of(store.repo, s.commit), why.get(s.commit))
            for s, before in watcher.look(gate_status(store, c.commit, policy) for c in found)
        ]
        if changes and node.notify:
            notify_all(
                node.notify, changes, node.notify_timeout, lambda line: node.log("worker:notify", line)
            )
        watcher.save(paths.state_file(store.repo, NOTIFY_SEEN))

    return body
