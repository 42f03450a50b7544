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

The paths come from the commit and the files from a job, both untrusted, and the node copies
them outside the sandbox: so a symbolic link is copied as a link (never followed) and a FIFO or
a device not at all; a path whose real location (any parent a link) is not inside the
checkout is not kept; when handing outputs to the next checkout, a link already there (the
commit may track one) is replaced, never written through; and the size and the number of
files are bounded (past the bound nothing is kept and the log says so).
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
    if not path or not p.parts or p.is_absolute() or ".." in p.parts or "\0" in path or len(path) > 256:
        return f"{path[:60]!r} must be a relative path inside the checkout (no .., at most 256)"
    if p.parts and p.parts[0] == ".git":
        return f"{path[:60]!r} is inside .git"
    return None


def store_dir(repo: pygit2.Repository, commit: str, job: str) -> Path:
    key = hashlib.sha256(job.encode()).hexdigest()[:24]
    return Path(repo.path) / "git-jobs" / "outputs" / commit / key


def _inside(path: str, base: str) -> bool:
    return path == base or path.startswith(base + os.sep)


def _at(root: str, rel: str) -> str:
    """``root/rel``; ``root`` itself for the top entry (``rel == ""``)."""
    return os.path.normpath(os.path.join(root, rel)) if rel else root


def _files(root: str) -> list[tuple[str, str]]:
    """(relative path, kind) of what is under ``root``, parents first; kind is ``dir``,
    ``file`` or ``link`` (kept as a link, never followed); FIFOs and devices are left out."""
    def kind(path: str) -> str | None:
        if os.path.islink(path):
            return "link"
        if os.path.isdir(path):
            return "dir"
        return "file" if os.path.isfile(path) else None

    top = kind(root)
    if top != "dir":
        return [("", top)] if top else []
    out: list[tuple[str, str]] = [("", "dir")]
    for dirpath, dirs, names in os.walk(root):  # os.walk does not follow links to directories
        rel = os.path.relpath(dirpath, root)
        for name in (*dirs, *names):
            k = kind(os.path.join(dirpath, name))
            if k is not None:
                out.append((os.path.normpath(os.path.join(rel, name)), k))
    return out


def collect(repo: pygit2.Repository, commit: str, job: str, src: Path, paths: Iterable[str]) -> str:
    """Keep ``paths`` of a finished job's checkout ``src``; a note for its log ("" if none)."""
    dest = store_dir(repo, commit, job)
    shutil.rmtree(dest, ignore_errors=True)
    if os.path.islink(src):
        return "outputs not kept: the checkout itself was replaced by a link"
    base = os.path.realpath(src)
    kept: list[str] = []
    total = files = 0
    try:
        for rel in paths:
            item = os.path.join(base, rel)
            if not os.path.lexists(item) or not _inside(os.path.realpath(item), base):
                continue  # missing, or (through a linked parent) outside the checkout
            entries = _files(item)
            if not entries:
                continue  # a FIFO, a device: nothing to keep
            files += len(entries)
            total += sum(os.lstat(_at(item, r)).st_size for r, k in entries if k == "file")
            if total > MAX_BYTES or files > MAX_FILES:
                shutil.rmtree(dest, ignore_errors=True)
                return f"outputs not kept: more than {MAX_BYTES // 2**20} MiB or {MAX_FILES} files"
            _copy_tree(item, str(dest / rel), entries)
            kept.append(rel)
    except OSError as e:  # an unreadable file, overlapping paths: the job's doing, not the node's
        shutil.rmtree(dest, ignore_errors=True)
        return f"outputs not kept: {e.strerror or e}"
    return f"outputs kept: {', '.join(kept)}" if kept else ""


def _copy_tree(src: str, dst: str, entries: list[tuple[str, str]]) -> None:
    """Copy ``entries`` of ``src`` to ``dst`` without following or writing through a link at
    ``dst``: whatever is in the way (a link the commit tracks, a file where a directory goes)
    is removed first, and every target must resolve inside ``dst``'s directory."""
    root = os.path.realpath(os.path.dirname(dst) or ".")
    for rel, kind in entries:
        target = _at(dst, rel)
        in_the_way = os.path.lexists(target) and (kind != "dir" or not os.path.isdir(target))
        if os.path.islink(target) or in_the_way:
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            else:
                os.unlink(target)
        if not _inside(os.path.realpath(os.path.dirname(target)), root):
            raise OSError(f"{rel} would land outside its directory")
        if kind == "dir":
            os.makedirs(target, exist_ok=True)
        elif kind == "link":
            os.symlink(os.readlink(_at(src, rel)), target)
        else:
            shutil.copy2(_at(src, rel), target, follow_symlinks=False)


def provide(repo: pygit2.Repository, commit: str, needs: Iterable[str], dest: Path) -> list[str]:
    """Copy the kept outputs of ``needs`` into the checkout ``dest``; the jobs they came from."""
    out = []
    for need in needs:
        kept = store_dir(repo, commit, need)
        if kept.is_dir():
            for top in sorted(os.listdir(kept)):
                entries = _files(str(kept / top))
                _copy_tree(str(kept / top), str(dest / top), entries)
            out.append(need)
    return out
