"""git-jobs' names for what `cob` keeps beside the ledger, installed in `cob` on import.

`cob` is generic (its defaults are ``cob-…``); these are the names ``docs/FORMAT.md`` gives:
``<gitdir>/git-jobs-index.sqlite3``, ``git-jobs-index-log``, ``git-jobs-refused``,
``git-jobs-writers.lock``, ``git-jobs-quarantine/``; ``refs/git-jobs-published/sigrefs`` and
``refs/git-jobs-staging/``; ``git config jobs.fsync``. The author ``git-jobs`` of a
content-addressed root (:data:`ROOT_AUTHOR`, part of every job id: never to change) is each
type's own (:attr:`cob.CobType.root_author`). Every module of `jobs` that reaches `cob`
imports this one first (through :mod:`jobs.errors` or :mod:`jobs.jobtype`), so no repository
is opened under other names.
"""

from __future__ import annotations

import cob.layout

from .identity import CONFIG_KEY, new_key_hint

ROOT_AUTHOR = "git-jobs"  # JobType's and ProfileType's root_author (FORMAT.md 6)
LAYOUT = cob.layout.Layout(
    prefix="git-jobs",
    config_section="jobs",
    command="git jobs",
    new_key_hint=new_key_hint(),
)
cob.layout.use(LAYOUT)

__all__ = ["CONFIG_KEY", "LAYOUT", "ROOT_AUTHOR"]
