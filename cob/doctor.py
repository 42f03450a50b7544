"""A read-only health check of one repository's collaborative objects (the ``doctor`` command).

Each :class:`Finding` is one problem, said in one line; :func:`repair` fixes those that need
no person (a broken index of our own moved on from its newest intact one, stale locks, a cache
that disagrees with the ledger, losses acknowledged). Nothing here deletes an object or moves
another node's ref.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pygit2

from . import indexlog, layout, recovery, sigrefs
from .cache import Cache
from .change import MALFORMED_ERRORS, Codec
from .gitrun import first_error, run_git
from .reader import RefReader
from .refs import STALE_LOCK_SECONDS, clear_stale_lock, common_dir, is_ancestor
from .signer import Signer

MAX_MISSING_SHOWN = 5
MAX_LOCKS = 1000


class Kind(enum.Enum):
    BROKEN_INDEX = "broken-index"  # an index ref names a missing or unreadable commit
    LOST = "lost"  # a recovery dropped writes whose objects were gone
    MISSING_OBJECTS = "missing-objects"  # an index reaches objects this repository lacks
    CACHE = "cache"  # the SQLite cache disagrees with the refs, or cannot be read
    STALE_LOCK = "stale-lock"  # a ref lock left by a process that died
    UNPUBLISHED = "unpublished"  # our index moved since the last push (a note, not an error)
    DIVERGED = "diverged"  # what we last published is not in our index's history


@dataclass(frozen=True, slots=True)
class Finding:
    kind: Kind
    message: str
    repairable: bool = False
    error: bool = True  # False: a note (exit 0)
    objects: tuple[str, ...] = ()  # the object ids it is about, when it names some

    def line(self) -> str:
        return f"{self.kind.value}: {self.message}"


def check(
    repo: pygit2.Repository, signer: Signer | None, codecs: Sequence[Codec] = (), *, objects: bool = True
) -> list[Finding]:
    """Every finding, read-only. ``codecs``: the types whose cache entries to compare with the
    refs; ``objects``: also look for objects the indexes reach that are missing (reads every
    object of the ledger once, through ``git rev-list``)."""
    gitdir = common_dir(repo)
    own = signer.nid if signer is not None else None
    out: list[Finding] = []
    reader = RefReader(repo)
    raw = _raw_tips(repo, reader)
    for nid, tip in sorted(raw.items()):
        if not recovery.intact_index(repo, tip, fresh=True):
            rec = recovery.recover(repo, nid, tip)
            who = "this node's" if nid == own else f"node {nid}'s"
            fix = (
                "repair: moves it on from there"
                if nid == own
                else "its node, or a sync from a remote holding it, moves it on"
            )
            out.append(
                Finding(Kind.BROKEN_INDEX, f"{who} index: {rec.describe()} ({fix})", repairable=nid == own)
            )
    for loss in indexlog.losses(gitdir):
        shown = ", ".join(f"{i[:12]} (change {t[:12]})" for _, i, t in loss.entries[:MAX_MISSING_SHOWN])
        base = loss.new[:12] if loss.new else "an empty index"
        text = (
            f"node {loss.nid}: at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(loss.when))} UTC its"
            f" index {loss.old[:12] if loss.old else '?'} was missing and it moved on from {base};"
        )
        text += (
            f" {len(loss.entries)} write(s) lost: {shown}" if loss.entries else " no recorded write was lost"
        )
        out.append(
            Finding(
                Kind.LOST,
                text + " (repair: acknowledges it)",
                repairable=True,
                error=bool(loss.entries),
                objects=tuple(i for _, i, _ in loss.entries),
            )
        )
    if objects:
        out.extend(_missing_objects(repo, reader))
    for codec in codecs:
        problem = _cache_problem(gitdir, codec, reader)
        if problem is not None:
            out.append(Finding(Kind.CACHE, problem + " (repair: rebuilds it)", repairable=True))
    out.extend(_stale_locks(gitdir))
    if own is not None:
        out.extend(_published(repo, own))
    return out


def _raw_tips(repo: pygit2.Repository, reader: RefReader) -> dict[str, str]:
    """{nid: what its index ref names}, without the fallback readers use."""
    out: dict[str, str] = {}
    for nid in reader.namespaces():
        tip = sigrefs.read_tip(repo, nid)
        if tip is not None:
            out[nid] = tip
        elif os.path.isfile(os.path.join(common_dir(repo), sigrefs.index_ref(nid))):
            out[nid] = "0" * 40  # a ref file git cannot read: unreadable
    return out


def _missing_objects(repo: pygit2.Repository, reader: RefReader) -> list[Finding]:
    tips = reader.index_tips()
    if not tips:
        return []
    res = run_git(
        common_dir(repo),
        ["rev-list", "--objects", "--missing=print", "--stdin"],
        stdin="".join(t + "\n" for t in sorted(set(tips.values()))),
        timeout=600,
    )
    missing = [line[1:41] for line in res.stdout.splitlines() if line.startswith("?")]
    if res.returncode == 0 and not missing:
        return []
    broken = sorted(
        {
            object_id
            for nid, tip in tips.items()
            for _, object_id, change in sigrefs.walk_entries(repo, reader.tree(tip))
            if not _history_readable(repo, change)
        }
    )
    first = ", ".join(m[:12] for m in missing[:MAX_MISSING_SHOWN]) or first_error(res.stderr)[:200]
    shown = ", ".join(i[:12] for i in broken[:MAX_MISSING_SHOWN])
    text = f"objects the indexes reach are missing or unreadable ({first})"
    if broken:
        text += f"; the history of {len(broken)} object(s) is incomplete ({shown})"
    return [
        Finding(
            Kind.MISSING_OBJECTS,
            text + "; a sync from a remote that holds them brings them back",
            objects=tuple(broken),
        )
    ]


def _history_readable(repo: pygit2.Repository, tip: str, budget: int = 1_000_000) -> bool:
    """Whether every commit of ``tip``'s history, with its tree and blobs, can be read."""
    try:
        for commit in repo.walk(tip):
            if not recovery.complete_change(repo, str(commit.id)):
                return False
            budget -= 1
            if budget <= 0:
                break
    except MALFORMED_ERRORS:
        return False
    return True


def _cache_problem(gitdir: str, codec: Codec, reader: RefReader) -> str | None:
    """What the cache says that the refs do not, when it claims to be current."""
    cache = Cache(gitdir)
    if not os.path.exists(cache.path):
        return None
    try:
        return cache.disagreement(codec, reader)
    except Exception as e:  # a damaged cache is a finding, never a crash
        return f"the cache {cache.path} cannot be read ({type(e).__name__}: {e})"[:300]
    finally:
        cache.close()


def _stale_locks(gitdir: str) -> list[Finding]:
    """``*.lock`` files under our refs older than a writer ever holds one."""
    out: list[Finding] = []
    now = time.time()
    roots = [
        os.path.join(gitdir, "refs", "namespaces"),
        os.path.join(gitdir, os.path.dirname(layout.current().published_ref)),
    ]
    candidates = [os.path.join(gitdir, "packed-refs.lock")]
    for root in roots:
        for dirpath, _, files in os.walk(root):
            candidates.extend(os.path.join(dirpath, f) for f in files if f.endswith(".lock"))
            if len(candidates) > MAX_LOCKS:
                break
    for path in candidates[:MAX_LOCKS]:
        try:
            age = now - os.stat(path).st_mtime
        except OSError:
            continue
        if age >= STALE_LOCK_SECONDS:
            name = os.path.relpath(path, gitdir)
            out.append(
                Finding(
                    Kind.STALE_LOCK,
                    f"{name} is {age:.0f} s old (left by a process that"
                    " died?; repair: removes it when no writer of ours is running)",
                    repairable=True,
                )
            )
    return out


def _published(repo: pygit2.Repository, own: str) -> list[Finding]:
    tip = sigrefs.read_tip(repo, own)
    try:
        ref = repo.references.get(layout.current().published_ref)
    except (pygit2.GitError, ValueError):
        ref = None
    published = str(ref.target) if ref is not None else None
    if tip is None or published is None or tip == published:
        return []
    if published not in repo:
        return [
            Finding(
                Kind.DIVERGED,
                f"the index last published ({published[:12]}) is missing here;"
                f" run {layout.current().command} sync to fetch it back",
            )
        ]
    if is_ancestor(repo, published, tip):
        count = len(sigrefs.first_parents(repo, tip, published, 100_000) or [])
        return [
            Finding(
                Kind.UNPUBLISHED,
                f"{count or 'some'} index commit(s) of this node not pushed yet"
                f" (run {layout.current().command} sync)",
                error=False,
            )
        ]
    return [
        Finding(
            Kind.DIVERGED,
            f"this node's index ({tip[:12]}) does not descend from what it last"
            f" published ({published[:12]}); the next sync merges them or says why not",
        )
    ]


def repair(
    repo: pygit2.Repository, signer: Signer | None, findings: Sequence[Finding], codecs: Sequence[Codec] = ()
) -> list[str]:
    """Repair what needs no person; returns one line per repair made."""
    gitdir = common_dir(repo)
    done: list[str] = []
    kinds = {f.kind for f in findings if f.repairable}
    if Kind.LOST in kinds:
        nids = [r.nid for r in indexlog.losses(gitdir)]
        indexlog.acknowledge(gitdir, nids)
        done.append(
            f"acknowledged lost writes of {len(set(nids))} node(s)"
            f" (they stay in {layout.current().file(indexlog.LOG_NAME)})"
        )
    if Kind.BROKEN_INDEX in kinds and signer is not None:
        rec = recovery.repair(repo, signer, signer.nid, quiet=True)
        if rec is not None:
            done.append(f"repaired broken-index: {rec.describe()}")
    if Kind.CACHE in kinds:
        cache = Cache(gitdir)
        cache.remove_files()
        done.append("removed the cache; the next query rebuilds it from the refs")
    if Kind.STALE_LOCK in kinds:
        for f in findings:
            if f.kind is Kind.STALE_LOCK:
                name = f.message.split(" ", 1)[0]
                ref = name[: -len(".lock")]
                if clear_stale_lock(repo, ref):
                    done.append(f"removed stale lock {name}")
    return done
