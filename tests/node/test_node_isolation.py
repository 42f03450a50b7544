"""A job cannot act as the node that runs it: no key, no writable git dir, no HOME of the node.

A hostile job (its commands come from the commit under test) tries what the security review
did: read the node's key, plant a hook in the node's ``.git``, and forge this node's result for
another commit with ``git jobs finish``. Under bubblewrap all three fail and the node's
repository is unchanged; without a sandbox the job still gets no key pointer, no HOME of the
node and no linked worktree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pygit2
import pytest

import cob
import jobs
from jobs.node.isolation import IsolationError, load_isolation
from jobs.profile import TYPENAME as PROFILE
from tests.conftest import git, init_repo
from tests.node.test_node_work import cli, commit_defs, new_key, reasons

SOURCE_ROOT = Path(jobs.__file__).resolve().parents[1]
# `git jobs` as the job would call it: this test's own interpreter and package, made visible in
# the sandbox below, so that a failure shows the isolation and not a missing program.
GJ = f"{sys.executable} -c 'import sys; from jobs.cli import main; sys.exit(main())'"


def _bwrap_works(repo: Path) -> str | None:
    """None when bubblewrap can sandbox here, else why not (the bwrap tests are skipped)."""
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    try:
        load_isolation(pygit2.Repository(str(repo)), "bwrap").check()
    except IsolationError as e:
        return str(e)
    return None


def _state(path: Path) -> dict[str, list[str]]:
    """What a job must not change in the node's repository: hooks, config, refs, and the
    entries of every index ref (``nid typename id tip``)."""
    gitdir = path / ".git"
    hooks = sorted(p.name for p in (gitdir / "hooks").iterdir()) if (gitdir / "hooks").is_dir() else []
    refs = git(path, "for-each-ref", "--format=%(refname) %(objectname)")
    repo = pygit2.Repository(str(path))
    entries = [
        f"{nid} {typename} {object_id} {tip}"
        for nid, index in sorted(cob.reader.RefReader(repo).index_tips().items())
        for typename, object_id, tip in cob.sigrefs.walk_entries(repo, cob.sigrefs.tree_of(repo, index))
    ]
    return {
        "hooks": hooks,
        "config": [(gitdir / "config").read_text()],
        "refs": refs.splitlines(),
        "entries": sorted(entries),
    }


def _victim(path: Path, signer: cob.Signer) -> tuple[str, str, str]:
    """Another commit with a job this node has started: what a forged finish would target."""
    (path / "other.txt").write_text("another commit\n")
    git(path, "add", "other.txt")
    git(path, "commit", "-q", "-m", "another commit")
    other = git(path, "rev-parse", "HEAD").strip()
    store = jobs.Jobs.open(path, signer)
    job = store.create(other, "victim")
    run_id = job.run("https://ci.example/logs/victim")
    return other, job.id, str(run_id)


def _attack(path: Path, key: Path, job_id: str, run_id: str) -> str:
    gitdir = path / ".git"
    steps = [
        f"cat {key} && echo STOLE-KEY",
        f"echo 'echo pwned' > {gitdir}/hooks/post-checkout && echo WROTE-HOOK",
        f"git --git-dir {gitdir} config core.hooksPath /tmp && echo WROTE-CONFIG",
        f"{GJ} finish {job_id} {run_id} succeeded && echo FORGED",
        f"GIT_DIR={gitdir} GIT_JOBS_KEY={key} {GJ} finish {job_id} {run_id} succeeded && echo FORGED",
        f"cd {path} && {GJ} finish {job_id} {run_id} succeeded && echo FORGED",
        f"{sys.executable} -c 'import jobs; print(\"control: git-jobs runs in here\")'",
        "echo home=$HOME key=${GIT_JOBS_KEY:-unset}",
    ]
    script = "; ".join(steps) + "; exit 0"
    return "[jobs.attack]\nrun = '''" + script + "'''\n"


def _visible_python(path: Path) -> None:
    for where in {sys.base_prefix, sys.prefix, str(SOURCE_ROOT)}:
        git(path, "config", "--add", "jobs.sandboxPath", where)


@pytest.mark.slow
def test_a_hostile_job_under_bwrap_cannot_read_the_key_write_the_git_dir_or_forge_results(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node"
    init_repo(path)
    why = _bwrap_works(path)
    if why:
        pytest.skip(f"bubblewrap cannot sandbox here: {why}")
    signer, key = new_key(tmp_path / "node.key")
    git(path, "config", "jobs.isolation", "bwrap")
    _visible_python(path)
    other, victim_job, victim_run = _victim(path, signer)
    sha = commit_defs(path, _attack(path, key, victim_job, victim_run), "a hostile job")
    cli(path, "release", key=key, check=True)
    before = _state(path)

    res = cli(path, "work", "any", key=key, timeout=120)
    assert res.returncode == 0, res

    store = jobs.Jobs.open(path)
    assert reasons(store, sha, signer.nid) == {"attack": ["succeeded"]}  # its own honest run only
    assert reasons(store, other, signer.nid) == {"victim": ["started"]}  # not forged
    log = next((path / ".git" / "git-jobs" / "logs").glob("*.log")).read_text()
    assert "control: git-jobs runs in here" in log, log
    for mark in ("STOLE-KEY", "WROTE-HOOK", "WROTE-CONFIG", "FORGED"):
        assert mark not in log.replace(f"echo {mark}", ""), log
    assert "key=unset" in log and f"home={Path.home()}" not in log
    own = store.find_by_commit(sha)[0].id  # the only entry that moved: the job's own honest run
    index = cob.index_ref(signer.nid)  # so the node's index ref moved (its entries are below)
    bucket = f"refs/namespaces/{signer.nid}/refs/logs/"  # and the node's log bucket (its log)
    after = _state(path)

    def untouched(refs: list[str]) -> list[str]:
        return [r for r in refs if r.split(" ")[0] != index and not r.startswith(bucket)]

    def other_entries(entries: list[str]) -> list[str]:
        # the job's own honest run, and the node's signed profile (its labels, published by
        # `work any`: jobs.profile) are the node's own writes; nothing else may move
        return [e for e in entries if e.split(" ")[2] != own and e.split(" ")[1] != PROFILE]

    assert untouched(after["refs"]) == untouched(before["refs"])
    assert other_entries(after["entries"]) == other_entries(before["entries"])
    assert any(e.split(" ")[2] == victim_job for e in before["entries"])  # the victim is compared
    assert any(e.split(" ")[2] == own for e in after["entries"])
    assert (after["hooks"], after["config"]) == (before["hooks"], before["config"])
    assert not (path / ".git" / "hooks" / "post-checkout").exists()


def test_without_a_sandbox_a_job_still_gets_its_own_repository_home_and_no_key(tmp_path: Path) -> None:
    path = tmp_path / "node"
    init_repo(path)
    signer, key = new_key(tmp_path / "node.key")
    git(path, "config", "jobs.isolation", "none")
    script = (
        "echo gitdir=$(git rev-parse --absolute-git-dir); echo head=$(git rev-parse HEAD); "
        "echo home=$HOME; echo key=${GIT_JOBS_KEY:-unset}; echo sock=${SSH_AUTH_SOCK:-unset}; "
        "echo gd=${GIT_DIR:-unset}; echo secret=${NODE_SECRET:-unset}"
    )
    sha = commit_defs(path, f"[jobs.look]\nrun = '''{script}'''\n")
    env_res = subprocess.run(
        [sys.executable, "-c", "import sys; from jobs.cli import main; sys.exit(main())", "work", "any"],
        cwd=path,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **__import__("os").environ,
            "GIT_JOBS_KEY": str(key),
            "SSH_AUTH_SOCK": "/tmp/agent.sock",
            "NODE_SECRET": "s3cret",
        },
        check=False,
    )
    assert env_res.returncode == 0, env_res
    assert reasons(jobs.Jobs.open(path), sha, signer.nid) == {"look": ["succeeded"]}
    log = next((path / ".git" / "git-jobs" / "logs").glob("*.log")).read_text()
    lines = dict(line.split("=", 1) for line in log.splitlines() if "=" in line and " " not in line)
    assert lines["head"] == sha
    assert not Path(lines["gitdir"]).resolve().is_relative_to((path / ".git").resolve())
    assert lines["home"] != str(Path.home()) and not Path(lines["home"]).exists()  # scratch, removed
    assert lines["key"] == lines["sock"] == lines["gd"] == lines["secret"] == "unset"
    assert git(path, "worktree", "list").count("\n") == 1  # no linked worktree was ever added


def test_isolation_is_the_nodes_choice_and_a_bad_one_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "node"
    init_repo(path)
    _, key = new_key(tmp_path / "node.key")
    commit_defs(path, '[jobs.a]\nrun = "true"\n')
    git(path, "config", "jobs.isolation", "chroot")
    res = cli(path, "work", "any", key=key)
    assert res.returncode == 2 and "jobs.isolation" in res.stderr and len(res.stderr.splitlines()) == 1
    git(path, "config", "jobs.isolation", "none")
    git(path, "config", "jobs.network", "false")
    res = cli(path, "work", "any", key=key)
    assert res.returncode == 2 and "jobs.network" in res.stderr and len(res.stderr.splitlines()) == 1


def _left_behind(run_id: str) -> list[int]:
    """Live processes still carrying this run's id (the sandbox's included: /proc sees all)."""
    marker = f"GIT_JOBS_RUN_ID={run_id}".encode()
    out = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    out.append(int(proc.name))
        except (OSError, IndexError):
            continue
    return out


@pytest.mark.slow
def test_under_bwrap_a_timeout_or_the_end_of_a_run_leaves_no_process_behind(tmp_path: Path) -> None:
    path = tmp_path / "node"
    init_repo(path)
    why = _bwrap_works(path)
    if why:
        pytest.skip(f"bubblewrap cannot sandbox here: {why}")
    signer, key = new_key(tmp_path / "node.key")
    git(path, "config", "jobs.isolation", "bwrap")
    sha = commit_defs(
        path,
        '[jobs.slow]\nrun = "sleep 60 & sleep 61"\ntimeout = "1s"\n'
        '[jobs.bg]\nrun = "sleep 60 & echo left one behind"\n',
    )
    res = cli(path, "work", "any", key=key, timeout=60)
    assert res.returncode == 1, res
    store = jobs.Jobs.open(path)
    assert reasons(store, sha, signer.nid) == {"bg": ["succeeded"], "slow": ["timed_out"]}
    for job in store.find_by_commit(sha):
        for run_id in job.runs_of(signer.nid):
            assert _left_behind(str(run_id)) == [], f"{job.name}: a process outlived its run"


def test_a_sandbox_path_inside_the_nodes_repository_is_refused_and_one_holding_it_is_masked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node"
    init_repo(path)
    why = _bwrap_works(path)
    if why:
        pytest.skip(f"bubblewrap cannot sandbox here: {why}")
    (tmp_path / "keys").mkdir()
    signer, key = new_key(tmp_path / "keys" / "node.key")
    look = f"echo @@1; ls -a {tmp_path}; echo @@2; ls -a {path}; echo @@3; ls -a {key.parent}; true"
    commit_defs(path, f"[jobs.look]\nrun = '{look}'\n")
    git(path, "config", "jobs.isolation", "bwrap")
    git(path, "config", "--add", "jobs.sandboxPath", str(path / ".git" / "objects"))
    res = cli(path, "work", "any", key=key)
    assert res.returncode == 2 and "jobs.sandboxPath" in res.stderr, res
    git(path, "config", "--unset-all", "jobs.sandboxPath")
    git(path, "config", "--add", "jobs.sandboxPath", str(tmp_path))  # holds the repository and key
    res = cli(path, "work", "any", key=key)
    assert res.returncode == 0, res
    log = next((path / ".git" / "git-jobs" / "logs").glob("*.log")).read_text()
    shown, node, keys = log.split("\n@@1\n", 1)[1].split("git-jobs: ")[0].replace("@@3", "@@2").split("@@2")
    assert {"node", "keys"} <= set(shown.split()), log  # the path is visible …
    assert set(node.split()) == {".", ".."}, log  # … but the node's repository is an empty mask
    assert set(keys.split()[:2]) == {".", ".."} and "node.key" not in keys, log  # and so is its key
    assert reasons(jobs.Jobs.open(path), git(path, "rev-parse", "HEAD").strip(), signer.nid) == {
        "look": ["succeeded"]
    }


def _work_any(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from jobs.cli import main; sys.exit(main())", "work", "any"],
        cwd=path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_where_bubblewrap_cannot_sandbox_the_node_refuses_to_run_jobs_and_says_why(tmp_path: Path) -> None:
    """A bwrap that fails as it does without user namespaces: one line, exit 2, nothing run."""
    fake = tmp_path / "bin"
    fake.mkdir()
    refusal = "echo 'bwrap: setting up uid map: Permission denied' >&2; exit 1"
    (fake / "bwrap").write_text(f"#!/bin/sh\n{refusal}\n")
    (fake / "bwrap").chmod(0o755)
    path = tmp_path / "node"
    init_repo(path)
    signer, key = new_key(tmp_path / "node.key")
    sha = commit_defs(path, "[jobs.a]\nrun = 'true'\n")
    home = tmp_path / "home"  # no global git config: the default applies (bwrap, being installed)
    home.mkdir()
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "GIT_JOBS_KEY": str(key), "HOME": str(home)}
    for setting in (None, "bwrap"):
        if setting:
            git(path, "config", "jobs.isolation", setting)
        res = _work_any(path, env)
        assert res.returncode == 2 and "uid map" in res.stderr and "jobs.isolation none" in res.stderr, res
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not any(reasons(jobs.Jobs.open(path), sha, signer.nid).values())
    hub = tmp_path / "hub.git"
    init_repo(hub, bare=True)
    node = subprocess.run(  # a node says so in its preflight, before any work
        [
            sys.executable,
            "-c",
            "import sys; from jobs.cli import main; sys.exit(main())",
            "node",
            "--remote",
            str(hub),
            "--interval",
            "0.1s",
        ],
        cwd=path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert node.returncode == 2 and "preflight" in node.stderr and "uid map" in node.stderr, node
    git(path, "config", "jobs.isolation", "none")  # the node's explicit choice
    assert _work_any(path, env).returncode == 0


def test_checking_out_a_commit_runs_no_hook_or_filter_of_the_nodes_global_config(tmp_path: Path) -> None:
    """The checkout happens outside any sandbox, on the commit's content: nothing may run there."""
    path = tmp_path / "node"
    init_repo(path)
    signer, key = new_key(tmp_path / "node.key")
    git(path, "config", "jobs.isolation", "none")
    hooks, ran = tmp_path / "hooks", tmp_path / "ran"
    hooks.mkdir()
    (hooks / "post-checkout").write_text(f"#!/bin/sh\necho hook >> {ran}\n")
    (hooks / "post-checkout").chmod(0o755)
    git(path, "config", "--global", "core.hooksPath", str(hooks))
    git(path, "config", "--global", "filter.evil.smudge", f"sh -c 'echo filter >> {ran}; cat'")
    (path / ".gitattributes").write_text("*.txt filter=evil\n")
    git(path, "add", ".gitattributes")
    sha = commit_defs(path, "[jobs.a]\nrun = 'cat file.txt'\n")
    ran.unlink(missing_ok=True)  # the test's own commits ran the hook
    assert cli(path, "work", "any", key=key).returncode == 0
    assert reasons(jobs.Jobs.open(path), sha, signer.nid) == {"a": ["succeeded"]}
    assert not ran.exists(), ran.read_text()
