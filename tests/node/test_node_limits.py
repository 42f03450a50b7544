"""A node's resource bounds and sandbox (issue 26, items 7, 8, 10 and 17), each attack replayed.

- 10: without bubblewrap a node ran a job that read the key, planted a hook and left a process
  behind. Now it runs nothing unless a person chose ``jobs.isolation = none`` (and says so at
  start and in ``node.json``); what a job leaves running is killed when it ends, either way.
- 17: a job's processes and file sizes are limited, the sandbox's ``/tmp`` is bounded, the
  kernel keyrings are masked, and work only a requester asked for gets no network.
- 7: sparse outputs were copied as real bytes and never pruned; now they are counted as
  copied, bounded per job and per commit, kept sparse, and the store is pruned.
- 8: ``changed()`` globs cost the scheduler minutes; now each is matched once per commit, with a
  bounded number of comparisons (``tests/spec/test_conditions.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

import cob
import jobs
from jobs.node import Workshop
from jobs.node.isolation import IsolationError, load_isolation
from jobs.node.outputs import KEEP_SECONDS, MAX_COMMIT_BYTES, collect, provide, prune, store_root
from tests.clirunner import GIT_JOBS, env_with, gj
from tests.conftest import git, init_repo
from tests.node.test_node_daemon import wait_for
from tests.node.test_node_work import commit_defs, new_key, reasons

TOOLS = (
    "git",
    "sh",
    "cat",
    "sleep",
    "setsid",
    "env",
    "head",
    "truncate",
    "mkdir",
    "ls",
    "echo",
    "true",
    "rm",
    "id",
    "grep",
)


def _bwrap_problem(repo: Path) -> str | None:
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    try:
        load_isolation(pygit2.Repository(str(repo)), "bwrap").check()
    except IsolationError as e:
        return str(e)
    return None


def _needs_bwrap(repo: Path) -> None:
    why = _bwrap_problem(repo)
    if why:
        pytest.skip(f"bubblewrap cannot sandbox here: {why}")


def _no_bwrap_env(tmp_path: Path) -> dict[str, str]:
    """A HOME with no git config (so nothing chose an isolation) and a PATH without bwrap."""
    home = tmp_path / "bare-home"
    home.mkdir(exist_ok=True)
    (home / ".gitconfig").write_text("[user]\n\tname = T\n\temail = t@example.invalid\n")
    bin_dir = tmp_path / "bin-without-bwrap"
    bin_dir.mkdir(exist_ok=True)
    for tool in TOOLS:
        found = shutil.which(tool)
        if found and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    return {"HOME": str(home), "PATH": str(bin_dir), "XDG_CONFIG_HOME": str(home / ".config")}


def _processes(marker: str) -> list[int]:
    """Live processes whose command line holds ``marker``."""
    out = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmdline and state != "Z":
            out.append(int(proc.name))
    return out


@pytest.fixture
def leftovers() -> Iterator[list[str]]:
    """Markers of processes a test's jobs try to leave behind (killed afterwards, whatever)."""
    markers: list[str] = []
    yield markers
    for marker in markers:
        for pid in _processes(marker):
            os.kill(pid, signal.SIGKILL)


def _escape(seconds: str) -> str:
    """A job that leaves processes behind three ways: background, setsid, and env -i + setsid."""
    return (
        f"sleep {seconds}1 & setsid sleep {seconds}2 & (env -i setsid sleep {seconds}3 &) ; "
        "echo left three behind"
    )


# -- 10: no sandbox, no job -------------------------------------------------------------------------
@pytest.mark.slow
def test_without_bubblewrap_work_any_and_trigger_run_nothing_unless_a_person_chose_none(
    tmp_path: Path, leftovers: list[str]
) -> None:
    path = tmp_path / "node"
    init_repo(path)
    signer, key = new_key(tmp_path / "keys" / "node.key")
    hook = path / ".git" / "hooks" / "post-checkout"
    seconds = str(9000 + os.getpid() % 900)
    leftovers.append(f"sleep {seconds}")
    attack = f"cat {key} && echo STOLE-KEY; echo 'echo pwned' > {hook} && echo WROTE-HOOK; " + _escape(
        seconds
    )
    sha = commit_defs(path, f"[jobs.attack]\nrun = '''{attack}'''\n[trigger]\nrun = '''{attack}'''\n")
    git(path, "checkout", "-q", "-b", "other")  # `work trigger` looks at the other branches' tips
    git(path, "commit", "-q", "--allow-empty", "-m", "HEAD moves on")
    env = _no_bwrap_env(tmp_path)

    for args in (("work", "any", sha), ("work", "trigger")):
        res = gj(path, *args, key=key, **env)
        assert res.code == 2, res
        assert res.err.strip().splitlines() == [res.err.strip()], res  # one line
        assert "no job sandbox" in res.err and "jobs.isolation none" in res.err, res
    assert not hook.exists() and not any(reasons(jobs.Jobs.open(path), sha, signer.nid).values())

    git(path, "config", "jobs.isolation", "none")  # a person's choice
    res = gj(path, "work", "trigger", key=key, **env)
    assert res.code == 0 and "triggered" in res.out, res
    assert hook.exists()  # no sandbox: it does what it likes …
    wait_for(lambda: _processes(f"sleep {seconds}") == [], 10, "a trigger's leftovers killed")  # … not after

    hook.unlink()
    git(path, "config", "--unset", "jobs.isolation")
    res = gj(path, "work", "any", sha, "--isolation", "none", key=key, **env)  # the flag: a choice too
    assert res.code == 0, res
    log = next((path / ".git" / "git-jobs" / "logs").glob("*.log")).read_text()
    assert "STOLE-KEY" in log and "left three behind" in log
    wait_for(lambda: _processes(f"sleep {seconds}") == [], 10, "leftovers killed")


@pytest.mark.slow
def test_a_timed_out_jobs_escaped_processes_get_sigterm_then_go(tmp_path: Path, leftovers: list[str]) -> None:
    path = tmp_path / "node"
    init_repo(path)
    signer, key = new_key(tmp_path / "node.key")
    git(path, "config", "jobs.isolation", "none")  # the marker is written to a host path
    marker, seconds = tmp_path / "cleaned", str(7000 + os.getpid() % 900)
    leftovers.append(f"sleep {seconds}")
    trap = f"trap 'sleep 0.3; echo cleaned > {marker}; exit 0' TERM"  # cleaning up takes a while
    (path / "escape.sh").write_text(f"{trap}\nsleep {seconds} & wait\n")
    git(path, "add", "escape.sh")
    sha = commit_defs(path, f'[jobs.slow]\nrun = "setsid sh escape.sh & sleep {seconds}1"\ntimeout = "1s"\n')
    res = gj(path, "work", "any", key=key)
    assert reasons(jobs.Jobs.open(path), sha, signer.nid) == {"slow": ["timed_out"]}, res
    assert marker.read_text() == "cleaned\n"  # it left the job's group, and still got its SIGTERM
    wait_for(lambda: _processes(f"sleep {seconds}") == [], 10, "every process of the run gone")


def test_a_node_without_a_sandbox_refuses_to_start_or_says_so_at_start_and_in_node_json(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node"
    init_repo(path)
    hub = tmp_path / "hub.git"
    init_repo(hub, bare=True)
    _, key = new_key(tmp_path / "keys" / "node.key")
    env = _no_bwrap_env(tmp_path)
    res = gj(path, "node", "--remote", str(hub), "--interval", "0.2s", key=key, **env)
    assert res.code == 2 and "preflight" in res.err and "no job sandbox" in res.err, res
    assert len(res.err.strip().splitlines()) == 1, res

    proc = subprocess.Popen(
        [GIT_JOBS, "node", "--remote", str(hub), "--interval", "0.2s", "--isolation", "none"],
        cwd=path,
        env=env_with(GIT_JOBS_KEY=str(key), **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    beat = path / ".git" / "git-jobs" / "node.json"
    try:
        wait_for(beat.exists, 30, "node.json")
        state = json.loads(beat.read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert state["isolation"]["mode"] == "none" and state["isolation"]["sandbox"] is False, state
    said = [line for line in err.splitlines() if "WITHOUT a sandbox" in line]
    assert len(said) == 1 and "isolation none" in said[0], err


# -- 17: limits on a job, with or without a sandbox ---------------------------------------------------
def test_a_job_gets_the_nodes_file_size_and_process_limits(tmp_path: Path) -> None:
    path = tmp_path / "node"
    init_repo(path)
    signer, key = new_key(tmp_path / "node.key")
    git(path, "config", "jobs.maxFileSize", "1m")
    git(path, "config", "jobs.maxProcesses", "300")
    sha = commit_defs(
        path,
        "[jobs.limits]\nrun = 'grep -E \"Max (file size|processes)\" /proc/self/limits'\n"
        "[jobs.big]\nrun = 'head -c 2097152 /dev/zero > big'\n",
    )
    res = gj(path, "work", "any", key=key)
    assert reasons(jobs.Jobs.open(path), sha, signer.nid) == {"limits": ["succeeded"], "big": ["failed"]}, res
    assert res.code == 1, res
    logs = {p.read_text() for p in (path / ".git" / "git-jobs" / "logs").glob("*.log")}
    limits = next(text for text in logs if "Max file size" in text)
    assert " 1048576 " in limits.split("Max file size")[1].splitlines()[0], limits
    assert " 300 " in limits.split("Max processes")[1].splitlines()[0], limits
    big = next(text for text in logs if "head -c" in text)
    assert "killed by signal 25" in big or "exit status 153" in big, big  # SIGXFSZ


@pytest.mark.skipif(os.geteuid() == 0, reason="RLIMIT_NPROC does not bind root")
def test_a_fork_bomb_stops_at_the_process_limit(tmp_path: Path) -> None:
    path = tmp_path / "node"
    init_repo(path)
    signer, key = new_key(tmp_path / "node.key")
    git(path, "config", "jobs.maxProcesses", "1")  # this user already has more: no fork at all
    sha = commit_defs(path, "[jobs.bomb]\nrun = 'sleep 1 & sleep 1 & wait'\n")
    res = gj(path, "work", "any", key=key)
    assert res.code == 1, res
    assert reasons(jobs.Jobs.open(path), sha, signer.nid) == {"bomb": ["failed"]}


def test_limits_are_the_nodes_config_and_a_bad_one_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "node"
    init_repo(path)
    _, key = new_key(tmp_path / "node.key")
    commit_defs(path, "[jobs.a]\nrun = 'true'\n")
    git(path, "config", "jobs.maxFileSize", "lots")
    res = gj(path, "work", "any", key=key)
    assert res.code == 2 and "jobs.maxFileSize" in res.err and len(res.err.strip().splitlines()) == 1, res


def test_under_bwrap_tmp_is_bounded_and_the_keyrings_are_masked(tmp_path: Path) -> None:
    path = tmp_path / "node"
    init_repo(path)
    _needs_bwrap(path)
    signer, key = new_key(tmp_path / "node.key")
    git(path, "config", "jobs.isolation", "bwrap")
    git(path, "config", "jobs.tmpSize", "1m")
    if load_isolation(pygit2.Repository(str(path))).tmp_limit != 2**20:
        pytest.skip("this bubblewrap cannot size a tmpfs (--size: bubblewrap 0.7 and later)")
    sha = commit_defs(
        path,
        "[jobs.fill]\nrun = 'head -c 2097152 /dev/zero > /tmp/fill || echo TMP-FULL; "
        "head -c 2097152 /dev/zero > /var/tmp/fill || echo VARTMP-FULL; true'\n"
        "[jobs.keys]\nrun = 'cat /proc/keys /proc/key-users || echo NO-KEYS; true'\n",
    )
    assert gj(path, "work", "any", key=key).code == 0
    assert reasons(jobs.Jobs.open(path), sha, signer.nid) == {"fill": ["succeeded"], "keys": ["succeeded"]}
    logs = "".join(p.read_text() for p in (path / ".git" / "git-jobs" / "logs").glob("*.log"))
    assert "TMP-FULL" in logs and "VARTMP-FULL" in logs, logs
    shown = logs.split("cat /proc/keys")[1].split("git-jobs:")[0]
    assert "keyring" not in shown and "NO-KEYS" in shown, shown


def _listener() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        try:
            while True:
                server.accept()[0].close()
        except OSError:  # closed at the end of the test
            return

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_under_bwrap_work_only_a_requester_asked_for_gets_no_network(tmp_path: Path) -> None:
    path = tmp_path / "node"
    init_repo(path)
    _needs_bwrap(path)
    if not os.path.exists("/usr/bin/python3"):
        pytest.skip("no /usr/bin/python3 to try the network from inside the sandbox")
    server, port = _listener()
    signer, _ = new_key(tmp_path / "node.key")
    probe = (
        f"/usr/bin/python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 5); "
        "print('CONNECTED')\" || echo NO-NETWORK"
    )
    sha = commit_defs(path, f"[jobs.net]\nrun = '''{probe}'''\n")
    try:
        requested = _fresh_attempt(path, signer, sha, f"requested by {signer.nid}")
        assert "\nNO-NETWORK\n" in requested and "only a requester asked" in requested, requested
        # the same commit named by the node's user (or followed) has the node's network
        named = _fresh_attempt(path, signer, sha, "HEAD")
        assert "\nCONNECTED\n" in named, named
        allowed = _fresh_attempt(path, signer, sha, f"requested by {signer.nid}", request_network=True)
        assert "\nCONNECTED\n" in allowed, allowed
    finally:
        server.close()


def test_without_a_sandbox_requested_work_is_told_its_network_is_not_cut(tmp_path: Path) -> None:
    path = tmp_path / "node"
    init_repo(path)
    signer, _ = new_key(tmp_path / "node.key")
    git(path, "config", "jobs.isolation", "none")
    sha = commit_defs(path, "[jobs.a]\nrun = 'true'\n")
    store = jobs.Jobs.open(path, signer)
    report = Workshop(store).work_any(sha, source=f"requested by {signer.nid}")
    log = (path / ".git" / "git-jobs" / "logs" / f"{report.outcomes[0].run_id}.log").read_text()
    assert "network not cut: no sandbox" in log and "no network:" not in log, log


def _fresh_attempt(
    path: Path, signer: cob.Signer, sha: str, source: str, request_network: bool = False
) -> str:
    """Run ``sha``'s jobs again on a fresh clone of ``path`` (no run of this node yet)."""
    clone = path.parent / f"clone-{len(list(path.parent.glob('clone-*')))}"
    git(path.parent, "clone", "-q", str(path), str(clone))
    git(clone, "config", "jobs.isolation", "bwrap")
    git(clone, "config", "jobs.requestNetwork", "true" if request_network else "false")
    store = jobs.Jobs.open(clone, signer)
    ws = Workshop(store, isolation=load_isolation(store.repo, key=signer.path))
    report = ws.work_any(sha, source=source)
    assert report.outcomes, report
    return (clone / ".git" / "git-jobs" / "logs" / f"{report.outcomes[-1].run_id}.log").read_text()


# -- 7: outputs as copied ------------------------------------------------------------------------------
COMMIT = "cd" * 20


def _sparse(where: Path, size: int) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    big = where / "big.bin"
    with open(big, "wb") as fh:
        fh.truncate(size)
        fh.seek(size // 2)
        fh.write(b"data in the middle")
    return big


def _allocated(root: Path) -> int:
    return sum(p.lstat().st_blocks * 512 for p in root.rglob("*") if p.is_file())


def test_sparse_outputs_are_bounded_per_job_and_per_commit_and_stay_sparse(tmp_path: Path) -> None:
    repo = pygit2.init_repository(str(tmp_path / "node"))
    mib = 2**20
    kept = []
    for n in range(3):  # 3 x 400 MiB apparent: the third is over the commit's 1 GiB
        src = tmp_path / f"checkout{n}"
        _sparse(src / "dist", 400 * mib)
        kept.append(collect(repo, COMMIT, f"build{n}", src, ["dist"]))
    assert kept[0] == kept[1] == "outputs kept: dist", kept
    assert kept[2].startswith("outputs not kept") and "for the commit" in kept[2], kept
    assert 800 * mib < MAX_COMMIT_BYTES < 1200 * mib
    src = tmp_path / "huge"
    _sparse(src / "dist", 600 * mib)  # over a job's 512 MiB by its apparent size alone
    assert collect(repo, "ef" * 20, "build", src, ["dist"]).startswith("outputs not kept")
    assert _allocated(store_root(repo)) < 4 * mib  # 800 MiB kept, as holes
    dest = tmp_path / "next"
    dest.mkdir()
    assert provide(repo, COMMIT, ["build0"], dest) == ["build0"]
    copy = dest / "dist" / "big.bin"
    assert copy.stat().st_size == 400 * mib and _allocated(dest) < 2 * mib
    with open(copy, "rb") as fh:
        fh.seek(200 * mib)
        assert fh.read(18) == b"data in the middle"


@pytest.mark.slow
def test_outputs_through_the_cli_cost_what_they_hold_not_their_apparent_size(tmp_path: Path) -> None:
    path = tmp_path / "node"
    init_repo(path)
    signer, key = new_key(tmp_path / "node.key")
    make = "mkdir -p dist && truncate -s 300M dist/big && echo hi > dist/small"
    sha = commit_defs(path, "".join(f'[jobs.b{i}]\nrun = "{make}"\noutputs = ["dist"]\n' for i in range(2)))
    assert gj(path, "work", "any", key=key).code == 0
    assert reasons(jobs.Jobs.open(path), sha, signer.nid) == {"b0": ["succeeded"], "b1": ["succeeded"]}
    store = path / ".git" / "git-jobs" / "outputs"
    assert _allocated(store) < 2**20, "601 MB from 2 jobs, before"


def test_the_output_store_is_pruned_by_age_and_by_size(tmp_path: Path) -> None:
    repo = pygit2.init_repository(str(tmp_path / "node"))
    src = tmp_path / "checkout"
    (src / "dist").mkdir(parents=True)
    (src / "dist" / "a.txt").write_text("a\n")
    old, new = "01" * 20, "02" * 20
    assert collect(repo, old, "build", src, ["dist"]) == "outputs kept: dist"
    assert collect(repo, new, "build", src, ["dist"]) == "outputs kept: dist"
    assert prune(repo) == []
    os.utime(store_root(repo) / old, (time.time() - KEEP_SECONDS - 60,) * 2)
    assert prune(repo, keep=new) == [old]
    assert sorted(os.listdir(store_root(repo))) == [new]
    # the least recently used go first once the store is over its bound
    import jobs.node.outputs as outputs

    third = "03" * 20
    assert collect(repo, third, "build", src, ["dist"]) == "outputs kept: dist"
    os.utime(store_root(repo) / new, (time.time() - 100,) * 2)
    limit = outputs.MAX_STORE_BYTES
    try:
        outputs.MAX_STORE_BYTES = 3  # each commit keeps 2 bytes: one must go
        assert prune(repo, keep=third) == [new]
    finally:
        outputs.MAX_STORE_BYTES = limit
    assert sorted(os.listdir(store_root(repo))) == [third]
