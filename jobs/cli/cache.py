"""`git jobs cache status | rebuild`: look at, or start afresh, the index in the git directory.

The index is an accelerator only (DESIGN.md "Cache"): queries keep it current by themselves,
so these commands are for curiosity, for reclaiming space, and for warming a fresh clone.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..jobtype import JOB_TYPE
from .common import add_command, add_json, command, open_jobs, print_json
from .errors import EXIT_OK, CliError


def _status(args: argparse.Namespace) -> int:
    info = open_jobs(args).store.cache_status(JOB_TYPE)
    assert info is not None  # the CLI always opens the store with its index
    if args.json:
        print_json(info)
        return EXIT_OK
    state = "current" if info["current"] else "stale (the next query updates it)"
    print(f"index:     {info['path']} ({info['bytes']:,} bytes)")
    print(f"jobs:      {info['objects']:,} listed, {info['evaluated']:,} with a stored state")
    if info["invalid_roots"]:
        print(f"invalid:   {info['invalid_roots']:,} refs name no valid job")
    print(f"job list:  {state}")
    return EXIT_OK


def _rebuild(args: argparse.Namespace) -> int:
    jobs = open_jobs(args)
    started = time.perf_counter()
    count = jobs.rebuild_index()
    elapsed = time.perf_counter() - started
    if args.json:
        print_json({"jobs": count, "seconds": round(elapsed, 3)})
    else:
        print(f"rebuilt the index: {count:,} jobs in {elapsed:.2f} s", file=sys.stderr)
    return EXIT_OK


def _usage(args: argparse.Namespace) -> int:
    raise CliError("git jobs cache: name an action: status or rebuild (see git jobs cache --help)")


def register(sub: Any) -> None:
    parent = command(
        sub,
        "cache",
        "  git jobs cache status\n"
        "  git jobs cache rebuild          # throw the index away and rebuild it from the refs\n",
        _usage,
    )
    actions = parent.add_subparsers(dest="cache_command", metavar="ACTION")
    p = add_command(
        actions,
        "status",
        "How many jobs the index lists and holds a folded state for, and whether it is current.",
        "  git jobs cache status\n  git jobs cache status --json\n",
        _status,
    )
    add_json(p)
    p = add_command(
        actions,
        "rebuild",
        "Empty the index and rebuild it from the refs (every job is re-read and re-verified).",
        "  git jobs cache rebuild\n  git jobs cache rebuild --json\n",
        _rebuild,
    )
    add_json(p)
