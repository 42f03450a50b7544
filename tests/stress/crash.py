"""Crash harness: SIGKILL writers at random points of run, finish, sync and the index update.

Each iteration starts a worker (``tests.stress.worker``) on the same repository as the same
node, lets it work for a random time after it is ready, and kills it with SIGKILL. Then:

* ``git fsck --strict`` passes on the repository and on the hub;
* every operation the worker acknowledged (it prints a line after each call *returned*) is in a
  fresh fold;
* the index (cached, incremental) equals a fresh fold;
* the next call works: the parent runs and finishes a run itself, and syncs (a stale
  ``<ref>.lock`` left by the kill costs at most ``cob.refs.STALE_LOCK_SECONDS``).

    python -m tests.stress.crash --iterations 300
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import jobs

from .common import (  # noqa: F401  (re-exported for tests)
    Acks,
    World,
    check_acked,
    check_index,
    check_no_duplicates,
    fsck,
    stale_locks,
    wait_for_orphans,
    worker_env,
)


@dataclass
class CrashFigures:
    iterations: int = 0
    killed: int = 0
    acked_ops: int = 0
    acked_syncs: int = 0
    acked_index: int = 0
    lost: list[str] = field(default_factory=list)
    fsck_failures: list[str] = field(default_factory=list)
    index_mismatches: list[str] = field(default_factory=list)
    next_call_failures: list[str] = field(default_factory=list)
    stale_locks: int = 0
    max_recovery_s: float = 0.0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.fsck_failures or self.index_mismatches or self.next_call_failures)

    def lines(self) -> list[str]:
        return [
            f"iterations            {self.iterations}",
            f"workers killed        {self.killed} (SIGKILL at a random point)",
            f"acked run/finish ops  {self.acked_ops}",
            f"acked syncs / index   {self.acked_syncs} / {self.acked_index}",
            f"acked ops lost        {len(self.lost)}",
            f"fsck --strict fails   {len(self.fsck_failures)}",
            f"index != fresh fold   {len(self.index_mismatches)}",
            f"next call failed      {len(self.next_call_failures)}",
            f"stale ref locks left  {self.stale_locks} (all cleared by the next call)",
            f"slowest next call     {self.max_recovery_s:.2f} s",
            f"wall time             {self.seconds:.1f} s",
        ]


def run(
    iterations: int, base: Path, seed: int = 0, max_delay: float = 0.6, sync: bool = True, log: bool = False
) -> CrashFigures:
    rng = random.Random(seed)
    world = World.make(base)
    acks = Acks()
    figures = CrashFigures()
    start = time.monotonic()
    parent = jobs.Jobs.open(world.repo, signer=world.signer)
    for i in range(iterations):
        proc = subprocess.Popen(
            world.worker_cmd(ops=100_000, seed=seed * 100_003 + i, hub=sync),
            cwd=world.base,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=worker_env(),
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if first != b"ready\n":
            err = proc.stderr.read().decode() if proc.stderr else ""
            proc.kill()
            raise RuntimeError(f"worker did not start: {first!r} {err[-2000:]}")
        time.sleep(rng.uniform(0, max_delay))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        figures.killed += proc.returncode == -signal.SIGKILL
        if proc.returncode not in (-signal.SIGKILL, 0):
            figures.next_call_failures.append(f"worker failed: {err.decode()[-800:]}")
        acks.feed(world.signer.nid, out.decode())
        figures.iterations += 1

        locks = stale_locks(world.repo / ".git")
        figures.stale_locks += len(locks)
        wait_for_orphans(world.repo, world.hub)  # a killed sync's git may still be finishing
        for path in (world.repo, world.hub):
            problem = fsck(path)
            if problem:
                figures.fsck_failures.append(f"iteration {i}: {path.name}: {problem}")
        # The next call works (and clears a stale lock the kill left).
        t0 = time.monotonic()
        try:
            job = parent.get_mut(rng.choice(world.job_ids))
            assert job is not None
            run_id = job.run(f"https://ci.example/parent/{i}")
            job.finish(run_id, jobs.Reason.SUCCEEDED)
            acks.feed(world.signer.nid, f"run {job.id} {run_id}\nfinish {job.id} {run_id} succeeded\n")
            if sync:
                parent.sync(str(world.hub))
        except Exception as e:  # the figure to report, not a crash of the harness
            figures.next_call_failures.append(f"iteration {i}: {type(e).__name__}: {e}")
        figures.max_recovery_s = max(figures.max_recovery_s, time.monotonic() - t0)
        if log and (i + 1) % 10 == 0:
            print(f"  {i + 1}/{iterations} iterations, {acks.total} acked ops", flush=True)

    fresh = jobs.Jobs.open(world.repo, cache=False)
    figures.lost = check_acked(fresh, acks)
    figures.index_mismatches = check_index(world.repo, world.job_ids)
    figures.acked_ops = acks.total
    figures.acked_syncs = acks.counts["sync"]
    figures.acked_index = acks.counts["index"]
    figures.seconds = time.monotonic() - start
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-delay", type=float, default=0.6, help="seconds a worker may live")
    p.add_argument("--no-sync", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="git-jobs-crash-") as tmp:
        figures = run(args.iterations, Path(tmp), args.seed, args.max_delay, sync=not args.no_sync, log=True)
    print("\n".join(figures.lines()))
    for problem in (
        figures.lost + figures.fsck_failures + figures.index_mismatches + figures.next_call_failures
    )[:20]:
        print("PROBLEM:", problem)
    return 0 if figures.ok else 1


if __name__ == "__main__":
    sys.exit(main())
