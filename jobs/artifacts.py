"""Artifacts: a job's outputs published as Git data, verified against the signed finish.

A job with ``publish = true`` (and ``outputs``) has its kept outputs published by the node that
ran it, like its log (:mod:`jobs.logs`): the outputs' Git tree — whose id the signed ``finish``
already records (``outputs``, issue 27) — is listed in a per-node monthly bucket ref,
``refs/namespaces/<NID>/refs/artifacts/<YYYY-MM>`` (the month of the run id), a chain of
commits signed by the node whose tree maps ``<last two hex digits of the run id>/<run id>`` to
the outputs tree. Sync carries the buckets beside the job refs (fetched only as fast-forwards
signed by the namespace's node, pushed from our own namespace only). A reader takes an
artifact only when the tree the bucket lists is the tree the signed finish names and every
object of it re-hashes to its id; pruning deletes whole old buckets (``git jobs
prune-artifacts --older-than D``), never rewriting one.

Node settings (git config): ``jobs.artifactsMax`` (bytes a run publishes at most, default
256m; ``0``: publish nothing), ``jobs.artifacts.prunedBefore`` (written by :func:`prune`).
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
import stat
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pygit2

import cob
from cob import sshsig
from cob.family import RefFamily, family_refs
from cob.refs import compare_and_swap

from .errors import JobsError
from .logs import BUCKET, _next_month, bucket_of, bucket_shape, bucket_with, entry_path, month_of
from .model import Job, Run
from .text import safe

if TYPE_CHECKING:
    from .store import Jobs

KIND = "artifacts"
MESSAGE = "Artifacts "
MERGE_MESSAGE = "Artifacts merge\n"
DEFAULT_MAX = 256 * 2**20
MAX_READ_BYTES = 512 * 2**20  # a reader writes at most this much of one artifact (peer data)
MAX_READ_FILES = 20_000
MAX_READ_ENTRIES = 2 * MAX_READ_FILES  # entries (files and directories) a reader visits
PRUNED_KEY = "jobs.artifacts.prunedBefore"
MAX_KEY = "jobs.artifactsMax"
_TREE = pygit2.enums.FileMode.TREE
_RUN_LEAF = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class ArtifactError(JobsError):
    """An artifact that cannot be published, found or written (one clear line)."""


# -- the ref family --------------------------------------------------------------------------
def family(pruned_before: str | None = None) -> RefFamily:
    return RefFamily(KIND, BUCKET, pruned_before, _next_month(), bucket_problem)


def pruned_before(repo: pygit2.Repository) -> str | None:
    value = repo.config[PRUNED_KEY] if PRUNED_KEY in repo.config else None  # noqa: SIM401
    return value if value is not None and BUCKET.fullmatch(value) else None


def family_for(repo: pygit2.Repository) -> RefFamily:
    return family(pruned_before(repo))


def bucket_ref(nid: str, bucket: str) -> str:
    return family().ref(nid, bucket)


def bucket_problem(repo: pygit2.Repository, name: str, tip: str) -> str | None:
    """Why ``tip`` may not be the tip of artifact bucket ``name`` (its shape), or None."""
    month = name.rsplit("/", 1)[-1]
    try:
        commit = repo[tip]
        text = commit.raw_message.decode("ascii", "replace") if isinstance(commit, pygit2.Commit) else ""
    except (KeyError, ValueError, TypeError, pygit2.GitError):
        text = ""
    one = text.startswith(MESSAGE) and _RUN_LEAF.match(text[len(MESSAGE) :].rstrip("\n")) is not None
    if not (text == MERGE_MESSAGE or (one and text.endswith("\n") and text.count("\n") == 1)):
        return "the tip is not an artifact bucket commit"
    return (
        None
        if _bucket_tree(repo, tip, month) is not None
        else f"the tip's tree is not an artifact bucket of {month}"
    )


def _bucket_tree(repo: pygit2.Repository, tip: str, month: str) -> pygit2.Tree | None:
    """The bucket commit's tree when it has a bucket's shape: fan-out directories holding
    trees named by run ids of ``month`` ending in those two digits."""
    return bucket_shape(repo, tip, month, MESSAGE.encode(), _TREE)


# -- publishing ------------------------------------------------------------------------------
def max_bytes(repo: pygit2.Repository) -> int:
    """``jobs.artifactsMax``: what one run publishes at most (k/m/g suffixes; 0: nothing)."""
    raw = repo.config[MAX_KEY] if MAX_KEY in repo.config else None  # noqa: SIM401
    if raw is None:
        return DEFAULT_MAX
    text = str(raw).strip().lower()
    scale = {"k": 2**10, "m": 2**20, "g": 2**30}.get(text[-1:], 1)
    digits = text[:-1] if scale > 1 else text
    if not digits.isdigit() or len(digits) > 15:
        raise ArtifactError(
            f"git config {MAX_KEY}: {str(raw)[:40]!r} is not a size (e.g. 256m, 0 = publish nothing)"
        )
    return int(digits) * scale


def tree_size(repo: pygit2.Repository, tree: str, limit: int) -> tuple[int, int] | None:
    """(bytes, files) of a tree's blobs, or None when over ``limit`` bytes or the file bound."""
    total = files = 0
    stack = [tree]
    while stack:
        obj = repo[stack.pop()]
        if not isinstance(obj, pygit2.Tree):
            return None
        for entry in obj:
            if entry.filemode == _TREE:
                stack.append(str(entry.id))
                continue
            _, size = repo.odb.read_header(entry.id)
            total += size
            files += 1
            if total > limit or files > MAX_READ_FILES:
                return None
    return total, files


def publish(repo: pygit2.Repository, signer: cob.Signer, run_id: uuid.UUID | str, tree: str) -> str:
    """List outputs ``tree`` of a run in this node's bucket; a note for the run's log."""
    limit = max_bytes(repo)
    if limit == 0:
        return "outputs not published: jobs.artifactsMax is 0 on this node"
    size = tree_size(repo, tree, limit)
    if size is None:
        return f"outputs not published: over jobs.artifactsMax ({limit} bytes) or {MAX_READ_FILES} files"
    bucket = bucket_of(run_id)
    if family_for(repo).is_pruned(bucket):
        return "outputs not published: its month's artifacts were pruned here"
    name = bucket_ref(signer.nid, bucket)
    for _ in range(50):  # another process of this node may move the bucket meanwhile
        old = repo.references.get(name)
        old_oid = str(old.target) if old is not None else None
        commit = _bucket_commit(repo, signer, old_oid, run_id, pygit2.Oid(hex=tree))
        if compare_and_swap(repo, name, commit, old_oid, f"git-jobs: artifacts of run {run_id}"):
            return f"outputs published: tree {tree[:12]}, {size[1]} files, {size[0]} bytes"
        time.sleep(0.01)
    raise ArtifactError(f"cannot publish the outputs of run {run_id}: {name} kept moving")


def _sign(
    repo: pygit2.Repository, signer: cob.Signer, message: str, tree: pygit2.Oid, parents: list[str]
) -> str:
    ident = pygit2.Signature(signer.nid, signer.nid, int(time.time()), 0)
    oids: list[str | pygit2.Oid] = [pygit2.Oid(hex=p) for p in parents]
    buffer = cast(str, repo.create_commit_string(ident, ident, message, tree, oids))
    return str(repo.create_commit_with_signature(buffer, sshsig.sign(signer, buffer.encode())))


def _bucket_commit(
    repo: pygit2.Repository, signer: cob.Signer, parent: str | None, run_id: uuid.UUID | str, tree: pygit2.Oid
) -> str:
    root = bucket_with(repo, parent, run_id, tree, _TREE)
    return _sign(repo, signer, f"{MESSAGE}{run_id}\n", root, [parent] if parent else [])


def merge_own(repo: pygit2.Repository, signer: cob.Signer, name: str, theirs: str) -> bool:
    """Merge our own bucket as a remote holds it (diverged: two copies of this node) into ours."""
    month = name.rsplit("/", 1)[-1]
    their_tree = _bucket_tree(repo, theirs, month)
    if their_tree is None:
        raise ArtifactError(f"the remote's {name} is not an artifact bucket of this node")
    ref = repo.references.get(name)
    ours = str(ref.target) if ref is not None else None
    if ours is not None and (ours == theirs or cob.refs.is_ancestor(repo, theirs, ours)):
        return False
    mine = _bucket_tree(repo, ours, month) if ours is not None else None
    root = repo.TreeBuilder(their_tree)
    for fan in mine or []:
        fan_name = fan.name or ""
        theirs_fan = their_tree[fan_name] if fan_name in their_tree else None  # noqa: SIM401
        sub = repo.TreeBuilder(theirs_fan) if isinstance(theirs_fan, pygit2.Tree) else repo.TreeBuilder()
        for leaf in cast(pygit2.Tree, repo[fan.id]):
            sub.insert(leaf.name or "", leaf.id, _TREE)  # ours wins a run both list
        root.insert(fan_name, sub.write(), _TREE)
    commit = _sign(repo, signer, MERGE_MESSAGE, root.write(), [theirs, *([ours] if ours else [])])
    if not compare_and_swap(repo, name, commit, ours, "git-jobs: merge our artifact bucket"):
        raise ArtifactError(f"cannot merge {name}: it moved meanwhile")
    return True


# -- reading ---------------------------------------------------------------------------------
class Status(enum.Enum):
    OK = "ok"
    RUNNING = "running"
    NONE = "none"  # the run kept no outputs (or did not succeed)
    MISSING = "missing"
    PRUNED = "pruned"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Found:
    status: Status
    tree: str | None = None
    detail: str = ""


def _bucket_entry(repo: pygit2.Repository, nid: str, run_id: uuid.UUID | str) -> str | None:
    ref = repo.references.get(bucket_ref(nid, bucket_of(run_id)))
    if ref is None:
        return None
    fan, leaf = entry_path(run_id)
    try:
        return str(repo[ref.target].peel(pygit2.Tree)[f"{fan}/{leaf}"].id)
    except (KeyError, ValueError, pygit2.GitError):
        return None


def _rehash(kind: str, data: bytes) -> str:
    return hashlib.sha1(f"{kind} {len(data)}\0".encode() + data).hexdigest()


def _names_problem(tree: pygit2.Tree) -> str | None:
    """Why a tree's entry names are unsafe to write, or None: ``..``, ``.git``, a slash, or a
    name twice (a directory then a link of that name: its files went through the link)."""
    names: set[str] = set()
    for entry in tree:
        name = entry.name or ""
        if name in ("", ".", "..", ".git") or "/" in name or "\0" in name:
            return f"the artifact holds an unsafe file name {name[:40]!r}"
        if name in names:
            return f"the artifact names {safe(name[:40])!r} twice in one directory"
        names.add(name)
    return None


def verify_tree(repo: pygit2.Repository, tree: str) -> str | None:
    """Why the objects of ``tree`` are not all here with the bytes their ids name, or None
    (every object re-hashed; bounded in bytes and files)."""
    total = files = entries = 0
    stack = [(tree, "tree")]
    while stack:
        oid, kind = stack.pop()
        try:
            _, data = repo.odb.read(oid)
        except KeyError:
            return f"object {oid[:12]} of the artifact is not in this repository"
        except (ValueError, pygit2.GitError):
            return f"object {oid[:12]} of the artifact is corrupt: it does not hash to its id"
        if len(oid) == 40 and _rehash(kind, bytes(data)) != oid:
            return f"object {oid[:12]} of the artifact does not hash to its id"
        if kind == "tree":
            obj = repo[oid]
            if not isinstance(obj, pygit2.Tree):
                return f"object {oid[:12]} is not a tree"
            entries += len(obj)  # a tree may name one subtree many times: count visits, not objects
            problem = _names_problem(obj) or (
                f"the artifact is over {MAX_READ_ENTRIES} files and directories"
                if entries > MAX_READ_ENTRIES
                else None
            )
            if problem:
                return problem
            for entry in obj:
                if entry.filemode == _TREE:
                    stack.append((str(entry.id), "tree"))
                elif entry.filemode == pygit2.enums.FileMode.COMMIT:
                    return "the artifact holds a submodule entry"
                else:
                    stack.append((str(entry.id), "blob"))
        else:
            total += len(data)
            files += 1
            if total > MAX_READ_BYTES or files > MAX_READ_FILES:
                return f"the artifact is over {MAX_READ_BYTES} bytes or {MAX_READ_FILES} files"
    return None


def find(repo: pygit2.Repository, nid: str, run_id: uuid.UUID | str, run: Run) -> Found:
    """The published outputs of one run, checked against its signed finish."""
    if run.is_started:
        return Found(Status.RUNNING, detail="the run has not finished yet")
    signed = run.evidence.outputs if run.evidence is not None else None
    if not run.succeeded or signed is None:
        return Found(Status.NONE, detail="its signed finish names no outputs")
    listed = _bucket_entry(repo, nid, run_id)
    if listed is not None and listed != signed:
        where = bucket_ref(nid, bucket_of(run_id))
        why = f"{where} lists tree {listed[:12]}, but the signed finish names {signed[:12]}"
        return Found(Status.REFUSED, detail=why)
    if listed is None:
        if family_for(repo).is_pruned(bucket_of(run_id)):
            return Found(Status.PRUNED, detail="artifacts of that month were pruned here")
        return Found(Status.MISSING, detail="not published, or not here yet (`git jobs sync`)")
    problem = verify_tree(repo, signed)
    if problem:
        return Found(Status.REFUSED, detail=problem)
    return Found(Status.OK, signed)


def trusted(repo: pygit2.Repository, own: str | None) -> Callable[[str], bool]:
    """Whose published outputs count: this node's, and the nodes the policy (plus local trust)
    names. With no policy, only this node's: a stranger's build is never taken."""
    from .errors import PolicyError
    from .policy import load_policy

    try:
        policy = load_policy(repo)
    except PolicyError:
        return lambda nid: nid == own
    return lambda nid: nid == own or (not policy.everyone and policy.trusts(nid))


def best(
    repo: pygit2.Repository, job: Job, trusts: Callable[[str], bool]
) -> tuple[str, uuid.UUID, str] | None:
    """(node, run id, tree) of the latest published, verified outputs of ``job`` by a trusted
    node, or None."""
    found = []
    for nid in job.nodes():
        if not trusts(nid):
            continue
        for run_id, run in job.runs_of(nid).items():
            if run.succeeded and run.evidence is not None and run.evidence.outputs:
                got = find(repo, nid, run_id, run)
                if got.status is Status.OK and got.tree is not None:
                    found.append((run_id, nid, got.tree))
    if not found:
        return None
    run_id, nid, tree = max(found)
    return nid, run_id, tree


# -- writing files ---------------------------------------------------------------------------
def write_tree(repo: pygit2.Repository, tree: str, dest: Path) -> int:
    """Write a verified tree's files under ``dest`` (links as links; whatever is in the way of
    a file, a link included, is replaced, never written through). Returns the files written."""
    count = 0
    dest.mkdir(parents=True, exist_ok=True)
    stack: list[tuple[str, Path]] = [(tree, dest)]
    while stack:
        oid, here = stack.pop()
        if here != dest and (os.path.islink(here) or not here.is_dir()):  # replaced since: never through it
            raise OSError(f"{here} is no longer a directory of the artifact")
        obj = repo[oid]
        assert isinstance(obj, pygit2.Tree)
        for entry in obj:
            target = here / (entry.name or "")
            is_dir = entry.filemode == _TREE
            if os.path.islink(target) or (os.path.lexists(target) and (not is_dir or not target.is_dir())):
                if target.is_dir() and not target.is_symlink():
                    import shutil

                    shutil.rmtree(target)
                else:
                    target.unlink()
            if is_dir:
                target.mkdir(exist_ok=True)
                stack.append((str(entry.id), target))
                continue
            blob = repo[entry.id]
            assert isinstance(blob, pygit2.Blob)
            if entry.filemode == pygit2.enums.FileMode.LINK:
                os.symlink(os.fsdecode(blob.data), target)
            else:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(blob.data)
                if entry.filemode == pygit2.enums.FileMode.BLOB_EXECUTABLE:
                    os.chmod(target, stat.S_IMODE(0o755))
            count += 1
    return count


# -- pruning ---------------------------------------------------------------------------------
def prune(repo: pygit2.Repository, older_than: float, now: float | None = None) -> tuple[str, list[str]]:
    """Drop every node's artifact buckets whose whole month is older than ``older_than``
    seconds; (the new prune point, the refs deleted). The point only moves forward."""
    point = month_of((time.time() if now is None else now) - older_than)
    current = pruned_before(repo)
    if current is not None and current > point:
        point = current
    repo.config[PRUNED_KEY] = point
    gone = []
    for name in sorted(family_refs(repo, family(point))):
        if name.rsplit("/", 1)[1] < point:
            repo.references.delete(name)
            gone.append(name)
    return point, gone


# -- the planner's view ----------------------------------------------------------------------
def grouping_needs(defs: Iterable[object]) -> dict[str, list[str]]:
    """Each job's needs that bind it to the same node (:mod:`jobs.assign`): a need whose
    outputs are published (``publish = true``) does not — its users may run anywhere."""
    published = {getattr(d, "name", "") for d in defs if getattr(d, "publish", False)}
    return {
        str(getattr(d, "name", "")): [n for n in getattr(d, "needs", ()) if n not in published] for d in defs
    }


def published_by(jobs: Jobs, commit: str, name: str) -> tuple[str, uuid.UUID, str] | None:
    """The trusted, verified published outputs of job ``name`` at ``commit`` (see :func:`best`)."""
    own = jobs.signer.nid if jobs.signer is not None else None
    trusts = trusted(jobs.repo, own)
    for job in jobs.find_by_commit(commit):
        if job.name == name:
            return best(jobs.repo, job, trusts)
    return None
