"""`git jobs`: the command line, a thin layer over the library.

Each command group lives in its own module under ``jobs/cli/`` and exposes
``register(subparsers)``; :func:`main` wires them up, runs the chosen handler, and turns every
library error into one clear line on stderr with exit code 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

import cob

from ..errors import JobsError
from .common import EXIT_USAGE, CliError

# Modules that provide commands; each has ``register(subparsers) -> None``.
COMMAND_MODULES = (
    "jobs.cli.identity",
    "jobs.cli.objects",
    "jobs.cli.query",
    "jobs.cli.syncing",
    "jobs.cli.cache",
    "jobs.cli.demo",
    "jobs.cli.node",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="git jobs",
        description="Decentralized CI jobs over Git: who ran what on which commit, and did it pass.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `git jobs COMMAND --help` for examples.",
    )
    parser.add_argument("-C", dest="directory", metavar="PATH", help="run as if started in PATH")
    parser.add_argument("--key", metavar="FILE", help="the node's ed25519 key (overrides $GIT_JOBS_KEY)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue  # a command group not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.directory:
            try:
                os.chdir(args.directory)
            except OSError as e:
                raise CliError(f"cannot change to {args.directory}: {e.strerror}") from None
        handler = getattr(args, "handler", None)
        if handler is None:
            parser.print_help()
            return EXIT_USAGE
        code: int = handler(args)
        return code
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    except (JobsError, cob.CobError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
