"""A hub on a local path is read in place (cob.sync.localhub), and git is asked whenever its
answer could differ from what is on disk.

Real repositories and real git; which git commands ran is read from git's own trace.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

import cob
from cob.sync import localhub, quarantine
from jobs import Jobs
from tests.conftest import git
from tests.jobs.test_sync import LOG, World, index_ref, index_tip
from tests.jobs.test_sync_daemon import git_commands
from tests.stress.hostile import forge_index


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def traced_sync(node: Jobs, remote: str, trace: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the git commands ``node.sync(remote)`` ran (its report must be ok)."""
    monkeypatch.setenv("GIT_TRACE2_EVENT", str(trace))
    try:
        report = node.sync(remote)
    finally:
        monkeypatch.delenv("GIT_TRACE2_EVENT")
    assert report.ok, report.summary()
    return [name for name, _ in git_commands(trace)] if trace.exists() else []


def two_peers(world: World, signers: Iterator[cob.Signer]) -> tuple[Jobs, Jobs]:
    """``a`` has published a job with a run; ``node`` has not synced yet."""
    a, node = world.peer("a", next(signers)), world.peer("node", next(signers))
    a.create(world.commits[0], "build").run(LOG + "a")
    assert a.sync(str(world.hub)).ok
    return a, node


# -- which remotes are read in place ---------------------------------------------------------
@pytest.mark.parametrize(
    ("spelling", "in_place"),
    [
        ("{hub}", True),
        ("file://{hub}", True),
        ("file://localhost{hub}", False),  # a host: git's reading of it
        ("file://{hub}%20", False),
        ("ssh://host{hub}", False),
        ("host:{hub}", False),  # scp-like ssh
        ("git://127.0.0.1{hub}", False),
        ("hubname", True),  # a remote whose one URL is the path
        ("{hub}-missing", False),
    ],
)
def test_a_path_a_file_url_or_a_remote_naming_one_is_read_in_place(
    world: World, signers: Iterator[cob.Signer], spelling: str, in_place: bool
) -> None:
    node = world.peer("node", next(signers))
    git(node.repo.workdir, "remote", "add", "hubname", str(world.hub))
    remote = spelling.format(hub=world.hub)
    assert (localhub.local_hub(node.repo, remote) is not None) is in_place


@pytest.mark.parametrize(
    "setting",
    [
        ("protocol.file.allow", "never"),
        ("protocol.allow", "never"),
        ("protocol.file.allow", "bogus"),
        ("url./elsewhere/.insteadOf", "{hub}"),
        ("remote.hubname.uploadpack", "git-upload-pack"),
    ],
)
def test_what_could_change_gits_answer_hands_the_remote_to_git(
    world: World, signers: Iterator[cob.Signer], setting: tuple[str, str]
) -> None:
    node = world.peer("node", next(signers))
    git(node.repo.workdir, "remote", "add", "hubname", str(world.hub))
    git(node.repo.workdir, "config", setting[0], setting[1].format(hub=world.hub))
    assert localhub.local_hub(node.repo, "hubname") is None


def test_git_allow_protocol_and_a_second_url_hand_the_remote_to_git(
    world: World, signers: Iterator[cob.Signer], monkeypatch: pytest.MonkeyPatch
) -> None:
    node = world.peer("node", next(signers))
    git(node.repo.workdir, "remote", "add", "twice", str(world.hub))
    git(node.repo.workdir, "config", "--add", "remote.twice.url", str(world.hub))
    assert localhub.local_hub(node.repo, "twice") is None
    monkeypatch.setenv("GIT_ALLOW_PROTOCOL", "ssh:https")
    assert localhub.local_hub(node.repo, str(world.hub)) is None
    monkeypatch.setenv("GIT_ALLOW_PROTOCOL", "ssh:file")
    assert localhub.local_hub(node.repo, str(world.hub)) is not None
    monkeypatch.delenv("GIT_ALLOW_PROTOCOL")
    git(node.repo.workdir, "config", "protocol.allow", "user")  # git's default for file
    assert localhub.local_hub(node.repo, str(world.hub)) is not None
    monkeypatch.setenv("GIT_PROTOCOL_FROM_USER", "0")
    assert localhub.local_hub(node.repo, str(world.hub)) is None


def test_a_forbidden_file_protocol_is_refused_by_git_with_one_line(
    world: World, signers: Iterator[cob.Signer]
) -> None:
    _, node = two_peers(world, signers)
    git(node.repo.workdir, "config", "protocol.file.allow", "never")
    with pytest.raises(cob.TransportError) as e:
        node.sync(str(world.hub))
    assert "\n" not in str(e.value) and "file" in str(e.value)
    assert list(node.all()) == []


# -- what the hub says ------------------------------------------------------------------------
def test_refs_the_hub_hides_stay_hidden(
    world: World, signers: Iterator[cob.Signer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``uploadpack.hideRefs`` is git's to apply: the hub is listed and fetched by git."""
    a, node = two_peers(world, signers)
    assert a.signer is not None
    git(world.hub, "config", "uploadpack.hideRefs", f"refs/namespaces/{a.signer.nid}")
    names = traced_sync(node, str(world.hub), tmp_path / "trace.json", monkeypatch)
    assert names.count("ls-remote") == 1
    assert list(node.all()) == [] and index_tip(node.repo.path, a.signer.nid) is None


def test_one_change_is_copied_without_git_and_only_its_objects(
    world: World, signers: Iterator[cob.Signer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, node = two_peers(world, signers)
    assert traced_sync(node, str(world.hub), tmp_path / "first.json", monkeypatch) == []
    job = a.get_mut(next(a.all()).id)
    assert job is not None
    job.run(LOG + "again")
    assert a.sync(str(world.hub)).ok
    names = traced_sync(node, str(world.hub), tmp_path / "second.json", monkeypatch)
    assert names == []
    got = node.get(job.id)
    assert got is not None and got.tips == job.tips
    assert not (Path(node.repo.path) / "objects" / "info" / "alternates").exists()
    git(node.repo.path, "fsck", "--strict", "--no-progress")


def test_an_update_beyond_the_copys_bounds_is_fetched_by_git(
    world: World, signers: Iterator[cob.Signer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, node = two_peers(world, signers)
    for i in range(5):
        a.create(world.commits[i % 3], f"more{i}").run(LOG + str(i))
    assert a.sync(str(world.hub)).ok
    monkeypatch.setattr(quarantine, "MAX_COPIED_OBJECTS", 4)
    names = traced_sync(node, str(world.hub), tmp_path / "trace.json", monkeypatch)
    assert names.count("fetch") >= 1 and "index-pack" in names
    assert {j.id for j in node.all()} == {j.id for j in a.all()}
    git(node.repo.path, "fsck", "--strict", "--no-progress")


def test_a_hub_that_lacks_an_object_is_left_to_git_and_nothing_is_taken(
    world: World, signers: Iterator[cob.Signer]
) -> None:
    """A broken hub (an object of the new change deleted) is fetched by git, whose refusal
    is the sync's error; nothing of it is taken, and nothing is left behind."""
    a, node = two_peers(world, signers)
    assert node.sync(str(world.hub)).ok
    job = a.get_mut(next(a.all()).id)
    assert job is not None
    job.run(LOG + "again")
    assert a.sync(str(world.hub)).ok
    assert a.signer is not None
    tip = index_tip(world.hub, a.signer.nid)
    hub = pygit2.Repository(str(world.hub))
    assert tip is not None
    change = hub[job.tips[a.signer.nid]]
    assert isinstance(change, pygit2.Commit)
    loose = Path(str(world.hub), "objects", str(change.tree_id)[:2], str(change.tree_id)[2:])
    assert loose.exists()
    os.chmod(loose, 0o600)
    loose.unlink()
    before = index_tip(node.repo.path, a.signer.nid)
    with pytest.raises(cob.TransportError) as e:
        node.sync(str(world.hub))
    assert "\n" not in str(e.value)
    assert index_tip(node.repo.path, a.signer.nid) == before != tip
    assert str(change.tree_id) not in pygit2.Repository(node.repo.path).odb
    assert not (Path(node.repo.path) / "git-jobs-quarantine").exists()
    git(node.repo.path, "fsck", "--strict", "--no-progress")


def test_a_refused_tip_read_in_place_leaves_nothing_here(world: World, signers: Iterator[cob.Signer]) -> None:
    """A tip signed by another key than its namespace's is refused; the objects it brought
    are not copied in (the quarantine only borrowed them)."""
    a, node = two_peers(world, signers)
    assert a.signer is not None
    mallory = cob.Signer.generate()
    hub = pygit2.Repository(str(world.hub))
    tip = index_tip(world.hub, a.signer.nid)
    assert tip is not None
    forged = forge_index(hub, tip, {}, author=a.signer.nid, signer=mallory)
    git(world.hub, "update-ref", index_ref(a.signer.nid), forged)
    report = node.sync(str(world.hub))
    assert [r.ref for r in report.refused] == [index_ref(a.signer.nid)]
    assert forged not in pygit2.Repository(node.repo.path).odb
    assert index_tip(node.repo.path, a.signer.nid) is None


# -- who can write the hub --------------------------------------------------------------------
@pytest.mark.parametrize("how", ["objects group-writable", "refs world-writable", "shared"])
def test_a_hub_others_can_write_is_read_by_git(
    world: World, signers: Iterator[cob.Signer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Another user who can write the hub's files could swap one for a FIFO (this process
    would block on it for good) after any look: such a hub is listed and fetched by git."""
    a, node = two_peers(world, signers)
    hub = Path(str(world.hub))
    if how == "objects group-writable":
        os.chmod(hub / "objects", 0o775)
    elif how == "refs world-writable":
        os.chmod(hub / "refs", 0o757)
    else:
        git(hub, "config", "core.sharedRepository", "group")
    assert localhub.local_hub(node.repo, str(hub)) is None
    names = traced_sync(node, str(hub), tmp_path / "trace.json", monkeypatch)
    assert names.count("ls-remote") == 1 and names.count("fetch") == 1
    assert {j.id for j in node.all()} == {j.id for j in a.all()}


def test_a_hub_only_we_write_is_read_in_place(world: World, signers: Iterator[cob.Signer]) -> None:
    _, node = two_peers(world, signers)
    assert localhub.local_hub(node.repo, str(world.hub)) is not None
    os.chmod(Path(str(world.hub)) / "objects", 0o700)  # narrower than git's: still ours alone
    assert localhub.local_hub(node.repo, str(world.hub)) is not None
