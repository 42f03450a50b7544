"""Many namespaces on a hub: what a flood of them costs an honest node.

    python -m tests.stress.namespaces --namespaces 10000 --jobs 50

A hub pusher (no key needed) points N namespaces' index refs at one job's unsigned root;
another (with N throwaway keys) gives each namespace a validly signed index naming a validly
signed change of that job. Bob, an honest node
with ``--jobs`` jobs on HEAD, syncs; the harness times the sync and Bob's everyday commands
(`status`, `list`, `work any --dry-run`) before and after, as ratios to the baseline measured in
the same run (medians of ``--repeat``). Figures go into SECURITY.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cob
import jobs
from cob import sigrefs
from cob.change import Codec, write_change
from cob.identity import nid_from_public_key

from .common import git

GIT_JOBS = str(Path(sys.executable).parent / "git-jobs")
COMMANDS = {
    "status": ["status", "HEAD"],
    "list": ["list"],
    "work any --dry-run": ["work", "any", "--dry-run"],
}


def cli(repo: Path, key: Path, *args: str) -> float:
    env = dict(os.environ, GIT_JOBS_KEY=str(key))
    start = time.monotonic()
    res = subprocess.run([GIT_JOBS, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=3600)
    took = time.monotonic() - start
    if res.returncode not in (0, 8, 1) or "Traceback" in res.stderr:
        raise RuntimeError(f"git jobs {' '.join(args)}: {res.returncode} {res.stderr[-2000:]}")
    return took


def timings(repo: Path, base: Path, key: Path, repeat: int) -> tuple[dict[str, float], dict[str, float]]:
    """Medians for ``repo`` and for the untouched copy ``base``, interleaved (so background
    load hits both alike)."""
    for r in (repo, base):
        cli(r, key, "list")  # warm the index once: we measure steady state, not the first fold
    ours: dict[str, list[float]] = {n: [] for n in COMMANDS}
    theirs: dict[str, list[float]] = {n: [] for n in COMMANDS}
    for _ in range(repeat):
        for name, args in COMMANDS.items():
            theirs[name].append(cli(base, key, *args))
            ours[name].append(cli(repo, key, *args))
    return (
        {n: statistics.median(v) for n, v in ours.items()},
        {n: statistics.median(v) for n, v in theirs.items()},
    )


def setup(base: Path, n_jobs: int) -> tuple[Path, Path, Path, str]:
    """Bob's repository with ``n_jobs`` released jobs on HEAD, synced to a bare hub."""
    hub, bob = base / "hub.git", base / "bob"
    git(base, "init", "-q", "--bare", str(hub))
    git(base, "init", "-q", str(bob))
    defs = "".join(f"[jobs.j{i:03d}]\nrun = 'true'\n" for i in range(n_jobs))
    (bob / ".git-jobs.toml").write_text(defs)
    git(bob, "add", ".git-jobs.toml")
    git(bob, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "defs")
    key = cob.Signer.generate().save(base / "bob.key")
    cli(bob, key, "release")
    cli(bob, key, "sync", str(hub))
    store = jobs.Jobs.open(bob)
    first = sorted(j.id for j in store.all())[0]
    return hub, bob, key, first


def flood_keyless(hub: Path, job_id: str, n: int) -> None:
    """``n`` namespaces (valid NIDs, no key behind them) whose index ref points at the job's
    (unsigned) root: nothing any of them could sign."""
    lines = "".join(
        f"create {cob.index_ref(nid_from_public_key(secrets.token_bytes(32)))} {job_id}\n" for _ in range(n)
    )
    subprocess.run(
        ["git", "--git-dir", str(hub), "update-ref", "--stdin"], input=lines, text=True, check=True
    )


def flood_signed(hub: Path, job_id: str, n: int) -> None:
    """``n`` namespaces, each with a change of the job signed by its own throwaway key, named
    by that key's own signed index."""
    import pygit2

    repo = pygit2.Repository(str(hub))
    codec = Codec(jobs.JOB_TYPE)
    lines = []
    for _ in range(n):
        signer = cob.Signer.generate()
        oid = write_change(repo, codec, signer, signer.nid, [jobs.Release()], [job_id])
        index = sigrefs.write_commit(repo, signer, signer.nid, None, {(jobs.TYPENAME, job_id): oid})
        lines.append(f"create {cob.index_ref(signer.nid)} {index}\n")
    subprocess.run(
        ["git", "--git-dir", str(hub), "update-ref", "--stdin"], input="".join(lines), text=True, check=True
    )


def sync(bob: Path, key: Path, hub: Path) -> tuple[float, dict[str, int], int]:
    env = dict(os.environ, GIT_JOBS_KEY=str(key))
    start = time.monotonic()
    res = subprocess.run(
        [GIT_JOBS, "sync", str(hub), "--json"],
        cwd=bob,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    )
    took = time.monotonic() - start
    report = json.loads(res.stdout)
    kinds: dict[str, int] = {}
    for r in report["refused"]:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    return took, kinds, len(report["fetched"])


def namespaces_of(repo: Path) -> int:
    out = git(repo, "for-each-ref", "--format=%(refname)", "refs/namespaces/").stdout.split()
    return len({r.split("/")[2] for r in out})


def row(label: str, measured: tuple[dict[str, float], dict[str, float]]) -> None:
    now, base = measured
    cells = "  ".join(f"{k} {now[k]:.2f} s (x{now[k] / base[k]:.2f})" for k in COMMANDS)
    print(f"{label:<36} {cells}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--namespaces", type=int, default=10_000)
    p.add_argument("--jobs", type=int, default=50)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="git-jobs-ns-", dir=args.dir) as tmp:
        base = Path(tmp)
        hub, bob, key, job_id = setup(base, args.jobs)
        untouched = base / "baseline"
        subprocess.run(["cp", "-a", str(bob), str(untouched)], check=True)
        print(
            f"{args.jobs} jobs on HEAD; each row: median of {args.repeat}, and the ratio to the "
            "same command on an untouched copy measured interleaved",
            flush=True,
        )

        flood_keyless(hub, job_id, args.namespaces)
        took, kinds, fetched = sync(bob, key, hub)
        print(
            f"sync with {args.namespaces} keyless namespaces: {took:.2f} s, fetched {fetched}, "
            f"refused {kinds}, namespaces kept {namespaces_of(bob)}",
            flush=True,
        )
        row("after the keyless flood", timings(bob, untouched, key, args.repeat))

        flood_signed(hub, job_id, args.namespaces)
        took, kinds, fetched = sync(bob, key, hub)
        print(
            f"sync with {args.namespaces} signed namespaces: {took:.2f} s, fetched {fetched}, "
            f"refused {kinds}, namespaces kept {namespaces_of(bob)}",
            flush=True,
        )
        row("after one sync of the signed flood", timings(bob, untouched, key, args.repeat))

        # Everything taken (what many syncs, or a plain `git fetch` of every namespace, gives):
        git(bob, "fetch", "-q", str(hub), "+refs/namespaces/*:refs/namespaces/*")
        cli(bob, key, "list")  # the one fold of the job that holds them all
        print(f"all {namespaces_of(bob)} namespaces taken by plain git fetch", flush=True)
        row("every namespace holding one job", timings(bob, untouched, key, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
