"""Start-up of the installed `git-jobs` script against the import of its own dependencies.

A status check runs in prompts, hooks and CI gates, so a command should cost little more than
importing pygit2, msgspec, uuid6 and cryptography — the floor no implementation in Python
avoids. Every command is a fresh process; the commands run interleaved (A B C D A B C D …) so
background load hits all alike; the table gives medians and each median ratio to the floor.

    .venv-test/bin/python benches/startup.py            # 30 rounds
    .venv-test/bin/python benches/startup.py --rounds 60

Goals (issue "Install as users do"): `--version` ≤ 1.1x, `status` on a 1-job repository ≤ 1.3x.
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

FLOOR = [sys.executable, "-c", "import pygit2, msgspec, uuid6, cryptography"]


def script() -> str:
    beside = Path(sys.executable).parent / "git-jobs"
    found = str(beside) if beside.exists() else shutil.which("git-jobs")
    if not found:
        sys.exit("git-jobs is not installed beside this python: install the wheel first")
    return found


def one_job_repository(where: Path, gj: str) -> Path:
    """A repository with one commit and one job that has a finished run (index warm)."""
    repo = where / "repo"
    env = dict(os.environ, GIT_JOBS_KEY=str(where / "key"))
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
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
            "one",
        ],
        check=True,
    )
    subprocess.run([gj, "init"], cwd=repo, env=env, check=True, capture_output=True)
    job = subprocess.run(
        [gj, "create", "HEAD"], cwd=repo, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    run = subprocess.run(
        [gj, "run", job, "--log", "https://ci.example/1"],
        cwd=repo,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    subprocess.run([gj, "finish", job, run, "succeeded"], cwd=repo, env=env, check=True, capture_output=True)
    subprocess.run([gj, "status"], cwd=repo, env=env, check=True, capture_output=True)
    return repo


def timed(cmd: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    gj = script()
    with tempfile.TemporaryDirectory() as tmp:
        repo = one_job_repository(Path(tmp), gj)
        commands = {
            "deps import (floor)": FLOOR,
            "git-jobs --version": [gj, "--version"],
            "git-jobs status": [gj, "status"],
            "git-jobs list": [gj, "list"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for cmd in commands.values():  # warm-up: page cache, pyc files
            timed(cmd, repo)
        for _ in range(args.rounds):
            for name, cmd in commands.items():
                times[name].append(timed(cmd, repo))
    floor = statistics.median(times["deps import (floor)"])
    print(f"{args.rounds} interleaved rounds, python {sys.version.split()[0]}, {os.cpu_count()} cpus\n")
    print("| command | median ms | ratio to floor |")
    print("|---|---:|---:|")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"| {name} | {median * 1000:.1f} | {median / floor:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
