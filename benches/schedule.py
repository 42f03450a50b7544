"""Scheduling overhead per job vs the floor: what `work any` adds around each command.

Ours: ``Workshop.work_any`` on a fresh commit whose ``.git-jobs.toml`` defines N independent
jobs ``run = "true"`` — so nearly everything timed is overhead: release, planning from the
ledger, one isolated checkout, the sandbox (``--isolation`` as given), the log, two signed
writes (start, finish) and the log's publication. Per job = total / N.

Floor (no ``jobs`` code): per job, one isolated checkout of the commit done the same way any
implementation of the design must (``git init`` + ``fetch --depth 1`` of the commit +
``checkout``) and two raw signed writes (:class:`floor.FloorWriter`). Ours and the floor run
interleaved, repeat by repeat, so background load hits both alike; medians are reported.

    .venv/bin/python benches/schedule.py [--jobs-per-commit 10] [--repeats 5] [--isolation none|bwrap]
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
sys.path.insert(0, str(HERE))

import pygit2  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from floor import FloorWriter  # noqa: E402

import cob  # noqa: E402
import jobs  # noqa: E402
from jobs.node import Workshop  # noqa: E402
from jobs.node.isolation import load_isolation  # noqa: E402


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


def _commit(repo: Path, n: int, salt: int, command: str = "true") -> str:
    text = "".join(f'[jobs.j{i}]\nrun = "{command}"\n' for i in range(n))
    (repo / ".git-jobs.toml").write_text(text)
    (repo / "salt").write_text(str(salt))
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", f"c{salt}")
    return _git(repo, "rev-parse", "HEAD")


def _floor_checkout(repo: Path, sha: str, dest: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)

    def run(*a: str, cwd: Path | None = None) -> None:
        subprocess.run(["git", *a], cwd=cwd, env=env, check=True, capture_output=True)

    run("init", "-q", "--template=", str(dest))
    run(
        "-c",
        "protocol.file.allow=always",
        "-c",
        "protocol.version=2",
        "fetch",
        "-q",
        "--depth",
        "1",
        "--no-tags",
        (repo / ".git").resolve().as_uri(),
        sha,
        cwd=dest,
    )
    run("-c", "advice.detachedHead=false", "checkout", "-q", "--detach", sha, cwd=dest)


def _floor(repo: Path, sha: str, n: int, writer: FloorWriter, base: Path, rep: int) -> float:
    began = time.perf_counter()
    for i in range(n):
        dest = Path(tempfile.mkdtemp(dir=base))
        _floor_checkout(repo, sha, dest / "src")
        ref = f"refs/floor/{rep}/{i}"
        first = writer.write(b'[{"type":"run"}]', [], ref, None, 1_700_000_000)
        writer.write(b'[{"type":"finish"}]', [first], ref, first, 1_700_000_001)
        shutil.rmtree(dest)
    return (time.perf_counter() - began) / n


def _ours(ws: Workshop, sha: str, n: int) -> float:
    began = time.perf_counter()
    report = ws.work_any(sha)
    took = (time.perf_counter() - began) / n
    assert report.ok and len(report.outcomes) == n, [o.line() for o in report.outcomes]
    return took


def main() -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--jobs-per-commit", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--isolation", choices=("none", "bwrap"), default="none")
    parser.add_argument("--parallel", type=int, default=1, help="--jobs N for ours")
    parser.add_argument("--command", default="true", help='the jobs\' command, e.g. "sleep 5"')
    parser.add_argument("--no-floor", action="store_true", help="time ours only (wall time per commit)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        repo = base / "repo"
        repo.mkdir()
        _git(repo, "init", "-q")
        signer = cob.Signer.generate()
        signer.save(base / "key")
        store = jobs.Jobs.open(repo, signer)
        isolation = load_isolation(store.repo, args.isolation, key=base / "key")
        ws = Workshop(store, isolation=isolation, parallel=args.parallel)
        writer = FloorWriter(pygit2.Repository(str(repo)), Ed25519PrivateKey.generate(), "floor")
        n = args.jobs_per_commit
        ours, floor = [], []
        for rep in range(args.repeats):
            sha = _commit(repo, n, rep, args.command)
            ours.append(_ours(ws, sha, n))
            if not args.no_floor:
                floor.append(_floor(repo, sha, n, writer, base, rep))
        o = statistics.median(ours)
        if args.no_floor:
            print(
                f"command={args.command!r} jobs/commit={n} parallel={args.parallel}: "
                f"wall {o * n:.2f} s per commit (median of {args.repeats})"
            )
            return 0
        f = statistics.median(floor)
        print(f"isolation={args.isolation} jobs/commit={n} parallel={args.parallel} repeats={args.repeats}")
        print(f"| per job | ours {o * 1000:.1f} ms | floor {f * 1000:.1f} ms | ratio {o / f:.2f}x |")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
