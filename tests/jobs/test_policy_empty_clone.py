"""A node cloned from a hub before anything was pushed to it (a new project's first CI machine).

`git clone` of an empty repository sets no `refs/remotes/origin/HEAD` and leaves `main` unborn,
and `git fetch` sets neither later (git 2.39). So once the maintainer pushes `main` with a
`[policy]`, the node's clone holds it only as `refs/remotes/origin/main`. The policy ref is
then the remote's default branch name that it has fetched, and a sync asks the remote for its
HEAD (`git remote set-head --auto`); before, the node read "no policy: every node counts" — it
shared no work and honoured no requester — while the maintainer's clone read the policy.
Found by the maintainer's day (tests/test_maintainers_day_evidence.py).
"""

from __future__ import annotations

from pathlib import Path

import pygit2

from jobs.policy import fetch_policy, load_repository_policy, policy_ref
from tests.conftest import git, init_repo

POLICY = '[policy]\nnodes = { "z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK" = "alice" }\n'


def _maintainer_pushes_the_policy(tmp_path: Path, hub: Path) -> None:
    """The maintainer's first push: a commit whose `.git-jobs.toml` holds the policy."""
    maintainer = tmp_path / "maintainer"
    init_repo(maintainer)
    (maintainer / ".git-jobs.toml").write_text(POLICY)
    git(maintainer, "add", ".git-jobs.toml")
    git(maintainer, "commit", "-q", "-m", "ci")
    git(maintainer, "push", "-q", str(hub), "HEAD:main")


def _node_cloned_before_the_first_push(tmp_path: Path) -> Path:
    hub = tmp_path / "hub.git"
    init_repo(hub, bare=True)
    node = tmp_path / "node"
    git(tmp_path, "clone", "-q", str(hub), str(node))  # "You appear to have cloned an empty repository"
    _maintainer_pushes_the_policy(tmp_path, hub)
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


def test_a_node_cloned_from_an_empty_hub_reads_the_hubs_policy(tmp_path: Path) -> None:
    node = _node_cloned_before_the_first_push(tmp_path)
    assert not (node / ".git" / "refs" / "remotes" / "origin" / "HEAD").exists()
    source = policy_ref(pygit2.Repository(str(node)))
    assert source is not None and source.ref == "refs/remotes/origin/main"


def test_a_sync_of_a_node_cloned_from_an_empty_hub_fetches_the_hubs_policy(tmp_path: Path) -> None:
    hub = tmp_path / "hub.git"
    init_repo(hub, bare=True)
    node = tmp_path / "node"
    git(tmp_path, "clone", "-q", str(hub), str(node))
    repo = pygit2.Repository(str(node))
    assert fetch_policy(repo, "origin") is None  # the hub is still empty: nothing to say
    _maintainer_pushes_the_policy(tmp_path, hub)
    assert fetch_policy(repo, "origin") is None  # no `git fetch` by anyone: the sync's own
    source = policy_ref(pygit2.Repository(str(node)))
    assert source is not None and source.ref == "refs/remotes/origin/main"
