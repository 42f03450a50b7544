"""``release {ask?}``: the signer asks for the job to be run (FORMAT.md 11.1, 11.3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from cob import Reject

from ..model import JobState, RequestState
from ..text import safe
from .base import Checking, Folding, JobOp
from .fields import check_name


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

    ``fanout``: on the job of a dynamic matrix's definition (issue 32), the names of the jobs
    the signer expanded it into from its needs' outputs (FORMAT.md 11.1); omitted otherwise.
    """

    help: ClassVar[str] = "The signer wants the job run (with ask: a person asks other nodes to run it)."

    ask: bool = False
    fanout: list[str] | None = None

    def validate(self, at: Checking) -> None:
        """Valid in a signed non-root change (whether a node acts on it is its policy's) when
        its ``fanout``, if any, names matrix jobs of this job's definition."""
        problem = check_fanout(at.state.name, self.fanout) if self.fanout is not None else None
        if problem:
            raise Reject(problem)

    def apply(self, at: Folding) -> None:
        note_request(at.state.requests, at.author, at.change.timestamp, at.key)
        if self.ask:
            note_request(at.state.asks, at.author, at.change.timestamp, at.key)
        if self.fanout is not None:
            _note_fanout(at.state, at.author, at.key, self.fanout)

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


def _note_fanout(state: JobState, nid: str, key: tuple[int, str], fanout: list[str]) -> None:
    """Keep ``nid``'s first ``fanout`` by (commit time, oid): order-independent."""
    had = state.fanouts.get(nid)
    if had is None or key < tuple(had[0]):
        state.fanouts[nid] = (key, list(fanout))


MAX_FANOUT = 64  # jobs a dynamic matrix expands into (as a static one: jobs.spec.matrix)


def check_fanout(name: str, fanout: Sequence[str]) -> str | None:
    """Why a release's ``fanout`` is invalid, or None: 1 to 64 distinct valid job names, each
    a matrix job of this job's definition (``NAME (k=v, …)``)."""
    if not 1 <= len(fanout) <= MAX_FANOUT or len(set(fanout)) != len(fanout):
        return f"a fanout names 1 to {MAX_FANOUT} distinct jobs"
    for one in fanout:
        problem = check_name(one) if isinstance(one, str) else "a job name must be a string"
        if problem:
            return problem
        if not (one.startswith(name + " (") and one.endswith(")")):
            return f"a fanout of {safe(name)!r} names {safe(one)!r}, not one of its matrix jobs"
    return None
