"""``request {commit, name}``: the root of every job (FORMAT.md 11.1), unsigned and alone."""

from __future__ import annotations

from typing import ClassVar

from cob import Reject
from cob.refs import is_oid

from ..model import JobState
from ..text import safe
from .base import Checking, Folding, JobOp
from .fields import check_name


class Request(JobOp, tag="request"):
    """The root op: a job is a request to run ``name`` on ``commit``."""

    help: ClassVar[str] = "The root, unsigned: run NAME on COMMIT (one pair, one job id everywhere)."

    commit: str
    name: str

    def initial(self) -> JobState:
        """The job's state after its root (raise :class:`cob.Reject` when a field is invalid)."""
        if not is_oid(self.commit):
            raise Reject(f"request names an invalid commit {safe(self.commit)!r}")
        problem = check_name(self.name)
        if problem:
            raise Reject(problem)
        return JobState(self.commit, self.name)

    def validate(self, at: Checking) -> None:
        raise Reject("a request op may only appear in the root")

    def apply(self, at: Folding) -> None:
        """Nothing: the root is folded by :meth:`initial`, and validate refuses any other."""

    def summary(self) -> str:
        return f"Request {self.name} for {self.commit}"
