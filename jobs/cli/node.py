"""`git jobs release`, `work any`, `work trigger`, `node`: the peer node's commands (`logs`: cli/logs.py).

Thin wrappers over :mod:`jobs.node` (the library API): they parse flags, print, and map the
result to an exit code. Exit codes of `work any`: 0 — every job of the commit has succeeded on
this node; 1 — some job failed, was skipped or used up its retries; 8 — work remains (a retry
is not due yet: run again later, or pass --comprehensive to wait for it); 130 — interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
from datetime import UTC, datetime
from typing import Any

import cob

from ..node import Workshop, parse_duration, release
from ..node.daemon import Node
from ..node.durations import DurationError
from ..node.trigger import trigger
from ..node.work import PlanItem
from ..text import safe
from .common import add_command, add_json, open_jobs, open_repo, print_json
from .errors import EXIT_FAILED, EXIT_OK, EXIT_PENDING, CliError

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _say(line: str) -> None:
    print(safe(line, keep_newlines=True), flush=True)  # job output: the commit's commands


def _release(args: argparse.Namespace) -> int:
    store = open_jobs(args, write=True)
    workshop = Workshop(store)
    sha, defs = workshop.definitions(args.rev)
    if defs is None:
        print(f"no .git-jobs.toml in commit {sha[:12]}: no jobs to release", file=sys.stderr)
        if args.json:
            print_json({"commit": sha, "jobs": []})
        return EXIT_OK
    made = release(store, defs)
    if args.json:
        print_json({"commit": sha, "jobs": [{"id": j.id, "name": j.name, "new": new} for j, new in made]})
    else:
        for job, new in made:
            print(f"{job.id}  {safe(job.name):<16} {'released' if new else 'exists'}")
    return EXIT_OK


def _work_any(args: argparse.Namespace) -> int:
    store = open_jobs(args, write=not args.dry_run)
    if store.signer is None:
        raise CliError("a dry run still needs this node's key, to know which runs are its own")
    workshop = Workshop(store, out=None if args.json else _say, rerun_held=args.rerun_held)
    sha, defs = workshop.definitions(args.rev)
    if args.dry_run:
        plan = workshop.plan(defs) if defs is not None else []
        if args.json:
            print_json(_plan_json(sha, store.signer.nid, defs is not None, plan))
        else:
            _print_plan(sha, defs is not None, plan)
        return EXIT_OK
    if defs is None:
        print(f"no .git-jobs.toml in commit {sha[:12]}: nothing to do", file=sys.stderr)
        return EXIT_OK
    # Ctrl-C or SIGTERM: the job (in its own process group) is killed and finished `cancelled`.
    previous = {sig: signal.signal(sig, lambda *_: workshop.cancel.set()) for sig in _STOP_SIGNALS}
    try:
        report = workshop.work_any(sha, comprehensive=args.comprehensive)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.json:
        print_json(
            {
                "commit": report.commit,
                "node": store.signer.nid,
                "interrupted": report.interrupted,
                "recovered": [_outcome(o) for o in report.recovered],
                "runs": [_outcome(o) for o in report.outcomes],
                "jobs": [p.to_json() for p in report.plan],
            }
        )
    else:
        for p in report.plan:
            if p.action not in ("done",):
                print(f"{safe(p.name):<16} {p.action:<10} {safe(p.reason)}")
    if report.interrupted:
        return 130
    if report.ok:
        return EXIT_OK
    if any(p.action in ("run", "skip", "wait", "blocked", "running") for p in report.plan):
        return EXIT_PENDING
    return EXIT_FAILED


def _plan_json(sha: str, nid: str, defined: bool, plan: list[PlanItem]) -> dict[str, Any]:
    """``work`` is what a pass would do now (run or record a skip); ``waiting``, retries not due."""
    return {
        "commit": sha,
        "node": nid,
        "defined": defined,
        "work": [p.to_json() for p in plan if p.action in ("run", "skip")],
        "waiting": [p.to_json() for p in plan if p.action == "wait"],
        "jobs": [p.to_json() for p in plan],
    }


def _print_plan(sha: str, defined: bool, plan: list[PlanItem]) -> None:
    if not defined:
        print(f"no .git-jobs.toml in commit {sha[:12]}: nothing to do")
        return
    now = [p for p in plan if p.action in ("run", "skip")]
    print(f"commit {sha[:12]}: {len(now)} of {len(plan)} jobs to do now (dry run: nothing runs)")
    for p in plan:
        when = ""
        if p.not_before is not None:
            when = " at " + datetime.fromtimestamp(p.not_before, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"  {safe(p.name):<16} {p.action:<10} {safe(p.reason)}{when}")


def _outcome(o: Any) -> dict[str, Any]:
    return {
        "job": o.job,
        "name": o.name,
        "run": o.run_id,
        "reason": o.reason.value,
        "log": o.log,
        "detail": o.detail,
    }


def _work_trigger(args: argparse.Namespace) -> int:
    store = open_jobs(args, write=False)
    if store.signer is None:
        raise CliError("`work trigger` needs this node's key, to know which work is outstanding here")
    results = trigger(Workshop(store), intent=args.intent, out=None if args.json else _say)
    if args.json:
        print_json([{"commit": r.commit, "ok": r.ok, "detail": r.detail} for r in results])
    elif not results:
        print("no other commit has outstanding work", file=sys.stderr)
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def _node(args: argparse.Namespace) -> int:
    try:
        interval = parse_duration(args.interval)
    except DurationError as e:
        raise CliError(f"--interval: {e}") from None
    repo = open_repo()
    signer = cob.Signer.load(repo, getattr(args, "key", None))
    node = Node(repo.workdir or repo.path, signer, list(args.remote), interval)
    return node.run()


def _work_help(parser: argparse.ArgumentParser) -> Any:
    def handler(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return handler


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "release",
        "Create the jobs that .git-jobs.toml at REV defines (idempotent).",
        "  git jobs release            # the jobs of HEAD\n  git jobs release v1.2 --json\n",
        _release,
    )
    p.add_argument("rev", nargs="?", default="HEAD", metavar="REV", help="The commit (default HEAD).")
    add_json(p)

    work = add_command(
        sub,
        "work",
        "Run this node's outstanding jobs (`work any`), or trigger other commits.",
        "  git jobs work any\n  git jobs work any --dry-run\n  git jobs work trigger --intent\n",
        None,
    )
    work.set_defaults(handler=_work_help(work))
    inner = work.add_subparsers(dest="work_command", metavar="WHAT", parser_class=type(work))
    p = add_command(
        inner,
        "any",
        "For HEAD, run every job this node has not completed successfully, in needs order.",
        "  git jobs work any                  # one pass\n"
        "  git jobs work any --comprehensive  # until nothing is left (waits for retries)\n"
        "  git jobs work any --dry-run        # print the plan, run nothing (--json for JSON)\n"
        "  git jobs work any --rerun-held     # also rerun jobs held after an interruption\n",
        _work_any,
    )
    p.add_argument(
        "--rerun-held",
        action="store_true",
        help="Rerun jobs that are not idempotent and whose last run was interrupted.",
    )
    p.add_argument("--rev", default="HEAD", help=argparse.SUPPRESS)
    p.add_argument(
        "--dry-run", action="store_true", help="Print what a pass would do (JSON with --json); write nothing."
    )
    p.add_argument("--comprehensive", action="store_true", help="Repeat until nothing is left.")
    add_json(p)
    p = add_command(
        inner,
        "trigger",
        "Call the [trigger] command of every other commit with outstanding work, once each.",
        "  git jobs work trigger\n  git jobs work trigger --intent   # branch tips only\n",
        _work_trigger,
    )
    p.add_argument("--intent", action="store_true", help="Only the tips of branches.")
    add_json(p)

    p = add_command(
        sub,
        "node",
        "Run a long-running peer: preflights, then sync, release, work and heartbeat workers.",
        "  git jobs node --remote origin\n"
        "  git jobs node --remote git://hub.example/repo.git --interval 10s\n",
        _node,
    )
    p.add_argument(
        "--remote",
        action="append",
        required=True,
        metavar="R",
        help="A remote name or URL to sync with (repeatable).",
    )
    p.add_argument("--interval", default="30s", help="How often each worker runs (default 30s).")
