"""Attestations in the library (issue 28): the DSSE encoding, and the binding to the finish.

An exported attestation is the envelope embedded in the run's winning finish change, and only
when it verifies under that finish's signer and names that run, job and commit: a node (or a
buggy writer) that embeds another key's envelope, or one about another run, exports nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pygit2
import pytest

import cob
import jobs
from jobs.model import Evidence
from jobs.provenance import ATTESTATION_EMBED, dsse
from jobs.provenance.attest import AttestationError, RunFacts, encode, published, statement, verify

OUTPUTS = "4b825dc642cb6eb9a060e54bf8d69288fe6b5a4f"  # any tree id: the finish's claim
SUBJECT = [{"name": "dist/a.txt", "digest": {"sha256": "ab" * 32}}]


def test_pae_is_the_dsse_v1_encoding() -> None:
    # The example of the DSSE protocol document.
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    signer = cob.Signer.generate()
    env = dsse.sign(signer, b"{}")
    again = dsse.parse(env.to_bytes())
    assert again == env and again.signed_by([signer.nid]) == signer.nid
    assert again.signed_by([cob.Signer.generate().nid]) is None
    # URL-safe, unpadded base64 is accepted as DSSE allows; junk is one error, never a crash.
    doc = json.loads(env.to_bytes())
    sig = doc["signatures"][0]["sig"]
    doc["signatures"][0]["sig"] = sig.replace("+", "-").replace("/", "_").rstrip("=")  # 64 bytes: "=="
    assert dsse.parse(json.dumps(doc).encode()).signed_by([signer.nid]) == signer.nid
    for junk in (b"", b"[]", b'{"payload":1,"payloadType":"x","signatures":[]}', b"\xff" * 10):
        with pytest.raises(dsse.EnvelopeError):
            dsse.parse(junk)


def _facts(nid: str, job: jobs.Job, run_id: uuid.UUID | str) -> RunFacts:
    now = datetime.now(UTC)
    return RunFacts(nid, job.id, job.commit, job.name, str(run_id), now, now, Evidence(outputs=OUTPUTS), None)


def _finish(
    store: jobs.Jobs, name: str, envelope: Callable[[jobs.Job, uuid.UUID], bytes | None]
) -> tuple[jobs.Job, uuid.UUID]:
    """A run of job ``name`` finished with outputs and the envelope ``envelope(job, run)`` makes."""
    job = store.create(str(store.repo.head.target), name)
    run_id = job.run("https://ci.example/1")
    job.finish(run_id, "succeeded", evidence=Evidence(outputs=OUTPUTS), attestation=envelope(job, run_id))
    done = store.get(job.id)
    assert done is not None
    return done, run_id


def test_an_embedded_envelope_exports_only_under_its_finishs_signer_and_run(repo: pygit2.Repository) -> None:
    node = cob.Signer.generate()
    store = jobs.Jobs(cob.Store(repo, node))
    job = store.create(str(repo.head.target), "build")
    run_id = job.run("https://ci.example/1")
    good = dsse.sign(node, encode(statement(_facts(node.nid, job, run_id), SUBJECT))).to_bytes()
    job.finish(run_id, "succeeded", evidence=Evidence(outputs=OUTPUTS), attestation=good)
    done = store.get(job.id)
    assert done is not None
    change = done.finish_change(node.nid, run_id)
    assert change is not None and ATTESTATION_EMBED in repo[change].tree["embeds"].peel(pygit2.Tree)
    assert published(repo, done, node.nid, run_id) == good
    assert verify(good, [node.nid]).run_id == str(run_id)

    # Another key's envelope, embedded by the node in its own signed finish: not exported.
    other = cob.Signer.generate()
    job2, run2 = _finish(
        store,
        "b",
        lambda j, r: dsse.sign(other, encode(statement(_facts(node.nid, j, r), SUBJECT))).to_bytes(),
    )
    with pytest.raises(AttestationError, match="no valid signature"):
        published(repo, job2, node.nid, run2)

    # The node's own envelope about another run: not exported either.
    job3, run3 = _finish(
        store,
        "c",
        lambda j, r: dsse.sign(node, encode(statement(_facts(node.nid, done, run_id), SUBJECT))).to_bytes(),
    )
    with pytest.raises(AttestationError, match="names another run"):
        published(repo, job3, node.nid, run3)

    # A finish with outputs but no envelope (a node before attestations): said so.
    job4, run4 = _finish(store, "d", lambda j, r: None)
    with pytest.raises(AttestationError, match="its node signed none"):
        published(repo, job4, node.nid, run4)
