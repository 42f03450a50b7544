"""Commits whose ``.git-jobs.toml`` is invalid: a permanent fact, recorded once per node.

A commit's tree never changes, so neither does the verdict on its definitions. The node keeps
the shas it found invalid in its git directory (``git-jobs/invalid-definitions``): after a
restart it does not parse, log and skip them again on every pass, let alone retry them under a
backoff policy. Node-local (not in the ledger): another node reaches the same verdict itself.
Bounded: past ``MAX_ENTRIES`` the oldest are forgotten (they would only be reported again).
"""

from __future__ import annotations

import contextlib
import re

import pygit2

from .. import paths

MAX_ENTRIES = 10_000
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


class InvalidDefinitions:
    def __init__(self, repo: pygit2.Repository) -> None:
        self.path = paths.state_file(repo, "invalid-definitions")
        self._known: list[str] | None = None

    def known(self) -> list[str]:
        if self._known is None:
            text = ""
            with contextlib.suppress(OSError, UnicodeDecodeError):
                text = self.path.read_text()
            self._known = [s for s in text.split() if _SHA.match(s)][-MAX_ENTRIES:]
        return self._known

    def __contains__(self, commit: str) -> bool:
        return commit in self.known()

    def add(self, commit: str) -> None:
        """Record ``commit`` (a full sha); a failure to write only means it is reported again."""
        known = self.known()
        if commit in known or not _SHA.match(commit):
            return
        known.append(commit)
        del known[:-MAX_ENTRIES]
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(f"{s}\n" for s in known))
            tmp.replace(self.path)
