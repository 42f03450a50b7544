"""A run's log file, capped while it is written: the head as it comes, the tail at the end.

A job can print without bound (a loop, a 50 MB test dump); the log is published to every peer
that syncs, so it has a size cap, and the node's disk should not hold more than that either.
The command's stdout and stderr go into a pipe (``fileno()`` is its write end, so it is given
to ``subprocess.Popen`` like a file); a thread writes the first half of the cap to the file at
once — what ``git jobs logs --follow`` streams — and keeps only the last half in memory. When
the log is closed the tail follows, after a line saying how much was left out.

Redaction comes first (``jobs.logs.redact``): every line is redacted as it arrives, before the
cap decides what is kept, so a cut can never leave two halves of a secret that no pattern
matches. Patterns see one line at a time (a line longer than :data:`MAX_LINE` is redacted in
pieces of that size, each cut :data:`OVERLAP` bytes before the end of what came, so a secret
of up to that many bytes is never cut in two); :func:`jobs.logs.publish` redacts the whole
log again.
"""

from __future__ import annotations

import os
import re
import select
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from ..logs import cap_marker, redact

CHUNK = 65536
MAX_LINE = 65536  # bytes a redaction pattern sees at once when a line has no end
OVERLAP = MAX_LINE // 2  # of such a line, kept back for the next look (a secret up to this long)
DRAIN_GRACE = 5.0  # seconds to wait for a process that escaped its group to close the pipe


class CappedLog:
    """An append-only log file holding at most ``max_bytes`` of output plus one marker line."""

    def __init__(self, path: Path, max_bytes: int, patterns: Sequence[re.Pattern[bytes]] = ()) -> None:
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - closed by close()
        self._patterns = tuple(patterns)
        self._line = bytearray()  # a line not ended yet: redacted once it ends
        self._head_cap = max_bytes // 2
        self._tail_cap = max_bytes - self._head_cap
        self._head = 0
        self._total = 0
        self._tail = bytearray()
        self._stop = threading.Event()
        self._read_fd, self._write_fd = os.pipe()
        self._pump = threading.Thread(target=self._run, name="log-capture", daemon=True)
        self._pump.start()
        self.exit_status: int | None = None  # the command's, set by whoever ran it
        self.closed = False

    def fileno(self) -> int:
        """The pipe's write end: what a child process writes its output to."""
        return self._write_fd

    def write(self, data: bytes) -> int:
        """Append the node's own lines through the same pipe, so they stay in order."""
        view = memoryview(data)
        while view:
            view = view[os.write(self._write_fd, view) :]
        return len(data)

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._read_fd], [], [], 0.1)
            if not ready:
                continue
            chunk = os.read(self._read_fd, CHUNK)
            if not chunk:
                return
            self._redacted(chunk)

    def _redacted(self, chunk: bytes) -> None:
        """Redact whole lines (or :data:`MAX_LINE` pieces) before the cap sees them."""
        if not self._patterns:
            self._take(chunk)
            return
        self._line += chunk
        end = self._line.rfind(b"\n") + 1
        if end == 0 and len(self._line) >= MAX_LINE:
            end = self._cut(bytes(self._line))
        if end:
            ready = bytes(self._line[:end])
            del self._line[:end]
            self._take(redact(ready, self._patterns))

    def _cut(self, line: bytes) -> int:
        """Where to cut a line without an end: :data:`OVERLAP` bytes before its end (a secret
        whose start has come and whose end has not stays whole for the next look), moved past
        any match that spans it (a match is redacted whole, never in two pieces)."""
        cut, moved = len(line) - OVERLAP, True
        while moved:
            moved = False
            for pattern in self._patterns:
                for m in pattern.finditer(line):
                    if m.start() < cut < m.end():
                        cut, moved = m.end(), True
        return cut

    def _take(self, chunk: bytes) -> None:
        self._total += len(chunk)
        room = self._head_cap - self._head
        if room > 0:
            self._file.write(chunk[:room])
            self._head += min(room, len(chunk))
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            if len(self._tail) > self._tail_cap:
                del self._tail[: len(self._tail) - self._tail_cap]

    def close(self) -> None:
        """Drain the pipe, then write the marker (when output was left out) and the tail."""
        if self.closed:
            return
        self.closed = True
        os.close(self._write_fd)
        self._pump.join(DRAIN_GRACE)
        self._stop.set()  # a process outside the job's group still holds the pipe: stop
        self._pump.join()
        os.close(self._read_fd)
        if self._line:  # the last line, without its end
            self._take(redact(bytes(self._line), self._patterns))
            self._line.clear()
        omitted = self._total - self._head - len(self._tail)
        if omitted > 0:
            self._file.write(cap_marker(self._total, self._head, len(self._tail)))
        self._file.write(bytes(self._tail))
        self._file.close()

    def __enter__(self) -> CappedLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
