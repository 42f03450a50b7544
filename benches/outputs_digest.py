"""The outputs digest (issue 27): what recording a job's outputs tree id costs.

    .venv/bin/python benches/outputs_digest.py               # 1,000 files, 15 repeats
    .venv/bin/python benches/outputs_digest.py --files 1000 --size 4096 --repeats 9

A node that finishes a job with ``outputs`` writes those files as a Git tree into its object
database (``jobs.node.evidence.outputs_tree``: one blob per file, one tree per directory) and
records the tree id in its signed finish. Baseline: hashing the same files with
``git hash-object -w --stdin-paths`` (one process, every file written as a blob: the least
any Git tool pays to get their ids), and, for scale, without ``-w`` and the copy of the same
files that keeping outputs already makes (``jobs.node.outputs.collect``). Each repeat writes into a
fresh repository (so no object is already there), ours and the baseline interleaved.
The files: ``--files`` of ``--size`` bytes of random data, 50 to a directory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import pygit2  # noqa: E402

from jobs.node.evidence import outputs_tree  # noqa: E402


def make_files(root: Path, files: int, size: int) -> list[Path]:
    out = []
    for i in range(files):
        d = root / "out" / f"d{i // 50:03d}"
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"f{i:05d}.bin"
        p.write_bytes(os.urandom(size))
        out.append(p)
    return out


def fresh_repo(base: Path, name: str) -> pygit2.Repository:
    path = base / name
    shutil.rmtree(path, ignore_errors=True)
    return pygit2.init_repository(str(path), bare=True)


def timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(prefix="gj-outputs-", dir=shm if shm.is_dir() else None))
    try:
        paths = make_files(base / "src", args.files, args.size)
        listing = "".join(f"{p}\n" for p in paths)
        ours, write, hash_only, copy = [], [], [], []
        for i in range(args.repeats):
            repo = fresh_repo(base, f"ours{i}")
            ours.append(timed(lambda repo=repo: outputs_tree(repo, base / "src")))
            bare = fresh_repo(base, f"git{i}")
            write.append(
                timed(
                    lambda bare=bare: subprocess.run(
                        ["git", "--git-dir", bare.path, "hash-object", "-w", "--stdin-paths"],
                        input=listing,
                        text=True,
                        capture_output=True,
                        check=True,
                    )
                )
            )
            hash_only.append(
                timed(
                    lambda: subprocess.run(
                        ["git", "hash-object", "--stdin-paths"],
                        input=listing,
                        text=True,
                        capture_output=True,
                        check=True,
                    )
                )
            )
            dest = base / f"copy{i}"
            copy.append(timed(lambda dest=dest: shutil.copytree(base / "src", dest, symlinks=True)))
        o, w, h, c = (statistics.median(x) * 1000 for x in (ours, write, hash_only, copy))
        print(f"outputs tree of {args.files} files x {args.size} B (median of {args.repeats}):")
        print(f"  outputs_tree (blobs + trees, written)  {o:8.1f} ms")
        print(f"  git hash-object -w --stdin-paths        {w:8.1f} ms   ratio {o / w:.2f}")
        print(f"  git hash-object --stdin-paths (no -w)   {h:8.1f} ms   ratio {o / h:.2f}")
        print(f"  for scale: copying them (what keeping outputs already costs)  {c:8.1f} ms")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
