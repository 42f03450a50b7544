"""Followed refs: the branches (or pull-request refs) of a remote that this node builds.

``--follow refs/heads/main`` on a node fetches that ref from each remote on every interval into
a ref of the node's own — ``refs/git-jobs/follow/<remote>/heads/main`` — and works on its tip.
HEAD and the local branches never move: the node's checkout stays whatever its user made it,
and what it builds is exactly what the followed refs point at. Forced pushes are followed (the
private refs are the remote's view, nothing more) and deleted refs are pruned.

A spec is ``refs/…`` (one ``*`` allowed, as in a git refspec: ``refs/heads/*``,
``refs/pull/*/head``) or a branch name (``main`` means ``refs/heads/main``), optionally prefixed
by the remote: ``origin:refs/heads/main``. Only the part after the last ``:refs/`` is the spec, so
a remote URL with colons (``git@host:repo.git:refs/heads/main``) is fine.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

import pygit2

import cob
from cob import sync as cob_sync

from ..errors import JobsError

FOLLOW_ROOT = "refs/git-jobs/follow/"
FETCH_TIMEOUT = 300.0
MAX_FOLLOWED_TIPS = 1000  # more refs than this under one node's follows is refused, not walked
_SPEC = re.compile(r"^refs/[A-Za-z0-9._/*-]+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class FollowError(JobsError):
    """A follow spec that is not a valid ref pattern, or a followed ref that cannot be fetched."""


def parse_spec(text: str) -> str:
    """``refs/…`` pattern (at most one ``*``) or a branch name; the full ref pattern."""
    spec = text.strip()
    if not spec.startswith("refs/"):
        spec = f"refs/heads/{spec}"
    probe = spec.replace("*", "x")
    if (
        not _SPEC.match(spec)
        or spec.count("*") > 1
        or "//" in spec
        or ".." in spec
        or spec.endswith(("/", ".lock", "."))
        or not pygit2.reference_is_valid_name(probe)
    ):
        raise FollowError(f"not a ref to follow: {text!r} (e.g. refs/heads/main, refs/heads/*, main)")
    return spec


def remote_key(remote: str) -> str:
    """A ref component for ``remote``: its name when it is a plain name, else a short hash."""
    if _NAME.match(remote) and not remote.endswith(".lock"):
        return remote
    return "url-" + hashlib.sha256(remote.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Follow:
    """One followed ref pattern on one remote."""

    remote: str
    spec: str

    @property
    def local(self) -> str:
        """Where the node keeps what it fetched (a pattern when ``spec`` is)."""
        return f"{FOLLOW_ROOT}{remote_key(self.remote)}/{self.spec[len('refs/') :]}"

    @property
    def refspec(self) -> str:
        return f"+{self.spec}:{self.local}"

    def __str__(self) -> str:
        return f"{cob_sync.describe(self.remote)}:{self.spec}"


def parse_follow(text: str, remotes: Iterable[str]) -> list[Follow]:
    """``R:refs/…`` follows on R; a bare spec follows on each of ``remotes``."""
    if ":refs/" in text:
        remote, rest = text.rsplit(":refs/", 1)
        if not remote or remote.startswith("-"):
            raise FollowError(f"not a remote: {remote!r} in {text!r}")
        return [Follow(remote, parse_spec("refs/" + rest))]
    spec = parse_spec(text)
    targets = list(remotes)
    if not targets:
        raise FollowError(f"follow {text!r}: on which remote? (give R:{spec}, or a --remote)")
    for remote in targets:
        if not remote or remote.startswith("-"):
            raise FollowError(f"not a remote: {remote!r}")
    return [Follow(r, spec) for r in targets]


def fetch(repo: pygit2.Repository, follows: Iterable[Follow], timeout: float = FETCH_TIMEOUT) -> None:
    """Fetch every follow of one remote into the node's private refs; raise on failure."""
    by_remote: dict[str, list[Follow]] = {}
    for f in follows:
        by_remote.setdefault(f.remote, []).append(f)
    gitdir = str(repo.path).rstrip("/")
    for remote, fs in by_remote.items():
        args = [*cob_sync.QUIET_FETCH, "--prune", remote, *(f.refspec for f in fs)]
        res = cob_sync.run_git(gitdir, args, timeout=timeout)
        if res.returncode != 0:
            why = next((ln for ln in res.stderr.splitlines() if ln.startswith(("fatal:", "error:"))), "")
            why = why.split(":", 1)[-1].strip() or (res.stderr.strip().splitlines() or ["failed"])[-1]
            raise cob.TransportError(f"cannot fetch followed refs from {cob_sync.describe(remote)}: {why}")


def tips(repo: pygit2.Repository, follows: Iterable[Follow]) -> dict[str, str]:
    """{private ref: commit} for every fetched ref matching a follow (bounded)."""
    patterns = [f.local for f in follows]
    out: dict[str, str] = {}
    for name in repo.references:
        if not name.startswith(FOLLOW_ROOT) or not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        try:
            out[name] = str(repo.references[name].peel(pygit2.Commit).id)
        except (pygit2.GitError, KeyError, ValueError):
            continue  # a tag of a tree or blob, or a broken ref: nothing to build
        if len(out) > MAX_FOLLOWED_TIPS:
            raise FollowError(f"more than {MAX_FOLLOWED_TIPS} followed refs: narrow the follow patterns")
    return out


def reached_by(repo: pygit2.Repository, source: str | None) -> str | None:
    """The full ref a candidate's source names: a followed ref as is, a named REV resolved
    through the repository (``HEAD`` → its branch, ``main`` → ``refs/heads/main``); else None."""
    if not source or "~" in source:
        return None  # a followed tip's ancestor was not reached by that ref's name
    name = source.split(":", 1)[1] if ":" in source and not source.startswith("refs/") else source
    if name.startswith(FOLLOW_ROOT):  # refs/git-jobs/follow/<remote>/heads/main: the remote's ref
        rest = name[len(FOLLOW_ROOT) :].split("/", 1)
        return "refs/" + rest[1] if len(rest) == 2 else None
    if name.startswith("refs/"):
        return name
    try:
        if name == "HEAD":
            return None if repo.head_is_detached else repo.head.name
        ref = repo.lookup_reference_dwim(name)
    except (KeyError, ValueError, pygit2.GitError):
        return None
    return ref.name if ref.name != "HEAD" else None
