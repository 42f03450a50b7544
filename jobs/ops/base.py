"""What every op of the Job type is: a tagged, strict msgspec struct that owns its rules.

One op, one module (as git-bug's ``entity/dag`` has one file per operation with its
``Validate`` and ``Apply``): the struct is its wire format (FORMAT.md 11.1), ``validate`` its
field rules and authorization (raise :class:`cob.Reject`; never mutate), ``apply`` what it does
to the folded state (never raise), ``summary`` its part of the change's commit message, and
``help`` the one line people read about it (``git jobs show -h``, docs). The type
(:mod:`jobs.jobtype`) only dispatches to them; the registry is :data:`jobs.ops.OPS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import msgspec

from cob import Change, EvalContext

from ..model import JobState, RunState


@dataclass(slots=True)
class Checking:
    """One signed non-root change being validated, op by op (nothing here is mutated but
    ``started``): the folded ``state`` before it, the change, its ``author`` and the DAG."""

    state: JobState
    change: Change
    author: str
    dag: EvalContext
    started: set[str] = field(default_factory=set)  # run ids started earlier in this change

    @property
    def mine(self) -> dict[str, RunState]:
        """The author's runs so far (empty when none; never created here)."""
        return self.state.runs.get(self.author, {})


@dataclass(slots=True)
class Folding:
    """One validated change being applied to ``state``, op by op."""

    state: JobState
    change: Change
    author: str
    mine: dict[str, RunState] = field(init=False)  # the author's runs (an entry for every signer)

    def __post_init__(self) -> None:
        self.mine = self.state.runs.setdefault(self.author, {})

    @property
    def key(self) -> tuple[int, str]:
        """(commit time, change oid): the least key wins among duplicates (FORMAT.md 11.2)."""
        return self.change.key


class JobOp(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, omit_defaults=True):
    """The base of every op: tagged by ``"type"``, strict (an unknown field is a decode error),
    optional fields omitted when absent (writers never write ``null``)."""

    help: ClassVar[str] = ""  # one line, for people: what the signer says with this op

    def validate(self, at: Checking) -> None:
        """Raise :class:`cob.Reject` when this op may not stand in ``at.change``."""
        raise NotImplementedError

    def apply(self, at: Folding) -> None:
        """Fold this (validated) op into ``at.state``."""
        raise NotImplementedError

    def summary(self) -> str:
        """This op's part of the change's one-line commit message (deterministic)."""
        raise NotImplementedError
