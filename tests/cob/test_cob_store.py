"""The store: content-addressed roots, housekeeping by stock git, and bad input from callers.

A caller's mistake (unknown object, wrong type, ops that do not fit, no key) is a typed
`cob.CobError` with a clear message and leaves the repository exactly as it was — same refs,
same objects. `git gc --aggressive` and `git pack-refs --all` change nothing a load returns.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import msgspec
import pygit2
import pytest

import cob
from cob.change import ROOT_EMAIL, Codec, write_root
from tests.conftest import git
from tests.toytype import (
    LOG,
    LOG_TYPENAME,
    TAGS,
    TAGS_TYPENAME,
    Append,
    Create,
    Tag,
    all_refs,
    manifest_bytes,
    odb_oids,
    point,
    write_raw,
    write_tree,
)

# -- content-addressed roots ------------------------------------------------------------------


def test_same_root_same_id_in_independent_repositories(
    make_repo: Callable[..., pygit2.Repository], signers: Iterator[cob.Signer]
) -> None:
    one, two = make_repo("one"), make_repo("two")
    a = cob.Store(one, next(signers)).create(TAGS, [Create("release")])
    b = cob.Store(two, next(signers)).create(TAGS, [Create("release")])
    assert a.object_id == b.object_id
    assert a.object_id == write_root(one, Codec(TAGS), [Create("release")])
    other = cob.Store(two, next(signers)).create(TAGS, [Create("other")])
    assert other.object_id != a.object_id
    # the root carries the fixed identity and no signature
    commit = one[a.object_id]
    assert isinstance(commit, pygit2.Commit)
    author = TAGS.root_author  # the type's (cob's default here; git-jobs' types: "git-jobs")
    assert (commit.author.name, commit.author.email, commit.author.time) == (author, ROOT_EMAIL, 0)
    assert commit.committer.time == 0 and commit.gpg_signature == (None, None)
    assert commit.message == "Create release\n"


def test_create_is_idempotent_for_content_addressed_roots(
    repo: pygit2.Repository, signer: cob.Signer
) -> None:
    store = cob.Store(repo, signer)
    first = store.create(TAGS, [Create("x")])
    store.update(TAGS, first.object_id, [Tag("t")])
    refs = all_refs(repo.workdir)
    again = store.create(TAGS, [Create("x")])
    assert again.object_id == first.object_id
    assert all_refs(repo.workdir) == refs  # our ref is not moved back to the root
    assert again.state is not None and again.state.tags == ["t"]


def _hand_root(
    repo: pygit2.Repository,
    *,
    ops: bytes,
    when: int = 0,
    message: str = "Create x\n",
    email: str = ROOT_EMAIL,
    sign_with: cob.Signer | None = None,
) -> str:
    tree = write_tree(repo, {"manifest": manifest_bytes(TAGS_TYPENAME), "ops": ops})
    ident = pygit2.Signature(TAGS.root_author, email, when, 0)
    buffer = cast(str, repo.create_commit_string(ident, ident, message, tree, []))
    if sign_with is not None:
        return str(repo.create_commit_with_signature(buffer, cob.sshsig.sign(sign_with, buffer.encode())))
    return str(repo.odb.write(pygit2.enums.ObjectType.COMMIT, buffer.encode()))


CANONICAL_CREATE = b'[{"name":"x","type":"create"}]'


@pytest.mark.parametrize(
    "variant, reason",
    [
        ({"when": 1}, "does not re-derive"),
        ({"message": "Create y\n"}, "does not re-derive"),
        ({"email": "someone@example.com"}, "does not re-derive"),
        ({"ops": b'[{"type":"create","name":"x"}]'}, "does not re-derive"),  # keys not sorted
        ({"ops": b'[{"name": "x", "type": "create"}]'}, "does not re-derive"),  # whitespace
        ({"sign": True}, "must not be signed"),
    ],
)
def test_root_that_does_not_rederive_is_rejected(
    repo: pygit2.Repository, signer: cob.Signer, variant: dict[str, Any], reason: str
) -> None:
    good = _hand_root(repo, ops=CANONICAL_CREATE)
    assert good == write_root(repo, Codec(TAGS), [Create("x")])  # the hand-made baseline is right
    kwargs = {"ops": CANONICAL_CREATE, **variant}
    if kwargs.pop("sign", False):
        kwargs["sign_with"] = signer
    bad = _hand_root(repo, **kwargs)
    assert bad != good
    child = write_raw(
        repo,
        parents=[bad],
        author=signer.nid,
        sign_with=signer,
        manifest=manifest_bytes(TAGS_TYPENAME),
        ops=b'[{"text":"t","type":"tag"}]',
    )
    point(repo, signer.nid, TAGS_TYPENAME, bad, child)
    for cache in (False, True):
        ev = cob.Store(repo.path, cache=cache).load(TAGS, bad)
        assert ev is not None and ev.state is None
        assert reason in ev.rejected[bad]
        assert ev.rejected[child] == f"descends from rejected change {bad[:12]}"
    with pytest.raises(cob.UnknownObjectError):
        cob.Store(repo, signer).update(TAGS, bad, [Tag("more")])


def test_signed_root_of_content_addressed_type_is_not_a_change(
    repo: pygit2.Repository, signer: cob.Signer
) -> None:
    """A non-root change of a content-addressed type must be signed like any other."""
    store = cob.Store(repo, signer, cache=False)
    root = store.create(TAGS, [Create("x")]).object_id
    unsigned = write_raw(
        repo,
        parents=[root],
        author=signer.nid,
        sign_with=None,
        manifest=manifest_bytes(TAGS_TYPENAME),
        ops=b'[{"text":"t","type":"tag"}]',
    )
    point(repo, cob.Signer.generate().nid, TAGS_TYPENAME, root, unsigned)
    ev = store.load(TAGS, root)
    assert ev is not None and ev.state is not None and ev.state.tags == []
    assert ev.rejected[unsigned] == "change is not signed"


# -- git housekeeping changes nothing ------------------------------------------------------------


def _snapshot(store: cob.Store) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cobtypes: tuple[cob.CobType[Any], ...] = (LOG, TAGS)
    for cobtype in cobtypes:
        out[cobtype.typename] = objects = {}
        for object_id in store.list(cobtype):
            ev = store.load(cobtype, object_id, full=True)
            assert ev is not None
            objects[object_id] = (
                [c.oid for c in ev.changes],
                msgspec.to_builtins(ev.state),
                dict(ev.rejected),
                dict(ev.tips),
                sorted(ev.heads),
            )
            cached = store.load(cobtype, object_id)  # the cached / incremental path
            assert cached is not None
            assert msgspec.to_builtins(cached.state) == msgspec.to_builtins(ev.state)
            assert cached.tips == ev.tips
    return out


def _populated(repo: pygit2.Repository, signers: Iterator[cob.Signer]) -> None:
    alice, bob = next(signers), next(signers)
    a, b = cob.Store(repo, alice), cob.Store(repo, bob)
    for n in range(3):
        log = a.create(LOG, [Append(f"log {n}")]).object_id
        tags = a.create(TAGS, [Create(f"tags {n}")]).object_id
        b.create(TAGS, [Create(f"tags {n}")])
        for i in range(4):
            (a if i % 2 else b).update(LOG, log, [Append(f"{n}.{i}")])
            (b if i % 2 else a).update(TAGS, tags, [Tag(f"{n}.{i}")])
    # and something a load rejects, so the rejected list is compared too
    m = next(signers)
    bad = write_raw(repo, parents=[log], author=alice.nid, sign_with=m)
    point(repo, m.nid, LOG_TYPENAME, log, bad)


def test_gc_and_pack_refs_change_nothing(repo: pygit2.Repository, signers: Iterator[cob.Signer]) -> None:
    _populated(repo, signers)
    cached = cob.Store(repo.path, cache=True)
    before = _snapshot(cob.Store(repo.path, cache=False))
    assert _snapshot(cached) == before
    assert sum(len(v) for v in before.values()) == 6
    assert any(objects[i][2] for objects in before.values() for i in objects)  # a rejection

    git(repo.workdir, "pack-refs", "--all")
    loose = Path(repo.path) / "refs" / "namespaces"
    assert not [p for p in loose.rglob("*") if p.is_file()], "pack-refs left loose cob refs"
    assert _snapshot(cob.Store(repo.path, cache=False)) == before
    assert _snapshot(cached) == before  # the same store object, its cache and packed-refs view

    git(repo.workdir, "gc", "--aggressive", "--quiet", "--prune=now")
    assert not list((Path(repo.path) / "objects").glob("??/*")), "gc left loose objects"
    assert _snapshot(cob.Store(repo.path, cache=False)) == before
    assert _snapshot(cob.Store(repo.path, cache=True)) == before
    assert _snapshot(cached) == before

    # and writing still works on a packed repository, with the cache seeing it
    writer = cob.Store(repo.path, next(signers))
    log = sorted(before[LOG_TYPENAME])[0]
    writer.update(LOG, log, [Append("after gc")])
    ev = cached.load(LOG, log)
    assert ev is not None and ev.state is not None and ev.state.lines[-1] == "after gc"


# -- bad input from a caller ----------------------------------------------------------------------


class Unchanged:
    """Asserts that a block leaves refs and objects exactly as they were."""

    def __init__(self, repo: pygit2.Repository) -> None:
        self.path = repo.workdir

    def __enter__(self) -> None:
        self.refs, self.objects = all_refs(self.path), odb_oids(self.path)
        self.count = git(self.path, "count-objects", "-v")

    def __exit__(self, *exc: object) -> None:
        assert all_refs(self.path) == self.refs
        assert odb_oids(self.path) == self.objects
        assert git(self.path, "count-objects", "-v") == self.count


@pytest.fixture
def world(repo: pygit2.Repository, signer: cob.Signer) -> tuple[cob.Store, str, str]:
    store = cob.Store(repo, signer)
    log = store.create(LOG, [Append("root")]).object_id
    tags = store.create(TAGS, [Create("t")]).object_id
    return store, log, tags


UNKNOWN = "0" * 40


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda s, log, tags: s.update(LOG, UNKNOWN, [Append("x")]), cob.UnknownObjectError, UNKNOWN),
        (lambda s, log, tags: s.get(LOG, UNKNOWN), cob.UnknownObjectError, UNKNOWN),
        (
            lambda s, log, tags: s.update(LOG, "not-an-id", [Append("x")]),
            cob.UnknownObjectError,
            "not an object id",
        ),
        (lambda s, log, tags: s.load(LOG, "../../../heads/main"), cob.UnknownObjectError, "not an object id"),
        (lambda s, log, tags: s.update(LOG, log.upper(), [Append("x")]), cob.UnknownObjectError, ""),
        # the wrong type: a LOG object named as TAGS and vice versa
        (lambda s, log, tags: s.update(TAGS, log, [Tag("x")]), cob.UnknownObjectError, TAGS_TYPENAME),
        (lambda s, log, tags: s.get(TAGS, log), cob.UnknownObjectError, TAGS_TYPENAME),
        (lambda s, log, tags: s.update(LOG, tags, [Append("x")]), cob.UnknownObjectError, LOG_TYPENAME),
        # ops that do not fit the type's structs
        (lambda s, log, tags: s.update(LOG, log, [Tag("x")]), cob.InvalidOpsError, LOG_TYPENAME),
        (
            lambda s, log, tags: s.update(LOG, log, [Append(5)]),
            cob.InvalidOpsError,  # type: ignore[arg-type]
            "Expected `str`",
        ),
        (
            lambda s, log, tags: s.update(LOG, log, [{"type": "append"}]),
            cob.InvalidOpsError,
            "missing required field",
        ),
        (
            lambda s, log, tags: s.update(LOG, log, [{"type": "append", "text": "x", "extra": 1}]),
            cob.InvalidOpsError,
            "extra",
        ),
        (lambda s, log, tags: s.update(LOG, log, [object()]), cob.InvalidOpsError, "encode"),
        (lambda s, log, tags: s.update(LOG, log, []), cob.InvalidOpsError, "at least one op"),
        (lambda s, log, tags: s.create(LOG, []), cob.InvalidOpsError, "at least one op"),
        (lambda s, log, tags: s.create(LOG, ["text"]), cob.InvalidOpsError, LOG_TYPENAME),
        # ops the type refuses
        (lambda s, log, tags: s.update(LOG, log, [Append("REJECT")]), cob.InvalidOpsError, "REJECT"),
        (lambda s, log, tags: s.create(LOG, [Append("REJECT")]), cob.InvalidOpsError, "REJECT"),
        (lambda s, log, tags: s.create(TAGS, [Tag("x")]), cob.InvalidOpsError, "create op"),
        (lambda s, log, tags: s.update(TAGS, tags, [Create("again")]), cob.InvalidOpsError, "root"),
        (
            lambda s, log, tags: s.create(TAGS, [Create("x")], embeds={"a": b"b"}),
            cob.InvalidOpsError,
            "embeds",
        ),
        (
            lambda s, log, tags: s.create(LOG, [Append("x")], embeds={"../a": b"b"}),
            cob.InvalidOpsError,
            "bad embed name",
        ),
        (
            lambda s, log, tags: s.update(LOG, log, [Append("x")], embeds={"": b"b"}),
            cob.InvalidOpsError,
            "bad embed name",
        ),
        (
            lambda s, log, tags: s.update(LOG, log, [Append("x")], embeds={"a": "str"}),
            cob.InvalidOpsError,
            "not bytes",
        ),
        (
            lambda s, log, tags: s.update(LOG, log, [Append("x")], embeds={str(i): b"" for i in range(65)}),
            cob.InvalidOpsError,
            "limit",
        ),
    ],
)
@pytest.mark.slow
def test_bad_input_is_a_typed_error_and_writes_nothing(
    repo: pygit2.Repository,
    world: tuple[cob.Store, str, str],
    call: Callable[[cob.Store, str, str], object],
    error: type[Exception],
    message: str,
) -> None:
    store, log, tags = world
    with Unchanged(repo), pytest.raises(error) as e:
        call(store, log, tags)
    assert isinstance(e.value, cob.CobError)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("op", ["create", "update"])
def test_writing_without_a_signer(
    repo: pygit2.Repository, world: tuple[cob.Store, str, str], op: str
) -> None:
    _, log, _ = world
    reader = cob.Store(repo.path)
    with Unchanged(repo), pytest.raises(cob.NoKeyError, match="read-only"):
        if op == "create":
            reader.create(LOG, [Append("x")])
        else:
            reader.update(LOG, log, [Append("x")])


def test_unknown_object_loads_as_none(world: tuple[cob.Store, str, str]) -> None:
    store, log, _ = world
    assert store.load(LOG, UNKNOWN) is None
    assert store.load(TAGS, log) is None
    assert store.tips(TAGS, log) == {}


def test_dict_ops_are_folded_as_the_structs_a_reader_sees(
    repo: pygit2.Repository, signer: cob.Signer
) -> None:
    store = cob.Store(repo, signer)
    ev = store.create(TAGS, [{"type": "create", "name": "d"}])
    assert ev.object_id == write_root(repo, Codec(TAGS), [Create("d")])
    change, after = store.update(TAGS, ev.object_id, [{"type": "tag", "text": "q"}])
    assert change.ops == (Tag("q"),)
    assert after.state is not None and after.state.tags == ["q"]
    fresh = cob.Store(repo.path, cache=False).load(TAGS, ev.object_id)
    assert fresh is not None and msgspec.to_builtins(fresh.state) == msgspec.to_builtins(after.state)


def test_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(cob.RepositoryError, match=str(tmp_path)):
        cob.Store(tmp_path)


def test_store_over_path_or_repository(repo: pygit2.Repository, signer: cob.Signer) -> None:
    by_repo = cob.Store(repo, signer)
    log = by_repo.create(LOG, [Append("x")]).object_id
    (Path(repo.workdir) / "sub").mkdir()
    for where in (repo.workdir, repo.path, Path(repo.workdir) / "sub", repo):
        store = cob.Store(where)
        assert store.list(LOG) == [log]
        assert store.tips(LOG, log) == {signer.nid: log}
        assert store.list(TAGS) == []


def test_list_and_lookup(repo: pygit2.Repository, signers: Iterator[cob.Signer]) -> None:
    a, b = cob.Store(repo, next(signers)), cob.Store(repo, next(signers))
    x = a.create(TAGS, [Create("x")]).object_id
    y = b.create(TAGS, [Create("y")]).object_id
    b.create(TAGS, [Create("x")])
    for cache in (True, False):
        store = cob.Store(repo.path, cache=cache)
        assert store.list(TAGS) == sorted([x, y])
        assert store.lookup(TAGS, "name", "x") == [x]
        assert store.lookup(TAGS, "name", "nope") == []
        assert store.resolve_prefix(TAGS, x[:6]) == [x]
    assert len(a.tips(TAGS, x)) == 2


def test_update_from_a_stale_base_builds_on_current_tips(
    repo: pygit2.Repository, signers: Iterator[cob.Signer]
) -> None:
    a, b = cob.Store(repo, next(signers), cache=False), cob.Store(repo, next(signers), cache=False)
    ev = a.create(LOG, [Append("root")])
    stale = a.load(LOG, ev.object_id)
    assert stale is not None
    b.update(LOG, ev.object_id, [Append("b")])
    _, after = a.update(LOG, ev.object_id, [Append("a")], base=stale)
    assert after.state is not None and after.state.lines == ["root", "b", "a"]
    full = cob.Store(repo.path, cache=False).load(LOG, ev.object_id)
    assert full is not None and full.state is not None and full.state.lines == ["root", "b", "a"]


def test_fsck_strict_after_gc(repo: pygit2.Repository, signers: Iterator[cob.Signer]) -> None:
    _populated(repo, signers)
    git(repo.workdir, "gc", "--quiet")
    result = subprocess.run(
        ["git", "fsck", "--strict", "--no-dangling"],
        cwd=repo.workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
