"""Decentralized CI jobs over Git: the Job type, its store, CLI and peer node.

A job is one unit of CI work (a name) for one commit; its runs are execution attempts by
nodes, each signed by the node that ran it. See ``docs/FORMAT.md`` and the README.
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .errors import (
        AlreadyFinishedError,
        AmbiguousJobError,
        DefinitionError,
        InvalidInputError,
        JobsError,
        MissingCommitError,
        PolicyError,
        ReadOnlyError,
        SyncError,
        UnknownJobError,
        UnknownRunError,
    )
    from .gate import GateStatus, gate_status
    from .jobtype import JOB_TYPE, TYPENAME, JobType
    from .model import Job, Reason, Run, Runs, Status
    from .ops import FinishRun, Release, Request, Rerun, StartRun
    from .policy import Policy, PolicySource, load_policy
    from .store import JobMut, Jobs

# Names are loaded on first use (PEP 562): `git jobs --version` or `-h` then costs no import of
# pygit2 or cryptography, and a command pays only for the modules it uses.
_WHERE = {
    **dict.fromkeys(
        ("AlreadyFinishedError", "AmbiguousJobError", "DefinitionError", "InvalidInputError",
         "JobsError", "MissingCommitError", "PolicyError", "ReadOnlyError", "SyncError", "UnknownJobError",
         "UnknownRunError"),
        "errors",
    ),
    **dict.fromkeys(("GateStatus", "gate_status"), "gate"),
    **dict.fromkeys(("JOB_TYPE", "TYPENAME", "JobType"), "jobtype"),
    **dict.fromkeys(("Job", "Reason", "Run", "Runs", "Status"), "model"),
    **dict.fromkeys(("FinishRun", "Release", "Request", "Rerun", "StartRun"), "ops"),
    **dict.fromkeys(("Policy", "PolicySource", "load_policy"), "policy"),
    **dict.fromkeys(("JobMut", "Jobs"), "store"),
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'jobs' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


__all__ = [
    "JOB_TYPE",
    "TYPENAME",
    "AlreadyFinishedError",
    "AmbiguousJobError",
    "DefinitionError",
    "FinishRun",
    "GateStatus",
    "InvalidInputError",
    "Job",
    "JobMut",
    "JobType",
    "Jobs",
    "JobsError",
    "MissingCommitError",
    "Policy",
    "PolicyError",
    "PolicySource",
    "ReadOnlyError",
    "Reason",
    "Release",
    "Request",
    "Rerun",
    "Run",
    "Runs",
    "StartRun",
    "Status",
    "SyncError",
    "UnknownJobError",
    "UnknownRunError",
    "gate_status",
    "load_policy",
]
