"""A branch (or a range ``A..B``) as a list of commits with their outcome, a page at a time.

It answers "what ran on these commits?" the way ``gh run list`` does, for the terminal
(``git jobs status --branch``) and the web page alike, and it lives in the library so both
give the same answer. Each commit's entry is the ``git jobs status --json`` shape
(:meth:`jobs.gate.GateStatus.to_json`) plus its subject: whatever that shape gains (trust,
expected jobs) reaches every branch view with no change here.

Walking is bounded: a page is at most :data:`MAX_PER_PAGE` commits and a walk skips at most
:data:`MAX_WALK` commits, so a request for page 10,000 of a huge history costs a bounded
amount and says it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pygit2
from pygit2.enums import SortMode

from .errors import InvalidInputError, MissingCommitError
from .store import Jobs

MAX_PER_PAGE = 200
MAX_WALK = 100_000
DEFAULT_PER_PAGE = 20


@dataclass(frozen=True, slots=True)
class Span:
    """What to walk: commits reachable from ``tip`` but not from ``hide``; ``label`` as given."""

    label: str
    tip: str
    hide: str | None = None


def subject_of(repo: pygit2.Repository, commit: str) -> str:
    """The commit's first line, or "" when the commit is not (yet) in this repository."""
    try:
        obj: Any = repo.get(commit)
        message: str = obj.message if obj is not None else ""
    except (ValueError, AttributeError, KeyError):
        return ""
    text = message.strip()
    return text.splitlines()[0] if text else ""


def _commit(store: Jobs, rev: str) -> str:
    if rev.startswith("-"):
        raise InvalidInputError(f"not a revision: {rev!r}")
    return store.resolve_commit(rev)


def current_branch(repo: pygit2.Repository) -> str:
    """The checked-out branch's short name, else ``HEAD`` (detached or unborn)."""
    try:
        if repo.head_is_detached:
            return "HEAD"
        return str(repo.head.shorthand)
    except (pygit2.GitError, KeyError, ValueError):
        return "HEAD"


def span(store: Jobs, spec: str | None) -> Span:
    """A :class:`Span` from ``B`` (a branch or any rev) or ``A..B``; None is the current branch."""
    text = (spec or current_branch(store.repo)).strip()
    if "..." in text:
        raise InvalidInputError(f"symmetric ranges (A...B) are not supported: {text!r}")
    if ".." in text:
        left, _, right = text.partition("..")
        try:
            return Span(text, _commit(store, right or "HEAD"), _commit(store, left or "HEAD"))
        except MissingCommitError as e:
            raise MissingCommitError(f"range {text!r}: {e}") from None
    return Span(text, _commit(store, text))


def walk(repo: pygit2.Repository, where: Span, skip: int, limit: int) -> tuple[list[str], bool]:
    """``limit`` commits of ``where`` after the first ``skip``, newest first as `git log`
    lists them; and whether more follow."""
    walker: Any = repo.walk(pygit2.Oid(hex=where.tip), SortMode.TOPOLOGICAL | SortMode.TIME)
    if where.hide:
        walker.hide(pygit2.Oid(hex=where.hide))
    out: list[str] = []
    for i, c in enumerate(walker):
        if i < skip:
            continue
        if len(out) == limit:
            return out, True
        out.append(str(c.id))
    return out, False


def branch_json(
    store: Jobs,
    spec: str | None,
    *,
    page: int = 1,
    per_page: int = DEFAULT_PER_PAGE,
    all_nodes: bool = False,
) -> dict[str, Any]:
    """The JSON shape of ``git jobs status --branch B --json`` (see docs/CLI.md);
    ``all_nodes`` counts every node's runs, as ``status --all-nodes``."""
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise InvalidInputError(f"a page holds 1 to {MAX_PER_PAGE} commits, not {per_page}")
    if page < 1 or (page - 1) * per_page > MAX_WALK:
        raise InvalidInputError(f"page {page} is out of range (at most {MAX_WALK} commits are walked)")
    where = span(store, spec)
    shas, more = walk(store.repo, where, (page - 1) * per_page, per_page)
    from .gate import gate_status  # the merge verdict under the trust policy, as `status` gives

    policy = store.policy()  # read once for the page
    commits = []
    for sha in shas:
        entry = gate_status(store, sha, policy, all_nodes=all_nodes).to_json()
        entry["subject"] = subject_of(store.repo, sha)
        commits.append(entry)
    return {
        "branch": where.label,
        "tip": where.tip,
        "page": page,
        "per_page": per_page,
        "more": more,
        "commits": commits,
    }
