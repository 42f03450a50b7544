"""The peer node: learn what to run from ``.git-jobs.toml``, run it, record every attempt.

- :mod:`jobs.spec` — the ``.git-jobs.toml`` language, read from a commit's own tree (its
  public names are re-exported here).
- :mod:`.plan` — what a node would do now about each job (a pure function of the ledger);
  :mod:`.work` — ``release``, ``work any`` and crash recovery; :mod:`.execute` — one attempt,
  to its signed finish; :mod:`.process` — a job's process group, to its end.
- :mod:`.trigger` — ``work trigger``: ask other machines to work on other commits.
- :mod:`.daemon` — ``git jobs node``: preflights, then workers on intervals; :mod:`.tasks` —
  the ``Preflight``/``Worker`` protocols, for tasks given from Python.
- :mod:`.runners` — the ``Runner`` protocol: ``sh``, ``python``, entry points the node enables.
- :mod:`.candidates` — which commits may run here (named, followed, trusted requests); never a
  commit that merely arrived. :mod:`.follow` — followed refs, fetched into private refs.
  :mod:`jobs.requests` — trusted ``release``/``rerun`` requests: requested commits, fresh attempts.
- :mod:`.isolation`, :mod:`.checkout` — a job cannot reach the node: its own checkout, scratch
  HOME, allowlisted environment, a bubblewrap sandbox.
- :mod:`.config` — the node's settings (git config, flags); :mod:`.progress` — per-node progress.
- :mod:`.retry`, :mod:`.logs` — small shared pieces.

See ``docs/NODE.md`` for the user guide.
"""

from typing import TYPE_CHECKING

from ..lazy import exports, where

if TYPE_CHECKING:
    from ..spec.definitions import (
        DEFINITIONS_FILE,
        Definitions,
        JobDef,
        RetrySpec,
        load_definitions,
        parse_definitions,
    )
    from ..spec.durations import format_duration, parse_duration
    from .daemon import Node
    from .execute import Outcome
    from .plan import PlanItem
    from .runners import RunContext, Runner, Runners, RunResult
    from .tasks import Preflight, Worker, preflight, worker
    from .work import WorkReport, Workshop, release

# Loaded on first use (PEP 562): `git jobs status` reads a commit's definitions (which jobs are
# required, who retries) without importing the runner, the sandbox and the checkout code.
__getattr__, __dir__ = exports(
    __name__,
    globals(),
    where(
        **{
            ".spec.definitions": (
                "DEFINITIONS_FILE",
                "Definitions",
                "JobDef",
                "RetrySpec",
                "load_definitions",
                "parse_definitions",
            ),
            ".spec.durations": ("format_duration", "parse_duration"),
        },
        daemon=("Node",),
        runners=("RunContext", "RunResult", "Runner", "Runners"),
        tasks=("Preflight", "Worker", "preflight", "worker"),
        execute=("Outcome",),
        plan=("PlanItem",),
        work=("WorkReport", "Workshop", "release"),
    ),
)

__all__ = [
    "DEFINITIONS_FILE",
    "Definitions",
    "JobDef",
    "Node",
    "Outcome",
    "PlanItem",
    "Preflight",
    "RetrySpec",
    "RunContext",
    "RunResult",
    "Runner",
    "Runners",
    "Worker",
    "WorkReport",
    "Workshop",
    "format_duration",
    "load_definitions",
    "parse_definitions",
    "parse_duration",
    "preflight",
    "release",
    "worker",
]
