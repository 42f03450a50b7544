"""Memory of a long-running writer: RSS over many writes, as a node makes them.

One `Jobs` store lives for the whole run (a node's), and writes the way a node does: a new job,
then ``--runs`` (4) runs on it started and finished (`run` + `finish` = 2 writes), so a new job
every 9 writes, with reads (`get`) in between. ``--runs`` larger than the writes puts every run on
one job: then what grows is that job's own state (its runs), not a leak. The resident set
(current, ``/proc/self/statm``; not the peak) is sampled every ``--every`` writes after a
``gc.collect()``. After ``--warmup`` writes (while the bounded
caches fill: verified changes 2 MiB, libgit2's objects 4 MiB, SQLite's pages, index trees),
``--writes`` more are measured: RSS must stay within ``--tolerance`` (10 %) of its value at the
start of them (issue 25, item 7).

    .venv/bin/python benches/rss.py                                # 5,000 + 10,000 writes
    .venv/bin/python benches/rss.py --warmup 2000 --writes 3000    # quicker
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cob
from jobs import Jobs


def rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def repository(where: Path) -> Path:
    repo = where / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for i in range(50):
        subprocess.run(
            [
                "git",
                "-C",
                str(repo),
                "-c",
                "user.name=b",
                "-c",
                "user.email=b@b",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                f"c{i}",
            ],
            check=True,
        )
    return repo


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--writes", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=5_000)
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--runs", type=int, default=4, help="runs per job before the next job (default 4)")
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="gj-rss-") as tmp:
        repo = repository(Path(tmp))
        commits = subprocess.run(
            ["git", "-C", str(repo), "rev-list", "HEAD"], check=True, capture_output=True, text=True
        ).stdout.split()
        jobs = Jobs(cob.Store(str(repo), cob.Signer.generate()))
        samples: list[tuple[int, int]] = []
        started = time.perf_counter()
        writes = 0
        job = None
        runs = 0  # on the current job
        n = 0  # jobs created
        total = args.warmup + args.writes
        while writes < total:
            before = writes
            if job is None or runs == args.runs:
                # (was `writes % 10 == 0`: never true again after the first create, since
                # writes then stays odd, so every run went to one job whose state grew)
                job = jobs.create(commits[n % len(commits)], f"job-{n}")
                n += 1
                runs = 0
                writes += 1
            run_id = job.run(f"https://ci.example/{writes}")
            job.finish(run_id, "succeeded")
            runs += 1
            writes += 2
            jobs.get(job.id)
            if writes // args.every != before // args.every:
                gc.collect()
                samples.append((writes, rss_kb()))
        elapsed = time.perf_counter() - started
    warm_at = args.warmup
    warm = [kb for w, kb in samples if w >= warm_at]
    base = warm[0]
    top = max(warm)
    growth = (top - base) / base
    per_write = (samples[-1][1] - base) * 1024 / max(1, samples[-1][0] - warm_at)
    print(
        f"{args.warmup:,} + {args.writes:,} writes in {elapsed:.0f} s;"
        f" RSS after warm-up {base / 1024:.1f} MB,"
        f" max after {top / 1024:.1f} MB, end {samples[-1][1] / 1024:.1f} MB:"
        f" growth {growth * 100:+.1f} % ({per_write:+.0f} B per write)"
    )
    for w, kb in samples:
        print(f"  {w:>7,}  {kb / 1024:7.1f} MB")
    ok = growth <= args.tolerance
    print("flat within tolerance" if ok else f"NOT flat: above {args.tolerance * 100:.0f} %")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
