"""What a pass ran under, recorded in its signed ``finish`` (issue 27, FORMAT.md 11).

The node writes, beside the reason: the blob id of the ``.git-jobs.toml`` it ran, the tip of
the policy ref it read, the commit's tree id, the Git tree id of the job's kept outputs (the
tree is written into this node's object database, so two nodes' outputs compare by one id and,
where both trees are present, differ file by file) and a short environment (os, arch, labels).
Readers derive agreement, divergence and reuse from these fields (:mod:`jobs.evidence`).
"""

from __future__ import annotations

import os
import platform
import stat
from pathlib import Path

import pygit2

from ..model import Evidence
from ..spec.definitions import DEFINITIONS_FILE
from .outputs import store_dir

MAX_ENV_VALUE = 200  # as jobs.jobtype checks


def outputs_tree(repo: pygit2.Repository, root: Path) -> str | None:
    """Write the files under ``root`` as a Git tree into ``repo``; its id (None: nothing kept).

    Regular files are blobs (mode 100644, or 100755 when executable), symbolic links are link
    blobs (never followed); anything else and empty directories are left out, as Git does."""
    if not root.is_dir() or root.is_symlink():
        return None
    oid = _tree(repo, str(root))
    return str(oid) if oid is not None else None


def _tree(repo: pygit2.Repository, path: str) -> pygit2.Oid | None:
    builder = repo.TreeBuilder()
    count = 0
    with os.scandir(path) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                oid = repo.create_blob(os.fsencode(os.readlink(entry.path)))
                builder.insert(entry.name, oid, pygit2.enums.FileMode.LINK)
            elif stat.S_ISDIR(st.st_mode):
                sub = _tree(repo, entry.path)
                if sub is None:
                    continue
                builder.insert(entry.name, sub, pygit2.enums.FileMode.TREE)
            elif stat.S_ISREG(st.st_mode):
                oid = repo.create_blob_fromdisk(entry.path)
                executable = st.st_mode & stat.S_IXUSR
                mode = pygit2.enums.FileMode.BLOB_EXECUTABLE if executable else pygit2.enums.FileMode.BLOB
                builder.insert(entry.name, oid, mode)
            else:
                continue
            count += 1
    return builder.write() if count else None


def environment(labels: frozenset[str]) -> dict[str, str]:
    """The node's short environment: os, arch, its labels (comma-separated, bounded)."""
    labels_text = ",".join(sorted(labels))
    if len(labels_text) > MAX_ENV_VALUE:
        labels_text = labels_text[:MAX_ENV_VALUE].rsplit(",", 1)[0]
    env = {"os": platform.system().lower(), "arch": platform.machine().lower(), "labels": labels_text}
    return {k: v[:MAX_ENV_VALUE] for k, v in env.items() if v and v.isascii() and v.isprintable()}


def _policy_tip(repo: pygit2.Repository) -> str | None:
    from ..errors import JobsError
    from ..policy import policy_ref

    try:
        source = policy_ref(repo)
    except JobsError:
        return None
    return source.commit if source is not None else None


def record(repo: pygit2.Repository, commit: str, job: str, labels: frozenset[str], outputs: bool) -> Evidence:
    """The evidence for a finish of ``job`` at ``commit`` (``outputs``: its outputs were kept)."""
    obj = repo.get(commit)
    tree = defs = None
    if isinstance(obj, pygit2.Commit):
        tree = str(obj.tree_id)
        try:
            defs = str(obj.tree[DEFINITIONS_FILE].id)
        except KeyError:
            defs = None
    out = None
    if outputs:
        try:
            out = outputs_tree(repo, store_dir(repo, commit, job))
        except (OSError, pygit2.GitError, ValueError):
            out = None  # an unreadable output (the job's doing): the run is still finished
    return Evidence(defs, _policy_tip(repo), tree, out, environment(labels))
