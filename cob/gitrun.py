"""Running the git CLI: bounded in time, never prompting, its failures one clear line.

Every git subprocess runs with ``GIT_TERMINAL_PROMPT=0``, no stdin, in its own session (so ssh
has no terminal to prompt on) and with a timeout that kills its whole process group: a sync
never hangs on a prompt. Transfers also stop after :data:`DEFAULT_IDLE` seconds without any
output (data or progress): a remote that accepts the connection and then says nothing.
:func:`first_error` picks the line of git's stderr worth showing a person.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from . import durable
from .errors import TransportError

__all__ = ["DEFAULT_IDLE", "DEFAULT_TIMEOUT", "deadline", "describe", "first_error", "git_env", "run_git"]

DEFAULT_TIMEOUT = 600.0  # seconds, per git subprocess
# A transfer that prints nothing (no data, no progress line) for this long is stopped: a remote
# that accepts the connection and never answers must not hold a sync for DEFAULT_TIMEOUT.
DEFAULT_IDLE = 30.0


def git_env(*, untrusted_content: bool = False) -> dict[str, str]:
    """The one environment every git subprocess of ours runs with: no prompts, parseable
    messages, no ``GIT_DIR``-style variables inherited from a caller.

    ``untrusted_content``: git works on content nobody vetted (a job's checkout of a commit
    under test), so no ``GIT_*`` variable at all and no system or global config — the commit's
    ``.gitattributes`` can name filter drivers and a ``core.hooksPath`` could run a hook, none
    of which may run outside the job's sandbox.
    """
    if untrusted_content:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    else:
        env = dict(os.environ)
        for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_NAMESPACE", "GIT_INDEX_FILE"):
            env.pop(name, None)
        if durable.fsync_enabled() is not False:  # objects and refs git writes for us hit the disk
            count = env.get("GIT_CONFIG_COUNT", "0")
            n = int(count) if count.isdigit() else 0
            env.update(
                {
                    "GIT_CONFIG_COUNT": str(n + 1),
                    f"GIT_CONFIG_KEY_{n}": "core.fsync",
                    f"GIT_CONFIG_VALUE_{n}": "committed",
                }
            )
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GCM_INTERACTIVE"] = "never"
    env["LC_ALL"] = "C"
    env["LANGUAGE"] = "C"
    return env


def first_error(stderr: str) -> str:
    """The most telling line of git's stderr, as one line.

    That is its first ``fatal:`` (else ``error:``) line, joined with a continuation line when it
    ends in a colon (``unable to connect to HOST:`` / ``errno=…``) and preceded by the line a
    transport printed before it (ssh's ``connect to host … refused``).
    """
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for prefix in ("fatal:", "error:"):
        for i, ln in enumerate(lines):
            if not ln.startswith(prefix):
                continue
            text = ln[len(prefix) :].strip()
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if text.endswith(":") and nxt and not nxt.startswith(("fatal:", "error:", "hint:")):
                text = f"{text} {nxt}"
            before = [b for b in lines[:i] if not b.startswith(("hint:", "warning:", "remote:"))]
            if before:
                text = f"{before[-1]} ({text})"
            return text
    return lines[-1] if lines else "git exited with an error"


# A quiet fetch of named refspecs only: no tags, no FETCH_HEAD, no submodules (callers add the
# remote and their refspecs).
QUIET_FETCH = ("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules")


def run_git(
    gitdir: str,
    args: Sequence[str],
    *,
    stdin: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    idle: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run git on ``gitdir``; on timeout kill its whole process group (ssh, remote helpers).

    ``idle``: also stop it when it has written nothing on stdout or stderr for that many
    seconds (pass ``--progress`` to commands that are otherwise silent while transferring).
    """
    cmd = ["git", "--git-dir", gitdir, *args]
    verb = _verb(args)
    timeout = _capped(timeout, verb)
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=git_env(),
            start_new_session=True,
        )
    except OSError as e:
        raise TransportError(f"cannot run git: {e}") from None
    try:
        out, err, why = _communicate(proc, stdin, timeout, idle)
    except BaseException:
        _kill_group(proc)
        raise
    if why is not None:
        _kill_group(proc)
        raise TransportError(f"git {verb} {why}")
    text_out = out.decode("utf-8", "replace")
    text_err = err.decode("utf-8", "replace")
    return subprocess.CompletedProcess(cmd, proc.returncode, text_out, text_err)


_local = threading.local()


def _verb(args: Sequence[str]) -> str:
    """The git command of ``args``, past leading ``-c NAME=VALUE`` options (a message saying
    "git -c made no progress" names nothing)."""
    i = 0
    while i + 1 < len(args) and args[i] == "-c":
        i += 2
    return args[i] if i < len(args) else "git"


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every git call of this thread inside the block shares ``seconds`` in all: how the
    node's final sync keeps its limit however many git calls a sync makes."""
    previous = getattr(_local, "deadline", None)
    _local.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _local.deadline = previous


def _capped(timeout: float | None, command: str) -> float | None:
    end: float | None = getattr(_local, "deadline", None)
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise TransportError(f"git {command} not started: the time allowed is used up")
    return left if timeout is None else min(timeout, left)


def _communicate(
    proc: subprocess.Popen[bytes], stdin: str | None, timeout: float | None, idle: float | None
) -> tuple[bytes, bytes, str | None]:
    """(stdout, stderr, None) once ``proc`` exits, or (…, why) when it ran out of time."""
    if stdin is not None:
        assert proc.stdin is not None
        writer = threading.Thread(target=_feed, args=(proc.stdin, stdin.encode()), daemon=True)
        writer.start()
    assert proc.stdout is not None and proc.stderr is not None
    chunks: dict[int, list[bytes]] = {proc.stdout.fileno(): [], proc.stderr.fileno(): []}
    start = last = time.monotonic()
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        while sel.get_map():
            now = time.monotonic()
            if timeout is not None and now - start >= timeout:
                return b"", b"", f"timed out after {timeout:g} s"
            if idle is not None and now - last >= idle:
                why = f"made no progress for {idle:g} s"
                return b"", b"", why + " (the remote does not answer, or git is still packing)"
            for key, _ in sel.select(0.5):
                data = os.read(key.fd, 65536)
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                chunks[key.fd].append(data)
                last = time.monotonic()
    left = None if timeout is None else max(0.1, timeout - (time.monotonic() - start))
    try:
        proc.wait(left)
    except subprocess.TimeoutExpired:
        return b"", b"", f"timed out after {timeout:g} s"
    return b"".join(chunks[proc.stdout.fileno()]), b"".join(chunks[proc.stderr.fileno()]), None


def _feed(pipe: Any, data: bytes) -> None:
    with contextlib.suppress(OSError):
        pipe.write(data)
        pipe.close()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def describe(remote: str) -> str:
    """A remote for messages, without any password in a URL."""
    return re.sub(r"://[^/@]*@", "://", remote)
