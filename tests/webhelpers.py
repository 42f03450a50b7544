"""A repository with two nodes' runs (one with real local logs) and hostile strings, and a
`git jobs serve` process for it — shared by the web tests (HTTP and real Chromium)."""

from __future__ import annotations

import dataclasses
import gc
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uuid6

import cob
import jobs
from cob.change import Codec, write_change

from .clirunner import GIT_JOBS, gj
from .conftest import git, init_repo, isolated_env

# Each payload sets window.__pwned if it ever runs; the browser test checks it never does.
HOSTILE_LOG_LINE = "<img src=x onerror=window.__pwned=1><script>window.__pwned=2</script>"
HOSTILE_SUBJECT = "<script>window.__pwned=3</script> fix <b>it</b>"
HOSTILE_URL = 'https://ci.example/log/"><img/src=x/onerror=window.__pwned=4>'
HOSTILE_NAME = "<img src=x onerror=window.__pwned=5>"
SYNCED_LOG_LINE = "node B built it"
# A change whose log URL the job rules reject: the rejection reason quotes it.
HOSTILE_REJECTED = "javascript:<img/src=x/onerror=window.__pwned=6>"

DEFINITIONS = (
    "[jobs.build]\n"
    "run = \"printf '\\\\033[32mgreen ok\\\\033[0m\\\\n%s\\\\nline three\\\\n' '" + HOSTILE_LOG_LINE + "'\"\n"
    "[jobs.test]\n"
    'run = "echo testing; exit 1"\n'
)


@dataclass
class WebRepo:
    path: Path
    key_a: Path  # this node: ran its jobs with `git jobs work any`, keeps their logs
    key_b: Path  # another node: recorded runs with hostile log URLs
    nid_a: str
    nid_b: str
    head: str  # the commit with both nodes' runs
    bad: str  # a later commit whose definitions are invalid (a hostile job name)


def _key(path: Path) -> tuple[str, Path]:
    signer = cob.Signer.generate()
    signer.save(path)
    return signer.nid, path


def make_web_repo(root: Path) -> WebRepo:
    path = root / "work"
    init_repo(path, commits=2)
    (path / ".git-jobs.toml").write_text(DEFINITIONS)
    git(path, "add", ".git-jobs.toml")
    git(path, "commit", "-q", "-m", HOSTILE_SUBJECT)
    head = git(path, "rev-parse", "HEAD").strip()
    nid_a, key_a = _key(root / "key-a")
    nid_b, key_b = _key(root / "key-b")
    assert gj(path, "release", key=key_a).code == 0
    res = gj(path, "work", "any", key=key_a)
    assert res.code in (0, 1), res
    _node_b_publishes(root, path, head, key_a, key_b)
    _reject(path, head)
    (path / ".git-jobs.toml").write_text(f'[jobs."{HOSTILE_NAME}"]\nrun = "true"\n')
    git(path, "commit", "-q", "-am", "invalid definitions")
    bad = git(path, "rev-parse", "HEAD").strip()
    return WebRepo(path, key_a, key_b, nid_a, nid_b, head, bad)


def pristine_web_repo(root: Path) -> WebRepo:
    """The world, built once per test module (two nodes' runs take seconds to make); each test
    works on a :func:`copy_web_repo` of it."""
    with isolated_env(root / "home"):
        world = make_web_repo(root)
    gc.collect()  # close the builder's cache connections now, not while a test copies the files
    return world


def copy_web_repo(repo: WebRepo, dest: Path) -> WebRepo:
    """A private copy of a world built once per module: a test that changes it (records a run,
    serves it) changes only its copy."""
    root = repo.path.parent
    open_caches = sorted(p.name for p in root.rglob("*.sqlite3-wal"))
    assert open_caches == [], f"a cache of the world is still open, it could vanish mid-copy: {open_caches}"
    shutil.copytree(root, dest, symlinks=True)

    def moved(path: Path) -> Path:
        return dest / path.relative_to(root)

    return dataclasses.replace(repo, path=moved(repo.path), key_a=moved(repo.key_a), key_b=moved(repo.key_b))


def _node_b_publishes(root: Path, path: Path, head: str, key_a: Path, key_b: Path) -> None:
    """Node B, in its own clone, runs `build` and publishes its log in Git; both sync through a
    bare hub, so A's repository holds B's run and B's log only as synced data."""
    hub = root / "hub.git"
    git(root, "clone", "-q", "--bare", str(path), str(hub))
    clone = root / "b"
    git(root, "clone", "-q", str(hub), str(clone))
    assert gj(clone, "create", head, "--name", "build", key=key_b).code == 0
    run = gj(clone, "run", f"{head}:build", "--log", HOSTILE_URL, key=key_b)
    assert run.code == 0, run
    log = root / "b.log"
    log.write_bytes(f"\x1b[36m{SYNCED_LOG_LINE}\x1b[0m\n{HOSTILE_LOG_LINE}\n".encode())
    done = gj(clone, "finish", f"{head}:build", run.line, "succeeded", "--log-file", str(log), key=key_b)
    assert done.code == 0, done
    assert gj(clone, "sync", "origin", key=key_b).code == 0
    fetched = gj(path, "sync", str(hub), "--no-push", key=key_a)
    assert fetched.code == 0, fetched


def _reject(path: Path, commit: str) -> None:
    """A third, hostile node signs a change on `build` that the job rules reject."""
    repo = cob.open_repository(str(path))
    signer = cob.Signer.generate()
    job = jobs.Jobs.open(repo).find_by_commit(commit)[0]
    bad = jobs.StartRun(str(uuid6.uuid7()), HOSTILE_REJECTED)
    codec = Codec(jobs.JOB_TYPE)
    oid = write_change(repo, codec, signer, signer.nid, [bad], [job.id], timestamp=int(time.time()))
    assert cob.set_tip(repo, signer, signer.nid, jobs.TYPENAME, job.id, oid, None)


@contextmanager
def serving(repo: WebRepo, *args: str) -> Iterator[str]:
    """`git jobs serve --port 0` as node A; yields its URL; stopped at the end."""
    env = dict(os.environ, GIT_JOBS_KEY=str(repo.key_a))
    proc = subprocess.Popen(
        [GIT_JOBS, "serve", "--port", "0", *args],
        cwd=repo.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        yield m.group(0)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err = proc.stderr.read() if proc.stderr else ""
        assert "Traceback" not in err, err
