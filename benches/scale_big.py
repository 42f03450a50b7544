"""Issue 30's rows (big ledgers), run by ``benches/scale.py --cases g --sizes 1000,10000``.

For each size (entries = nodes x jobs, 20 nodes by default) a hub is built (scale.build) and a
node M cloned from it; every row is ours next to its floor, timed in the same run, interleaved,
medians of ``--repeats``. Then, per row, the growth exponent between the sizes
(log(t2/t1) / log(n2/n1): 1.0 is linear, 0 is flat).

g1. cold ``git jobs list``, first-ever (index, kept states, verified set and its secret deleted); floor: a
    process that walks every commit the index refs reach, decodes its ops and checks its
    signature (no order, no rules, no fold), on one core.
g2. the same first-ever listing in-process, signatures checked on every core
    (cob.parallel) against one core (parallel off): what the workers gained.
g3. cold list, the index deleted (the verified set and the kept states, files of their own,
    stay); floor: the same walk and decode without signatures.
g3b. cold list with only the verified set kept (index and kept states deleted: every change
    read and folded, no signature checked); floor: as g3.
g4. cold list after ``git jobs cache rebuild`` (index emptied, states kept by tips).
g5. warm list; floor: a process that reads every stored state row from the index.
g6. cold ``git jobs status REV`` (index deleted, verified set and kept states kept); floor:
    ``git jobs --version``.
g6b. ``git jobs status REV`` in a new process with its index (what a user's call costs); floor:
    ``git jobs --version``.
g7. in-process ``Jobs.sync`` of one new change (a node's daemon) on a job the writer changed
    just before (its other changes are recent: CI on a new commit); floor: a one-commit ``git
    fetch`` between two small repositories (both over file paths).
g7n. g7 with the hub served by ``git daemon`` on 127.0.0.1 (git lists and fetches; a hub on a
    local path is read in place, cob.sync.localhub); floor: the same fetch over ``git://``.
g7b. the same for the writer's first change on an old job (its parents, the job's changes from
    every node, were written long before: git's negotiation walks back to them).
g8. one write (``job.run``) on the hub's 20-namespace clone, in-process; floor:
    ``FloorWriter(index=True)`` (change + index commit + compare-and-swap) in the same repository.
g1, g3, g3b, g5, g6 and g6b also give a row of CPU seconds and one of peak RSS (MB) of the
    process against their floor's, measured by a small parent process (:data:`MEASURE`).
g9. memory per write of a long-lived store over 1,000 writes after 1,500 warm-up writes (a new
    job, its run, its finish, as a node writes; RSS from /proc/self/statm after gc); floor: the
    same number of FloorWriter writes.
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pygit2
from floor import FloorWriter
from gen import T0, make_commits, new_uuid7

import cob
import jobs
from cob import parallel
from tests.gitdaemon import GitDaemon

FILES = ("git-jobs-index.sqlite3", "git-jobs-index.sqlite3-wal", "git-jobs-index.sqlite3-shm")
SET_FILES = ("git-jobs-verified", "git-jobs-secret")
# The states kept by tips (cob.statecache), which outlive the index: a first-ever load has none.
STATE_FILES = ("git-jobs-states.sqlite3", "git-jobs-states.sqlite3-wal", "git-jobs-states.sqlite3-shm")
FLOOR_WALK = r"""
import sys, pygit2, msgspec
sys.path.insert(0, sys.argv[3])
from floor import _verify
repo = pygit2.Repository(sys.argv[1])
verify = sys.argv[2] == "1"
walker = repo.walk(None, pygit2.enums.SortMode.NONE)
for ref in repo.references.iterator():
    if ref.name.startswith("refs/namespaces/"):
        walker.push(ref.target)
n = 0
for commit in walker:
    tree = commit.tree
    if "ops" in tree:
        msgspec.json.decode(tree["ops"].data)
    signature, payload = commit.gpg_signature
    if verify and signature is not None:
        _verify(signature.decode(), payload)
    n += 1
print(n)
"""
# Runs a command as a child of this small process and prints its wall time, CPU seconds and
# peak RSS (wait4's rusage of that child alone). Not from the bench itself: Linux keeps the
# high-water mark across exec, so a child forked from the (large) bench reports the bench's.
MEASURE = r"""
import os, sys, time
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t
print(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, os.waitstatus_to_exitcode(status))
"""
FLOOR_WARM = r"""
import sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute("SELECT data FROM evaluations").fetchall()
print(len(rows))
"""


def _rm(gitdir: str, names: tuple[str, ...]) -> None:
    for name in names:
        Path(gitdir, name).unlink(missing_ok=True)


def _rss_kb() -> float:
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024


def case_big(scale: Any, base: Path, sizes: list[int], nodes: int, repeats: int) -> None:
    """The rows above at each size, then the growth exponents."""
    found: dict[str, dict[int, tuple[float, float | None]]] = {}
    for size in sizes:
        per = max(1, size // nodes)
        scale.log(f"g: building {nodes} nodes x {per:,} jobs = {nodes * per:,} entries")
        hub = scale.build(str(base / f"hub{size}"), nodes, per)
        m = scale.clone(hub.path, base / f"m{size}.git")
        scale.use_key(m, hub.signers[0], base / "keys", f"m{size}")
        for name, (ours, floor) in _one_size(scale, base, hub, m, size, repeats).items():
            found.setdefault(name, {})[size] = (ours, floor)
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        for name, by_size in found.items():
            if name.startswith(("g2", "g9")) or name.endswith("RSS"):  # ratios; KB near zero; MB
                continue
            (a, fa), (b, fb) = by_size[lo], by_size[hi]
            exp = math.log(b / a) / math.log(hi / lo) if a > 0 and b > 0 else float("nan")
            floor = ""
            if fa and fb:
                floor = f"floor's exponent {math.log(fb / fa) / math.log(hi / lo):.2f}"
            scale.row(f"   growth {name} {lo:,}->{hi:,}", exp, None, "exp", floor)


class Measured:
    """Whole processes timed by :data:`MEASURE`: wall seconds returned, and per label the CPU
    seconds and peak RSS (MB) of each run kept for the CPU and memory rows."""

    def __init__(self, cwd: str) -> None:
        self.cwd = cwd
        self.cpu: dict[str, list[float]] = {}
        self.rss: dict[str, list[float]] = {}

    def __call__(self, label: str, args: list[str], ok: tuple[int, ...] = (0,)) -> float:
        done = subprocess.run(
            [sys.executable, "-c", MEASURE, *args], cwd=self.cwd, capture_output=True, text=True, check=True
        )
        wall, cpu, rss_kb, code = done.stdout.split()
        if int(code) not in ok:
            raise RuntimeError(f"{' '.join(args)} exited {code}: {done.stderr[-2000:]}")
        self.cpu.setdefault(label, []).append(float(cpu))
        self.rss.setdefault(label, []).append(int(rss_kb) / 1024)
        return float(wall)

    def rows(
        self, scale: Any, name: str, ours: str, floor: str, size: int
    ) -> dict[str, tuple[float, float | None]]:
        """The CPU and peak-RSS rows of ``ours`` against ``floor`` (medians)."""
        out: dict[str, tuple[float, float | None]] = {}
        for what, table, unit in (("CPU", self.cpu, "s"), ("peak RSS", self.rss, "MB")):
            a, b = statistics.median(table[ours]), statistics.median(table[floor])
            scale.row(f"   {name} {what}, {size:,}", a, b, unit, f"{floor} {what}")
            out[f"{name} {what}"] = (a, b)
        return out


def _one_size(
    scale: Any, base: Path, hub: Any, m: str, size: int, repeats: int
) -> dict[str, tuple[float, float | None]]:
    out: dict[str, tuple[float, float | None]] = {}
    walk = [sys.executable, "-c", FLOOR_WALK, m]
    here = str(Path(__file__).resolve().parent)
    measure = Measured(m)

    def cli(*args: str, ok: tuple[int, ...] = (0,), label: str = "") -> float:
        return measure(label or args[0], [scale.GIT_JOBS, *args], ok=ok)

    def first_ever() -> float:
        _rm(m, FILES + SET_FILES + STATE_FILES)
        return cli("list", label="g1")

    def set_kept() -> float:
        _rm(m, FILES)
        return cli("list", label="g3")

    def set_only() -> float:
        _rm(m, FILES + STATE_FILES)
        return cli("list", label="g3b")

    def rebuilt() -> float:
        cob.cache.Cache(m).clear()
        return cli("list", label="g4")

    def floor_verify() -> float:
        return measure("walk+verify", [*walk, "1", here])

    def floor_decode() -> float:
        return measure("walk", [*walk, "0", here])

    ours, floor = scale.interleaved([first_ever, floor_verify], repeats)
    scale.row(f"g1. cold list, first-ever, {size:,} entries", ours, floor, "s", "walk+decode+verify, 1 core")
    out["g1 cold list first-ever"] = (ours, floor)
    out.update(measure.rows(scale, "g1", "g1", "walk+verify", size))
    out.update(_parallel_gain(scale, m, size, repeats))
    ours, floor = scale.interleaved([set_kept, floor_decode], repeats)
    scale.row(f"g3. cold list, index deleted, {size:,}", ours, floor, "s", "walk+decode, no signatures")
    out["g3 cold list index deleted"] = (ours, floor)
    out.update(measure.rows(scale, "g3", "g3", "walk", size))
    ours, floor = scale.interleaved([set_only, floor_decode], repeats)
    scale.row(f"g3b. cold list, only the set kept, {size:,}", ours, floor, "s", "walk+decode, no signatures")
    out["g3b cold list only set kept"] = (ours, floor)
    out.update(measure.rows(scale, "g3b", "g3b", "walk", size))
    ours, floor = scale.interleaved([rebuilt, floor_decode], repeats)
    scale.row(f"g4. list after cache rebuild, {size:,}", ours, floor, "s", "walk+decode, no signatures")
    out["g4 list after rebuild"] = (ours, floor)
    cli("list")
    warm_floor = [sys.executable, "-c", FLOOR_WARM, str(Path(m, FILES[0]))]
    ours, floor = scale.interleaved(
        [lambda: cli("list", label="g5"), lambda: measure("read rows", warm_floor)], repeats
    )
    scale.row(f"g5. warm list, {size:,}", ours, floor, "s", "a process reading every stored state")
    out["g5 warm list"] = (ours, floor)
    out.update(measure.rows(scale, "g5", "g5", "read rows", size))
    rev = hub.commits[len(hub.commits) // 2]

    def cold_status() -> float:
        _rm(m, FILES)
        return cli("status", rev, ok=(0, 1, 8), label="g6")

    ours, floor = scale.interleaved([cold_status, lambda: cli("--version")], repeats)
    scale.row(f"g6. cold status REV, index deleted, {size:,}", ours, floor, "s", "git jobs --version")
    out["g6 cold status"] = (ours, floor)
    out.update(measure.rows(scale, "g6", "g6", "--version", size))
    cli("list")
    ours, floor = scale.interleaved(
        [lambda: cli("status", rev, ok=(0, 1, 8), label="g6b"), lambda: cli("--version")], repeats
    )
    scale.row(f"g6b. status REV, new process, index kept, {size:,}", ours, floor, "s", "git jobs --version")
    out["g6b status new process"] = (ours, floor)
    out.update(measure.rows(scale, "g6b", "g6b", "--version", size))
    cli("list")
    out.update(_sync_and_writes(scale, base, hub, m, size, repeats))
    return out


def _parallel_gain(scale: Any, m: str, size: int, repeats: int) -> dict[str, tuple[float, float | None]]:
    def listing(on: bool) -> Callable[[], float]:
        def run() -> float:
            _rm(m, FILES + SET_FILES + STATE_FILES)
            saved = parallel.MIN_CHANGES
            parallel.MIN_CHANGES = saved if on else 10**12
            try:
                t = time.perf_counter()
                n = sum(1 for _ in jobs.Jobs.open(m).all())
                elapsed = time.perf_counter() - t
            finally:
                parallel.MIN_CHANGES = saved
            assert n > 0
            return elapsed

        return run

    ours, floor = scale.interleaved([listing(True), listing(False)], repeats)
    cores = parallel.workers()
    scale.row(f"g2. first-ever list in-process, {cores} cores, {size:,}", ours, floor, "s", "same, one core")
    return {"g2 first-ever parallel": (ours, floor)}


def _sync_and_writes(
    scale: Any, base: Path, hub: Any, m: str, size: int, repeats: int
) -> dict[str, tuple[float, float | None]]:
    node = jobs.Jobs.open(m, signer=hub.signers[0])
    return {**_syncs(scale, base, hub, node, size, repeats), **_writes(scale, hub, node, m, size, repeats)}


def _syncs(
    scale: Any, base: Path, hub: Any, node: jobs.Jobs, size: int, repeats: int
) -> dict[str, tuple[float, float | None]]:
    out: dict[str, tuple[float, float | None]] = {}
    a_path = scale.clone(hub.path, base / f"a{size}.git")
    writer = hub.signers[1]
    a = jobs.Jobs.open(a_path, signer=writer, cache=False)
    small = str(base / f"small{size}")
    make_commits(small, 1)
    small_copy = base / f"small-copy{size}.git"
    scale.git("clone", "-q", "--bare", small, str(small_copy))
    counter = iter(range(10**6))
    n = len(hub.job_ids)

    def in_process(hot: bool, remote: str = hub.path) -> float:
        i = next(counter)
        if hot:  # one of 4 jobs `a` wrote just before: CI on a new commit
            job = a.get_mut(hub.job_ids[n - 1 - i % 4])
        else:  # `a`'s first change on one of the last 5 % of the ledger's jobs
            job = a.get_mut(hub.job_ids[n - 5 - (i * 7919) % max(1, n // 20 - 4)])
        assert job is not None
        job.run(f"https://a.example/{i}")
        assert a.sync(hub.path, fetch=False).ok
        t = time.perf_counter()
        report = node.sync(remote)
        elapsed = time.perf_counter() - t
        assert report.ok and report.fetched, report.summary()
        return elapsed

    def small_fetch(remote: str = small) -> float:
        tree = scale.git("rev-parse", "main^{tree}", cwd=small)
        new = scale.git("commit-tree", tree, "-p", "main", "-m", f"c{next(counter)}", cwd=small)
        scale.git("update-ref", "refs/heads/main", new, cwd=small)
        return float(scale.timed(["git", "fetch", "-q", remote, "refs/heads/*:refs/heads/*"], small_copy))

    for _ in range(5):  # the 4 hot jobs written once, and git's first fetch
        in_process(True)
    small_fetch()
    ours, floor = scale.interleaved([lambda: in_process(True), small_fetch], max(5, repeats))
    scale.row(f"g7. in-process Jobs.sync, 1 new change, {size:,}", ours, floor, "s", "git fetch 1 commit")
    out["g7 in-process sync"] = (ours, floor)
    ours, floor = scale.interleaved([lambda: in_process(False), small_fetch], max(5, repeats))
    scale.row(f"g7b. the same, an old job's first change, {size:,}", ours, floor, "s", "git fetch 1 commit")
    out["g7b in-process sync old job"] = (ours, floor)
    with GitDaemon(base) as daemon:  # g7n: both over git:// on loopback
        hub_url = daemon.url(os.path.relpath(hub.path, base))
        small_url = daemon.url(os.path.relpath(small, base))
        in_process(True, hub_url)
        small_fetch(small_url)
        ours, floor = scale.interleaved(
            [lambda: in_process(True, hub_url), lambda: small_fetch(small_url)], max(5, repeats)
        )
    scale.row(f"g7n. g7 over git daemon, {size:,}", ours, floor, "s", "git fetch 1 commit, git://")
    out["g7n in-process sync over git daemon"] = (ours, floor)
    return out


def _writes(
    scale: Any, hub: Any, node: jobs.Jobs, m: str, size: int, repeats: int
) -> dict[str, tuple[float, float | None]]:
    out: dict[str, tuple[float, float | None]] = {}
    counter = iter(range(10**6))
    n = len(hub.job_ids)
    signer = hub.signers[0]
    fw = FloorWriter(pygit2.Repository(m), signer._key, signer.nid, index=True)
    enc = msgspec.json.Encoder()
    jobs_to_write = [node.get_mut(hub.job_ids[i % n]) for i in range(8)]
    floor_tip: list[str | None] = [None]

    def write() -> float:
        job = jobs_to_write[next(counter) % len(jobs_to_write)]
        assert job is not None
        t = time.perf_counter()
        job.run("https://ci.example/w")
        return time.perf_counter() - t

    def floor_write() -> float:
        payload = enc.encode([{"log": "https://ci.example/", "run_id": new_uuid7(), "type": "run"}])
        t = time.perf_counter()
        tip = floor_tip[0]
        floor_tip[0] = fw.write(payload, [tip] if tip else [], "refs/floor/x", tip, T0 + next(counter))
        return time.perf_counter() - t

    write(), floor_write()
    # medians of a few milliseconds, moved by the load: many pairs
    ours, floor = scale.interleaved([write, floor_write], max(200, repeats * 60))
    scale.row(
        f"g8. one write on a {len(hub.signers)}-node hub, {size:,}",
        ours * 1e3,
        floor * 1e3,
        "ms",
        "FloorWriter(index=True)",
    )
    out["g8 write"] = (ours, floor)

    def per_write(fn: Callable[[], float], warmup: int = 1500, count: int = 1000) -> float:
        for _ in range(warmup):  # the bounded caches fill (verified changes 2 MiB, libgit2's)
            fn()
        before = _rss_kb()
        for _ in range(count):
            fn()
        return (_rss_kb() - before) / count

    current: list[Any] = [None, None]
    steps = iter(range(10**7))

    def node_write() -> float:
        """As a node writes: a new job, a run on it, its finish (the jobs' own states do not
        pile up in this process; what grows per write here is kept by the store)."""
        i = next(steps)
        if i % 3 == 0:
            current[0] = node.create(hub.commits[i % len(hub.commits)], f"mem{i // 3}")
        elif i % 3 == 1:
            current[1] = current[0].run("https://ci.example/m")
        else:
            current[0].finish(current[1], "succeeded")
        return 0.0

    ours_kb, floor_kb = per_write(node_write), per_write(floor_write)
    scale.row(f"g9. memory per write, {size:,}", ours_kb, floor_kb, "KB", "FloorWriter writes (RSS after gc)")
    out["g9 memory per write"] = (max(ours_kb, 1e-3), max(floor_kb, 1e-3))
    return out
