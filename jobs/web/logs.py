"""The one place the web page reads a run's log.

This node's own runs are read from the file the node wrote
(``<gitdir>/git-jobs/logs/<run id>.log``, :func:`jobs.logs.log_path`), which also holds a
run still being written; every other node's from Git, through :func:`jobs.logs.read`, which
shows a log only when its bytes hash to the blob id that node's signed finish names (the same
rule as ``git jobs logs``). The file is found by the run id alone, never by the recorded log
URL: a peer's ``file:///etc/shadow`` URL must not make the page read that file.

A log is capped (:data:`MAX_LOG_BYTES`, the end kept: the failure is at the end) so one
huge log cannot exhaust the server or the browser.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

from .. import logs
from ..model import Run
from ..store import Jobs

MAX_LOG_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LogText:
    """A log's text (at most :data:`MAX_LOG_BYTES`, the tail) or why there is none.

    ``status`` is ``shown`` or a :class:`jobs.logs.LogStatus` value (``running``,
    ``not-published``, ``missing``, ``pruned``, ``refused``); ``source`` is ``local`` (this
    node's file) or ``git`` (a published log, verified)."""

    status: str
    text: str | None = None
    size: int = 0
    truncated: bool = False
    source: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "text": self.text,
            "size": self.size,
            "truncated": self.truncated,
            "source": self.source,
            "detail": self.detail,
        }


def _tail(data: bytes, size: int, source: str) -> LogText:
    kept = data[-MAX_LOG_BYTES:]
    return LogText("shown", kept.decode("utf-8", errors="replace"), size, size > len(kept), source)


def _local(store: Jobs, nid: str, run_id: uuid.UUID) -> LogText | None:
    me = store.signer.nid if store.signer else None
    if me is None or nid != me:
        return None
    try:
        with open(logs.log_path(store.repo, run_id), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - MAX_LOG_BYTES))
            return _tail(f.read(MAX_LOG_BYTES), size, "local")
    except OSError:
        return None


def read_log(store: Jobs, nid: str, run_id: uuid.UUID, run: Run, *, local_ok: bool = True) -> LogText:
    """The log of ``nid``'s run ``run_id``: this node's file, else the verified Git copy.

    ``local_ok=False`` (a static report, which is published) never reads this node's own file:
    only the copy the node publishes, redacted as the node is configured to, or nothing when it
    does not publish logs."""
    local = _local(store, nid, run_id) if local_ok else None
    if local is not None:
        return local
    got = logs.read(store.repo, nid, run_id, run)
    if got.status is logs.LogStatus.SHOWN and got.data is not None:
        return _tail(got.data, len(got.data), "git")
    return LogText(got.status.value, detail=got.detail)


def log_stamp(store: Jobs, run_id: str) -> tuple[str, int]:
    """(token, mtime ns) that changes whenever :func:`read_log` of ``run_id`` may return more
    (this node's log still being written); the live page re-renders when it does. Published
    logs arrive with the finish, a ref move, which the page's ETag already covers."""
    try:
        st = os.stat(logs.log_path(store.repo, uuid.UUID(run_id)))
    except (OSError, ValueError):
        return "-", 0
    return f"{st.st_size}.{st.st_mtime_ns}", st.st_mtime_ns
