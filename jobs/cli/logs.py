"""`git jobs logs` and `git jobs prune-logs`: any node's run log, verified; old logs dropped.

Log bytes are peer data. On a terminal they are printed through :func:`jobs.text.safe` (escape
sequences and bidi controls shown, not obeyed); to a pipe or a file, or with ``--raw``, the
bytes are written exactly as published, so ``git jobs logs X > x.log`` is the log itself.
"""

from __future__ import annotations

import argparse
import codecs
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import logs
from ..names import resolve_node
from ..node.logs import log_path, prune_local
from ..spec.durations import DurationError, parse_duration
from ..store import Jobs
from ..text import safe
from .common import add_json, command, open_jobs, print_json
from .errors import EXIT_FAILED, EXIT_OK, CliError

FOLLOW_POLL = 0.2  # seconds between looks at a followed log and at the ledger


def _writer(raw: bool) -> Callable[[bytes], None]:
    """Bytes as they are (pipe, file, --raw), or made safe for a terminal."""
    out = sys.stdout
    if raw or not out.isatty():

        def write_raw(data: bytes) -> None:
            out.buffer.write(data)
            out.buffer.flush()

        return write_raw
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def write_safe(data: bytes) -> None:
        out.write(safe(decoder.decode(data), keep_newlines=True))
        out.flush()

    return write_safe


def _logs(args: argparse.Namespace) -> int:
    store = open_jobs(args)
    node = resolve_node(store, args.node) if args.node is not None else None  # a name, as status prints
    found = logs.locate(store, args.spec, node)
    me = store.signer.nid if store.signer is not None else None
    write = _writer(args.raw)
    local = log_path(store.repo, found.run_id)
    if found.nid == me and local.is_file():
        if args.follow:
            _follow(store, found, local, write)
        else:
            write(local.read_bytes())
        return EXIT_OK
    if args.follow and found.run.is_started:
        raise CliError(
            f"--follow streams this node's own runs; run {found.run_id} is {_who(found.nid)}'s:"
            " its log arrives with a sync once it has finished",
            EXIT_FAILED,
        )
    got = logs.read(store.repo, found.nid, found.run_id, found.run)
    if got.status is logs.LogStatus.SHOWN and got.data is not None:
        write(got.data)
        return EXIT_OK
    raise CliError(_unavailable(found, got), EXIT_FAILED)


def _who(nid: str) -> str:
    return f"node {safe(nid)}"


def _unavailable(found: logs.Located, got: logs.LogRead) -> str:
    """One line saying why a run's log cannot be shown (every peer string escaped)."""
    run = f"run {found.run_id} of {_who(found.nid)} (job {safe(found.job.name)})"
    url = f"; its recorded log URL: {safe(found.run.log)}"
    status = got.status
    if status is logs.LogStatus.REFUSED:
        return f"refused: the log of {run} does not match the signed ledger: {safe(got.detail)}"
    if status is logs.LogStatus.RUNNING and found.run.lost:
        return f"{run} is lost: still started past its deadline, its log was never published{url}"
    if status is logs.LogStatus.RUNNING:
        return f"{run} has not finished: its log is published when it does{url}"
    if status is logs.LogStatus.NOT_PUBLISHED:
        return f"{run}: that node did not publish its log in Git{url}"
    if status is logs.LogStatus.PRUNED:
        return f"the log of {run} was pruned ({got.detail}){url}"
    return f"the log of {run} is not here yet: `git jobs sync` fetches it (or that node pruned it){url}"


def _follow(store: Jobs, found: logs.Located, path: Path, write: Callable[[bytes], None]) -> None:
    """Stream a local log until its run is finished in the ledger (the file is closed first)."""
    offset = 0
    while True:
        offset = _copy_from(path, offset, write)
        job = store.get(found.job.id)
        run = job.runs_of(found.nid).get(found.run_id) if job is not None else None
        if run is None or run.is_finished or run.lost:  # lost: nobody will finish it
            _copy_from(path, offset, write)
            return
        time.sleep(FOLLOW_POLL)


def _copy_from(path: Path, offset: int, write: Callable[[bytes], None]) -> int:
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    if data:
        write(data)
    return offset + len(data)


def _prune(args: argparse.Namespace) -> int:
    try:
        seconds = parse_duration(args.older_than)
    except DurationError as e:
        raise CliError(f"--older-than: {e}") from None
    store = open_jobs(args)
    point, gone = logs.prune(store.repo, seconds)
    files = prune_local(store.repo, point)
    if args.json:
        print_json({"pruned_before": point, "deleted": gone, "local_files": files})
        return EXIT_OK
    for name in gone:
        print(f"deleted {safe(name)}")
    print(
        f"logs before {point} pruned here ({len(gone)} bucket refs, {files} local files);"
        " the next sync deletes this"
        " node's on its remotes and fetches none of them again",
        file=sys.stderr,
    )
    return EXIT_OK


def register(sub: Any) -> None:
    p = command(
        sub,
        "logs",
        "  git jobs logs 0190a4b2-…              # a run id, or a unique prefix\n"
        "  git jobs logs HEAD:test --node alice  # that node's latest run (name, NID or prefix)\n"
        "  git jobs logs 3f2a1b9c --follow       # stream this node's run in progress\n"
        "  git jobs logs HEAD:test --raw | less -R\n",
        _logs,
    )
    p.add_argument("spec", metavar="RUN|JOB|REV:NAME", help="A run id, a job id (prefix) or REV:NAME.")
    p.add_argument(
        "--node",
        metavar="NODE",
        help="Whose run when a job is named: its name as `status` prints it, a NID or a unique prefix.",
    )
    p.add_argument("--follow", "-f", action="store_true", help="Stream this node's run until it ends.")
    p.add_argument("--raw", action="store_true", help="The bytes as published, even on a terminal.")

    p = command(
        sub,
        "prune-logs",
        "  git jobs prune-logs --older-than 90d\n",
        _prune,
    )
    p.add_argument("--older-than", required=True, metavar="DURATION", help="How old, e.g. 90d or 2160h.")
    add_json(p)
