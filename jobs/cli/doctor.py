"""`git jobs doctor [--repair]`: a read-only health check of this repository's ledger.

One line per finding on stdout, exit 1 when something is wrong (a note alone exits 0).
``--repair`` fixes what needs no person (see :func:`cob.doctor.repair`), says each repair on
stderr, then checks again: the exit code is that of what is left.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cob import doctor

from ..jobtype import JOB_TYPE
from ..text import safe
from .common import add_json, command, open_jobs, print_json
from .errors import EXIT_FAILED, EXIT_OK


def _doctor(args: argparse.Namespace) -> int:
    jobs = open_jobs(args, write=False)
    store = jobs.store
    codecs = [store.codec(JOB_TYPE)]
    findings = doctor.check(store.repo, store.signer, codecs, objects=not args.quick)
    repaired: list[str] = []
    if args.repair and any(f.repairable for f in findings):
        if store.cache is not None:
            store.cache.close()
        repaired = doctor.repair(store.repo, store.signer, findings, codecs)
        for line in repaired:
            print(safe(line), file=sys.stderr)
        findings = doctor.check(store.repo, store.signer, codecs, objects=not args.quick)
    bad = any(f.error for f in findings)
    if args.json:
        print_json(
            {
                "ok": not bad,
                "findings": [
                    {
                        "kind": f.kind.value,
                        "message": f.message,
                        "error": f.error,
                        "repairable": f.repairable,
                        "objects": list(f.objects),
                    }
                    for f in findings
                ],
                "repaired": repaired,
            }
        )
    else:
        for f in findings:
            print(safe(f.line()))
        if not findings:
            print("ok: nothing to report")
    return EXIT_FAILED if bad else EXIT_OK


def register(sub: Any) -> None:
    p = command(
        sub,
        "doctor",
        "  git jobs doctor\n"
        "  git jobs doctor --repair        # fix what needs no person, then check again\n"
        "  git jobs doctor --json\n",
        _doctor,
        "Read-only unless --repair. Repairs: this node's index, when its tip is missing (pruned by"
        " git gc next to a writer), moves on from its newest intact one with every change still"
        " present; lost writes are acknowledged (they stay in the index log); a cache that"
        " disagrees with the refs is removed; stale ref locks of dead writers are removed.",
    )
    p.add_argument("--repair", action="store_true", help="Repair what can be repaired without a person.")
    p.add_argument(
        "--quick",
        action="store_true",
        help="Skip the walk for missing objects (reads every object of the ledger).",
    )
    add_json(p)
