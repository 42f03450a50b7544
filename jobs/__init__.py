"""Decentralized CI jobs over Git: the Job type, its store, CLI and peer node.

A job is one unit of CI work (a name) for one commit; its runs are execution attempts by
nodes, each signed by the node that ran it. See ``docs/FORMAT.md`` and the README.
"""

from typing import TYPE_CHECKING

from .lazy import exports, where

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
__getattr__, __dir__ = exports(
    __name__,
    globals(),
    where(
        errors=(
            "AlreadyFinishedError",
            "AmbiguousJobError",
            "DefinitionError",
            "InvalidInputError",
            "JobsError",
            "MissingCommitError",
            "PolicyError",
            "ReadOnlyError",
            "SyncError",
            "UnknownJobError",
            "UnknownRunError",
        ),
        gate=("GateStatus", "gate_status"),
        jobtype=("JOB_TYPE", "TYPENAME", "JobType"),
        model=("Job", "Reason", "Run", "Runs", "Status"),
        ops=("FinishRun", "Release", "Request", "Rerun", "StartRun"),
        policy=("Policy", "PolicySource", "load_policy"),
        store=("JobMut", "Jobs"),
    ),
)

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
