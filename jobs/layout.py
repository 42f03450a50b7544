"""git-jobs' names for what `cob` keeps beside the ledger, installed in `cob` on import.

`cob` is generic (its defaults are ``cob-…``); these are the names ``docs/FORMAT.md`` gives:
``<gitdir>/git-jobs-index.sqlite3``, ``git-jobs-index-log``, ``git-jobs-refused``,
``git-jobs-writers.lock``, ``git-jobs-quarantine/``; ``refs/git-jobs-published/sigrefs`` and
``refs/git-jobs-staging/``; the author ``git-jobs`` of a content-addressed root (part of every
job id: never to change); ``git config jobs.fsync``. Every module of `jobs` that reaches `cob`
imports this one first (through :mod:`jobs.errors` or :mod:`jobs.jobtype`), so no repository
is opened under other names.
"""

from __future__ import annotations

import cob.layout

from .identity import CONFIG_KEY, new_key_hint

LAYOUT = cob.layout.Layout(
    prefix="git-jobs",
    root_author="git-jobs",
    config_section="jobs",
    command="git jobs",
    new_key_hint=new_key_hint(),
)
cob.layout.use(LAYOUT)

__all__ = ["CONFIG_KEY", "LAYOUT"]
