"""Typed errors of the `jobs` package: every one derives from :class:`JobsError`.

They also derive from the matching `cob` error where there is one, so a caller catching
``cob.CobError`` for a whole program still sees them.
"""

from __future__ import annotations

import cob

from . import layout as _layout  # noqa: F401  (git-jobs' names in cob, before any repository)


class JobsError(Exception):
    """Base class of every error raised by `jobs`."""


class ReadOnlyError(JobsError, cob.NoKeyError):
    """A write on a store opened without a signer."""


class MissingCommitError(JobsError):
    """A job was requested for a commit that is not in the local repository."""


class UnknownJobError(JobsError, cob.UnknownObjectError):
    """No job with this id (or prefix, or REV:NAME)."""


class AmbiguousJobError(JobsError):
    """A job id prefix matches more than one job."""


class InvalidInputError(JobsError, cob.InvalidOpsError):
    """A bad URL, reason, run id, name or commit from the caller; nothing was written."""


class UnknownRunError(JobsError):
    """A run id that this job does not have (for this node)."""


class AlreadyFinishedError(JobsError):
    """Finishing a run that is already finished."""


class DefinitionError(JobsError):
    """An invalid ``.git-jobs.toml`` (names the file, commit and key).

    ``errors`` lists every problem found in the file (the message joins them), so that a user
    fixes them all in one commit rather than one per round trip.
    """

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors: list[str] = list(errors) if errors is not None else [message]


class PolicyError(JobsError):
    """A trust policy (``[policy]`` at the policy ref, ``jobs.policyRef``, ``jobs.trust``)
    that does not validate. ``errors`` lists every problem; the message joins them."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors: list[str] = list(errors) if errors is not None else [message]

    @classmethod
    def of(cls, errors: list[str], limit: int = 50) -> PolicyError:
        shown = errors[:limit]
        more = f"; and {len(errors) - limit} more" if len(errors) > limit else ""
        return cls("; ".join(shown) + more, shown)


class PolicyRewoundError(PolicyError):
    """This clone has seen a policy, and the policy ref is now gone, has no ``[policy]``, or
    is not a fast-forward of the last policy seen: fail closed until a person accepts it
    (``git jobs trust accept-policy``)."""


class SyncError(JobsError, cob.TransportError):
    """A sync could not talk to the remote. ``report`` holds what was done before the failure."""

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report
