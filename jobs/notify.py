"""Notifications: run a person's own command when a commit's verdict changes.

The command comes from the person who watches — ``git jobs watch --notify CMD`` or
``git config jobs.notify`` (the node reads the same key) — never from a commit, a peer or the
policy ref. It runs through ``/bin/sh -c`` (like a git alias or hook), in its own process
group, with the verdict as JSON on stdin and in ``GIT_JOBS_*`` environment variables, and is
killed after :data:`DEFAULT_TIMEOUT` seconds (``git config jobs.notifyTimeout``). Its failure
(a non-zero exit, a timeout, a command that cannot start) is returned as a :class:`Notified`
for the caller to report in one line; it never stops the watch or the node.

When does a verdict "change"? A watcher remembers the outcome it last saw per commit
(:class:`Watcher`). What it sees on its first look is the baseline and notifies nothing. After
that, a commit whose outcome differs from the last one seen notifies; a commit seen for the
first time notifies only when it already has a final outcome (its runs arrived all at once).
A node keeps its watcher's memory in ``<gitdir>/git-jobs/notify-seen.json`` (:meth:`Watcher.load`,
:meth:`Watcher.save`), so a verdict that changed while it was stopped notifies once it is back.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .gate import GateStatus
from .text import safe

NOTIFY_KEY = "jobs.notify"
NOTIFY_TIMEOUT_KEY = "jobs.notifyTimeout"
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 3600.0
MAX_COMMAND = 4096  # characters of the command itself
MAX_REMEMBERED = 1000  # commits whose last outcome a watcher keeps
MAX_ENV_SUBJECT = 200  # characters of the commit subject in GIT_JOBS_SUBJECT


@dataclass(frozen=True, slots=True)
class Change:
    """A commit's verdict moved from ``previous`` (None: first seen) to ``status.outcome``."""

    status: GateStatus
    previous: str | None
    subject: str = ""
    branch: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.status.commit,
            "outcome": self.status.outcome,
            "previous": self.previous,
            "branch": self.branch,
            "subject": self.subject,
            "status": self.status.to_json(),
        }

    def env(self) -> dict[str, str]:
        return {
            "GIT_JOBS_COMMIT": self.status.commit,
            "GIT_JOBS_OUTCOME": self.status.outcome,
            "GIT_JOBS_PREVIOUS": self.previous or "",
            "GIT_JOBS_BRANCH": self.branch or "",
            "GIT_JOBS_SUBJECT": safe(self.subject)[:MAX_ENV_SUBJECT],
            "GIT_JOBS_EXIT": str(self.status.exit_code),
        }


@dataclass(frozen=True, slots=True)
class Notified:
    """What running the command for one change gave: ``ok``, else one line of why not."""

    change: Change
    ok: bool
    problem: str = ""

    def line(self) -> str:
        c = self.change
        what = f"{c.status.commit[:12]} {c.previous or 'new'} -> {c.status.outcome}"
        return f"notified {what}" if self.ok else f"notify failed for {what}: {self.problem}"


def check_command(command: str) -> str:
    """The command, or :class:`ValueError` when it is empty or too long."""
    if not command.strip():
        raise ValueError("the notify command is empty")
    if len(command) > MAX_COMMAND:
        raise ValueError(f"the notify command is over {MAX_COMMAND} characters")
    return command


def run_command(command: str, change: Change, timeout: float = DEFAULT_TIMEOUT) -> Notified:
    """Run ``command`` for ``change``: JSON on stdin, ``GIT_JOBS_*`` in the environment."""
    payload = json.dumps(change.to_json(), sort_keys=True).encode() + b"\n"
    env = {**os.environ, **change.env()}
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    except OSError as e:
        return Notified(change, False, f"cannot start: {e.strerror or e}")
    try:
        proc.communicate(payload, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return Notified(change, False, f"timed out after {timeout:g}s (killed)")
    except BrokenPipeError:  # it did not read its stdin: fine, the env has the verdict
        proc.wait(timeout=timeout)
    if proc.returncode != 0:
        return Notified(change, False, f"exit status {proc.returncode}")
    return Notified(change, True)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def config_timeout(value: str | None) -> float:
    """``jobs.notifyTimeout`` in seconds (a bad value is a :class:`ValueError`)."""
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{NOTIFY_TIMEOUT_KEY} must be seconds, not {safe(value)!r}") from None
    if not 0 < seconds <= MAX_TIMEOUT:
        raise ValueError(f"{NOTIFY_TIMEOUT_KEY} must be from 0 to {MAX_TIMEOUT:g} seconds")
    return seconds


def notify_config(repo: Any) -> tuple[str | None, float]:
    """``jobs.notify`` and ``jobs.notifyTimeout`` of git config (:class:`ValueError` if bad)."""

    def get(key: str) -> str | None:
        try:
            return str(repo.config[key])
        except (KeyError, ValueError):
            return None

    command = get(NOTIFY_KEY)
    return (check_command(command) if command is not None else None, config_timeout(get(NOTIFY_TIMEOUT_KEY)))


@dataclass(slots=True)
class Watcher:
    """Remembers the last outcome seen per commit and says which looks are changes."""

    seen: dict[str, str] = field(default_factory=dict)
    started: bool = False

    def look(self, statuses: Iterable[GateStatus]) -> list[tuple[GateStatus, str | None]]:
        """The (status, previous outcome) pairs that changed since the last look."""
        changed: list[tuple[GateStatus, str | None]] = []
        for status in statuses:
            outcome, before = status.outcome, self.seen.get(status.commit)
            self.seen.pop(status.commit, None)
            self.seen[status.commit] = outcome  # newest last: the oldest are forgotten first
            if not self.started:
                continue
            if before is None:
                if not status.pending:
                    changed.append((status, None))
            elif before != outcome:
                changed.append((status, before))
        while len(self.seen) > MAX_REMEMBERED:
            self.seen.pop(next(iter(self.seen)))
        self.started = True
        return changed

    @classmethod
    def load(cls, path: Path) -> Watcher:
        """The watcher a previous process saved at ``path`` (started: its memory is the baseline);
        a fresh one when there is none or it cannot be read (bounded: :data:`MAX_REMEMBERED`)."""
        try:
            if path.stat().st_size > 256 * MAX_REMEMBERED:
                return cls()
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 32
            for k, v in data.items()
        ):
            return cls()
        seen = dict(list(data.items())[-MAX_REMEMBERED:])
        return cls(seen, started=bool(seen))

    def save(self, path: Path) -> None:
        """Keep the memory for the next process (atomically; a failure only loses the baseline)."""
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(self.seen), encoding="utf-8")
            os.replace(tmp, path)


def notify_all(
    command: str, changes: Iterable[Change], timeout: float, out: Callable[[str], None]
) -> list[Notified]:
    """Run the command once per change, in order; each result is said through ``out``."""
    done = []
    for change in changes:
        result = run_command(command, change, timeout)
        out(result.line())
        done.append(result)
    return done
