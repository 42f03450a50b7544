"""Trusted requests: which signed ``release``/``rerun`` ops a node honours, and what they do.

A job's command is code from its commit, so a request is a reason to run only when its signer
may request work under this node's trust policy (:attr:`jobs.policy.Policy.requesters`: the
policy's ``requesters`` list; without one, nobody), and only when it is a request: a
``release`` with ``ask`` (``git jobs release``) or a ``rerun``. A node's own plain release of a
commit it works on (it follows it) is never a request to other nodes. Two effects:

- **candidates**: a commit with a trusted asked ``release`` or ``rerun`` of one of its jobs may run
  here (:func:`jobs.node.candidates.requested`);
- **fresh attempts**: a trusted ``rerun`` of a job — or one signed by the node's own key — makes
  this node's runs of it that started before the node had *seen* that rerun stop counting
  (:class:`Reruns`, given to :class:`~jobs.node.work.Workshop`; ``status`` applies it too).
  "Seen" is causal, not a clock: a change this node writes has every change it had accepted as
  an ancestor, so a run started after the rerun arrived has a start change descending from it.
  No requester's clock, and no node's, can move it.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import pygit2

import cob.reader
from cob.errors import TransportError

from .errors import PolicyError
from .jobtype import TYPENAME
from .model import Job, Runs
from .text import safe

if TYPE_CHECKING:  # a type only: the store reads requests through the gate
    from .store import Jobs

MAX_REQUESTED = 200  # commits with trusted requests a node considers, newest request first
MAX_FETCH = 20  # requested commits fetched by id in one call
FETCH_TIMEOUT = 120.0
REQUESTED_ROOT = "refs/git-jobs/requested/"  # keeps fetched requested commits from gc


def trusted_requesters(jobs: Jobs, out: Callable[[str], None] | None = None) -> frozenset[str]:
    """Who may request work here now (read from the policy ref each time: it moves on fetch).

    A policy that does not validate honours no request (and says so): a broken policy must
    never widen what runs."""
    try:
        return frozenset(jobs.policy().requesters)
    except PolicyError as e:
        if out is not None:
            out(f"no request is honoured: {safe(str(e).splitlines()[0])}")
        return frozenset()


def latest_request(
    job: Job, requesters: Collection[str], own: str | None = None
) -> tuple[datetime, str, str] | None:
    """(time, change oid, nid) of the newest trusted request (an asked ``release`` or a
    ``rerun``) of ``job``, and of ``own``'s ``rerun`` (a node honours its own key's rerun, see
    :class:`Reruns`). A node's own plain release of what it works on is not a request."""
    best: tuple[datetime, str, str] | None = None
    for kind, extra in ((job.asks(), None), (job.reruns(), own)):
        for nid, req in kind.items():
            if (nid in requesters or nid == extra) and (best is None or (req.last_at, req.change) > best[:2]):
                best = (req.last_at, req.change, nid)
    return best


@dataclass(frozen=True, slots=True)
class Asked:
    """A commit trusted requesters asked for: the newest request, and a digest of them all."""

    commit: str
    when: datetime
    nid: str
    digest: str  # changes when any trusted requester asks again (a settled commit is looked at)


def requested_commits(jobs: Jobs, requesters: Collection[str], own: str | None = None) -> list[Asked]:
    """Every commit with a trusted ``release`` or ``rerun`` of one of its jobs (or a ``rerun``
    by ``own``, this node's key), the most recently asked first, at most :data:`MAX_REQUESTED`
    (present in the object store or not)."""
    if not requesters and own is None:
        return []
    found: dict[str, tuple[tuple[datetime, str, str], list[str]]] = {}
    for job in _named_by(jobs, {*requesters, *([own] if own else [])}):
        latest = latest_request(job, requesters, own)
        if latest is None:
            continue
        changes = [
            r.change
            for kind, extra in ((job.asks(), None), (job.reruns(), own))
            for nid, r in kind.items()
            if nid in requesters or nid == extra
        ]
        best, seen = found.get(job.commit, (latest, []))
        found[job.commit] = (max(best, latest), seen + changes)
    out = [
        Asked(commit, best[0], best[2], hashlib.sha256(" ".join(sorted(seen)).encode()).hexdigest()[:24])
        for commit, (best, seen) in found.items()
    ]
    out.sort(key=lambda a: (a.when, a.commit), reverse=True)
    return out[:MAX_REQUESTED]


def _named_by(jobs: Jobs, nids: Collection[str]) -> Iterator[Job]:
    """The jobs whose object some of ``nids`` names in its own index: a request is a change
    its requester signed, so its index names the job. Reading only those keeps a stranger's
    index (any number of jobs nobody asked for) out of every node pass."""
    reader = cob.reader.RefReader(jobs.repo)
    ids: set[str] = set()
    for nid in sorted(nids):
        ids.update(reader.objects_of(nid, TYPENAME))
    yield from jobs._get_many(sorted(ids))


def fetch_requested(jobs: Jobs, requesters: Collection[str], remote: str) -> list[str]:
    """Fetch from ``remote`` the requested commits this node does not have (by id, at most
    :data:`MAX_FETCH` per call), each into ``refs/git-jobs/requested/<sha>`` so it is kept;
    refs of commits no longer requested are removed. Returns the commits fetched.

    A trusted request names a commit this node may not have (a branch it does not follow): it
    is fetched, never merely waited for. A commit the remote does not have is skipped."""
    from cob import sync as cob_sync  # here: `status` reads reruns (Reruns) without the transport

    repo = jobs.repo
    order = [a.commit for a in requested_commits(jobs, requesters)]  # newest request first
    asked = set(order)
    for name in list(repo.references):
        if name.startswith(REQUESTED_ROOT) and name[len(REQUESTED_ROOT) :] not in asked:
            with contextlib.suppress(pygit2.GitError, KeyError):
                repo.references.delete(name)
    # one commit that stalls or is gone does not stop the others
    missing = [c for c in dict.fromkeys(order) if not _present(repo, c)][:MAX_FETCH]
    gitdir = str(repo.path).rstrip("/")
    fetched = []
    for commit in missing:
        args = [*cob_sync.QUIET_FETCH, remote, f"{commit}:{REQUESTED_ROOT}{commit}"]
        try:
            done = cob_sync.run_git(gitdir, args, timeout=FETCH_TIMEOUT).returncode == 0
        except TransportError:
            continue
        if done:
            fetched.append(commit)
    return fetched


def _present(repo: pygit2.Repository, commit: str) -> bool:
    try:
        return isinstance(repo.get(commit), pygit2.Commit)
    except (pygit2.GitError, KeyError, ValueError):
        return False


class Reruns:
    """Given a job and a node, that node's runs of it that still count after trusted reruns.

    ``requesters`` may be replaced between passes (the node re-reads its policy). Ancestry
    answers are remembered: the DAG never changes, and ``plan()`` asks for every job often.
    """

    def __init__(self, repo: pygit2.Repository, requesters: Collection[str] = ()) -> None:
        self.repo = repo
        self.requesters = frozenset(requesters)
        self._seen: dict[tuple[str, str], bool] = {}

    def __call__(self, job: Job, nid: str) -> Runs:
        runs = job.runs_of(nid)
        if not runs:
            return runs
        # a node honours its own key's rerun too (with no policy: `git jobs rerun` on the node)
        reruns = [r.change for who, r in job.reruns().items() if who in self.requesters or who == nid]
        reruns = [c for c in reruns if c]
        if not reruns:
            return runs
        kept = {}
        for run_id, run in runs.items():
            start = job.start_change(nid, run_id)
            if start is None or all(self._after(start, r) for r in reruns):
                kept[run_id] = run
        return Runs(kept)

    def _after(self, start: str, rerun: str) -> bool:
        """True when the change ``start`` had the rerun change ``rerun`` as an ancestor."""
        key = (start, rerun)
        known = self._seen.get(key)
        if known is None:
            try:
                known = start == rerun or bool(
                    self.repo.descendant_of(pygit2.Oid(hex=start), pygit2.Oid(hex=rerun))
                )
            except (pygit2.GitError, KeyError, ValueError):
                known = True  # cannot tell: count the run (never grant attempts by accident)
            self._seen[key] = known
        return known
