"""Local trust: nodes one person (or one node) trusts on top of the repository's policy.

Kept in git config, never in the ledger: it is this person's choice, not the project's, and
nothing a peer sends can change it. Each trusted node is one value of the multi-valued key
``jobs.trust``, ``NID`` or ``NID NAME``:

    git config --add jobs.trust "z6MkhaX… alice-laptop"

``git jobs trust add`` writes the repository's own config; a value in ``~/.gitconfig`` applies
to every repository of that user. A hand-edited value that does not parse is an error, never
silently skipped: a typo must not make a merge gate count nobody (or everybody).
"""

from __future__ import annotations

import re

import pygit2

import cob

from .errors import InvalidInputError, PolicyError
from .spec.policy import check_node_name
from .text import safe

TRUST_KEY = "jobs.trust"


def _entries(repo: pygit2.Repository) -> list[str]:
    try:
        return [str(v) for v in repo.config.get_multivar(TRUST_KEY)]
    except (KeyError, ValueError, pygit2.GitError):
        return []


def local_trust(repo: pygit2.Repository) -> dict[str, str]:
    """{nid: name} of the nodes trusted locally ("" when unnamed), from every config level."""
    out: dict[str, str] = {}
    errors: list[str] = []
    for value in _entries(repo):
        raw, _, name = value.strip().partition(" ")
        name = name.strip()
        try:
            nid = cob.normalize_nid(raw)
        except cob.CobError:
            errors.append(f"git config {TRUST_KEY}: {safe(raw[:80])!r} is not a node id")
            continue
        problem = check_node_name(name) if name else None
        if problem:
            errors.append(f"git config {TRUST_KEY}: {nid}: {problem}")
            continue
        out[nid] = name or out.get(nid, "")
    if errors:
        raise PolicyError.of(errors)
    return dict(sorted(out.items()))


def _nid(text: str) -> str:
    try:
        return cob.normalize_nid(text.strip())
    except cob.CobError:
        raise InvalidInputError(f"not a node id: {safe(text[:80])!r}") from None


def trust_add(repo: pygit2.Repository, nid: str, name: str | None = None) -> bool:
    """Trust ``nid`` locally (replacing its name); True when it was not trusted here before."""
    nid = _nid(nid)
    if name is not None:
        problem = check_node_name(name)
        if problem:
            raise InvalidInputError(problem)
    before = nid in local_trust(repo)
    value = f"{nid} {name.strip()}" if name else nid
    # Replaces every value of this NID (with or without a name) in the repository's config.
    repo.config.set_multivar(TRUST_KEY, f"^{re.escape(nid)}( |$)", value)
    return not before


def trust_remove(repo: pygit2.Repository, nid: str) -> bool:
    """Stop trusting ``nid`` locally; True when it was trusted in the repository's config."""
    nid = _nid(nid)
    pattern = f"^{re.escape(nid)}( |$)"
    try:
        had = any(re.match(pattern, v) for v in _local_entries(repo))
        if had:
            repo.config.delete_multivar(TRUST_KEY, pattern)
    except (KeyError, pygit2.GitError):
        return False
    return had


def _local_entries(repo: pygit2.Repository) -> list[str]:
    """The values in the repository's own config only (what ``remove`` can change)."""
    try:
        local = pygit2.Config(str(repo.path).rstrip("/") + "/config")
        return [str(v) for v in local.get_multivar(TRUST_KEY)]
    except (KeyError, ValueError, pygit2.GitError, OSError):
        return []
