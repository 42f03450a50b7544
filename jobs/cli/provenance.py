"""`git jobs attest` and `git jobs bundle` (and `verify --bundle`): evidence to take anywhere.

``attest`` exports the DSSE envelope a node embedded in its signed finish (or, with
``--verify``, checks one offline against given NIDs); ``bundle`` writes a standard git bundle
with what the gate of one commit needs; ``verify --bundle`` re-evaluates that gate from the
bundle alone, in a scratch repository (docs/PROVENANCE.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..text import safe
from .common import Style, add_command, add_json, open_jobs, print_json, short
from .errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError

if TYPE_CHECKING:
    from ..gate import GateStatus
    from ..store import Jobs

MAX_READ = 8 * 1024 * 1024 + 1


def _attest(args: argparse.Namespace) -> int:
    if args.verify is not None:
        return _attest_verify(args)
    if args.rev is None:
        raise CliError("give REV --job NAME, a run id or a job id (or --verify FILE --trusted NID)")
    if args.trusted or args.outputs is not None:
        raise CliError("--trusted and --outputs go with --verify FILE")
    from .. import logs
    from ..names import resolve_node
    from ..provenance.attest import published

    store = open_jobs(args)
    node = resolve_node(store, args.node) if args.node is not None else None
    found = logs.locate(store, f"{args.rev}:{args.job}" if args.job is not None else args.rev, node)
    data = published(store.repo, found.job, found.nid, found.run_id)
    if args.output is None or args.output == "-":
        sys.stdout.buffer.write(data)
        return EXIT_OK
    Path(args.output).write_bytes(data)
    print(
        f"wrote {safe(args.output)}: attestation of run {found.run_id} ({safe(found.job.name)}"
        f" at {short(found.job.commit)}) signed by {found.nid}",
        file=sys.stderr,
    )
    return EXIT_OK


def _attest_verify(args: argparse.Namespace) -> int:
    from ..provenance.attest import AttestationError, verify

    if args.rev is not None or args.job is not None or args.node is not None or args.output is not None:
        raise CliError("--verify FILE takes only --trusted NID... and --outputs DIR")
    if not args.trusted:
        raise CliError("--verify FILE needs --trusted NID (the nodes whose signature counts)")
    try:
        with open(args.verify, "rb") as fh:
            data = fh.read(MAX_READ)
    except OSError as e:
        raise CliError(f"cannot read {safe(args.verify)}: {e.strerror or e}") from None
    outputs = Path(args.outputs) if args.outputs is not None else None
    try:
        ok = verify(data, args.trusted, outputs)
    except AttestationError as e:
        raise CliError(f"{safe(args.verify)}: not verified: {e}", EXIT_FAILED) from None
    if args.json:
        print_json(
            {
                "verified": True,
                "signer": ok.signer,
                "commit": ok.commit,
                "job": ok.job,
                "run": ok.run_id,
                "subjects": [{"name": n, "sha256": d} for n, d in ok.subjects],
                "outputs_checked": outputs is not None,
            }
        )
        return EXIT_OK
    checked = f"; {len(ok.subjects)} output file(s) match" if outputs is not None else ""
    print(
        f"verified: {len(ok.subjects)} subject(s) of job {safe(ok.job)!r} at {safe(ok.commit[:40])},"
        f" run {safe(ok.run_id[:36])}, signed by {ok.signer}{checked}"
    )
    return EXIT_OK


def _bundle(args: argparse.Namespace) -> int:
    from ..provenance.bundle import create

    store = open_jobs(args)
    out = Path(args.output)
    made = create(store, args.rev, out)
    policy = f"policy {safe(made.policy)}" if made.policy else "no policy ref"
    print(
        f"wrote {safe(args.output)} ({made.size} bytes): commit {made.commit}, {policy},"
        f" {len(made.nodes)} node index(es), {len(made.buckets)} log bucket(s)",
        file=sys.stderr,
    )
    if store.policy().local:
        print("note: your local trust is not in the bundle (it holds the policy ref's)", file=sys.stderr)
    return EXIT_OK


def verify_bundle(args: argparse.Namespace) -> int:
    """`git jobs verify --bundle FILE [REV]`: the gate from the bundle alone, as `status` prints it."""
    from ..errors import JobsError
    from ..provenance.bundle import opened, pick, status
    from .statusview import render_status, subject

    try:
        with opened(Path(args.bundle)) as got:
            commit = pick(got, args.rev)
            gate = status(got, commit)
            counts, problems = _check_runs(got.store, gate)
            if args.json:
                doc: dict[str, Any] = gate.to_json()
                doc["bundle"] = {
                    "nodes": got.nodes,
                    "log_buckets": got.buckets,
                    "logs_verified": counts[0],
                    "attestations_verified": counts[1],
                    "problems": problems,
                }
                print_json(doc)
            else:
                print("\n".join(render_status(gate, Style(), title=subject(got.store, commit))))
                print(
                    f"evidence bundle: intact; {len(got.nodes)} node index(es) and {len(got.buckets)}"
                    f" log bucket(s) signed by their nodes; {counts[0]} log(s) and"
                    f" {counts[1]} attestation(s) verified against the signed finishes"
                )
                for p in problems:
                    print(f"  {safe(p)}")
    except JobsError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    return EXIT_FAILED if problems and gate.exit_code == EXIT_OK else int(gate.exit_code)


def _check_runs(store: Jobs, gate: GateStatus) -> tuple[tuple[int, int], list[str]]:
    """((logs verified, attestations verified), problems) of the runs the gate shows: each log
    against its signed finish, each attestation of a run that kept outputs under its node."""
    from .. import logs
    from ..provenance.attest import AttestationError, published

    shown = attested = 0
    problems = []
    for cell in gate.cells:
        if cell.run is None or cell.node is None or cell.job is None or cell.run_id is None:
            continue
        read = logs.read(store.repo, cell.node, cell.run_id, cell.run)
        if read.status is logs.LogStatus.SHOWN:
            shown += 1
        elif read.status is logs.LogStatus.REFUSED:
            problems.append(f"log of run {cell.run_id}: {read.detail}")
        if cell.run.evidence is not None and cell.run.evidence.outputs:
            try:
                published(store.repo, cell.job, cell.node, cell.run_id)
                attested += 1
            except AttestationError as e:
                problems.append(f"attestation of run {cell.run_id}: {e}")
    return (shown, attested), problems


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "attest",
        "Export a node's signed in-toto/SLSA provenance of a run, or verify one offline.",
        "  git jobs attest HEAD --job build -o build.intoto.json\n"
        "  git jobs attest v1.2 --job build --node z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK\n"
        "  git jobs attest 0190d3a4-7b1c  # a run id (prefix), as `git jobs logs` takes\n"
        "  git jobs attest --verify build.intoto.json --trusted z6MkhaXg... --outputs dist-dir/\n",
        _attest,
        "A node signs a DSSE envelope (an in-toto Statement v1 whose subjects are the job's kept\n"
        "output files with their sha256, and a SLSA Provenance v1 predicate) when it finishes a\n"
        "run that kept outputs, inside its signed finish: every peer that synced can export it.\n"
        "--verify needs no repository and no network: a signature by one of the --trusted NIDs,\n"
        "the statement's shape, and with --outputs the files' digests (docs/PROVENANCE.md).\n\n"
        "exit status: 0 exported or verified; 1 the envelope does not verify; 2 usage, no such\n"
        "run or no attestation.",
    )
    p.add_argument(
        "rev", metavar="REV", nargs="?", default=None, help="The commit (with --job), or a run id or job id."
    )
    p.add_argument("--job", metavar="NAME", help="The job whose latest run's attestation to export.")
    p.add_argument("--node", metavar="NODE", help="Whose run (a NID, or a name as `status` prints it).")
    p.add_argument("-o", "--output", metavar="FILE", help="Write the envelope here (default stdout).")
    p.add_argument("--verify", metavar="FILE", help="Verify this envelope offline instead.")
    p.add_argument(
        "--trusted",
        metavar="NID",
        nargs="+",
        action="extend",
        default=[],
        help="With --verify: whose signature counts.",
    )
    p.add_argument("--outputs", metavar="DIR", help="With --verify: check each subject's sha256 against DIR.")
    add_json(p)
    b = add_command(
        sub,
        "bundle",
        "Write an offline evidence bundle of a commit: a git bundle with what its gate needs.",
        "  git jobs bundle HEAD -o evidence.bundle\n"
        "  git jobs verify --bundle evidence.bundle 3f2a1b9c   # anywhere: no remote, no network\n",
        _bundle,
        "The bundle holds the commit, the policy ref's commit, every node's signed index (its\n"
        "changes, finishes and attestations) and the log buckets of the commit's runs.\n"
        "`git jobs verify --bundle FILE [REV]` checks it (git's hashes, a manifest of its refs,\n"
        "every node's signature) and prints the gate as `status` does (docs/PROVENANCE.md).",
    )
    b.add_argument("rev", metavar="REV", help="The commit.")
    b.add_argument("-o", "--output", metavar="FILE", required=True, help="The bundle file to write.")
