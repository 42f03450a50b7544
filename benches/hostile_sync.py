"""Issue 26 at full size: what a hostile hub costs an honest peer's `git jobs sync` now.

    .venv/bin/python benches/hostile_sync.py                # the review's sizes
    .venv/bin/python benches/hostile_sync.py --scale 0.05   # a quick look

Cases (each on a fresh bare hub, a local path, under /dev/shm when it exists):

1. ``junk``: 20,000 log-bucket refs under a *trusted* node's namespace, each an unsigned commit
   of its own (a keyless hub pusher). Timed: an existing peer's first and second sync, a new
   peer's first sync (does it take the node's index?), both pushing their own index.
2. ``wide``: a stranger's index of 200,000 entries; the peer trusts only Alice. Timed: sync,
   then ``git jobs list``. ``deep``: 500,000 unsigned index commits under one signed tip.
   Timed: the first sync (downloads the chain once, refuses it) and the second (remembered).
14. ``legacy``: 200,000 keyless per-object refs of the old layout. Timed: a sync.

Every figure is wall time and peak RSS of the ``git-jobs`` process tree's largest process
(``/usr/bin/time -f %M``), plus what the JSON report said.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cob
import jobs
from cob import sigrefs
from jobs.trust import trust_add

GIT_JOBS = str(Path(sys.executable).parent / "git-jobs")
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def git(cwd: Path, *args: str, stdin: str | None = None) -> str:
    res = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, text=True, check=True)
    return res.stdout


def timed(repo: Path, key: Path, *args: str) -> tuple[float, int, dict[str, Any] | None]:
    """(seconds, peak RSS MB, JSON output or None) of one `git jobs` command."""
    env = dict(os.environ, GIT_JOBS_KEY=str(key))
    t = time.monotonic()
    res = subprocess.run(
        ["/usr/bin/time", "-f", "%M", GIT_JOBS, *args], cwd=repo, env=env, capture_output=True, text=True
    )
    dt = time.monotonic() - t
    rss = int(res.stderr.strip().splitlines()[-1]) // 1024
    try:
        out = json.loads(res.stdout)
    except ValueError:
        out = None
    return dt, rss, out


def brief(report: dict[str, Any] | None) -> str:
    if report is None:
        return "—"
    kinds: dict[str, int] = {}
    for r in report["refused"]:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    return (
        f"fetched {len(report['fetched'])}, pushed {len(report['pushed'])}, refused {kinds}, "
        f"remembered {report.get('remembered')}, deferred {report.get('deferred')}, "
        f"ignored {report.get('ignored')}, published {report['published']}"
    )


def fast_import(repo: Path, script: str) -> None:
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, input=script, text=True, check=True)


def unsigned_commits(hub: Path, refs: list[str], message: str = "junk\n") -> None:
    """One unsigned commit of its own (a distinct time) per ref, written by fast-import."""
    lines = []
    for i, ref in enumerate(refs):
        data = message.encode()
        lines.append(
            f"commit {ref}\ncommitter m <m> {1_600_000_000 + i} +0000\ndata {len(data)}\n{message}\n"
        )
    fast_import(hub, "".join(lines))


class World:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.hub = base / "hub.git"
        git(base, "init", "-q", "--bare", str(self.hub))
        origin = base / "origin"
        git(base, "init", "-q", str(origin))
        (origin / "f").write_text("x\n")
        git(origin, "add", "f")
        git(origin, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
        self.commit = git(origin, "rev-parse", "HEAD").strip()
        self.keys: dict[str, Path] = {}
        self.signers: dict[str, cob.Signer] = {}
        self.paths: dict[str, Path] = {}
        for who in ("alice", "bob", "carol"):
            self.signers[who] = cob.Signer.generate()
            self.keys[who] = self.signers[who].save(base / f"{who}.key")
            self.paths[who] = base / who
            git(base, "clone", "-q", str(origin), str(self.paths[who]))
        self.alice = jobs.Jobs.open(self.paths["alice"], signer=self.signers["alice"])
        job = self.alice.create(self.commit)
        run = job.run("https://ci.example/alice/1")
        job.finish(run, jobs.Reason.SUCCEEDED)
        self.alice.sync(str(self.hub))
        self.job_id = job.id
        for who in ("bob", "carol"):
            trust_add(pygit2_repo(self.paths[who]), self.signers["alice"].nid, "alice")
        timed(self.paths["bob"], self.keys["bob"], "sync", str(self.hub))

    def sync(self, who: str) -> tuple[float, int, dict[str, Any] | None]:
        return timed(self.paths[who], self.keys[who], "sync", "--json", str(self.hub))


def pygit2_repo(path: Path) -> Any:
    import pygit2

    return pygit2.Repository(str(path))


def row(label: str, measured: tuple[float, int, dict[str, Any] | None]) -> None:
    dt, rss, report = measured
    print(f"| {label} | {dt:.1f} s | {rss} MB | {brief(report)} |", flush=True)


def case_junk(w: World, n: int) -> None:
    alice = w.signers["alice"].nid
    refs = [f"refs/namespaces/{alice}/refs/logs/{2026 - i // 12:04d}-{i % 12 + 1:02d}" for i in range(n)]
    unsigned_commits(w.hub, refs)
    print(f"\n**1. {len(refs)} junk log buckets under trusted Alice's namespace**\n")
    job = w.alice.get_mut(w.job_id)
    assert job is not None
    job.run("https://ci.example/alice/2")
    w.alice.sync(str(w.hub))
    row("existing peer, sync 1", w.sync("bob"))
    row("existing peer, sync 2", w.sync("bob"))
    row("new peer, sync 1", w.sync("carol"))
    row("new peer, sync 2", w.sync("carol"))


def case_wide(w: World, entries: int) -> None:
    stranger = cob.Signer.generate()
    repo = pygit2_repo(w.hub)
    tip = w.alice.store.tips(jobs.JOB_TYPE, w.job_id)[w.signers["alice"].nid]
    updates = {(jobs.TYPENAME, secrets.token_hex(20)): tip for _ in range(entries)}
    index = sigrefs.write_commit(repo, stranger, stranger.nid, None, updates, timestamp=1_700_000_000)
    git(w.hub, "update-ref", cob.index_ref(stranger.nid), index)
    print(f"\n**2. a stranger's index of {entries} entries (Bob trusts Alice only)**\n")
    row("sync 1", w.sync("bob"))
    row("sync 2", w.sync("bob"))
    row("`git jobs list`", timed(w.paths["bob"], w.keys["bob"], "list"))


def case_deep(w: World, depth: int) -> None:
    stranger = cob.Signer.generate()
    ref = "refs/heads/deep"
    lines = []
    for i in range(depth):
        lines.append(
            f"commit {ref}\ncommitter {stranger.nid} <{stranger.nid}> {1_600_000_000 + i} +0000\n"
            f"data {len(sigrefs.MESSAGE)}\n{sigrefs.MESSAGE}" + ("deleteall\n" if i == 0 else "") + "\n"
        )
    fast_import(w.hub, "".join(lines))
    repo = pygit2_repo(w.hub)
    below = git(w.hub, "rev-parse", ref).strip()
    tip = sigrefs.write_commit(repo, stranger, stranger.nid, below, {})
    git(w.hub, "update-ref", cob.index_ref(stranger.nid), tip)
    git(w.hub, "update-ref", "-d", ref)
    print(f"\n**2. {depth} unsigned index commits under one signed tip (a stranger)**\n")
    row("sync 1", w.sync("bob"))
    row("sync 2", w.sync("bob"))


def case_legacy(w: World, n: int) -> None:
    junk = git(w.hub, "commit-tree", EMPTY_TREE, "-m", "junk").strip()
    packed = w.hub / "packed-refs"
    old = packed.read_text() if packed.exists() else "# pack-refs with: peeled fully-peeled sorted \n"
    nid = cob.Signer.generate().nid
    lines = [f"{junk} refs/namespaces/{nid}/refs/cobs/{jobs.TYPENAME}/{i:040x}\n" for i in range(n)]
    body = sorted([*old.splitlines(keepends=True)[1:], *lines], key=lambda ln: ln.split(" ", 1)[1])
    packed.write_text(old.splitlines(keepends=True)[0] + "".join(body))
    print(f"\n**14. {n} keyless per-object refs of the old layout on the hub**\n")
    row("sync 1", w.sync("bob"))
    row("sync 2", w.sync("bob"))
    row("`git ls-remote` alone", _ls_remote(w))


def _ls_remote(w: World) -> tuple[float, int, None]:
    t = time.monotonic()
    res = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "git", "ls-remote", "--refs", str(w.hub), "refs/namespaces/*"],
        capture_output=True,
        text=True,
    )
    return time.monotonic() - t, int(res.stderr.strip().splitlines()[-1]) // 1024, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size (default 1)")
    parser.add_argument("--cases", default="junk,wide,deep,legacy")
    parser.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    args = parser.parse_args(argv)
    sizes = {"junk": 20_000, "wide": 200_000, "deep": 500_000, "legacy": 200_000}
    runs = {"junk": case_junk, "wide": case_wide, "deep": case_deep, "legacy": case_legacy}
    print("| step | wall | peak RSS | report |\n|---|---|---|---|")
    for name in args.cases.split(","):
        base = Path(tempfile.mkdtemp(prefix="gj-hostile-", dir=args.dir))
        try:
            home = base / "home"
            home.mkdir()
            config = "[user]\n\tname = b\n\temail = b@b\n[init]\n\tdefaultBranch = main\n"
            (home / ".gitconfig").write_text(config)
            os.environ["HOME"] = str(home)
            runs[name](World(base), max(1, int(sizes[name] * args.scale)))
        finally:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
