"""Many writers, one repository; many peers, one hub: nothing lost, same state everywhere.

* Concurrency: processes of one node write the same jobs while syncs run beside them (the CI
  size is small; ``python -m tests.stress.concurrency --procs 8 --ops 500`` is the full one).
* Convergence: a hypothesis state machine of peers that create jobs, run, finish, sync, crash
  (drop everything in memory, or die between writing a change and moving the ref) and restart
  (also losing the index) in any order — once all have synced, every peer folds the same state,
  and that state holds every run and finish any call returned.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import cob
import jobs
from cob.change import write_change
from tests.stress import concurrency

PROCS = int(os.environ.get("GIT_JOBS_CONCURRENCY_PROCS", "4"))
OPS = int(os.environ.get("GIT_JOBS_CONCURRENCY_OPS", "50"))


@pytest.mark.slow
def test_concurrent_writers_and_syncs_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    figures = concurrency.run(PROCS, OPS, tmp_path / "world", seed=5)
    print("\n".join(figures.lines()))
    assert figures.failed_workers == []
    assert figures.acked_ops >= PROCS * OPS // 2
    assert figures.lost == []
    assert figures.duplicates == []
    assert figures.index_mismatches == []
    assert figures.fsck_failure is None


# -- convergence ---------------------------------------------------------------------------
N_PEERS = 3
COMMITS = 2
URLS = st.sampled_from(["https://ci.example/a", "https://ci.example/b", "file:///var/log/ci"])


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _state(store: jobs.Jobs, job_id: str) -> bytes | None:
    job = store.get(job_id)
    if job is None:
        return None
    return msgspec.msgpack.encode(job._state, order="deterministic")  # type: ignore[call-arg]


class Peers(RuleBasedStateMachine):
    """Peers with their own clone and key, one bare hub; sync is ``Jobs.sync(hub path)``."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="git-jobs-converge-"))
        base = self.tmp / "base"
        base.mkdir()
        _git(base, "init", "-q")
        for i in range(COMMITS):
            (base / "f").write_text(f"{i}\n")
            _git(base, "add", "f")
            _git(base, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", f"c{i}")
        self.commits = _git(base, "rev-list", "HEAD").split()
        self.hub = self.tmp / "hub.git"
        _git(self.tmp, "init", "-q", "--bare", str(self.hub))
        self.signers = [cob.Signer.generate() for _ in range(N_PEERS)]
        self.paths = []
        for i in range(N_PEERS):
            path = self.tmp / f"peer{i}"
            _git(self.tmp, "clone", "-q", str(base), str(path))
            self.paths.append(path)
        self.stores = [self._open(i) for i in range(N_PEERS)]
        self.jobs: set[str] = set()
        # What calls returned: (nid, job, run) -> reason or None (started).
        self.promised: dict[tuple[str, str, str], str | None] = {}

    def _open(self, i: int) -> jobs.Jobs:
        return jobs.Jobs.open(self.paths[i], signer=self.signers[i])

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    @rule(
        peer=st.integers(0, N_PEERS - 1),
        commit=st.integers(0, COMMITS - 1),
        name=st.sampled_from(["ci", "lint"]),
    )
    def create(self, peer: int, commit: int, name: str) -> None:
        self.jobs.add(self.stores[peer].create(self.commits[commit], name=name).id)

    @precondition(lambda self: self.jobs)
    @rule(peer=st.integers(0, N_PEERS - 1), data=st.data(), url=URLS)
    def run(self, peer: int, data: st.DataObject, url: str) -> None:
        store = self.stores[peer]
        known = sorted(j for j in self.jobs if store.get(j) is not None)
        if not known:
            return
        job = store.get_mut(data.draw(st.sampled_from(known)))
        assert job is not None
        run_id = job.run(url)
        self.promised[(self.signers[peer].nid, job.id, str(run_id))] = None

    @precondition(lambda self: any(v is None for v in self.promised.values()))
    @rule(data=st.data(), reason=st.sampled_from(list(jobs.Reason)))
    def finish(self, data: st.DataObject, reason: jobs.Reason) -> None:
        open_runs = sorted(k for k, v in self.promised.items() if v is None)
        nid, job_id, run_id = data.draw(st.sampled_from(open_runs))
        peer = [s.nid for s in self.signers].index(nid)
        job = self.stores[peer].get_mut(job_id)
        assert job is not None
        job.finish(run_id, reason)
        self.promised[(nid, job_id, run_id)] = reason.value

    @rule(peer=st.integers(0, N_PEERS - 1))
    def sync(self, peer: int) -> None:
        report = self.stores[peer].sync(str(self.hub))
        assert report.refused == [] and report.rejected == []

    @rule(peer=st.integers(0, N_PEERS - 1))
    def crash(self, peer: int) -> None:
        """The process dies: everything in memory is gone; the next one opens the repo."""
        self.stores[peer] = self._open(peer)

    @rule(peer=st.integers(0, N_PEERS - 1), lose_index=st.booleans())
    def restart(self, peer: int, lose_index: bool) -> None:
        """A restart that may also lose the index (deleted, as a user may do)."""
        store = self.stores[peer]
        if lose_index and store.store.cache is not None:
            store.store.cache.remove_files()
        self.stores[peer] = self._open(peer)

    @precondition(lambda self: self.jobs)
    @rule(peer=st.integers(0, N_PEERS - 1), data=st.data())
    def die_between_write_and_ref_move(self, peer: int, data: st.DataObject) -> None:
        """A change written to the object store whose ref was never moved: it must not count."""
        store = self.stores[peer]
        known = sorted(j for j in self.jobs if store.get(j) is not None)
        if not known:
            return
        job_id = data.draw(st.sampled_from(known))
        tips = store.store.tips(jobs.JOB_TYPE, job_id)
        codec = store.store.codec(jobs.JOB_TYPE)
        write_change(
            store.repo,
            codec,
            self.signers[peer],
            self.signers[peer].nid,
            [jobs.StartRun("01900000-0000-7000-8000-00000000dead", "https://x/orphan")],
            sorted(set(tips.values())),
        )
        self.stores[peer] = self._open(peer)

    @invariant()
    def own_promises_hold_locally(self) -> None:
        for (nid, job_id, run_id), reason in self.promised.items():
            peer = [s.nid for s in self.signers].index(nid)
            job = self.stores[peer].get(job_id)
            assert job is not None
            run = job.runs_of(nid)[run_id]
            assert (run.reason.value if run.reason else None) == reason

    def check_convergence(self) -> None:
        for _ in range(2):  # the first round spreads everything to the hub, the second back
            for store in self.stores:
                store.sync(str(self.hub))
        for job_id in sorted(self.jobs):
            fresh = [_state(jobs.Jobs.open(p, cache=False), job_id) for p in self.paths]
            cached = [_state(s, job_id) for s in self.stores]
            assert fresh[0] is not None
            assert all(f == fresh[0] for f in fresh), f"peers disagree on {job_id[:12]}"
            assert cached == fresh, "an index differs from a fresh fold"
        for (nid, job_id, run_id), reason in self.promised.items():
            for store in self.stores:
                job = store.get(job_id)
                assert job is not None
                run = job.runs_of(nid)[run_id]
                assert (run.reason.value if run.reason else None) == reason
                assert "01900000-0000-7000-8000-00000000dead" not in {str(k) for k in job.runs_of(nid)}


class ConvergingPeers(Peers):
    def teardown(self) -> None:
        try:
            self.check_convergence()
        finally:
            super().teardown()


TestConvergence = pytest.mark.slow(ConvergingPeers.TestCase)
TestConvergence.settings = settings(
    max_examples=int(os.environ.get("GIT_JOBS_CONVERGENCE_EXAMPLES", "12")),
    stateful_step_count=18,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


class BrieflyConvergingPeers(ConvergingPeers):
    """The fast lane's twin (`-m "not slow"`): the same machine, two short runs."""


TestConvergenceBriefly = BrieflyConvergingPeers.TestCase
TestConvergenceBriefly.settings = settings(
    max_examples=2, stateful_step_count=8, deadline=None, suppress_health_check=list(HealthCheck)
)
