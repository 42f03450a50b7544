"""``outputs``: a job's declared output paths, handed to the jobs that need it on this node.

    [jobs.build]
    run = "python -m build --outdir dist"
    outputs = ["dist/"]
    [jobs.test]
    run = "pip install dist/*.whl && pytest"
    needs = ["build"]

When ``build`` succeeds, the node copies ``dist/`` out of its checkout (before the checkout is
deleted) into its git directory (``git-jobs/outputs/<commit>/<job>``), and copies it into the
checkout of every job that needs ``build`` *for the same commit on this node*, before that job
starts. Nothing travels between nodes: outputs are a node-local cache, not a ledger fact.

The paths come from the commit and the files from a job, both untrusted: paths are relative
and stay inside the checkout, symbolic links are copied as links (never followed, so a job
cannot make the node copy a host file for the next job), and the size and the number of files
are bounded (past the bound nothing is kept and the log says so).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import pygit2

MAX_OUTPUTS = 16  # paths one job declares
MAX_BYTES = 512 * 1024 * 1024
MAX_FILES = 20_000


def check_path(path: str) -> str | None:
    """Why ``path`` is not a relative path inside the checkout, or None."""
    p = PurePosixPath(path)
    if not path or p.is_absolute() or ".." in p.parts or "\0" in path or len(path) > 256:
        return f"{path[:60]!r} must be a relative path inside the checkout (no .., at most 256)"
    if p.parts and p.parts[0] == ".git":
        return f"{path[:60]!r} is inside .git"
    return None


def store_dir(repo: pygit2.Repository, commit: str, job: str) -> Path:
    key = hashlib.sha256(job.encode()).hexdigest()[:24]
    return Path(repo.path) / "git-jobs" / "outputs" / commit / key


def _size(root: Path) -> tuple[int, int]:
    total = files = 0
    for dirpath, _, names in os.walk(root):  # os.walk does not follow links to directories
        for name in names:
            files += 1
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return total, files


def collect(repo: pygit2.Repository, commit: str, job: str, src: Path, paths: Iterable[str]) -> str:
    """Keep ``paths`` of a finished job's checkout ``src``; a note for its log ("" if none)."""
    dest = store_dir(repo, commit, job)
    shutil.rmtree(dest, ignore_errors=True)
    kept, total, files = [], 0, 0
    for rel in paths:
        item = src / rel
        if not item.exists() or item.is_symlink():
            continue
        size, count = _size(item) if item.is_dir() else (item.lstat().st_size, 1)
        total, files = total + size, files + count
        if total > MAX_BYTES or files > MAX_FILES:
            shutil.rmtree(dest, ignore_errors=True)
            return f"outputs not kept: more than {MAX_BYTES // 2**20} MiB or {MAX_FILES} files"
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if item.is_dir():
            shutil.copytree(item, target, symlinks=True)
        else:
            shutil.copy2(item, target, follow_symlinks=False)
        kept.append(rel)
    return f"outputs kept: {', '.join(kept)}" if kept else ""


def provide(repo: pygit2.Repository, commit: str, needs: Iterable[str], dest: Path) -> list[str]:
    """Copy the kept outputs of ``needs`` into the checkout ``dest``; the jobs they came from."""
    out = []
    for need in needs:
        kept = store_dir(repo, commit, need)
        if kept.is_dir():
            shutil.copytree(kept, dest, symlinks=True, dirs_exist_ok=True)
            out.append(need)
    return out
