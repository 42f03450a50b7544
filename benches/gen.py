"""Fast generators of big job histories for the benches.

They use the library's low-level writers (``cob.change.write_root`` / ``write_change`` and
direct index writes) rather than ``JobMut.run``/``finish``, so a 10,000-change job or 50,000
jobs take seconds, not minutes. What they write is exactly what the high-level API writes:
valid, signed changes that a load accepts.
"""

from __future__ import annotations

import random
import subprocess
import uuid
from dataclasses import dataclass

import pygit2
import uuid6

import cob
import jobs
from cob.change import Codec, write_change, write_root

T0 = 1_750_000_000
CODEC = Codec(jobs.JOB_TYPE)


def make_commits(path: str, n: int) -> list[str]:
    """A repository at ``path`` with ``n`` commits on main (via fast-import: one pack)."""
    subprocess.run(["git", "init", "-q", path], check=True)
    lines = []
    for i in range(n):
        msg = f"commit {i}\n".encode()
        lines.append(b"commit refs/heads/main\n")
        lines.append(f"committer Bench <bench@example.invalid> {T0 + i} +0000\n".encode())
        lines.append(b"data %d\n%s" % (len(msg), msg))
        if i == 0:
            lines.append(b"deleteall\n")
        lines.append(f"M 100644 inline f\ndata {len(str(i))}\n{i}\n".encode())
    subprocess.run(["git", "fast-import", "--quiet"], cwd=path, input=b"".join(lines), check=True)
    out = subprocess.run(["git", "rev-list", "main"], cwd=path, check=True, capture_output=True, text=True)
    return out.stdout.split()[::-1]


def uuid7_at(ts: int, rng: random.Random) -> str:
    """A valid uuid7 for a given second (deterministic per rng)."""
    ms = ts * 1000 + rng.randrange(1000)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= rng.getrandbits(12) << 64
    value |= 0b10 << 62
    value |= rng.getrandbits(62)
    return str(uuid.UUID(int=value))


@dataclass
class BigJob:
    job_id: str
    tips: dict[str, str]
    changes: int


def big_job(repo: pygit2.Repository, commit: str, changes: int, nodes: int, seed: int = 1) -> BigJob:
    """One job with ``changes`` signed changes from ``nodes`` nodes.

    Each node mostly builds on its own last change and now and then merges every head it
    "fetched" (all current heads), so the DAG has concurrent branches and merges; each node
    starts runs and finishes them later.
    """
    rng = random.Random(seed)
    signers = [cob.Signer.generate() for _ in range(nodes)]
    root = write_root(repo, CODEC, [jobs.Request(commit, "ci")])
    last = [root] * nodes
    open_runs: list[list[str]] = [[] for _ in range(nodes)]
    heads = {root}
    for i in range(changes):
        k = rng.randrange(nodes)
        parents = sorted(heads) if rng.random() < 0.1 else [last[k]]
        when = T0 + i
        if open_runs[k] and rng.random() < 0.5:
            op: object = jobs.FinishRun(open_runs[k].pop(rng.randrange(len(open_runs[k]))), "succeeded")
        else:
            run_id = uuid7_at(when, rng)
            open_runs[k].append(run_id)
            op = jobs.StartRun(run_id, f"https://ci{k}.example/{i}")
        oid = write_change(repo, CODEC, signers[k], signers[k].nid, [op], parents, timestamp=when)
        heads.difference_update(parents)
        heads.add(oid)
        last[k] = oid
    tips = {}
    for k, s in enumerate(signers):
        if last[k] != root:
            write_index(repo, s, {root: last[k]})
            tips[s.nid] = last[k]
    return BigJob(root, tips, changes + 1)


def write_index(repo: pygit2.Repository, signer: cob.Signer, tips: dict[str, str]) -> None:
    """Point ``signer``'s index ref at ``tips`` ({job id: tip}), added to what it holds."""
    old = cob.sigrefs.read_tip(repo, signer.nid)
    updates: dict[tuple[str, str], str | None] = {(jobs.TYPENAME, i): t for i, t in tips.items()}
    new = cob.sigrefs.write_commit(repo, signer, signer.nid, old, updates, timestamp=T0)
    name = cob.index_ref(signer.nid)
    if old is None:
        repo.create_reference_direct(name, pygit2.Oid(hex=new), False)
    else:
        repo.references[name].set_target(new)


def many_jobs(
    repo: pygit2.Repository, commits: list[str], count: int, nodes: int = 3, seed: int = 2
) -> list[str]:
    """``count`` jobs spread evenly over ``commits``; each has one signed change from one of
    ``nodes`` nodes holding a finished run (a typical CI job), named by that node's index."""
    rng = random.Random(seed)
    signers = [cob.Signer.generate() for _ in range(nodes)]
    ids = []
    tips: dict[str, dict[str, str]] = {s.nid: {} for s in signers}
    for i in range(count):
        commit = commits[i % len(commits)]
        root = write_root(repo, CODEC, [jobs.Request(commit, f"job{i // len(commits)}")])
        s = signers[rng.randrange(nodes)]
        when = T0 + i
        run_id = uuid7_at(when, rng)
        ops = [jobs.StartRun(run_id, f"https://ci.example/{i}"), jobs.FinishRun(run_id, "succeeded")]
        oid = write_change(repo, CODEC, s, s.nid, ops, [root], timestamp=when)
        tips[s.nid][root] = oid
        ids.append(root)
    for s in signers:
        write_index(repo, s, tips[s.nid])
    return ids


def new_uuid7() -> str:
    return str(uuid6.uuid7())
