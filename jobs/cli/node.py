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
from typing import Any

from .. import identity
from ..assign import ALL, assignment_mode, label
from ..errors import PolicyError
from ..node import Workshop, release
from ..node.candidates import Candidate, select
from ..node.config import labels_config, load_config, slots_config
from ..node.daemon import Node
from ..node.follow import FOLLOW_ROOT, fetch
from ..node.isolation import load_isolation
from ..node.plan import ELSEWHERE, PlanItem
from ..node.trigger import trigger
from ..node.work import WorkReport
from ..requests import Reruns, fetch_requested, trusted_requesters
from ..store import Jobs
from ..text import safe
from .common import add_command, add_json, command, open_jobs, open_repo, print_json
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
    made = release(store, defs, ask=True)  # a person's release: a request to other nodes
    if args.json:
        print_json({"commit": sha, "jobs": [{"id": j.id, "name": j.name, "new": new} for j, new in made]})
    else:
        for job, new in made:
            print(f"{job.id}  {safe(job.name):<16} {'released' if new else 'exists'}")
    why = _not_a_requester(store)
    if why:
        print(
            f"note: other nodes will not honour this release ({why}); it asks nobody to build it",
            file=sys.stderr,
        )
    return EXIT_OK


def _not_a_requester(store: Jobs) -> str:
    """Why this key's requests are not honoured by the nodes here (or "": they are)."""
    assert store.signer is not None
    try:
        policy = store.policy()
    except PolicyError:
        return "the trust policy does not validate"
    if policy.everyone:
        return "there is no trust policy here: nodes build only what they follow"
    if not policy.may_request(store.signer.nid):
        return "this key is not a requester in the trust policy"
    return ""


def _targets(args: argparse.Namespace, workshop: Workshop, requesters: frozenset[str]) -> list[Candidate]:
    """The commits named (default HEAD), with --follow the followed tips fetched now, and with
    --requested the commits trusted requesters asked for. With none of those, a node set to
    follow refs (git config jobs.follow) works on what it follows, as `git jobs node` does."""
    store = workshop.jobs
    config = load_config(store.repo, follows=args.follow, depth=args.depth) if args.follow else None
    if config is None and not args.revs and not args.requested:
        configured = load_config(store.repo)
        config = configured if configured.follows else None
    if config is not None and config.follows and not args.dry_run:  # a dry run writes nothing
        fetch(store.repo, config.follows)
    if args.requested and requesters and not args.dry_run:  # requested commits it lacks
        remotes = load_config(store.repo).remotes
        names = [str(n) for n in store.repo.remotes.names()]
        # no jobs.remote: origin, or the only remote (as `git jobs sync` picks one)
        default = ["origin"] if "origin" in names else names if len(names) == 1 else []
        for remote in remotes or default:
            fetch_requested(store, requesters, remote)
    revs = list(args.revs) or ([] if config is not None or args.requested else [args.rev])
    follows = config.follows if config is not None else []
    asked = requesters if args.requested else frozenset()
    depth = config.depth if config else 1
    own = workshop.nid if args.requested else None  # its own key's reruns ask it too
    return select(store, follows=follows, depth=depth, revs=revs, requesters=asked, me=workshop.nid, own=own)


def _plan_json(workshop: Workshop, target: Candidate) -> dict[str, Any]:
    """``work`` is what a pass would do now (run or record a skip); ``waiting``, retries not due;
    ``assignment`` whether the work is shared, and each job's ``assigned`` nodes (jobs.assign)."""
    sha, defs = workshop.definitions(target.commit)
    workshop.note_source(sha, target.source)
    plan = workshop.plan(defs) if defs is not None else []
    shares = workshop.sharing.shares(defs, workshop.clock()) if defs is not None else None
    table = shares.jobs if shares is not None else {}

    def item(p: PlanItem) -> dict[str, Any]:
        a = table.get(p.name)
        return {**p.to_json(), "assigned": list(a.assigned) if a is not None else None}

    return {
        "commit": sha,
        "source": target.source,
        "node": workshop.nid,
        "defined": defs is not None,
        "assignment": shares.to_json() if shares is not None else None,
        "work": [item(p) for p in plan if p.action in ("run", "skip")],
        "waiting": [item(p) for p in plan if p.action == "wait"],
        "jobs": [item(p) for p in plan],
        "names": {n: label(shares.policy, n) for n in _nodes(table.values())} if shares else {},
    }


def _nodes(assignments: Any) -> list[str]:
    return sorted({n for a in assignments for n in a.assigned})


def _print_plan(plan: dict[str, Any]) -> None:
    """A dry run for people: one line per job, who it is assigned to, when a retry is due (UTC)."""
    sha = plan["commit"][:12]
    if not plan["defined"]:
        print(f"no .git-jobs.toml in commit {sha}: nothing to do")
        return
    print(f"commit {sha}: {len(plan['work'])} of {len(plan['jobs'])} jobs to do now (dry run: nothing runs)")
    assignment = plan["assignment"]
    print(f"  assignment: {assignment['mode']} ({safe(assignment['why'])})")
    for p in plan["jobs"]:
        when = f" at {p['not_before'][:19]}Z" if p["not_before"] and p["action"] == "wait" else ""
        mine = ""
        if p["assigned"] and p["action"] != ELSEWHERE:
            who = ["this node" if n == plan["node"] else plan["names"][n] for n in p["assigned"]]
            mine = f" (assigned to {', '.join(who)})"
        print(f"  {safe(p['name']):<16} {p['action']:<10} {safe(p['reason'])}{when}{safe(mine)}")


def _report_json(workshop: Workshop, report: WorkReport, source: str) -> dict[str, Any]:
    return {
        "commit": report.commit,
        "source": source,
        "node": workshop.nid,
        "interrupted": report.interrupted,
        "recovered": [_outcome(o) for o in report.recovered],
        "runs": [_outcome(o) for o in report.outcomes],
        "jobs": [p.to_json() for p in report.plan],
    }


def _exit_code(reports: list[WorkReport]) -> int:
    """Each commit's code (0 all done, 8 work remains, 1 failed), the worst of them overall."""
    codes = {EXIT_OK}
    for r in reports:
        if r.interrupted:
            return 130
        if r.ok:
            continue
        pending = any(p.action in ("run", "skip", "wait", "blocked", "running") for p in r.plan)
        codes.add(EXIT_PENDING if pending else EXIT_FAILED)
    return next(c for c in (EXIT_FAILED, EXIT_PENDING, EXIT_OK) if c in codes)


def _work_any(args: argparse.Namespace) -> int:
    store = open_jobs(args, write=not args.dry_run)
    if store.signer is None:
        raise CliError("a dry run still needs this node's key, to know which runs are its own")
    if args.depth is not None and not args.follow:
        raise CliError("--depth needs --follow (it counts commits per followed tip)")
    requesters = trusted_requesters(store, lambda line: print(line, file=sys.stderr))
    workshop = _workshop(args, store, requesters)
    targets = _targets(args, workshop, requesters)
    many = bool(args.follow) or args.requested or len(targets) != 1 or _follows(targets)
    if args.dry_run:
        plans = [_plan_json(workshop, t) for t in targets]
        if args.json:
            print_json({"node": workshop.nid, "commits": plans} if many else plans[0])
        else:
            for plan in plans:
                _print_plan(plan)
    else:
        reports = _run_targets(workshop, targets, args.comprehensive)
        _print_reports(args, workshop, reports, many)
    if many and not targets:
        what = "no trusted request" if args.requested and not args.follow else "no followed ref matched"
        print(f"nothing to work on: {what}", file=sys.stderr)
    if args.dry_run:
        return EXIT_OK
    return _exit_code([r for r, _ in reports])


def _follows(targets: list[Candidate]) -> bool:
    return any(t.source.startswith(FOLLOW_ROOT) for t in targets)


def _workshop(args: argparse.Namespace, store: Jobs, requesters: frozenset[str]) -> Workshop:
    """This node's workshop as the flags and git config say (a bad setting: exit 2)."""
    assert store.signer is not None
    # a dry run runs nothing, so a bad isolation setting does not stop it
    isolation = None if args.dry_run else load_isolation(store.repo, args.isolation, key=store.signer.path)
    parallel, resources = slots_config(store.repo, args.jobs, args.resource)
    return Workshop(
        store,
        out=None if args.json else _say,
        rerun_held=args.rerun_held,
        isolation=isolation,
        reruns=Reruns(store.repo, requesters),
        assignment=assignment_mode(store.repo, ALL if args.all else None),
        parallel=parallel,
        resources=resources,
        labels=labels_config(store.repo, args.label),
    )


def _run_targets(
    workshop: Workshop, targets: list[Candidate], comprehensive: bool
) -> list[tuple[WorkReport, str]]:
    """One pass (or until done) on each commit, stopping at an interruption."""
    reports: list[tuple[WorkReport, str]] = []
    # Ctrl-C or SIGTERM: the job (in its own process group) is killed and finished `cancelled`.
    previous = {sig: signal.signal(sig, lambda *_: workshop.cancel.set()) for sig in _STOP_SIGNALS}
    try:
        for target in targets:
            report = workshop.work_any(target.commit, comprehensive=comprehensive, source=target.source)
            reports.append((report, target.source))
            if not report.defined:
                print(f"no .git-jobs.toml in commit {report.commit[:12]}: nothing to do", file=sys.stderr)
            if report.interrupted:
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return reports


def _print_reports(
    args: argparse.Namespace, workshop: Workshop, reports: list[tuple[WorkReport, str]], many: bool
) -> None:
    if args.json:
        shown = [_report_json(workshop, r, why) for r, why in reports]
        print_json({"node": workshop.nid, "commits": shown} if many else shown[0])
        return
    for report, _ in reports:
        for p in report.plan:
            if p.action not in ("done",):
                prefix = f"{report.commit[:12]} " if many else ""
                print(f"{prefix}{safe(p.name):<16} {p.action:<10} {safe(p.reason)}")


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
    requesters = trusted_requesters(store, lambda line: print(line, file=sys.stderr))
    isolation = load_isolation(store.repo, None, key=store.signer.path)
    workshop = Workshop(store, isolation=isolation, reruns=Reruns(store.repo, requesters))
    config = load_config(store.repo)
    out = None if args.json else _say
    results = trigger(
        workshop,
        intent=args.intent,
        follows=config.follows,
        depth=config.depth,
        out=out,
        requesters=requesters,
    )
    if args.json:
        print_json(
            [{"commit": r.commit, "ok": r.ok, "triggered": r.triggered, "detail": r.detail} for r in results]
        )
    elif not results:
        print("no other commit has outstanding work", file=sys.stderr)
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def _node(args: argparse.Namespace) -> int:
    repo = open_repo()
    config = load_config(
        repo,
        remotes=args.remote,
        follows=args.follow,
        depth=args.depth,
        interval=args.interval,
        isolation=args.isolation,
        parallel=args.jobs,
        resources=args.resource,
        labels=args.label,
    )
    signer = identity.load_signer(repo, getattr(args, "key", None))
    from ..notify import notify_config

    try:
        notify, notify_timeout = notify_config(repo)
    except ValueError as e:
        raise CliError(str(e)) from None
    node = Node(
        repo.workdir or repo.path,
        signer,
        config.remotes,
        config.interval,
        follows=config.follows,
        depth=config.depth,
        isolation_mode=config.isolation,
        parallel=config.parallel,
        resources=config.resources,
        labels=config.labels,
        assignment=assignment_mode(repo, ALL if args.all else None),
        notify=notify,
        notify_timeout=notify_timeout,
    )
    return node.run()


def _slot_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--jobs", default=None, metavar="N", help="Run up to N independent jobs at once (default 1)."
    )
    p.add_argument(
        "--resource",
        action="append",
        metavar="NAME=N",
        help="Capacity of a named resource that jobs list in `resources` (repeatable).",
    )
    p.add_argument(
        "--label",
        action="append",
        metavar="NAME",
        help="A label of this node for jobs' `runs_on`, beside its OS and architecture (repeatable).",
    )


def _work_help(parser: argparse.ArgumentParser) -> Any:
    def handler(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return handler


def register(sub: Any) -> None:
    _register_release(sub)
    work = command(
        sub,
        "work",
        "  git jobs work any\n  git jobs work any --dry-run\n  git jobs work trigger --intent\n",
        None,
    )
    work.set_defaults(handler=_work_help(work))
    inner = work.add_subparsers(dest="work_command", metavar="WHAT", parser_class=type(work))
    _register_work_any(inner)
    _register_trigger(inner)
    _register_node(sub)


def _register_release(sub: Any) -> None:
    p = command(
        sub,
        "release",
        "  git jobs release            # the jobs of HEAD\n  git jobs release v1.2 --json\n",
        _release,
        "Signs a release of each job that asks other nodes to run it (a request): nodes honour it\n"
        "when their policy names this key in `requesters` (docs/TRUST.md). A node's own release\n"
        "of what it works on is not a request.",
    )
    p.add_argument("rev", nargs="?", default="HEAD", metavar="REV", help="The commit (default HEAD).")
    add_json(p)


def _run_flags(p: argparse.ArgumentParser) -> None:
    """What `work any` and `node` share: how jobs run here, and which of them."""
    p.add_argument("--isolation", choices=("bwrap", "none"), help="Override git config jobs.isolation.")
    _slot_flags(p)
    p.add_argument(
        "--all",
        action="store_true",
        help="Run every job, not only those the policy assigns to this node (git config"
        " jobs.assignment all).",
    )


def _register_work_any(inner: Any) -> None:
    p = add_command(
        inner,
        "any",
        "For HEAD (or REVs, or followed refs), run every job this node has not completed"
        " successfully, in needs order.",
        "  git jobs work any                  # one pass for HEAD\n"
        "  git jobs work any v1.2 main~1      # for these revisions\n"
        "  git jobs work any --follow origin:refs/heads/main --depth 3\n"
        "  git jobs work any --requested      # what trusted requesters asked for\n"
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
    p.add_argument("revs", nargs="*", metavar="REV", help="Commits to work on (default HEAD).")
    p.add_argument(
        "--requested",
        action="store_true",
        help="Also the commits trusted requesters asked for (git jobs release/rerun); not HEAD.",
    )
    p.add_argument("--rev", default="HEAD", help=argparse.SUPPRESS)
    p.add_argument(
        "--follow",
        action="append",
        metavar="R:REFSPEC",
        help="Fetch REFSPEC from remote R now and work on its tip (repeatable).",
    )
    p.add_argument(
        "--depth", default=None, metavar="N", help="With --follow: N first-parent commits per tip."
    )
    p.add_argument(
        "--dry-run", action="store_true", help="Print what a pass would do (JSON with --json); write nothing."
    )
    p.add_argument("--comprehensive", action="store_true", help="Repeat until nothing is left.")
    _run_flags(p)
    add_json(p)


def _register_trigger(inner: Any) -> None:
    p = add_command(
        inner,
        "trigger",
        "Call the [trigger] command of every other commit with outstanding work, once each.",
        "  git jobs work trigger\n  git jobs work trigger --intent   # branch tips only\n",
        _work_trigger,
    )
    p.add_argument("--intent", action="store_true", help="Only the tips of local branches and followed refs.")
    add_json(p)


def _register_node(sub: Any) -> None:
    p = command(
        sub,
        "node",
        "  git jobs node --remote origin --follow refs/heads/main\n"
        "  git jobs node --remote git://hub.example/repo.git --follow 'refs/heads/*' --interval 10s\n"
        "  git jobs node                   # remotes and follows from git config jobs.remote/jobs.follow\n",
        _node,
    )
    p.add_argument(
        "--remote",
        action="append",
        metavar="R",
        help="A remote name or URL to sync with (repeatable; default: git config jobs.remote).",
    )
    p.add_argument(
        "--follow",
        action="append",
        metavar="REFSPEC",
        help="Build the tips of these refs of the remotes, e.g. refs/heads/main (repeatable;"
        " R:REFSPEC for one remote; default: git config jobs.follow; none: HEAD).",
    )
    p.add_argument(
        "--depth", default=None, metavar="N", help="First-parent commits per followed tip (default 1)."
    )
    p.add_argument("--interval", default=None, help="How often each worker runs (default 30s).")
    _run_flags(p)
