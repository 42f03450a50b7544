"""A job's process group, to its end: wait with a deadline and a cancel, then stop what is left.

A job runs in a session of its own (its process group): when its command ends, or is
cancelled, or times out, the whole group gets SIGTERM and, after a grace, SIGKILL — as CI
services do — so nothing it left behind writes to the log after its closing line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from typing import Any

from ..model import Reason
from ..spec.durations import format_duration
from .reaper import proc_stats

KILL_GRACE = 2.0


def group_alive(pgid: int) -> bool:
    """Is any process of group ``pgid`` still running (not merely a zombie)?

    A sandboxed job leaves bwrap's inner process as a zombie once it ends; its new parent (the
    machine's init) may take seconds to reap it, and ``killpg(pgid, 0)`` counts zombies, so
    waiting on that alone cost every sandboxed run up to the whole kill grace.
    """
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    stats = proc_stats()
    if stats is None:
        return True  # no /proc: only the signal can tell
    return any(len(f) > 2 and int(f[2]) == pgid and f[0] not in (b"Z", b"X") for _, f in stats)


def wait(
    proc: subprocess.Popen[bytes], timeout: float | None, cancel: threading.Event, grace: float
) -> int | tuple[Reason, str]:
    """The command's exit code; or, when it was stopped (cancelled, timed out), why."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            return proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            pass
        if cancel.is_set():
            kill(proc, grace)
            return Reason.CANCELLED, "interrupted (SIGTERM or Ctrl-C)"
        if timeout is not None and deadline is not None and time.monotonic() >= deadline:
            kill(proc, grace)
            return Reason.TIMED_OUT, f"timed out after {format_duration(timeout)}"


def kill_group(pgid: int, grace: float) -> None:
    """SIGTERM what is left of a finished job's process group, SIGKILL after the grace."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return  # nothing left
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def kill(proc: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM the job's process group, then SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # The leader may be gone while children linger in the group: make sure.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
