"""Scale: issue 19's goal figures at 20 nodes x 5,000 jobs (100,000 (node, job) entries).

    .venv/bin/python benches/scale.py                      # full size: ~4-6 minutes on 2 cores
    .venv/bin/python benches/scale.py --quick              # 4 nodes x 500 jobs, well under a minute
    .venv/bin/python benches/scale.py --nodes 20 --jobs-per-node 5000 --json out.json

The issue counts "job refs" as (node, job) pairs: under the old layout each was one ref. The
point of the per-node index ref (``cob.sigrefs``) is that what a sync, a warm query or the
refs on disk cost follows the nodes and what moved, not nodes x jobs; this bench builds a hub
of that size quickly (so anyone can re-run it) and measures each goal next to a baseline timed
in the same run, interleaved, so background load hits both alike. Times are medians.

Rows (see benches/README.md, section "Scale"):

a. sync of 1 new change: ``git jobs sync URL`` as a process in a node clone that has
   everything, after another node pushed one new run; baseline ``git fetch`` of one new
   commit between two small repositories, both over the same ``git daemon`` on 127.0.0.1.
b. warm ``git jobs status REV`` minus start-up (``git jobs --version``), as processes.
c. cold ``git jobs list`` (SQLite index deleted), then warm.
d. bytes of refs/ + packed-refs, before and after ``git pack-refs --all``.
e. 100 x (find_by_commit, run, finish) among 10,000 jobs in one process; baseline 200 raw
   signed writes (benches/floor.py).
f. plain ``git fetch`` of ``refs/namespaces/*`` after the same new change (what a plain-git
   user pays).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import math
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# The project root last: an installed (non-editable) git-jobs wins over the source tree, so the
# in-process rows measure what users install; only the tests' helpers come from the tree.
sys.path.append(str(HERE.parent))
sys.path.insert(0, str(HERE))

import msgspec  # noqa: E402
import pygit2  # noqa: E402
from floor import FloorWriter  # noqa: E402
from gen import T0, make_commits, new_uuid7, uuid7_at  # noqa: E402

import cob  # noqa: E402
import jobs  # noqa: E402
from cob import sigrefs  # noqa: E402
from cob.change import Codec, write_change, write_root  # noqa: E402
from tests.gitdaemon import GitDaemon  # noqa: E402

# The venv's console script, beside this interpreter (as tests/clirunner.py finds it).
GIT_JOBS = str(Path(sys.executable).parent / "git-jobs")
NAMES = ("build", "test", "lint", "docs", "package")  # 5 jobs per commit, as in the issue
INDEX_FILE = "git-jobs-index.sqlite3"
ROWS: list[dict[str, Any]] = []


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


def row(
    case: str,
    ours: float,
    base: float | None,
    unit: str,
    baseline: str,
    goal: str = "",
    met: bool | None = None,
) -> None:
    """One table line; ``met`` is the verdict against the goal when the row has one."""
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
            "met": met,
        }
    )
    shown = f"{ratio:6.2f}x" if ratio is not None else "      -"
    b = f"{base:10.3f}" if base is not None else "         -"
    verdict = "" if met is None else (" MET" if met else " NOT MET")
    print(f"  {case:<44} {ours:10.3f} {b} {unit:<3} {shown}  {goal}{verdict}  ({baseline})", flush=True)


def git(*args: str, cwd: str | Path | None = None) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def timed(args: Sequence[str], cwd: str | Path, ok: Sequence[int] = (0,)) -> float:
    """Wall time of one whole process, as a shell would run it (stdout discarded)."""
    t = time.perf_counter()
    done = subprocess.run(
        list(args),
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    elapsed = time.perf_counter() - t
    if done.returncode not in ok:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return elapsed


def interleaved(fns: Sequence[Callable[[], float]], repeats: int) -> list[float]:
    """Medians of each timing function, called in turn ``repeats`` times (each returns seconds)."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times, strict=True):
            out.append(fn())
    return [statistics.median(t) for t in times]


# -- building ---------------------------------------------------------------------------------
@dataclass
class Built:
    """A generated repository: job ``i`` is ``NAMES[i % 5]`` on ``commits[i // 5]``."""

    path: str
    commits: list[str]
    job_ids: list[str]
    signers: list[cob.Signer]
    seconds: float


def _node_history(
    repo: pygit2.Repository,
    codec: Codec,
    signer: cob.Signer,
    k: int,
    roots: Sequence[str],
    rng: random.Random,
    chunk: int,
) -> str:
    """Node ``k``'s one signed change per job, and its index chain; returns the index tip.

    Each change holds what a node that released, ran and finished the job writes
    (``release``, ``run``, ``finish``; a real node writes them as three changes, here in one
    to cut the build), parent the content-addressed root. The index gets one commit per
    ``chunk`` jobs, dated just after its changes, as a node that writes as it goes (one index
    commit per write) would have it, only coarser. Not one 255-parent commit after all the
    changes: git's revision walk (2.39) keeps its queue as a date-sorted linked list, and
    thousands of older parents queued at once made a one-change push walk for minutes.
    """
    tip: str | None = None
    pending: dict[sigrefs.Key, str] = {}
    for i, root in enumerate(roots):
        when = T0 + i * 60 + k
        run_id = uuid7_at(when, rng)
        ops = [
            jobs.Release(),
            jobs.StartRun(run_id, f"https://ci{k}.example/{i}"),
            jobs.FinishRun(run_id, "succeeded"),
        ]
        pending[(jobs.TYPENAME, root)] = write_change(
            repo, codec, signer, signer.nid, ops, [root], timestamp=when
        )
        if len(pending) == chunk or i == len(roots) - 1:
            tip = sigrefs.write_commit(repo, signer, signer.nid, tip, pending, timestamp=when + 30)
            pending = {}
    assert tip is not None
    return tip


def build(path: str, nodes: int, job_count: int, seed: int = 3, chunk: int = 25) -> Built:
    """``job_count`` jobs (5 per commit), every node with one finished run on each, one index
    chain per node (``cob.sigrefs.write_commit``) and its ref, everything in one pack.

    The library's own writers are used (no hand-made objects), on tmpfs, where a loose object
    costs microseconds; ``git repack`` and ``git commit-graph`` then do what ``git gc`` does.
    """
    t = time.perf_counter()
    commits = make_commits(path, math.ceil(job_count / len(NAMES)))
    repo = pygit2.Repository(path)
    codec = Codec(jobs.JOB_TYPE)
    job_ids = [
        write_root(repo, codec, [jobs.Request(commits[i // len(NAMES)], NAMES[i % len(NAMES)])])
        for i in range(job_count)
    ]
    rng = random.Random(seed)
    signers = [cob.Signer.generate() for _ in range(nodes)]
    for k, signer in enumerate(signers):
        index = _node_history(repo, codec, signer, k, job_ids, rng, chunk)
        repo.create_reference_direct(sigrefs.index_ref(signer.nid), pygit2.Oid(hex=index), False)
        if k == 0 or (k + 1) % 5 == 0:
            log(f"  node {k + 1}/{nodes}: {job_count:,} changes + index, {time.perf_counter() - t:.0f} s")
    t_pack = time.perf_counter()
    # What `git gc` leaves (a hub runs it, gc.auto): one pack and a commit-graph. Without the
    # graph, git parses every commit it walks from the pack, and proving a change's old
    # parents are already on the other side walks every commit newer than them (see case a).
    git("repack", "-adq", cwd=path)
    git("commit-graph", "write", "--reachable", cwd=path)
    log(f"  repack + commit-graph {time.perf_counter() - t_pack:.1f} s")
    seconds = time.perf_counter() - t
    built = Built(path, commits, job_ids, signers, seconds)
    check_sample(built)
    return built


def check_sample(built: Built) -> None:
    """What was generated is what the library accepts: a real ``Jobs`` loads sample jobs with
    no rejection and one succeeded run per node (not timed; uses no index)."""
    reader = jobs.Jobs.open(built.path, cache=False)
    for i in sorted({0, len(built.job_ids) // 2, len(built.job_ids) - 1}):
        job = reader.get(built.job_ids[i])
        assert job is not None, f"job {i} did not load"
        assert not job.rejected, job.rejected
        runs = job.runs()
        assert set(runs) == {s.nid for s in built.signers}, f"job {i}: runs of {len(runs)} nodes"
        assert all(r.reason == jobs.Reason.SUCCEEDED for rs in runs.values() for r in rs.values())
        assert job.name == NAMES[i % len(NAMES)] and job.commit == built.commits[i // len(NAMES)]


def clone(src: str, dst: Path) -> str:
    """A mirror clone (hard links on the same filesystem): a node that already has everything."""
    git("clone", "-q", "--mirror", src, str(dst))
    return str(dst)


def use_key(repo: str, signer: cob.Signer, keys: Path, name: str) -> None:
    """Configure ``signer`` as this clone's node key (``git config jobs.key``)."""
    path = signer.save(keys / name)
    git("config", "jobs.key", str(path), cwd=repo)


def index_files(gitdir: str) -> list[Path]:
    return sorted(Path(gitdir).glob(INDEX_FILE + "*"))


# -- a. sync (and f. plain git fetch) ----------------------------------------------------------
def case_sync(
    base: Path, hub: Built, m_path: str, url: str, small_url: str, small: str, repeats: int
) -> None:
    """Another node A writes 1 new change and pushes it (untimed); then, timed as processes:
    M's ``git jobs sync URL`` and a plain-git ``refs/namespaces/*`` fetch; and a plain fetch
    of one new commit between two small repositories (after a new commit there, untimed).

    Twice per round: a run on a *recent* job (the last commits: what CI mostly does) and on
    an *old* one (the first commits: a rerun long after). Git proves that the new change's
    parents are already on the other side by walking the other side's history down to them,
    newest first, so the old job costs a walk of nearly everything.
    """
    a_path = clone(hub.path, base / "a.git")
    p_path = clone(hub.path, base / "plain.git")
    small_copy = base / "small-copy.git"
    git("clone", "-q", "--bare", small_url, str(small_copy))
    writer = hub.signers[1]
    a = jobs.Jobs.open(a_path, signer=writer, cache=False)  # A's own index is not what is measured
    counter = iter(range(10**6))
    n = len(hub.job_ids)
    pushes: dict[str, list[float]] = {"recent": [], "old": []}

    def a_writes(age: str) -> None:
        i = next(counter)
        span = max(1, n // 20)  # the newest or the oldest 5% of the jobs
        k = (i * 7919) % span
        job = a.get_mut(hub.job_ids[n - 1 - k if age == "recent" else k])
        assert job is not None
        job.run(f"https://a.example/{i}")
        t = time.perf_counter()
        report = a.sync(url, fetch=False)
        pushes[age].append(time.perf_counter() - t)
        assert report.ok and len(report.pushed) == 1, report.summary()

    def sync(age: str) -> Callable[[], float]:
        def timed_sync() -> float:
            a_writes(age)
            elapsed = timed([GIT_JOBS, "sync", url], m_path)
            moved = sigrefs.read_tip(pygit2.Repository(m_path), writer.nid)
            assert moved == sigrefs.read_tip(a.repo, writer.nid), "M did not take A's new change"
            return elapsed

        return timed_sync

    m = jobs.Jobs.open(m_path, signer=hub.signers[0])  # a node's long-lived process

    def in_process() -> float:
        a_writes("recent")
        t = time.perf_counter()
        report = m.sync(url)
        elapsed = time.perf_counter() - t
        assert report.ok and report.fetched, report.summary()
        return elapsed

    def plain() -> float:
        return timed(["git", "fetch", "-q", url, "refs/namespaces/*:refs/namespaces/*"], p_path)

    def small_fetch() -> float:
        tree = git("rev-parse", "main^{tree}", cwd=small)
        new = git("commit-tree", tree, "-p", "main", "-m", f"c{next(counter)}", cwd=small)
        git("update-ref", "refs/heads/main", new, cwd=small)
        return timed(["git", "fetch", "-q", small_url, "refs/heads/*:refs/heads/*"], small_copy)

    t = time.perf_counter()
    for fn in (sync("recent"), plain, sync("old"), plain, small_fetch, in_process):  # warm-up round
        fn()
    log(f"  sync warm-up round {time.perf_counter() - t:.1f} s")
    recent_s, plain_recent_s, old_s, plain_old_s, small_s, lib_s = interleaved(
        [sync("recent"), plain, sync("old"), plain, small_fetch, in_process], repeats
    )
    ok = recent_s < 1.0 and recent_s <= 3 * small_s
    row(
        "a. sync 1 new change, recent job (process)",
        recent_s,
        small_s,
        "s",
        "git fetch of 1 new commit, small repos",
        "goal <1 s and <=3x",
        ok,
    )
    ok = lib_s < 1.0 and lib_s <= 3 * small_s
    row(
        "   same, in-process Jobs.sync (a node's daemon)",
        lib_s,
        small_s,
        "s",
        "as above",
        "goal <1 s and <=3x",
        ok,
    )
    ok = old_s < 1.0 and old_s <= 3 * small_s
    row("   same, old job", old_s, small_s, "s", "as above", "goal <1 s and <=3x", ok)
    row("f. plain git fetch refs/namespaces/*, recent", plain_recent_s, small_s, "s", "as above")
    row("   same, old job", plain_old_s, small_s, "s", "as above")
    row(
        "   (A's push: Jobs.sync(fetch=False)), recent",
        statistics.median(pushes["recent"]),
        None,
        "s",
        "in-process, untimed above",
    )
    row("   (A's push: Jobs.sync(fetch=False)), old", statistics.median(pushes["old"]), None, "s", "")


# -- b. warm status ------------------------------------------------------------------------------
def case_status(m_path: str, commit: str, repeats: int) -> None:
    """``git jobs status REV`` with the index warm, against ``git jobs --version`` (start-up,
    the goal's baseline) and ``git jobs status -h`` (start-up with the status command's module
    imported, no repository work); then the same status in-process (imports already paid)."""
    status = [GIT_JOBS, "status", commit]
    timed(status, m_path, ok=(0, 1, 8))  # warm: the index learns this commit's jobs

    def ours() -> float:
        return timed(status, m_path, ok=(0, 1, 8))

    def startup() -> float:
        return timed([GIT_JOBS, "--version"], m_path)

    def helped() -> float:
        return timed([GIT_JOBS, "status", "-h"], m_path)

    def deps() -> float:  # the start-up floor of benches/startup.py: Python and the libraries
        return timed([sys.executable, "-c", "import pygit2, msgspec, uuid6, cryptography"], m_path)

    ours_s, start_s, help_s, deps_s = interleaved([ours, startup, helped, deps], repeats)
    work_ms = (ours_s - start_s) * 1e3
    row("b. warm status REV (process)", ours_s * 1e3, start_s * 1e3, "ms", "git jobs --version")
    row(
        "   status work beyond --version",
        work_ms,
        None,
        "ms",
        "difference of the medians",
        "goal <50 ms",
        work_ms < 50,
    )
    row(
        "   status work beyond status -h",
        (ours_s - help_s) * 1e3,
        None,
        "ms",
        f"status -h: {help_s * 1e3:.0f} ms (its module imported)",
    )
    beyond_deps = (ours_s - deps_s) * 1e3
    row(
        "   status work beyond importing its libraries",
        beyond_deps,
        None,
        "ms",
        f"python -c 'import pygit2, msgspec, uuid6, cryptography': {deps_s * 1e3:.0f} ms",
        "goal <50 ms",
        beyond_deps < 50,
    )
    cwd = os.getcwd()
    os.chdir(m_path)  # the CLI's key and repository lookups, as in the process
    try:

        def in_process() -> float:
            t = time.perf_counter()
            jobs.Jobs.open(m_path).status(commit)
            return time.perf_counter() - t

        in_process()
        [inproc] = interleaved([in_process], repeats)
    finally:
        os.chdir(cwd)
    row("   in-process Jobs.open + status (warm)", inproc * 1e3, None, "ms", "no start-up at all")


# -- c. cold and warm list -------------------------------------------------------------------------
def case_list(m_path: str, repeats: int, budget_s: float) -> None:
    """``git jobs list`` after deleting the SQLite index (every job folded and every signature
    checked again), then warm. Stops repeating the cold one when a run passes ``budget_s``."""
    cold: list[float] = []
    for _ in range(repeats):
        for f in index_files(m_path):
            f.unlink()
        cold.append(timed([GIT_JOBS, "list"], m_path))
        if cold[-1] > budget_s:
            break
    warm = [timed([GIT_JOBS, "list"], m_path) for _ in range(repeats)]
    rebuilt: list[float] = []
    for _ in range(repeats):
        # What an upgrade with new rules, or `git jobs cache rebuild`, leaves: every evaluation
        # and object list gone, the signatures checked before kept (cob.verified).
        cob.cache.Cache(m_path).clear()
        rebuilt.append(timed([GIT_JOBS, "list"], m_path))
        if rebuilt[-1] > budget_s:
            break
    cold_s, rebuilt_s = statistics.median(cold), statistics.median(rebuilt)
    row(f"c. cold list (index deleted), n={len(cold)}", cold_s, None, "s", "", "goal <5 s", cold_s < 5)
    row(
        f"   cold list (index emptied, signatures kept), n={len(rebuilt)}",
        rebuilt_s,
        None,
        "s",
        "",
        "goal <5 s",
        rebuilt_s < 5,
    )
    row("   warm list (index current)", statistics.median(warm), None, "s", "")


# -- d. disk for refs --------------------------------------------------------------------------------
def refs_bytes(gitdir: str) -> int:
    paths = [
        p for p in (os.path.join(gitdir, "refs"), os.path.join(gitdir, "packed-refs")) if os.path.exists(p)
    ]
    out = subprocess.run(["du", "-sbc", *paths], check=True, capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1].split()[0])


def case_disk(m_path: str) -> None:
    before = refs_bytes(m_path)
    refs = int(git("for-each-ref", "--format=x", cwd=m_path).count("x"))
    git("pack-refs", "--all", cwd=m_path)
    after = refs_bytes(m_path)
    row(
        f"d. refs/ + packed-refs, {refs} refs (du -sb)",
        before / 1e6,
        None,
        "MB",
        "as left by clone + syncs",
        "goal <5 MB",
        before < 5e6,
    )
    row("   same after git pack-refs --all", after / 1e6, None, "MB", "", "goal <5 MB", after < 5e6)


# -- e. 100 runs for one commit among 10k jobs ---------------------------------------------------------
def case_hundred(base: Path, job_count: int, runs: int, repeats: int, profile: bool) -> None:
    """One node (with every job in its index) does ``runs`` x (find_by_commit, run, finish) on
    one commit, in one process from ``Jobs.open``; a different commit each repeat, so every
    repeat starts alike. Baseline: 2 x ``runs`` raw signed writes + ref moves (floor.py)."""
    t = time.perf_counter()
    built = build(str(base / "ten"), 1, job_count, seed=5)
    log(f"{job_count:,} jobs x 1 node built in {built.seconds:.1f} s")
    signer = built.signers[0]
    t = time.perf_counter()
    jobs.Jobs.open(built.path).find_by_commit(built.commits[0])  # the index, as a node has it
    log(f"  index filled in {time.perf_counter() - t:.1f} s")
    counter = iter(range(1, 10**6))

    def ours() -> float:
        commit = built.commits[next(counter) % len(built.commits)]
        t = time.perf_counter()
        store = jobs.Jobs.open(built.path, signer=signer)
        for i in range(runs):
            found = [j for j in store.find_by_commit(commit) if j.name == "build"]
            job = store.get_mut(found[0].id)
            assert job is not None
            job.finish(job.run(f"https://ci.example/{i}"), "succeeded")
        elapsed = time.perf_counter() - t
        last = store.find_by_commit(commit)
        assert len(next(j for j in last if j.name == "build").runs_of(signer.nid)) == runs + 1
        return elapsed

    fpath = str(base / "hundred-floor")
    make_commits(fpath, 1)
    fw = FloorWriter(pygit2.Repository(fpath), signer._key, signer.nid)
    enc = msgspec.json.Encoder()

    def floor() -> float:
        ref = f"refs/namespaces/{signer.nid}/refs/floor/{new_uuid7()}"
        tip: str | None = None
        t = time.perf_counter()
        for i in range(2 * runs):
            payload = enc.encode([{"log": "https://ci.example/", "run_id": new_uuid7(), "type": "run"}])
            tip = fw.write(payload, [tip] if tip else [], ref, tip, T0 + i)
        return time.perf_counter() - t

    ours(), floor()  # warm-up
    ours_s, floor_s = interleaved([ours, floor], repeats)
    row(
        f"e. {runs} x (find, run, finish), {job_count:,} jobs",
        ours_s,
        floor_s,
        "s",
        f"floor: {2 * runs} raw signed writes",
        "goal <1 s",
        ours_s < 1,
    )
    if profile:
        print_profile(ours, "e. 100 runs")


def print_profile(fn: Callable[[], object], what: str) -> None:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(25)
    log(f"profile of {what} (cumulative, top 25):\n{text.getvalue()}")


def profile_process(m_path: str, args: Sequence[str], what: str) -> None:
    """cProfile of one CLI command in M, its top functions by own time (stderr)."""
    out = Path(m_path) / "scale.prof"
    subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(out), GIT_JOBS, *args],
        cwd=m_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    text = io.StringIO()
    stats = pstats.Stats(str(out), stream=text)
    stats.sort_stats("tottime").print_stats(12)
    stats.sort_stats("cumulative").print_stats(25)
    out.unlink()
    log(f"profile of {what}:\n{text.getvalue()}")


# -- main ---------------------------------------------------------------------------------------------
def machine() -> str:
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    git_version = git("--version").split()[-1]
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, pygit2 {pygit2.__version__}"
        f" (libgit2 {pygit2.LIBGIT2_VERSION}), git {git_version}"
    )


@contextlib.contextmanager
def workdir(parent: str | None, keep: bool) -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="git-jobs-scale-", dir=parent))
    try:
        yield base
    finally:
        if keep:
            log(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def setup_env(base: Path) -> None:
    """A private HOME and no system config, for this process and every git it starts."""
    os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
    os.environ["HOME"] = str(base / "home")
    os.environ.pop("GIT_JOBS_KEY", None)
    # Start-up as an installed script has it: compiled modules kept (pip writes them at
    # install). A session may set PYTHONDONTWRITEBYTECODE, which makes every process compile
    # every module it imports (~80 ms for status); the cache goes here, not into the tree.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(base / "pycache")
    (base / "home").mkdir()
    (base / "home" / ".gitconfig").write_text(
        "[user]\n\tname = Bench\n\temail = b@example.invalid\n[init]\n\tdefaultBranch = main\n"
    )


def run(args: argparse.Namespace, base: Path) -> None:
    nodes, per_node = args.nodes, args.jobs_per_node
    repeats = args.repeats or (3 if args.quick else 5)
    served = base / "served"
    served.mkdir()
    cases = set(args.cases.split(","))
    if "g" in cases:  # issue 30's rows, at each of --sizes (benches/scale_big.py)
        import scale_big

        scale_big.case_big(
            sys.modules[__name__], base, [int(n) for n in args.sizes.split(",")], nodes, repeats
        )
        if cases == {"g"}:
            return
    log(f"building {nodes} nodes x {per_node:,} jobs = {nodes * per_node:,} (node, job) entries")
    hub = build(str(served / "hub"), nodes, per_node)
    row(
        f"build: {nodes} nodes x {per_node:,} jobs, packed",
        hub.seconds,
        None,
        "s",
        "",
        "goal <300 s",
        hub.seconds < 300,
    )
    small = str(served / "small")
    make_commits(small, 1)
    keys = base / "keys"
    m_path = clone(hub.path, base / "m.git")
    use_key(m_path, hub.signers[0], keys, "node0")
    for k, signer in enumerate(hub.signers[1:], 1):  # for re-running by hand (--keep)
        signer.save(keys / f"node{k}")
    with GitDaemon(served) as daemon:
        url, small_url = daemon.url("hub"), daemon.url("small")
        if args.profile and "c" in cases:
            profile_process(m_path, ["list"], "cold git jobs list")
        if "c" in cases:
            case_list(m_path, 1 if not args.quick else repeats, budget_s=20)
        if "b" in cases:
            case_status(m_path, hub.commits[len(hub.commits) // 2], repeats * 2)
        if "a" in cases:
            case_sync(base, hub, m_path, url, small_url, small, repeats)
            if args.profile:
                profile_process(m_path, ["sync", url], "git jobs sync with nothing new")
    if "d" in cases:
        case_disk(m_path)
    if "e" in cases:
        case_hundred(base, args.ten_k, 100, repeats, args.profile)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument(
        "--jobs-per-node",
        type=int,
        default=5000,
        help="jobs in the hub; every node has one finished run on each",
    )
    ap.add_argument("--ten-k", type=int, default=10_000, help="jobs in case e's repository")
    ap.add_argument("--quick", action="store_true", help="4 nodes x 500 jobs, 2,000 jobs for case e")
    ap.add_argument("--repeats", type=int, help="repeats per case (default 5, quick 3)")
    ap.add_argument(
        "--cases", default="a,b,c,d,e", help="which rows, e.g. a,e; g: issue 30's rows (own builds)"
    )
    ap.add_argument("--sizes", default="1000,10000", help="case g: (node, job) entries, 20 nodes by default")
    ap.add_argument("--dir", help="where to build (default /dev/shm if present)")
    ap.add_argument("--keep", action="store_true", help="keep the repositories (printed on stderr)")
    ap.add_argument("--profile", action="store_true", help="cProfile the slow paths (stderr)")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = ap.parse_args()
    if args.quick:
        args.nodes, args.jobs_per_node, args.ten_k = 4, 500, 2_000
    parent = args.dir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    started = time.perf_counter()
    print(f"machine: {machine()}")
    print(f"code: cob from {Path(cob.__file__).parent}, git-jobs {GIT_JOBS}")
    with open("/proc/loadavg") as f:
        print(f"start: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load {f.read().strip()}")
    print(f"  {'case':<44} {'ours':>10} {'baseline':>10} {'unit':<3} {'ratio':>7}")
    with workdir(parent, args.keep) as base:
        setup_env(base)
        run(args, base)
    with open("/proc/loadavg") as f:
        print(f"total {time.perf_counter() - started:.0f} s; load at end {f.read().strip()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "rows": ROWS}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
