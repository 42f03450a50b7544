"""Where the node meets :mod:`jobs.artifacts`: publishing a run's outputs, and taking a trusted
node's published outputs for the jobs that need them here.

A job with ``publish = true`` that this node has not run, and that a trusted node (this node's
policy plus local trust; never a stranger, and nobody without a policy) ran with success and
published, counts here as ``reused`` (``work any --dry-run`` names the node and run): it is not
run again, and the jobs that need it get its verified outputs copied into their checkout, as
local outputs would be. The assignment (:mod:`jobs.assign`) no longer keeps such a job's users
on its node, so the cells of a matrix that needs ``build`` spread over the nodes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import pygit2

from .. import artifacts
from ..model import Reason
from ..spec.definitions import JobDef
from ..store import Jobs
from .evidence import outputs_tree
from .outputs import store_dir

MISS_TTL = 2.0  # seconds a "not published" answer is kept


def publish_outputs(jobs: Jobs, d: JobDef, commit: str, run_id: uuid.UUID, reason: Reason) -> str:
    """Publish the kept outputs of a run of ``d`` (``publish = true``); a note for its log."""
    if not d.publish or reason is not Reason.SUCCEEDED or jobs.signer is None:
        return ""
    try:
        tree = outputs_tree(jobs.repo, store_dir(jobs.repo, commit, d.name))
        if tree is None:
            return "outputs not published: none were kept"
        return artifacts.publish(jobs.repo, jobs.signer, run_id, tree)
    except (OSError, pygit2.GitError, ValueError, artifacts.ArtifactError) as e:
        return f"outputs not published: {e}"


class Handoff:
    """Published outputs of other trusted nodes, found per (commit, job) and kept for the process
    — while their node stays trusted: the policy is read again at each use."""

    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs
        self._found: dict[tuple[str, str], tuple[str, uuid.UUID, str]] = {}
        self._missed: dict[tuple[str, str], float] = {}  # looked for, not found: when

    def _trusts(self, repo: pygit2.Repository) -> Callable[[str], bool]:
        """Whose outputs count now (read at each use: the policy moves on fetch)."""
        return artifacts.trusted(repo, self.jobs.signer.nid if self.jobs.signer is not None else None)

    def why(self, commit: str, d: JobDef) -> str | None:
        """Why ``d`` need not run here (a trusted node published its outputs), or None."""
        found = self._found.get((commit, d.name))
        if found is not None and not self._trusts(self.jobs.repo)(found[0]):
            del self._found[(commit, d.name)]  # the policy moved (a revoked key): look again
            found = None
        if found is None:
            if time.monotonic() - self._missed.get((commit, d.name), -MISS_TTL) < MISS_TTL:
                return None  # a plan is made many times a pass: look again only now and then
            got = artifacts.published_by(self.jobs, commit, d.name)
            if got is None:
                self._missed[(commit, d.name)] = time.monotonic()
                return None
            self._found[(commit, d.name)] = found = got
        nid, run_id, _ = found
        return f"outputs published by node {nid[:16]}… (run {str(run_id)[:8]}): not run"

    def provide(self, commit: str, needs: Iterable[str], dest: Path) -> list[str]:
        """Write the published outputs of ``needs`` into the checkout ``dest``."""
        out = []
        repo = None
        trusts = None
        for need in needs:
            found = self._found.get((commit, need))
            if found is None:
                continue
            repo = repo or pygit2.Repository(self.jobs.repo.path)  # its own: a worker thread's
            trusts = trusts or self._trusts(repo)
            if not trusts(found[0]):  # revoked since the plan: its outputs are not taken
                continue
            if artifacts.verify_tree(repo, found[2]) is None:
                artifacts.write_tree(repo, found[2], dest)
                out.append(f"{need} (published by {found[0][:16]}…)")
        return out
