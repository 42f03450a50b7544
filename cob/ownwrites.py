"""This process's own writes, recorded in the SQLite index (:mod:`cob.cache`) in batches.

A write moves this node's index ref; the index then needs the object's new tip and the new
stamp. Recording that at once cost one SQLite transaction per write (0.1-0.3 ms, a sixth of a
write on a 20-node hub). Instead each write is kept here, in memory, and a run of them is
written in one transaction: before this process next uses the index (so its own queries see
its writes), when a run grows past :data:`MAX_PENDING` objects, when more than
:data:`MAX_HELD` caches hold runs, and when the process exits — each by the thread that wrote
it (a cache's SQLite connection is its thread's alone); another thread's runs are left to it.

Nothing is ever seen stale: until a run is written, the stamp stored in the index still names
this node's old index tip, which differs from the ref, so any other process that queries
reads the difference from Git itself (:meth:`cob.cache.Cache.refresh`), as it does for a
plain ``git fetch``. A run is written only if the stamp still names the tip it started from
(else someone already brought the index up to date); a process killed before writing it
loses only that shortcut.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_PENDING = 256  # objects one run holds before it is written (bounds memory)


@dataclass(slots=True)
class Run:
    """Consecutive moves of one node's index (``old`` -> ... -> ``new``) and the tips they set."""

    codec: Any  # cob.change.Codec
    refs: Any  # cob.reader.RefReader
    nid: str
    old: str | None
    new: str
    tips: dict[str, str] = field(default_factory=dict)


class Pending:
    """The runs of one :class:`~cob.cache.Cache` not yet written, by (type, node)."""

    __slots__ = ("owner", "runs", "write")

    def __init__(self, write: Callable[[Run], None]) -> None:
        self.runs: dict[tuple[str, str], Run] = {}
        self.write = write  # one transaction for one run (Cache._record_own)
        # The thread that wrote them: only it may use its cache's connection (SQLite refuses
        # another thread's, and the cache would take that for damage and delete the index).
        self.owner = threading.get_ident()

    def add(
        self, codec: Any, refs: Any, nid: str, old: str | None, new: str, object_id: str, tip: str
    ) -> None:
        key = (codec.cobtype.typename, nid)
        run = self.runs.get(key)
        if run is not None and run.new != old:
            self.flush()  # another writer moved the index in between: that run ends here
            run = None
        if run is None:
            self.owner = threading.get_ident()
            run = self.runs[key] = Run(codec, refs, nid, old, new)
        run.new = new
        run.tips[object_id] = tip
        if id(self) not in _LIVE:
            _hold(self)  # after the run is whole: holding may write it
        if len(run.tips) >= MAX_PENDING:
            self.flush()

    def flush(self) -> None:
        """Write every run (each in one transaction); runs are dropped even if that fails:
        the index then stays behind the refs, which the next query notices."""
        runs, self.runs = list(self.runs.values()), {}
        _LIVE.pop(id(self), None)
        for run in runs:
            self.write(run)


# Every Pending with runs, held (with its cache) until written: a store dropped right after a
# write (the CLI) still gets it written at exit. At most MAX_HELD: then the oldest is written.
# Another thread's runs are never written here, only let go (its next query writes them, or
# the index lags): its cache's connection is that thread's alone.
MAX_HELD = 8
_LIVE: dict[int, Pending] = {}


def _let_go(pending: Pending) -> None:
    if pending.owner == threading.get_ident():
        with contextlib.suppress(Exception):  # the index only lags: the next query diffs
            pending.flush()
    _LIVE.pop(id(pending), None)


def _hold(pending: Pending) -> None:
    _LIVE[id(pending)] = pending
    for oldest in list(_LIVE.values()):  # a copy: other threads add theirs meanwhile
        if len(_LIVE) <= MAX_HELD:
            break
        _let_go(oldest)


@atexit.register
def _flush_all() -> None:
    for pending in list(_LIVE.values()):
        _let_go(pending)
