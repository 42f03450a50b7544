"""``release {ask?}``: the signer asks for the job to be run (FORMAT.md 11.1, 11.3)."""

from __future__ import annotations

from typing import ClassVar

from ..model import RequestState
from .base import Checking, Folding, JobOp


class Release(JobOp, tag="release"):
    """The signer asks for this job to be run: who asked (the signer) and when (commit time).

    The root's ``request`` is unsigned (anyone can derive it from (commit, name)), so it says
    nothing about *who* wants the job. A node that creates a job writes one ``release`` in its
    own namespace; it is the signed change that lets peers take the job at fetch, and what a
    trust policy reads to decide whose requests count. A node may release a job again (a later
    request, e.g. to ask for a rerun); the fold keeps each node's first and latest.

    ``ask``: a person asked other nodes to run it (``git jobs release``). A node's own release
    of a commit it works on has none (omitted: the bytes of a plain release are unchanged), and
    is never a request to other nodes: only an ``ask`` (or a ``rerun``) by a policy requester is.
    """

    help: ClassVar[str] = "The signer wants the job run (with ask: a person asks other nodes to run it)."

    ask: bool = False

    def validate(self, at: Checking) -> None:
        """Always valid in a signed non-root change: whether a node acts on it is its policy's."""

    def apply(self, at: Folding) -> None:
        note_request(at.state.requests, at.author, at.change.timestamp, at.key)
        if self.ask:
            note_request(at.state.asks, at.author, at.change.timestamp, at.key)

    def summary(self) -> str:
        return "Release"


def note_request(requests: dict[str, RequestState], nid: str, when: int, key: tuple[int, str]) -> None:
    """Keep ``nid``'s first and latest release (or rerun) by (commit time, oid): order-independent."""
    req = requests.get(nid)
    if req is None:
        requests[nid] = RequestState(when, key, when, key)
        return
    if key < tuple(req.first_key):
        req.first_at, req.first_key = when, key
    if key > tuple(req.last_key):
        req.last_at, req.last_key = when, key
