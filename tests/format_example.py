"""Write section 12 of docs/FORMAT.md (the worked example) from the library itself.

    python -m tests.format_example > /tmp/section.md   # then paste it over section 12

Every format change regenerates it, so the example is always bytes the code really writes;
``tests/test_cob_changes.py`` checks the pasted bytes (oids, signatures, the log blob).
A fresh key each time: the NID and signatures change, the job id never does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pygit2
import uuid6

import cob
import jobs
from jobs import logs
from jobs.jobtype import JOB_TYPE
from jobs.model import Evidence
from jobs.ops import Release, Request

COMMIT = "5012552ee0a40e8a9b26d3e5b8c70219092edfcd"
LOG = b"$ make test\nall 12 tests passed\n"
DEFS = b'[jobs.ci]\nrun = "make test"\noutputs = ["dist/"]\n'
ENV = {"arch": "x86_64", "labels": "linux,x86_64", "os": "linux"}


def evidence(repo: pygit2.Repository) -> Evidence:
    """What the run ran under: the commit's tree (its definitions file and a Makefile), the
    definitions blob, the policy tip (here the commit itself), and the outputs tree
    (``dist/app.txt``), each written into the repository so that it can be shown."""
    defs = repo.create_blob(DEFS)
    top = repo.TreeBuilder()
    top.insert(".git-jobs.toml", defs, pygit2.enums.FileMode.BLOB)
    make = repo.create_blob(b"test:\n\t@echo all 12 tests passed\n")
    top.insert("Makefile", make, pygit2.enums.FileMode.BLOB)
    dist = repo.TreeBuilder()
    dist.insert("app.txt", repo.create_blob(b"app 1.0\n"), pygit2.enums.FileMode.BLOB)
    outputs = repo.TreeBuilder()
    outputs.insert("dist", dist.write(), pygit2.enums.FileMode.TREE)
    return Evidence(str(defs), COMMIT, str(top.write()), str(outputs.write()), ENV)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def cat(cwd: Path, what: str, shown: str | None = None) -> str:
    """``$ git cat-file -p SHOWN`` and what it prints (``shown``: the abbreviated spelling)."""
    return f"$ git cat-file -p {shown or what}\n{git(cwd, 'cat-file', '-p', what)}"


def signature_dump(cwd: Path, oid: str) -> str:
    """The base64-decoded SSHSIG of a commit as `xxd` prints it, with the fields named."""
    import base64

    raw = git(cwd, "cat-file", "commit", oid)
    armored = raw.split("-----BEGIN SSH SIGNATURE-----", 1)[1].split("-----END SSH SIGNATURE-----")[0]
    blob = base64.b64decode("".join(line.strip() for line in armored.splitlines()))
    notes = {
        0: "magic, version 1, len 51",
        1: '"ssh-ed25519", len 32',
        2: "public key (the NID's",
        3: "  32 bytes)",
        4: '"git", "", len 6',
        5: '"sha512", len 83, len 11',
        6: '"ssh-ed25519", len 64',
        7: "Ed25519 signature",
    }
    lines = []
    for i in range(0, len(blob), 16):
        chunk = blob[i : i + 16]
        hexes = " ".join(chunk[j : j + 2].hex() for j in range(0, len(chunk), 2))
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        note = notes.get(i // 16, "")
        lines.append(f"{i:08x}: {hexes:<39}  {text:<16}   {note}".rstrip())
    return (
        f"The signature blob of that change, base64-decoded ({len(blob)} bytes):\n\n```\n"
        + "\n".join(lines)
        + "\n```\n"
    )


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        repo_dir = Path(tmp) / "repo"
        git(Path(tmp), "init", "-q", str(repo_dir))
        signer = cob.Signer.generate()
        store = jobs.Jobs.open(repo_dir, signer=signer)
        ev = store.store.create(JOB_TYPE, [Request(COMMIT, "ci")], then=[Release()])
        job = store.get_mut(ev.object_id)
        run_id = uuid6.uuid7()
        job.run(f"git-jobs://{signer.nid}/{run_id}", run_id=run_id)
        blob = logs.publish(store.repo, signer, run_id, LOG)
        job.finish(run_id, "succeeded", log_blob=blob, exit_status=0, evidence=evidence(store.repo))
        sys.stdout.write(render(repo_dir, signer, ev.object_id, str(run_id), blob or ""))
    return 0


def render(repo: Path, signer: cob.Signer, job_id: str, run_id: str, blob: str) -> str:
    nid = signer.nid
    refs = git(repo, "for-each-ref", "refs/namespaces")
    index = next(line.split()[0] for line in refs.splitlines() if line.endswith("/refs/sigrefs"))
    bucket_ref = next(line.split()[0] for line in refs.splitlines() if "/refs/logs/" in line)
    entries = git(repo, "ls-tree", "-r", index)
    job_ref = entries.split()[2]  # the index's one entry: the job's tip
    chain = git(repo, "log", "--format=%H %s", job_ref).splitlines()
    finish, start, release = (line.split()[0] for line in chain[:3])
    index_chain = git(repo, "log", "--first-parent", "--format=%H %P", index)
    short = {o: o[:8] for o in (finish, start, release, bucket_ref, index)}
    outputs = json.loads(git(repo, "cat-file", "-p", f"{finish}:ops"))[0]["outputs"]
    key_line = signer.allowed_signers_line.split(" ", 2)[2]
    out = [
        "## 12. Worked example\n",
        "Generated by `python -m tests.format_example` (the library itself, a fresh key) in a",
        "repository that does not hold the commit (a job may name a commit not fetched yet): the",
        f"job `ci` for commit `{COMMIT}` was created with",
        '`jobs.Jobs.open(repo, signer).store.create(JOB_TYPE, [Request(commit, "ci")], then=[Release()])`',
        "— what `Jobs.create` writes — then, as a node does for one run,",
        '`.run("git-jobs://<NID>/<run id>", run_id=…)`, `jobs.logs.publish(repo, signer, run_id, log)`',
        "with the log `$ make test\\nall 12 tests passed\\n`, and",
        '`.finish(run_id, "succeeded", log_blob=…, exit_status=0, evidence=…)` — what the run ran',
        "under: the commit's tree, its definitions blob, the policy tip the node read (here the",
        "commit itself), the outputs tree and the node's environment (section 11.1; the tree, the",
        "blob and the outputs tree were written into this repository so that they can be shown):\n",
        "```",
        f"NID    {nid}",
        f"key    {key_line}",
        f"job id {job_id}",
        f"run id {run_id}",
        "```\n",
        "The refs — the node's index (section 7) and its log bucket for the run's month (section",
        "11.4) — and the job's tip that the index names (it never named the bare root: the root",
        "and the release were written first, then the index was moved to name the release):\n",
        "```",
        f"$ git for-each-ref refs/namespaces\n{refs}$ git ls-tree -r {index[:8]}\n{entries}"
        f"$ git log --format='%H %s' {finish[:8]}",
        "\n".join(chain),
        "```\n",
        "The index chain, newest first (`%H %P`: each commit, then its parents — the previous index",
        "commit, then the tips it introduced; it starts with an empty commit without parents), and",
        "its tip:\n",
        "```",
        f"$ git log --first-parent --format='%H %P' {index[:8]}\n{index_chain}"
        + cat(repo, index).split("gpgsig")[0]
        + "gpgsig -----BEGIN SSH SIGNATURE----- …\n```\n",
        "The job root (content-addressed, unsigned; any node creating `ci` for this commit writes these",
        f"exact bytes and gets the id `{job_id[:8]}…`):\n",
        "```",
        cat(repo, job_id)
        + cat(repo, f"{job_id}^{{tree}}", f"{job_id[:8]}^{{tree}}")
        + cat(repo, f"{job_id}:manifest", f"{job_id[:8]}:manifest")
        + "\n"
        + cat(repo, f"{job_id}:ops", f"{job_id[:8]}:ops")
        + "\n```\n",
        "The node's signed `release` (who asked for the job, and when):\n",
        "```",
        cat(repo, release)
        + cat(repo, f"{release}^{{tree}}", f"{short[release]}^{{tree}}")
        + cat(repo, f"{release}:ops", f"{short[release]}:ops")
        + "\n```\n",
        signature_dump(repo, release),
        "The run start, on top of it:\n",
        "```",
        cat(repo, start) + cat(repo, f"{start}:ops", f"{short[start]}:ops") + "\n```\n",
        "The finish, on top of that, naming the log's blob, the exit status and what the run ran",
        "under; then the outputs tree it names (two nodes' outputs compare by this one id):\n",
        "```",
        cat(repo, finish)
        + cat(repo, f"{finish}:ops", f"{short[finish]}:ops")
        + "\n"
        + f"$ git ls-tree -r {outputs[:8]}\n"
        + git(repo, "ls-tree", "-r", outputs)
        + "```\n",
        "The log bucket (section 11.4): one signed commit per published log, the log under the run id's",
        "last two hex digits:\n",
        "```",
        cat(repo, bucket_ref)
        + f"$ git ls-tree -r {short[bucket_ref]}\n"
        + git(repo, "ls-tree", "-r", bucket_ref)
        + cat(repo, blob)
        + "```\n",
        "Stock git verifies every signed commit — the three changes, the index and the bucket — from the",
        "NID alone",
        "(the allowed-signers file is passed for this one command; see section 1):\n",
        "```",
        f"$ cat allowed\n{signer.allowed_signers_line}",
        verify(repo, signer, [release, start, finish, index, bucket_ref], short),
        "```\n",
        f"The folded state: node `{nid[:8]}…` requested the job (first and latest `release` at the",
        f"release's commit time), and has one run, `{run_id[:8]}-…`, finished `succeeded` with exit",
        f"status 0 and log blob `{blob[:8]}…`, log URL `git-jobs://{nid[:8]}…/{run_id[:8]}-…`,",
        f"and its finish's evidence (tree, definitions blob, policy tip, outputs `{outputs[:8]}…`, env).",
        f"`git jobs logs {run_id[:8]}` prints the blob after checking that its bytes hash to `{blob[:8]}…`.",
    ]
    return "\n".join(out) + "\n"


def verify(repo: Path, signer: cob.Signer, oids: list[str], short: dict[str, str]) -> str:
    allowed = repo / "allowed"
    allowed.write_text(signer.allowed_signers_line + "\n")
    config = ["-c", "gpg.format=ssh", "-c", f"gpg.ssh.allowedSignersFile={allowed}"]
    proc = subprocess.run(
        ["git", *config, "verify-commit", *oids],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    names = " ".join(short[o] for o in oids)
    good = "\n".join(line for line in proc.stderr.splitlines() if line.startswith("Good"))
    return f"$ git -c gpg.format=ssh -c gpg.ssh.allowedSignersFile=allowed verify-commit {names}\n{good}"


if __name__ == "__main__":
    sys.exit(main())
