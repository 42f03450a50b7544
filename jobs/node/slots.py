"""Parallel jobs on one node: how many at once, and named resources with capacities.

µTask-style resources: a job lists the resources it holds while it runs
(``resources = ["gpu"]`` in ``.git-jobs.toml``); the *node* sets each one's capacity
(``--resource gpu=1``, or git config ``jobs.resources = gpu=1,db=2``). A job starts only when
a worker slot (``--jobs N``) and one unit of each of its resources are free, so a capacity of 1
serialises the jobs that share it. A resource the node does not declare is not limited: the
commit says what a job uses, only the node says how much there is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..errors import JobsError
from ..spec.resources import MAX_CAPACITY as MAX_CAPACITY
from ..spec.resources import RESOURCE as RESOURCE

MAX_PARALLEL = 64


class SlotsError(JobsError):
    """A bad ``--jobs`` or ``--resource`` value (the user's input)."""


def parse_parallel(value: str | int) -> int:
    """``--jobs N``: 1 to 64 jobs at once."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise SlotsError(f"--jobs must be a whole number, not {str(value)[:40]!r}") from None
    if not 1 <= n <= MAX_PARALLEL:
        raise SlotsError(f"--jobs must be from 1 to {MAX_PARALLEL}, not {n}")
    return n


def parse_resources(specs: Iterable[str]) -> dict[str, int]:
    """``NAME=CAPACITY`` items (each may be a comma-separated list) into a mapping."""
    out: dict[str, int] = {}
    for spec in specs:
        for item in filter(None, (s.strip() for s in spec.split(","))):
            name, sep, cap = item.partition("=")
            if not sep or not RESOURCE.match(name):
                raise SlotsError(f"a resource is NAME=CAPACITY with NAME of a-z 0-9 _ -, not {item[:60]!r}")
            try:
                n = int(cap)
            except ValueError:
                raise SlotsError(f"resource {name}: capacity is a whole number, not {cap[:20]!r}") from None
            if not 0 <= n <= MAX_CAPACITY:
                raise SlotsError(f"resource {name}: capacity must be from 0 to {MAX_CAPACITY}")
            out[name] = n
    return out


class Slots:
    """Free units of each declared resource (used by one thread: the scheduling loop)."""

    def __init__(self, capacities: Mapping[str, int]) -> None:
        self.free = dict(capacities)

    def take(self, wanted: Iterable[str]) -> bool:
        """Hold one unit of each of ``wanted`` if all are free; False (holding nothing) if not."""
        limited = [r for r in set(wanted) if r in self.free]
        if any(self.free[r] < 1 for r in limited):
            return False
        for r in limited:
            self.free[r] -= 1
        return True

    def give(self, held: Iterable[str]) -> None:
        for r in set(held):
            if r in self.free:
                self.free[r] += 1
