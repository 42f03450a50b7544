"""`git jobs sync [REMOTE]`: fetch every node's jobs, push this node's own.

Without REMOTE it syncs with ``origin``, or with the repository's only remote — what `git
fetch` / `git push` would pick. Refused refs and rejected changes are peer trouble, not a
failed sync: they are reported (and in ``--json``) but the exit code stays 0, so one hostile
peer cannot break every maintainer's cron job. Not reaching the remote is an error (2); a
sync that reached it but left this node's own results off it (a push refused, our own index
diverged beyond a merge) exits 4 (:data:`EXIT_UNPUBLISHED`), decided on the report's typed
:class:`~jobs.sync.Publication`, never on a message.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any

import cob

from .. import identity
from ..errors import SyncError
from ..store import Jobs
from ..sync import Publication, SyncReport
from ..text import safe
from .common import Style, add_json, command, open_jobs, open_repo, print_json, short
from .errors import EXIT_OK, EXIT_UNPUBLISHED, CliError


def default_remote(repo: Any) -> str:
    """``origin`` if configured, else the only remote; otherwise the user must name one."""
    names = list(repo.remotes.names())
    if "origin" in names:
        return "origin"
    if len(names) == 1:
        return str(names[0])
    if not names:
        raise CliError("no remote configured: name one (git jobs sync PATH-OR-URL)")
    raise CliError(f"several remotes and none is 'origin': name one of {', '.join(sorted(names))}")


def _open_for_sync(args: argparse.Namespace) -> Jobs:
    """With no key at all, sync fetches only (a maintainer's read-only mirror). A key that is
    configured but broken is an error: silently not pushing would hide this node's runs."""
    if args.no_push:
        return open_jobs(args)
    repo = open_repo()
    try:
        signer = identity.load_signer(repo, getattr(args, "key", None))
    except cob.NoKeyError:
        if args.no_fetch:
            raise
        signer = None
    return Jobs(cob.Store(repo, signer))


def _sync(args: argparse.Namespace) -> int:
    if args.no_fetch and args.no_push:
        raise CliError("--no-fetch and --no-push leave nothing to do")
    store = _open_for_sync(args)
    remote = args.remote or default_remote(store.repo)
    try:
        idle = args.idle_timeout
        if idle is not None and not 0 <= idle <= 86400:
            raise CliError(f"--idle-timeout must be a number of seconds from 0 to 86400, not {idle}")
        report = store.sync(
            remote,
            fetch=not args.no_fetch,
            push=not args.no_push,
            idle=None if idle is None else (idle or float("inf")),
        )
    except SyncError as e:
        partial = e.report
        if partial is not None and getattr(partial, "fetched", None):
            print(f"before the failure: {partial.summary()}", file=sys.stderr)  # type: ignore[attr-defined]
        raise
    code = EXIT_UNPUBLISHED if report.publication is Publication.UNPUBLISHED else EXIT_OK
    if args.json:
        print_json(report.to_json())
    else:
        print(safe(report.summary()))
        if store.signer is None and not args.no_push:
            print("no key: fetched only (run `git jobs init` to push this node's jobs)", file=sys.stderr)
        if args.verbose:
            _print_details(report)
        else:
            _print_counts(report)
    if report.policy_kept:
        print(f"warning: {report.policy_kept}", file=sys.stderr)
    line = report.unpublished_line()
    if line is not None:
        print(f"error: {safe(line)}", file=sys.stderr)
    return code


def _print_counts(report: SyncReport) -> None:
    """A first sync can change thousands of jobs: counts by kind, the list only with -v."""
    style = Style()
    kinds = Counter(f"{r.side} {r.kind}" for r in report.refused)
    if kinds:
        detail = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        print(f"  {style('refused', 'red')}  {len(report.refused)} refs ({safe(detail)})")
    if report.rejected:
        print(
            f"  {style('rejected', 'red')} {len(report.rejected)} changes of "
            f"{len({r.object_id for r in report.rejected})} jobs"
        )
    if report.refused or report.rejected or len(report.changed) > 0:
        print("  (--verbose lists every job, refusal and rejection; --json gives them all)")


def _print_details(report: SyncReport) -> None:
    style = Style()
    for job_id in report.changed:
        print(f"  changed  job {style(short(job_id), 'yellow')}")
    for refusal in report.refused:
        print(f"  {style('refused', 'red')}  {safe(refusal)}")
    for r in report.rejected:
        job, change = short(r.object_id), short(r.change)
        print(f"  {style('rejected', 'red')} job {job} change {change}: {safe(r.reason)}")


def register(sub: Any) -> None:
    p = command(
        sub,
        "sync",
        "  git jobs sync                         # origin, or the only remote\n"
        "  git jobs sync upstream\n"
        "  git jobs sync ../hub.git              # any URL git understands: path, file://, ssh://\n"
        "  git jobs sync --no-push --json | jq '.changed'\n",
        _sync,
        "Other nodes' trouble (refused refs, rejected changes) is reported, never a failure.\n\n"
        "exit status: 0 synced; 2 the remote could not be reached; 4 the remote was reached but\n"
        "this node's own results are not on it (a push refused, or its own index diverged\n"
        'beyond a merge): one line says why, and --json has "published": "unpublished".',
    )
    p.add_argument("remote", metavar="REMOTE", nargs="?", help="Remote name or URL.")
    p.add_argument("--no-push", action="store_true", help="Only fetch.")
    p.add_argument("--no-fetch", action="store_true", help="Only push this node's jobs.")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="List every changed job, refusal and rejection."
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        metavar="SECONDS",
        help="Stop a transfer that shows no progress for this long (default: git config "
        "jobs.idleTimeout, else 30; 0: never).",
    )
    add_json(p)
