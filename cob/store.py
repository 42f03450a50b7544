"""`cob.Store`: create, update, load and list collaborative objects in one repository.

The store is the only writer of refs. It writes a change, then moves this node's ref with a
compare-and-swap on its old value; a lost race (another process of this node wrote first)
re-reads the tips, folds what changed, rebuilds the change on the new tips and tries again, so
two processes writing one object lose no operation.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import pygit2

from . import durable, keptstates, listing, sigrefs
from .cache import Cache
from .change import (
    MAX_WRITE_TIMESTAMP,
    MIN_TIMESTAMP,
    Change,
    Codec,
    InvalidChangeError,
    read_change,
    write_change,
    write_root,
)
from .cobtype import CobType, Reject
from .errors import (
    CacheBusyError,
    ConflictError,
    InvalidOpsError,
    NoKeyError,
    RepositoryError,
    UnknownObjectError,
)
from .evaluate import Evaluation, evaluate
from .parallel import first_load
from .reader import RefReader
from .recovery import Recovery, move, repair, republish
from .refs import common_dir, is_oid
from .repository import open_repository
from .signer import Signer
from .verified import NoneVerified, VerifiedSet
from .writes import (
    Changes,
    Snapshot,
    _apply_own,
    _choose_parents,
    _NewChangeContext,
    changed_since,
    check_embeds,
    merge_check,
    rebuild,
)

S = TypeVar("S")
T = TypeVar("T")
log = logging.getLogger("cob")
_SAID_BUSY: set[str] = set()  # caches this process said were busy (one line each)


class _Miss:
    """The cache gave no answer (none, or locked): read from Git."""


_MISS = _Miss()
# Below this many (objects x namespaces) ref lookups, a batch looks refs up one by one.
SCAN_MIN = 2_000

MAX_ATTEMPTS = 200
MAX_VANISHED = 8  # writes started again because an object vanished under them (git prune)


class Store:
    """Collaborative objects of any type in one Git repository, written as ``signer``."""

    def __init__(
        self,
        repo: pygit2.Repository | str | os.PathLike[str],
        signer: Signer | None = None,
        *,
        cache: bool = True,
        verified: bool | None = None,
    ) -> None:
        self.repo = open_repository(repo)
        durable.apply(self.repo)  # fsync'd writes, a bounded libgit2 cache (once per process)
        self.signer = signer
        self.refs = RefReader(self.repo)
        gitdir = common_dir(self.repo)
        keep = cache if verified is None else verified  # signatures checked before: cob.verified
        self.verified: VerifiedSet | NoneVerified = VerifiedSet(gitdir) if keep else NoneVerified()
        secret = self.verified.secret if isinstance(self.verified, VerifiedSet) else None
        self.cache: Cache | None = Cache(gitdir, secret=secret) if cache else None
        self._codecs: dict[str, Codec] = {}
        self.evaluations = 0  # full or incremental folds computed (for tests and benches)
        self.loads = 0  # objects loaded, from the cache or folded (for tests and benches)
        self._migrated = False  # this node's per-object refs moved into its index (once)

    # -- plumbing ----------------------------------------------------------------------
    def codec(self, cobtype: CobType[Any]) -> Codec:
        codec = self._codecs.get(cobtype.typename)
        if codec is None:
            codec = self._codecs[cobtype.typename] = Codec(cobtype)
            codec.checked = self.verified
        return codec

    def _ask(self, fn: Callable[[Cache], T]) -> T | _Miss:
        """``fn(cache)``, or :data:`_MISS` without a cache or while it is locked by another
        process past a bounded wait (:data:`cob.cache.BUSY_TIMEOUT_S`): the caller then reads
        from Git. The cache is an accelerator; a write it misses is in Git, where it counts."""
        cache = self.cache
        if cache is None or time.monotonic() < cache.busy_until:
            return _MISS
        try:
            return fn(cache)
        except CacheBusyError as e:
            if cache.path not in _SAID_BUSY:
                _SAID_BUSY.add(cache.path)
                log.warning("warning: %s; reading from Git instead (slower, same answer)", e)
            return _MISS

    def _evaluate(
        self,
        codec: Codec,
        object_id: str,
        tips: Mapping[str, str],
        base: Evaluation[Any] | None = None,
        recheck: bool = False,
    ) -> Evaluation[Any]:
        ev = evaluate(self.repo, codec, object_id, tips, base, recheck=recheck)
        self.verified.flush()  # the signatures it checked, recorded on disk (cob.verified)
        return ev

    def _kept_state(self, codec: Codec, object_id: str, tips: dict[str, str]) -> Evaluation[Any] | None:
        """The state at exactly ``tips`` kept across a rebuild (cob.statecache), stored again."""
        got = self._ask(lambda c: c.state_at(codec, object_id, tips))
        if isinstance(got, _Miss) or got is None or got.state is None or got.curable():
            return None
        self._ask(lambda c: c.put(codec, got))
        return got

    def _require_signer(self) -> Signer:
        if self.signer is None:
            raise NoKeyError("this store is read-only: open it with a signer to write")
        return self.signer

    def tips(self, cobtype: CobType[Any], object_id: str) -> dict[str, str]:
        """{nid: change oid} of every namespace's ref for one object."""
        if not is_oid(object_id):  # also keeps "../" out of the ref paths read from disk
            raise UnknownObjectError(f"not an object id: {object_id!r}")
        found = self._ask(lambda c: c.tips(self.codec(cobtype), self.refs, [object_id]).get(object_id, {}))
        if not isinstance(found, _Miss):
            return found
        return self.refs.tips(cobtype.typename, object_id)

    def list(self, cobtype: CobType[Any]) -> builtins.list[str]:
        """Object ids of every object of this type with a ref in any namespace (sorted)."""
        found = self._ask(lambda c: c.list_ids(self.codec(cobtype), self.refs))
        if not isinstance(found, _Miss):
            return found
        return sorted({r.object_id for r in self.refs.refs_of_type(cobtype.typename)})

    def lookup(
        self, cobtype: CobType[Any], key: str, value: str, *more: tuple[str, str]
    ) -> builtins.list[str]:
        """Object ids whose root declares ``(key, value)`` (and every pair of ``more``) in
        ``index_keys`` (sorted); one look at the refs however many pairs."""
        pairs = [(key, value), *more]
        found = self._ask(lambda c: c.find_all(self.codec(cobtype), self.refs, pairs))
        if not isinstance(found, _Miss):
            return found
        codec = self.codec(cobtype)
        out = []
        for object_id in self.list(cobtype):
            try:
                root = read_change(self.repo, codec, object_id, is_root=True)
            except InvalidChangeError:
                continue
            if set(pairs) <= set(cobtype.index_keys(root)):
                out.append(object_id)
        return out

    def resolve_prefix(self, cobtype: CobType[Any], prefix: str) -> builtins.list[str]:
        """Object ids starting with a hex prefix."""
        prefix = prefix.lower()
        found = self._ask(lambda c: c.find_prefix(self.codec(cobtype), self.refs, prefix))
        if not isinstance(found, _Miss):
            return found
        return [i for i in self.list(cobtype) if i.startswith(prefix)]

    # -- reading -----------------------------------------------------------------------
    def load(
        self,
        cobtype: CobType[S],
        object_id: str,
        base: Evaluation[S] | None = None,
        *,
        full: bool = False,
    ) -> Evaluation[S] | None:
        """Fold one object from all namespaces; None when no ref names it.

        The result always returns: bad changes are in ``.rejected``, and ``.state`` is None
        only when the root itself is invalid. With ``base`` (a previous evaluation, consumed)
        or a cached one, a commutative type folds only the changes that are new since; then
        ``.changes`` holds only those. ``full=True`` ignores both and lists every change.
        """
        if not is_oid(object_id):
            raise UnknownObjectError(f"not an object id: {object_id!r}")
        tips = self.tips(cobtype, object_id)
        if not tips:
            return None
        return self._fold(cobtype, object_id, tips, base, full=full)

    def _fold(
        self,
        cobtype: CobType[S],
        object_id: str,
        tips: dict[str, str],
        base: Evaluation[S] | None,
        *,
        full: bool = False,
    ) -> Evaluation[S]:
        """:meth:`load` for refs the caller has just read."""
        self.loads += 1
        codec = self.codec(cobtype)
        if full:
            base = None
        elif base is None and self.cache is not None and cobtype.commutative:
            cached = self._ask(lambda c: c.get(codec, object_id))
            base = None if isinstance(cached, _Miss) else cached
        if base is not None and (not cobtype.commutative or base.object_id != object_id):
            base = None
        if base is not None and base.tips == tips and base.state is not None and not base.curable():
            base.changes = []
            return base
        if base is None and not full and self.cache is not None and cobtype.commutative:
            kept = self._kept_state(codec, object_id, tips)
            if kept is not None:
                return kept
        ev = self._evaluate(codec, object_id, tips, base, recheck=full)
        self.evaluations += 1
        if self.cache is not None and cobtype.commutative and not full:
            self._ask(lambda c: c.put(codec, ev))
        return ev

    def load_many(
        self, cobtype: CobType[S], object_ids: Iterable[str]
    ) -> Iterator[tuple[str, Evaluation[S] | None]]:
        """(object id, :meth:`load` of it) for several objects, in the order given.

        Finding one object's tips asks every namespace for a ref (loose refs are files), so N
        objects cost N x namespaces lookups, most of them for namespaces that do not hold the
        object: 10,000 namespaces made `list` over 50 jobs take seconds. When that product is
        larger than reading the type's refs once, they are read once instead (a snapshot for
        the whole batch), so the cost follows the refs that exist, not objects x namespaces.
        """
        ids = builtins.list(object_ids)
        for object_id in ids:
            if not is_oid(object_id):
                raise UnknownObjectError(f"not an object id: {object_id!r}")
        tips_of = self._tips_for(cobtype, ids)
        first_load(self, cobtype, ids, tips_of)  # nothing verified here yet: on every core
        held = keptstates.folded_for(self, cobtype, ids, tips_of)  # what the index holds as is
        for object_id in ids:
            tips, ev = tips_of(object_id), held.pop(object_id, None)
            yield object_id, ev or (self._fold(cobtype, object_id, tips, None) if tips else None)

    def listing(self, cobtype: CobType[Any], ids: Sequence[str] | None = None) -> Iterator[tuple[str, Any]]:
        """(object id, :meth:`CobType.listing` row) of every valid object of the type (or of
        ``ids``), by id, without decoding states the index holds rows of (:mod:`cob.listing`)."""
        return listing.rows(self, cobtype, ids)

    def _listing_rows(self, cobtype: CobType[Any], ids: Sequence[str] | None) -> Any:
        """The index's current rows, and the ids it has none of (all: no index, or locked)."""
        found = self._ask(lambda c: c.listing_rows(self.codec(cobtype), self.refs, ids))
        if isinstance(found, _Miss):
            return [], builtins.list(ids) if ids is not None else self.list(cobtype)
        return found

    def _tips_for(self, cobtype: CobType[Any], ids: builtins.list[str]) -> Callable[[str], dict[str, str]]:
        """One lookup per object, or one scan of the type's entries when that is cheaper."""
        cached = self._ask(lambda c: c.tips(self.codec(cobtype), self.refs, ids))
        if not isinstance(cached, _Miss):
            return lambda object_id: cached.get(object_id, {})
        lookups = len(ids) * len(self.refs.namespaces())
        if lookups <= SCAN_MIN or lookups <= 2 * self._estimated_refs(cobtype) + SCAN_MIN:
            return lambda object_id: self.tips(cobtype, object_id)
        wanted = set(ids)
        grouped: dict[str, dict[str, str]] = {}
        for ref in self.refs.refs_of_type(cobtype.typename):
            if ref.object_id in wanted:
                grouped.setdefault(ref.object_id, {})[ref.nid] = ref.target
        return lambda object_id: grouped.get(object_id, {})

    def _estimated_refs(self, cobtype: CobType[Any]) -> int:
        """About how many refs the type has (objects the index knows); 0 without an index."""
        found = self._ask(lambda c: c.count(self.codec(cobtype)))
        return 0 if isinstance(found, _Miss) else found

    def get(self, cobtype: CobType[S], object_id: str) -> Evaluation[S]:
        """Like :meth:`load`, but an unknown object is an :class:`UnknownObjectError` error."""
        ev = self.load(cobtype, object_id)
        if ev is None:
            raise UnknownObjectError(f"no {cobtype.typename} object {object_id}")
        return ev

    def all_tips(self, cobtype: CobType[Any]) -> dict[str, dict[str, str]]:
        """{object id: {nid: tip}} of every object of the type (one read of every index)."""
        out: dict[str, dict[str, str]] = {}
        for ref in self.refs.refs_of_type(cobtype.typename):
            out.setdefault(ref.object_id, {})[ref.nid] = ref.target
        return out

    def snapshot(self, cobtype: CobType[Any]) -> Snapshot:
        """Where the refs are now, to hand to :meth:`changed_since` after they moved (a
        fetch): each node's index tip (and legacy refs, until migrated). Costs one ref per node."""
        legacy: dict[str, dict[str, str]] = {}
        if self.refs.has_legacy():
            for ref in self.refs.legacy_refs(cobtype.typename):
                legacy.setdefault(ref.object_id, {})[ref.nid] = ref.target
        return Snapshot(self.refs.index_tips(), legacy)

    def load_at(self, cobtype: CobType[S], object_id: str, tips: Mapping[str, str]) -> Evaluation[S] | None:
        """The object as it was at ``tips`` (refs since moved); from the index when it matches."""
        if not tips:
            return None
        codec = self.codec(cobtype)
        if self.cache is not None and cobtype.commutative:
            got = self._ask(lambda c: c.get(codec, object_id))
            cached = None if isinstance(got, _Miss) else got
            if cached is not None and cached.tips == tips and cached.state is not None:
                return cached
        self.evaluations += 1
        return self._evaluate(codec, object_id, tips)

    def changed_since(self, cobtype: CobType[Any], before: Snapshot) -> Changes:
        """What moving refs did to the objects, given :meth:`snapshot` from before.

        Only the index subtrees that differ are read, and only objects whose tips moved are
        folded (incrementally, through the index): the cost follows what moved. An object is
        *changed* when its folded state differs; rejections new since are listed even when
        the state did not move (a forged change fetched from a peer changes nothing, but must
        be seen).
        """
        return changed_since(self, cobtype, before)

    def cache_status(self, cobtype: CobType[Any]) -> dict[str, Any] | None:
        """What the index holds for the type and whether it is current; None without one."""
        return self.cache.status(cobtype.typename, self.refs) if self.cache is not None else None

    def rebuild_cache(self, cobtype: CobType[Any]) -> int:
        """Empty the index and rebuild it for ``cobtype`` from the refs; returns the number
        of objects indexed. Nothing is lost: the index only ever holds what Git can re-derive."""
        return rebuild(self, cobtype)

    # -- writing -----------------------------------------------------------------------
    def _load_for_write(
        self, cobtype: CobType[S], object_id: str, ev: Evaluation[S] | None, root: str | None
    ) -> tuple[dict[str, str], Evaluation[S]]:
        """(tips, evaluation at them) to build a change on: ``ev`` when still current.

        ``root``: the root was just written by create(); no ref names it yet."""
        signer = self._require_signer()
        # Straight from the index refs (one small file per node, then a tree lookup): the
        # write's compare-and-swap checks our entry again, and the SQLite index is updated
        # after it (own_write), so a refresh here would be a second transaction per write.
        if not is_oid(object_id):  # also keeps "../" out of the ref paths read from disk
            raise UnknownObjectError(f"not an object id: {object_id!r}")
        tips = self.refs.tips(cobtype.typename, object_id)
        seen = tips or ({signer.nid: root} if root == object_id else {})
        if not seen:
            raise UnknownObjectError(f"no {cobtype.typename} object {object_id}")
        if ev is None or ev.tips != seen or ev.state is None:
            if tips:
                ev = self._fold(cobtype, object_id, seen, ev)
            else:
                ev = self._evaluate(self.codec(cobtype), object_id, seen)
        if ev.state is None:
            raise UnknownObjectError(f"{cobtype.typename} object {object_id} has no valid root")
        return tips, ev

    def _check_change(
        self,
        cobtype: CobType[S],
        ev: Evaluation[S],
        name: str,
        old: str | None,
        ops: tuple[Any, ...],
        timestamp: int | None,
    ) -> Change:
        """The change to write on ``ev`` (no oid yet), once the type accepts it."""
        signer = self._require_signer()
        if old is not None and old not in ev.accepted:
            reason = ev.rejected.get(old, "not in the accepted history")
            raise ConflictError(
                f"this node's ref {name} points at change {old[:12]}, which is rejected "
                f"({reason}); refusing to move it sideways — repair or remove that ref"
            )
        parents = tuple(_choose_parents(ev, old))
        when = int(time.time()) if timestamp is None else timestamp
        if not MIN_TIMESTAMP <= when <= MAX_WRITE_TIMESTAMP:
            raise InvalidOpsError(f"timestamp {when} is outside 0..{MAX_WRITE_TIMESTAMP}")
        pending = Change("", parents, signer.nid, when, ops, "", cobtype.version)
        assert ev.state is not None
        try:
            cobtype.validate(ev.state, pending, _NewChangeContext(ev))
        except Reject as e:
            raise InvalidOpsError(str(e)) from None
        return pending

    def _write(self, cobtype: CobType[S], pending: Change, embeds: Mapping[str, bytes] | None) -> Change:
        """Write ``pending`` as a signed commit; the change with its oid and message."""
        signer = self._require_signer()
        oid = write_change(
            self.repo,
            self.codec(cobtype),
            signer,
            signer.nid,
            pending.ops,
            list(pending.parents),
            timestamp=pending.timestamp,
            embeds=embeds,
        )
        return dataclasses.replace(pending, oid=oid, message=cobtype.summary(pending.ops) + "\n")

    def _check_ops(self, cobtype: CobType[Any], ops: Sequence[Any]) -> tuple[Any, ...]:
        """The ops as a reader will decode them (structs, even if given as dicts)."""
        if not ops:
            raise InvalidOpsError("a change needs at least one op")
        codec = self.codec(cobtype)
        try:
            return codec.decode_ops(codec.encode_ops(ops))
        except InvalidChangeError as e:
            raise InvalidOpsError(f"ops do not fit {cobtype.typename}: {e}") from None

    def create(
        self,
        cobtype: CobType[S],
        ops: Sequence[Any],
        *,
        embeds: Mapping[str, bytes] | None = None,
        then: Sequence[Any] | None = None,
        precondition: Callable[[S], None] | None = None,
    ) -> Evaluation[S]:
        """Create an object; returns its evaluation (``.object_id`` is the new id).

        For a content-addressed type this is idempotent: the root is the same on every node,
        and an existing ref of ours is left where it is. ``then`` is a signed change written
        on top of the root (parents: every accepted head, as :meth:`update`), with this node's
        ref moved once, straight to it: peers take only signed tips, and an unsigned root
        proves nothing about who wants the object. ``precondition`` is :meth:`update`'s.
        """
        signer = self._require_signer()
        ops = self._check_ops(cobtype, ops)
        check_embeds(embeds)
        codec = self.codec(cobtype)
        if cobtype.content_addressed_root and embeds:
            raise InvalidOpsError("a content-addressed root carries no embeds")
        try:  # ask the type before writing anything, so a refused root leaves no objects
            author = None if cobtype.content_addressed_root else signer.nid
            cobtype.initial(Change("", (), author, int(time.time()), ops, "", cobtype.version))
        except Reject as e:
            raise InvalidOpsError(f"root rejected: {e}") from None
        if cobtype.content_addressed_root:
            root = write_root(self.repo, codec, ops)
        else:
            root = write_change(self.repo, codec, signer, signer.nid, ops, [], embeds=embeds)
        ev = self._evaluate(codec, root, {signer.nid: root})
        if ev.state is None:
            raise InvalidOpsError(f"root rejected: {ev.rejected.get(root, 'invalid')}")
        if then is not None:
            root_ops = ops if cobtype.content_addressed_root else None
            return self.update(
                cobtype, root, then, precondition=precondition, _root=root, _root_ops=root_ops
            )[1]
        self.migrate()
        key = (cobtype.typename, root)
        own = sigrefs.tree_of(self.repo, sigrefs.read_tip(self.repo, signer.nid))
        if sigrefs.lookup(self.repo, own, *key) is None:
            moved = move(self.repo, signer, signer.nid, {key: root}, {key: None})
            if moved is not None:
                self._ask(lambda c: c.own_write(codec, self.refs, signer.nid, moved, root, root))
        return self.load(cobtype, root) or ev

    def update(
        self,
        cobtype: CobType[S],
        object_id: str,
        ops: Sequence[Any],
        *,
        base: Evaluation[S] | None = None,
        embeds: Mapping[str, bytes] | None = None,
        timestamp: int | None = None,
        precondition: Callable[[S], None] | None = None,
        _root: str | None = None,
        _root_ops: Sequence[Any] | None = None,
    ) -> tuple[Change, Evaluation[S]]:
        """Append a change carrying ``ops`` to an object, as this store's signer.

        Parents are every head of the accepted history. The change is checked against the
        current state first: if the type would reject it, :class:`InvalidOpsError` is raised and
        nothing is written. ``precondition(state)`` runs on that same, freshly read state on
        every attempt (also after a lost race), and may raise to abort with nothing written —
        how a caller says "only if this run is not finished yet" without a separate reload.
        Returns the change and the evaluation including it.
        """
        signer = self._require_signer()
        ops = tuple(self._check_ops(cobtype, ops))
        check_embeds(embeds)
        name = f"{sigrefs.index_ref(signer.nid)}:{sigrefs.entry_path(cobtype.typename, object_id)}"
        key = (cobtype.typename, object_id)
        self.migrate()
        ev = base
        vanished = 0
        for attempt in range(MAX_ATTEMPTS):
            if _root_ops is not None and _root is not None and _root not in self.repo:
                write_root(self.repo, self.codec(cobtype), _root_ops)  # pruned since create() wrote it
            tips, ev = self._load_for_write(cobtype, object_id, ev, _root)
            assert ev.state is not None  # _load_for_write raises otherwise
            if precondition is not None:
                precondition(ev.state)
            old = tips.get(signer.nid)
            change = self._check_change(cobtype, ev, name, old, ops, timestamp)
            done = self._write_and_move(cobtype, change, embeds, key, old)
            if isinstance(done, Exception):  # nothing acknowledged: start again from what is there
                vanished += 1
                if vanished > MAX_VANISHED:
                    raise RepositoryError(f"cannot write {name}: {done}") from None
                ev = None
                time.sleep(0.1 * vanished)  # let the prune that took it finish
                continue
            change, moved = done
            if moved is not None:
                codec, ours, tip = self.codec(cobtype), moved, change.oid
                self._ask(lambda c: c.own_write(codec, self.refs, signer.nid, ours, object_id, tip))  # noqa: B023
                _apply_own(cobtype, ev, change, tips)
                if not embeds:  # we signed it: the next load need not verify it again
                    self.codec(cobtype).verified[(change.oid, False)] = change
                self.verified.add(change.oid, signer.nid)
                self.verified.flush()
                return change, ev
            time.sleep(random.uniform(0, min(0.05, 0.001 * (attempt + 1))))
        raise ConflictError(f"gave up updating {name} after {MAX_ATTEMPTS} lost races")

    def _write_and_move(
        self,
        cobtype: CobType[Any],
        change: Change,
        embeds: Mapping[str, bytes] | None,
        key: sigrefs.Key,
        old: str | None,
    ) -> tuple[Change, sigrefs.Moved | None] | Exception:
        """Write ``change`` and move our index entry ``key`` from ``old`` to it; the error when
        an object it builds on vanished under it (``git prune --expire=now`` next to a writer:
        libgit2 refuses to name a missing object)."""
        signer = self._require_signer()
        try:
            written = self._write(cobtype, change, embeds)
            return written, move(self.repo, signer, signer.nid, {key: written.oid}, {key: old})
        except (pygit2.GitError, OSError, RepositoryError) as e:
            self.refs.forget()
            return e

    def repair_index(self) -> Recovery | None:
        """Move this node's index forward from its newest intact one when its tip is missing
        or unreadable (pruned by ``git gc`` next to a writer), or when it reaches objects such
        a prune deleted under it (which no push can send: from the last published index,
        :func:`cob.recovery.republish`); None when there is nothing to repair. See
        :mod:`cob.recovery`. Writes do this by themselves; sync and ``doctor --repair`` ask."""
        signer = self._require_signer()
        return repair(self.repo, signer, signer.nid) or republish(self.repo, signer, signer.nid)

    def merge_own(self, theirs: str, types: Sequence[CobType[Any]] = ()) -> builtins.list[tuple[str, str]]:
        """Merge our own index as a remote holds it, diverged from ours, into ours (see
        :func:`cob.migrate.merge_own`); returns the (type, object id) both copies changed,
        each now a merge change of both tips. Of ``types``, two tips are joined only when a
        fold accepts both (a writer never builds on a change its evaluation rejected)."""
        from .migrate import merge_own

        return merge_own(self.repo, self._require_signer(), theirs, merge_check(self, types))

    def migrate(self, *, again: bool = False) -> int:
        """Move this node's per-object refs (the layout before the index) into its index
        ref, once per store (``again``: look once more, e.g. after a fetch brought some back);
        returns how many moved. See :mod:`cob.migrate`."""
        if (self._migrated and not again) or self.signer is None:
            return 0
        from .migrate import migrate_own

        moved = migrate_own(self.repo, self.signer, self.refs)
        self._migrated = True
        return moved
