"""A job as ``git jobs list`` shows it: a few fields, not its whole history.

The index stores a :class:`JobRow` beside each job's folded state (:mod:`cob.listing`), so a
listing of every job reads each row's few fields instead of decoding every run of every node
(at 100k entries that decode was 2 s and 400 MB for 5,000 lines of output). A row holds only
what the fold decided; whether a started run is *lost* depends on the reader's clock and
judge (DESIGN: readers judge time), so :class:`JobListing` is judged when it is read, exactly
as :meth:`jobs.model.Job.latest_outcomes` judges a loaded job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from .deadline import Judge
from .model import JobState, reason_value
from .summary import state_word

if TYPE_CHECKING:
    from cob import Evaluation


class Latest(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A node's latest run (``Runs.latest``'s order): its id, its finish reason (None while it
    is started), when its start claims it began and the deadline it promised."""

    nid: str
    run: str
    reason: str | None
    started_at: int
    timeout: int | None


class JobRow(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """What the index keeps per job for a listing (:meth:`cob.CobType.listing`)."""

    commit: str
    name: str
    runs: int
    rejected: int
    latest: tuple[Latest, ...]


def row_of(ev: Evaluation[JobState]) -> JobRow:
    """The row of a folded job (nodes in id order, as ``Job.runs()``)."""
    state = ev.state
    assert state is not None
    latest = []
    for nid, rs in sorted(state.runs.items()):
        if rs:
            k = max(rs)
            s = rs[k]
            latest.append(Latest(nid, k, s.reason, s.started_at, s.timeout))
    total = sum(len(rs) for rs in state.runs.values())
    return JobRow(state.commit, state.name, total, len(ev.rejected), tuple(latest))


@dataclass(frozen=True, slots=True)
class JobListing:
    """One line of a listing: a job's id, commit and name, its state word over all nodes'
    latest runs (as :func:`jobs.summary.job_state`), and counts."""

    id: str
    commit: str
    name: str
    state: str
    runs: int
    rejected: int
    nodes: tuple[str, ...]  # the nodes with runs, by id

    def to_json(self) -> dict[str, object]:
        """``list --json``'s shape (``job_json(job, runs=False)``'s)."""
        return {
            "id": self.id,
            "commit": self.commit,
            "name": self.name,
            "state": self.state,
            "nodes": len(self.nodes),
            "runs": self.runs,
            "rejected": self.rejected,
        }

    @classmethod
    def judged(cls, object_id: str, row: JobRow, judge: Judge | None) -> JobListing:
        """The listing of ``row`` as a reader with ``judge`` sees it now."""
        outcomes: list[tuple[str | None, bool]] = []
        for one in row.latest:
            if one.reason is not None:
                outcomes.append((reason_value(one.reason), False))
            elif judge is not None:
                lost_at = judge.lost_at(f"{one.nid}/{one.run}", one.started_at, one.timeout)
                outcomes.append((None, judge.now() >= lost_at))
            else:
                outcomes.append((None, False))
        nodes = tuple(one.nid for one in row.latest)
        return cls(object_id, row.commit, row.name, state_word(outcomes), row.runs, row.rejected, nodes)


__all__ = ["JobListing", "JobRow", "Latest", "row_of"]
