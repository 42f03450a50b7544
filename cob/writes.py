"""What :class:`cob.store.Store` builds its writes and change reports from (split from store.py):
the parents a new change takes, the context the type checks it in, folding our own write in,
and the snapshot / changes of :meth:`~cob.store.Store.changed_since`."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from . import sigrefs
from .cache import Cache
from .change import MAX_EMBEDS, MAX_PARENTS, Change
from .cobtype import CobType
from .errors import InvalidOpsError
from .evaluate import Evaluation, Rejection
from .reader import RefReader
from .refs import common_dir

if TYPE_CHECKING:
    from .store import Store


@dataclass(frozen=True, slots=True)
class Snapshot:
    """:meth:`Store.snapshot`: each node's index tip, and legacy refs ({id: {nid: tip}})."""

    heads: dict[str, str]
    legacy: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(slots=True)
class Changes:
    """What :meth:`Store.changed_since` found: objects whose state moved, rejections new since."""

    changed: builtins.list[str] = field(default_factory=builtins.list)
    rejected: builtins.list[Rejection] = field(default_factory=builtins.list)


_state_encoder = msgspec.msgpack.Encoder(order="deterministic")


def _state_bytes(ev: Evaluation[Any] | None) -> bytes | None:
    """A state as comparable bytes (msgspec structs have no deep equality by default)."""
    if ev is None or ev.state is None:
        return None
    return _state_encoder.encode(ev.state)


def _apply_own(cobtype: CobType[Any], ev: Evaluation[Any], change: Change, tips: Mapping[str, str]) -> None:
    """Fold our own just-written change into ``ev``, as a load would (it is a new head)."""
    assert change.author is not None
    cobtype.apply(ev.state, change)
    ev.accepted.add(change.oid)
    ev.changes = [change]
    ev.heads.difference_update(change.parents)
    ev.heads.add(change.oid)
    ev.tips = {**tips, change.author: change.oid}


def _choose_parents(ev: Evaluation[Any], own_tip: str | None) -> list[str]:
    """Every accepted head — at most :data:`MAX_PARENTS` of them, as readers allow no more.

    With more heads than that (hundreds of concurrent writers), this node's own tip and the
    most recent heads by (commit time, oid) are taken; the rest stay heads, so the next change
    takes them. Deterministic, and never a change this node's evaluation rejected.
    """
    heads = sorted(ev.heads)
    if len(heads) <= MAX_PARENTS:
        return heads
    times = {c.oid: c.key for c in ev.changes}
    chosen = {own_tip} if own_tip is not None and own_tip in ev.heads else set()
    for head in sorted(heads, key=lambda h: times.get(h, (0, h)), reverse=True):
        if len(chosen) >= MAX_PARENTS:
            break
        chosen.add(head)
    return sorted(chosen)


class _NewChangeContext:
    """Ancestry for a change about to be written: its parents are all accepted heads."""

    __slots__ = ("ev",)

    def __init__(self, ev: Evaluation[Any]) -> None:
        self.ev = ev

    def is_ancestor(self, ancestor: str, of: str) -> bool:
        # Every accepted change is an ancestor of the new one (it builds on all heads).
        return ancestor in self.ev.accepted or ancestor == of


def check_embeds(embeds: Mapping[str, bytes] | None) -> None:
    """Checked before anything is written: a bad name must leave no stray blobs behind,
    and more embeds than readers accept would get our own change rejected."""
    if not embeds:
        return
    if len(embeds) > MAX_EMBEDS:
        raise InvalidOpsError(f"{len(embeds)} embeds (limit {MAX_EMBEDS})")
    for name, content in embeds.items():
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\0" in name:
            raise InvalidOpsError(f"bad embed name {name!r}")
        if not isinstance(content, bytes):
            raise InvalidOpsError(f"embed {name!r} is not bytes")


def moved_between(refs: RefReader, typename: str, before: Snapshot, after: Snapshot) -> set[str]:
    """Object ids whose entries differ between two snapshots (only differing subtrees read)."""
    moved: set[str] = set()
    for nid in before.heads.keys() | after.heads.keys():
        was, now = before.heads.get(nid), after.heads.get(nid)
        if was != now:
            old_tree = refs.tree(was) if was else None
            new_tree = refs.tree(now) if now else None
            moved.update(sigrefs.diff(refs.repo, old_tree, new_tree, typename))
    for object_id in before.legacy.keys() | after.legacy.keys():
        if before.legacy.get(object_id) != after.legacy.get(object_id):
            moved.add(object_id)
    return moved


def tips_at(
    refs: RefReader,
    typename: str,
    snap: Snapshot,
    object_id: str,
    known: Snapshot | None = None,
    known_tips: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """{nid: tip} of one object as a snapshot has it; ``known_tips``: the object's tips at
    the snapshot ``known``, reused for every node whose index did not move since (a sync's
    fetch moves a few of them: the others are not looked up again)."""
    out: dict[str, str] = {}
    reuse = known is not None and known_tips is not None and not known.legacy and not snap.legacy
    for nid, tip in snap.heads.items():
        if reuse and known is not None and known_tips is not None and known.heads.get(nid) == tip:
            if nid in known_tips:
                out[nid] = known_tips[nid]
            continue
        target = sigrefs.lookup(refs.repo, refs.tree(tip), typename, object_id)
        if target is not None:
            out[nid] = target
    for nid, target in snap.legacy.get(object_id, {}).items():
        out.setdefault(nid, target)
    return out


def changed_since(store: Store, cobtype: CobType[Any], before: Snapshot) -> Changes:
    """:meth:`cob.store.Store.changed_since`."""
    out = Changes()
    after = store.snapshot(cobtype)
    for object_id in sorted(moved_between(store.refs, cobtype.typename, before, after)):
        old_tips = tips_at(store.refs, cobtype.typename, before, object_id)
        new_tips = tips_at(store.refs, cobtype.typename, after, object_id, before, old_tips)
        if old_tips == new_tips or not new_tips:
            continue
        old_ev = store.load_at(cobtype, object_id, old_tips)
        old_rejected = set(old_ev.rejected) if old_ev is not None else set()
        new = store._fold(cobtype, object_id, new_tips, None)
        if new.state is not None and _state_bytes(new) != _state_bytes(old_ev):
            out.changed.append(object_id)
        out.rejected.extend(r for r in new.rejections() if r.change not in old_rejected)
    return out


def rebuild(store: Store, cobtype: CobType[Any]) -> int:
    """:meth:`cob.store.Store.rebuild_cache`: states kept across it are looked up, not folded."""
    cache = store.cache if store.cache is not None else Cache(common_dir(store.repo))
    # Emptied in one transaction, not deleted: other processes may have the file open, and
    # deleting it under them would race their reconnect (a corrupt file is still deleted).
    cache.clear()
    codec = store.codec(cobtype)
    ids = cache.list_ids(codec, store.refs)
    if cobtype.commutative:
        for object_id in ids:
            tips = store.tips(cobtype, object_id)
            if tips:
                kept = cache.state_at(codec, object_id, tips)  # kept across the rebuild
                if kept is None:
                    store.evaluations += 1
                ev = kept if kept is not None else store._evaluate(codec, object_id, tips)
                cache.put(codec, ev)
    if cache is not store.cache:
        cache.close()
    return len(ids)


def merge_check(
    store: Store, types: Sequence[CobType[Any]]
) -> Callable[[str, str, Sequence[str]], str | None]:
    """For :meth:`cob.store.Store.merge_own`: why two tips of one object may not be joined (a
    fold of ``types`` rejects one of them), or None."""
    known = {t.typename: t for t in types}

    def check(typename: str, object_id: str, tips: Sequence[str]) -> str | None:
        cobtype = known.get(typename)
        if cobtype is None:
            return None
        named = {f"tip{i}": t for i, t in enumerate(tips)}
        ev = store._evaluate(store.codec(cobtype), object_id, named)
        for tip in tips:
            if tip not in ev.accepted:
                return f"change {tip[:12]} is rejected ({ev.rejected.get(tip, 'not accepted')})"
        return None

    return check
