"""Node-seconds spent per commit when trusted nodes share the work (docs/NODE.md, "Sharing").

Five trusted nodes (real clones of a bare hub, real `git-jobs` processes) each take a turn —
``sync``, ``work any``, ``sync`` — on one commit of ``--jobs`` jobs that each sleep
``--sleep`` seconds. Node-seconds = the wall time of every node's ``work any``, summed.
Baseline, in the same run: every node runs everything (``--all``, as without a policy). Ours:
the policy shares the work with quorum 1 and 2. "The work" is what one node spends running every
job of the commit once: the baseline's node-seconds / 5 (the sleeps plus each run's checkout,
log and ledger writes).

    .venv/bin/python benches/share.py [--jobs 10] [--sleep 0.3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cob

NODES = 5
GIT_JOBS = str(Path(sys.executable).parent / "git-jobs")


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def _gj(cwd: Path, key: Path, *args: str) -> float:
    began = time.monotonic()
    subprocess.run(
        [GIT_JOBS, *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        env=dict(os.environ, GIT_JOBS_KEY=str(key)),
    )
    return time.monotonic() - began


def _cluster(base: Path, jobs: int, sleep: float, quorum: int) -> list[tuple[Path, Path]]:
    hub, up = base / "hub.git", base / "up"
    _git(base, "init", "-q", "--bare", "-b", "main", str(hub))
    _git(base, "init", "-q", "-b", "main", str(up))
    keys = [cob.Signer.generate().save(base / "keys" / f"n{i}") for i in range(NODES)]
    nids = [cob.Signer.from_file(k).nid for k in keys]
    table = ", ".join(f'"{nid}" = "node{i}"' for i, nid in enumerate(nids))
    defs = "".join(f'[jobs.j{i:02d}]\nrun = "sleep {sleep}"\n\n' for i in range(jobs))
    (up / ".git-jobs.toml").write_text(f"{defs}[policy]\nnodes = {{ {table} }}\nquorum = {quorum}\n")
    _git(up, "add", ".")
    _git(up, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "ci")
    _git(up, "push", "-q", str(hub), "main:main")
    out = []
    for i, key in enumerate(keys):
        path = base / f"n{i}"
        _git(base, "clone", "-q", str(hub), str(path))
        _git(path, "config", "jobs.isolation", "none")
        out.append((path, key))
    return out


def node_seconds(jobs: int, sleep: float, quorum: int, everything: bool) -> float:
    """Sum over the five nodes of their `work any` wall time, each after the others' turns."""
    with tempfile.TemporaryDirectory(prefix="gj-share-") as tmp:
        nodes = _cluster(Path(tmp), jobs, sleep, quorum)
        total = 0.0
        for path, key in nodes:
            _gj(path, key, "sync")
            total += _gj(path, key, "work", "any", *(["--all"] if everything else []))
            _gj(path, key, "sync")
        return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=10)
    ap.add_argument("--sleep", type=float, default=0.3)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    work = args.jobs * args.sleep
    cases = [("all (baseline)", 1, True), ("shared, quorum 1", 1, False), ("shared, quorum 2", 2, False)]
    found: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for _ in range(args.repeats):  # interleaved, so machine load hits every case alike
        for name, quorum, everything in cases:
            found[name].append(node_seconds(args.jobs, args.sleep, quorum, everything))
    base = statistics.median(found[cases[0][0]])
    print(
        f"{NODES} nodes, {args.jobs} jobs x {args.sleep}s = {work:.1f}s of work per commit;"
        f" medians of {args.repeats}"
    )
    print("| case | node-seconds | x the work | vs all |")
    print("|---|---:|---:|---:|")
    for name, _, _ in cases:
        med = statistics.median(found[name])
        print(f"| {name} | {med:.1f} s | {med / (base / NODES):.2f} | {med / base:.2f} |")


if __name__ == "__main__":
    main()
