"""The git-jobs(1) man page, written from the argparse parser so it never drifts from `-h`.

`git jobs --help` is turned by git into `git help jobs`, which opens `man git-jobs`; the wheel
installs ``docs/git-jobs.1`` under ``share/man/man1`` for that (man finds it beside the
script's ``bin``). ``python -m jobs.cli.manpage > docs/git-jobs.1`` writes it; a test checks
that the file in the tree is what this module writes now.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator

from . import build_parser


def _roff(text: str) -> str:
    """Text safe in a roff line: backslashes, hyphens, leading dots and quotes escaped."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line[:1] in (".", "'") else line for line in text.splitlines())


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _options(parser: argparse.ArgumentParser) -> Iterator[str]:
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        if isinstance(action, argparse._HelpAction):
            continue
        flags = ", ".join(action.option_strings) or str(action.metavar or action.dest)
        if action.option_strings and action.nargs != 0:
            flags += f" {action.metavar or action.dest.upper()}"
        yield f".TP\n.B {_roff(str(flags))}\n{_roff(action.help or '')}"


def _section(path: str, parser: argparse.ArgumentParser) -> Iterator[str]:
    subs = list(_subcommands(parser))
    if path:
        yield f'.SS "{_roff(path)}"'
        yield _roff(parser.format_usage().strip().removeprefix("usage: "))
        yield ".PP"
        yield _roff(parser.description or "")
        yield from _options(parser)
        if parser.epilog:
            yield ".PP\n.nf\n" + _roff(parser.epilog) + "\n.fi"
    for name, sub in subs:
        yield from _section(f"{path} {name}".strip(), sub)


def render() -> str:
    """The whole page, in roff (man(7) macros); the same bytes whatever the terminal's width."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"  # argparse wraps usage lines to the terminal
    try:
        return _render(build_parser())
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def _render(parser: argparse.ArgumentParser) -> str:
    head = [
        '.TH GIT-JOBS 1 "" "git-jobs" "Git Jobs Manual"',
        ".SH NAME",
        "git\\-jobs \\- decentralized CI jobs over Git",
        ".SH SYNOPSIS",
        _roff(parser.format_usage().strip().removeprefix("usage: ")),
        ".SH DESCRIPTION",
        _roff(parser.description or ""),
        ".SH OPTIONS",
        *_options(parser),
        ".SH COMMANDS",
    ]
    tail = [
        ".SH SEE ALSO",
        "The README, docs/CLI.md (output shapes and exit codes), docs/NODE.md and docs/FORMAT.md"
        " of the git\\-jobs sources.",
    ]
    return "\n".join([*head, *_section("", parser), *tail]) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
