"""Run one job's command with its limits, and leave nothing of it behind when it ends.

The node starts every job (and trigger) as ``python -I -S reaper.py [--nproc N] [--fsize N]
[--grace S] -- ARGV...`` (see :meth:`.isolation.Isolation.command`). This script, stdlib only
and run as a file so that it imports nothing of git-jobs (and little of the stdlib: it starts
for every job):

1. makes itself a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``): whatever the job
   starts and abandons — a ``setsid`` daemon, a double fork — is re-parented to it rather than
   to the machine's init, so it stays findable;
2. forks the command with the resource limits applied (``RLIMIT_NPROC``: processes of this
   user; ``RLIMIT_FSIZE``: bytes per file written; 0 = no limit) and waits for it;
3. when the command ends, or this process gets SIGTERM/SIGINT/SIGHUP (the node stops the
   run), gives every descendant still alive SIGTERM and ``--grace`` seconds, then kills it —
   with or without a sandbox — and exits as the command did (same status, or same signal).
"""

from __future__ import annotations

import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
ROUNDS = 200  # kill passes at most (a fork bomb racing us cannot hold the reaper for ever)


class _Stop(Exception):
    pass


def proc_stats() -> list[tuple[int, list[bytes]]] | None:
    """(pid, the fields of ``/proc/PID/stat`` after the command name: state, ppid, pgrp, …) of
    every process; None without ``/proc``."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    out = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                out.append((int(entry), fh.read().rsplit(b")", 1)[1].split()))
        except (OSError, IndexError):
            continue
    return out


def _stop(signum: int, frame: object) -> None:
    raise _Stop


def _subreaper() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except Exception:  # not Linux, no libc: best effort (the node kills the group too)
        return


def _limit(resource_name: str, value: int) -> None:
    import resource

    if value <= 0:
        return
    which = getattr(resource, resource_name)
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def descendants(root: int) -> list[int]:
    """Every live process whose parent chain leads to ``root`` (from ``/proc``)."""
    children: dict[int, list[int]] = {}
    stats = proc_stats()
    if stats is None:
        return []
    for pid, fields in stats:
        if len(fields) > 1 and fields[0] not in (b"Z", b"X"):
            children.setdefault(int(fields[1]), []).append(pid)
    out, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            out.append(pid)
            todo.append(pid)
    return out


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        return


def kill_all(me: int) -> None:
    """SIGKILL every descendant of ``me`` until none is left (or ROUNDS passes)."""
    for _ in range(ROUNDS):
        left = descendants(me)
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
        time.sleep(0.01)
        _reap()


STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _parse(argv: list[str]) -> tuple[int, int, float, list[str]]:
    """``(nproc, fsize, grace, command)`` from ``[--nproc N] [--fsize N] [--grace S] -- COMMAND...``."""
    limits = {"--nproc": 0.0, "--fsize": 0.0, "--grace": 0.0}
    while len(argv) > 1 and argv[0] in limits:
        limits[argv[0]], argv = float(argv[1]), argv[2:]
    command = argv[1:] if argv[:1] == ["--"] else []
    return int(limits["--nproc"]), int(limits["--fsize"]), limits["--grace"], command


def _child(nproc: int, fsize: int, command: list[str]) -> None:
    """In the forked child: default signals, the limits, then the command (never returns)."""
    try:
        # as subprocess does (restore_signals): Python ignores SIGPIPE and SIGXFSZ, and an
        # ignored signal stays ignored across exec
        for sig in (*STOPS, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        _limit("RLIMIT_NPROC", nproc)
        _limit("RLIMIT_FSIZE", fsize)
        os.execvp(command[0], command)
    except BaseException as e:  # cannot start: say so, as a shell would
        try:
            os.write(2, f"cannot start {command[0]}: {e}\n".encode())
        except OSError:
            os._exit(127)
    os._exit(127)


def _wait(pid: int) -> int | None:
    """The child's wait status; None when this process was told to stop first."""
    try:
        while True:
            done, status = os.waitpid(pid, 0)
            if done == pid:
                return status
    except _Stop:
        return None


def terminate(me: int, grace: float) -> None:
    """SIGTERM every descendant of ``me`` (the job's group may have had it already; those that
    left the group had not), and wait up to ``grace`` seconds for them to end."""
    deadline = time.monotonic() + grace
    left = descendants(me)
    for other in left:
        try:
            os.kill(other, signal.SIGTERM)
        except OSError:
            continue
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        _reap()
        left = descendants(me)


def main(argv: list[str]) -> int:
    nproc, fsize, grace, command = _parse(argv)
    if not command:
        print("reaper: usage: reaper.py [--nproc N] [--fsize N] [--grace S] -- COMMAND...", file=sys.stderr)
        return 2
    _subreaper()
    me = os.getpid()
    for sig in STOPS:
        signal.signal(sig, _stop)
    pid = os.fork()
    if pid == 0:
        _child(nproc, fsize, command)
    try:
        status = _wait(pid)
    finally:
        for sig in STOPS:
            signal.signal(sig, signal.SIG_IGN)
        terminate(me, grace)
        kill_all(me)
    if status is None:
        return 128 + signal.SIGTERM
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(me, signum)
        return 128 + signum
    return os.WEXITSTATUS(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
