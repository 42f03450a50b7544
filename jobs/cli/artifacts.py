"""`git jobs artifacts` and `git jobs prune-artifacts`: a trusted node's published outputs,
verified against its signed finish and written to a directory; old artifact buckets dropped."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .. import artifacts, logs
from ..errors import JobsError
from ..names import resolve_node
from ..spec.durations import DurationError, parse_duration
from ..text import safe
from .common import add_command, add_json, open_jobs, print_json
from .errors import EXIT_FAILED, EXIT_OK, CliError

DEFAULT_DIR = "artifacts"


def _artifacts(args: argparse.Namespace) -> int:
    store = open_jobs(args)
    me = store.signer.nid if store.signer is not None else None
    trusts = artifacts.trusted(store.repo, me)
    node = resolve_node(store, args.node) if args.node is not None else None
    found = logs.locate(store, args.spec, node)
    nid, run_id, run = found.nid, found.run_id, found.run
    if node is None and ":" in args.spec:  # REV:NAME: the latest published by a trusted node
        chosen = artifacts.best(store.repo, found.job, trusts)
        if chosen is not None:
            nid, run_id, _ = chosen
            run = found.job.runs_of(nid)[run_id]
    who = f"run {run_id} of node {safe(nid)} (job {safe(found.job.name)})"
    if not trusts(nid):
        raise CliError(
            f"refused: node {safe(nid)} is not trusted here (the policy's nodes, or `git jobs trust`):"
            f" its outputs are not taken",
            EXIT_FAILED,
        )
    got = artifacts.find(store.repo, nid, run_id, run)
    if got.status is artifacts.Status.REFUSED:
        raise CliError(
            f"refused: the artifact of {who} does not match its signed finish: {safe(got.detail)}",
            EXIT_FAILED,
        )
    if got.status is not artifacts.Status.OK or got.tree is None:
        raise CliError(f"no artifact of {who}: {safe(got.detail)}", EXIT_FAILED)
    dest = Path(args.output or DEFAULT_DIR)
    if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(os.scandir(dest)))):
        raise CliError(
            f"{safe(str(dest))} exists and is not an empty directory: choose another with -o", EXIT_FAILED
        )
    try:
        count = artifacts.write_tree(store.repo, got.tree, dest)
    except OSError as e:
        raise CliError(f"cannot write {safe(str(dest))}: {e.strerror or e}", EXIT_FAILED) from None
    if args.json:
        print_json(
            {
                "node": nid,
                "run_id": str(run_id),
                "job": found.job.name,
                "tree": got.tree,
                "files": count,
                "dir": str(dest),
            }
        )
        return EXIT_OK
    print(f"wrote {count} files of {who} to {safe(str(dest))}", file=sys.stderr)
    print(f"tree {got.tree}: the id its signed finish names; every object re-hashed", file=sys.stderr)
    return EXIT_OK


def _prune(args: argparse.Namespace) -> int:
    try:
        seconds = parse_duration(args.older_than)
    except DurationError as e:
        raise CliError(f"--older-than: {e}") from None
    store = open_jobs(args)
    try:
        point, gone = artifacts.prune(store.repo, seconds)
    except JobsError as e:
        raise CliError(str(e)) from None
    if args.json:
        print_json({"pruned_before": point, "deleted": gone})
        return EXIT_OK
    for name in gone:
        print(f"deleted {safe(name)}")
    print(
        f"artifacts before {point} pruned here ({len(gone)} bucket refs); the next sync deletes this"
        " node's on its remotes and fetches none of them again",
        file=sys.stderr,
    )
    return EXIT_OK


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "artifacts",
        "Fetch a job's published outputs (verified against the signed finish) into a directory.",
        "  git jobs artifacts HEAD:build -o dist/    # latest published by a trusted node\n"
        "  git jobs artifacts v1.2:build --node alice -o /tmp/wheel\n",
        _artifacts,
    )
    p.add_argument("spec", metavar="RUN|JOB|REV:NAME", help="A run id, a job id (prefix) or REV:NAME.")
    p.add_argument(
        "--node", metavar="NODE", help="Whose run: a trusted node's name, a NID or a unique prefix."
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help=f"Where to write the files (new or empty; default {DEFAULT_DIR}).",
    )
    add_json(p)
    p = add_command(
        sub,
        "prune-artifacts",
        "Drop every node's published artifacts older than a duration (whole monthly buckets).",
        "  git jobs prune-artifacts --older-than 30d\n",
        _prune,
    )
    p.add_argument("--older-than", required=True, metavar="DURATION", help="How old, e.g. 30d or 720h.")
    add_json(p)
