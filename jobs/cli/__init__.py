"""`git jobs`: the command line, a thin layer over the library.

Each command group lives in its own module under ``jobs/cli/`` and exposes
``register(subparsers)``; :func:`main` wires them up, runs the chosen handler, and turns every
library error into one clear line on stderr with exit code 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import cob

from ..errors import JobsError
from .common import EXIT_INTERNAL, EXIT_USAGE, CliError

# Modules that provide commands; each has ``register(subparsers) -> None``.
COMMAND_MODULES = (
    "jobs.cli.identity",
    "jobs.cli.objects",
    "jobs.cli.query",
    "jobs.cli.syncing",
    "jobs.cli.trust",
    "jobs.cli.cache",
    "jobs.cli.demo",
    "jobs.cli.node",
)


class _Version(argparse.Action):
    """``--version``, looked up only when asked (importlib.metadata costs every start ~10 ms)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        import importlib.metadata

        try:
            version = importlib.metadata.version("git-jobs")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        print(f"git-jobs {version}")
        parser.exit()


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
    parser.add_argument("--version", action=_Version)
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


def _tolerant_streams() -> None:
    """Never die on a commit subject or name the terminal cannot encode."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="replace")


def _one_line(e: BaseException) -> str:
    """An error message as one line, whatever the library or git put into it."""
    return "; ".join(part.strip() for part in str(e).splitlines() if part.strip()) or type(e).__name__


def main(argv: Sequence[str] | None = None) -> int:
    _tolerant_streams()
    try:
        parser = build_parser()
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
        sys.stdout.flush()
        return code
    except CliError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return e.code
    except (JobsError, cob.CobError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `git jobs list | head`: the reader left; say nothing more (and not at exit either).
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:
        # A bug, not a user error: still one line, unless asked for the traceback.
        if os.environ.get("GIT_JOBS_DEBUG"):
            raise
        print(
            f"error: internal error: {type(e).__name__}: {_one_line(e)}"
            " (set GIT_JOBS_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
