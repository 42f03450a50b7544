"""A node's attestation of a run: an in-toto Statement v1 with a SLSA Provenance v1 predicate.

A node signs one when it finishes a run that **kept outputs** (a pass of a job with
``outputs``): the subjects are the kept files, each with its sha256; the predicate names the
builder (``did:key:<NID>``), the commit, the definitions blob, the policy tip, the commit's
tree, the run id and its start and end, the log blob and the outputs tree. The DSSE envelope
(:mod:`.dsse`) travels as an embed of the node's signed ``finish`` change (FORMAT.md 11.5), so
it is bound to that finish, reaches every peer with the job, and any peer exports it later
(:func:`published`). :func:`verify` checks an envelope offline against given NIDs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pygit2

import cob

from .. import paths
from ..errors import JobsError
from ..model import Evidence, Job
from . import ATTESTATION_EMBED, dsse

if TYPE_CHECKING:
    from ..store import Jobs

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://gitjobs.dev/provenance/job/v1"
MAX_SUBJECTS = 4096  # kept files one attestation names (more: no attestation, the log says so)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1024 * 1024


class AttestationError(JobsError):
    """No attestation to export, or one that does not verify (the message says why)."""


def builder_id(nid: str) -> str:
    """The SLSA builder id of a node: its NID as a ``did:key`` URI."""
    return f"did:key:{nid}"


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def subjects(root: Path) -> list[dict[str, Any]] | None:
    """The regular files under ``root`` (links are not followed, nor named), sorted by path,
    as in-toto subjects with their sha256; None when there are more than MAX_SUBJECTS."""
    found: list[dict[str, Any]] = []
    for dirpath, dirs, names in os.walk(root):
        dirs.sort()
        for name in names:
            path = os.path.join(dirpath, name)
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            if len(found) >= MAX_SUBJECTS:
                return None
            rel = PurePosixPath(*Path(os.path.relpath(path, root)).parts).as_posix()
            found.append({"name": rel, "digest": {"sha256": _sha256(path)}})
    return sorted(found, key=lambda s: str(s["name"]))


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What the statement says of one run (all from the node's own ledger and evidence)."""

    nid: str
    job_id: str
    commit: str
    job: str
    run_id: str
    started: datetime
    finished: datetime
    evidence: Evidence
    log_blob: str | None


def statement(facts: RunFacts, subject: list[dict[str, Any]]) -> dict[str, Any]:
    """The in-toto Statement v1 with its SLSA Provenance v1 predicate (docs/PROVENANCE.md)."""
    ev = facts.evidence
    deps: list[dict[str, Any]] = [{"name": "commit", "digest": {"gitCommit": facts.commit}}]
    if ev.tree:
        deps.append({"name": "tree", "digest": {"gitTree": ev.tree}})
    if ev.defs:
        deps.append({"name": ".git-jobs.toml", "digest": {"gitBlob": ev.defs}})
    if ev.policy:
        deps.append({"name": "policy", "digest": {"gitCommit": ev.policy}})
    byproducts: list[dict[str, Any]] = []
    if facts.log_blob:
        byproducts.append({"name": "log", "digest": {"gitBlob": facts.log_blob}})
    if ev.outputs:
        byproducts.append({"name": "outputs", "digest": {"gitTree": ev.outputs}})
    internal: dict[str, Any] = {"jobId": facts.job_id}
    if ev.env:
        internal["env"] = dict(sorted(ev.env.items()))
    return {
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"commit": facts.commit, "job": facts.job},
                "internalParameters": internal,
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": builder_id(facts.nid)},
                "metadata": {
                    "invocationId": facts.run_id,
                    "startedOn": _rfc3339(facts.started),
                    "finishedOn": _rfc3339(facts.finished),
                },
                "byproducts": byproducts,
            },
        },
    }


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign_finish(
    jobs: Jobs, job: Job, run_id: uuid.UUID | str, evidence: Evidence, log_blob: str | None
) -> bytes | None:
    """The envelope a node embeds in the finish of ``run_id`` (the node's hook, at finish);
    None when the run kept no outputs (nothing to attest) or they are more than it names."""

    signer, repo = jobs.signer, jobs.repo
    if not evidence.outputs or signer is None:
        return None
    run = job.runs_of(signer.nid).get(uuid.UUID(str(run_id)))
    if run is None:
        return None
    try:
        subject = subjects(paths.outputs_dir(repo, job.commit, job.name))
    except (OSError, ValueError):  # an output unreadable now: the finish matters more
        return None
    if not subject:
        return None
    facts = RunFacts(
        signer.nid,
        job.id,
        job.commit,
        job.name,
        str(run_id),
        run.started_at,
        datetime.now(UTC),
        evidence,
        log_blob,
    )
    return dsse.sign(signer, encode(statement(facts, subject))).to_bytes()


def published(repo: pygit2.Repository, job: Job, nid: str, run_id: uuid.UUID | str) -> bytes:
    """The envelope node ``nid`` embedded in its (verified, winning) finish of ``run_id``.

    The finish change was verified when the job was folded; the envelope is checked again
    (signed by ``nid``, naming this run, job and commit) so that what is exported verifies."""
    run = job.runs_of(nid).get(uuid.UUID(str(run_id)))
    if run is None or run.is_started:
        raise AttestationError(f"run {run_id} of node {nid} has not finished: nothing is attested yet")
    change = job.finish_change(nid, run_id)
    data = _embed(repo, change) if change else None
    if data is None:
        why = "it kept no outputs" if not (run.evidence and run.evidence.outputs) else "its node signed none"
        raise AttestationError(f"run {run_id} of node {nid} has no attestation: {why}")
    checked = verify(data, [nid])
    facts = (checked.run_id, checked.commit, checked.job)
    if facts != (str(run_id), job.commit, job.name):
        raise AttestationError(f"the attestation in the finish of run {run_id} names another run or job")
    return data


def _embed(repo: pygit2.Repository, change: str) -> bytes | None:
    try:
        commit = repo[change]
        if not isinstance(commit, pygit2.Commit):
            return None
        entry = commit.tree["embeds"]
        embeds = repo[entry.id]
        if not isinstance(embeds, pygit2.Tree) or ATTESTATION_EMBED not in embeds:
            return None
        oid = embeds[ATTESTATION_EMBED].id
        _, size = repo.odb.read_header(oid)
        if size > dsse.MAX_ENVELOPE_BYTES:
            raise AttestationError(f"the attestation in change {change[:12]} is too big ({size} bytes)")
        _, data = repo.odb.read(oid)
        return bytes(data)
    except (KeyError, ValueError, pygit2.GitError):
        return None


# -- verification ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Verified:
    signer: str
    commit: str
    job: str
    run_id: str
    subjects: list[tuple[str, str]]  # (name, sha256)
    statement: dict[str, Any]


def _get(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            raise AttestationError(f"not a git-jobs provenance statement: no {'.'.join(path)}")
        doc = doc[key]
    return doc


def _str(doc: Any, *path: str) -> str:
    value = _get(doc, *path)
    if not isinstance(value, str):
        raise AttestationError(f"not a git-jobs provenance statement: {'.'.join(path)} is not a string")
    return value


def verify(data: bytes, trusted: list[str], outputs: Path | None = None) -> Verified:
    """Check an envelope offline: a valid Ed25519 signature over the PAE by one of ``trusted``
    (NIDs), an in-toto Statement v1 of SLSA Provenance v1 whose builder is that node, and, with
    ``outputs``, every subject's sha256 against the file of that name under it."""
    try:
        nids = [cob.normalize_nid(n.strip()) for n in trusted]
    except cob.InvalidNidError as e:
        raise AttestationError(str(e)) from None
    if not nids:
        raise AttestationError("give the node ids (--trusted NID) whose signature counts")
    try:
        env = dsse.parse(data)
    except dsse.EnvelopeError as e:
        raise AttestationError(str(e)) from None
    if env.payload_type != dsse.INTOTO_PAYLOAD_TYPE:
        raise AttestationError(f"the envelope's payloadType is not {dsse.INTOTO_PAYLOAD_TYPE}")
    signer = env.signed_by(nids)
    if signer is None:
        raise AttestationError(
            "no valid signature by a trusted node: the envelope was changed or another key signed it"
        )
    try:
        doc = json.loads(env.payload)
    except (ValueError, RecursionError):
        raise AttestationError("the signed payload is not JSON") from None
    if _get(doc, "_type") != STATEMENT_TYPE or _get(doc, "predicateType") != PREDICATE_TYPE:
        raise AttestationError(f"not an in-toto Statement v1 of {PREDICATE_TYPE}")
    builder = _str(doc, "predicate", "runDetails", "builder", "id")
    if builder != builder_id(signer):
        raise AttestationError(f"signed by {signer} but it names another builder")
    found = _subjects(_get(doc, "subject"))
    if outputs is not None:
        _check_outputs(outputs, found)
    return Verified(
        signer,
        _str(doc, "predicate", "buildDefinition", "externalParameters", "commit"),
        _str(doc, "predicate", "buildDefinition", "externalParameters", "job"),
        _str(doc, "predicate", "runDetails", "metadata", "invocationId"),
        found,
        doc,
    )


def _subjects(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, list) or not value:
        raise AttestationError("the statement names no subject")
    out = []
    for s in value:
        name = s.get("name") if isinstance(s, dict) else None
        digest = s.get("digest") if isinstance(s, dict) else None
        sha = digest.get("sha256") if isinstance(digest, dict) else None
        if not isinstance(name, str) or not isinstance(sha, str) or not _SHA256.match(sha):
            raise AttestationError("a subject has no name or no sha256 digest")
        out.append((name, sha))
    return out


def _check_outputs(root: Path, found: list[tuple[str, str]]) -> None:
    from ..text import safe

    base = os.path.realpath(root)
    if not os.path.isdir(base):
        raise AttestationError(f"--outputs {root}: not a directory")
    for name, sha in found:
        p = PurePosixPath(name)
        if p.is_absolute() or ".." in p.parts or "\0" in name:
            raise AttestationError(f"subject {safe(name)!r} is not a path inside the outputs directory")
        path = os.path.join(base, *p.parts)
        real = os.path.realpath(path)
        if not real.startswith(base + os.sep) or not os.path.isfile(real):
            raise AttestationError(f"{safe(name)}: not in {root}")
        try:
            got = _sha256(real)
        except OSError as e:
            raise AttestationError(f"{safe(name)}: {e.strerror or e}") from None
        if got != sha:
            raise AttestationError(f"{safe(name)}: its sha256 is not the one attested")
