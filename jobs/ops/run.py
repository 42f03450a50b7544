"""``run {run_id, log, timeout?}``: the signer starts a run (FORMAT.md 11.1, 11.2)."""

from __future__ import annotations

from typing import ClassVar

from cob import Reject

from ..deadline import check_timeout
from ..model import RunState
from .base import Checking, Folding, JobOp
from .fields import check_log_url, check_run_id


class StartRun(JobOp, tag="run"):
    """The signer starts a run (one execution attempt); ``log`` is an absolute URL.

    ``timeout``: the deadline its node promised, whole seconds from the run's start (readers
    show the run ``lost`` past it plus a grace: :mod:`jobs.deadline`). Optional and omitted
    when absent, so a start without it has the same bytes (and a job the same ids) as before.
    """

    help: ClassVar[str] = "The signer starts run RUN_ID, with its log's URL and an optional deadline."

    run_id: str
    log: str
    timeout: int | None = None

    def check(self) -> str | None:
        """Why this op is invalid (its run id, log URL, optional timeout), or None."""
        problem = check_run_id(self.run_id) or check_log_url(self.log)
        return problem or (check_timeout(self.timeout) if self.timeout is not None else None)

    def validate(self, at: Checking) -> None:
        problem = self.check()
        if problem:
            raise Reject(problem)
        at.started.add(self.run_id)

    def apply(self, at: Folding) -> None:
        change, key = at.change, at.key
        mine = at.mine
        run = mine.get(self.run_id)
        if run is None:
            mine[self.run_id] = RunState(self.log, change.timestamp, key, [change.oid], timeout=self.timeout)
            return
        # Each change is applied once, its ops in a row: only a repeat within this change can
        # already be recorded (`not in` the list was O(n) per start).
        if run.start_changes[-1:] != [change.oid]:
            run.start_changes.append(change.oid)
        if key < tuple(run.start_key):
            run.log, run.started_at, run.start_key = self.log, change.timestamp, key
            run.timeout = self.timeout

    def summary(self) -> str:
        return f"Run {self.run_id}: started"
