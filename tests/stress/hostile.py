"""Hostile peers: a toolkit to forge what a peer may push, and a harness that measures the cost.

Mallory holds a valid key and push access to a hub (like any peer of a plain Git hub). She can
write any object and move any ref on the hub, forced: her own index ref (``cob.sigrefs``, one
signed ref per node naming its tip of every job), any index commit forged in another node's
namespace, any change below them. The honest node (Bob) syncs with
``Jobs.sync``; every scenario must be refused or rejected, reported, and cost Bob bounded time
and memory. The CI tests (``tests/test_hostile.py``) use small sizes; this harness measures the
big ones in a fresh process each, so that peak RSS is the load's own:

    python -m tests.stress.hostile --ops-mb 100 --parents 10000 --depth 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2

import cob
import jobs
from cob import canonical, sigrefs, sshsig

from .common import git, worker_env

COMMIT = pygit2.enums.ObjectType.COMMIT
TREE = pygit2.enums.ObjectType.TREE
RUN_ID = "01900000-0000-7000-8000-0000000000aa"


def manifest_bytes() -> bytes:
    return canonical.dumps({"type": jobs.TYPENAME, "version": 1})


def ops_bytes(ops: list[Any]) -> bytes:
    return canonical.dumps(ops)


def tree_of(repo: pygit2.Repository, ops_blob: bytes | pygit2.Oid) -> pygit2.Oid:
    builder = repo.TreeBuilder()
    builder.insert("manifest", repo.create_blob(manifest_bytes()), pygit2.enums.FileMode.BLOB)
    blob = ops_blob if isinstance(ops_blob, pygit2.Oid) else repo.create_blob(ops_blob)
    builder.insert("ops", blob, pygit2.enums.FileMode.BLOB)
    oid: pygit2.Oid = builder.write()
    return oid


def forge(
    repo: pygit2.Repository,
    tree: pygit2.Oid | str,
    parents: list[str],
    *,
    author: str,
    signer: cob.Signer | None,
    timestamp: int = 1_700_000_000,
    corrupt: bool = False,
    extra_header: str = "",
    message: str = "forged\n",
) -> str:
    """A change commit with any author and time, signed by any key (or unsigned, or with a
    corrupted signature). Written as raw bytes: pygit2.Signature cannot hold 64-bit times.
    ``message``: an index commit carries :data:`cob.sigrefs.MESSAGE`."""
    ident = f"{author} <{author}> {timestamp} +0000"
    header = f"tree {tree}\n" + "".join(f"parent {p}\n" for p in parents)
    header += f"author {ident}\ncommitter {ident}\n" + extra_header
    payload = (header + "\n" + message).encode()
    if signer is None:
        return str(repo.odb.write(COMMIT, payload))
    signature = sshsig.sign(signer, payload)
    if corrupt:  # flip one base64 character inside the signature bytes
        lines = signature.split("\n")
        line = lines[3]
        lines[3] = line[:10] + ("A" if line[10] != "A" else "B") + line[11:]
        signature = "\n".join(lines)
    gpgsig = "gpgsig " + signature.replace("\n", "\n ") + "\n"
    return str(repo.odb.write(COMMIT, (header + gpgsig + "\n" + message).encode()))


def index_tree(repo: pygit2.Repository, parent: str | None, entries: Mapping[str, str | None]) -> str:
    """The tree of index commit ``parent`` (:mod:`cob.sigrefs`) with job entries ``{object id:
    tip, or None to drop it}`` set, as an honest node would write it."""
    updates = {(jobs.TYPENAME, object_id): tip for object_id, tip in entries.items()}
    return str(sigrefs._write_tree(repo, sigrefs.tree_of(repo, parent), updates))


def forge_index(
    repo: pygit2.Repository,
    parent: str | None,
    entries: Mapping[str, str | None],
    *,
    author: str,
    signer: cob.Signer | None,
    reach: bool = True,
    tree: str | None = None,
    **kwargs: Any,
) -> str:
    """An index commit with any author and signer (see :func:`forge`): by default shaped as
    an honest one, first parent ``parent`` then every new tip; ``reach=False`` leaves the new
    tips out of the parents (an index naming tips it does not reach), ``tree`` replaces the
    tree (extra entries)."""
    if tree is None:
        tree = index_tree(repo, parent, entries)
    parents = [parent] if parent else []
    if reach:
        parents += sorted({t for t in entries.values() if t})
    kwargs.setdefault("message", sigrefs.MESSAGE)  # an index commit, shaped as an honest one
    return forge(repo, tree, parents, author=author, signer=signer, **kwargs)


def start_run_ops(run_id: str = RUN_ID) -> bytes:
    return ops_bytes([jobs.StartRun(run_id, "https://evil.example/log")])


def push(repo_path: Path | str, url: str, *refspecs: str) -> None:
    """Mallory pushes, forced: the hub accepts anything (a plain git hub has no permissions)."""
    res = git(repo_path, "push", "--quiet", "--force", url, *refspecs, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"push failed: {res.stderr.strip()}")


@dataclass
class Cost:
    seconds: float  # the sync, and listing every job through the index it built
    fold_seconds: float  # a cold full fold of every job (no index), as `git jobs verify` does
    peak_rss_mb: float
    base_rss_mb: float
    git_peak_rss_mb: float  # the git subprocesses of the sync (fetch, index-pack)
    result: dict[str, Any]


def measured_sync(repo: Path, key: Path, url: str) -> Cost:
    """Sync and load every job in a fresh process; VmHWM there is the sync's and the load's."""
    code = f"""
import json, resource, time, cob, jobs
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
store = jobs.Jobs.open({str(repo)!r}, signer=cob.Signer.from_file({str(key)!r}))
base = hwm()
t = time.monotonic()
report = store.sync({url!r})
runs = sum(len(j.runs()) for j in store.all())
dt = time.monotonic() - t
t = time.monotonic()
rejected = jobs.Jobs.open({str(repo)!r}).rejected()
fold = time.monotonic() - t
print(json.dumps(dict(seconds=dt, fold=fold, base=base, peak=hwm(),
      git=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
      fetched=len(report.fetched), refused=[r.kind for r in report.refused],
      rejected=[r.reason for r in report.rejected], all_rejected=len(rejected), runs=runs)))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=worker_env(), timeout=7200
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return Cost(
        data["seconds"], data["fold"], data["peak"] / 1024, data["base"] / 1024, data["git"] / 1024, data
    )


class Arena:
    """A hub served by a real ``git daemon`` on 127.0.0.1, Alice (honest, has a job with one
    run), Mallory (hostile, a raw repository) and Bob (honest, syncs and is measured)."""

    def __init__(self, base: Path, url: str) -> None:
        self.base = base
        self.url = url
        origin = base / "origin"
        origin.mkdir(parents=True)
        git(origin, "init", "-q")
        (origin / "f").write_text("x\n")
        git(origin, "add", "f")
        git(origin, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
        self.commit = git(origin, "rev-parse", "HEAD").stdout.strip()
        self.paths: dict[str, Path] = {}
        self.signers: dict[str, cob.Signer] = {}
        self.keys: dict[str, Path] = {}
        for who in ("alice", "mallory", "bob"):
            path = base / who
            git(base, "clone", "-q", str(origin), str(path))
            self.paths[who] = path
            self.signers[who] = cob.Signer.generate()
            self.keys[who] = self.signers[who].save(base / f"{who}.key")
        self.alice = jobs.Jobs.open(self.paths["alice"], signer=self.signers["alice"])
        job = self.alice.create(self.commit)
        self.job_id = job.id
        self.alice_run = job.run("https://ci.example/alice/1")
        job.finish(self.alice_run, jobs.Reason.SUCCEEDED)
        self.alice.sync(url)
        self.bob = jobs.Jobs.open(self.paths["bob"], signer=self.signers["bob"])
        self.bob.sync(url)
        self.mallory_repo = pygit2.Repository(str(self.paths["mallory"]))
        git(self.paths["mallory"], "fetch", "-q", url, "+refs/namespaces/*:refs/namespaces/*")

    def nid(self, who: str) -> str:
        return self.signers[who].nid

    def ref(self, who: str) -> str:
        """``who``'s index ref (one per node: it names that node's tip of every job)."""
        return cob.index_ref(self.nid(who))

    def alice_tip(self) -> str:
        return self.alice.store.tips(jobs.JOB_TYPE, self.job_id)[self.nid("alice")]

    def mallory_push(self, oid: str, ref: str) -> None:
        tmp = "refs/mallory/tmp"
        self.mallory_repo.references.create(tmp, pygit2.Oid(hex=oid), force=True)
        push(self.paths["mallory"], self.url, f"{tmp}:{ref}")

    def hub_index(self, who: str) -> str | None:
        """``who``'s index tip on the hub now, its objects fetched into Mallory's repository."""
        ref = self.ref(who)
        listed = git(self.paths["mallory"], "ls-remote", self.url, ref).stdout.split()
        if not listed:
            return None
        git(self.paths["mallory"], "fetch", "-q", self.url, "+refs/namespaces/*:refs/namespaces/*")
        return listed[0]

    def mallory_index(
        self,
        entries: Mapping[str, str | None],
        *,
        who: str = "mallory",
        signer: str | None = "mallory",
        author: str | None = None,
        **kwargs: Any,
    ) -> str:
        """An index commit for ``who``'s namespace on top of its index on the hub, setting job
        entries ``{object id: tip}``: the honest one when Mallory writes her own index, else
        forged (:func:`forge_index`: another signer or author, no signature, a corrupted one,
        other parents...). Not pushed."""
        r = self.mallory_repo
        parent = self.hub_index(who)
        if who == signer and author is None and not kwargs:
            updates = {(jobs.TYPENAME, object_id): tip for object_id, tip in entries.items()}
            return sigrefs.write_commit(r, self.signers[who], self.nid(who), parent, updates)
        if parent is None:  # the chain's parentless empty root; only the tip is checked
            parent = sigrefs.write_commit(r, self.signers["mallory"], self.nid(who), None, {})
        return forge_index(
            r,
            parent,
            entries,
            author=self.nid(author or who),
            signer=self.signers[signer] if signer else None,
            **kwargs,
        )

    def mallory_publish(self, tip: str | None, object_id: str | None = None, **kwargs: Any) -> str:
        """Name ``tip`` as Mallory's tip of the job (or of ``object_id``; None drops the entry)
        in her index on the hub, validly signed unless ``kwargs`` say otherwise (see
        :meth:`mallory_index`); returns the index commit."""
        who = kwargs.get("who", "mallory")
        oid = self.mallory_index({object_id or self.job_id: tip}, **kwargs)
        self.mallory_push(oid, self.ref(who))
        return oid

    def bob_alice_state_intact(self) -> bool:
        job = self.bob.get(self.job_id)
        if job is None:
            return False
        run = job.runs_of(self.nid("alice")).get(self.alice_run)
        return run is not None and run.reason is jobs.Reason.SUCCEEDED

    # -- scenarios shared by the tests and the harness --------------------------------------
    def big_ops(self, size: int) -> str:
        """A validly signed change whose ops blob is ``size`` bytes, as Mallory's tip."""
        r = self.mallory_repo
        payload = b'[{"log":"' + b"A" * max(0, size - 80) + b'","run_id":"' + RUN_ID.encode()
        payload += b'","type":"run"}]'
        tree = tree_of(r, payload)
        oid = forge(r, tree, [self.alice_tip()], author=self.nid("mallory"), signer=self.signers["mallory"])
        self.mallory_publish(oid)
        return oid

    def many_parents(self, n: int) -> str:
        """A validly signed change with ``n`` parents (plain commits), as Mallory's tip."""
        r = self.mallory_repo
        empty = r.odb.write(TREE, b"")
        ident = pygit2.Signature("m", "m", 1_700_000_000, 0)
        parents = [self.alice_tip()]
        for i in range(n - 1):
            parents.append(str(r.create_commit(None, ident, ident, f"p{i}\n", empty, [])))
        tree = tree_of(r, start_run_ops())
        oid = forge(r, tree, parents, author=self.nid("mallory"), signer=self.signers["mallory"])
        self.mallory_publish(oid)
        return oid

    def deep_chain(self, depth: int, finishes: bool = False) -> str:
        """``depth`` validly signed changes in a chain on top of Alice's tip, as Mallory's tip.
        With ``finishes``, every change after the first finishes the run the first started
        (the worst case of the ancestry checks)."""
        r = self.mallory_repo
        start = tree_of(r, start_run_ops())
        finish = tree_of(r, ops_bytes([jobs.FinishRun(RUN_ID, "failed")]))
        tip = self.alice_tip()
        signer, nid = self.signers["mallory"], self.nid("mallory")
        for i in range(depth):
            tree = finish if (finishes and i) else start
            tip = forge(r, tree, [tip], author=nid, signer=signer, timestamp=1_700_000_000 + i)
        self.mallory_publish(tip)
        return tip


def _report(name: str, cost: Cost, extra: str = "") -> None:
    print(
        f"{name:<26} sync {cost.seconds:7.2f} s  cold fold {cost.fold_seconds:7.2f} s  "
        f"peak RSS {cost.peak_rss_mb:6.1f} MB (+{cost.peak_rss_mb - cost.base_rss_mb:5.1f}) "
        f"git {cost.git_peak_rss_mb:6.1f} MB  refused={cost.result['refused']} "
        f"rejected={len(cost.result['rejected'])} {extra}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ops-mb", type=int, default=100)
    p.add_argument("--parents", type=int, default=10_000)
    p.add_argument("--depth", type=int, default=100_000)
    p.add_argument(
        "--finish-depth",
        type=int,
        default=2_000,
        help="a chain where every change finishes the run its root started",
    )
    p.add_argument("--only", default="", help="comma-separated scenario numbers (1-4) to run")
    args = p.parse_args(argv)
    from tests.gitdaemon import GitDaemon

    with tempfile.TemporaryDirectory(prefix="git-jobs-hostile-") as tmp:
        base = Path(tmp)
        with GitDaemon(base / "served") as daemon:
            scenarios = [
                (f"ops blob {args.ops_mb} MB", lambda a: a.big_ops(args.ops_mb << 20)),
                (f"{args.parents} parents", lambda a: a.many_parents(args.parents)),
                (f"DAG {args.depth} deep", lambda a: a.deep_chain(args.depth)),
                (
                    f"{args.finish_depth} chained finishes",
                    lambda a: a.deep_chain(args.finish_depth, finishes=True),
                ),
            ]
            only = {int(x) for x in args.only.split(",") if x}
            for i, (name, make) in enumerate(scenarios):
                if only and i + 1 not in only:
                    continue
                arena_base = base / f"s{i}"
                hub = base / "served" / f"hub{i}.git"
                git(base, "init", "-q", "--bare", str(hub))
                arena = Arena(arena_base, daemon.url(hub.name))
                t = time.monotonic()
                make(arena)
                built = time.monotonic() - t
                cost = measured_sync(arena.paths["bob"], arena.keys["bob"], arena.url)
                _report(name, cost, f"(forging took {built:.1f} s)")
    print(
        f"limits: MAX_OPS_BYTES={cob.change.MAX_OPS_BYTES} MAX_PARENTS={cob.change.MAX_PARENTS} "
        f"MAX_CHANGES={cob.evaluate.MAX_CHANGES}"
    )
    print(f"harness peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
