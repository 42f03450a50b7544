"""`git jobs show`, `list`, `status`, `verify`: what a maintainer reads.

Every command here takes ``--json`` (shapes in docs/CLI.md, built by :mod:`jobs.summary` so
the library gives the same answer). Text output uses short ids (12 hex digits, like
``git log --abbrev=12``), short node ids (``z6MkhaX…aRvkTcn``) and colour only on a terminal.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pygit2
from pygit2.enums import SortMode

import cob

from ..errors import PolicyError
from ..evidence import evidence_lines
from ..gate import GateStatus
from ..names import resolve_node
from ..ops import help_lines
from ..policy import Policy
from ..store import Jobs
from ..summary import (
    flaky_attempts,
    job_json,
    job_state,
    rejection_json,
    run_state,
)
from ..text import safe
from .common import Style, add_json, command, open_jobs, print_json, short
from .errors import EXIT_FAILED, EXIT_OK, CliError
from .statusview import render_status, run_duration, subject

__all__ = ["register", "render_status", "subject"]


def _utc(when: datetime | None) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if when else "-"


def _you(nid: str | None, me: str | None) -> str:
    return " (you)" if nid is not None and nid == me else ""


# -- status ---------------------------------------------------------------------------------
DEFAULT_INTERVAL = 2.0  # seconds between looks of --watch


def _status_once(store: Jobs, args: argparse.Namespace, policy: Policy) -> GateStatus:
    return store.status(args.rev, policy=policy, all_nodes=args.all_nodes)


# Flags that belong to one view of `status`: given to another, they are refused, not ignored.
_WATCH_ONLY = ("interval", "timeout", "fail_fast")
_BRANCH_ONLY = ("limit", "page")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_status_flags(args: argparse.Namespace) -> None:
    """Refuse a flag the chosen view cannot honour (one line, exit 2): every flag of `status`
    either works with the view asked for (one commit, ``--watch``, ``--branch``/``A..B``,
    ``--json``) or is refused here. ``--sync``, ``--all-nodes`` and ``--json`` work with all."""
    branch_view = bool(args.branch) or (args.rev is not None and ".." in args.rev)
    if args.branch and args.rev is not None:
        raise CliError(f"--branch {args.branch} lists a branch; give REV or --branch, not both")
    if branch_view and args.watch:
        raise CliError("--watch follows one commit; it does not combine with --branch or a range")
    for name in _WATCH_ONLY:
        if getattr(args, name) not in (None, False) and not args.watch:
            raise CliError(f"{_flag(name)} goes with --watch")
    for name in _BRANCH_ONLY:
        if getattr(args, name) is not None and not branch_view:
            raise CliError(f"{_flag(name)} goes with --branch B or a range A..B")
    if args.interval is not None and (not math.isfinite(args.interval) or not 0 < args.interval <= 86400):
        raise CliError(f"--interval must be a number of seconds from 0 to 86400, not {args.interval}")
    if args.timeout is not None and (not math.isfinite(args.timeout) or not 0 < args.timeout <= 7 * 86400):
        raise CliError(f"--timeout must be a number of seconds from 0 to 604800, not {args.timeout}")


def _status(args: argparse.Namespace) -> int:
    check_status_flags(args)
    if args.branch or (args.rev is not None and ".." in args.rev):
        from .branchlist import status_branch

        return status_branch(args)
    args.rev = args.rev if args.rev is not None else "HEAD"
    args.interval = args.interval if args.interval is not None else DEFAULT_INTERVAL
    store = open_jobs(args)
    me = store.signer.nid if store.signer else None
    policy = store.policy()
    if args.sync:  # the first look must already see what the remote has
        store.sync(args.sync, push=False)
    status = _status_once(store, args, policy)
    if args.watch:
        status = _watch(store, args, status, policy, me)
    if args.json:
        from ..node.progress import node_progress  # the node's planner: only for --json

        shown = status.to_json()
        node = me if me is not None and policy.trusts(me) else None  # nodes only: not a reader's key
        shown["progress"] = node_progress(  # per node: queued, running, …
            store, status.commit, node, requesters=policy.requesters
        )
        print_json(shown)
    elif not args.watch:
        print("\n".join(render_status(status, Style(), me=me, title=subject(store, status.commit))))
    return status.exit_code


def _watch(
    store: Jobs, args: argparse.Namespace, status: GateStatus, policy: Policy, me: str | None
) -> GateStatus:
    """Re-read the refs every ``--interval`` seconds until the verdict is in (or ``--timeout``).

    On a terminal the screen is redrawn; into a pipe a new table is printed only when it
    changed. Runs arrive in the local refs from a node running here, or from `git jobs sync` /
    `git fetch` run by anyone; with ``--sync REMOTE`` each look fetches first. The policy is
    read once, at the start.
    """
    style = Style()
    tty = sys.stdout.isatty()
    last: dict[str, Any] | None = None
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    while True:
        snapshot = status.to_json()
        if not args.json:
            lines = render_status(status, style, me=me, title=subject(store, status.commit))
            if tty:
                clock = datetime.now().strftime("%H:%M:%S")
                sys.stdout.write("\x1b[H\x1b[2J")
                print(f"Refreshing every {args.interval:g}s (Ctrl-C to stop) — {clock}\n")
                print("\n".join(lines))
            elif snapshot != last:  # durations tick; print again only when a run moved
                if last is not None:
                    print()
                print("\n".join(lines))
            sys.stdout.flush()
            last = snapshot
        if not status.pending or (args.fail_fast and status.outcome == "failed"):
            return status
        if deadline is not None and time.monotonic() + args.interval > deadline:
            print(f"timed out after {args.timeout:g}s: still {status.outcome}", file=sys.stderr)
            return status
        time.sleep(args.interval)
        if args.sync:
            store.sync(args.sync, push=False)
        status = _status_once(store, args, policy)


def _trusted_names(store: Jobs) -> dict[str, str]:
    """Names for `show`: a policy that does not validate only costs the names here (`status`
    and `trust list` report it)."""
    try:
        return store.policy().trusted
    except PolicyError:
        return {}


# -- show -----------------------------------------------------------------------------------
def _show(args: argparse.Namespace) -> int:
    store = open_jobs(args)
    job = store.get(store.resolve(args.job))
    if job is None:
        raise CliError(f"no job {args.job!r}")
    if args.json:
        print_json(job_json(job))
        return EXIT_OK
    me = store.signer.nid if store.signer else None
    style = Style()
    runs = job.runs()
    total = sum(len(r) for r in runs.values())
    print(f"job      {style(job.id, 'yellow')}")
    print(f"name     {safe(job.name)}")
    print(f"commit   {job.commit}  {subject(store, job.commit)}".rstrip())
    print(f"state    {style.state(job_state(job))}")
    print(f"runs     {total} on {len(runs)} node{'s' if len(runs) != 1 else ''}")
    now = time.time()
    names = _trusted_names(store) if runs else {}
    for nid, node_runs in runs.items():
        print()
        label = f"  {safe(names[nid])}" if names.get(nid) else ""
        print(f"node {style(nid, 'cyan')}{label}{_you(nid, me)}")
        flaky = flaky_attempts(node_runs)
        if flaky:
            plural = "s" if flaky > 1 else ""
            print(f"  {style('flaky', 'yellow')}: passed only after {flaky} failed attempt{plural}")
        for run_id, run in node_runs.items():
            state = run_state(run)
            arrow = "→" if style.unicode else "->"
            took = run_duration(run, now)
            when = (
                f"{_utc(run.started_at)} {arrow} {_utc(run.finished_at)} ({took})"
                if run.finished_at
                else f"{_utc(run.started_at)} (for {took})"
            )
            print(f"  {style.symbol(state)} {run_id}  {style.state(state)}  {when}")
            print(f"      {safe(run.log)}")
            for line in evidence_lines(run.evidence):
                print(f"      {line}")
            for name, value in sorted((run.values or {}).items()):  # escaped: the job's own text
                print(f"      output  {safe(name)}={safe(value)}")
    for nid, fanned in job.fanouts().items():
        print(f"\nfanout by {style(nid, 'cyan')}: {', '.join(safe(n) for n in fanned)}")
    if job.rejected:
        print()
        print(style(f"rejected {len(job.rejected)} change(s):", "red"))
        for r in job.rejected:
            print(f"  change {short(r.change)}: {safe(r.reason)}")
    return EXIT_OK


# -- list -----------------------------------------------------------------------------------
WALK_LIMIT = 10_000  # commits of HEAD's history walked to order `list`; older ones go by time


def _order(store: Jobs, commits: set[str]) -> dict[str, tuple[int, int, str]]:
    """A sort key per commit: HEAD's history first, newest first (as `git log`), then the
    rest by commit time, newest first; commits not in this repository last."""
    repo = store.repo
    rank: dict[str, int] = {}
    try:
        walker: Any = repo.walk(repo.head.target, SortMode.TOPOLOGICAL | SortMode.TIME)
    except (pygit2.GitError, KeyError, ValueError):
        walker = ()
    for i, c in enumerate(walker):
        if i >= WALK_LIMIT or len(rank) == len(commits):
            break
        if str(c.id) in commits:
            rank[str(c.id)] = i
    out = {}
    for commit in commits:
        if commit in rank:
            out[commit] = (0, rank[commit], commit)
            continue
        try:
            obj: Any = repo.get(commit)
            when = int(obj.commit_time) if obj is not None else None
        except (ValueError, AttributeError, KeyError):
            when = None
        out[commit] = (1, -when, commit) if when is not None else (2, 0, commit)
    return out


def _list(args: argparse.Namespace) -> int:
    store = open_jobs(args)
    node = cob.normalize_nid(resolve_node(store, args.node)) if args.node else None  # a name too
    commit = store.resolve_commit(args.commit, must_exist=False) if args.commit else None
    found = store.listing(commit)  # small rows, not every job's state (jobs.listing)
    if args.name:
        found = [j for j in found if j.name == args.name]
    if node:
        found = [j for j in found if node in j.nodes]
    order = _order(store, {j.commit for j in found})
    found.sort(key=lambda j: (order[j.commit], j.name, j.id))
    if args.json:
        print_json([j.to_json() for j in found])
        return EXIT_OK
    style = Style()
    if not found:
        return EXIT_OK
    name_w = max(len(j.name) for j in found)
    state_w = max(len(j.state) for j in found)
    for j in found:
        total, nodes = j.runs, len(j.nodes)
        detail = f"{total} run{'s' if total != 1 else ''} on {nodes} node{'s' if nodes != 1 else ''}"
        if j.rejected:
            detail += style(f", {j.rejected} rejected", "red")
        print(
            f"{style(short(j.id), 'yellow')}  {short(j.commit)}  {safe(j.name):<{name_w}}  "
            f"{style.state(j.state, f'{j.state:<{state_w}}')}  {detail}"
        )
    return EXIT_OK


# -- verify ---------------------------------------------------------------------------------
def _verify(args: argparse.Namespace) -> int:
    if args.bundle is not None:
        from .provenance import verify_bundle

        return verify_bundle(args)
    if args.rev is not None:
        raise CliError("REV goes with --bundle FILE")
    store = open_jobs(args)
    count = store.count()
    rejected = store.rejected()
    if args.json:
        print_json({"jobs": count, "rejected": [rejection_json(r) for r in rejected]})
    else:
        style = Style()
        for r in rejected:
            print(f"job {short(r.object_id)} change {short(r.change)}: {safe(r.reason)}")
        verdict = (
            style(f"{len(rejected)} rejected change(s)", "red")
            if rejected
            else style("every change verified", "green")
        )
        print(f"verified {count} job{'s' if count != 1 else ''}: {verdict}")
    return EXIT_FAILED if rejected else EXIT_OK


def register(sub: Any) -> None:
    _register_show(sub)
    _register_list(sub)
    _register_status(sub)
    _register_verify(sub)


# What a job's changes carry, from the ops' own help lines (jobs.ops.OPS: written once).
_OPS_HELP = (
    "A job is a history of signed changes; each carries ops, and its commit message (`git log`)\n"
    "is their summaries. The ops (docs/FORMAT.md 11.1):\n" + "\n".join(f"  {line}" for line in help_lines())
)


def _register_show(sub: Any) -> None:
    p = command(
        sub,
        "show",
        "  git jobs show 3f2a1b9c\n"
        "  git jobs show HEAD:test\n"
        "  git jobs show main~2:build --json | jq '.runs[] | select(.state == \"failed\") | .log'\n",
        _show,
        _OPS_HELP,
    )
    p.add_argument("job", metavar="JOB", help="A unique job id prefix, or REV:NAME.")
    add_json(p)


def _register_list(sub: Any) -> None:
    p = command(
        sub,
        "list",
        "  git jobs list\n"
        "  git jobs list --commit HEAD\n"
        "  git jobs list --name test --node z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK\n"
        "  git jobs list --json | jq -r '.[] | select(.state == \"failed\") | .id'\n",
        _list,
    )
    p.add_argument("--commit", metavar="REV", help="Only jobs of this commit.")
    p.add_argument("--name", metavar="NAME", help="Only jobs with this name.")
    p.add_argument(
        "--node", metavar="NODE", help="Only jobs this node (its name as `status` prints it, or NID) has run."
    )
    add_json(p)


def _register_status(sub: Any) -> None:
    p = command(
        sub,
        "status",
        "  git jobs status                       # HEAD\n"
        "  git jobs status main~1\n"
        "  git jobs status --watch --interval 5  # until the verdict is in\n"
        "  git jobs status --watch --sync origin --timeout 3600  # fetch before every look\n"
        "  git jobs status --all-nodes           # count untrusted nodes' runs too\n"
        "  git jobs status v1.2 --json | jq .expected\n"
        "  git jobs status --branch main        # one line per commit, newest first\n"
        "  git jobs status v1.2..main --page 2\n",
        _status,
        "Only runs of nodes the policy trusts count (`git jobs trust list`; with no policy every\n"
        'node counts); others are shown as "not counted". Every required job (the policy\'s\n'
        "`required`, else the jobs the commit's .git-jobs.toml defines) needs `quorum` trusted\n"
        "passes; one with no trusted result yet is `expected`. Jobs nothing requires are shown\n"
        "but never block. A failure its node will retry (retry.max and retry.on) is `retrying`,\n"
        "not failed. Pending means someone will still act; anything else is final.\n\n"
        "exit status: 0 every required job passed; 1 a required job failed or is not built, a\n"
        "required job is not defined, the definitions do not parse, or nothing is required (no\n"
        "jobs defined); 8 still pending: running, retrying or expected.",
    )
    p.add_argument("rev", metavar="REV", nargs="?", default=None, help="The commit (default HEAD).")
    p.add_argument("--watch", action="store_true", help="Refresh until the verdict is in (nothing pending).")
    p.add_argument(
        "--interval", type=float, default=None, metavar="S", help="With --watch: seconds between looks (2)."
    )
    p.add_argument("--fail-fast", action="store_true", help="With --watch: stop at the first failure.")
    p.add_argument(
        "--sync", metavar="REMOTE", help="Fetch from REMOTE first (with --watch: before every look)."
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="With --watch: give up after S seconds (exit 8 if pending).",
    )
    p.add_argument("--all-nodes", action="store_true", help="Count every node's runs, trusted or not.")
    p.add_argument("--branch", metavar="B", help="One line per commit of branch B (or give REV as A..B).")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="With --branch: commits a page (20).")
    p.add_argument("--page", type=int, default=None, metavar="P", help="With --branch: which page (1).")
    add_json(p)


def _register_verify(sub: Any) -> None:
    p = command(
        sub,
        "verify",
        "  git jobs verify\n  git jobs verify --json | jq '.rejected | length'\n"
        "  git jobs verify --bundle evidence.bundle 3f2a1b9c  # offline: the gate from a bundle\n",
        _verify,
    )
    p.add_argument("rev", metavar="REV", nargs="?", default=None, help="With --bundle: the commit.")
    p.add_argument("--bundle", metavar="FILE", help="Check this evidence bundle and print its gate.")
    add_json(p)
