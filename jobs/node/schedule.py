"""Schedules: run jobs again on the followed tip at set times, like cron.

    [schedule.nightly]
    cron = "0 3 * * *"        # minute hour day-of-month month day-of-week, in UTC
    jobs = ["test"]           # default: every job the tip defines

The ``[schedule]`` table is read from ``.git-jobs.toml`` at the tip of the **policy ref** (the
default branch, as for ``[policy]``; :func:`jobs.policy.policy_ref`), never from a commit under
test: a branch cannot schedule work by adding a table. A commit's own ``[schedule]`` is
ignored (allowed, so the one file serves both).

When a schedule is due, a following node writes a signed ``rerun`` of the scheduled jobs on
each followed tip (creating them first, as a release does) and logs one line naming the
schedule. The rerun is the record every reader sees (``git jobs show``: who asked, when); the
node honours its own key's rerun, so its earlier runs of those jobs stop counting and the jobs
run again through the ordinary work loop — same sandbox, logs and retries. Other nodes run
them too only if this node may request work under their policy.

Times are checked each node interval against the clock (:class:`Scheduler`'s ``clock``, which
the node passes from ``Node.clock``: ``time.time``, replaced only from Python, e.g. by a test
that runs a node in-process; no option, setting or commit sets it): a schedule fires once
when one of its times passed since the last check; times missed while the node was not
running are not caught up. The table itself is :mod:`jobs.spec.schedule`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import pygit2

from ..errors import DefinitionError, PolicyError
from ..policy import policy_ref, tables_at
from ..spec.file import DEFINITIONS_FILE
from ..spec.schedule import Schedule as Schedule
from ..spec.schedule import ScheduleError as ScheduleError
from ..spec.schedule import parse_schedules as parse_schedules
from ..store import Jobs


def load_schedules(repo: pygit2.Repository) -> tuple[list[Schedule], str | None]:
    """The policy ref's schedules and where they were read (None: no policy ref)."""
    try:
        source = policy_ref(repo)
    except PolicyError as e:
        raise ScheduleError(str(e)) from None
    if source is None:
        return [], None
    data = tables_at(repo, source, ScheduleError)
    where = f"{DEFINITIONS_FILE} at {source.ref}"
    if data is None or "schedule" not in data:
        return [], where
    try:
        return parse_schedules(data["schedule"]), where
    except ScheduleError as e:
        raise ScheduleError(f"{where}: {e}") from None


@dataclass(frozen=True, slots=True)
class Fired:
    """A schedule that was due: the jobs it asked to rerun on a commit (``source``: why the
    node works on it, e.g. the followed ref)."""

    schedule: Schedule
    due: float
    commit: str
    source: str
    jobs: tuple[str, ...]

    def line(self) -> str:
        at = datetime.fromtimestamp(self.due, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        what = ", ".join(self.jobs) if self.jobs else "no job (none matched)"
        return (
            f"schedule {self.schedule.name} ({self.schedule.cron}) due {at}: "
            f"rerun {what} on {self.commit[:12]} ({self.source})"
        )


@dataclass(slots=True)
class Scheduler:
    """Decides when schedules are due and asks for their reruns; ``clock`` gives epoch seconds."""

    clock: Callable[[], float] = time.time
    last: float | None = None  # the previous check (None: not yet; the first sets the start)
    problem: str | None = None  # the last error said, to say each one once

    def due(self, schedules: Iterable[Schedule]) -> list[tuple[Schedule, float]]:
        """Schedules with a time in (last check, now]; the first call only starts the clock."""
        now = self.clock()
        last, self.last = self.last, now
        if last is None:
            return []
        out = []
        for s in schedules:
            nxt = s.next_after(last)
            if nxt <= now:
                out.append((s, nxt))
        return out

    def tick(
        self,
        store: Jobs,
        tips: Iterable[tuple[str, str]],
        out: Callable[[str], None],
        labels: frozenset[str] | None = None,
    ) -> list[Fired]:
        """One check: for every due schedule and every (commit, source) tip, release the
        commit's jobs and write a signed ``rerun`` of the scheduled ones."""
        try:
            schedules, _ = load_schedules(store.repo)
        except ScheduleError as e:
            if str(e) != self.problem:
                self.problem = str(e)
                out(f"schedules ignored: {e}")
            self.due(())
            return []
        self.problem = None
        fired = []
        tips = list(tips)
        for schedule, when in self.due(schedules):
            for commit, source in tips:
                try:
                    names = _rerun(store, commit, schedule, labels)
                except DefinitionError as e:
                    out(f"schedule {schedule.name}: {commit[:12]}: {e}")
                    continue
                f = Fired(schedule, when, commit, source, tuple(names))
                out(f.line())
                fired.append(f)
        return fired


def _rerun(store: Jobs, commit: str, schedule: Schedule, labels: frozenset[str] | None) -> list[str]:
    from ..spec.definitions import load_definitions
    from .work import release

    defs = load_definitions(store.repo, commit)
    if defs is None:
        return []
    chosen = {d.name for d in defs if schedule.wants(d.name, d.base or d.name)}
    names = []
    for job, _ in release(store, defs, labels):
        if job.name in chosen:
            job.rerun()
            names.append(job.name)
    return names


__all__ = ["Fired", "Schedule", "ScheduleError", "Scheduler", "load_schedules", "parse_schedules"]
