"""The one place the web page reads a run's log.

Today a log is readable here only when this node ran the run: the node keeps it at
``<gitdir>/git-jobs/logs/<run id>.log`` (:func:`jobs.node.logs.log_path`). The file is found by
the run id alone, never by the recorded log URL: a peer's ``file:///etc/shadow`` URL must not
make the page read that file. Git-synced logs (another node's runs) plug in here and only
here: :func:`read_log` is what every view and the static export call.

A log is capped (:data:`MAX_LOG_BYTES`, the end kept: the failure is at the end) so one
huge log cannot exhaust the server or the browser.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

from ..node.logs import log_path
from ..store import Jobs

MAX_LOG_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LogText:
    """A log's text (at most :data:`MAX_LOG_BYTES`, the tail), where it came from, its size."""

    text: str
    size: int
    truncated: bool
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "truncated": self.truncated, "source": self.source}


def local_log_file(store: Jobs, run: dict[str, Any]) -> str | None:
    """The path of this node's own log of ``run`` (a run JSON object), or None."""
    me = store.signer.nid if store.signer else None
    if me is None or run.get("node") != me:
        return None
    try:
        run_id = uuid.UUID(str(run.get("id")))
    except ValueError:
        return None
    path = str(log_path(store.repo, run_id))
    return path if os.path.isfile(path) else None


def read_log(store: Jobs, run: dict[str, Any]) -> LogText | None:
    """The log of ``run`` (the run JSON shape of docs/CLI.md), or None when none is readable
    here (the page then shows the run's log URL)."""
    path = local_log_file(store, run)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_LOG_BYTES:
                f.seek(size - MAX_LOG_BYTES)
            data = f.read(MAX_LOG_BYTES)
    except OSError:
        return None
    return LogText(data.decode("utf-8", errors="replace"), size, size > MAX_LOG_BYTES, "local")


def log_stamp(store: Jobs, run_id: str) -> tuple[str, int]:
    """(token, mtime ns) that changes whenever :func:`read_log` of ``run_id`` may return more
    (a log still being written); the live page re-renders when it does. Synced logs arrive
    with ref moves, which the page's ETag already covers."""
    try:
        st = os.stat(log_path(store.repo, uuid.UUID(run_id)))
    except (OSError, ValueError):
        return "-", 0
    return f"{st.st_size}.{st.st_mtime_ns}", st.st_mtime_ns
