"""A job's checkout: a fresh repository holding only the commit, sharing nothing with the node.

A linked worktree (``git worktree add``) would give the job a ``.git`` file pointing into the
node's git directory — its hooks, config and refs, all writable — so a job could plant a hook
or forge this node's results. Instead the node makes a new repository in the job's scratch
directory and fetches just that commit into it (``--depth 1``) before the job starts. The job
still gets a real repository (``git rev-parse HEAD``, ``git describe --always`` work) but what
it writes there is its own, and is deleted with the scratch directory.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

import pygit2

from cob.gitrun import git_env

from ..errors import JobsError

CHECKOUT_TIMEOUT = 600.0


class CheckoutError(JobsError):
    """The commit could not be checked out for a job (the run ends ``error``)."""


def _git(args: list[str], cwd: Path | None = None) -> None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=git_env(untrusted_content=True),  # no hook or filter of the commit runs
            capture_output=True,
            text=True,
            timeout=CHECKOUT_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CheckoutError(str(e)) from None
    if done.returncode != 0:
        raise CheckoutError((done.stderr.strip().splitlines() or [f"git {args[0]} failed"])[-1])


def make_checkout(repo: pygit2.Repository, commit: str, dest: Path) -> None:
    """Check ``commit`` out into ``dest`` as a new repository of its own (detached HEAD)."""
    dest.mkdir(parents=True, exist_ok=True)
    source = Path(repo.path).resolve().as_uri()
    _git(["init", "-q", "--template=", str(dest)])
    # protocol v2 serves any commit of the node's repository, reachable from a ref or not
    options = ["-c", "protocol.file.allow=always", "-c", "protocol.version=2"]
    _git([*options, "fetch", "-q", "--depth", "1", "--no-tags", source, commit], cwd=dest)
    _git(["-c", "advice.detachedHead=false", "checkout", "-q", "--detach", commit], cwd=dest)


def remove_tree(path: str | Path) -> None:
    """Delete a job's scratch directory, even where the job made parts of it read-only."""
    if not path or not Path(path).exists():
        return
    shutil.rmtree(path, ignore_errors=True)
    if not Path(path).exists():
        return
    for d in [Path(path), *Path(path).rglob("*")]:
        if d.is_dir() and not d.is_symlink():
            with contextlib.suppress(OSError):
                d.chmod(0o700)
    shutil.rmtree(path, ignore_errors=True)
