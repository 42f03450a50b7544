"""Which commits this node may run jobs (and triggers) for — the one place that decides.

A commit's jobs are code from that commit, so a node runs them only for commits *someone it
trusts chose*:

- the tips of the refs it follows (:mod:`.follow`), and with ``depth`` N their first-parent
  ancestors up to N commits deep; and every commit pushed since the last one this node worked
  on (:data:`BACKLOG` at most per tip, newest first): a push the node did not see before the
  next one arrived is still built — a commit nobody builds would never get a verdict;
- revisions its user named on the command line (``git jobs work any REV…``; HEAD by default);
- for ``work trigger``: its own (local) branches too. Not ``refs/remotes/*``: a plain ``git
  fetch`` makes one for every branch anyone pushed to the hub, so the node's view of a remote
  counts only through the refs it follows (their private refs are its remote-tracking branches);
- commits a trusted requester asked for — :func:`requested`: a signed ``release`` or ``rerun``
  by a node the trust policy allows to request work (none without a policy).

A commit that merely exists in the object store, or has jobs in the ledger (anyone who can push
to a hub can arrange both), is never a candidate.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace

import pygit2

from ..requests import requested_commits
from ..store import Jobs
from .follow import Follow, tips

MAX_DEPTH = 1000
# First-parent commits of a followed tip looked back through for the last one this node worked
# on (released, or ran): those after it are built too. Found none: only ``depth`` (a new node,
# a forced push or a push of more commits than this starts from the tip).
BACKLOG = 50
REQUESTED = "requested by "  # the source of a commit only a requester asked for (then: its NID)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A commit and why it may run (for messages and ``--json``)."""

    commit: str
    source: str
    time: int = 0
    request: str = ""  # a digest of its trusted requests (requested commits only)


def _commit(repo: pygit2.Repository, oid: str) -> pygit2.Commit | None:
    try:
        obj = repo.get(oid)
        return obj.peel(pygit2.Commit) if obj is not None else None
    except (pygit2.GitError, KeyError, ValueError):
        return None


def _first_parents(repo: pygit2.Repository, sha: str, count: int) -> list[pygit2.Commit]:
    out: list[pygit2.Commit] = []
    commit = _commit(repo, sha)
    while commit is not None and len(out) < count:
        out.append(commit)
        commit = _commit(repo, str(commit.parent_ids[0])) if commit.parent_ids else None
    return out


def worked_on(jobs: Jobs, commit: str, nid: str) -> bool:
    """Has node ``nid`` looked at ``commit``: released or run one of its jobs?"""
    return any(nid in j.requests() or nid in j.runs() for j in jobs.find_by_commit(commit))


def followed(
    repo: pygit2.Repository,
    follows: Iterable[Follow],
    depth: int = 1,
    jobs: Jobs | None = None,
    me: str | None = None,
) -> list[Candidate]:
    """The followed tips and their first-parent ancestors (``depth`` commits per tip), and with
    ``jobs`` and ``me`` (this node) every commit since the last one it worked on (the backlog)."""
    out: list[Candidate] = []
    depth = max(1, min(depth, MAX_DEPTH))
    backlog = jobs is not None and me is not None
    for ref, sha in sorted(tips(repo, follows).items()):
        chain = _first_parents(repo, sha, max(depth, BACKLOG + 1 if backlog else 0))
        keep = depth
        if jobs is not None and me is not None:
            seen = next((i for i, c in enumerate(chain) if worked_on(jobs, str(c.id), me)), None)
            keep = max(depth, seen or 0)
        for n, commit in enumerate(chain[:keep]):
            out.append(Candidate(str(commit.id), ref if n == 0 else f"{ref}~{n}", commit.commit_time))
    return out


def branches(repo: pygit2.Repository) -> list[Candidate]:
    """Tips of the node's own local branches."""
    out = []
    for name in repo.references:
        if name.startswith("refs/heads/"):
            commit = _commit(repo, str(repo.references[name].target))
            if commit is not None:
                out.append(Candidate(str(commit.id), name, commit.commit_time))
    return out


def requested(jobs: Jobs, requesters: Collection[str], own: str | None = None) -> list[Candidate]:
    """Commits that a node in ``requesters`` asked to be run: a signed ``release`` or ``rerun``
    of one of their jobs (``git jobs release``, ``git jobs rerun``; a node's own release when it
    works on a commit counts too, if that node may request). Only requests signed by one of
    ``requesters`` (the NIDs the trust policy allows to request work) count; an empty set — no
    policy — honours none. At most ``MAX_REQUESTED`` commits, those asked for most recently;
    only those in the object store (:func:`.requests.fetch_requested` fetches the others).

    ``Candidate.request`` is a digest of the trusted requests: a node that has settled a commit
    looks at it again when a new one arrives.
    """
    out = []
    for asked in requested_commits(jobs, requesters, own):
        commit = _commit(jobs.repo, asked.commit)
        if commit is not None:
            out.append(Candidate(asked.commit, f"{REQUESTED}{asked.nid}", commit.commit_time, asked.digest))
    return out


def ordered(found: Iterable[Candidate], repo: pygit2.Repository | None = None) -> list[Candidate]:
    """Newest first (commit time), each commit once (its first reason kept, and any trusted
    request it also has); present only."""
    seen: dict[str, Candidate] = {}
    for c in found:
        first = seen.get(c.commit)
        if first is not None:
            if c.request and not first.request:  # a followed commit may be requested too
                seen[c.commit] = replace(first, request=c.request)
        elif repo is None or _commit(repo, c.commit) is not None:
            seen[c.commit] = c
    return sorted(seen.values(), key=lambda c: -c.time)


def named(repo: pygit2.Repository, jobs: Jobs, revs: Iterable[str]) -> list[Candidate]:
    """Revisions the user named (resolved now; an unknown one is the caller's error)."""
    out = []
    for rev in revs:
        sha = jobs.resolve_commit(rev)
        commit = _commit(repo, sha)
        out.append(Candidate(sha, rev, commit.commit_time if commit is not None else 0))
    return out


def select(
    jobs: Jobs,
    *,
    follows: Iterable[Follow] = (),
    depth: int = 1,
    revs: Iterable[str] = (),
    requesters: Collection[str] = (),
    me: str | None = None,
    own: str | None = None,
) -> list[Candidate]:
    """Every commit this node may run now, newest first: named, followed (with ``me``, this
    node's NID, the backlog of commits since the last it worked on), trusted requests (and
    with ``own``, this node's NID, the reruns its own key signed)."""
    repo = jobs.repo
    found = [*named(repo, jobs, revs), *followed(repo, follows, depth, jobs, me)]
    found += requested(jobs, requesters, own)
    return ordered(found, repo)
