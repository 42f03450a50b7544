"""When a started run is ``lost``: the deadline its node promised, judged by the reader.

A ``run`` op may carry ``timeout`` (FORMAT.md 11.1): whole seconds from the run's start within
which its node promised to finish it (the node kills the command at that point and records
``timed_out``). A run that records none is given :data:`DEFAULT_TIMEOUT`. A reader shows a run
that is still *started* once its deadline **plus a grace** (:data:`DEFAULT_GRACE`, git config
``jobs.lostGrace``) has passed as ``lost``: its node died, or cannot publish, and nobody will
finish it. ``lost`` is derived by each reader from its own clock; nobody signs it, and a finish
that arrives later replaces it (the run is then what its finish says).

Readers judge time, not writers: the start is the start change's commit time, which its
writer claims. A claim in the past only makes the run lost sooner (its own node's loss). A
claim in the future is believed up to :data:`MAX_SKEW` after this reader's clock; beyond that
the reader measures from when *it first saw* the run (plus the skew), remembered in
``.git/git-jobs/future-starts.json`` (bounded; a reader that cannot write it remembers for
its own process). So no claimed time can keep a run alive forever.

The same holds for a ``release`` (the time takeover waits from, :mod:`jobs.assign`): a claimed
release time is believed only within :data:`MAX_SKEW` of when this reader first saw a trusted
release of the group (``.git/git-jobs/releases-seen.json``, bounded). A node whose clock says
1970 cannot make every other node take over at once, and one whose clock runs ahead cannot
hold takeover off.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pygit2

from . import paths
from .errors import JobsError

DEFAULT_TIMEOUT = 6 * 3600  # a run's deadline when its op records none; also jobs.maxTimeout's default
MIN_TIMEOUT = 1
MAX_TIMEOUT = 7 * 86400  # the most a run op may promise (FORMAT.md 11.1)
DEFAULT_GRACE = 600.0  # seconds past the deadline before a reader says lost (jobs.lostGrace)
MAX_GRACE = 7 * 86400.0
MAX_SKEW = 300.0  # how far in the future a start claim is believed
GRACE_KEY = "jobs.lostGrace"
MAX_REMEMBERED = 10_000  # future-claiming runs remembered (oldest dropped)
_FILE = "future-starts.json"
RELEASES_FILE = "releases-seen.json"


class GraceError(JobsError):
    """A bad ``jobs.lostGrace`` setting."""


def check_timeout(timeout: object) -> str | None:
    """Why ``timeout`` is not a valid ``run`` op deadline, or None."""
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        return "a run's timeout must be an integer number of seconds"
    if not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
        return f"a run's timeout must be from 1 second to 7 days ({MAX_TIMEOUT} s), not {timeout} s"
    return None


def whole_seconds(seconds: float) -> int:
    """A duration as the op's integer seconds (rounded up: a promise is never shortened)."""
    return max(MIN_TIMEOUT, math.ceil(seconds - 1e-9))


def parse_grace(text: str) -> float:
    """``jobs.lostGrace``: a duration (``10m``, ``2s``) or ``0``."""
    from .spec.durations import DurationError, parse_duration

    if text.strip() in ("0", "0s"):
        return 0.0
    try:
        grace = parse_duration(text)
    except DurationError as e:
        raise GraceError(f"git config {GRACE_KEY}: {e}") from None
    if grace > MAX_GRACE:
        raise GraceError(f"git config {GRACE_KEY}: at most 7 days, not {text!r}")
    return grace


class _Memory:
    """When this reader first saw runs that claim a start in the future (one per git dir)."""

    def __init__(self, path: Path | None, prefix: str = ".future-starts-") -> None:
        self.path = path
        self.prefix = prefix
        self.seen: dict[str, float] = {}
        self.lock = threading.Lock()
        self.loaded = False

    def _load(self) -> None:
        self.loaded = True
        if self.path is None:
            return
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.path.read_text())
            if isinstance(data, dict):
                for k, v in list(data.items())[-MAX_REMEMBERED:]:
                    if isinstance(k, str) and isinstance(v, int | float) and math.isfinite(v):
                        self.seen.setdefault(k, float(v))

    def first_seen(self, key: str, now: float) -> float:
        with self.lock:
            if not self.loaded:
                self._load()
            when = self.seen.get(key)
            if when is not None:
                return when
            self.seen[key] = now
            while len(self.seen) > MAX_REMEMBERED:
                self.seen.pop(next(iter(self.seen)))
            self._save()
            return now

    def _save(self) -> None:
        if self.path is None:
            return
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.prefix)
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(self.seen, fh)
                os.replace(tmp, self.path)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


_MEMORIES: dict[str, _Memory] = {}
_MEMORIES_LOCK = threading.Lock()


def _memory(repo: pygit2.Repository | None, file: str = _FILE) -> _Memory:
    key = ("" if repo is None else str(repo.path)) + "\0" + file
    with _MEMORIES_LOCK:
        mem = _MEMORIES.get(key)
        if mem is None:
            path = paths.state_file(repo, file) if repo else None
            mem = _MEMORIES[key] = _Memory(path, "." + file.split(".")[0] + "-")
        return mem


@dataclass(slots=True)
class Judge:
    """A reader's clock and grace: when each started run turns ``lost``."""

    grace: float = DEFAULT_GRACE
    clock: Callable[[], float] = time.time
    memory: _Memory = field(default_factory=lambda: _memory(None))
    releases: _Memory = field(default_factory=lambda: _memory(None, RELEASES_FILE))

    @classmethod
    def load(cls, repo: pygit2.Repository, clock: Callable[[], float] = time.time) -> Judge:
        """This repository's judge: ``jobs.lostGrace`` (default 10 minutes) and the clock."""
        try:
            raw: str | None = str(repo.config[GRACE_KEY])
        except (KeyError, ValueError, pygit2.GitError):
            raw = None
        grace = DEFAULT_GRACE if raw is None else parse_grace(raw)
        return cls(grace, clock, _memory(repo), _memory(repo, RELEASES_FILE))

    def start(self, key: str, claimed: float, now: float) -> float:
        """The start a reader measures from: the claim, never later than the skew bound after
        this reader first saw a run claiming a start beyond it."""
        if claimed <= now + MAX_SKEW:
            return claimed
        return min(claimed, self.memory.first_seen(key, now) + MAX_SKEW)

    def lost_at(self, key: str, claimed: float, timeout: int | None) -> float:
        """When a run started (by its claim) at ``claimed`` turns lost for this reader."""
        promised = DEFAULT_TIMEOUT if timeout is None else timeout
        return self.start(key, claimed, self.clock()) + promised + self.grace

    def released(self, key: str, claimed: float, now: float) -> float:
        """The release time takeover waits from for group ``key``: the claim, held within
        :data:`MAX_SKEW` of when this reader first saw a trusted release of the group."""
        seen = self.releases.first_seen(key, now)
        return min(max(claimed, seen - MAX_SKEW), seen + MAX_SKEW)

    def now(self) -> float:
        return self.clock()


__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_TIMEOUT",
    "GRACE_KEY",
    "MAX_SKEW",
    "MAX_TIMEOUT",
    "MIN_TIMEOUT",
    "GraceError",
    "Judge",
    "check_timeout",
    "parse_grace",
    "whole_seconds",
]
