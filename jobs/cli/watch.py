"""`git jobs watch`: follow a branch's newest commits and say (or notify) each verdict change.

The notify command is the person's own (``--notify CMD`` or ``git config jobs.notify``); see
:mod:`jobs.notify` for what it receives and when it runs.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import UTC, datetime
from typing import Any

from .common import command, open_jobs
from .errors import EXIT_OK, CliError

DEFAULT_INTERVAL = 10.0
DEFAULT_DEPTH = 5
MAX_DEPTH = 200


def _config(store: Any, key: str) -> str | None:
    try:
        value = store.repo.config[key]
    except (KeyError, ValueError):
        return None
    return str(value)


def _say(line: str) -> None:
    from ..text import safe

    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"{stamp} {safe(line)}", flush=True)


def _watch(args: argparse.Namespace) -> int:
    from ..gate import gate_status
    from ..history import span, subject_of, walk
    from ..notify import (
        NOTIFY_KEY,
        NOTIFY_TIMEOUT_KEY,
        Change,
        Watcher,
        check_command,
        config_timeout,
        notify_all,
    )

    if not math.isfinite(args.interval) or not 0 < args.interval <= 86400:
        raise CliError(f"--interval must be a number of seconds from 0 to 86400, not {args.interval}")
    if args.timeout is not None and (not math.isfinite(args.timeout) or args.timeout <= 0):
        raise CliError(f"--timeout must be a positive number of seconds, not {args.timeout}")
    if not 1 <= args.depth <= MAX_DEPTH:
        raise CliError(f"--depth must be 1 to {MAX_DEPTH}, not {args.depth}")
    store = open_jobs(args)
    command = args.notify if args.notify is not None else _config(store, NOTIFY_KEY)
    try:
        if command is not None:
            check_command(command)
        timeout = config_timeout(_config(store, NOTIFY_TIMEOUT_KEY))
    except ValueError as e:
        raise CliError(str(e)) from None
    label = span(store, args.branch).label  # a bad branch: one clear error before watching
    watcher = Watcher()
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    _say(
        f"watching the newest {args.depth} commit(s) of {label} every {args.interval:g}s"
        + (" (notifying)" if command else "")
    )
    while True:
        if args.sync:
            try:
                store.sync(args.sync, push=False)
            except Exception as e:  # a flaky remote must not end the watch
                _say(f"sync from {args.sync} failed: {str(e).splitlines()[0] if str(e) else e}")
        policy = store.policy()
        where = span(store, args.branch)
        shas, _ = walk(store.repo, where, 0, args.depth)
        statuses = [gate_status(store, sha, policy) for sha in shas]
        changes = [
            Change(s, before, subject_of(store.repo, s.commit), where.label)
            for s, before in watcher.look(statuses)
        ]
        for c in changes:
            _say(f"{c.status.commit[:12]} {c.previous or 'new'} -> {c.status.outcome}  {c.subject}")
        if command and changes:
            notify_all(command, changes, timeout, lambda line: print(line, file=sys.stderr, flush=True))
        if deadline is not None and time.monotonic() + args.interval > deadline:
            return EXIT_OK
        time.sleep(args.interval)


def register(sub: Any) -> None:
    p = command(
        sub,
        "watch",
        "  git jobs watch --branch main\n"
        '  git jobs watch --sync origin --notify \'notify-send "git jobs" "$GIT_JOBS_OUTCOME"\'\n'
        "  git config jobs.notify 'curl -fsS -d @- https://chat.example/hook' && git jobs watch\n",
        _watch,
        "Each look reads the verdict (as `git jobs status`) of the branch's newest --depth commits.\n"
        "The first look is the baseline; after it, a line is printed for every commit whose\n"
        "outcome changed, and for a new commit that arrives with a final outcome. With --notify\n"
        "CMD (else `git config jobs.notify`), CMD runs through /bin/sh for each change with the\n"
        "change as JSON on stdin and GIT_JOBS_COMMIT, GIT_JOBS_OUTCOME, GIT_JOBS_PREVIOUS,\n"
        "GIT_JOBS_BRANCH, GIT_JOBS_SUBJECT, GIT_JOBS_EXIT in its environment; it is killed after\n"
        "jobs.notifyTimeout seconds (30), and its failure is one line on stderr, never the end\n"
        "of the watch.",
    )
    p.add_argument("--branch", metavar="B", help="The branch (default: the current one).")
    p.add_argument(
        "--depth",
        type=int,
        default=DEFAULT_DEPTH,
        metavar="N",
        help=f"How many of its newest commits to follow ({DEFAULT_DEPTH}).",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL,
        metavar="S",
        help=f"Seconds between looks ({DEFAULT_INTERVAL:g}).",
    )
    p.add_argument("--sync", metavar="REMOTE", help="Fetch from REMOTE before every look.")
    p.add_argument("--notify", metavar="CMD", help="Run CMD for each change (default: jobs.notify).")
    p.add_argument("--timeout", type=float, metavar="S", help="Stop after S seconds (exit 0).")
