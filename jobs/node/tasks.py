"""A node's tasks: preflights (checked once, before any work) and workers (each on its interval).

As in autosolve's scheduler, a node is a list of named tasks, not a hard-wired loop:

- a :class:`Preflight` is ``name`` (``preflight:...``) and ``check()``, which raises when the
  node must not start; the first failure stops the node before any work;
- a :class:`Worker` is ``name`` (``worker:...``, e.g. ``worker:sync:origin``), ``interval``
  (seconds between two runs; None: the node's) and ``run()``, one unit of its work.

The node's own tasks are registered the same way (:class:`.daemon.Node` builds them), and a
node started from Python takes more: ``Node(..., workers=[...], preflights=[...])``. Every
worker runs in its own thread; one that raises is logged under its name, counted in
``node.json``, backs off (:mod:`.retry`) and runs again — the others never notice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

from ..errors import JobsError

TASK_NAME = re.compile(r"^(preflight|worker):[^\s\x00-\x1f\x7f]{1,200}$")


class TaskError(JobsError):
    """A task that cannot be registered (a bad or duplicate name): the node does not start."""


@runtime_checkable
class Preflight(Protocol):
    """A check the node passes before any work (autosolve's ``Preflight``)."""

    @property
    def name(self) -> str: ...

    def check(self) -> None:
        """Return when all is well; raise (any exception) to stop the node with its message."""
        ...


@runtime_checkable
class Worker(Protocol):
    """A unit of the node's work, run again every ``interval`` (autosolve's ``Worker``)."""

    @property
    def name(self) -> str: ...

    @property
    def interval(self) -> float | None:
        """Seconds between two runs (None: the node's ``--interval``)."""
        ...

    def run(self) -> None:
        """One round of work; an exception is logged and counted, and it runs again later."""
        ...


T = TypeVar("T", Preflight, Worker)


@dataclass(frozen=True, slots=True)
class FunctionPreflight:
    """A :class:`Preflight` from a function."""

    name: str
    body: Callable[[], None]

    def check(self) -> None:
        self.body()


@dataclass(frozen=True, slots=True)
class FunctionWorker:
    """A :class:`Worker` from a function."""

    name: str
    body: Callable[[], None]
    interval: float | None = None

    def run(self) -> None:
        self.body()


def preflight(name: str, check: Callable[[], None]) -> Preflight:
    """A preflight named ``preflight:NAME`` (the prefix is added when missing)."""
    return FunctionPreflight(name if name.startswith("preflight:") else f"preflight:{name}", check)


def worker(name: str, run: Callable[[], None], interval: float | None = None) -> Worker:
    """A worker named ``worker:NAME`` (the prefix is added when missing)."""
    return FunctionWorker(name if name.startswith("worker:") else f"worker:{name}", run, interval)


# The node's own task names (and name prefixes): a task given from Python may not take one.
RESERVED = {
    "preflight": ("preflight:repository", "preflight:isolation", "preflight:runners", "preflight:lock"),
    "worker": ("worker:work", "worker:release", "worker:heartbeat", "worker:schedule", "worker:notify"),
}
RESERVED_PREFIXES = {
    "preflight": ("preflight:remote:", "preflight:follow:"),
    "worker": ("worker:sync:", "worker:follow:"),
}


def given(kind: str, tasks: Iterable[T]) -> Registry[T]:
    """The tasks a caller gives, checked: well formed, unique, none named like the node's own."""
    out: Registry[T] = Registry(kind, tasks)
    for name in out.names:
        if name in RESERVED[kind] or name.startswith(RESERVED_PREFIXES[kind]):
            raise TaskError(f"{name} is the name of one of the node's own tasks")
    return out


class Registry(Generic[T]):
    """Tasks of one kind in registration order; names are unique and well formed."""

    def __init__(self, kind: str, tasks: Iterable[T] = ()) -> None:
        self.kind = kind
        self._tasks: dict[str, T] = {}
        for task in tasks:
            self.add(task)

    def add(self, task: T) -> T:
        name = getattr(task, "name", None)
        if not isinstance(name, str) or not TASK_NAME.match(name) or not name.startswith(f"{self.kind}:"):
            shown = repr(name)[:60]
            raise TaskError(f"{self.kind} task name {shown} must look like {self.kind}:NAME")
        if name in self._tasks:
            raise TaskError(f"two tasks are named {name}")
        if self.kind == "worker":
            interval = getattr(task, "interval", None)
            if interval is not None and (not isinstance(interval, int | float) or not interval > 0):
                raise TaskError(f"{name}: interval must be a positive number of seconds, not {interval!r}")
        self._tasks[name] = task
        return task

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def names(self) -> list[str]:
        return list(self._tasks)
