"""A first-ever load checks signatures on every core.

With nothing in the verified set (:mod:`cob.verified`) — a fresh clone, a new machine, the set
deleted — the first listing must check every change's Ed25519 signature (~60 µs each, one
core: 100,000 changes take 6 s). :func:`verify_ahead` walks the changes the given tips reach,
checks their signatures in worker processes (:func:`cob.change.signer_of`: signature, signer =
author = committer, exactly the load's check) and records those that pass in the verified set;
the load that follows then finds them there and runs every other check as always. Only passing
signatures are recorded: a bad one is left for the load to reject with its reason. Below
:data:`MIN_CHANGES`, or with one core, or where ``fork`` is unavailable, it does nothing (the
load checks them one by one, as before).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

import pygit2

from .change import InvalidChangeError, signer_of
from .cobtype import CobType
from .verified import VerifiedSet

if TYPE_CHECKING:
    from .store import Store

MIN_CHANGES = 2_000  # below this, starting workers costs more than it saves
MAX_CHANGES = 2_000_000  # changes walked at most (a bound, not a limit of the load)
CHUNK = 1_000  # signatures per task
_Item = tuple[str, bytes, bytes, str, str]  # oid, signature, payload, author, committer


class _Recorder(Protocol):
    def add(self, oid: str, nid: str) -> None: ...

    def flush(self) -> None: ...


def workers() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _check(items: list[_Item]) -> list[tuple[str, str]]:
    """(oid, signer NID) of the items whose signature verifies (in a worker process)."""
    out = []
    for oid, signature, payload, author, committer in items:
        try:
            out.append((oid, signer_of(signature, payload, author, committer)))
        except InvalidChangeError:
            continue
    return out


def _collect(repo: pygit2.Repository, tips: Iterable[str], known: _Known) -> list[_Item]:
    walker = repo.walk(None, pygit2.enums.SortMode.NONE)
    for tip in set(tips):
        try:
            walker.push(pygit2.Oid(hex=tip))
        except (pygit2.GitError, KeyError, ValueError):
            continue
    items: list[_Item] = []
    try:
        for commit in walker:
            signature, payload = commit.gpg_signature
            if signature is None:
                continue
            oid, author = str(commit.id), commit.author.name
            if not known(oid, author):
                items.append((oid, signature, payload, author, commit.committer.name))
            if len(items) >= MAX_CHANGES:
                break
    except (pygit2.GitError, KeyError, ValueError, LookupError):
        pass  # a broken or missing object: the load reports it
    return items


class _Known(Protocol):
    def __call__(self, oid: str, nid: str) -> bool: ...


def verify_ahead(
    repo: pygit2.Repository,
    tips: Iterable[str],
    recorder: _Recorder,
    known: _Known,
    *,
    cores: int | None = None,
) -> int:
    """Check, on every core, the signatures of the changes ``tips`` reach that ``known`` does
    not know, and record those that pass; returns how many were checked (0: left to the load)."""
    cores = workers() if cores is None else cores
    if cores < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return 0
    items = _collect(repo, tips, known)
    if len(items) < MIN_CHANGES:
        return 0
    chunks = [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]
    try:
        with ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("fork")) as pool:
            for passed in pool.map(_check, chunks):
                for oid, nid in passed:
                    recorder.add(oid, nid)
    except (OSError, RuntimeError):  # no processes here (a sandbox): the load checks them
        return 0
    finally:
        recorder.flush()
    return len(items)


def first_load(
    store: Store, cobtype: CobType[Any], ids: list[str], tips_of: Callable[[str], dict[str, str]]
) -> int:
    """For :meth:`cob.store.Store.load_many`: :func:`verify_ahead` when nothing was verified
    here yet and neither the index nor the kept states hold a fold of these objects (a
    first-ever load)."""
    checked = store.verified
    if not isinstance(checked, VerifiedSet) or len(ids) < 2 or not checked.empty():
        return 0
    if store.cache is not None:
        codec = store.codec(cobtype)
        if store.cache.get(codec, ids[0]) is not None:
            return 0
        if store.cache.state_at(codec, ids[0], tips_of(ids[0])) is not None:
            return 0  # the states were kept (the index alone deleted): little to check
    tips = [tip for object_id in ids for tip in tips_of(object_id).values()]
    return verify_ahead(store.repo, tips, checked, checked.known)
