"""Issue 28 through the installed CLI: attestations (in-toto / SLSA in DSSE) and offline bundles.

A node runs a job that keeps outputs and signs its attestation with the finish; a maintainer's
clone takes it with `git jobs sync`, exports it, and anyone verifies it elsewhere with only
the node's NID. A bundle made on the clone gives the same gate in an empty directory, and a
bundle with a byte changed is refused with one line.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import pygit2
import pytest

import cob
from tests.clirunner import gj, ok, user_error
from tests.conftest import git

DEFS = """[policy]
nodes = {{ "{nid}" = "alice" }}

[jobs.build]
run = "mkdir -p dist/sub && echo hello > dist/app.txt && echo more > dist/sub/b.txt && echo built"
outputs = ["dist/"]

[jobs.check]
run = "echo checked"
needs = ["build"]
"""


@dataclass
class Evidence:
    node: Path  # the node's clone, where it ran the jobs
    maint: Path  # a maintainer's clone that synced from the node
    key: Path
    nid: str
    commit: str
    outputs: Path  # the files as the build wrote them (what a user would hold)


@pytest.fixture
def evidence(tmp_path: Path) -> Evidence:
    signer = cob.Signer.generate()
    key = tmp_path / "alice.key"
    signer.save(key)
    node = tmp_path / "node"
    node.mkdir()
    git(node, "init", "-q")
    (node / ".git-jobs.toml").write_text(DEFS.format(nid=signer.nid))
    git(node, "add", ".git-jobs.toml")
    git(node, "commit", "-q", "-m", "build things")
    commit = git(node, "rev-parse", "HEAD").strip()
    ok(node, "work", "any", key=key)
    maint = tmp_path / "maint"
    git(tmp_path, "clone", "-q", str(node), str(maint))
    ok(maint, "sync", "origin")
    outputs = tmp_path / "downloaded"
    (outputs / "dist" / "sub").mkdir(parents=True)
    (outputs / "dist" / "app.txt").write_text("hello\n")
    (outputs / "dist" / "sub" / "b.txt").write_text("more\n")
    return Evidence(node, maint, key, signer.nid, commit, outputs)


def _one_error(result: object) -> str:
    lines = result.err.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("error: "), result
    return lines[0]


# -- attestations ------------------------------------------------------------------------------
@pytest.mark.slow
def test_an_attestation_made_on_a_node_verifies_elsewhere_with_only_its_nid(
    evidence: Evidence, tmp_path: Path
) -> None:
    # The node's own export and the maintainer's (synced) export are the same signed bytes.
    mine = tmp_path / "node.json"
    ok(evidence.node, "attest", evidence.commit, "--job", "build", "-o", str(mine))
    theirs = ok(evidence.maint, "attest", evidence.commit[:12], "--job", "build", "--node", "alice")
    assert theirs.out.encode() == mine.read_bytes()
    shown = ok(evidence.maint, "show", f"{evidence.commit}:build", "--json").json
    by_run = ok(evidence.maint, "attest", shown["runs"][0]["id"][:13])  # a run id prefix
    assert by_run.out == theirs.out
    statement = json.loads(base64.b64decode(json.loads(mine.read_bytes())["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert [s["name"] for s in statement["subject"]] == ["dist/app.txt", "dist/sub/b.txt"]
    run = statement["predicate"]["runDetails"]
    assert run["builder"]["id"] == f"did:key:{evidence.nid}"
    assert {"startedOn", "finishedOn", "invocationId"} <= run["metadata"].keys()
    deps = {d["name"]: d["digest"] for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["commit"] == {"gitCommit": evidence.commit}
    defs = pygit2.Repository(str(evidence.node))[evidence.commit].tree[".git-jobs.toml"].id
    assert deps[".git-jobs.toml"] == {"gitBlob": str(defs)}
    assert deps["policy"] == {"gitCommit": evidence.commit}  # main's tip: the commit itself
    # Elsewhere: no repository, no network, only the NID (did:key form accepted too).
    away = tmp_path / "airgap"
    away.mkdir()
    (away / "a.json").write_bytes(mine.read_bytes())
    got = ok(away, "attest", "--verify", "a.json", "--trusted", f"did:key:{evidence.nid}")
    assert got.line.startswith("verified: 2 subject(s) of job 'build'") and evidence.nid in got.line
    with_files = ok(
        away, "attest", "--verify", "a.json", "--trusted", evidence.nid, "--outputs", str(evidence.outputs)
    )
    assert "2 output file(s) match" in with_files.line
    as_json = ok(away, "attest", "--verify", "a.json", "--trusted", evidence.nid, "--json").json
    assert as_json["signer"] == evidence.nid and as_json["commit"] == evidence.commit


@pytest.mark.slow
def test_a_changed_byte_in_envelope_statement_or_output_fails(evidence: Evidence, tmp_path: Path) -> None:
    data = ok(evidence.maint, "attest", evidence.commit, "--job", "build").out.encode()
    doc = json.loads(data)

    def verdict(blob: bytes, *extra: str) -> str:
        path = tmp_path / "x.json"
        path.write_bytes(blob)
        result = gj(tmp_path, "attest", "--verify", str(path), "--trusted", evidence.nid, *extra)
        assert result.code == 1, result
        return _one_error(result)

    # A byte of the signature.
    sig = bytearray(base64.b64decode(doc["signatures"][0]["sig"]))
    sig[5] ^= 1
    forged = dict(doc, signatures=[{"keyid": evidence.nid, "sig": base64.b64encode(bytes(sig)).decode()}])
    assert "no valid signature" in verdict(json.dumps(forged).encode())
    # A byte of the statement: one digest's hex digit (the payload re-encoded, unsigned).
    payload = bytearray(base64.b64decode(doc["payload"]))
    at = payload.index(b'"sha256":"') + len(b'"sha256":"')
    payload[at] = ord("0") if payload[at] != ord("0") else ord("1")
    changed = dict(doc, payload=base64.b64encode(bytes(payload)).decode())
    assert "no valid signature" in verdict(json.dumps(changed).encode())
    # A byte of the envelope's JSON itself.
    assert "not" in verdict(data.replace(b'"payloadType"', b'"payloadTypf"'))
    # A byte of an output.
    (evidence.outputs / "dist" / "sub" / "b.txt").write_text("mord\n")
    line = verdict(data, "--outputs", str(evidence.outputs))
    assert "dist/sub/b.txt: its sha256 is not the one attested" in line
    (evidence.outputs / "dist" / "sub" / "b.txt").unlink()
    assert "dist/sub/b.txt: not in" in verdict(data, "--outputs", str(evidence.outputs))
    # Another node's key is not the signer's.
    other = cob.Signer.generate().nid
    result = gj(tmp_path, "attest", "--verify", str(tmp_path / "x.json"), "--trusted", other)
    assert result.code == 1 and "no valid signature" in _one_error(result)


def test_a_third_party_dsse_verifier_accepts_the_envelope(evidence: Evidence) -> None:
    dsse = pytest.importorskip("securesystemslib.dsse")
    signer_mod = pytest.importorskip("securesystemslib.signer")
    data = ok(evidence.maint, "attest", evidence.commit, "--job", "build").out
    envelope = dsse.Envelope.from_dict(json.loads(data))
    key = signer_mod.SSlibKey(
        evidence.nid, "ed25519", "ed25519", {"public": cob.public_key_from_nid(evidence.nid).hex()}
    )
    assert list(envelope.verify([key], 1)) == [evidence.nid]
    assert envelope.payload_type == "application/vnd.in-toto+json"
    other = cob.Signer.generate()
    wrong = signer_mod.SSlibKey(
        evidence.nid, "ed25519", "ed25519", {"public": cob.public_key_from_nid(other.nid).hex()}
    )
    errors = pytest.importorskip("securesystemslib.exceptions")
    with pytest.raises(errors.VerificationError):
        envelope.verify([wrong], 1)


@pytest.mark.slow
def test_attest_says_in_one_line_when_there_is_nothing_to_export(evidence: Evidence, tmp_path: Path) -> None:
    line = user_error(evidence.maint, "attest", evidence.commit, "--job", "check")
    assert "has no attestation: it kept no outputs" in line
    assert "no job" in user_error(evidence.maint, "attest", evidence.commit, "--job", "nope")
    assert "--trusted" in user_error(tmp_path, "attest", "--verify", "x.json")
    assert "cannot read" in user_error(
        tmp_path, "attest", "--verify", "missing.json", "--trusted", evidence.nid
    )


# -- bundles ----------------------------------------------------------------------------------
def _no_network_env(home: Path) -> dict[str, str]:
    """An empty home and no transport but local files: nothing could reach a network."""
    home.mkdir()
    return {"HOME": str(home), "GIT_ALLOW_PROTOCOL": "file", "XDG_CONFIG_HOME": str(home / ".config")}


@pytest.mark.slow
def test_a_bundle_made_on_the_maintainers_clone_reproduces_the_verdict_in_an_empty_directory(
    evidence: Evidence, tmp_path: Path
) -> None:
    shown = gj(evidence.maint, "status", evidence.commit)
    assert shown.code == 0 and "succeeded" in shown.out
    made = ok(evidence.maint, "bundle", evidence.commit, "-o", str(tmp_path / "evidence.bundle"))
    assert "1 node index(es), 1 log bucket(s)" in made.err
    git(evidence.node, "bundle", "verify", "-q", str(tmp_path / "evidence.bundle"))  # a standard git bundle
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "evidence.bundle").write_bytes((tmp_path / "evidence.bundle").read_bytes())
    env = _no_network_env(tmp_path / "nohome")
    got = gj(empty, "verify", "--bundle", "evidence.bundle", evidence.commit, **env)
    assert got.code == shown.code, got
    status_lines = shown.out.splitlines()
    assert got.out.splitlines()[: len(status_lines)] == status_lines  # verdict, nodes, log URLs
    tail = got.out.splitlines()[len(status_lines) :]
    assert tail == [
        "evidence bundle: intact; 1 node index(es) and 1 log bucket(s) signed by their nodes;"
        " 2 log(s) and 1 attestation(s) verified against the signed finishes"
    ]
    assert sorted(p.name for p in empty.iterdir()) == ["evidence.bundle"]  # nothing left behind
    # REV may be left out, or given as a prefix; another commit is refused.
    assert gj(empty, "verify", "--bundle", "evidence.bundle", **env).out == got.out
    wrong = user_error(empty, "verify", "--bundle", "evidence.bundle", "0123abcd", **env)
    assert f"holds the evidence of commit {evidence.commit}" in wrong
    as_json = ok(empty, "verify", "--bundle", "evidence.bundle", "--json", **env).json
    assert as_json["bundle"]["attestations_verified"] == 1 and as_json["commit"] == evidence.commit


@pytest.mark.slow
def test_a_tampered_bundle_is_refused_with_one_clear_line(evidence: Evidence, tmp_path: Path) -> None:
    bundle = tmp_path / "evidence.bundle"
    git(evidence.maint, "worktree", "add", "-q", str(tmp_path / "linked"))  # made from a worktree
    ok(tmp_path / "linked", "bundle", evidence.commit, "-o", str(bundle))
    data = bundle.read_bytes()
    pack = data.index(b"PACK")
    header = data[:pack].decode()
    at_ref = header.index("refs/namespaces/") + len("refs/namespaces/z6Mk")
    at_oid = header.index("\n", header.index("\n") + 1) + 5  # a hex digit of the second ref's oid
    at_policy_name = header.index("refs/git-jobs-evidence/policy") + 20
    places = {
        "a ref name": at_ref,
        "an object id": at_oid,
        "the policy ref's name": at_policy_name,
        "the pack's header": pack + 6,
        "the pack's middle": (pack + len(data)) // 2,
        "the pack's checksum": len(data) - 3,
    }
    empty = tmp_path / "empty"
    empty.mkdir()
    env = _no_network_env(tmp_path / "nohome")
    (empty / "t.bundle").write_bytes(data)
    assert "evidence bundle: intact" in ok(empty, "verify", "--bundle", "t.bundle", **env).out  # as made
    letter = next(i for i in range(at_oid, pack) if data[i] in b"abcdef")  # git reads "A" as "a"
    places["an object id's case"] = letter
    places["the version (v2 to v3, which git also reads)"] = data.index(b"2")
    for where, i in places.items():
        changed = bytearray(data)
        changed[i] ^= 0x20 if where == "an object id's case" else 0x01
        (empty / "t.bundle").write_bytes(bytes(changed))
        line = user_error(empty, "verify", "--bundle", "t.bundle", **env)
        assert line.startswith("error: refused t.bundle: "), (where, line)
    (empty / "t.bundle").write_bytes(data[: len(data) - 40])
    assert "do not unpack intact" in user_error(empty, "verify", "--bundle", "t.bundle", **env)
    (empty / "t.bundle").write_bytes(data[: pack // 2])
    assert user_error(empty, "verify", "--bundle", "t.bundle", **env).startswith("error: refused")
    (empty / "t.bundle").write_bytes(b"not a bundle\n")
    assert "not an intact git bundle" in user_error(empty, "verify", "--bundle", "t.bundle", **env)
    assert "cannot read" in user_error(empty, "verify", "--bundle", "missing.bundle", **env)
    # A plain git bundle (not an evidence bundle) is refused too.
    git(evidence.node, "bundle", "create", "-q", str(empty / "plain.bundle"), "main")
    assert "not a git-jobs evidence bundle" in user_error(empty, "verify", "--bundle", "plain.bundle", **env)
