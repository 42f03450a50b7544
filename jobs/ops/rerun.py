"""``rerun {}``: the signer asks every node to run the job again (FORMAT.md 11.1, 11.3)."""

from __future__ import annotations

from typing import ClassVar

from .base import Checking, Folding, JobOp
from .release import note_request


class Rerun(JobOp, tag="rerun"):
    """The signer asks every node to run this job again, with fresh attempts.

    No fields: who (the signer) and which change (its oid) say it all. A node's runs that
    started before it had *seen* this change (their start change does not descend from it) no
    longer count towards its attempts, when the signer may request work under the node's trust
    policy. Causal, not by clock: no requester's or node's clock can move it. The fold keeps
    each node's first and latest rerun, as for ``release``.
    """

    help: ClassVar[str] = "The signer asks every node to run the job again, with fresh attempts."

    def validate(self, at: Checking) -> None:
        """Always valid in a signed non-root change: whether a node acts on it is its policy's."""

    def apply(self, at: Folding) -> None:
        note_request(at.state.reruns, at.author, at.change.timestamp, at.key)

    def summary(self) -> str:
        return "Rerun"
