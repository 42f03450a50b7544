"""Logs travel with the results: a node's run log reaches every peer that syncs, verified.

Through the installed `git-jobs` script and a real `git daemon` hub on 127.0.0.1: node A runs
jobs and syncs; maintainer M clones the hub and syncs; `git jobs logs` prints A's log byte for
byte (within the cap) — or refuses it when it does not match the signed ledger.
"""

from __future__ import annotations

import os
import pty
import subprocess
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pygit2
import pytest
import uuid6
from hypothesis import given
from hypothesis import strategies as st

import cob
import jobs
from cob.sync import check_tip
from jobs import logs
from jobs.node.capture import CappedLog
from jobs.node.logs import log_path
from tests.clirunner import GIT_JOBS, env_with
from tests.conftest import git, init_repo
from tests.gitdaemon import GitDaemon

FAILING = "[jobs.test]\nrun = \"printf 'out \\\\033[31mred\\\\n'; echo to-stderr >&2; exit 3\"\n"


@dataclass
class Run:
    code: int
    out: bytes
    err: str


def gjb(cwd: Path, *args: str, key: Path | None = None, **env: str) -> Run:
    """`git-jobs ARGS` with stdout as bytes (a pipe: the log's raw bytes)."""
    extra: dict[str, str | None] = {"GIT_JOBS_KEY": str(key) if key else None, **env}
    proc = subprocess.run(
        [GIT_JOBS, *args],
        cwd=cwd,
        capture_output=True,
        timeout=120,
        env=env_with(**extra),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    err = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err
    return Run(proc.returncode, proc.stdout, err)


def ok(cwd: Path, *args: str, key: Path | None = None, **env: str) -> Run:
    res = gjb(cwd, *args, key=key, **env)
    assert res.code == 0, (args, res)
    return res


@dataclass
class Net:
    tmp: Path
    url: str
    a: Path
    a_key: Path
    a_nid: str
    m: Path
    m_key: Path


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    """A git daemon hub; node A's clone with a key; maintainer M (cloned later, per test)."""
    served = tmp_path / "served"
    served.mkdir()
    a = tmp_path / "a"
    init_repo(a)
    git(served, "clone", "-q", "--bare", str(a), "hub.git")
    a_signer = cob.Signer.generate()
    a_key = a_signer.save(tmp_path / "a.key")
    m_key = cob.Signer.generate().save(tmp_path / "m.key")
    with GitDaemon(served) as daemon:
        url = daemon.url("hub.git")
        git(a, "remote", "add", "hub", url)
        yield Net(tmp_path, url, a, a_key, a_signer.nid, tmp_path / "m", m_key)


def commit_defs(net: Net, text: str) -> str:
    (net.a / ".git-jobs.toml").write_text(text)
    git(net.a, "add", ".git-jobs.toml")
    git(net.a, "commit", "-q", "-m", "definitions")
    git(net.a, "push", "-q", "hub", "HEAD:main")
    return git(net.a, "rev-parse", "HEAD").strip()


def clone_m(net: Net, name: str = "m") -> Path:
    path = net.tmp / name
    git(net.tmp, "clone", "-q", net.url, str(path))
    return path


def only_run(repo: Path, name: str, nid: str) -> tuple[uuid.UUID, jobs.Run]:
    job = next(j for j in jobs.Jobs.open(repo).all() if j.name == name)
    latest = job.latest_of(nid)
    assert latest is not None
    return latest


def local_log(repo: Path, run_id: uuid.UUID) -> bytes:
    return log_path(pygit2.Repository(str(repo)), run_id).read_bytes()


# -- must show: A's failing run, read by M after a sync ----------------------------------------
@pytest.mark.slow
def test_a_failing_run_reaches_the_maintainer_byte_for_byte(net: Net) -> None:
    sha = commit_defs(net, FAILING)
    assert gjb(net.a, "work", "any", key=net.a_key).code == 1
    ok(net.a, "sync", "hub", key=net.a_key)
    run_id, run = only_run(net.a, "test", net.a_nid)
    assert run.exit_status == 3 and run.log_blob is not None
    assert run.log == f"git-jobs://{net.a_nid}/{run_id}"  # no private file:// path
    written = local_log(net.a, run_id)
    assert b"out \x1b[31mred\n" in written and b"to-stderr\n" in written

    m = clone_m(net)
    synced = ok(m, "sync", "--json", key=net.m_key).out
    assert b'"bucket": "' in synced  # the log bucket came with the jobs
    for spec in (f"{sha[:10]}:test", "HEAD:test", str(run_id), run_id.hex[:10]):
        shown = ok(m, "logs", spec, "--node", net.a_nid[:12], key=net.m_key)
        assert shown.out == written  # byte for byte: a pipe gets the raw bytes
    # the plain `show --json` carries the verified blob id and the exit status
    show = ok(m, "show", "HEAD:test", "--json").out
    assert f'"log_blob": "{run.log_blob}"'.encode() in show and b'"exit": 3' in show


@pytest.mark.slow
def test_on_a_terminal_the_log_is_escaped_and_raw_is_asked_for(net: Net) -> None:
    commit_defs(net, FAILING)
    gjb(net.a, "work", "any", key=net.a_key)
    ok(net.a, "sync", "hub", key=net.a_key)
    m = clone_m(net)
    ok(m, "sync", key=net.m_key)
    on_tty = _on_a_terminal(m, "logs", "HEAD:test")
    assert b"\x1b" not in on_tty and b"out \\x1b[31mred" in on_tty
    raw = _on_a_terminal(m, "logs", "HEAD:test", "--raw")
    assert b"out \x1b[31mred" in raw


def _on_a_terminal(cwd: Path, *args: str) -> bytes:
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [GIT_JOBS, *args],
            cwd=cwd,
            stdout=follower,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env_with(GIT_JOBS_KEY=None),
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(leader)
    return b"".join(chunks).replace(b"\r\n", b"\n")


# -- must show: a tampered log is refused, not shown ------------------------------------------
def _forge_bucket(hub: Path, nid: str, run_id: uuid.UUID, text: bytes, *, child: bool) -> None:
    """On the hub, A's bucket with another blob for the run (unsigned): a child of A's tip, or
    a new chain that replaces it (so the real log is nowhere in what a fetch brings)."""
    repo = pygit2.Repository(str(hub))
    name = logs.bucket_ref(nid, logs.bucket_of(run_id))
    tip = repo.references[name].target
    fan, leaf = logs.entry_path(run_id)
    sub = repo.TreeBuilder()
    sub.insert(leaf, repo.create_blob(text), pygit2.enums.FileMode.BLOB)
    top = repo.TreeBuilder()
    top.insert(fan, sub.write(), pygit2.enums.FileMode.TREE)
    who = pygit2.Signature(nid, nid)
    forged = repo.create_commit(None, who, who, "Log\n", top.write(), [tip] if child else [])
    repo.references[name].set_target(forged)


@pytest.mark.slow
def test_a_tampered_log_is_refused(net: Net) -> None:
    commit_defs(net, FAILING)
    gjb(net.a, "work", "any", key=net.a_key)
    ok(net.a, "sync", "hub", key=net.a_key)
    run_id, _ = only_run(net.a, "test", net.a_nid)
    hub = net.tmp / "served" / "hub.git"
    forged = b"all tests passed, honest\n"
    _forge_bucket(hub, net.a_nid, run_id, forged, child=True)

    # `git jobs sync` refuses the forged bucket tip (not signed by A) and keeps no such ref,
    # nor any object it brought (the quarantine): M says the log is not here, shows nothing
    # of the forgery, and gets A's real log once A's bucket moves forward again.
    m = clone_m(net)
    synced = gjb(m, "sync", key=net.m_key)
    assert "refused 1" in synced.out.decode() and _bucket_refs(m) == {}
    missing = gjb(m, "logs", "HEAD:test")
    assert missing.code == 1 and missing.out == b"" and len(missing.err.strip().splitlines()) == 1
    assert "honest" not in missing.err

    # A bucket whose history holds no real log, taken by plain git (which checks no
    # signature): the reader refuses it against the ledger and shows nothing of it.
    _forge_bucket(hub, net.a_nid, run_id, forged, child=False)
    plain = clone_m(net, "plain")
    git(plain, "fetch", "-q", net.url, "refs/namespaces/*:refs/namespaces/*")
    refused = gjb(plain, "logs", "HEAD:test")
    assert refused.code == 1 and refused.out == b""
    assert refused.err.startswith("error: refused: ") and "signed" in refused.err
    assert len(refused.err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_corrupted_log_object_is_refused(net: Net) -> None:
    commit_defs(net, FAILING)
    gjb(net.a, "work", "any", key=net.a_key)
    ok(net.a, "sync", "hub", key=net.a_key)
    m = clone_m(net)
    ok(m, "sync", key=net.m_key)
    _, run = only_run(m, "test", net.a_nid)
    assert run.log_blob is not None
    loose = m / ".git" / "objects" / run.log_blob[:2] / run.log_blob[2:]
    assert loose.is_file()  # a small fetch is unpacked into loose objects
    other = b"all tests passed\n"
    loose.chmod(0o644)
    loose.write_bytes(zlib.compress(b"blob %d\x00" % len(other) + other))
    refused = gjb(m, "logs", "HEAD:test")
    assert refused.code == 1 and b"passed" not in refused.out
    assert refused.err.startswith("error: refused: ")


# -- must show: a 50 MB log is capped ----------------------------------------------------------
def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.mark.slow
def test_a_50_mb_log_is_capped_head_and_tail_and_the_repositories_grow_by_the_cap(net: Net) -> None:
    cap = 1 << 20
    git(net.a, "config", "jobs.logs.maxBytes", str(cap))
    git(net.a, "config", "jobs.isolation", "none")  # the job writes a file the test reads
    dump = net.tmp / "dump.txt"
    commit_defs(net, f'[jobs.big]\nrun = "head -c 37500000 /dev/urandom | base64 | tee {dump}"\n')
    objects_a, gitdir_a = _size(net.a / ".git" / "objects"), _size(net.a / ".git")
    ok(net.a, "work", "any", key=net.a_key)
    output = dump.read_bytes()
    assert len(output) > 50_000_000
    run_id, run = only_run(net.a, "big", net.a_nid)
    written = local_log(net.a, run_id)
    # head and tail kept, with a line saying what was left out
    start = written.index(b"$ head -c")
    start = written.index(b"\n", start) + 1
    body_head = written[start:]
    assert len(written) < cap + 4096
    marker = body_head.index(b"\n[git-jobs: log capped: ")
    assert output.startswith(body_head[:marker])
    tail_start = body_head.index(b"]\n", marker) + 2
    tail = body_head[tail_start:]
    closing = tail.index(b"git-jobs: succeeded after")
    assert output.endswith(tail[:closing]) and len(tail[:closing]) > cap // 2 - 1024
    assert b"bytes omitted here" in body_head[marker:tail_start]
    # the node's disk and the object store grow by about the cap each, not by 50 MB
    assert _size(net.a / ".git" / "objects") - objects_a < cap + 256 * 1024
    assert _size(net.a / ".git") - gitdir_a < 2 * cap + 512 * 1024

    hub = net.tmp / "served" / "hub.git"
    hub_before = _size(hub)
    ok(net.a, "sync", "hub", key=net.a_key)
    assert _size(hub) - hub_before < cap + 256 * 1024
    m = clone_m(net)
    m_before = _size(m / ".git")
    ok(m, "sync", key=net.m_key)
    assert _size(m / ".git") - m_before < cap + 256 * 1024
    assert ok(m, "logs", "HEAD:big").out == written
    assert run.log_blob is not None


# -- must show: pruning keeps every peer working, fast-forward only ---------------------------
def _old_run(repo: Path, key: Path, days: float, text: bytes) -> uuid.UUID:
    """A finished run whose uuid7 time (and so its log bucket) lies ``days`` in the past."""
    signer = cob.Signer.from_file(key)
    store = jobs.Jobs.open(repo, signer)
    ms = int((time.time() - days * 86400) * 1000)
    fresh = uuid6.uuid7().int
    run_id = uuid.UUID(int=(ms << 80) | (fresh & ((1 << 80) - 1)))
    job = store.create("HEAD", "old")
    job.run(f"git-jobs://{signer.nid}/{run_id}", run_id=run_id)
    blob = logs.publish(store.repo, signer, run_id, text)
    job.finish(run_id, "failed", log_blob=blob, exit_status=1)
    local = log_path(store.repo, run_id)
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(text)  # as the node's own copy
    return run_id


def _bucket_refs(path: Path) -> dict[str, str]:
    out = git(path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/namespaces/")
    return {n: o for n, o in (ln.split() for ln in out.splitlines()) if "/refs/logs/" in n}


@pytest.mark.slow
def test_pruning_old_logs_keeps_peers_working_and_fast_forward_only(net: Net) -> None:
    commit_defs(net, '[jobs.now]\nrun = "echo current $GIT_JOBS_RUN_ID"\n')
    old = _old_run(net.a, net.a_key, 95, b"an old log\n")
    ok(net.a, "work", "any", key=net.a_key)
    ok(net.a, "sync", "hub", key=net.a_key)
    old_bucket = logs.bucket_ref(net.a_nid, logs.bucket_of(old))
    m = clone_m(net)
    ok(m, "sync", key=net.m_key)
    assert old_bucket in _bucket_refs(m) and ok(m, "logs", str(old)).out == b"an old log\n"
    # a plain-git peer follows with the documented, non-forced refspec
    plain = clone_m(net, "plain")
    git(plain, "config", "--add", "remote.origin.fetch", "refs/namespaces/*:refs/namespaces/*")
    git(plain, "fetch", "-q", "origin")
    # M2 prunes *before* A does: it never fetches the old bucket again
    m2 = clone_m(net, "m2")
    ok(m2, "prune-logs", "--older-than", "30d")
    ok(m2, "sync", key=net.m_key)
    assert old_bucket not in _bucket_refs(m2)
    assert "pruned" in gjb(m2, "logs", str(old)).err

    pruned = ok(net.a, "prune-logs", "--older-than", "30d", "--json").out
    assert old_bucket.encode() in pruned and old_bucket not in _bucket_refs(net.a)
    assert not log_path(pygit2.Repository(str(net.a)), old).exists()  # the node's copy too
    synced = ok(net.a, "sync", "hub", "--json", key=net.a_key).out
    assert old_bucket.encode() in synced  # deleted on the hub: logs.deleted
    assert old_bucket not in _bucket_refs(net.tmp / "served" / "hub.git")

    # A keeps running; its current bucket only moves forward everywhere
    git(net.a, "commit", "-q", "--allow-empty", "-m", "next")
    git(net.a, "push", "-q", "hub", "HEAD:main")
    before = _bucket_refs(m)
    ok(net.a, "work", "any", key=net.a_key)
    ok(net.a, "sync", "hub", key=net.a_key)
    for peer in (m, m2):
        report = ok(peer, "sync", "--json", key=net.m_key).out
        assert b'"refused": []' in report and b'"rejected": []' in report
    after = _bucket_refs(m)
    current = logs.bucket_ref(net.a_nid, logs.month_of(time.time()))
    moved = git(m, "merge-base", "--is-ancestor", before[current], after[current], check=False)
    assert moved == "" and before[current] != after[current]
    fetched = subprocess.run(["git", "fetch", "origin"], cwd=plain, capture_output=True, text=True)
    assert fetched.returncode == 0 and "rejected" not in fetched.stderr
    # M did not prune: it keeps its copy and the ledger is whole; a new peer is told
    assert ok(m, "logs", str(old)).out == b"an old log\n"
    assert ok(m, "verify").code == 0
    m3 = clone_m(net, "m3")
    ok(m3, "sync", key=net.m_key)
    gone = gjb(m3, "logs", str(old))
    assert gone.code == 1 and "not here yet" in gone.err
    assert ok(m3, "logs", "HEAD:now").out.startswith(b"git-jobs: run ")


# -- node settings: redaction, not publishing -------------------------------------------------
@pytest.mark.slow
def test_redaction_patterns_apply_before_publishing(net: Net) -> None:
    git(net.a, "config", "--add", "jobs.logs.redact", "s3cr[e]t[0-9]+")
    git(net.a, "config", "--add", "jobs.logs.redact", "token=[A-Za-z]+")
    commit_defs(net, '[jobs.t]\nrun = "echo password s3cret42 token=abcDEF ok"\n')
    ok(net.a, "work", "any", key=net.a_key)
    ok(net.a, "sync", "hub", key=net.a_key)
    m = clone_m(net)
    ok(m, "sync", key=net.m_key)
    shown = ok(m, "logs", "HEAD:t").out
    assert b"password [REDACTED] [REDACTED] ok" in shown and b"s3cret42" not in shown
    own = ok(net.a, "logs", "HEAD:t", key=net.a_key).out  # redacted as captured, before the cap
    assert b"password [REDACTED] [REDACTED] ok" in own and b"s3cret42" not in own


@pytest.mark.slow
def test_a_node_that_does_not_publish_logs(net: Net) -> None:
    git(net.a, "config", "jobs.logs.publish", "false")
    commit_defs(net, '[jobs.t]\nrun = "echo private"\n')
    ok(net.a, "work", "any", key=net.a_key)
    ok(net.a, "sync", "hub", key=net.a_key)
    assert _bucket_refs(net.a) == {} and _bucket_refs(net.tmp / "served" / "hub.git") == {}
    assert b"private" in ok(net.a, "logs", "HEAD:t", key=net.a_key).out
    m = clone_m(net)
    ok(m, "sync", key=net.m_key)
    res = gjb(m, "logs", "HEAD:t")
    assert res.code == 1 and "did not publish" in res.err and res.out == b""


def test_a_bad_setting_is_one_line(net: Net) -> None:
    git(net.a, "config", "jobs.logs.redact", "(unclosed")
    commit_defs(net, '[jobs.t]\nrun = "true"\n')
    res = gjb(net.a, "work", "any", key=net.a_key)
    assert res.code == 2 and res.err.startswith("error: jobs.logs.redact: invalid pattern")
    assert jobs.Jobs.open(net.a).find_by_commit("HEAD")[0].runs() == {}  # nothing started


# -- following a run in progress ---------------------------------------------------------------
def test_follow_streams_a_local_run_until_it_ends(net: Net) -> None:
    go = net.tmp / "go"
    wait = f"while [ ! -f {go} ]; do sleep 0.05; done"
    git(net.a, "config", "jobs.isolation", "none")  # the job waits for a file the test makes
    commit_defs(net, f'[jobs.slow]\nrun = "echo first; {wait}; echo second"\n')
    env = env_with(GIT_JOBS_KEY=str(net.a_key))
    worker = subprocess.Popen([GIT_JOBS, "work", "any"], cwd=net.a, env=env, stdout=subprocess.DEVNULL)
    follower = None
    try:
        deadline = time.monotonic() + 30
        while not list((net.a / ".git" / "git-jobs" / "logs").glob("*.log")):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        while True:  # the run is in the ledger once the log has its first lines
            found = [j for j in jobs.Jobs.open(net.a).all() if j.runs()]
            if found:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        follower = subprocess.Popen(
            [GIT_JOBS, "logs", "HEAD:slow", "--follow"], cwd=net.a, env=env, stdout=subprocess.PIPE
        )
        assert follower.stdout is not None
        seen = b""
        while b"first\n" not in seen:  # streamed while the job still runs
            chunk = os.read(follower.stdout.fileno(), 4096)
            assert chunk, f"the follower ended early: {seen!r}"
            seen += chunk
        assert follower.poll() is None
        go.touch()
        rest, _ = follower.communicate(timeout=30)
        assert follower.returncode == 0
        assert worker.wait(timeout=30) == 0
        run_id, _ = only_run(net.a, "slow", net.a_nid)
        assert seen + rest == local_log(net.a, run_id)
        assert b"second\n" in rest and b"git-jobs: succeeded" in rest
    finally:
        for proc in (worker, follower):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_unknown_and_ambiguous_specs_are_one_line(net: Net) -> None:
    commit_defs(net, '[jobs.t]\nrun = "true"\n')
    ok(net.a, "work", "any", key=net.a_key)
    for spec, text in (("HEAD:nope", "no job"), ("ffffffff-ffff", "no run"), ("zz", "not a run id")):
        res = gjb(net.a, "logs", spec)
        assert res.code == 2 and len(res.err.strip().splitlines()) == 1 and text in res.err, res
    res = gjb(net.a, "logs", "HEAD:t", "--node", "z6MkNOPE")
    assert res.code == 2 and "has no run" in res.err


# -- the capture and the bucket layout, directly ----------------------------------------------
@pytest.mark.parametrize("size", [0, 10, 4096, 4097, 100_000])
def test_capped_log_keeps_head_and_tail_exactly(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "x.log"
    with CappedLog(path, 4096) as log:
        proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=log)
        proc.communicate(data)
    got = path.read_bytes()
    assert got == logs.cap(data, 4096)
    if size > 4096:
        assert got.startswith(data[:2048]) and got.endswith(data[-2048:])
        assert f"{size - 4096} of {size} bytes omitted".encode() in got


def test_buckets_are_monthly_signed_chains_with_a_fanout(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "r")
    signer = cob.Signer.generate()
    ids = [uuid6.uuid7() for _ in range(3)]
    blobs = [logs.publish(repo, signer, run_id, f"log {i}\n".encode()) for i, run_id in enumerate(ids)]
    bucket = logs.bucket_ref(signer.nid, logs.bucket_of(ids[0]))
    assert logs.bucket_of(ids[0]) == time.strftime("%Y-%m", time.gmtime())
    tip = repo.references[bucket].peel(pygit2.Commit)
    assert len(list(repo.walk(tip.id))) == 3  # one commit per log, each on the last
    for run_id, blob in zip(ids, blobs, strict=True):
        fan, leaf = logs.entry_path(run_id)
        assert str(tip.tree[f"{fan}/{leaf}"].id) == blob
    assert check_tip(repo, signer.nid, "", str(tip.id)) is None  # signed by the node
    # stock git verifies the chain's signatures from the NID alone
    allowed = tmp_path / "allowed"
    allowed.write_text(cob.allowed_signers_line(signer.nid) + "\n")
    out = git(
        tmp_path / "r",
        "-c",
        "gpg.format=ssh",
        "-c",
        f"gpg.ssh.allowedSignersFile={allowed}",
        "log",
        "--format=%G?",
        bucket,
    )
    assert out.split() == ["G", "G", "G"]


@pytest.mark.slow
def test_a_run_finished_by_hand_can_publish_its_log(net: Net) -> None:
    job = ok(net.a, "create", "HEAD", "--name", "manual", key=net.a_key).out.decode().strip()
    run = ok(net.a, "run", job, "--log", "https://ci.example/42", key=net.a_key).out.decode().strip()
    out = net.tmp / "out.log"
    out.write_bytes(b"by hand\n\xff binary ok\n")
    assert gjb(net.a, "finish", job, run, "failed", "--exit", "300", key=net.a_key).code == 2
    done = ok(
        net.a, "finish", job, run, "failed", "--log-file", str(out), "--exit", "2", "--json", key=net.a_key
    ).out
    assert b'"exit": 2' in done and b'"log_blob": "' in done
    again = gjb(net.a, "finish", job, run, "failed", "--log-file", str(out), key=net.a_key)
    assert again.code == 2 and "already finished" in again.err
    synced = ok(net.a, "sync", "hub", key=net.a_key).out.decode()
    assert "log buckets fetched 0, pushed 1" in synced
    m = clone_m(net)
    ok(m, "sync", key=net.m_key)
    assert ok(m, "logs", run).out == out.read_bytes()


def test_log_buckets_move_only_forward_through_sync(tmp_path: Path) -> None:
    """Two copies of one node that each publish into the same month: nothing is rewritten.
    The second merges the remote's bucket into its own (a signed commit with both tips as
    parents, every log of both) and pushes it; peers that kept the first take it as a
    fast-forward and have both logs."""
    hub = init_repo(tmp_path / "hub.git", bare=True)
    signer = cob.Signer.generate()
    first = jobs.Jobs.open(init_repo(tmp_path / "first"), signer)
    second = jobs.Jobs.open(init_repo(tmp_path / "second"), signer)
    peer = jobs.Jobs.open(init_repo(tmp_path / "peer"))
    one = uuid6.uuid7()
    blob_one = logs.publish(first.repo, signer, one, b"one\n")
    assert first.sync(hub.path).logs_pushed
    got = peer.sync(hub.path)
    assert len(got.logs_fetched) == 1 and got.ok
    ((name, kept),) = _bucket_refs(tmp_path / "peer").items()

    two = uuid6.uuid7()
    blob_two = logs.publish(second.repo, signer, two, b"two\n")  # a chain of its own
    report = second.sync(hub.path)
    assert report.ok and len(report.logs_pushed) == 1, report.summary()
    merged = _bucket_refs(tmp_path / "second")[name]
    parents = [str(p) for p in second.repo[merged].parent_ids]
    assert len(parents) == 2 and parents[0] == kept  # the remote's tip first, then ours
    assert peer.sync(hub.path).ok and _bucket_refs(tmp_path / "peer") == {name: merged}
    for run, blob in ((one, blob_one), (two, blob_two)):
        assert logs._bucket_entry(peer.repo, signer.nid, logs.bucket_of(run), run) == blob
    assert first.sync(hub.path).ok and _bucket_refs(tmp_path / "first") == {name: merged}
    # A hub passing off another commit of ours (our index) as the bucket: refused, not merged.
    logs.publish(first.repo, signer, uuid6.uuid7(), b"three\n")
    first.create(first.resolve_commit("HEAD"))  # an index of ours, signed by the same key
    assert first.sync(hub.path).ok
    index = cob.index_ref(signer.nid)
    git(Path(hub.path), "update-ref", name, git(tmp_path / "first", "rev-parse", index).strip())
    mine = _bucket_refs(tmp_path / "first")[name]
    bad = first.sync(hub.path)
    # (refused at fetch for its shape: a bucket tip is a log commit, FORMAT.md 11.4)
    refused = [r for r in bad.refused if r.ref == name and r.side == "fetch"]
    assert [r.kind for r in refused][:1] == [cob.sync.RefusalKind.BAD_TIP]
    assert "not a log bucket commit" in refused[0].reason
    assert _bucket_refs(tmp_path / "first")[name] == mine


def test_reader_refuses_oversized_and_non_blob_objects_and_says_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = init_repo(tmp_path / "r")
    signer = cob.Signer.generate()
    store = jobs.Jobs.open(repo, signer)
    job = store.create("HEAD", "t")
    run_id = job.run("https://ci.example/1")
    started = job.runs_of(signer.nid)[run_id]
    assert logs.read(repo, signer.nid, run_id, started).status is logs.LogStatus.RUNNING
    blob = logs.publish(repo, signer, run_id, b"x" * 5000)
    assert blob is not None
    job.finish(run_id, "failed", log_blob=blob)
    run = job.runs_of(signer.nid)[run_id]
    assert logs.read(repo, signer.nid, run_id, run).data == b"x" * 5000
    monkeypatch.setattr(logs, "MAX_READ_BYTES", 4096)  # checked from the header, not inflated
    got = logs.read(repo, signer.nid, run_id, run)
    assert got.status is logs.LogStatus.REFUSED and "limit" in got.detail
    # a finish naming a tree (a hostile node's) is refused too
    other = store.create("HEAD", "u")
    rid = other.run("https://ci.example/2")
    other.finish(rid, "failed", log_blob=str(repo.head.peel(pygit2.Commit).tree_id))
    tree_run = other.runs_of(signer.nid)[rid]
    got = logs.read(repo, signer.nid, rid, tree_run)
    assert got.status is logs.LogStatus.REFUSED and "not a blob" in got.detail


@given(st.text(max_size=120))
def test_family_names_never_crash_and_round_trip(text: str) -> None:
    family = logs.family()
    parsed = family.parse(text)
    if parsed is not None:
        assert family.ref(*parsed) == text and logs.BUCKET.fullmatch(parsed[1])
    nid = "z6Mk" + text.replace("/", "")
    assert family.parse(family.ref(nid, "2026-12")) == (nid, "2026-12")
    assert family.parse(family.ref(nid, "2026-13")) is None
