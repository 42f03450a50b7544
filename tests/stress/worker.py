"""A writer process for the crash and concurrency harnesses.

It opens the repository as one node (a key file), then performs random operations on the given
jobs — ``run``, ``finish`` of a run it started, ``index`` (a cached listing and load of every job,
which updates the SQLite index) and ``sync`` with a hub — and prints one *ack* line on stdout
after each call has **returned**:

    ready
    run <job> <run_id>
    finish <job> <run_id> <reason>
    index <n>
    sync <fetched> <pushed>

The parent may SIGKILL it at any moment: an ack line is a promise that the operation is stored.
"""

from __future__ import annotations

import argparse
import random
import sys

import cob
import jobs

REASONS = [r.value for r in jobs.Reason]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repo", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--jobs", required=True, help="comma-separated job ids")
    p.add_argument("--ops", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hub", default=None, help="a remote to sync with (omit: no syncs)")
    p.add_argument("--mix", default="run=4,finish=3,index=1,sync=1")
    args = p.parse_args(argv)

    rng = random.Random(args.seed)
    signer = cob.Signer.from_file(args.key)
    store = jobs.Jobs.open(args.repo, signer=signer)
    job_ids = args.jobs.split(",")
    weights = {k: int(v) for k, v in (kv.split("=") for kv in args.mix.split(","))}
    if not args.hub:
        weights.pop("sync", None)
    actions = list(weights)
    open_runs: list[tuple[str, str]] = []
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for _ in range(args.ops):
        action = rng.choices(actions, [weights[a] for a in actions])[0]
        if action == "finish" and not open_runs:
            action = "run"
        if action == "run":
            job_id = rng.choice(job_ids)
            job = store.get_mut(job_id)
            assert job is not None
            run_id = job.run(f"https://ci.example/logs/{rng.getrandbits(32):08x}")
            open_runs.append((job_id, str(run_id)))
            out.write(f"run {job_id} {run_id}\n")
        elif action == "finish":
            job_id, run_id = open_runs.pop(rng.randrange(len(open_runs)))
            job = store.get_mut(job_id)
            assert job is not None
            reason = rng.choice(REASONS)
            job.finish(run_id, reason)
            out.write(f"finish {job_id} {run_id} {reason}\n")
        elif action == "index":
            n = sum(len(j.runs()) for j in store.all())
            out.write(f"index {n}\n")
        elif action == "sync":
            report = store.sync(args.hub)
            out.write(f"sync {len(report.fetched)} {len(report.pushed)}\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
