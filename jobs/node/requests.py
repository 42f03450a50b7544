"""Trusted requests: which signed ``release``/``rerun`` ops a node honours, and what they do.

A job's command is code from its commit, so a request is a reason to run only when its signer
may request work under this node's trust policy (:attr:`jobs.policy.Policy.requesters`: the
policy's ``requesters``, else its trusted nodes; with no policy, nobody). Two effects:

- **candidates**: a commit with a trusted ``release`` or ``rerun`` of one of its jobs may run
  here (:func:`jobs.node.candidates.requested`);
- **fresh attempts**: a trusted ``rerun`` of a job makes this node's runs of it that started
  before the node had *seen* that rerun stop counting (:class:`Reruns`, given to
  :class:`~jobs.node.work.Workshop`). "Seen" is causal, not a clock: a change this node writes
  has every change it had accepted as an ancestor, so a run started after the rerun arrived has
  a start change descending from it. No requester's clock, and no node's, can move it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime

import pygit2

from ..errors import PolicyError
from ..model import Job, Runs
from ..store import Jobs
from ..text import safe

MAX_REQUESTED = 200  # commits with trusted requests a node considers, newest request first


def trusted_requesters(jobs: Jobs, out: Callable[[str], None] | None = None) -> frozenset[str]:
    """Who may request work here now (read from the policy ref each time: it moves on fetch).

    A policy that does not validate honours no request (and says so): a broken policy must
    never widen what runs."""
    try:
        return frozenset(jobs.policy().requesters)
    except PolicyError as e:
        if out is not None:
            out(f"no request is honoured: {safe(str(e).splitlines()[0])}")
        return frozenset()


def latest_request(job: Job, requesters: Collection[str]) -> tuple[datetime, str, str] | None:
    """(time, change oid, nid) of the newest trusted ``release`` or ``rerun`` of ``job``."""
    best: tuple[datetime, str, str] | None = None
    for kind in (job.requests(), job.reruns()):
        for nid, req in kind.items():
            if nid in requesters and (best is None or (req.last_at, req.change) > best[:2]):
                best = (req.last_at, req.change, nid)
    return best


class Reruns:
    """Given a job and a node, that node's runs of it that still count after trusted reruns.

    ``requesters`` may be replaced between passes (the node re-reads its policy). Ancestry
    answers are remembered: the DAG never changes, and ``plan()`` asks for every job often.
    """

    def __init__(self, repo: pygit2.Repository, requesters: Collection[str] = ()) -> None:
        self.repo = repo
        self.requesters = frozenset(requesters)
        self._seen: dict[tuple[str, str], bool] = {}

    def __call__(self, job: Job, nid: str) -> Runs:
        runs = job.runs_of(nid)
        if not self.requesters or not runs:
            return runs
        reruns = [r.change for who, r in job.reruns().items() if who in self.requesters and r.change]
        if not reruns:
            return runs
        kept = {}
        for run_id, run in runs.items():
            start = job.start_change(nid, run_id)
            if start is None or all(self._after(start, r) for r in reruns):
                kept[run_id] = run
        return Runs(kept)

    def _after(self, start: str, rerun: str) -> bool:
        """True when the change ``start`` had the rerun change ``rerun`` as an ancestor."""
        key = (start, rerun)
        known = self._seen.get(key)
        if known is None:
            try:
                known = start == rerun or bool(
                    self.repo.descendant_of(pygit2.Oid(hex=start), pygit2.Oid(hex=rerun))
                )
            except (pygit2.GitError, KeyError, ValueError):
                known = True  # cannot tell: count the run (never grant attempts by accident)
            self._seen[key] = known
        return known
