"""The local index log: every move of an index ref made here, one line each (:mod:`cob.recovery`).

The log (:data:`LOG_NAME`, in the common git directory; never synced) holds the old and new
tip of each move and the entries it set; recoveries and their acknowledgements are recorded
too. It is written by :func:`cob.refs.compare_and_swap` and read by :mod:`cob.recovery` and
``doctor``; it only says where to look, never what to trust.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from . import layout
from .syntax import is_oid, is_typename

Key = tuple[str, str]  # (typename, object id)

LOG_NAME = "index-log"  # <gitdir>/<layout prefix>-index-log (cob.layout)
# The log is trimmed to its newest KEEP_BYTES once it passes MAX_BYTES (a few thousand moves).
MAX_BYTES = 1 << 20
KEEP_BYTES = 256 << 10
# Entries recorded per move; a bigger move (a migration, a merge) records its tips only.
MAX_RECORDED = 64
NONE = "0" * 40


@dataclass(frozen=True, slots=True)
class Record:
    """One line of the log: an index move (``kind`` "M") or a recovery ("L", lost entries;
    "A", losses acknowledged by ``doctor --repair``)."""

    kind: str
    nid: str
    old: str | None
    new: str | None
    when: int
    entries: tuple[tuple[str, str, str], ...] = ()  # (typename, object id, tip)


def log_path(gitdir: str) -> str:
    return os.path.join(gitdir, layout.current().file(LOG_NAME))


def _format(rec: Record) -> str:
    parts = [rec.kind, rec.nid, rec.old or NONE, rec.new or NONE, str(rec.when)]
    parts.extend(f"{t}/{i}={tip}" for t, i, tip in rec.entries)
    return " ".join(parts) + "\n"


def _parse(line: str) -> Record | None:
    parts = line.split()
    if len(parts) < 5 or parts[0] not in ("M", "L", "A") or not parts[4].isdigit():
        return None
    old, new = parts[2], parts[3]
    if not (is_oid(old) and is_oid(new)):
        return None
    entries = []
    for part in parts[5 : 5 + MAX_RECORDED]:
        path, eq, tip = part.partition("=")
        typename, slash, object_id = path.rpartition("/")
        if eq and slash and is_oid(object_id) and is_oid(tip) and is_typename(typename):
            entries.append((typename, object_id, tip))
    return Record(
        parts[0],
        parts[1],
        None if old == NONE else old,
        None if new == NONE else new,
        int(parts[4]),
        tuple(entries),
    )


def append(gitdir: str, records: Iterable[Record]) -> None:
    """Append records (one ``write`` per call, under a lock so a trim never drops one);
    never raises: the log only helps recovery, a write that cannot record still stands."""
    data = "".join(_format(r) for r in records).encode()
    if not data:
        return
    path = log_path(gitdir)
    try:
        import fcntl
    except ImportError:  # not POSIX: append without the trim lock
        with contextlib.suppress(OSError), open(path, "ab") as f:
            f.write(data)
        return
    with contextlib.suppress(OSError):
        for _ in range(5):
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    same = os.fstat(fd).st_ino == os.stat(path).st_ino
                except FileNotFoundError:
                    same = False
                if not same:  # trimmed (replaced) while we waited: append to the new file
                    continue
                os.write(fd, data)
                if os.fstat(fd).st_size > MAX_BYTES:
                    _trim(path)
                return
            finally:
                os.close(fd)


def _trim(path: str) -> None:
    """Keep the newest :data:`KEEP_BYTES` (whole lines); called under the append lock."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - KEEP_BYTES))
        tail = f.read()
    if size > KEEP_BYTES:
        tail = tail[tail.find(b"\n") + 1 :]
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(tail)
    os.replace(tmp, path)


def read(gitdir: str, nid: str | None = None) -> list[Record]:
    """Records, oldest first (of one node, or all)."""
    try:
        with open(log_path(gitdir), "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - MAX_BYTES - KEEP_BYTES))  # bounded even if never trimmed
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        rec = _parse(line)
        if rec is not None and (nid is None or rec.nid == nid):
            out.append(rec)
    return out


def record_move(
    gitdir: str, nid: str, old: str | None, new: str, updates: Mapping[Key, str | None] | None = None
) -> None:
    entries: tuple[tuple[str, str, str], ...] = ()
    if updates and len(updates) <= MAX_RECORDED:
        entries = tuple((t, i, tip) for (t, i), tip in sorted(updates.items()) if tip is not None)
    append(gitdir, [Record("M", nid, old, new, int(time.time()), entries)])


def losses(gitdir: str, nid: str | None = None) -> list[Record]:
    """Recoveries ("L" records) not acknowledged since (by an "A" record of the same node)."""
    out: list[Record] = []
    for rec in read(gitdir, nid):
        if rec.kind == "L":
            out.append(rec)
        elif rec.kind == "A":
            out = [r for r in out if r.nid != rec.nid]
    return out


def acknowledge(gitdir: str, nids: Sequence[str]) -> None:
    append(gitdir, [Record("A", n, None, None, int(time.time())) for n in sorted(set(nids))])
