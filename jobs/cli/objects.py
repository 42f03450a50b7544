"""`git jobs create`, `run`, `finish`: what a CI node (or a maintainer) writes.

Each prints the id it made on stdout — the full id, so scripts can pass it on — and nothing
else, like `git commit-tree`; every id given back may be shortened to a unique prefix.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

from .. import logs
from ..deadline import check_timeout, whole_seconds
from ..errors import UnknownRunError
from ..jobtype import check_finish_extras
from ..model import Job, run_prefix
from ..spec.durations import DurationError, parse_duration
from ..store import DEFAULT_NAME, JobMut, Jobs
from .common import add_json, command, open_jobs, print_json
from .errors import EXIT_OK, CliError


def job_for_write(store: Jobs, spec: str) -> JobMut:
    """The job named by a unique id prefix or REV:NAME, ready to write."""
    return store.resolve_mut(spec)


def resolve_run(job: Job, nid: str | None, spec: str) -> uuid.UUID:
    """A run id of ``job`` from a unique prefix (with or without dashes).

    This node's runs are matched first — only they can be finished here — so a prefix that
    is unique among this node's runs works even if another node has a run that also matches.
    """
    bare = run_prefix(spec)
    if bare is None:
        raise CliError(f"not a run id: {spec!r}")
    found_all = job.runs_by_prefix(bare)
    mine = [rid for n, rid, _ in found_all if nid is not None and n == nid]
    others = [rid for n, rid, _ in found_all if n != nid]
    for found in (mine, others):
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            shown = ", ".join(str(r) for r in sorted(found)[:5])
            raise CliError(f"run prefix {spec!r} is ambiguous: {shown}")
    raise UnknownRunError(f"job {job.id[:12]} has no run {spec!r}")


def _create(args: argparse.Namespace) -> int:
    store = open_jobs(args, write=True)
    commit = store.resolve_commit(args.rev)
    existed = any(j.name == args.name for j in store.find_by_commit(commit))
    job = store.create(commit, name=args.name)
    if args.json:
        print_json({"id": job.id, "commit": job.commit, "name": job.name, "new": not existed})
    else:
        print(job.id)
    return EXIT_OK


def _timeout(text: str | None) -> int | None:
    """``--timeout DURATION`` as the run op's whole seconds (1 s to 7 days)."""
    if text is None:
        return None
    try:
        seconds = whole_seconds(parse_duration(text))
    except DurationError as e:
        raise CliError(f"--timeout: {e}") from None
    problem = check_timeout(seconds)
    if problem:
        raise CliError(f"--timeout: {problem}")
    return seconds


def _run(args: argparse.Namespace) -> int:
    timeout = _timeout(args.timeout)
    store = open_jobs(args, write=True)
    job = job_for_write(store, args.job)
    run_id = job.run(args.log, timeout=timeout)
    assert store.signer is not None
    if args.json:
        print_json(
            {"job": job.id, "run": str(run_id), "node": store.signer.nid, "log": args.log, "timeout": timeout}
        )
    else:
        print(run_id)
    return EXIT_OK


def _finish(args: argparse.Namespace) -> int:
    store = open_jobs(args, write=True)
    assert store.signer is not None
    job = job_for_write(store, args.job)
    run_id = resolve_run(job, store.signer.nid, args.run)
    blob = None
    problem = check_finish_extras(None, args.exit)
    if problem:
        raise CliError(problem)
    current = job.runs_of(store.signer.nid).get(run_id)
    if args.log_file is not None and current is not None and current.is_finished:
        raise CliError(f"run {run_id} already finished: {current.reason.value if current.reason else '?'}")
    if args.log_file is not None:
        try:
            with open(args.log_file, "rb") as fh:
                data = fh.read(logs.MAX_MAX_BYTES + logs.CAP_SLACK + 1)
        except OSError as e:
            raise CliError(f"cannot read the log {args.log_file}: {e.strerror or e}") from None
        blob = logs.publish(store.repo, store.signer, run_id, data)
        if blob is None:
            print(
                "note: the log was not published (jobs.logs.publish is false, or its month was pruned)",
                file=sys.stderr,
            )
    job.finish(run_id, args.reason, log_blob=blob, exit_status=args.exit)
    if args.json:
        run = job.runs_of(store.signer.nid)[run_id]
        reason = run.reason.value if run.reason else None
        print_json(
            {
                "job": job.id,
                "run": str(run_id),
                "node": store.signer.nid,
                "reason": reason,
                "log_blob": run.log_blob,
                "exit": run.exit_status,
            }
        )
    return EXIT_OK


def register(sub: Any) -> None:
    p = command(
        sub,
        "create",
        "  git jobs create HEAD                  # the job 'ci' for HEAD\n"
        "  git jobs create v1.2 --name test      # any rev git resolves: branch, tag, short sha\n"
        "  JOB=$(git jobs create HEAD --name build)\n",
        _create,
    )
    p.add_argument("rev", metavar="REV", help="The commit (anything git resolves).")
    p.add_argument("--name", default=DEFAULT_NAME, help=f"The job's name (default: {DEFAULT_NAME}).")
    add_json(p)

    p = command(
        sub,
        "run",
        "  git jobs run 3f2a1b9c --log https://ci.example/logs/42\n"
        "  RUN=$(git jobs run HEAD:test --log file:///var/log/ci/42.txt)\n"
        "  git jobs run HEAD:test --log https://ci.example/43 --timeout 20m\n",
        _run,
    )
    p.add_argument("job", metavar="JOB", help="A unique job id prefix, or REV:NAME.")
    p.add_argument("--log", required=True, metavar="URL", help="Absolute URL of the run's log.")
    p.add_argument(
        "--timeout",
        metavar="DURATION",
        help="The deadline this node promises (30s, 20m, 2h; at most 7d): past it plus a grace,"
        " readers show the run lost. Default: none recorded, readers allow 6h.",
    )
    add_json(p)

    p = command(
        sub,
        "finish",
        "  git jobs finish HEAD:test 0190d3a4-7b1c succeeded\n"
        '  git jobs finish 3f2a1b9c "$RUN" failed --log-file out.log --exit 2\n',
        _finish,
    )
    p.add_argument("job", metavar="JOB", help="A unique job id prefix, or REV:NAME.")
    p.add_argument("run", metavar="RUN", help="The run id, or a unique prefix of it.")
    p.add_argument("reason", metavar="REASON", help="How it ended.")
    p.add_argument(
        "--log-file", metavar="FILE", help="Publish this file as the run's log (capped, redacted)."
    )
    p.add_argument("--exit", type=int, metavar="N", help="The command's exit status (0..255).")
    add_json(p)
