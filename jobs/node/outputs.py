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

The bounds count bytes *as copied*: a file's apparent size (``st_size``, which is what a copy
writes — a sparse file costs nothing in the sandbox and its full size here), at most
:data:`MAX_BYTES` per job and :data:`MAX_COMMIT_BYTES` per commit, and a copy never writes more
than the size counted (a file that grows meanwhile is refused). Runs of zeros are written as
holes, so a sparse file stays sparse. The store holds at most :data:`MAX_STORE_BYTES`: the
outputs of the commits used least recently go first, and a commit's outputs are deleted once
unused for :data:`KEEP_SECONDS` (:func:`prune`, at every collect and every ``work any``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import time
from collections.abc import Iterable
from pathlib import Path

import pygit2

# The declared paths are the language's (jobs.spec.outputs); re-exported for older imports.
from .. import paths
from ..spec.outputs import MAX_OUTPUTS as MAX_OUTPUTS
from ..spec.outputs import check_path as check_path

MAX_BYTES = 512 * 1024 * 1024  # per job, as copied (apparent sizes)
MAX_FILES = 20_000
MAX_COMMIT_BYTES = 1024 * 1024 * 1024  # all the jobs of one commit together
MAX_STORE_BYTES = 4 * 1024 * 1024 * 1024  # the whole store; least recently used commits go first
KEEP_SECONDS = 2 * 24 * 3600.0  # a commit's outputs unused this long are deleted
CHUNK = 1024 * 1024


store_root = paths.outputs_root
store_dir = paths.outputs_dir


def _size_file(dest: Path) -> Path:
    """Where the bytes kept in ``dest`` are recorded (beside it: ``<key>.bytes``)."""
    return dest.with_name(dest.name + ".bytes")


def _recorded(commit_dir: Path, but: Path | None = None) -> int:
    """Bytes kept for one commit, from the jobs' records (``but``: leave that job's out)."""
    total = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(commit_dir):
            if entry.name.endswith(".bytes") and (but is None or entry.path != str(_size_file(but))):
                with contextlib.suppress(OSError, ValueError):
                    total += int(Path(entry.path).read_text() or 0)
    return total


def prune(repo: pygit2.Repository, keep: str | None = None, now: float | None = None) -> list[str]:
    """Delete the outputs of commits unused for :data:`KEEP_SECONDS`, then of the least
    recently used until the store holds at most :data:`MAX_STORE_BYTES`; never ``keep``'s.
    Returns the commits whose outputs were deleted."""
    root = store_root(repo)
    now = time.time() if now is None else now
    try:
        commits = [(e.stat().st_mtime, e.name, Path(e.path)) for e in os.scandir(root) if e.is_dir()]
    except OSError:
        return []
    commits.sort()  # least recently used first
    total = sum(_recorded(path) for _, _, path in commits)
    gone = []
    for used, name, path in commits:
        if name == keep:
            continue
        if now - used > KEEP_SECONDS or total > MAX_STORE_BYTES:
            total -= _recorded(path)
            shutil.rmtree(path, ignore_errors=True)
            gone.append(name)
    return gone


def _inside(path: str, base: str) -> bool:
    return path == base or path.startswith(base + os.sep)


def _at(root: str, rel: str) -> str:
    """``root/rel``; ``root`` itself for the top entry (``rel == ""``)."""
    return os.path.normpath(os.path.join(root, rel)) if rel else root


def _files(root: str, limit: int | None = None) -> list[tuple[str, str]]:
    """(relative path, kind) of what is under ``root``, parents first; kind is ``dir``,
    ``file`` or ``link`` (kept as a link, never followed); FIFOs and devices are left out.
    ``limit``: stop once more than that many are found (a job's millions of files are never
    listed in the node's memory only to be refused)."""

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
            if limit is not None and len(out) > limit:
                return out
    return out


class _TooBig(Exception):
    pass


def _drop(dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    _size_file(dest).unlink(missing_ok=True)


def collect(repo: pygit2.Repository, commit: str, job: str, src: Path, paths: Iterable[str]) -> str:
    """Keep ``paths`` of a finished job's checkout ``src``; a note for its log ("" if none)."""
    dest = store_dir(repo, commit, job)
    _drop(dest)
    if os.path.islink(src):
        return "outputs not kept: the checkout itself was replaced by a link"
    base = os.path.realpath(src)
    # what is left for this job: its own bound, and what the commit's other jobs left of theirs
    budget = min(MAX_BYTES, MAX_COMMIT_BYTES - _recorded(dest.parent, but=dest))
    kept: list[str] = []
    total = files = 0
    try:
        for rel in paths:
            item = os.path.join(base, rel)
            if not os.path.lexists(item) or not _inside(os.path.realpath(item), base):
                continue  # missing, or (through a linked parent) outside the checkout
            entries = _files(item, MAX_FILES - files)
            if not entries:
                continue  # a FIFO, a device: nothing to keep
            files += len(entries)
            total += sum(os.lstat(_at(item, r)).st_size for r, k in entries if k == "file")
            if total > budget or files > MAX_FILES:
                raise _TooBig
            _copy_tree(item, str(dest / rel), entries)
            kept.append(rel)
    except _TooBig:
        _drop(dest)
        return (
            f"outputs not kept: more than {MAX_BYTES // 2**20} MiB for the job, "
            f"{MAX_COMMIT_BYTES // 2**20} MiB for the commit or {MAX_FILES} files (apparent sizes)"
        )
    except OSError as e:  # an unreadable file, overlapping paths: the job's doing, not the node's
        _drop(dest)
        return f"outputs not kept: {e.strerror or e}"
    if kept:
        _size_file(dest).write_text(str(total))
        os.utime(dest.parent)  # used now (least recently used go first)
        prune(repo, keep=commit)
    return f"outputs kept: {', '.join(kept)}" if kept else ""


def _segments(fd: int, size: int) -> list[tuple[int, int]]:
    """The (start, end) ranges of ``fd`` holding data, up to ``size``: holes are skipped
    (``SEEK_DATA``/``SEEK_HOLE``; where the file system cannot tell, the whole file)."""
    if not hasattr(os, "SEEK_DATA"):
        return [(0, size)]
    out, pos = [], 0
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:  # no data after pos
                    break
                raise
            if start >= size:
                break
            pos = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            out.append((start, pos))
    except OSError:
        return [(0, size)]
    return out


def _copy_file(src: str, dst: str) -> None:
    """Copy a regular file without following a link, writing at most the size it had when it
    was opened (it may not grow meanwhile); holes and runs of zeros are written as holes, so a
    sparse file stays sparse and costs no reading of its holes."""
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb", buffering=0) as fin:
        st = os.fstat(fin.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{os.path.basename(src)} is no longer a regular file")
        with open(dst, "wb") as fout:
            for start, end in _segments(fin.fileno(), st.st_size):
                fin.seek(start)
                fout.seek(start)
                left = end - start
                while left > 0:
                    chunk = fin.read(min(CHUNK, left))
                    if not chunk:
                        break
                    left -= len(chunk)
                    if chunk.count(0) == len(chunk):
                        fout.seek(len(chunk), os.SEEK_CUR)  # a hole
                    else:
                        fout.write(chunk)
            fin.seek(st.st_size)
            if fin.read(1):
                raise OSError(f"{os.path.basename(src)} grew while it was copied")
            fout.truncate(st.st_size)
        os.chmod(dst, stat.S_IMODE(st.st_mode))
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


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
            _copy_file(_at(src, rel), target)


def provide(repo: pygit2.Repository, commit: str, needs: Iterable[str], dest: Path) -> list[str]:
    """Copy the kept outputs of ``needs`` into the checkout ``dest``; the jobs they came from."""
    out = []
    for need in needs:
        kept = store_dir(repo, commit, need)
        if kept.is_dir():
            with contextlib.suppress(OSError):
                os.utime(kept.parent)  # used now
            for top in sorted(os.listdir(kept)):
                entries = _files(str(kept / top))
                _copy_tree(str(kept / top), str(dest / top), entries)
            out.append(need)
    return out
