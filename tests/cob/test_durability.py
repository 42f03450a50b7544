"""A write is on disk before it is acknowledged (issue 25, item 8).

The installed CLI is traced with strace: every object and ref file it publishes is fsync'd
before its rename, and the index ref (the write's acknowledgement point) before the id is
printed. With ``jobs.fsync=false`` nothing is fsync'd: the test can tell the difference.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pygit2
import pytest

import cob
from cob.gitrun import git_env
from tests.clirunner import GIT_JOBS, env_with, ok
from tests.conftest import git

STRACE = shutil.which("strace")


def _trace(work: Path, key: Path, out: Path, *args: str) -> list[str]:
    proc = subprocess.run(
        [
            str(STRACE),
            "-f",
            "-y",
            "-o",
            str(out),
            "-e",
            "trace=fsync,fdatasync,rename,write",
            GIT_JOBS,
            *args,
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        env=env_with(GIT_JOBS_KEY=str(key)),
    )
    assert proc.returncode == 0, proc.stderr
    return out.read_text().splitlines()


def _strace_works(tmp: Path) -> bool:
    if STRACE is None:
        return False
    probe = subprocess.run([STRACE, "-o", str(tmp / "probe"), "true"], capture_output=True)
    return probe.returncode == 0


def test_a_write_is_fsynced_before_it_is_acknowledged(repo: pygit2.Repository, tmp_path: Path) -> None:
    if not _strace_works(tmp_path):
        pytest.skip("strace is not installed or may not trace here")
    work = Path(repo.workdir)
    key = cob.Signer.generate().save(tmp_path / "node.key")
    ok(work, "create", "HEAD", "--name", "warm", key=key)
    lines = _trace(work, key, tmp_path / "trace", "create", "HEAD", "--name", "build")
    lines = [ln for ln in lines if "sqlite3" not in ln]  # the cache is not the ledger
    fsynced = {
        m.group(1): i for i, ln in enumerate(lines) if (m := re.search(r"\bf(?:data)?sync\(\d+<([^>]+)>", ln))
    }
    objects = {
        m.group(1): i
        for i, ln in enumerate(lines)
        if (m := re.search(r"\bwrite\(\d+<([^>]+/objects/tmp_object[^>]+)>", ln))
    }
    index = next(i for i, ln in enumerate(lines) if re.search(r'rename\("[^"]+/refs/sigrefs.lock"', ln))
    printed = next(i for i, ln in enumerate(lines) if re.search(r"\bwrite\(1<", ln))
    assert len(objects) >= 3, lines  # the change (commit, tree, ops blob) and the index commit
    for path, written in objects.items():  # each object file flushed, before the ref moves
        assert written < fsynced.get(path, -1) < index, path
    lock = re.search(r'rename\("([^"]+)"', lines[index])
    assert lock is not None and fsynced.get(lock.group(1), index) < index  # the ref file too
    refs_dir = lock.group(1).rsplit("/", 1)[0]
    assert index < fsynced.get(refs_dir, -1) < printed  # its directory, then the acknowledgement

    git(work, "config", "jobs.fsync", "false")
    lines = _trace(work, key, tmp_path / "trace2", "create", "HEAD", "--name", "test")
    flushed = [ln for ln in lines if re.search(r"\bf(?:data)?sync\(\d+<[^>]+/(objects|refs)\b", ln)]
    assert not flushed and any("/objects/tmp_object" in ln for ln in lines)


def test_git_subprocesses_write_with_fsync(repo: pygit2.Repository, signer: cob.Signer) -> None:
    cob.Store(repo, signer)  # the first store of the process applies the settings
    shown = subprocess.run(
        ["git", "config", "core.fsync"], cwd=repo.workdir, capture_output=True, text=True, env=git_env()
    )
    assert shown.stdout.strip() == "committed"
