"""`git jobs demo`: the README's first command — prints what :func:`jobs.demo.run_demo` did."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..demo import DemoError, DemoResult, run_demo
from .common import Style, add_json, command, print_json
from .errors import EXIT_FAILED, EXIT_OK, CliError
from .statusview import render_status


def _print(result: DemoResult, style: Style) -> None:
    subjects = dict(result.commits)
    labels = {n.nid: n.name for n in result.nodes}
    print()
    print(style(f"status of each commit, as {result.nodes[0].name} sees it after syncing:", "bold"))
    for status in result.statuses:
        print()
        print("\n".join(render_status(status, style, labels=labels, title=subjects.get(status.commit, ""))))
    print()
    if result.converged:
        print(style(f"all {len(result.nodes)} nodes hold the same state for every job", "green"))
    else:
        print(style("the nodes disagree: this is a bug, please report it", "red"))


def _demo(args: argparse.Namespace) -> int:
    style = Style()
    quiet = args.json

    def log(line: str) -> None:
        if not quiet:
            print(line, flush=True)

    try:
        if args.keep:
            result = run_demo(Path(args.keep), log)
        else:
            with tempfile.TemporaryDirectory(prefix="git-jobs-demo-") as tmp:
                result = run_demo(tmp, log)
    except DemoError as e:
        raise CliError(str(e)) from None
    if args.json:
        print_json(result.to_json())
    else:
        _print(result, style)
        if args.keep:
            first = result.nodes[0].path
            print(f"\nkept in {result.directory}; try:  git -C {first} jobs status HEAD~1", file=sys.stderr)
    return EXIT_OK if result.converged else EXIT_FAILED


def register(sub: Any) -> None:
    p = command(
        sub,
        "demo",
        "  git jobs demo\n"
        "  git jobs demo --keep /tmp/jobs-demo    # keep the repositories to explore\n"
        "  git -C /tmp/jobs-demo/bob jobs list\n",
        _demo,
    )
    p.add_argument("--keep", metavar="DIR", help="Build the demo in DIR (new or empty) and keep it.")
    add_json(p)
