"""Reuse by tree (issue 27): what finding a reusable pass costs a reader.

    .venv/bin/python benches/reuse_scan.py               # 1,000 jobs named `build`
    .venv/bin/python benches/reuse_scan.py --jobs 2000 --repeats 9

``status`` (and a node's plan) looks for a reusable pass of a ``reuse = "tree"`` job that has
not passed yet: every job with that name (one index lookup), each loaded, each finish's tree
compared (``jobs.evidence.find_reuse``). The repository holds ``--jobs`` jobs named ``build``,
each on its own commit with one finished run whose evidence names another tree (the worst
case: nothing matches, every candidate is looked at). Timed: the scan on a long-lived store
(warm index), and on a freshly opened one (what one CLI call pays).
"""

from __future__ import annotations

import argparse
import hashlib
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
from jobs.evidence import find_reuse  # noqa: E402
from jobs.jobtype import JOB_TYPE  # noqa: E402
from jobs.model import Evidence  # noqa: E402
from jobs.ops import Release, Request  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(prefix="gj-reuse-", dir=shm if shm.is_dir() else None) as tmp:
        repo_dir = Path(tmp) / "repo"
        subprocess.run(["git", "init", "-q", str(repo_dir)], check=True)
        subprocess.run(
            [
                "git",
                "-C",
                str(repo_dir),
                "-c",
                "user.name=b",
                "-c",
                "user.email=b@b",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                "head",
            ],
            check=True,
        )
        signer = cob.Signer.generate()
        store = jobs.Jobs.open(repo_dir, signer=signer)
        head = str(store.repo.head.target)
        other = hashlib.sha1(b"another tree").hexdigest()
        began = time.perf_counter()
        for i in range(args.jobs):
            commit = hashlib.sha1(f"commit {i}".encode()).hexdigest()
            ev = store.store.create(JOB_TYPE, [Request(commit, "build")], then=[Release()])
            job = store.get_mut(ev.object_id)
            assert job is not None
            job.finish(job.run(f"https://ci.example/{i}"), "succeeded", evidence=Evidence(tree=other))
        built = time.perf_counter() - began
        trusts = lambda nid: True  # noqa: E731
        warm, fresh = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            assert find_reuse(store.find_by_name("build"), store.repo, head, "build", trusts) is None
            warm.append(time.perf_counter() - t)
            t = time.perf_counter()
            s = jobs.Jobs.open(repo_dir)
            assert find_reuse(s.find_by_name("build"), s.repo, head, "build", trusts) is None
            fresh.append(time.perf_counter() - t)
        print(f"{args.jobs} jobs named build (built in {built:.1f} s); medians of {args.repeats}:")
        print(f"  scan, warm store      {statistics.median(warm) * 1000:8.1f} ms")
        print(f"  scan, fresh open      {statistics.median(fresh) * 1000:8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
