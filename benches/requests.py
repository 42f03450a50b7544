"""Trusted requests: what looking for requested commits adds to a node's pass.

    .venv/bin/python benches/requests.py                 # 500 jobs on 250 commits, 15 repeats
    .venv/bin/python benches/requests.py --jobs 2000 --repeats 9

A repository with ``--jobs`` jobs (two per commit), each released by one of two nodes; one of
them is a requester. Timed, interleaved, on a long-lived store (warm index, as in a node):

- **ours**: ``candidates.requested`` — every job folded (from the index), its trusted
  ``release``/``rerun`` ops read, a digest per commit, presence checked;
- **baseline**: ``list(jobs.all())`` — what ``git jobs list`` pays to read the same jobs.

Goal: ``requested`` costs at most 1.5x the baseline (it reads the same jobs once), and a node's
extra work per pass stays in the tens of milliseconds at 500 jobs.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import cob  # noqa: E402
import jobs  # noqa: E402
from jobs.node.candidates import requested  # noqa: E402


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def build(root: Path, n_jobs: int) -> tuple[jobs.Jobs, str]:
    path = root / "repo"
    path.mkdir()
    git(path, "init", "-q")
    empty = subprocess.run(["git", "mktree"], cwd=path, input="", capture_output=True, text=True, check=True)
    tree = empty.stdout.strip()
    a, b = cob.Signer.generate(), cob.Signer.generate()
    stores = [jobs.Jobs.open(path, a), jobs.Jobs.open(path, b)]
    for i in range(n_jobs // 2):
        sha = git(path, "commit-tree", tree, "-m", f"c{i}").strip()
        for name in ("build", "test"):
            stores[i % 2].create(sha, name)
    return jobs.Jobs.open(path), a.nid


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        store, requester = build(Path(tmp), args.jobs)
        found = requested(store, {requester})
        list(store.all())
        ours, base = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            requested(store, {requester})
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            list(store.all())
            base.append(time.perf_counter() - t)
        mo, mb = statistics.median(ours), statistics.median(base)
        print(f"{args.jobs} jobs, {len(found)} requested commits found")
        print(f"requested()     median {mo * 1000:8.1f} ms")
        print(f"list(all())     median {mb * 1000:8.1f} ms")
        print(f"ratio           {mo / mb:8.2f}x  (goal <= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
