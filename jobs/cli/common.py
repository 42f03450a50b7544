"""Shared helpers of the CLI: opening the store, output (JSON, colour, short ids), errors."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import cob

from .. import identity
from ..store import Jobs
from .errors import CliError

SHORT = 12  # hex digits of a short job id or commit, as git's core.abbrev=12 shows them


def open_repo() -> Any:
    """The repository around the current directory, or a one-line error."""
    try:
        return cob.open_repository(os.getcwd())
    except cob.RepositoryError:
        raise CliError(f"not a git repository: {os.getcwd()}") from None


def open_jobs(args: argparse.Namespace, *, write: bool = False) -> Jobs:
    """The job store of the current repository; with ``write``, the node's key is required.

    A read works without a key (the key only marks "you" in listings), so a bad or missing
    key never stops a maintainer from reading.
    """
    repo = open_repo()
    signer = None
    if write:
        signer = identity.load_signer(repo, getattr(args, "key", None))
    else:
        try:
            signer = identity.load_signer(repo, getattr(args, "key", None))
        except cob.KeyFileError:
            signer = None
    return Jobs(cob.Store(repo, signer))


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="Print JSON (shape in docs/CLI.md).")


def use_colour(stream: Any = None) -> bool:
    """Colour only on a terminal, never with NO_COLOR set (https://no-color.org)."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def unicode_ok(stream: Any = None) -> bool:
    encoding = getattr(stream or sys.stdout, "encoding", None) or ""
    return encoding.lower().replace("-", "") in {"utf8", "utf16", "utf32"}


_CODES = {
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
    "bold": "1",
    "dim": "2",
}

# Colour of each run/job state.
STATE_COLOUR = {
    "succeeded": "green",
    "reused": "green",
    "failed": "red",
    "error": "red",
    "timed_out": "red",
    "cancelled": "red",
    "not_built": "red",
    "lost": "red",
    "running": "yellow",
    "queued": "yellow",
    "expected": "yellow",
    "unservable": "red",
    "retrying": "yellow",
    "pending": "yellow",
    "skipped": "dim",
    "none": "dim",
}


class Style:
    """Paints text when colour is on; a no-op otherwise (pipes, files, NO_COLOR)."""

    def __init__(self, stream: Any = None) -> None:
        self.colour = use_colour(stream)
        self.unicode = unicode_ok(stream)

    def __call__(self, text: str, colour: str | None) -> str:
        if not self.colour or not colour:
            return text
        return f"\x1b[{_CODES[colour]}m{text}\x1b[0m"

    def state(self, state: str, text: str | None = None) -> str:
        return self(text if text is not None else state, STATE_COLOUR.get(state))

    def symbol(self, state: str) -> str:
        if self.unicode:
            table = {
                "succeeded": "✓",
                "running": "•",
                "queued": "○",
                "skipped": "-",
                "expected": "○",
                "retrying": "↻",
                "reused": "✓",
            }
            sym = table.get(state, "✗")
        else:
            table = {
                "succeeded": "ok",
                "running": "..",
                "queued": "..",
                "skipped": "--",
                "expected": "..",
                "retrying": "..",
                "reused": "ok",
            }
            sym = table.get(state, "XX")
        return self.state(state, sym)


def short(object_id: str) -> str:
    """A short job id or commit (12 hex digits), as `git log --abbrev=12` shows it."""
    return object_id[:SHORT]


def short_nid(nid: str, *, unicode: bool = True) -> str:
    """``z6MkhaX…aRvkTcn`` — Radicle's short form of a node id."""
    if len(nid) <= 16:
        return nid
    return f"{nid[:7]}{'…' if unicode else '..'}{nid[-7:]}"


def command(sub: Any, name: str, examples: str, handler: Any, details: str = "") -> argparse.ArgumentParser:
    """Add the command ``name`` of `git jobs`: its one line is written once, in the table
    :data:`jobs.cli.COMMANDS` (which lists every command without importing its module);
    ``details`` follow it in the command's own ``-h``, then the examples."""
    from . import COMMANDS

    return add_command(sub, name, COMMANDS[name][1], examples, handler, details)


def add_command(
    sub: Any, name: str, help: str, examples: str, handler: Any, details: str = ""
) -> argparse.ArgumentParser:
    """Add a subcommand: ``help`` is its one line in the parent's ``-h`` (a command of `git jobs`
    takes it from the table: :func:`command`), ``details`` follow it in the command's own
    ``-h``, then the examples."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=f"{help}\n\n{details}" if details else help,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Also accepted after the command (`git jobs create HEAD --key FILE`); SUPPRESS keeps a
    # value given before the command from being overwritten by this parser's default.
    parser.add_argument("--key", metavar="FILE", default=argparse.SUPPRESS, help="The node's ed25519 key.")
    parser.set_defaults(handler=handler)
    return parser
