"""Decentralized CI jobs over Git: the Job type, its store, CLI and peer node.

A job is one unit of CI work (a name) for one commit; its runs are execution attempts by
nodes, each signed by the node that ran it. See ``docs/FORMAT.md`` and the README.
"""

from .errors import (
    AlreadyFinishedError,
    AmbiguousJobError,
    DefinitionError,
    InvalidInputError,
    JobsError,
    MissingCommitError,
    ReadOnlyError,
    SyncError,
    UnknownJobError,
    UnknownRunError,
)
from .jobtype import JOB_TYPE, TYPENAME, JobType
from .model import Job, Reason, Run, Runs, Status
from .ops import FinishRun, Release, Request, StartRun
from .store import JobMut, Jobs

__all__ = [
    "JOB_TYPE",
    "TYPENAME",
    "AlreadyFinishedError",
    "AmbiguousJobError",
    "DefinitionError",
    "FinishRun",
    "InvalidInputError",
    "Job",
    "JobMut",
    "JobType",
    "Jobs",
    "JobsError",
    "MissingCommitError",
    "ReadOnlyError",
    "Reason",
    "Release",
    "Request",
    "Run",
    "Runs",
    "StartRun",
    "Status",
    "SyncError",
    "UnknownJobError",
    "UnknownRunError",
]
