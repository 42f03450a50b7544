"""`git jobs`: the command line, a thin layer over the library.

Each command group lives in its own module under ``jobs/cli/`` and exposes
``register(subparsers)``; :func:`main` wires them up, runs the chosen handler, and turns every
library error into one clear line on stderr with exit code 2 — never a traceback.

Start-up is part of the interface (a status check runs in every prompt and hook), so only the
module of the command being run is imported: the others are listed from :data:`COMMANDS`, a
table a test keeps equal to what each module registers.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from ..text import safe
from .errors import EXIT_INTERNAL, EXIT_USAGE, CliError

# command name -> (module that registers it, its one-line help), in the order `--help` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("identity", "Make this node's ed25519 key if none resolves, and print its node id (NID)."),
    "whoami": ("identity", "Show this node's id (NID), its key file, and its allowed-signers line."),
    "allowed-signers": (
        "identity",
        "Print an allowed-signers line for every node seen here, for stock git's verify tools.",
    ),
    "create": (
        "objects",
        "Create the job NAME for a commit (idempotent: same commit and name, same id everywhere);"
        " print its id.",
    ),
    "run": ("objects", "Start a run of a job on this node, with the URL of its log; print the run id."),
    "finish": (
        "objects",
        "Finish one of this node's runs with a reason: succeeded, failed, error (infrastructure,"
        " retryable), cancelled, timed_out or skipped.",
    ),
    "show": (
        "query",
        "Show one job: every node's runs with status, reason, log URL and times, and anything rejected.",
    ),
    "list": ("query", "List jobs, one line each (newest commits first): id, commit, name, state, runs."),
    "status": (
        "query",
        "A merge gate for a commit: each job x each node, the latest run, and the verdict.",
    ),
    "verify": (
        "query",
        "Re-verify every change of every job from scratch (signatures, authorship, rules) and print"
        " the rejected ones; exit 1 when there are any.",
    ),
    "sync": (
        "syncing",
        "Fetch every node's jobs from a remote (fast-forward only) and push this node's own.",
    ),
    "trust": ("trust", "Whose runs count here: the policy ref's trusted nodes plus your local ones."),
    "doctor": (
        "doctor",
        "Check this repository's jobs ledger (missing objects, broken index, lost writes, cache,"
        " stale locks, unpublished work); exit 1 when something is wrong.",
    ),
    "cache": (
        "cache",
        "Show or rebuild the job index (an accelerator in the git directory; deleting it loses nothing).",
    ),
    "demo": (
        "demo",
        "In a temporary directory, three simulated nodes run jobs on a few commits, sync through a"
        " bare hub repository, and the status of each commit is printed. No server, no network, no"
        " key of yours.",
    ),
    "release": ("node", "Create the jobs that .git-jobs.toml at REV defines (idempotent)."),
    "work": ("node", "Run this node's outstanding jobs (`work any`), or trigger other commits."),
    "rerun": (
        "requests",
        "Ask every node to run jobs of REV again with fresh attempts (a signed rerun request).",
    ),
    "node": ("node", "Run a long-running peer: preflights, then sync, release, work and heartbeat workers."),
    "logs": (
        "logs",
        "Print a run's log, from this node or (verified against the ledger) any node after a sync.",
    ),
    "prune-logs": (
        "logs",
        "Drop every node's published logs older than a duration (whole monthly buckets).",
    ),
    "artifacts": (
        "artifacts",
        "Fetch a job's published outputs (verified against the signed finish) into a directory.",
    ),
    "prune-artifacts": (
        "artifacts",
        "Drop every node's published artifacts older than a duration (whole monthly buckets).",
    ),
    "watch": (
        "watch",
        "Follow a branch and print each commit's verdict change; --notify runs a command for each.",
    ),
    "serve": ("web", "Serve a read-only web page of this repository's jobs on 127.0.0.1, updated live."),
    "report": ("web", "Write the web page's views as static HTML and JSON files, to publish anywhere."),
    "attest": (
        "provenance",
        "Export a node's signed in-toto/SLSA provenance of a run, or verify one offline.",
    ),
    "bundle": (
        "provenance",
        "Write an offline evidence bundle of a commit: a git bundle with what its gate needs.",
    ),
    "completion": ("completion", "Print a shell completion script for git jobs (bash, zsh or fish)."),
}


class _Version(argparse.Action):
    """``--version``, looked up only when asked (importlib.metadata costs every start ~10 ms)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="Print the version and exit.")

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


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (the first word that is not an option or its value)."""
    takes_value = {"-C", "--key"}
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in takes_value:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the module of the command in ``argv`` is imported (all when None)."""
    parser = _Parser(
        prog="git jobs",
        description="Decentralized CI jobs over Git: who ran what on which commit, and did it pass.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `git jobs COMMAND -h` for examples.",
    )
    parser.add_argument("-C", dest="directory", metavar="PATH", help="Run as if started in PATH.")
    parser.add_argument("-V", "--version", action=_Version)
    parser.add_argument("--key", metavar="FILE", help="The node's ed25519 key (overrides $GIT_JOBS_KEY).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    chosen = _chosen_command(argv) if argv is not None else None
    wanted = {module for module, _ in COMMANDS.values()} if argv is None else set()
    if chosen in COMMANDS:
        wanted.add(COMMANDS[chosen][0])
    registered: set[str] = set()
    for name, (module, help) in COMMANDS.items():
        if module not in wanted:
            if chosen not in COMMANDS:  # listing commands (-h, or a typo): every name
                sub.add_parser(name, help=help, description=help)
        elif module not in registered:
            registered.add(module)
            importlib.import_module(f"{__name__}.{module}").register(sub)
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
    text = "; ".join(part.strip() for part in str(e).splitlines() if part.strip()) or type(e).__name__
    return safe(text)  # errors quote peer data, definitions and git's messages


def _run(argv: Sequence[str]) -> int:
    parser = build_parser(argv)
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


def _is_library_error(e: BaseException) -> bool:
    """A typed error of `jobs` or `cob`: a user or peer problem, said in one line."""
    if "cob" not in sys.modules:  # nothing of the library ran, so it raised nothing
        return False
    import cob

    from ..errors import JobsError

    return isinstance(e, (JobsError, cob.CobError))


def main(argv: Sequence[str] | None = None) -> int:
    _tolerant_streams()
    try:
        return _run(sys.argv[1:] if argv is None else argv)
    except CliError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return e.code
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
    except Exception as e:
        return _report(e)


def _report(e: Exception) -> int:
    """One line for any error that escaped a command; a traceback only when asked for."""
    if _is_library_error(e):
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(e, OSError):
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return EXIT_USAGE
    # A bug, not a user error: still one line, unless asked for the traceback.
    if os.environ.get("GIT_JOBS_DEBUG"):
        raise e
    print(
        f"error: internal error: {type(e).__name__}: {_one_line(e)} (set GIT_JOBS_DEBUG=1 for a traceback)",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
