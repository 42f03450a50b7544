"""Run logs as Git data: published per node in monthly buckets, verified against the ledger.

A log must reach every peer that syncs, with no log server, and yet be prunable. So it is
*not* in the job's change DAG (a signed, append-only DAG can never drop anything): it is a
blob in a per-node bucket ref, ``refs/namespaces/<NID>/refs/logs/<YYYY-MM>`` (the month of
the run id's uuid7 time), a chain of commits signed by the node whose tree maps
``<last two hex digits of the run id>/<run id>`` to the log blob. The signed ``finish`` op
records that blob's id (and the command's exit status), so a reader shows a log only when its
bytes hash to the id the ledger signed — a hub or peer that swaps a bucket's entry gets the
log refused, not shown. Refs grow with nodes and months, not with runs; pruning deletes whole
old bucket refs (never rewriting one), so every ref that remains only moves forward.

Node settings live in the node's own git config, never in the commit under test:
``jobs.logs.publish`` (default true), ``jobs.logs.redact`` (regexes, repeatable),
``jobs.logs.maxBytes`` (the cap; head and tail are kept), ``jobs.logs.prunedBefore``
(written by :func:`prune`).
"""

from __future__ import annotations

import enum
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

import pygit2

import cob
from cob import sshsig
from cob.family import RefFamily, family_refs
from cob.refs import compare_and_swap

from .errors import AmbiguousJobError, JobsError, UnknownJobError, UnknownRunError
from .jobtype import JOB_TYPE
from .model import Job, Run, run_prefix
from .paths import log_path as log_path
from .paths import logs_dir as logs_dir
from .paths import state_dir as state_dir

if TYPE_CHECKING:
    from .store import Jobs

KIND = "logs"
BUCKET = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
DEFAULT_MAX_BYTES = 2 * 1024 * 1024
MIN_MAX_BYTES = 4096
MAX_MAX_BYTES = 64 * 1024 * 1024
MAX_READ_BYTES = MAX_MAX_BYTES + 4096  # a reader never inflates a bigger blob (peer data)
REDACTED = b"[REDACTED]"
CAP_SLACK = 16384  # the capture's marker and the node's closing lines, outside the cap
_FILEMODE_BLOB = pygit2.enums.FileMode.BLOB
_FILEMODE_TREE = pygit2.enums.FileMode.TREE


class LogConfigError(JobsError):
    """A bad ``jobs.logs.*`` setting (names the key)."""


@dataclass(frozen=True, slots=True)
class LogSettings:
    """What this node publishes: on or off, redaction patterns, the cap, the prune point."""

    publish: bool = True
    redact: tuple[re.Pattern[bytes], ...] = ()
    max_bytes: int = DEFAULT_MAX_BYTES
    pruned_before: str | None = None

    @classmethod
    def load(cls, repo: pygit2.Repository) -> LogSettings:
        config = repo.config
        try:
            publish = config.get_bool("jobs.logs.publish") if "jobs.logs.publish" in config else True
        except (pygit2.GitError, ValueError):
            raise LogConfigError("jobs.logs.publish: not a boolean (true or false)") from None
        patterns = []
        for text in config.get_multivar("jobs.logs.redact"):
            try:
                patterns.append(re.compile((text or "").encode()))
            except re.error as e:
                raise LogConfigError(f"jobs.logs.redact: invalid pattern {text!r}: {e}") from None
        max_bytes = _int_setting(config, "jobs.logs.maxBytes", DEFAULT_MAX_BYTES)
        if not MIN_MAX_BYTES <= max_bytes <= MAX_MAX_BYTES:
            raise LogConfigError(f"jobs.logs.maxBytes: must be in {MIN_MAX_BYTES}..{MAX_MAX_BYTES}")
        pruned = config["jobs.logs.prunedBefore"] if "jobs.logs.prunedBefore" in config else None  # noqa: SIM401
        if pruned is not None and not BUCKET.fullmatch(pruned):
            raise LogConfigError(f"jobs.logs.prunedBefore: not a month YYYY-MM: {pruned!r}")
        return cls(bool(publish), tuple(patterns), max_bytes, pruned)

    def family(self) -> RefFamily:
        return family(self.pruned_before)


def _int_setting(config: pygit2.Config, name: str, default: int) -> int:
    if name not in config:
        return default
    try:
        return int(config.get_int(name))
    except (pygit2.GitError, ValueError):
        raise LogConfigError(f"{name}: not an integer") from None


def family(pruned_before: str | None = None) -> RefFamily:
    """The ``logs`` ref family sync fetches and pushes beside the job refs. A bucket of a month
    after next is not fetched (no run of it can have finished yet: a hub's junk names), and a
    bucket tip must have a bucket's shape (:func:`bucket_problem`)."""
    return RefFamily(KIND, BUCKET, pruned_before, _next_month(), bucket_problem)


def _next_month() -> str:
    now = datetime.now(UTC)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return f"{year:04d}-{month:02d}"


def bucket_problem(repo: pygit2.Repository, name: str, tip: str) -> str | None:
    """Why ``tip`` may not be the tip of bucket ref ``name``, or None: it must be a log commit
    (message ``Log <run id>`` or ``Log merge``) whose tree has the shape of that month's bucket
    (FORMAT.md 11.4). An index commit or a change signed by the same key is refused."""
    month = name.rsplit("/", 1)[-1]
    try:
        commit = repo[tip]
        message = commit.raw_message if isinstance(commit, pygit2.Commit) else b""
    except (KeyError, ValueError, TypeError, pygit2.GitError):
        message = b""
    text = message.decode("ascii", "replace")
    if not (
        text == MERGE_MESSAGE
        or (
            text.startswith("Log ")
            and _RUN_LEAF.match(text[4:].rstrip("\n"))
            and text.endswith("\n")
            and text.count("\n") == 1
        )
    ):
        return "the tip is not a log bucket commit (an index, a change, or another commit)"
    if _bucket_tree(repo, tip, month) is None:
        return f"the tip's tree is not a log bucket of {month}"
    return None


def family_for(repo: pygit2.Repository) -> RefFamily:
    """The family with this repository's prune point (a bad setting: nothing pruned)."""
    try:
        return LogSettings.load(repo).family()
    except LogConfigError:
        return family()


# -- buckets ---------------------------------------------------------------------------------
def bucket_of(run_id: uuid.UUID | str) -> str:
    """The month (``YYYY-MM``, UTC) of a uuid7 run id's timestamp: its log's bucket."""
    ms = uuid.UUID(str(run_id)).int >> 80
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m")


def bucket_ref(nid: str, bucket: str) -> str:
    return family().ref(nid, bucket)


def entry_path(run_id: uuid.UUID | str) -> tuple[str, str]:
    """(fan-out directory, file name) of a run's log in its bucket's tree."""
    text = str(uuid.UUID(str(run_id)))
    return text[-2:], text


def month_of(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m")


# -- capping and redaction -------------------------------------------------------------------
def cap_marker(total: int, kept_head: int, kept_tail: int) -> bytes:
    omitted = total - kept_head - kept_tail
    return (
        f"\n[git-jobs: log capped: {omitted} of {total} bytes omitted here; the first "
        f"{kept_head} and the last {kept_tail} bytes are kept]\n"
    ).encode()


def cap(data: bytes, max_bytes: int) -> bytes:
    """``data`` if it fits, else its head and tail (half the cap each) around a marker."""
    if len(data) <= max_bytes:
        return data
    head, tail = max_bytes // 2, max_bytes - max_bytes // 2
    return data[:head] + cap_marker(len(data), head, tail) + data[len(data) - tail :]


def redact(data: bytes, patterns: Sequence[re.Pattern[bytes]]) -> bytes:
    for pattern in patterns:
        data = pattern.sub(REDACTED, data)
    return data


# -- publishing ------------------------------------------------------------------------------
def publish(
    repo: pygit2.Repository,
    signer: cob.Signer,
    run_id: uuid.UUID | str,
    data: bytes,
    settings: LogSettings | None = None,
) -> str | None:
    """Publish a run's log in this node's bucket; returns the blob id for the finish op.

    The log is redacted and capped first. None when this node does not publish logs or the
    run's bucket was pruned here (a pruned bucket is never recreated: peers that kept the
    old chain would see it move sideways).
    """
    settings = settings or LogSettings.load(repo)
    bucket = bucket_of(run_id)
    if not settings.publish or settings.family().is_pruned(bucket):
        return None
    body = redact(data, settings.redact)
    if len(body) > settings.max_bytes + CAP_SLACK:  # the node's capture capped it already
        body = cap(body, settings.max_bytes)
    blob = repo.create_blob(body)
    name = bucket_ref(signer.nid, bucket)
    for _ in range(50):  # another process of this node may move the bucket meanwhile
        old = repo.references.get(name)
        old_oid = str(old.target) if old is not None else None
        commit = _bucket_commit(repo, signer, old_oid, run_id, blob)
        if compare_and_swap(repo, name, commit, old_oid, f"git-jobs: log of run {run_id}"):
            return str(blob)
        time.sleep(0.01)
    raise JobsError(f"cannot publish the log of run {run_id}: {name} kept moving")


def _bucket_commit(
    repo: pygit2.Repository, signer: cob.Signer, parent: str | None, run_id: uuid.UUID | str, blob: pygit2.Oid
) -> str:
    root = bucket_with(repo, parent, run_id, blob, _FILEMODE_BLOB)
    ident = pygit2.Signature(signer.nid, signer.nid, int(time.time()), 0)
    parents: list[str | pygit2.Oid] = [pygit2.Oid(hex=parent)] if parent else []
    buffer = cast(str, repo.create_commit_string(ident, ident, f"Log {run_id}\n", root, parents))
    signature = sshsig.sign(signer, buffer.encode())
    return str(repo.create_commit_with_signature(buffer, signature))


def bucket_with(
    repo: pygit2.Repository, parent: str | None, run_id: uuid.UUID | str, entry: pygit2.Oid, mode: int
) -> pygit2.Oid:
    """The tree of bucket commit ``parent`` (or an empty bucket) with ``entry`` (a log blob, an
    artifact tree: ``mode``) under the run's fan-out directory and name."""
    fan, leaf = entry_path(run_id)
    root_tree = repo[parent].peel(pygit2.Tree) if parent else None
    sub_tree = root_tree[fan] if root_tree is not None and fan in root_tree else None
    sub = repo.TreeBuilder(sub_tree) if isinstance(sub_tree, pygit2.Tree) else repo.TreeBuilder()
    sub.insert(leaf, entry, mode)
    root = repo.TreeBuilder(root_tree) if root_tree is not None else repo.TreeBuilder()
    root.insert(fan, sub.write(), _FILEMODE_TREE)
    return root.write()


MERGE_MESSAGE = "Log merge\n"
_RUN_LEAF = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_FAN = re.compile(r"^[0-9a-f]{2}$")


class BucketMergeError(JobsError):
    """Our own log bucket on a remote cannot be merged into ours (it is not a bucket)."""


def merge_own(repo: pygit2.Repository, signer: cob.Signer, name: str, theirs: str) -> bool:
    """Merge our own bucket ``name`` as a remote holds it (``theirs``, signed by us, diverged
    from ours: two copies of this node published logs of one month) into ours: a signed commit
    whose parents are both tips (the remote's first) and whose tree holds every log of both —
    for a run both list, ours. Every peer that took either chain takes it as a fast-forward
    (bucket refs move forward by any parent). False when there is nothing to merge (``theirs``
    is ours already, or behind it). Raises :class:`BucketMergeError`, signing nothing, when
    ``theirs`` is not a log bucket (a hub passing off another commit of ours, e.g. an index)."""
    month = name.rsplit("/", 1)[-1]
    their_tree = _bucket_tree(repo, theirs, month)
    if their_tree is None:
        raise BucketMergeError(f"the remote's {name} is not a log bucket of this node")
    for _ in range(50):  # another process of this node may move the bucket meanwhile
        ref = repo.references.get(name)
        ours = str(ref.target) if ref is not None else None
        if ours is not None and (ours == theirs or cob.refs.is_ancestor(repo, theirs, ours)):
            return False
        mine = _bucket_tree(repo, ours, month) if ours is not None else None
        if ours is not None and mine is None:
            raise BucketMergeError(f"this node's own {name} is not a log bucket: not merged")
        root = repo.TreeBuilder(their_tree)
        for fan, leaves in (_fans(repo, mine) if mine is not None else {}).items():
            theirs_fan = _fans(repo, their_tree).get(fan, {})
            sub = repo.TreeBuilder()
            for leaf, blob in sorted({**theirs_fan, **leaves}.items()):  # ours wins a run both list
                sub.insert(leaf, blob, _FILEMODE_BLOB)
            root.insert(fan, sub.write(), _FILEMODE_TREE)
        ident = pygit2.Signature(signer.nid, signer.nid, int(time.time()), 0)
        parents: list[str | pygit2.Oid] = [theirs, *([ours] if ours else [])]
        buffer = cast(str, repo.create_commit_string(ident, ident, MERGE_MESSAGE, root.write(), parents))
        commit = str(repo.create_commit_with_signature(buffer, sshsig.sign(signer, buffer.encode())))
        if compare_and_swap(repo, name, commit, ours, "git-jobs: merge our log bucket"):
            return True
        time.sleep(0.01)
    raise JobsError(f"cannot merge {name}: it kept moving")


def _bucket_tree(repo: pygit2.Repository, tip: str, month: str) -> pygit2.Tree | None:
    """The tree of log bucket commit ``tip`` when it has the shape of bucket ``month``, else None."""
    return bucket_shape(repo, tip, month, b"Log ", _FILEMODE_BLOB)


def bucket_shape(
    repo: pygit2.Repository, tip: str, month: str, message: bytes, leaf_mode: int
) -> pygit2.Tree | None:
    """The tree of bucket commit ``tip`` when it has the shape of bucket ``month`` — its message
    starts with ``message``; fan-out directories of two hex digits hold entries of ``leaf_mode``
    (log blobs, artifact trees) named by run ids of that month ending in them — else None."""
    try:
        commit = repo[tip]
        if not isinstance(commit, pygit2.Commit) or not commit.raw_message.startswith(message):
            return None
        tree = commit.tree
        for fan in tree:
            sub = repo[fan.id]
            bad_fan = fan.filemode != _FILEMODE_TREE or not _FAN.match(fan.name or "")
            if bad_fan or not isinstance(sub, pygit2.Tree):
                return None
            for leaf in sub:
                name = leaf.name or ""
                if leaf.filemode != leaf_mode or not _RUN_LEAF.match(name) or name[-2:] != fan.name:
                    return None
                if bucket_of(name) != month:
                    return None
        return tree
    except (KeyError, ValueError, TypeError, OverflowError, OSError, pygit2.GitError):
        return None


def _fans(repo: pygit2.Repository, tree: pygit2.Tree) -> dict[str, dict[str, pygit2.Oid]]:
    """{fan-out directory: {run id: blob}} of a bucket tree :func:`_bucket_tree` checked."""
    out: dict[str, dict[str, pygit2.Oid]] = {}
    for fan in tree:
        sub = repo[fan.id]
        if isinstance(sub, pygit2.Tree):
            out[fan.name or ""] = {leaf.name or "": leaf.id for leaf in sub}
    return out


# -- reading ---------------------------------------------------------------------------------
class LogStatus(enum.Enum):
    SHOWN = "shown"  # verified against the signed finish
    RUNNING = "running"  # the run has not finished: no log is published yet
    NOT_PUBLISHED = "not-published"  # the finish names no log (the node does not publish)
    MISSING = "missing"  # not here yet (sync) — or pruned
    PRUNED = "pruned"  # its bucket is older than this repository's prune point
    REFUSED = "refused"  # what is here does not match the signed ledger


@dataclass(slots=True)
class LogRead:
    status: LogStatus
    data: bytes | None = None
    detail: str = ""
    bucket: str = ""
    notes: list[str] = field(default_factory=list)


def read(repo: pygit2.Repository, nid: str, run_id: uuid.UUID | str, run: Run) -> LogRead:
    """A node's published log of one run, verified against ``run`` (its signed finish)."""
    bucket = bucket_of(run_id)
    if run.is_started:
        return LogRead(LogStatus.RUNNING, detail="the run has not finished yet", bucket=bucket)
    if run.log_blob is None:
        return LogRead(LogStatus.NOT_PUBLISHED, detail="its finish names no published log", bucket=bucket)
    got = _verified_blob(repo, run.log_blob)
    if isinstance(got, bytes):
        return LogRead(LogStatus.SHOWN, got, bucket=bucket)
    if got:
        return LogRead(LogStatus.REFUSED, detail=got, bucket=bucket)
    published = _bucket_entry(repo, nid, bucket, run_id)
    if published is not None and published != run.log_blob:
        why = (
            f"the log in {bucket_ref(nid, bucket)} is blob {published[:12]},"
            f" but the signed finish names {run.log_blob[:12]}"
        )
        return LogRead(LogStatus.REFUSED, detail=why, bucket=bucket)
    logs = family_for(repo)
    if logs.is_pruned(bucket):
        why = f"logs before {logs.pruned_before} were pruned in this repository"
        return LogRead(LogStatus.PRUNED, detail=why, bucket=bucket)
    why = "not in this repository: sync to fetch it, or its node has pruned it"
    return LogRead(LogStatus.MISSING, detail=why, bucket=bucket)


def _verified_blob(repo: pygit2.Repository, oid: str) -> bytes | str | None:
    """The blob's bytes after re-hashing them; a reason when it is bad; None when absent."""
    try:
        kind, size = repo.odb.read_header(oid)
    except (KeyError, ValueError):
        return None
    except pygit2.GitError as e:
        return f"the log object is unreadable: {e}"
    if kind != pygit2.enums.ObjectType.BLOB:
        return "the object the signed finish names is not a blob"
    if size > MAX_READ_BYTES:
        return f"the log is {size} bytes, over the {MAX_READ_BYTES}-byte limit a reader inflates"
    try:
        _, data = repo.odb.read(oid)
    except (KeyError, ValueError, pygit2.GitError) as e:
        return f"the log object is unreadable: {e}"
    if str(pygit2.hash(data)) != oid:
        return "the log's bytes do not hash to the blob id the signed finish names"
    return bytes(data)


def _bucket_entry(repo: pygit2.Repository, nid: str, bucket: str, run_id: uuid.UUID | str) -> str | None:
    """The blob id a bucket lists for a run (what a peer published), or None."""
    ref = repo.references.get(bucket_ref(nid, bucket))
    if ref is None:
        return None
    fan, leaf = entry_path(run_id)
    try:
        tree = repo[ref.target].peel(pygit2.Tree)
        return str(tree[f"{fan}/{leaf}"].id)
    except (KeyError, ValueError, pygit2.GitError):
        return None


# -- pruning ---------------------------------------------------------------------------------
def prune(repo: pygit2.Repository, older_than: float, now: float | None = None) -> tuple[str, list[str]]:
    """Drop every node's log buckets whose whole month is older than ``older_than`` seconds.

    Returns (the new prune point, the refs deleted). The point only moves forward and is kept
    in ``jobs.logs.prunedBefore``: sync neither fetches those buckets again nor keeps pushing
    ours (it deletes them on the remotes). The signed ledger is untouched: finishes keep their
    blob ids, and a reader says the log was pruned.
    """
    point = month_of((time.time() if now is None else now) - older_than)
    current = LogSettings.load(repo).pruned_before
    if current is not None and current > point:
        point = current
    repo.config["jobs.logs.prunedBefore"] = point
    gone = []
    for name in sorted(family_refs(repo, family(point))):
        leaf = name.rsplit("/", 1)[1]
        if leaf < point:
            repo.references.delete(name)
            gone.append(name)
    return point, gone


# -- finding the run a user means ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Located:
    """One run of one node: what ``git jobs logs SPEC [--node N]`` shows."""

    job: Job
    nid: str
    run_id: uuid.UUID
    run: Run


def locate(jobs: Jobs, spec: str, node: str | None = None) -> Located:
    """The run ``spec`` names: a run id (or unique prefix), a job id (prefix) or ``REV:NAME``.

    For a job, its latest run — of ``node`` when given (a NID, ``did:key:`` form or unique
    prefix of a node with runs in that job), else of any node.
    """
    text = spec.strip()
    if ":" not in text:
        wanted = text.lower().replace("-", "")
        if not wanted or any(c not in "0123456789abcdef" for c in wanted):
            raise UnknownRunError(f"not a run id, job id or REV:NAME: {text!r}")
        prefix = run_prefix(wanted)
        runs = _runs_by_prefix(jobs, prefix) if prefix is not None else []
        job_ids = jobs.store.resolve_prefix(JOB_TYPE, wanted) if "-" not in text else []
        if runs and job_ids:
            raise AmbiguousJobError(f"{text!r} is both a run id prefix and a job id prefix")
        if node is not None:  # another node may reuse a run id: --node says whose
            runs = [r for r in runs if r.nid == _node_of(r.job, node)] or runs
        if len(runs) > 1:
            shown = ", ".join(str(r.run_id) for r in runs[:5])
            raise AmbiguousJobError(f"run prefix {text!r} is ambiguous: {shown}")
        if runs:
            found = runs[0]
            if node is not None and found.nid != _node_of(found.job, node):
                raise UnknownRunError(f"run {found.run_id} is not a run of node {node}")
            return found
        if "-" in text or len(wanted) == 32:
            raise UnknownRunError(f"no run {text!r} in this repository (sync to fetch other nodes' runs)")
    job = jobs.get(jobs.resolve(text))
    if job is None:
        raise UnknownJobError(f"no job {text!r}")
    return _latest(job, node)


def _latest(job: Job, node: str | None) -> Located:
    if node is not None:
        nid = _node_of(job, node)
        latest = job.latest_of(nid)
        if latest is None:
            raise UnknownRunError(f"job {job.name} at {job.commit[:12]} has no run of node {nid}")
        return Located(job, nid, latest[0], latest[1])
    best = job.latest()
    if best is None:
        raise UnknownRunError(f"job {job.name} at {job.commit[:12]} has no runs yet")
    return Located(job, best[0], best[1], best[2])


def _node_of(job: Job, node: str) -> str:
    text = node.strip()
    text = text[len("did:key:") :] if text.startswith("did:key:") else text
    nodes = job.nodes()
    if text in nodes:
        return text
    matches = [n for n in nodes if n.startswith(text)] if text else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise AmbiguousJobError(f"node prefix {node!r} is ambiguous in job {job.id[:12]}")
    raise UnknownRunError(f"node {node!r} has no run of job {job.name} at {job.commit[:12]}")


def _runs_by_prefix(jobs: Jobs, wanted: str) -> list[Located]:
    """Every run (any node, any job) whose undashed id starts with ``wanted``.

    A scan of every job's folded state (cached by the index): run ids are not indexed."""
    return [Located(job, *found) for job in jobs.all() for found in job.runs_by_prefix(wanted)]
