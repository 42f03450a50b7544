"""git-jobs benchmarks against the physical floor, measured in the same run.

    .venv/bin/python benches/run.py            # full sizes, a few minutes on 2 cores
    .venv/bin/python benches/run.py --quick    # small sizes, well under a minute

Each case prints our figure, a baseline measured in the same run (the raw Git + crypto work of
benches/floor.py, stock git, or the library with its index switched off) and the ratio; times
are medians of repeats. See benches/README.md for what each case means and the last results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import msgspec  # noqa: E402
import pygit2  # noqa: E402
from floor import FloorWriter, floor_load  # noqa: E402
from gen import T0, big_job, make_commits, many_jobs, new_uuid7  # noqa: E402

import cob  # noqa: E402
import jobs  # noqa: E402

ROWS: list[dict[str, Any]] = []


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def compare(ours: Callable[[], object], floor: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Medians of ``repeats`` timings of each, interleaved so that background load hits both."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeats):
        for fn, out in ((ours, a), (floor, b)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return statistics.median(a), statistics.median(b)


def compare_all(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """:func:`compare` for any number of functions: medians, each round running them all."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times, strict=True):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return [statistics.median(t) for t in times]


def row(case: str, ours: float, base: float | None, unit: str, baseline: str, goal: str = "") -> None:
    ratio = (ours / base) if base else None
    ROWS.append(
        {
            "case": case,
            "ours": ours,
            "baseline": base,
            "unit": unit,
            "ratio": ratio,
            "baseline_is": baseline,
            "goal": goal,
        }
    )
    shown = f"{ratio:6.2f}x" if ratio is not None else "     -"
    b = f"{base:10.3f}" if base is not None else "         -"
    print(f"  {case:<46} {ours:10.3f} {b} {unit:<5} {shown}  ({baseline}) {goal}", flush=True)


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


# -- 1. write ---------------------------------------------------------------------------------
def case_write(base: Path, ops: int, repeats: int) -> None:
    """Per-op time of ``job.run`` + ``job.finish`` against the floor writer, in interleaved
    batches of 20 ops (median per-op time over batches), so that background load and the
    repository's growth hit both alike."""
    commits = make_commits(str(base / "w"), 1)
    repo = pygit2.Repository(str(base / "w"))
    signer = cob.Signer.generate()
    j = jobs.Jobs.open(repo, signer=signer)
    job = j.create(commits[0], "ci")
    batch = 20

    def ours() -> None:
        for _ in range(batch // 2):
            run_id = job.run("https://ci.example/log")
            job.finish(run_id, "succeeded")

    key = signer._key  # the same Ed25519 key, used raw
    enc = msgspec.json.Encoder()

    def floor_of(index: bool) -> Callable[[], None]:
        fw = FloorWriter(repo, key, signer.nid, index=index)
        ref = f"refs/floor/{'index' if index else 'plain'}/{job.id}"  # outside any namespace
        state: dict[str, str | None] = {"tip": job.id, "old": None}

        def floor() -> None:
            for i in range(batch):
                op = {"log": "https://ci.example/log", "run_id": new_uuid7(), "type": "run"}
                oid = fw.write(enc.encode([op]), [str(state["tip"])], ref, state["old"], T0 + i)
                state["tip"] = state["old"] = oid

        return floor

    plain, indexed = floor_of(False), floor_of(True)
    ours(), plain(), indexed()  # warm up: object fan-out directories, ref files
    medians = compare_all([ours, plain, indexed], max(repeats, ops // batch))
    ours_t, plain_t, indexed_t = (t / batch * 1e3 for t in medians)
    row(
        "1. write: run/finish, per op",
        ours_t,
        indexed_t,
        "ms",
        "floor: change (blob+tree+SSHSIG commit) + index (3 trees+SSHSIG commit) + CAS",
        "goal <=1.5x",
    )
    row(
        "   same, against a change alone",
        ours_t,
        plain_t,
        "ms",
        "floor of the per-object layout: blob+tree+SSHSIG commit+CAS",
    )


# -- 2. cold load of one big job --------------------------------------------------------------
def case_cold_load(base: Path, changes: int, nodes: int, repeats: int) -> None:
    path = str(base / "big")
    commits = make_commits(path, 1)
    repo = pygit2.Repository(path)
    t = time.perf_counter()
    big = big_job(repo, commits[0], changes, nodes)
    subprocess.run(["git", "repack", "-adq"], cwd=path, check=True)
    log(f"generated a job with {big.changes} changes from {nodes} nodes in {time.perf_counter() - t:.1f} s")

    def ours() -> None:
        store = cob.Store(path, cache=False)
        ev = store.load(jobs.JOB_TYPE, big.job_id)
        assert ev is not None and not ev.rejected and len(ev.accepted) == big.changes, ev and ev.rejected

    def floor() -> None:
        assert floor_load(pygit2.Repository(path), big.tips.values()) == big.changes

    ours_t, floor_t = compare(ours, floor, repeats)
    row(
        f"2. cold load: 1 job, {changes:,} changes, {nodes} nodes",
        ours_t,
        floor_t,
        "s",
        "floor: walk+SSHSIG verify+decode",
        "goal <=1.5x",
    )
    j = jobs.Jobs.open(path)
    j.get(big.job_id)  # fills the index
    warm = median_time(lambda: jobs.Jobs.open(path).get(big.job_id), repeats)
    row("   same job, warm (from the index)", warm, floor_t, "s", "floor as above")


# -- 3. warm find_by_commit at growing sizes -----------------------------------------------------
def case_find(base: Path, sizes: list[int], per_commit: int, repeats: int, fill_size: int) -> dict[int, str]:
    repos = {}
    for n in sizes:
        path = str(base / f"find{n}")
        t = time.perf_counter()
        commits = make_commits(path, max(1, n // per_commit))
        repo = pygit2.Repository(path)
        many_jobs(repo, commits, n)
        gen_s = time.perf_counter() - t
        t = time.perf_counter()
        j = jobs.Jobs.open(path)
        j.find_by_commit(commits[0])  # builds the object list (reads every root once)
        index_s = time.perf_counter() - t
        fill = ""
        if n == fill_size:  # case 6 loads these from the index
            t = time.perf_counter()
            count = sum(1 for _ in j.all())  # folds and stores every job
            assert count == n
            fill = f", all states indexed in {time.perf_counter() - t:.1f} s"
        log(
            f"{n:,} jobs over {len(commits):,} commits: generated in {gen_s:.1f} s, "
            f"listed (every root read) in {index_s:.1f} s{fill}"
        )
        time.sleep(0.1)  # past the racy-stamp window: what a long-lived reader sees
        probe = commits[len(commits) // 2]
        warm_reader = jobs.Jobs.open(path)
        assert len(warm_reader.find_by_commit(probe)) == per_commit
        calls = max(20, repeats * 10)

        def warm(reader: jobs.Jobs = warm_reader, c: str = probe, calls: int = calls) -> None:
            for _ in range(calls):
                reader.find_by_commit(c)

        ours_ms = median_time(warm, repeats) / calls * 1e3
        fresh_ms = median_time(lambda p=path, c=probe: jobs.Jobs.open(p).find_by_commit(c), repeats) * 1e3
        if n <= 10_000:
            nocache_ms = (
                median_time(lambda p=path, c=probe: jobs.Jobs.open(p, cache=False).find_by_commit(c), 1) * 1e3
            )
        else:
            nocache_ms = None
        row(
            f"3. warm find_by_commit, {n:,} jobs",
            ours_ms,
            nocache_ms,
            "ms",
            "no index: fold from scratch",
            "goal <=5 ms at 10k" if n == 10_000 else "",
        )
        row("   same, new process-like Jobs.open + query", fresh_ms, None, "ms", "")
        if n == fill_size:  # after `git gc`/`pack-refs`, every ref lives in packed-refs
            subprocess.run(["git", "pack-refs", "--all"], cwd=path, check=True)
            time.sleep(0.1)
            packed_reader = jobs.Jobs.open(path)
            packed_reader.find_by_commit(probe)

            def warm_packed(reader: jobs.Jobs = packed_reader, c: str = probe, calls: int = calls) -> None:
                for _ in range(calls):
                    reader.find_by_commit(c)

            packed_ms = median_time(warm_packed, repeats) / calls * 1e3
            row("   same, all refs packed (git pack-refs --all)", packed_ms, None, "ms", "")
        repos[n] = path
    return repos


# -- 4. 100 runs for one commit, end to end ------------------------------------------------------
def case_hundred_runs(base: Path, runs: int, repeats: int) -> None:
    counter = iter(range(1000))

    def ours() -> None:
        path = str(base / f"hundred{next(counter)}")
        commits = make_commits(path, 1)
        t = time.perf_counter()
        j = jobs.Jobs.open(path, signer=signer)
        job = j.create(commits[0], "ci")
        for i in range(runs):
            job.finish(job.run(f"https://ci.example/{i}"), "succeeded")
        found = j.find_by_commit(commits[0])
        assert len(found[0].runs_of(signer.nid)) == runs
        times.append(time.perf_counter() - t)

    signer = cob.Signer.generate()
    times: list[float] = []
    for _ in range(repeats):
        ours()
    ours_s = statistics.median(times)
    # Floor: the same number of raw signed writes.
    path = str(base / "hundred-floor")
    make_commits(path, 1)
    repo = pygit2.Repository(path)
    fw = FloorWriter(repo, signer._key, signer.nid, index=True)
    enc = msgspec.json.Encoder()

    def floor() -> None:
        ref = f"refs/floor/{new_uuid7()}"
        tip, old = None, None
        for i in range(2 * runs):
            payload = enc.encode([{"log": "https://ci.example/", "run_id": new_uuid7(), "type": "run"}])
            oid = fw.write(payload, [tip] if tip else [], ref, old, T0 + i)
            tip = old = oid

    floor_s = median_time(floor, repeats)
    row(
        f"4. {runs} runs started+finished, one commit",
        ours_s,
        floor_s,
        "s",
        f"floor: {2 * runs} raw signed writes + index; radicle-ci-broker: 40 s cached / 600 s",
        "goal <1 s",
    )


# -- 5. sync ------------------------------------------------------------------------------------
def case_sync(base: Path, changes: int, repeats: int) -> None:
    if not hasattr(jobs.Jobs, "sync"):
        log("Jobs.sync is not there: case 5 skipped")
        return
    sys.path.insert(0, str(HERE.parent / "tests"))
    from gitdaemon import GitDaemon

    served = base / "served"
    hub = str(served / "a.git")
    commits = make_commits(hub, 1)
    a = jobs.Jobs.open(hub, signer=cob.Signer.generate())
    job_count = max(1, changes // 20)
    muts = [a.create(commits[0], f"job{i}") for i in range(job_count)]
    b_path = str(base / "b")
    subprocess.run(["git", "clone", "-q", "--bare", hub, b_path], check=True)
    # Peer B has seen the jobs; then A writes ``changes`` new changes.
    with GitDaemon(served) as d:
        url = d.url("a.git")
        jobs.Jobs.open(b_path).sync(url, push=False)
        written = 0
        while written < changes:
            for m in muts:
                if written >= changes:
                    break
                m.finish(m.run("https://a.example/"), "succeeded")
                written += 2
        counter = iter(range(1000))

        def copy() -> str:
            dst = str(base / f"b{next(counter)}")
            shutil.copytree(b_path, dst)
            return dst

        ours_t, git_t = [], []
        for _ in range(repeats):
            dst = copy()
            t = time.perf_counter()
            report = jobs.Jobs.open(dst).sync(url, push=False)
            ours_t.append(time.perf_counter() - t)
            assert report.ok and len(report.changed) == job_count, report.summary()
            dst = copy()
            t = time.perf_counter()
            refspec = "refs/namespaces/*:refs/namespaces/*"
            subprocess.run(["git", "fetch", "-q", url, refspec], cwd=dst, check=True)
            git_t.append(time.perf_counter() - t)
    row(
        f"5. sync {changes:,} new changes over git:// loopback",
        statistics.median(ours_t),
        statistics.median(git_t),
        "s",
        "plain git fetch of the same refs",
    )


# -- 6. memory --------------------------------------------------------------------------------
MEM = r"""
import sys
import jobs
mode, path = sys.argv[1], sys.argv[2]
j = jobs.Jobs.open(path, cache=(mode != "nocache"))
n = 0
if mode != "baseline":
    for job in j.all():
        n += len(job.runs())
# ru_maxrss survives exec on Linux (it would report the bench's own peak): use VmHWM.
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(n, hwm)
"""


def case_memory(path: str, n: int) -> None:
    def measure(mode: str) -> float:
        out = subprocess.run(
            [sys.executable, "-c", MEM, mode, path],
            check=True,
            capture_output=True,
            text=True,
            cwd=str(HERE.parent),
        ).stdout.split()
        return int(out[1]) / 1024  # KiB

    baseline = measure("baseline")
    row(
        f"6. peak RSS, loading {n:,} jobs (indexed)",
        measure("warm"),
        baseline,
        "MB",
        "python + imports, nothing loaded",
        "goal <200 MB",
    )
    row(f"   peak RSS, loading {n:,} jobs (no index)", measure("nocache"), baseline, "MB", "as above")


# -- 7. status as a merge gate vs the plain rollup ------------------------------------------------
def case_gate(base: Path, nodes: int, repeats: int) -> None:
    """`status` under a policy (policy ref + definitions read, trust applied) against the plain
    per-node rollup of the same jobs: what the merge gate costs on top of reading the ledger."""
    path = base / "gate"
    make_commits(str(path), 1)
    signers = [cob.Signer.generate() for _ in range(nodes)]
    names = ("build", "test", "lint", "docs", "package")
    trusted = ", ".join(f'"{s.nid}" = "node{i}"' for i, s in enumerate(signers[: nodes // 2]))
    defs = "".join(f'[jobs.{n}]\nrun = "true"\nretry = 2\n' for n in names)
    (path / ".git-jobs.toml").write_text(f"{defs}[policy]\nnodes = {{ {trusted} }}\nquorum = 2\n")
    subprocess.run(["git", "checkout", "-q", "-f", "main"], cwd=path, check=True)
    subprocess.run(["git", "add", ".git-jobs.toml"], cwd=path, check=True)
    subprocess.run(
        ["git", "commit", "-q", "-m", "ci"],
        cwd=path,
        check=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "b",
            "GIT_AUTHOR_EMAIL": "b@e",
            "GIT_COMMITTER_NAME": "b",
            "GIT_COMMITTER_EMAIL": "b@e",
        },
    )
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=path, check=True, capture_output=True, text=True
    ).stdout.strip()
    for s in signers:
        store = jobs.Jobs.open(str(path), signer=s)
        for n in names:
            job = store.create(commit, n)
            job.finish(job.run(f"https://ci.example/{n}"), "succeeded")
    from jobs.rollup import commit_status

    reader = jobs.Jobs.open(str(path))
    assert reader.status(commit).outcome == "succeeded"
    gate_s, plain_s = compare(
        lambda: reader.status(commit), lambda: commit_status(reader, commit), repeats * 4
    )
    row(
        f"7. status as a merge gate, {len(names)} jobs x {nodes} nodes",
        gate_s * 1e3,
        plain_s * 1e3,
        "ms",
        "plain per-node rollup of the same jobs",
        "goal <=2x",
    )


def machine() -> str:
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.split()[-1]
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, pygit2 {pygit2.__version__} (libgit2 "
        f"{pygit2.LIBGIT2_VERSION}), git {git_version}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--dir", help="where to build repositories (default: /dev/shm if present, else $TMPDIR)")
    ap.add_argument("--cases", default="1,2,3,4,5,6,7", help="comma-separated case numbers")
    ap.add_argument("--sizes", help="job counts for case 3, e.g. 1000,10000,50000")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = ap.parse_args()
    cases = {int(c) for c in args.cases.split(",")}
    q = args.quick
    parent = args.dir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    base = Path(tempfile.mkdtemp(prefix="git-jobs-bench-", dir=parent))
    os.environ.setdefault("GIT_CONFIG_NOSYSTEM", "1")
    os.environ["HOME"] = str(base / "home")
    (base / "home").mkdir()
    (base / "home" / ".gitconfig").write_text(
        "[user]\n\tname = Bench\n\temail = b@example.invalid\n[init]\n\tdefaultBranch = main\n"
    )
    print(f"machine: {machine()}")
    print(f"repositories in {base} ({'quick' if q else 'full'} sizes)")
    print(f"  {'case':<46} {'ours':>10} {'baseline':>10} {'unit':<5} {'ratio':>7}")
    started = time.perf_counter()
    try:
        repeats = 3 if q else 5
        if 1 in cases:
            case_write(base, 40 if q else 200, repeats)
        if 2 in cases:
            case_cold_load(base, 1_000 if q else 10_000, 20, repeats)
        repos: dict[int, str] = {}
        if 3 in cases or 6 in cases:
            if args.sizes:
                sizes = [int(s) for s in args.sizes.split(",")]
            else:
                sizes = [1_000, 5_000] if q else [1_000, 10_000, 50_000]
            if 3 not in cases:
                sizes = [max(sizes)]
            fill_size = 10_000 if 10_000 in sizes else max(sizes)
            repos = case_find(base, sizes, 5, repeats, fill_size)
        if 4 in cases:
            case_hundred_runs(base, 100, repeats)
        if 5 in cases:
            case_sync(base, 200 if q else 1_000, 3)
        if 6 in cases and repos:
            case_memory(repos[fill_size], fill_size)
        if 7 in cases:
            case_gate(base, 10 if q else 40, repeats)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "rows": ROWS}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
