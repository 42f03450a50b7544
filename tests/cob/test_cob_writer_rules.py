"""Regression tests from the review of `cob/`: what a writer may write, and when the index
must fold again. Each case once let the writer (or the cache) disagree with every other replica."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pygit2
import pytest

import cob
from cob import canonical, sshsig
from cob import evaluate as evaluate_module
from cob.change import MAX_PARENTS, Codec, root_commit_buffer, write_change, write_root
from cob.store import Store
from tests.toytype import (
    LOG,
    TAGS,
    Append,
    Create,
    Tag,
    commit_buffer,
    manifest_bytes,
    ops_bytes,
    point,
    write_raw,
)


def _repo(tmp_path: Path, name: str = "r") -> pygit2.Repository:
    return pygit2.init_repository(str(tmp_path / name), bare=True)


def _refs_and_objects(repo: pygit2.Repository) -> tuple[dict[str, str], int]:
    refs = {r: str(repo.references[r].target) for r in repo.listall_references()}
    return refs, sum(1 for _ in repo.odb)


@pytest.mark.slow
def test_a_writer_never_writes_more_parents_than_readers_accept(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    me = cob.Signer.generate()
    store = Store(repo, me, cache=False)
    oid = store.create(TAGS, [Create("x")]).object_id
    codec = store.codec(TAGS)
    for i in range(MAX_PARENTS + 1):
        peer = cob.Signer.generate()
        point(
            repo,
            peer.nid,
            TAGS.typename,
            oid,
            write_change(repo, codec, peer, peer.nid, [Tag(f"t{i}")], [oid]),
        )
    first, _ = store.update(TAGS, oid, [Tag("mine")])
    second, _ = store.update(TAGS, oid, [Tag("mine2")])
    assert len(first.parents) <= MAX_PARENTS and len(second.parents) <= MAX_PARENTS
    assert first.oid in second.parents
    fresh = Store(repo, cache=False).load(TAGS, oid, full=True)
    assert fresh is not None and fresh.rejected == {}
    assert {"mine", "mine2"} <= set(fresh.state.tags) and len(set(fresh.state.tags)) == MAX_PARENTS + 3


def test_our_own_rejected_tip_is_never_moved_sideways(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    me = cob.Signer.generate()
    store = Store(repo, me, cache=False)
    oid = store.create(LOG, [Append("root")]).object_id
    bad = write_raw(repo, parents=[oid], author=me.nid, sign_with=me, ops=ops_bytes("REJECT me"))
    point(repo, me.nid, LOG.typename, oid, bad, signer=me)  # our own signed index names it
    assert Store(repo, cache=False).tips(LOG, oid) == {me.nid: bad}
    before = _refs_and_objects(repo)
    with pytest.raises(cob.ConflictError, match="rejected"):
        store.update(LOG, oid, [Append("next")])
    assert _refs_and_objects(repo) == before


@pytest.mark.parametrize("when", [-1, 2**32, 5_000_000_000, 2**64])
def test_a_write_time_outside_what_git_stores_is_refused(tmp_path: Path, when: int) -> None:
    repo = _repo(tmp_path)
    store = Store(repo, cob.Signer.generate(), cache=False)
    oid = store.create(TAGS, [Create("x")]).object_id
    before = _refs_and_objects(repo)
    with pytest.raises(cob.InvalidOpsError, match="timestamp"):
        store.update(TAGS, oid, [Tag("t")], timestamp=when)
    assert _refs_and_objects(repo) == before


def test_a_root_with_other_file_modes_is_not_a_second_id(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    peer = cob.Signer.generate()
    codec = Codec(TAGS)
    write_root(repo, codec, [Create("x")])
    builder = repo.TreeBuilder()
    builder.insert("manifest", repo.create_blob(codec.manifest), pygit2.enums.FileMode.BLOB_EXECUTABLE)
    builder.insert("ops", repo.create_blob(canonical.dumps([Create("x")])), pygit2.enums.FileMode.BLOB)
    buffer = root_commit_buffer(repo, codec, [Create("x")], builder.write())
    alt = str(repo.odb.write(pygit2.enums.ObjectType.COMMIT, buffer.encode()))
    point(repo, peer.nid, TAGS.typename, alt, alt)
    ev = Store(repo, cache=False).load(TAGS, alt)
    assert ev is not None and ev.state is None
    assert "file mode" in ev.rejected[alt]


def test_a_change_whose_blob_arrives_later_is_folded_once_it_is_there(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    me, peer = cob.Signer.generate(), cob.Signer.generate()
    store = Store(repo, me)
    oid = store.create(TAGS, [Create("x")]).object_id
    ops = canonical.dumps([Tag("peer")])
    blob = hashlib.sha1(b"blob %d\0" % len(ops) + ops).hexdigest()  # not written yet
    manifest = repo.create_blob(manifest_bytes(TAGS.typename))
    entries = sorted([(b"manifest", bytes.fromhex(str(manifest))), (b"ops", bytes.fromhex(blob))])
    tree = repo.odb.write(
        pygit2.enums.ObjectType.TREE, b"".join(b"100644 " + n + b"\0" + h for n, h in entries)
    )
    buffer = commit_buffer(repo, tree, [oid], peer.nid, 1_700_000_000)
    change = str(repo.create_commit_with_signature(buffer, sshsig.sign(peer, buffer.encode())))
    point(repo, peer.nid, TAGS.typename, oid, change)
    first = store.load(TAGS, oid)
    assert first is not None and first.curable() and "peer" not in first.state.tags
    repo.odb.write(pygit2.enums.ObjectType.BLOB, ops)  # the blob arrives; no ref moves
    again = Store(repo, me).load(TAGS, oid)
    assert again is not None and "peer" in again.state.tags and again.rejected == {}


def test_a_ref_named_after_a_root_not_yet_here_does_not_hide_the_object(tmp_path: Path) -> None:
    scratch = _repo(tmp_path, "scratch")
    future = write_root(scratch, Codec(TAGS), [Create("x")])
    repo = _repo(tmp_path)
    me, peer = cob.Signer.generate(), cob.Signer.generate()
    store = Store(repo, me)
    other = store.create(TAGS, [Create("other")]).object_id
    junk = write_change(repo, store.codec(TAGS), peer, peer.nid, [Tag("j")], [other])
    point(repo, peer.nid, TAGS.typename, future, junk)
    assert store.lookup(TAGS, "name", "x") == []
    assert store.create(TAGS, [Create("x")]).object_id == future
    assert store.lookup(TAGS, "name", "x") == [future]


def test_the_history_limit_counts_what_the_cache_already_folded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evaluate_module, "MAX_CHANGES", 5)
    repo = _repo(tmp_path)
    me, peer = cob.Signer.generate(), cob.Signer.generate()
    store = Store(repo, me)
    oid = store.create(TAGS, [Create("x")]).object_id
    for i in range(3):
        store.update(TAGS, oid, [Tag(f"m{i}")])
    store.load(TAGS, oid)  # cached
    tip = oid
    for i in range(3):
        tip = write_change(repo, store.codec(TAGS), peer, peer.nid, [Tag(f"p{i}")], [tip])
    point(repo, peer.nid, TAGS.typename, oid, tip)
    cached = store.load(TAGS, oid)
    full = Store(repo, cache=False).load(TAGS, oid)
    assert cached is not None and full is not None
    assert cached.state.tags == full.state.tags and cached.rejected == full.rejected
    assert any("history larger" in r for r in full.rejected.values())


def test_trimming_a_history_with_a_missing_object_terminates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evaluate_module, "MAX_CHANGES", 5)
    repo = _repo(tmp_path)
    me, peer = cob.Signer.generate(), cob.Signer.generate()
    store = Store(repo, me, cache=False)
    oid = store.create(TAGS, [Create("x")]).object_id
    tip = oid
    for i in range(6):
        tip = write_change(repo, store.codec(TAGS), peer, peer.nid, [Tag(f"p{i}")], [tip])
    tree = repo[tip].tree_id
    n = peer.nid
    for parents in (["12" * 20, tip], [tip, "12" * 20]):  # a parent that is not in the repo
        text = (
            f"tree {tree}\n"
            + "".join(f"parent {p}\n" for p in parents)
            + f"author {n} <{n}> 1800000000 +0000\ncommitter {n} <{n}> 1800000000 +0000\n\nx\n"
        )
        head, _, rest = text.partition("\n\n")
        signed = head + "\ngpgsig " + sshsig.sign(peer, text.encode()).replace("\n", "\n ") + "\n\n" + rest
        odd = str(repo.odb.write(pygit2.enums.ObjectType.COMMIT, signed.encode()))
        point(repo, peer.nid, TAGS.typename, oid, odd)
        ev = store.load(TAGS, oid)  # must return, not recurse
        assert ev is not None and ev.rejected
