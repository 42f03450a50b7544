"""Helpers for job tests: exchanging objects and refs between repositories, comparing state."""

from __future__ import annotations

from typing import Any

import pygit2

import cob
import jobs
from cob.refs import compare_and_swap


def _copy(src: pygit2.Repository, dst: pygit2.Repository, oid: pygit2.Oid) -> bool:
    if oid in dst.odb:
        return False
    kind, data = src.odb.read(oid)
    dst.odb.write(kind, data)
    return True


def _copy_tree(src: pygit2.Repository, dst: pygit2.Repository, tree: pygit2.Tree) -> None:
    if not _copy(src, dst, tree.id):
        return
    for entry in tree:
        if entry.filemode == pygit2.enums.FileMode.COMMIT:
            continue  # an index entry (gitlink): the change it names is reached by parents
        if isinstance(entry, pygit2.Tree):
            _copy_tree(src, dst, entry)
        else:
            _copy(src, dst, entry.id)


def copy_objects(src: pygit2.Repository, dst: pygit2.Repository) -> None:
    """Copy what ``src``'s index refs reach into ``dst`` (what a fetch of those refs transfers)."""
    stack = [pygit2.Oid(hex=t) for t in cob.reader.RefReader(src).index_tips().values()]
    seen: set[pygit2.Oid] = set()
    while stack:
        oid = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        commit = src[oid]
        if oid not in dst.odb:
            _copy_tree(src, dst, commit.tree)
            _copy(src, dst, oid)
        stack.extend(commit.parent_ids)


def exchange(src: pygit2.Repository, dst: pygit2.Repository, *, skip_nid: str | None = None) -> int:
    """Deliver ``src``'s index refs to ``dst`` as fast-forwards only; returns refs moved."""
    copy_objects(src, dst)
    moved = 0
    for nid, tip in cob.reader.RefReader(src).index_tips().items():
        if nid == skip_nid:
            continue
        name = cob.index_ref(nid)
        current = dst.references.get(name)
        old = str(current.target) if current is not None else None
        if old == tip:
            continue
        if old is not None and not dst.descendant_of(pygit2.Oid(hex=tip), pygit2.Oid(hex=old)):
            continue
        if compare_and_swap(dst, name, tip, old, "test exchange"):
            moved += 1
    return moved


def snapshot(job: jobs.Job) -> dict[str, Any]:
    """A comparable picture of a job's folded state."""
    return {
        "commit": job.commit,
        "name": job.name,
        "runs": {
            nid: [
                (
                    str(rid),
                    r.status.value,
                    r.reason.value if r.reason else None,
                    r.log,
                    r.started_at.timestamp(),
                    r.finished_at.timestamp() if r.finished_at else None,
                )
                for rid, r in runs.items()
            ]
            for nid, runs in job.runs().items()
        },
    }


def all_states(repo: pygit2.Repository, *, cache: bool = False) -> dict[str, dict[str, Any]]:
    store = jobs.Jobs.open(repo, cache=cache)
    return {job.id: snapshot(job) for job in store.all()}
