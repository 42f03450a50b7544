"""Exit codes and the CLI's user error: the few names `main` needs before any command loads.

Kept apart from :mod:`jobs.cli.common` so that `git jobs --version` and `--help` import nothing
of the library (and so nothing of pygit2 or cryptography).
"""

from __future__ import annotations

# Exit codes (docs/CLI.md). 1 and 8 follow `gh pr checks`: failed, and still pending.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_UNPUBLISHED = 4  # `sync`: the remote was reached but this node's own results are not on it
EXIT_PENDING = 8


class CliError(Exception):
    """A user error: printed as one line, exit code ``code`` (2 by default)."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code
