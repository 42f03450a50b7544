"""Where each node stands on each job of a commit: queued, running, retrying, … (``status --json``).

The ledger says what each node *did*; with the commit's own definitions (its ``needs`` and
``retry``) the same :func:`~.work.assess` a node plans with tells what it will do next. So any
replica can show, per node, which jobs are still queued there, which run right now, and which
failed but will be retried (and when) — without asking the node. Nodes are those with a run
of this commit, plus this node (for which an untouched job is ``queued`` here).
A node's own crash-recovery bookkeeping is local, so for another node a run the crash recovery
ended may show as ``retrying`` where that node itself holds it.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from ..errors import DefinitionError
from ..model import Job
from ..requests import Reruns
from ..spec.definitions import Definitions, load_definitions
from ..store import Jobs
from .plan import Action, PlanItem, assess

# A plan action as a person reads a commit's progress on a node.
PROGRESS = {
    "run": "queued",
    "skip": "queued",
    "blocked": "queued",
    "wait": "retrying",
    "running": "running",
    "done": "succeeded",
    "exhausted": "failed",
    "held": "held",
    "skipped": "skipped",
    "reused": "reused",
}


def state(item: PlanItem) -> str:
    """``queued`` … ``skipped``; a failed job whose next attempt is due now is ``retrying``."""
    if item.action == Action.RUN and item.attempts > 0:
        return "retrying"
    return PROGRESS.get(item.action, item.action)


def _expanded(defs: Definitions, every: list[Job], nid: str) -> Definitions:
    """``defs`` with each dynamic matrix expanded by ``nid``'s own values (fanout.py)."""
    from .fanout import expand_dynamic
    from .values import values_of

    by_name = {j.name: j for j in every}
    return expand_dynamic(defs, lambda name: values_of(by_name[name], nid) if name in by_name else None)[0]


def node_progress(
    jobs: Jobs,
    commit: str,
    me: str | None = None,
    now: float | None = None,
    requesters: Collection[str] = (),
) -> dict[str, Any]:
    """``{nid: {job name: {state, attempts, max_attempts, not_before}}}`` for one commit
    (``requesters``: whose reruns give fresh attempts, besides each node's own key's)."""
    try:
        defs = load_definitions(jobs.repo, commit)
    except DefinitionError:
        return {}  # no commit here, or definitions no node can run: nothing is in progress
    if defs is None:
        return {}
    every = jobs.find_by_commit(commit)
    nodes = {nid for j in every for nid in j.runs()} | ({me} if me else set())
    out: dict[str, Any] = {}
    fresh = Reruns(jobs.repo, requesters)  # as the node counts its runs after a rerun
    for nid in sorted(nodes):
        mine = _expanded(defs, every, nid)  # a dynamic matrix as this node's values expand it
        found = [j for j in every if mine.get(j.name) is not None]
        plan = assess(mine, {j.name: fresh(j, nid) for j in found}, now or time.time())
        out[nid] = {
            name: {
                "state": state(item),
                "attempts": item.attempts,
                "max_attempts": item.max_attempts,
                "not_before": item.not_before,
            }
            for name, item in plan.items()
        }
    return out
