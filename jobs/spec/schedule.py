"""The ``[schedule]`` table of ``.git-jobs.toml``: when to run jobs again, like cron.

    [schedule.nightly]
    cron = "0 3 * * *"        # minute hour day-of-month month day-of-week, in UTC
    jobs = ["test"]           # default: every job the tip defines

Read at the policy ref, never from the commit under test; the node fires them
(:mod:`jobs.node.schedule`). Expressions are parsed by croniter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..errors import JobsError
from ..text import safe

MAX_SCHEDULES = 20
MAX_CRON = 100  # characters of one expression
MAX_JOBS = 200
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_KEYS = {"cron", "jobs"}


class ScheduleError(JobsError):
    """The policy ref's ``[schedule]`` table does not validate."""


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    cron: str
    jobs: tuple[str, ...] = ()  # empty: every job of the tip

    def next_after(self, when: float) -> float:
        """The first time of this schedule strictly after ``when`` (epoch seconds, UTC)."""
        from croniter import croniter

        start = datetime.fromtimestamp(when, UTC)
        nxt: datetime = croniter(self.cron, start).get_next(datetime)
        return nxt.timestamp()

    def wants(self, name: str, base: str) -> bool:
        return not self.jobs or name in self.jobs or base in self.jobs


def _cron(where: str, value: Any) -> str:
    from croniter import croniter

    if not isinstance(value, str) or not value.strip() or len(value) > MAX_CRON:
        raise ScheduleError(f"{where}.cron: must be a cron expression (at most {MAX_CRON} characters)")
    text = " ".join(value.split())
    if len(text.split(" ")) != 5 or not croniter.is_valid(text):
        raise ScheduleError(
            f"{where}.cron: {safe(value)!r} is not a five-field cron expression"
            " (minute hour day-of-month month day-of-week)"
        )
    return text


def parse_schedules(table: Any, where: str = "[schedule]") -> list[Schedule]:
    """The schedules of a ``[schedule]`` table (every entry a ``[schedule.NAME]`` table)."""
    if not isinstance(table, Mapping):
        raise ScheduleError(f"{where}: must be a table of [schedule.NAME] tables")
    if len(table) > MAX_SCHEDULES:
        raise ScheduleError(f"{where}: at most {MAX_SCHEDULES} schedules")
    out = []
    for name, entry in table.items():
        at = f"schedule.{safe(name)}"
        if not _NAME.match(name):
            raise ScheduleError(f"{at}: a schedule's name is letters, digits, '.', '_' or '-'")
        if not isinstance(entry, Mapping):
            raise ScheduleError(f'{at}: must be a table with cron = "M H DoM Mon DoW"')
        unknown = sorted(set(entry) - _KEYS)
        if unknown:
            raise ScheduleError(f"{at}: unknown key(s) {', '.join(map(safe, unknown))} (known: cron, jobs)")
        jobs = entry.get("jobs", [])
        if (
            not isinstance(jobs, list)
            or len(jobs) > MAX_JOBS
            or not all(isinstance(j, str) and j for j in jobs)
        ):
            raise ScheduleError(f"{at}.jobs: must be a list of job names")
        out.append(Schedule(name, _cron(at, entry.get("cron")), tuple(jobs)))
    return out
