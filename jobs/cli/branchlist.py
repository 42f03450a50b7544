"""`git jobs status --branch B` / `git jobs status A..B`: one line per commit, a page at a time.

What ``gh run list`` gives for a branch: short sha, subject, outcome and the counts of the
latest runs, newest first, ``--limit`` lines a page (``--page`` for older ones). The data is
:func:`jobs.history.branch_json`, the same JSON ``--json`` prints and the web page reads.
"""

from __future__ import annotations

import argparse

from ..history import DEFAULT_PER_PAGE, branch_json
from ..text import safe
from .common import Style, open_jobs, print_json
from .errors import EXIT_OK, CliError

SUBJECT_WIDTH = 50
# The symbol of a commit outcome, as the symbol of the run state it resembles.
_SYMBOL = {"pending": "running", "none": "skipped", "expected": "running"}


def _fit(text: str, width: int) -> str:
    text = safe(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def status_branch(args: argparse.Namespace) -> int:
    """Print the page of commits; exit 0 (a listing, not a verdict).

    ``--sync REMOTE`` fetches first and ``--all-nodes`` counts every node's runs, as for one
    commit; the flags that make no sense for a listing are refused by ``check_status_flags``."""
    if args.watch:
        raise CliError("--watch follows one commit; it does not combine with --branch or a range")
    store = open_jobs(args)
    if args.sync:
        store.sync(args.sync, push=False)
    spec = args.branch if args.branch else args.rev
    value = branch_json(
        store,
        spec,
        page=1 if args.page is None else args.page,
        per_page=DEFAULT_PER_PAGE if args.limit is None else args.limit,
        all_nodes=args.all_nodes,
    )
    if args.json:
        print_json(value)
        return EXIT_OK
    style = Style()
    commits = value["commits"]
    subjects = [_fit(c["subject"], SUBJECT_WIDTH) for c in commits]
    sub_w = max((len(s) for s in subjects), default=0)
    out_w = max((len(c["outcome"]) for c in commits), default=0)
    for c, subject in zip(commits, subjects, strict=True):
        outcome = c["outcome"]
        counts = ", ".join(f"{n} {state}" for state, n in c["counts"].items()) or "no jobs"
        print(
            f"{style.symbol(_SYMBOL.get(outcome, outcome))} "
            f"{style(c['commit'][:12], 'yellow')}  {subject:<{sub_w}}  "
            f"{style.state(outcome, f'{outcome:<{out_w}}')}  {counts}".rstrip()
        )
    if value["more"]:
        print(style(f"… older commits: --page {value['page'] + 1}", "dim"))
    elif not commits:
        print(style(f"no commits in {safe(value['branch'])}", "dim"))
    return EXIT_OK
