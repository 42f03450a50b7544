"""The verified set and the kept states (issue 30): deleting the index or the verified set, or
rebuilding the index, changes no answer; a signature checked once is not checked again; and a
verified set or index tampered with by someone without the repository's secret cannot get a
forged change accepted. Real git, real signatures."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import msgspec
import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cob
from cob import verified
from cob.cache import default_path
from cob.keptstates import states_path
from cob.refs import common_dir
from tests.conftest import init_repo
from tests.toytype import TAGS, TAGS_TYPENAME, Create, Tag, TagsRow, manifest_bytes, point, write_raw


def _answer(ev: cob.Evaluation[Any] | None) -> tuple[Any, ...] | None:
    if ev is None:
        return None
    state = None if ev.state is None else (ev.state.name, tuple(ev.state.tags))
    return state, frozenset(ev.accepted), tuple(sorted((o, v.kind) for o, v in ev.rejected.items()))


def _fresh(path: Path, object_id: str) -> tuple[Any, ...] | None:
    """A full fold from scratch: no index, no verified set, every signature checked."""
    return _answer(cob.Store(path, cache=False, verified=False).load(TAGS, object_id))


def _fresh_rows(path: Path, ids: list[str]) -> list[tuple[str, Any]]:
    """The listing rows a full fold from scratch gives (valid objects, by id)."""
    store = cob.Store(path, cache=False, verified=False)
    return [(i, TAGS.listing(ev)) for i, ev in store.load_many(TAGS, sorted(ids)) if ev and ev.state]


def _forged_tag(repo: pygit2.Repository, object_id: str, victim: cob.Signer, liar: cob.Signer) -> str:
    """A change authored as ``victim`` but signed by ``liar`` (a forgery)."""
    ops = msgspec.json.encode([{"text": "forged", "type": "tag"}])
    return write_raw(
        repo,
        parents=[object_id],
        author=victim.nid,
        sign_with=liar,
        manifest=manifest_bytes(TAGS_TYPENAME),
        ops=ops,
    )


def test_a_signature_checked_once_is_not_checked_again_after_the_index_is_deleted(tmp_path: Path) -> None:
    path = tmp_path / "r"
    init_repo(path)
    alice = cob.Signer.generate()
    store = cob.Store(path, alice)
    ev = store.create(TAGS, [Create("x")])
    for i in range(5):
        store.update(TAGS, ev.object_id, [Tag(f"t{i}")])
    first = cob.Store(path)
    answer = _answer(first.load(TAGS, ev.object_id))
    gitdir = common_dir(first.repo)
    assert os.path.exists(os.path.join(gitdir, verified.set_file()))
    mode = os.stat(os.path.join(gitdir, verified.secret_file())).st_mode
    assert stat.S_IMODE(mode) == 0o600
    for suffix in ("", "-wal", "-shm"):  # the index and the kept states: every change is read
        Path(default_path(gitdir) + suffix).unlink(missing_ok=True)
        Path(states_path(gitdir) + suffix).unlink(missing_ok=True)
    again = cob.Store(path)
    assert _answer(again.load(TAGS, ev.object_id)) == answer == _fresh(path, ev.object_id)
    assert isinstance(again.verified, verified.VerifiedSet)
    assert again.verified.hits == 5 and again.verified.checked == 0  # no signature checked
    # `git jobs verify` (a full load) checks every signature again, set or not.
    full = cob.Store(path)
    assert _answer(full.load(TAGS, ev.object_id, full=True)) == answer
    assert isinstance(full.verified, verified.VerifiedSet)
    assert full.verified.hits == 0


def _tamper_everything(gitdir: str, forged: str, victim: str) -> None:
    """What someone who can write the git directory's files but not read the secret can do:
    add tags under secrets they can guess, and claim the change in the index's old table."""
    path = os.path.join(gitdir, verified.set_file())
    guesses = [b"", b"\0" * 32, os.urandom(32)]
    with open(path, "ab") as f:
        if f.tell() == 0:
            f.write(verified.HEADER)
        for key in guesses:
            msg = forged.encode() + b"\0" + victim.encode()
            f.write(hashlib.blake2b(msg, key=key, digest_size=16).digest())
        f.write(hashlib.sha256(forged.encode()).digest()[:16])
        f.write(bytes.fromhex(forged)[:16])
    db = sqlite3.connect(default_path(gitdir))
    db.execute("CREATE TABLE IF NOT EXISTS verified (oid TEXT PRIMARY KEY, nid TEXT NOT NULL)")
    db.execute("INSERT OR REPLACE INTO verified VALUES (?, ?)", (forged, victim))
    db.commit()
    db.close()


def test_a_tampered_verified_set_cannot_get_a_forged_change_accepted(tmp_path: Path) -> None:
    path = tmp_path / "r"
    repo = init_repo(path)
    alice, mallory = cob.Signer.generate(), cob.Signer.generate()
    store = cob.Store(path, alice)
    object_id = store.create(TAGS, [Create("x")]).object_id
    store.update(TAGS, object_id, [Tag("honest")])
    forged = _forged_tag(repo, object_id, alice, mallory)
    point(repo, mallory.nid, TAGS_TYPENAME, object_id, forged, signer=mallory)
    gitdir = common_dir(repo)
    cob.Store(path).load(TAGS, object_id)  # the secret and set exist, as on any used repository
    _tamper_everything(gitdir, forged, alice.nid)
    for suffix in ("", "-wal", "-shm"):  # and the index rebuilt: nothing folded is reused
        Path(default_path(gitdir) + suffix).unlink(missing_ok=True)
    _tamper_everything(gitdir, forged, alice.nid)
    ev = cob.Store(path).get(TAGS, object_id)
    assert ev.state is not None and ev.state.tags == ["honest"]
    assert forged in ev.rejected and forged not in ev.accepted
    assert ev.rejected[forged].kind == cob.RejectKind.INVALID
    assert "signed by" in ev.rejected[forged]
    assert _answer(ev) == _fresh(path, object_id)


def test_a_sealed_state_edited_without_the_secret_is_folded_again(tmp_path: Path) -> None:
    path = tmp_path / "r"
    init_repo(path)
    alice = cob.Signer.generate()
    store = cob.Store(path, alice)
    object_id = store.create(TAGS, [Create("x")]).object_id
    store.update(TAGS, object_id, [Tag("honest")])
    honest = _answer(cob.Store(path).load(TAGS, object_id))
    # Someone without the secret rewrites the stored states: a tag forged into the state.
    gitdir = common_dir(store.repo)
    for file, table in ((default_path(gitdir), "evaluations"), (states_path(gitdir), "states")):
        db = sqlite3.connect(file)
        rows = db.execute(f"SELECT data FROM {table}").fetchall()
        assert rows
        for (data,) in rows:
            db.execute(f"UPDATE {table} SET data=? WHERE data=?", (data.replace(b"honest", b"forged"), data))
        db.commit()
        db.close()
    reader = cob.Store(path)
    assert _answer(reader.load(TAGS, object_id)) == honest
    assert reader.evaluations == 1  # the edited entries were refused, and the object folded


def test_a_listing_row_edited_without_the_secret_is_not_listed(tmp_path: Path) -> None:
    path = tmp_path / "r"
    init_repo(path)
    store = cob.Store(path, cob.Signer.generate())
    object_id = store.create(TAGS, [Create("x")]).object_id
    store.update(TAGS, object_id, [Tag("honest")])
    honest = list(cob.Store(path).listing(TAGS))
    assert honest == [(object_id, TagsRow("x", 1, 0))]
    gitdir = common_dir(store.repo)
    forged = msgspec.msgpack.encode(TagsRow("x", 99, 0))
    for file, table in ((default_path(gitdir), "evaluations"), (states_path(gitdir), "states")):
        db = sqlite3.connect(file)
        rows = db.execute(f"SELECT listing FROM {table} WHERE listing IS NOT NULL").fetchall()
        assert rows  # the row is kept in both (the index, and beside the kept state)
        for key in (b"", b"\0" * 32):  # the old tag kept, or one under a guessed secret
            tag = hashlib.blake2b(forged, key=key, digest_size=16).digest() if key else rows[0][0][:16]
            db.execute(f"UPDATE {table} SET listing=?", (tag + forged,))
            db.commit()
            reader = cob.Store(path)
            assert list(reader.listing(TAGS)) == honest, (table, key)
            assert reader.evaluations == 0 or table == "evaluations"  # the kept state answers
        db.close()


def test_a_rebuild_looks_states_up_instead_of_folding(tmp_path: Path) -> None:
    path = tmp_path / "r"
    init_repo(path)
    alice = cob.Signer.generate()
    store = cob.Store(path, alice)
    ids = [store.create(TAGS, [Create(f"o{i}")]).object_id for i in range(3)]
    for object_id in ids:
        store.update(TAGS, object_id, [Tag("a")])
    before = {i: _answer(cob.Store(path).load(TAGS, i)) for i in ids}
    rebuilt = cob.Store(path)
    assert rebuilt.rebuild_cache(TAGS) == 3
    assert rebuilt.evaluations == 0
    after = cob.Store(path)
    assert {i: _answer(after.load(TAGS, i)) for i in ids} == before
    assert after.evaluations == 0


def test_deleting_the_index_keeps_the_states_a_list_reads(tmp_path: Path) -> None:
    path = tmp_path / "r"
    init_repo(path)
    alice = cob.Store(path, cob.Signer.generate())
    ids = [alice.create(TAGS, [Create(f"o{i}")]).object_id for i in range(3)]
    for object_id in ids:
        alice.update(TAGS, object_id, [Tag("a")])
    expected = {i: _fresh(path, i) for i in ids}
    assert {i: _answer(ev) for i, ev in cob.Store(path).load_many(TAGS, ids)} == expected
    gitdir = common_dir(alice.repo)
    for suffix in ("", "-wal", "-shm"):
        Path(default_path(gitdir) + suffix).unlink()  # the index only: the kept states stay
    reader = cob.Store(path)
    assert {i: _answer(ev) for i, ev in reader.load_many(TAGS, ids)} == expected
    assert reader.evaluations == 0  # looked up, not folded
    again = cob.Store(path)  # and stored in the new index as the last evaluations
    assert {i: _answer(ev) for i, ev in again.load_many(TAGS, ids)} == expected
    assert again.evaluations == 0 and again.cache is not None and again.cache.loads == 0


ACTIONS = st.sampled_from(
    ["write", "peer", "forge", "drop-index", "drop-states", "drop-set", "drop-secret", "rebuild", "load"]
)


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(ACTIONS, st.integers(0, 1)), min_size=3, max_size=10))
def test_deleting_the_index_or_the_verified_set_changes_no_answer(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int]]
) -> None:
    path = tmp_path_factory.mktemp("prop") / "r"
    repo = init_repo(path)
    alice, bob, mallory = cob.Signer.generate(), cob.Signer.generate(), cob.Signer.generate()
    writers = {0: cob.Store(path, alice), 1: cob.Store(path, bob)}
    ids = [writers[0].create(TAGS, [Create(f"o{i}")]).object_id for i in range(2)]
    gitdir = common_dir(repo)
    reader = cob.Store(path)
    for n, (action, k) in enumerate(steps):
        object_id = ids[k]
        if action == "write":
            writers[k].update(TAGS, object_id, [Tag(f"w{n}")])
        elif action == "peer":  # a change written by another process of the same repository
            cob.Store(path, bob).update(TAGS, object_id, [Tag(f"p{n}")])
        elif action == "forge":
            forged = _forged_tag(repo, object_id, alice, mallory)
            point(repo, mallory.nid, TAGS_TYPENAME, object_id, forged, signer=mallory)
            _tamper_everything(gitdir, forged, alice.nid)
        elif action == "drop-index":
            for suffix in ("", "-wal", "-shm"):
                Path(default_path(gitdir) + suffix).unlink(missing_ok=True)
        elif action == "drop-states":
            for suffix in ("", "-wal", "-shm"):
                Path(states_path(gitdir) + suffix).unlink(missing_ok=True)
        elif action == "drop-set":
            Path(gitdir, verified.set_file()).unlink(missing_ok=True)
        elif action == "drop-secret":
            Path(gitdir, verified.secret_file()).unlink(missing_ok=True)
        elif action == "rebuild":
            cob.Store(path).rebuild_cache(TAGS)
        for one in ids:  # a long-lived reader and a new process both agree with a fresh fold
            expected = _fresh(path, one)
            assert _answer(reader.load(TAGS, one)) == expected, (action, one)
            assert _answer(cob.Store(path).load(TAGS, one)) == expected, (action, one)
        fresh = {one: _fresh(path, one) for one in ids}  # and a batch (a listing) too
        assert {i: _answer(ev) for i, ev in cob.Store(path).load_many(TAGS, ids)} == fresh, action
        rows = _fresh_rows(path, ids)  # and the listing rows, stored or kept (cob.listing)
        assert list(reader.listing(TAGS)) == rows == list(cob.Store(path).listing(TAGS)), action


def test_a_first_load_checks_signatures_in_worker_processes_and_records_only_good_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cob import parallel

    path = tmp_path / "r"
    repo = init_repo(path)
    alice, mallory = cob.Signer.generate(), cob.Signer.generate()
    store = cob.Store(path, alice)
    ids = [store.create(TAGS, [Create(f"o{i}")]).object_id for i in range(3)]
    for object_id in ids:
        store.update(TAGS, object_id, [Tag("a")])
    forged = _forged_tag(repo, ids[0], alice, mallory)
    point(repo, mallory.nid, TAGS_TYPENAME, ids[0], forged, signer=mallory)
    expected = {i: _fresh(path, i) for i in ids}
    gitdir = common_dir(repo)
    for name in (verified.set_file(), verified.secret_file(), "git-jobs-index.sqlite3"):
        Path(gitdir, name).unlink(missing_ok=True)
    monkeypatch.setattr(parallel, "MIN_CHANGES", 1)
    calls: list[int] = []
    real = parallel.verify_ahead

    def counted(*args: Any, **kwargs: Any) -> int:
        calls.append(real(*args, **{**kwargs, "cores": 2}))
        return calls[-1]

    monkeypatch.setattr(parallel, "verify_ahead", counted)
    reader = cob.Store(path)
    got = {i: _answer(ev) for i, ev in reader.load_many(TAGS, ids)}
    assert got == expected
    assert calls == [4]  # three good changes and the forgery were checked ahead, in workers
    assert isinstance(reader.verified, verified.VerifiedSet)
    assert reader.verified.hits == 3  # the load found the good ones recorded
    assert not reader.verified.known(forged, alice.nid) and not reader.verified.known(forged, mallory.nid)


def test_kept_states_survive_a_schema_change_but_not_a_change_of_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cob import cache

    path = tmp_path / "r"
    init_repo(path)
    store = cob.Store(path, cob.Signer.generate())
    object_id = store.create(TAGS, [Create("x")]).object_id
    store.update(TAGS, object_id, [Tag("a")])
    answer = _answer(cob.Store(path).load(TAGS, object_id))
    monkeypatch.setattr(cache, "SCHEMA", cache.SCHEMA + 1)  # an upgrade drops the index's tables
    upgraded = cob.Store(path)
    assert _answer(upgraded.load(TAGS, object_id)) == answer
    assert upgraded.evaluations == 0  # looked up by its tips, not folded
    monkeypatch.setattr(type(TAGS), "rules", 2, raising=False)  # other rules: fold again
    ruled = cob.Store(path)
    assert _answer(ruled.load(TAGS, object_id)) == answer
    assert ruled.evaluations == 1
