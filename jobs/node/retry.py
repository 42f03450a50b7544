"""Retry timing: µTask's job retry patterns, and the node's backoff policies for its workers.

**Job retries** follow µTask's ``seconds`` / ``minutes`` / ``hours`` patterns, a function of the
number of attempts already made (``n``), with no jitter so that a user can predict them:

- ``seconds``: ``10 s + 10 s * ln(n)`` → 10 s, 16.9 s, 21 s, 23.9 s …
- ``minutes``: 1 min for the first two retries, then ``10 min * ln(n - 1)`` → 1, 1, 6.9, 11 …
- ``hours``:   the same with hours.

**Worker errors** (autosolve's classification) back off exponentially with jitter under one of
three policies: ``node`` (transport failures: the network or the remote is away), ``service``
(the remote pushes back — rate limits, 5xx, a wait hint — whose hint is honoured) and
``degraded`` (anything unexpected: back off hard, keep running, say so in the log).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

import cob

MAX_HINT = 24 * 3600.0  # seconds: the longest "retry after" a remote can make a worker wait


@dataclass(frozen=True, slots=True)
class Policy:
    """Exponential backoff with "equal jitter": half fixed, half random, capped."""

    name: str
    base: float
    cap: float
    factor: float = 2.0

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        # The exponent is bounded: after days of failures factor**n would overflow a float.
        exponent = min(max(0, failures - 1), 64)
        raw = min(self.cap, self.base * self.factor**exponent)
        return raw / 2 + raw / 2 * rand()


def policies(interval: float) -> dict[str, Policy]:
    """The three policies, scaled to a worker interval so a fast test node backs off fast too."""
    return {
        "node": Policy("node", base=interval, cap=max(interval * 32, 1.0)),
        "service": Policy("service", base=interval * 4, cap=max(interval * 64, 5.0)),
        "degraded": Policy("degraded", base=interval * 8, cap=max(interval * 128, 10.0)),
    }


_PRESSURE = re.compile(
    r"\b(429|50[0-4])\b|rate.?limit|too many requests|service unavailable|bad gateway|"
    r"gateway time-?out|server is busy|try again later|retry.?after",
    re.IGNORECASE,
)
_HINT = re.compile(
    r"retry[- ]after[:= ]+(\d+(?:\.\d+)?)|(?:try again|retry) in (\d+(?:\.\d+)?) ?s", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Classified:
    """Which policy an error falls under, and the wait the remote asked for, if any."""

    policy: str
    hint: float | None = None


def classify(error: BaseException) -> Classified:
    """Remote pressure → ``service`` (with its hint); transport → ``node``; else ``degraded``."""
    text = str(error)
    if isinstance(error, cob.TransportError | OSError | TimeoutError):
        if _PRESSURE.search(text):
            m = _HINT.search(text)
            hint = float(m.group(1) or m.group(2)) if m else None
            return Classified("service", hint)
        return Classified("node")
    return Classified("degraded")


class Backoff:
    """Per-task failure counter: ``next_delay(error)`` after a failure, ``reset()`` on success."""

    def __init__(self, table: dict[str, Policy], rand: Callable[[], float] = random.random) -> None:
        self.table = table
        self.rand = rand
        self.failures = 0

    def reset(self) -> None:
        self.failures = 0

    def next_delay(self, error: BaseException) -> tuple[Classified, float]:
        self.failures += 1
        kind = classify(error)
        policy = self.table[kind.policy]
        delay = policy.delay(self.failures, self.rand)
        if kind.hint is not None:
            # Honour the remote's wait, but never past a day: a hint is peer data.
            delay = max(delay, min(kind.hint, MAX_HINT))
        return kind, delay
