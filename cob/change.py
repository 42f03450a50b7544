"""A change is one signed Git commit: ``manifest`` + ``ops`` blobs, parents = known tips.

This module writes changes and reads them back *verified*. Reading never trusts the commit:
sizes are bounded, the SSHSIG must verify over the exact commit buffer and name the author's
NID, the manifest must be this type's, and the ops must decode. Any failure is an
:class:`InvalidChangeError` with a reason, which the evaluator turns into a reported rejection.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, cast

import msgspec
import pygit2

from . import canonical, sshsig
from .cobtype import Change as Change  # re-exported: defined with the contract a type sees
from .cobtype import CobType
from .errors import SignatureError
from .identity import nid_from_public_key
from .verified import NoneVerified

MANIFEST = "manifest"
OPS = "ops"
EMBEDS = "embeds"
# Fixed identity and time of a content-addressed root: its oid then depends on its ops alone.
# Its author's name is the type's (CobType.root_author): part of the oid.
ROOT_EMAIL = "content-addressed-root"
ROOT_TIME = 0

# Why a change is rejected when an object it needs is not in the repository (yet): a later
# fetch may cure it, so the cache does not keep such a verdict.
MISSING_OBJECT = "object is missing from the repository"
MAX_OPS_BYTES = 1 << 20  # 1 MiB of ops per change
MAX_MANIFEST_BYTES = 1024
MAX_PARENTS = 256
MAX_EMBEDS = 64
_NIDS: dict[bytes, str] = {}  # public key -> NID, memoised
# Verified changes a Codec remembers (see Codec.verified), bounded by an estimate of their bytes:
# a long-running node writes for weeks, and a bound by count alone let it grow ~1 KB per write.
MAX_VERIFIED_BYTES = 2 << 20
# Commit times a change may claim: 1970 .. the end of year 9999 (what datetime can show).
# Times are the author's claim and only order ties; beyond these they are just hostile.
_IDENT = re.compile(r"^[0-9A-Za-z]{1,128}$")  # a NID: nothing that could end a header line
_OID = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
MIN_TIMESTAMP = 0
MAX_TIMESTAMP = 253402300799
# What this library writes: libgit2's signature time wraps past 32 bits, so a writer that asked
# for more would fold a time other replicas never see.
MAX_WRITE_TIMESTAMP = 2**32 - 1
# What libgit2 and the decoders raise on malformed objects; read_change turns them into
# InvalidChangeError so peer data is rejected, never crashes a load.
MALFORMED_ERRORS = (pygit2.GitError, KeyError, ValueError, TypeError, LookupError, OverflowError)
GIT_FILEMODE_BLOB = pygit2.enums.FileMode.BLOB
GIT_FILEMODE_TREE = pygit2.enums.FileMode.TREE


class RejectKind(StrEnum):
    """Why a change was dropped, as a type a caller can decide on (the reason is for people).

    ``transient`` kinds may be undone by objects arriving later (a fetch), so a fold that
    holds one is never reused as is; the others are final for the history they were made on.
    """

    MISSING = "missing"  # an object it needs is not in the repository (yet)
    TOO_LARGE = "too-large"  # past MAX_CHANGES: which tips fit depends on what arrives
    INVALID = "invalid"  # fails verification (structure, signature, manifest, ops)
    ANCESTRY = "ancestry"  # a second root, or builds on a change that was not accepted
    REFUSED = "refused"  # the type's rules refused it

    @property
    def transient(self) -> bool:
        return self in (RejectKind.MISSING, RejectKind.TOO_LARGE)


class InvalidChangeError(Exception):
    """A commit that is not a valid change; ``str(e)`` is the reason reported to the user."""

    def __init__(self, reason: str, kind: RejectKind = RejectKind.INVALID) -> None:
        super().__init__(reason)
        self.kind = kind


class Verified:
    """(oid, is_root) -> verified :class:`Change`, holding at most ``limit`` bytes (an estimate
    from the change's ops and parents); the oldest go first."""

    __slots__ = ("_items", "bytes", "limit")

    def __init__(self, limit: int) -> None:
        self._items: dict[tuple[str, bool], tuple[Change, int]] = {}
        self.bytes = 0
        self.limit = limit

    def get(self, key: tuple[str, bool]) -> Change | None:
        hit = self._items.get(key)
        return hit[0] if hit is not None else None

    def __setitem__(self, key: tuple[str, bool], change: Change) -> None:
        self.put(key, change, _estimate(change))

    def put(self, key: tuple[str, bool], change: Change, size: int) -> None:
        """Keep ``change``, of about ``size`` bytes in memory."""
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        if size > self.limit:
            return
        self._items[key] = (change, size)
        self.bytes += size
        if self.bytes > self.limit:
            for first in list(self._items)[: max(1, len(self._items) // 4)]:
                self.bytes -= self._items.pop(first)[1]

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0


def _estimate(change: Change) -> int:
    """About how many bytes ``change`` holds in memory (a one-op change: ~1 KB)."""
    total = 400 + len(change.message) + 100 * len(change.parents)
    for op in change.ops:
        total += 200
        for name in getattr(op, "__struct_fields__", ()):
            value = getattr(op, name, None)
            if isinstance(value, (str, bytes)):
                total += 50 + len(value)
            elif isinstance(value, (list, tuple, dict)):
                total += 64 * (1 + len(value))
            else:
                total += 16
    return total


class Checked(Protocol):
    """Signatures checked before (:class:`cob.verified.VerifiedSet`): ``known(oid, nid)``."""

    def known(self, oid: str, nid: str) -> bool: ...

    def add(self, oid: str, nid: str) -> None: ...

    def flush(self) -> None: ...


class Codec:
    """Per-type encoders/decoders, built once (msgspec decoders are worth reusing)."""

    __slots__ = (
        "_manifest_oids",
        "_manifests",
        "checked",
        "cobtype",
        "known_manifests",
        "manifest",
        "ops_decoder",
        "verified",
    )

    def __init__(self, cobtype: CobType[Any]) -> None:
        self.cobtype = cobtype
        self.manifest = canonical.dumps({"type": cobtype.typename, "version": cobtype.version})
        self.ops_decoder = msgspec.json.Decoder(list[cobtype.op_type])  # type: ignore[name-defined]
        self._manifests = {
            canonical.dumps({"type": cobtype.typename, "version": v}): v for v in cobtype.versions
        }
        # Blob id -> (bytes, version) of the manifests this type reads: a blob is its id's
        # content, so a change naming one of these needs no read of it (every change has one).
        self.known_manifests = {pygit2.hash(m): (m, v) for m, v in self._manifests.items()}
        # (oid, is_root) -> verified change. Git objects are immutable, so a change verified
        # once stays verified: re-folding a non-commutative object after a concurrent write
        # then costs the fold alone, not a signature check per change.
        self.verified = Verified(MAX_VERIFIED_BYTES)
        # Changes whose signature this repository checked before (cob.verified, kept apart
        # from the index): a commit's oid names its bytes, signature included, so a signature
        # checked once need not be checked again.
        self.checked: Checked = NoneVerified()
        self._manifest_oids: dict[str, pygit2.Oid] = {}

    def manifest_blob(self, repo: pygit2.Repository) -> pygit2.Oid:
        """The manifest blob, written once per repository (every change of the type has it)."""
        oid = self._manifest_oids.get(repo.path)
        if oid is None:
            oid = self._manifest_oids[repo.path] = repo.create_blob(self.manifest)
        return oid

    def encode_ops(self, ops: Sequence[Any]) -> bytes:
        try:
            return canonical.dumps(list(ops))
        except (TypeError, msgspec.EncodeError) as e:
            raise InvalidChangeError(f"ops do not encode: {e}") from None

    def decode_ops(self, data: bytes, *, merge: bool = False) -> tuple[Any, ...]:
        """The ops of a change; ``merge``: an empty list is allowed (a merge change, which a
        reader accepts only with two parents or more: see :func:`write_merge`)."""
        if len(data) > MAX_OPS_BYTES:
            raise InvalidChangeError(f"ops blob is {len(data)} bytes (limit {MAX_OPS_BYTES})")
        try:
            ops = self.ops_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise InvalidChangeError(f"ops do not decode: {e}") from None
        if not ops and not merge:
            raise InvalidChangeError("a change carries no ops")
        return tuple(ops)

    def manifest_version(self, data: bytes) -> int:
        version = self._manifests.get(data)
        if version is not None:
            return version
        try:
            decoded = msgspec.json.decode(data[:MAX_MANIFEST_BYTES])
        except msgspec.DecodeError:
            raise InvalidChangeError("manifest is not JSON") from None
        if not isinstance(decoded, dict) or decoded.get("type") != self.cobtype.typename:
            kind = decoded.get("type") if isinstance(decoded, dict) else None
            raise InvalidChangeError(f"manifest type is {kind!r}, expected {self.cobtype.typename!r}")
        raise InvalidChangeError(f"unsupported manifest {decoded!r}")


def _tree(
    repo: pygit2.Repository, codec: Codec, ops_blob: bytes, embeds: Mapping[str, bytes] | None
) -> pygit2.Oid:
    builder = repo.TreeBuilder()
    builder.insert(MANIFEST, codec.manifest_blob(repo), GIT_FILEMODE_BLOB)
    builder.insert(OPS, repo.create_blob(ops_blob), GIT_FILEMODE_BLOB)
    if embeds:
        sub = repo.TreeBuilder()
        for name, content in sorted(embeds.items()):
            if not name or "/" in name or name in (".", "..") or "\0" in name:
                raise InvalidChangeError(f"bad embed name {name!r}")
            sub.insert(name, repo.create_blob(content), GIT_FILEMODE_BLOB)
        builder.insert(EMBEDS, sub.write(), GIT_FILEMODE_TREE)
    tree_oid: pygit2.Oid = builder.write()
    return tree_oid


def root_commit_buffer(repo: pygit2.Repository, codec: Codec, ops: Sequence[Any], tree: pygit2.Oid) -> str:
    """The commit text of a content-addressed root (unsigned, fixed identity and time)."""
    ident = pygit2.Signature(codec.cobtype.root_author, ROOT_EMAIL, ROOT_TIME, 0)
    message = codec.cobtype.summary(ops) + "\n"
    buffer = cast(str, repo.create_commit_string(ident, ident, message, tree, []))
    return buffer


def write_root(repo: pygit2.Repository, codec: Codec, ops: Sequence[Any]) -> str:
    """Write a content-addressed root; its oid is the object id on every node."""
    tree = _tree(repo, codec, codec.encode_ops(ops), None)
    buffer = root_commit_buffer(repo, codec, ops, tree)
    return str(repo.odb.write(pygit2.enums.ObjectType.COMMIT, buffer.encode()))


def write_change(
    repo: pygit2.Repository,
    codec: Codec,
    signer: sshsig.RawSigner,
    nid: str,
    ops: Sequence[Any],
    parents: Sequence[str],
    *,
    timestamp: int | None = None,
    embeds: Mapping[str, bytes] | None = None,
) -> str:
    """Write a signed change commit and return its oid (no ref is touched)."""
    tree = _tree(repo, codec, codec.encode_ops(ops), embeds)
    when = int(time.time()) if timestamp is None else timestamp
    message = codec.cobtype.summary(ops) + "\n"
    if message == "cob: index\n":  # the index commits' message (cob.sigrefs): never a change's
        message = "cob: index (a change)\n"
    buffer = commit_buffer(str(tree), parents, nid, when, message)
    signature = sshsig.sign(signer, buffer.encode())
    return str(repo.create_commit_with_signature(buffer, signature))


MERGE_MESSAGE = "cob: merge\n"  # the message of a merge change (informative, like every change's)


def write_merge(
    repo: pygit2.Repository,
    manifest: pygit2.Oid,
    signer: sshsig.RawSigner,
    nid: str,
    parents: Sequence[str],
    *,
    timestamp: int | None = None,
) -> str:
    """Write a signed *merge change* (no ref is touched): no ops, ``parents`` (two or more,
    sorted), and the manifest blob ``manifest`` of the object's type (taken from one of the
    parents, so that it names a type and version that readers of the object accept).

    A merge change joins two heads of one object's DAG and changes no state: the evaluator
    accepts it without asking the type (docs/FORMAT.md 4.1, 8), so every type takes it. Our
    own index merge writes one per object that two copies of one key both changed."""
    if len(set(parents)) < 2:
        raise InvalidChangeError("a merge change joins two parents or more")
    builder = repo.TreeBuilder()
    builder.insert(MANIFEST, manifest, GIT_FILEMODE_BLOB)
    builder.insert(OPS, repo.create_blob(b"[]"), GIT_FILEMODE_BLOB)
    when = int(time.time()) if timestamp is None else timestamp
    buffer = commit_buffer(str(builder.write()), sorted(set(parents)), nid, when, MERGE_MESSAGE)
    signature = sshsig.sign(signer, buffer.encode())
    return str(repo.create_commit_with_signature(buffer, signature))


def is_merge(change: Change) -> bool:
    """A merge change: no ops (only valid with two parents or more, see :func:`write_merge`)."""
    return not change.ops


def commit_buffer(tree: str, parents: Sequence[str], nid: str, when: int, message: str) -> str:
    """The text of a commit authored and committed by ``nid`` at ``when`` (UTC), byte for byte
    what libgit2's ``create_commit_string`` writes, without its lookups of every parent (a
    third of a write's time). ``nid`` is ours, so it holds no ``<``, ``>`` or newline."""
    if not _IDENT.match(nid) or not _OID.match(tree) or not all(_OID.match(p) for p in parents):
        raise InvalidChangeError(f"cannot write a commit as {nid!r}")
    ident = f"{nid} <{nid}> {when} +0000"
    head = "".join(f"parent {p}\n" for p in parents)
    return f"tree {tree}\n{head}author {ident}\ncommitter {ident}\n\n{message}"


def read_change(
    repo: pygit2.Repository, codec: Codec, oid: str, *, is_root: bool, recheck: bool = False
) -> Change:
    """Read and verify one change. Raises :class:`InvalidChangeError` with the reason.

    Anything libgit2 or the decoders raise on a malformed object (unparseable commit, missing
    tree or blob, bad file mode, undecodable text) is an :class:`InvalidChangeError` too.
    ``recheck``: check everything again, the signature included (an application's full verify).
    """
    hit = None if recheck else codec.verified.get((oid, is_root))
    if hit is not None:
        return hit
    try:
        change, ops_bytes = _read_change(repo, codec, oid, is_root=is_root, recheck=recheck)
    except InvalidChangeError:
        raise
    except MALFORMED_ERRORS as e:
        if _is_missing(e):  # a tree or blob not here (yet): curable by a later fetch
            raise InvalidChangeError(MISSING_OBJECT, RejectKind.MISSING) from None
        raise InvalidChangeError(f"malformed object: {type(e).__name__}: {e}"[:300]) from None
    # About its size in memory, from the ops' JSON (cheaper than _estimate's walk of the ops).
    size = 400 + len(change.message) + 100 * len(change.parents) + 200 * len(change.ops) + 3 * ops_bytes
    codec.verified.put((oid, is_root), change, size)
    return change


def _is_missing(error: Exception) -> bool:
    text = str(error).lower()
    return (
        isinstance(error, KeyError)
        or type(error).__name__ == "NotFoundError"
        or ("not found" in text or "missing" in text)
    )


def _blob_size(repo: pygit2.Repository, blob: pygit2.Object) -> int:
    """A blob's size from its header: ``Blob.size`` would inflate the whole blob first."""
    kind, size = repo.odb.read_header(blob.id)
    if kind != pygit2.enums.ObjectType.BLOB:
        raise InvalidChangeError("manifest and ops must be blobs")
    return int(size)


def _read_change(
    repo: pygit2.Repository, codec: Codec, oid: str, *, is_root: bool, recheck: bool
) -> tuple[Change, int]:
    """The change and the size of its ops blob."""
    try:
        obj = repo[oid]
    except (KeyError, ValueError):
        raise InvalidChangeError(MISSING_OBJECT, RejectKind.MISSING) from None
    if not isinstance(obj, pygit2.Commit):
        raise InvalidChangeError(f"not a commit but a {obj.type_str}")
    commit = obj
    parents = tuple(str(p) for p in commit.parent_ids)
    if len(parents) > MAX_PARENTS:
        raise InvalidChangeError(f"{len(parents)} parents (limit {MAX_PARENTS})")
    tree = _read_tree(repo, codec, commit.tree, merge=len(set(parents)) >= 2 and not is_root)
    if is_root and codec.cobtype.content_addressed_root:
        _check_content_addressed_root(repo, codec, commit, oid, tree)
        return Change(oid, (), None, ROOT_TIME, tree.ops, commit.message, tree.version), len(tree.ops_data)
    signer_nid = commit.author.name
    if recheck or not codec.checked.known(oid, signer_nid):
        signer_nid = signed_by(commit)
        codec.checked.add(oid, signer_nid)
    if is_root and parents:
        raise InvalidChangeError("a root has no parents")
    if not MIN_TIMESTAMP <= commit.commit_time <= MAX_TIMESTAMP:
        raise InvalidChangeError(f"commit time {commit.commit_time} is out of range")
    return Change(
        oid, parents, signer_nid, commit.commit_time, tree.ops, commit.message, tree.version, tree.embeds
    ), len(tree.ops_data)


@dataclass(frozen=True, slots=True)
class _Tree:
    """A change's tree, checked and decoded: the manifest's version, the ops, the embeds."""

    version: int
    ops: tuple[Any, ...]
    embeds: dict[str, str]
    manifest: bytes
    ops_data: bytes
    has_embeds: bool


def _read_tree(repo: pygit2.Repository, codec: Codec, tree: pygit2.Tree, *, merge: bool = False) -> _Tree:
    """Exactly a manifest and an ops blob (mode 100644, within their limits), and optionally
    an ``embeds`` tree of blobs; anything else is an :class:`InvalidChangeError`. ``merge``:
    the commit has two parents or more, so empty ops are a merge change."""
    manifest_entry = ops_entry = embeds_entry = None
    for entry in tree:
        name = entry.name
        if name == MANIFEST:
            manifest_entry = entry
        elif name == OPS:
            ops_entry = entry
        elif name == EMBEDS:
            embeds_entry = entry
        else:
            raise InvalidChangeError(f"unexpected tree entry {name!r}")
    if manifest_entry is None or ops_entry is None:
        raise InvalidChangeError("tree lacks a manifest or ops blob")
    if not isinstance(manifest_entry, pygit2.Blob) or not isinstance(ops_entry, pygit2.Blob):
        raise InvalidChangeError("manifest and ops must be blobs")
    if manifest_entry.filemode != GIT_FILEMODE_BLOB or ops_entry.filemode != GIT_FILEMODE_BLOB:
        # One mode only: otherwise one set of ops has several trees, and a content-addressed
        # root several ids.
        raise InvalidChangeError("manifest and ops must have file mode 100644")
    known = codec.known_manifests.get(manifest_entry.id)
    if known is not None:
        manifest, version = known
    else:
        if _blob_size(repo, manifest_entry) > MAX_MANIFEST_BYTES:
            raise InvalidChangeError("manifest too large")
        manifest = manifest_entry.data
        version = codec.manifest_version(manifest)
    ops_size = _blob_size(repo, ops_entry)
    if ops_size > MAX_OPS_BYTES:
        raise InvalidChangeError(f"ops blob is {ops_size} bytes (limit {MAX_OPS_BYTES})")
    ops_data = ops_entry.data
    ops = codec.decode_ops(ops_data, merge=merge)
    if not ops and embeds_entry is not None:
        raise InvalidChangeError("a merge change carries no embeds")
    embeds = _read_embeds(embeds_entry) if embeds_entry is not None else {}
    return _Tree(version, ops, embeds, manifest, ops_data, embeds_entry is not None)


def _read_embeds(entry: pygit2.Object) -> dict[str, str]:
    if not isinstance(entry, pygit2.Tree) or len(entry) > MAX_EMBEDS:
        raise InvalidChangeError("embeds must be a tree of at most 64 blobs")
    embeds: dict[str, str] = {}
    for e in entry:
        if not isinstance(e, pygit2.Blob) or e.filemode != GIT_FILEMODE_BLOB:
            raise InvalidChangeError("embeds must hold blobs (mode 100644) only")
        embeds[e.name or ""] = str(e.id)
    return embeds


def _check_content_addressed_root(
    repo: pygit2.Repository, codec: Codec, commit: pygit2.Commit, oid: str, tree: _Tree
) -> None:
    """An unsigned root is valid only if re-deriving it from its decoded ops gives its oid."""
    if commit.gpg_signature[0] is not None:
        raise InvalidChangeError("a content-addressed root must not be signed")
    if commit.parent_ids:
        raise InvalidChangeError("a root has no parents")
    if tree.has_embeds or tree.manifest != codec.manifest or codec.encode_ops(tree.ops) != tree.ops_data:
        raise InvalidChangeError("root does not re-derive from its ops")
    expected = root_commit_buffer(repo, codec, tree.ops, commit.tree_id)
    if commit_oid(expected.encode()) != oid:
        raise InvalidChangeError("root does not re-derive from its ops")


def signed_by(commit: pygit2.Commit) -> str:
    """The NID whose key signed ``commit`` (SSHSIG) and which is both its author and committer;
    :class:`InvalidChangeError` saying what is wrong otherwise. The one signer check: loading a
    change and taking a peer's tip at fetch both ask it."""
    signature, payload = commit.gpg_signature
    return signer_of(signature, payload, commit.author.name, commit.committer.name)


def signer_of(signature: bytes | None, payload: bytes, author: str, committer: str) -> str:
    """:func:`signed_by` on a commit's parts (its ``gpgsig``, the signed buffer, its author's
    and committer's names): also what :mod:`cob.parallel` runs in worker processes."""
    if signature is None:
        raise InvalidChangeError("change is not signed")
    try:
        public_key = sshsig.verify(signature, payload)
    except SignatureError as e:
        raise InvalidChangeError(f"bad signature: {e}") from None
    signer_nid = _NIDS.get(public_key)
    if signer_nid is None:  # base58 is slow in Python, and a history has few distinct signers
        if len(_NIDS) >= 4096:
            _NIDS.clear()
        signer_nid = _NIDS[public_key] = nid_from_public_key(public_key)
    if author != signer_nid or committer != signer_nid:
        raise InvalidChangeError(
            f"signed by {signer_nid} but authored as {author!r} and committed as {committer!r}"
        )
    return signer_nid


def commit_oid(data: bytes) -> str:
    """The SHA-1 object id git gives a commit with this content (without writing it)."""
    return hashlib.sha1(b"commit %d\0" % len(data) + data).hexdigest()
