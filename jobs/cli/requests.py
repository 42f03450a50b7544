"""`git jobs rerun`: ask every node to run jobs of a commit again, with fresh attempts.

A thin wrapper over :meth:`jobs.store.JobMut.rerun` (a signed ``rerun`` op per selected job).
Nodes honour it only when this node may request work under their trust policy
(:mod:`jobs.requests`); it is then also a request to run the commit at all.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..model import Job
from ..policy import Policy
from ..text import safe
from .common import add_json, command, open_jobs, print_json
from .errors import EXIT_OK, CliError


def _failed(job: Job, policy: Policy) -> bool:
    """Did a trusted node's latest run of ``job`` fail (failed, timed out, error, cancelled)?"""
    for nid, runs in job.runs().items():
        latest = runs.latest()
        if policy.trusts(nid) and latest is not None and latest[1].failed:
            return True
    return False


def _selected(args: argparse.Namespace, store: Any, sha: str) -> list[Job]:
    jobs = store.find_by_commit(sha)
    names = list(dict.fromkeys(args.job or []))
    existing = {j.name for j in jobs}
    if args.failed:
        missing = [n for n in names if n not in existing]
        if missing:
            raise CliError(f"no job {safe(missing[0])!r} on commit {sha[:12]}")
    else:
        # `--job NAME` of a job nobody created yet: create it (this is a request to run it)
        jobs += [store.create(sha, n) for n in names if n not in existing]
    if not jobs:
        raise CliError(f"no jobs on commit {sha[:12]} (`git jobs release {sha[:12]}` creates them)")
    chosen = [j for j in jobs if not names or j.name in names]
    if args.failed:
        policy = store.policy()
        chosen = [j for j in chosen if _failed(j, policy)]
    return sorted(chosen, key=lambda j: (j.name, j.id))


def _rerun(args: argparse.Namespace) -> int:
    store = open_jobs(args, write=True)
    sha = store.resolve_commit(args.rev)
    chosen = _selected(args, store, sha)
    for job in chosen:
        mut = store.get_mut(job.id)
        if mut is None:  # pragma: no cover - it was just read
            raise CliError(f"job {job.id[:12]} vanished")
        mut.rerun()
    nid = store.signer.nid if store.signer is not None else ""
    policy = store.policy()
    honoured = policy.may_request(nid)
    if args.json:
        print_json(
            {
                "commit": sha,
                "node": nid,
                "may_request": honoured,
                "jobs": [{"id": j.id, "name": j.name} for j in chosen],
            }
        )
    elif not chosen:
        print(f"no job of commit {sha[:12]} failed on a trusted node: nothing to rerun", file=sys.stderr)
    else:
        for job in chosen:
            print(f"{job.id}  {safe(job.name):<16} rerun requested")
    if chosen and not honoured:
        why = "there is no trust policy here" if policy.everyone else "it is not a requester here"
        print(
            f"note: nodes honour this only if this node ({nid}) may request work there; {why}",
            file=sys.stderr,
        )
    return EXIT_OK


def register(sub: Any) -> None:
    p = command(
        sub,
        "rerun",
        "  git jobs rerun HEAD                # every job of HEAD\n"
        "  git jobs rerun main --failed       # the jobs whose trusted latest run failed\n"
        "  git jobs rerun v1.2 --job test     # one job (created if needed)\n"
        "  git jobs rerun HEAD --failed && git jobs sync origin\n",
        _rerun,
        "Writes a signed `rerun` op on each chosen job in this node's namespace; share it with"
        " `git jobs sync`. A node honours it only if this node may request work under that node's"
        " trust policy (its `requesters` list; nobody without one): it then"
        " works on the commit, and its runs of the job started before it saw the rerun no longer"
        " count, so a job whose retries were used up runs again.",
    )
    p.add_argument("rev", metavar="REV", help="The commit.")
    p.add_argument(
        "--job", action="append", metavar="NAME", help="Only this job (repeatable; default: every job)."
    )
    p.add_argument(
        "--failed", action="store_true", help="Only jobs whose latest run on a trusted node failed."
    )
    add_json(p)
