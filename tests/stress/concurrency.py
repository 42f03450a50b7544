"""Concurrency harness: many processes write the same jobs of one repository while syncs run.

``--procs`` workers (one node, one key: the worst case, all racing on the same refs) each do
``--ops`` runs and finishes on the same jobs. Beside them a sync loop in the same repository
talks to a hub, and a second node in its own clone writes runs and syncs with the same hub.
Afterwards, once both nodes have synced: no acknowledged operation is lost, none is duplicated,
no change is rejected, the index equals a fresh fold, and ``git fsck --strict`` passes.

    python -m tests.stress.concurrency --procs 8 --ops 500
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cob
import jobs

from .common import (
    Acks,
    World,
    check_acked,
    check_index,
    check_no_duplicates,
    fsck,
    git,
    worker_env,
)


@dataclass
class ConcurrencyFigures:
    procs: int = 0
    ops_per_proc: int = 0
    acked_ops: int = 0
    peer_ops: int = 0
    syncs: int = 0
    failed_workers: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    index_mismatches: list[str] = field(default_factory=list)
    fsck_failure: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (
            self.failed_workers or self.lost or self.duplicates or self.index_mismatches or self.fsck_failure
        )

    def lines(self) -> list[str]:
        rate = self.acked_ops / self.seconds if self.seconds else 0.0
        return [
            f"writers               {self.procs} processes x {self.ops_per_proc} ops, one node",
            f"acked run/finish ops  {self.acked_ops} ({rate:.0f}/s over the whole run)",
            f"second node's ops     {self.peer_ops}, syncs beside the writers: {self.syncs}",
            f"failed calls          {len(self.failed_workers)}",
            f"ops lost              {len(self.lost)}",
            f"ops duplicated        {len(self.duplicates)} (and changes rejected)",
            f"index != fresh fold   {len(self.index_mismatches)}",
            f"fsck --strict         {'ok' if self.fsck_failure is None else 'FAILED'}",
            f"wall time             {self.seconds:.1f} s",
        ]


def run(procs: int, ops: int, base: Path, seed: int = 0, sync: bool = True) -> ConcurrencyFigures:
    world = World.make(base)
    figures = ConcurrencyFigures(procs=procs, ops_per_proc=ops)
    peer_repo, peer_key = world.base / "peer", world.base / "peer-key"
    peer = cob.Signer.generate()
    if sync:
        git(world.base, "clone", "-q", str(world.repo), str(peer_repo))
        peer.save(peer_key)
        peer_store = jobs.Jobs.open(peer_repo, signer=peer)
        commits = git(world.repo, "rev-list", "HEAD").stdout.split()
        for i in range(len(world.job_ids)):  # same (commit, name) -> the same job ids
            assert peer_store.create(commits[i % len(commits)], name=f"job{i}").id == world.job_ids[i]
    start = time.monotonic()
    env = worker_env()
    running: list[tuple[str, str, subprocess.Popen[bytes]]] = []
    for i in range(procs):
        cmd = world.worker_cmd(ops=ops, seed=seed * 1000 + i, hub=False, mix="run=4,finish=4,index=1")
        running.append(
            (
                "writer",
                world.signer.nid,
                subprocess.Popen(
                    cmd, cwd=world.base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
                ),
            )
        )
    if sync:
        syncs = max(4, ops // 10)
        cmd = world.worker_cmd(ops=syncs, seed=seed, mix="sync=1")
        running.append(
            (
                "sync",
                world.signer.nid,
                subprocess.Popen(
                    cmd, cwd=world.base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
                ),
            )
        )
        cmd = world.worker_cmd(
            ops=max(10, ops // 2), seed=seed + 7, mix="run=3,finish=3,sync=1", key=peer_key, repo=peer_repo
        )
        running.append(
            (
                "peer",
                peer.nid,
                subprocess.Popen(
                    cmd, cwd=world.base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
                ),
            )
        )
    acks = Acks()
    peer_acks = Acks()
    for role, nid, proc in running:
        out, err = proc.communicate()
        if proc.returncode != 0:
            figures.failed_workers.append(f"{role}: {err.decode()[-1500:]}")
        (peer_acks if role == "peer" else acks).feed(nid, out.decode())
    if sync:  # let both nodes see everything
        jobs.Jobs.open(peer_repo, signer=peer).sync(str(world.hub))
        jobs.Jobs.open(world.repo, signer=world.signer).sync(str(world.hub))
        acks.runs.update(peer_acks.runs)
        acks.finishes.update(peer_acks.finishes)
    figures.seconds = time.monotonic() - start
    figures.acked_ops = acks.total
    figures.peer_ops = peer_acks.total
    figures.syncs = acks.counts["sync"] + peer_acks.counts["sync"]
    figures.lost = check_acked(jobs.Jobs.open(world.repo, cache=False), acks)
    figures.duplicates = check_no_duplicates(world.repo, world.job_ids)
    figures.index_mismatches = check_index(world.repo, world.job_ids)
    figures.fsck_failure = fsck(world.repo)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--procs", type=int, default=8)
    p.add_argument("--ops", type=int, default=500)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-sync", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="git-jobs-concurrency-") as tmp:
        figures = run(args.procs, args.ops, Path(tmp), args.seed, sync=not args.no_sync)
    print("\n".join(figures.lines()))
    for problem in (figures.failed_workers + figures.lost + figures.duplicates + figures.index_mismatches)[
        :20
    ]:
        print("PROBLEM:", problem)
    if figures.fsck_failure:
        print("PROBLEM: fsck:", figures.fsck_failure)
    return 0 if figures.ok else 1


if __name__ == "__main__":
    sys.exit(main())
