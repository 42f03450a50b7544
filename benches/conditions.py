"""`if` conditions at scale: what planning a commit costs when every job asks `changed()`.

The attack of issue 26 (item 8): a commit changing 9,990 paths whose `.git-jobs.toml` defines
200 jobs, each `if = 'changed("G1") || … || changed("G4")'` with globs matching nothing, so
every glob is tried against every path. A node re-plans after each skip, so one pass costs
200 plans. Timed: the first plan of a fresh `Workshop` (`Workshop.plan`, no run, no write)
and the next one, for the same four globs in every job (`--distinct 0`) and for 800 distinct
globs (`--distinct 1`).

    .venv/bin/python benches/conditions.py [--jobs 200] [--paths 9990] [--distinct 0|1]
    .venv/bin/python benches/conditions.py --source /tmp/old   # the same, on another checkout's code
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _git(cwd: Path, *args: str) -> str:
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="b",
        GIT_AUTHOR_EMAIL="b@x",
        GIT_COMMITTER_NAME="b",
        GIT_COMMITTER_EMAIL="b@x",
    )
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def _repo(base: Path, jobs: int, paths: int, distinct: bool) -> tuple[Path, str]:
    repo = base / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "seed").write_text("0")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "root")
    for i in range(paths - 1):
        d = repo / f"src{i % 100}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}.txt").write_text(str(i))
    lines = []
    for j in range(jobs):
        globs = [f"nomatch{j if distinct else ''}-{k}/*.rs" for k in range(4)]
        cond = " || ".join(f'changed("{g}")' for g in globs)
        lines.append(f"[jobs.j{j}]\nrun = \"true\"\nif = '{cond}'\n")
    (repo / ".git-jobs.toml").write_text("".join(lines))
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "many paths")
    return repo, _git(repo, "rev-parse", "HEAD")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--paths", type=int, default=9990)
    parser.add_argument("--distinct", type=int, default=0)
    parser.add_argument("--source", help="import jobs/cob from this checkout instead")
    args = parser.parse_args()
    sys.path.insert(0, args.source or str(HERE.parent))

    import cob
    import jobs
    from jobs.node import Workshop
    from jobs.node.isolation import Isolation

    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        repo, sha = _repo(Path(tmp), args.jobs, args.paths, bool(args.distinct))
        store = jobs.Jobs.open(repo, cob.Signer.generate())
        ws = Workshop(store, isolation=Isolation(mode="none"))
        _, defs = ws.definitions(sha)
        assert defs is not None
        ws.facts(defs)  # the diff, read once in both versions: not what is measured
        times = []
        for _ in range(2):
            t = time.perf_counter()
            plan = ws.plan(defs)
            times.append(time.perf_counter() - t)
        skips = sum(1 for p in plan if p.action == "skip")
        print(
            f"jobs={args.jobs} paths={args.paths} globs={'distinct' if args.distinct else 'shared'} "
            f"source={args.source or 'this checkout'}: first plan {times[0]:.3f} s, "
            f"next plan {times[1]:.3f} s ({skips} skip, {len(plan) - skips} run: past the "
            "comparison bound a glob counts as changed)"
        )


if __name__ == "__main__":
    main()
