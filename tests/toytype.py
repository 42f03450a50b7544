"""Two small collaborative object types used to test `cob` — proof that `cob` is generic.

- :data:`LOG` (``test.cob.log``): a signed, *non*-commutative append-only log. The root is an
  ordinary signed change; every ``append {text}`` op adds one line, so the state is exactly the
  fold order and any difference in ordering between replicas shows up in the state.
  An op whose text starts with ``"REJECT"`` is refused by the type (a type-level rejection).
- :data:`TAGS` (``test.cob.tags``): a content-addressed, commutative and idempotent set. The
  root carries ``create {name}`` and is unsigned with a fixed identity, so every repository that
  creates the same name gets the same object id; ``tag {text}`` ops add to a set, so a cached
  state plus new changes equals a full fold (the cache's incremental path).

Nothing here knows about jobs; the tests use these types alone.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, cast

import msgspec
import pygit2

from cob import (
    Change,
    CobType,
    EvalContext,
    Evaluation,
    Reject,
    Signer,
    allowed_signers_line,
    canonical,
    sigrefs,
    sshsig,
)

LOG_TYPENAME = "test.cob.log"
TAGS_TYPENAME = "test.cob.tags"
REJECT_TEXT = "REJECT"


class Append(msgspec.Struct, tag="append", tag_field="type", forbid_unknown_fields=True):
    text: str


class LogState(msgspec.Struct):
    lines: list[str] = msgspec.field(default_factory=list)
    authors: list[str | None] = msgspec.field(default_factory=list)


def _check_text(text: str) -> None:
    if text.startswith(REJECT_TEXT):
        raise Reject(f"the type refuses the text {text!r}")


class LogType(CobType[LogState]):
    """A signed append-only log; the state lists every line in fold order."""

    typename: ClassVar[str] = LOG_TYPENAME
    op_type: ClassVar[Any] = Append
    state_type: ClassVar[Any] = None  # not commutative: never cached

    def initial(self, root: Change) -> LogState:
        state = LogState()
        for op in root.ops:
            _check_text(op.text)
        self.apply(state, root)
        return state

    def validate(self, state: LogState, change: Change, ctx: EvalContext) -> None:
        for op in change.ops:
            if not isinstance(op, Append):
                raise Reject(f"not an append op: {op!r}")
            _check_text(op.text)

    def apply(self, state: LogState, change: Change) -> None:
        for op in change.ops:
            state.lines.append(op.text)
            state.authors.append(change.author)

    def summary(self, ops: Sequence[Any]) -> str:
        return f"Append {len(ops)} line(s)"


class Create(msgspec.Struct, tag="create", tag_field="type", forbid_unknown_fields=True):
    name: str


class Tag(msgspec.Struct, tag="tag", tag_field="type", forbid_unknown_fields=True):
    text: str


TagsOp = Create | Tag


class TagsState(msgspec.Struct):
    name: str
    tags: list[str] = msgspec.field(default_factory=list)  # kept sorted and unique


class TagsRow(msgspec.Struct, array_like=True):
    """A listing row (:meth:`cob.Store.listing`): the name, how many tags, how many refused."""

    name: str
    count: int
    rejected: int


class TagsType(CobType[TagsState]):
    """A content-addressed, commutative set of tags (cacheable, folds incrementally)."""

    typename: ClassVar[str] = TAGS_TYPENAME
    op_type: ClassVar[Any] = TagsOp
    state_type: ClassVar[Any] = TagsState
    listing_type: ClassVar[Any] = TagsRow
    content_addressed_root: ClassVar[bool] = True
    commutative: ClassVar[bool] = True

    def initial(self, root: Change) -> TagsState:
        if len(root.ops) != 1 or not isinstance(root.ops[0], Create):
            raise Reject("the root must carry exactly one create op")
        return TagsState(root.ops[0].name)

    def validate(self, state: TagsState, change: Change, ctx: EvalContext) -> None:
        if change.author is None:
            raise Reject("only the root may be unsigned")
        for op in change.ops:
            if not isinstance(op, Tag):
                raise Reject("create may only appear in the root")
            _check_text(op.text)

    def apply(self, state: TagsState, change: Change) -> None:
        tags = set(state.tags)
        tags.update(op.text for op in change.ops)
        state.tags = sorted(tags)

    def summary(self, ops: Sequence[Any]) -> str:
        if len(ops) == 1 and isinstance(ops[0], Create):
            return f"Create {ops[0].name}"
        return f"Tag {len(ops)} item(s)"

    def listing(self, ev: Evaluation[TagsState]) -> TagsRow:
        assert ev.state is not None
        return TagsRow(ev.state.name, len(ev.state.tags), len(ev.rejected))

    def index_keys(self, root: Change) -> Iterable[tuple[str, str]]:
        if root.ops and isinstance(root.ops[0], Create):
            yield ("name", root.ops[0].name)


LOG = LogType()
TAGS = TagsType()


# -- writing changes by hand, as a hostile or buggy peer would ------------------------------
# The tests need commits the store would never write; these build them with pygit2 and
# cob.sshsig only, so the bytes are exactly what a peer could put in a repository.


def manifest_bytes(typename: str, version: int = 1) -> bytes:
    return canonical.dumps({"type": typename, "version": version})


def ops_bytes(*texts: str) -> bytes:
    return canonical.dumps([Append(t) for t in texts])


def write_tree(repo: pygit2.Repository, entries: dict[str, bytes]) -> pygit2.Oid:
    builder = repo.TreeBuilder()
    for name, data in entries.items():
        builder.insert(name, repo.create_blob(data), pygit2.enums.FileMode.BLOB)
    oid: pygit2.Oid = builder.write()
    return oid


def commit_buffer(
    repo: pygit2.Repository,
    tree: pygit2.Oid,
    parents: Sequence[str],
    author: str,
    when: int = 1_700_000_000,
    message: str = "hand-written change\n",
    email: str | None = None,
) -> str:
    ident = pygit2.Signature(author, author if email is None else email, when, 0)
    parent_oids: list[str | pygit2.Oid] = [pygit2.Oid(hex=p) for p in parents]
    return cast(str, repo.create_commit_string(ident, ident, message, tree, parent_oids))


def write_raw(
    repo: pygit2.Repository,
    *,
    parents: Sequence[str],
    author: str,
    sign_with: Signer | None,
    manifest: bytes = manifest_bytes(LOG_TYPENAME),
    ops: bytes = ops_bytes("raw"),
    when: int = 1_700_000_000,
    message: str = "hand-written change\n",
) -> str:
    """A change commit with any content, signed by ``sign_with`` (or unsigned when None)."""
    tree = write_tree(repo, {"manifest": manifest, "ops": ops})
    buffer = commit_buffer(repo, tree, parents, author, when, message)
    if sign_with is None:
        return str(repo.odb.write(pygit2.enums.ObjectType.COMMIT, buffer.encode()))
    signature = sshsig.sign(sign_with, buffer.encode())
    return str(repo.create_commit_with_signature(buffer, signature))


def swap_tree(repo: pygit2.Repository, oid: str, new_tree: pygit2.Oid) -> str:
    """A copy of commit ``oid`` with another tree but the original ``gpgsig`` header."""
    raw = repo.odb.read(pygit2.Oid(hex=oid))[1]
    first, _, rest = raw.partition(b"\n")
    assert first.startswith(b"tree ")
    data = b"tree " + str(new_tree).encode() + b"\n" + rest
    return str(repo.odb.write(pygit2.enums.ObjectType.COMMIT, data))


def _with_entry(
    repo: pygit2.Repository, base: pygit2.Tree | None, typename: str, object_id: str, oid: str
) -> pygit2.Oid:
    """``base`` (an index tree) with ``<typename>/<id[:2]>/<id>`` set to a gitlink to ``oid``."""

    def sub(tree: pygit2.Tree | None, name: str) -> pygit2.TreeBuilder:
        if tree is not None and name in tree and tree[name].filemode == pygit2.enums.FileMode.TREE:
            return repo.TreeBuilder(repo[tree[name].id])
        return repo.TreeBuilder()

    top_tree = repo[base[typename].id] if base is not None and typename in base else None
    fan = sub(top_tree if isinstance(top_tree, pygit2.Tree) else None, object_id[:2])
    fan.insert(object_id, pygit2.Oid(hex=oid), pygit2.enums.FileMode.COMMIT)
    top = sub(base, typename)
    top.insert(object_id[:2], fan.write(), pygit2.enums.FileMode.TREE)
    root = repo.TreeBuilder(base) if base is not None else repo.TreeBuilder()
    root.insert(typename, top.write(), pygit2.enums.FileMode.TREE)
    new: pygit2.Oid = root.write()
    return new


def _index_commit(
    repo: pygit2.Repository, namespace: str, tree: pygit2.Oid, parents: Sequence[str], signer: Signer | None
) -> str:
    ident = pygit2.Signature(namespace, namespace, 1_700_000_000, 0)
    buffer = cast(
        str,
        repo.create_commit_string(ident, ident, sigrefs.MESSAGE, tree, [pygit2.Oid(hex=p) for p in parents]),
    )
    if signer is None:
        return str(repo.odb.write(pygit2.enums.ObjectType.COMMIT, buffer.encode()))
    return str(repo.create_commit_with_signature(buffer, sshsig.sign(signer, buffer.encode())))


def point(
    repo: pygit2.Repository,
    namespace: str,
    typename: str,
    object_id: str,
    oid: str,
    *,
    signer: Signer | None = None,
) -> str:
    """Set ``namespace``'s index entry for one object to ``oid`` (create or force it), as a
    fetch from that peer would deliver it; returns the new index commit.

    The index commit goes on top of the namespace's current one (a first index commit starts
    with the empty, parentless one, as :mod:`cob.sigrefs` writes) and names ``oid`` as a parent
    when it is a commit here. It is signed by ``signer`` when given, else unsigned, as plain git
    could write it: a repository's reads trust its own refs (a fetch is where an index's
    signature is checked, see tests of :mod:`cob.sync`). ``oid`` may be anything, even a blob
    or a missing object: the evaluation must refuse it, not the helper.
    """
    name = sigrefs.index_ref(namespace)
    current = repo.references.get(name)
    prev = str(current.target) if current is not None else None
    if prev is None:
        prev = _index_commit(repo, namespace, repo.TreeBuilder().write(), [], signer)
    try:
        reachable = isinstance(repo[oid], pygit2.Commit)
    except (KeyError, ValueError):
        reachable = False
    tree = _with_entry(repo, sigrefs.tree_of(repo, prev), typename, object_id, oid)
    new = _index_commit(repo, namespace, tree, [prev, *([oid] if reachable else [])], signer)
    repo.references.create(name, pygit2.Oid(hex=new), force=True)
    return new


def odb_oids(path: str) -> set[str]:
    """Every object in a repository, read through a fresh handle (nothing cached)."""
    return {str(o) for o in pygit2.Repository(path).odb}


def all_refs(path: str) -> dict[str, str]:
    out = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname) %(objectname)"],
        cwd=path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def allowed_signers_file(path: Path, nids: Iterable[str]) -> Path:
    path.write_text("".join(allowed_signers_line(n) + "\n" for n in nids))
    return path


def verify_commits(repo_path: str, allowed: Path, oids: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Stock ``git verify-commit`` with ``gpg.format=ssh`` and an allowed-signers file."""
    return subprocess.run(
        [
            "git",
            "-c",
            "gpg.format=ssh",
            "-c",
            f"gpg.ssh.allowedSignersFile={allowed}",
            "verify-commit",
            "-v",
            *oids,
        ],
        cwd=repo_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
