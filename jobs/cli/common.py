"""Shared helpers of the CLI: opening the store, output (JSON, colour), errors."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import cob

from ..store import Jobs

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PENDING = 8


class CliError(Exception):
    """A user error: printed as one line, exit code ``code`` (2 by default)."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def open_jobs(args: argparse.Namespace, *, write: bool = False) -> Jobs:
    """The job store of the current repository; with ``write``, the node's key is required."""
    try:
        repo = cob.open_repository(os.getcwd())
    except cob.RepositoryError:
        raise CliError(f"not a git repository: {os.getcwd()}") from None
    signer = None
    if write:
        signer = cob.Signer.load(repo, getattr(args, "key", None))
    else:
        try:
            signer = cob.Signer.load(repo, getattr(args, "key", None))
        except cob.KeyFileError:
            signer = None
    return Jobs(cob.Store(repo, signer))


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def use_colour(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def add_command(
    sub: Any, name: str, help: str, examples: str, handler: Any
) -> argparse.ArgumentParser:
    """Add a subcommand with a description and an examples epilog."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=help,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser
