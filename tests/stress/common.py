"""Shared pieces of the harnesses: a world (repository, hub, key, jobs), acks, checks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

import cob
import jobs
from cob.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[2]


def git(cwd: Path | str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, check=check, capture_output=True, text=True, timeout=300)


@dataclass
class World:
    """A work repository with a few commits and jobs, a bare hub, and one node's key file."""

    base: Path
    repo: Path
    hub: Path
    key: Path
    signer: cob.Signer
    job_ids: list[str]

    @classmethod
    def make(cls, base: Path, n_jobs: int = 3) -> World:
        base.mkdir(parents=True, exist_ok=True)
        repo, hub = base / "repo", base / "hub.git"
        repo.mkdir()
        git(repo, "init", "-q")
        for i in range(max(1, n_jobs // 2)):
            (repo / "f").write_text(f"{i}\n")
            git(repo, "add", "f")
            git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", f"c{i}")
        git(base, "init", "-q", "--bare", str(hub))
        signer = cob.Signer.generate()
        key = signer.save(base / "key")
        store = jobs.Jobs.open(repo, signer=signer)
        commits = git(repo, "rev-list", "HEAD").stdout.split()
        ids = [store.create(commits[i % len(commits)], name=f"job{i}").id for i in range(n_jobs)]
        return cls(base, repo, hub, key, signer, ids)

    def worker_cmd(
        self,
        ops: int,
        seed: int,
        hub: bool = True,
        mix: str | None = None,
        key: Path | None = None,
        repo: Path | None = None,
    ) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "tests.stress.worker",
            "--repo",
            str(repo or self.repo),
            "--key",
            str(key or self.key),
            "--jobs",
            ",".join(self.job_ids),
            "--ops",
            str(ops),
            "--seed",
            str(seed),
        ]
        if hub:
            cmd += ["--hub", str(self.hub)]
        if mix:
            cmd += ["--mix", mix]
        return cmd


def worker_env() -> dict[str, str]:
    """The environment of a worker process: ``tests`` importable, the package the installed one."""
    import tests.sourceless

    tests.sourceless.apply()
    return dict(os.environ)


@dataclass
class Acks:
    """What workers promised: started runs and finished runs (with reason), per node."""

    runs: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # nid -> {(job, run)}
    finishes: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (nid,job,run)->why
    counts: Counter[str] = field(default_factory=Counter)

    def feed(self, nid: str, text: str) -> None:
        """Take complete lines only: a line cut by the kill was not acknowledged."""
        lines = text.split("\n")
        for line in lines[:-1]:
            parts = line.split()
            if not parts:
                continue
            self.counts[parts[0]] += 1
            if parts[0] == "run":
                self.runs.setdefault(nid, set()).add((parts[1], parts[2]))
            elif parts[0] == "finish":
                self.finishes[(nid, parts[1], parts[2])] = parts[3]

    @property
    def total(self) -> int:
        return self.counts["run"] + self.counts["finish"]


def state_bytes(store: jobs.Jobs, job_id: str) -> bytes:
    job = store.get(job_id)
    assert job is not None, f"job {job_id} does not load"
    return msgspec.msgpack.encode(job._state, order="deterministic")  # type: ignore[call-arg]


def check_acked(store: jobs.Jobs, acks: Acks) -> list[str]:
    """Every acknowledged run and finish is in a fresh fold. Returns the problems found."""
    problems = []
    loaded: dict[str, jobs.Job | None] = {}

    def get(job_id: str) -> jobs.Job | None:
        if job_id not in loaded:
            loaded[job_id] = store.get(job_id)
        return loaded[job_id]

    for nid, runs in acks.runs.items():
        for job_id, run_id in runs:
            job = get(job_id)
            if job is None or run_id not in {str(k) for k in job.runs_of(nid)}:
                problems.append(f"lost run {run_id} of {job_id[:12]} by {nid[:12]}")
    for (nid, job_id, run_id), reason in acks.finishes.items():
        job = get(job_id)
        run = job.runs_of(nid).get(run_id) if job else None  # type: ignore[call-overload]
        if run is None or run.reason is None or run.reason.value != reason:
            problems.append(f"lost finish {run_id} ({reason}) of {job_id[:12]}")
    return problems


def check_no_duplicates(repo: Path, job_ids: list[str]) -> list[str]:
    """No op was written twice: each (node, run id) is started once and finished at most once
    across all accepted changes (a retried write that landed twice would show here)."""
    store = jobs.Jobs.open(repo, cache=False)
    codec = store.store.codec(jobs.JOB_TYPE)
    problems = []
    for job_id in job_ids:
        tips = store.store.tips(jobs.JOB_TYPE, job_id)
        ev = evaluate(store.repo, codec, job_id, tips)
        starts: Counter[tuple[str | None, str]] = Counter()
        finishes: Counter[tuple[str | None, str]] = Counter()
        for change in ev.changes:
            for op in change.ops:
                if isinstance(op, jobs.StartRun):
                    starts[(change.author, op.run_id)] += 1
                elif isinstance(op, jobs.FinishRun):
                    finishes[(change.author, op.run_id)] += 1
        problems += [f"run {k[1]} started {n} times" for k, n in starts.items() if n > 1]
        problems += [f"run {k[1]} finished {n} times" for k, n in finishes.items() if n > 1]
        if ev.rejected:
            problems += [f"rejected {o[:12]}: {r}" for o, r in ev.rejected.items()]
    return problems


def check_index(repo: Path, job_ids: list[str]) -> list[str]:
    """The cached index (incremental folds) equals a fresh full fold, job by job."""
    cached = jobs.Jobs.open(repo)
    fresh = jobs.Jobs.open(repo, cache=False)
    problems = []
    if sorted(j.id for j in cached.all()) != sorted(j.id for j in fresh.all()):
        problems.append("index lists other jobs than the refs")
    for job_id in job_ids:
        if state_bytes(cached, job_id) != state_bytes(fresh, job_id):
            problems.append(f"index state of {job_id[:12]} differs from a fresh fold")
    return problems


def fsck(path: Path) -> str | None:
    res = git(path, "fsck", "--strict", "--no-progress", check=False)
    if res.returncode == 0:
        return None
    text = "\n".join(
        line for line in (res.stderr + res.stdout).splitlines() if not line.startswith("notice:")
    )
    return f"exit {res.returncode}: {text.strip()[:500]}"


def wait_for_orphans(*paths: Path, timeout: float = 60.0) -> None:
    """Wait until no process names one of ``paths`` in its command line.

    The store runs git in its own session (so ssh never prompts on a terminal): a SIGKILLed
    writer leaves its `git push` / `git fetch` running to completion. fsck must not race it —
    fsck reads objects, then refs, and a push landing in between looks like a missing object.
    """
    needles = [str(p).encode() for p in paths]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = False
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"git" in cmdline and any(n in cmdline for n in needles):
                busy = True
                break
        if not busy:
            return
        time.sleep(0.05)


def stale_locks(gitdir: Path) -> list[Path]:
    return [p for p in (gitdir / "refs").rglob("*.lock")]
