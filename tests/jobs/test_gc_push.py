"""An index that reaches a pruned change still publishes (issue 25: nothing acknowledged is lost).

``git gc --prune=now`` next to a writer can delete a change its index commit names while the
index commit itself survives (the prune deletes loose objects one fan-out directory at a time),
and the next write builds on that commit. ``git push`` then cannot pack the history (the hub
answers "unpacker error") on every sync after. The next sync moves the index on from the last
published one, without the incomplete changes, and publishes again.
"""

from __future__ import annotations

import os
from pathlib import Path

import pygit2
import pytest

import cob
from cob import sigrefs
from tests.clirunner import gj, ok
from tests.conftest import git, init_repo

JOB = "dev.gitjobs.job"


def _drop(repo: pygit2.Repository, oid: str) -> None:
    """Delete a loose object, as ``git prune`` does to one it did not see."""
    os.unlink(os.path.join(repo.path, "objects", oid[:2], oid[2:]))


@pytest.mark.parametrize(
    "pruned", ["before-the-next-write", pytest.param("after-the-next-write", marks=pytest.mark.slow)]
)
def test_a_pruned_change_under_a_later_index_commit_does_not_stop_publishing(
    repo: pygit2.Repository, tmp_path: Path, pruned: str
) -> None:
    work = Path(repo.workdir)
    hub = tmp_path / "hub.git"
    init_repo(hub, bare=True)
    git(work, "remote", "add", "origin", str(hub))
    git(work, "push", "-q", "origin", "main")
    key = cob.Signer.generate().save(tmp_path / "node.key")
    nid = ok(work, "whoami", "--json", key=key).json["nid"]
    first = ok(work, "create", "HEAD", "--name", "build", key=key).line
    ok(work, "sync", key=key)
    # A write whose change the prune deleted, its index commit kept, and a write on top:
    # the prune came before it (the write sees it) or after it (it is buried in the history).
    lost = ok(work, "create", "HEAD", "--name", "lint", key=key).line
    tip = sigrefs.read_tip(repo, nid)
    change = sigrefs.lookup(repo, sigrefs.tree_of(repo, tip), JOB, lost)
    assert change is not None
    if pruned == "before-the-next-write":
        _drop(repo, change)
    later = ok(work, "create", "HEAD", "--name", "test", key=key).line
    if pruned == "after-the-next-write":
        _drop(repo, change)

    synced = gj(work, "sync", key=key)
    assert synced.code == 0, synced
    assert "unpacker" not in synced.err
    again = ok(work, "sync", "--json", key=key)
    assert again.code == 0
    # The hub has what survived; the lost write is named by doctor.
    peer = tmp_path / "peer"
    git(tmp_path, "clone", "-q", str(hub), str(peer))
    ok(peer, "sync", key=cob.Signer.generate().save(tmp_path / "peer.key"))
    seen = {j["id"] for j in ok(peer, "list", "--json", key=key).json}
    assert {first, later} <= seen and lost not in seen
    report = gj(work, "doctor", "--json", key=key)
    named = {o for f in report.json["findings"] for o in f["objects"]}
    assert lost in named, report.json
