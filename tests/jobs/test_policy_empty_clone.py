"""A node cloned from a hub before anything was pushed to it (a new project's first CI machine).

`git clone` of an empty repository sets no `refs/remotes/origin/HEAD` and leaves `main` unborn,
and `git fetch` sets neither later (git 2.39). So once the maintainer pushes `main` with a
`[policy]`, the node's clone holds it only as `refs/remotes/origin/main`: `policy_ref` finds no
policy ref and the node reads "no policy: every node counts" — it shares no work (runs every job)
and honours no requester — while the maintainer's clone reads the policy. Nothing says so:
`status` prints "no policy", `doctor` reports nothing. Found by the maintainer's day
(tests/test_maintainers_day_evidence.py clones its nodes after the first push for this reason).
"""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from jobs.policy import load_repository_policy, policy_ref
from tests.conftest import git, init_repo

POLICY = '[policy]\nnodes = { "z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK" = "alice" }\n'


def _node_cloned_before_the_first_push(tmp_path: Path) -> Path:
    hub = tmp_path / "hub.git"
    init_repo(hub, bare=True)
    node = tmp_path / "node"
    git(tmp_path, "clone", "-q", str(hub), str(node))  # "You appear to have cloned an empty repository"
    maintainer = tmp_path / "maintainer"
    init_repo(maintainer)
    (maintainer / ".git-jobs.toml").write_text(POLICY)
    git(maintainer, "add", ".git-jobs.toml")
    git(maintainer, "commit", "-q", "-m", "ci")
    git(maintainer, "push", "-q", str(hub), "HEAD:main")
    git(node, "fetch", "-q", "origin")
    return node


def test_after_set_head_the_node_reads_the_hubs_policy(tmp_path: Path) -> None:
    node = _node_cloned_before_the_first_push(tmp_path)
    git(node, "remote", "set-head", "origin", "--auto")  # the workaround
    source = policy_ref(pygit2.Repository(str(node)))
    assert source is not None and source.ref == "refs/remotes/origin/main"
    assert (
        load_repository_policy(pygit2.Repository(str(node))).name_of(
            "z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
        )
        == "alice"
    )


@pytest.mark.xfail(
    strict=True,
    reason="bug: jobs/policy.py policy_ref() — with no refs/remotes/<remote>/HEAD (a clone of an "
    "empty hub) and no local default branch it returns None ('no policy') although "
    "refs/remotes/origin/main holds the hub's [policy]; nothing warns",
)
def test_a_node_cloned_from_an_empty_hub_reads_the_hubs_policy(tmp_path: Path) -> None:
    node = _node_cloned_before_the_first_push(tmp_path)
    assert not (node / ".git" / "refs" / "remotes" / "origin" / "HEAD").exists()
    source = policy_ref(pygit2.Repository(str(node)))
    assert source is not None and source.ref == "refs/remotes/origin/main"
