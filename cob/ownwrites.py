"""This process's own writes, recorded in the SQLite index (:mod:`cob.cache`) in batches.

A write moves this node's index ref; the index then needs the object's new tip and the new
stamp. Recording that at once cost one SQLite transaction per write (0.1-0.3 ms, a sixth of a
write on a 20-node hub). Instead each write is kept here, in memory, and a run of them is
written in one transaction: before this process next uses the index (so its own queries see
its writes), when a run grows past :data:`MAX_PENDING` objects, and when the process exits.

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
import weakref
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

    __slots__ = ("__weakref__", "runs", "write")

    def __init__(self, write: Callable[[Run], None]) -> None:
        self.runs: dict[tuple[str, str], Run] = {}
        # One transaction for one run (Cache._record_own), held weakly: no cycle with the cache.
        self.write = weakref.WeakMethod(write)

    def add(
        self, codec: Any, refs: Any, nid: str, old: str | None, new: str, object_id: str, tip: str
    ) -> None:
        key = (codec.cobtype.typename, nid)
        run = self.runs.get(key)
        if run is not None and run.new != old:
            self.flush()  # another writer moved the index in between: that run ends here
            run = None
        if run is None:
            run = self.runs[key] = Run(codec, refs, nid, old, new)
            _LIVE.add(self)
        run.new = new
        run.tips[object_id] = tip
        if len(run.tips) >= MAX_PENDING:
            self.flush()

    def flush(self) -> None:
        """Write every run (each in one transaction); runs are dropped even if that fails:
        the index then stays behind the refs, which the next query notices."""
        runs, self.runs = list(self.runs.values()), {}
        write = self.write()
        if write is not None:
            for run in runs:
                write(run)

    def drop(self) -> None:
        self.runs = {}


_LIVE: weakref.WeakSet[Pending] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    for pending in list(_LIVE):
        with contextlib.suppress(Exception):
            pending.flush()
