"""Run logs: what publishing a log adds to a run, and what reading a synced log costs.

    .venv/bin/python benches/logs.py            # 15 repeats of each
    .venv/bin/python benches/logs.py --repeats 5 --size 1048576

The hub is a real `git daemon` on 127.0.0.1 (git://), every sync a full one (fetch + push).

1. **node run + sync** — what a node does per job: `Workshop.attempt` (record the run, check
   out, run a command that prints `--size` bytes (1 MB) of text, finish) then `jobs.sync`. Ours:
   with `jobs.logs.publish=true` (the log capped, published in the bucket, its blob id in the
   finish, pushed); baseline: the same with `jobs.logs.publish=false`, interleaved so
   background load hits both. Goal: publishing adds ≤ 10 %.
2. **ledger write + sync** — the same without the command and the checkout: `job.run`,
   `jobs.logs.publish` of a 1 MB log, `job.finish`, `jobs.sync`; baseline: no log. The floor row
   says what deflating the log costs (zlib level 1, as loose objects and level-1 packs use):
   a push deflates it once on the node and the hub inflates and deflates it again.
3. **read a synced log** — in a maintainer's clone that synced from the hub: `logs.locate`
   (`REV:NAME`, the latest run) + `logs.read` (verify the blob against the signed finish and
   return its bytes), on a long-lived store (warm index) and on a freshly opened one (what one
   CLI call pays besides Python start-up). Goal: ≤ 50 ms. The `git jobs logs` process and a
   `git jobs --version` process (start-up alone) are timed too, for scale.
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
import zlib
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import uuid6  # noqa: E402

import cob  # noqa: E402
import jobs  # noqa: E402
from jobs import logs  # noqa: E402
from jobs.node import Workshop, load_definitions  # noqa: E402
from tests.gitdaemon import GitDaemon  # noqa: E402

GIT_JOBS = str(Path(sys.executable).parent / "git-jobs")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def text_log(size: int) -> bytes:
    """A text log of ``size`` bytes that compresses like real output (not all one byte)."""
    line = 0
    out = bytearray()
    while len(out) < size:
        out += f"test_{line:06d} ... ok ({os.urandom(6).hex()})\n".encode()
        line += 1
    return bytes(out[:size])


def setup(base: Path, size: int, repeats: int) -> tuple[Path, Path, cob.Signer]:
    """A node repository whose HEAD defines jobs ``a0..`` that each print ``size`` bytes."""
    node = base / "node"
    node.mkdir(parents=True)
    git(node, "init", "-q")
    (node / "big.txt").write_bytes(text_log(size))
    (node / ".git-jobs.toml").write_text(
        "".join(f'[jobs.a{i}]\nrun = "cat big.txt"\n' for i in range(2 * repeats + 1))
    )
    git(node, "add", ".")
    git(node, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "c")
    hub = base / "served" / "hub.git"
    git(base, "clone", "-q", "--bare", str(node), str(hub))
    return node, hub, cob.Signer.generate()


def node_run(workshop: Workshop, url: str, name: str, publish: bool) -> None:
    store = workshop.jobs
    store.repo.config["jobs.logs.publish"] = "true" if publish else "false"
    defs = load_definitions(store.repo, "HEAD")
    assert defs is not None
    d = defs.get(name)
    assert d is not None
    outcome = workshop.attempt(store.create("HEAD", name), d, defs)
    assert outcome.reason is jobs.Reason.SUCCEEDED
    report = store.sync(url)
    assert report.ok and report.pushed


def one_run(store: jobs.Jobs, hub: str, name: str, log: bytes | None) -> None:
    job = store.create("HEAD", name)
    run_id = uuid6.uuid7()
    assert store.signer is not None
    job.run(f"git-jobs://{store.signer.nid}/{run_id}", run_id=run_id)
    blob = logs.publish(store.repo, store.signer, run_id, log) if log is not None else None
    job.finish(run_id, "failed", log_blob=blob, exit_status=1)
    report = store.sync(hub)
    assert report.ok and report.pushed


def interleaved(a: Callable[[int], object], b: Callable[[int], object], repeats: int) -> tuple[float, float]:
    ta: list[float] = []
    tb: list[float] = []
    for i in range(repeats):
        for fn, out in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn(i)
            out.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def median(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--size", type=int, default=1_000_000, help="log size in bytes (default 1 MB)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    rows: list[tuple[str, str, str, str]] = []
    mb = f"{args.size / 1e6:g} MB"
    try:
        node, _hub, signer = setup(base, args.size, args.repeats)
        with GitDaemon(base / "served") as daemon:
            url = daemon.url("hub.git")
            store = jobs.Jobs.open(node, signer)
            workshop = Workshop(store)
            node_run(workshop, url, f"a{2 * args.repeats}", True)  # warm-up
            ours, baseline = interleaved(
                lambda i: node_run(workshop, url, f"a{2 * i}", True),
                lambda i: node_run(workshop, url, f"a{2 * i + 1}", False),
                args.repeats,
            )
            ratio = f"{ours / baseline:.2f} x (goal <= 1.10)"
            rows.append(
                (
                    f"node run printing {mb} + sync, log published",
                    f"{ours * 1000:.0f} ms",
                    f"{baseline * 1000:.0f} ms (not published)",
                    ratio,
                )
            )
            store.repo.config["jobs.logs.publish"] = "true"
            log = text_log(args.size)
            ours, baseline = interleaved(
                lambda i: one_run(store, url, f"log-{i}", log),
                lambda i: one_run(store, url, f"plain-{i}", None),
                args.repeats,
            )
            floor = median(lambda: zlib.compress(log, 1), args.repeats)
            rows.append(
                (
                    f"ledger run + finish + sync, {mb} log",
                    f"{ours * 1000:.0f} ms",
                    f"{baseline * 1000:.0f} ms (no log)",
                    f"{ours / baseline:.2f} x",
                )
            )
            rows.append(
                (
                    f"floor: deflate {mb} once (zlib level 1)",
                    f"{floor * 1000:.0f} ms",
                    "",
                    f"3 passes (node, push, hub) = {3 * floor / baseline:.2f} x the baseline",
                )
            )
            rows.extend(_reads(base, url, log, args.repeats))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("| case | ours | baseline | ratio / goal |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


def _reads(base: Path, url: str, log: bytes, repeats: int) -> list[tuple[str, str, str, str]]:
    maint = base / "maint"
    git(base, "clone", "-q", url, str(maint))
    reader = jobs.Jobs.open(maint)
    reader.sync(url)
    spec = "HEAD:log-0"
    found = logs.locate(reader, spec)
    got = logs.read(reader.repo, found.nid, found.run_id, found.run)
    assert got.status is logs.LogStatus.SHOWN and got.data == log

    def warm() -> None:
        f = logs.locate(reader, spec)
        assert logs.read(reader.repo, f.nid, f.run_id, f.run).data is not None

    def fresh() -> None:
        r = jobs.Jobs.open(maint)
        f = logs.locate(r, spec)
        assert logs.read(r.repo, f.nid, f.run_id, f.run).data is not None

    def cli(*argv: str) -> Callable[[], None]:
        return lambda: subprocess.run([GIT_JOBS, *argv], cwd=maint, check=True, capture_output=True)

    rows = []
    cases = (("read a synced 1 MB log, warm store", warm), ("read a synced 1 MB log, fresh store", fresh))
    for what, fn in cases:
        t = median(fn, repeats)
        rows.append((what, f"{t * 1000:.1f} ms", "", "goal ≤ 50 ms"))
    t_logs = median(cli("logs", spec), max(3, repeats // 3))
    t_start = median(cli("--version"), max(3, repeats // 3))
    rows.append(
        (
            f"`git jobs logs {spec}` process",
            f"{t_logs * 1000:.0f} ms",
            f"{t_start * 1000:.0f} ms (`git jobs --version`)",
            f"+{(t_logs - t_start) * 1000:.0f} ms",
        )
    )
    return rows


if __name__ == "__main__":
    sys.exit(main())
