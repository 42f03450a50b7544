"""The node's own preflight checks (autosolve's phase 1): the repository and every remote.

Each raises :class:`PreflightError` with one line a person can act on; the node runs them
before any work (:meth:`jobs.node.daemon.Node.preflight`), so a node that cannot publish its
results never produces them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import pygit2

import cob
from cob import sync as cob_sync

from ..errors import JobsError
from .logs import state_dir

PREFLIGHT_TIMEOUT = 30.0


class PreflightError(JobsError):
    """A preflight check failed; the node did no work."""


def check_repository(path: str, remotes: Sequence[str]) -> tuple[pygit2.Repository, str]:
    """The repository opens, has a HEAD commit, is writable; a remote is given. (repo, HEAD)."""
    try:
        repo = cob.open_repository(path)
    except cob.RepositoryError as e:
        raise PreflightError(f"preflight: {e}") from None
    try:
        head = str(repo.head.peel(pygit2.Commit).id)
        list(repo.references)
    except (pygit2.GitError, KeyError, ValueError) as e:
        raise PreflightError(f"preflight: repository {repo.path} has no readable HEAD commit ({e})") from None
    directory = state_dir(repo)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".preflight-"):
            pass
        for sub in ("objects", "refs"):
            if not os.access(os.path.join(repo.path, sub), os.W_OK):
                raise PermissionError(f"{os.path.join(repo.path, sub)} is not writable")
    except OSError as e:
        raise PreflightError(f"preflight: repository {repo.path} is not writable: {e}") from None
    if not remotes:
        raise PreflightError("preflight: no remote given (use --remote R or git config jobs.remote R)")
    return repo, head


def check_remote(repo: pygit2.Repository, remote: str, head: str, nid: str, push: bool = True) -> None:
    """``remote`` answers for fetch (``ls-remote``) and, with ``push``, a dry-run push."""
    name = cob_sync.describe(remote)
    if not remote or remote.startswith("-"):
        raise PreflightError(f"preflight: invalid remote {remote!r}")
    gitdir = repo.path.rstrip("/")
    probe = f"refs/namespaces/{nid}/refs/git-jobs-preflight"
    checks = [("fetch", ["ls-remote", "--heads", remote])]
    if push:
        checks.append(("push", ["push", "--dry-run", "--porcelain", remote, f"{head}:{probe}"]))
    for what, args in checks:
        try:
            res = cob_sync.run_git(gitdir, args, timeout=PREFLIGHT_TIMEOUT)
        except cob.TransportError as e:
            raise PreflightError(f"preflight: remote {name} is not reachable for {what}: {e}") from None
        if res.returncode != 0:
            why = cob_sync.first_error(res.stderr)
            raise PreflightError(f"preflight: remote {name} is not reachable for {what}: {why}")
