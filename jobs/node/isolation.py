"""How a job's command runs: cut off from the node that runs it.

A job's command comes from the commit under test, so it is untrusted code. Whatever it does,
it must not be able to act *as the node*: read the node's key, write the node's git directory
(hooks, config, refs — and through them forge this node's results), or read the node's HOME.
The rules, whichever isolation the node chose:

- the job runs in a :mod:`.checkout` of its own (a fresh repository, not a linked worktree);
- it gets a scratch ``HOME`` and ``TMPDIR`` inside its scratch directory, deleted afterwards;
- its environment is an allowlist (:data:`PASS_ENV` plus the node's ``jobs.passEnv``), so no
  ``GIT_JOBS_KEY``, ``SSH_AUTH_SOCK``, ``GIT_DIR`` or cloud credential leaks through.

With ``bwrap`` (the default) it also runs in a sandbox: new user, pid, ipc, uts and mount
namespaces with every capability dropped; the system directories (:data:`SYSTEM_DIRS`)
read-only; only its scratch directory writable; the node's git directory, working tree, HOME
and key not mounted at all (and masked should they lie under a mounted path); ``/tmp`` an
empty tmpfs of at most ``jobs.tmpSize``; the kernel keyrings (:data:`PROC_SECRETS`) masked.
The network is shared unless ``jobs.network = false`` — and never for work only a requester
asked for (``jobs.requestNetwork``, default false).

Either way the command runs under :mod:`.reaper`, which applies the node's process and file-size
limits (``jobs.maxProcesses``, ``jobs.maxFileSize``) and kills whatever the job left running when
it ends. No sandbox is a person's choice: where bubblewrap is missing or cannot sandbox, the node
runs nothing until ``jobs.isolation = none`` is set (or ``--isolation none`` given).

The choice is the node's (git config or a command-line flag), never the commit's: nothing in
``.git-jobs.toml`` can weaken it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pygit2

from ..errors import JobsError

MODES = ("bwrap", "none")
# Read-only in the sandbox, where they exist: what programs need to run.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/nix")
# Secrets commonly found under those: masked even though their parent is mounted.
SYSTEM_SECRETS = (
    "/etc/ssh",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssl/private",
    "/etc/krb5.keytab",
)
# The kernel keyrings the node's user can see: masked in the sandbox's own /proc.
PROC_SECRETS = ("/proc/keys", "/proc/key-users")
# Resource limits of a job (each a git config of the node; 0 = no limit).
MAX_PROCESSES = 4096  # RLIMIT_NPROC (processes of the node's user; root is exempt)
MAX_FILE_SIZE = 4 * 2**30  # RLIMIT_FSIZE: bytes per file a job writes
TMP_SIZE = 512 * 2**20  # the sandbox's /tmp (a tmpfs in memory; /var/tmp is the same)
REAPER = str(Path(__file__).with_name("reaper.py"))
# The environment a job inherits from the node; everything else is dropped.
PASS_ENV = (
    "PATH",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TERM",
    "USER",
    "LOGNAME",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
)
PROBE_TIMEOUT = 30.0


class IsolationError(JobsError):
    """The node's isolation setting cannot be honoured here (the node runs no job then)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one job may use (0: no limit): processes, bytes per file, bytes of ``/tmp``."""

    processes: int = MAX_PROCESSES
    file_size: int = MAX_FILE_SIZE
    tmp_size: int = TMP_SIZE


@functools.cache
def _bwrap_sizes_tmpfs(bwrap: str) -> bool:
    """Does this bubblewrap know ``--size`` (0.7 and later)?"""
    try:
        done = subprocess.run(
            [bwrap, "--help"], capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--size" in done.stdout + done.stderr


@dataclass(frozen=True, slots=True)
class Scratch:
    """One job's private directory: ``src`` (the checkout), ``home`` and ``tmp``."""

    root: Path

    @property
    def src(self) -> Path:
        return self.root / "src"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def make(self) -> None:
        for d in (self.home, self.tmp):
            d.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True, slots=True)
class Isolation:
    """The node's isolation settings and what it hides (see the module docstring)."""

    mode: str = "none"
    network: bool = True
    paths: tuple[str, ...] = ()  # extra read-only paths visible in the sandbox
    hidden: tuple[str, ...] = ()  # the node's git dir, work tree, HOME, key: never visible
    pass_env: tuple[str, ...] = ()
    bwrap: str = "bwrap"
    limits: Limits = field(default_factory=Limits)
    request_network: bool = False  # network for work only a requester asked for (under bwrap)
    refusal: str = ""  # why no job may run here (no sandbox, and none was chosen by a person)
    _checked: list[bool] = field(default_factory=list, compare=False, repr=False)

    # -- the job's environment -----------------------------------------------------------
    def environment(self, scratch: Scratch, extra: Mapping[str, str]) -> dict[str, str]:
        """The allowlisted environment of the node, a scratch HOME/TMPDIR, and ``extra``."""
        wanted = set(PASS_ENV) | set(self.pass_env)
        env = {k: v for k, v in os.environ.items() if k in wanted or k.startswith("LC_")}
        env.pop("GIT_JOBS_KEY", None)  # even if a node lists it: the key never reaches a job
        env.update(HOME=str(scratch.home), TMPDIR=str(scratch.tmp))
        env.update(extra)
        return env

    # -- the command ---------------------------------------------------------------------
    def network_for(self, requested: bool) -> bool:
        """Whether a job gets the network: never for work only a requester asked for (a branch
        nobody here follows), unless ``jobs.requestNetwork``; never with ``jobs.network = false``.
        Without a sandbox nothing can cut it: always True."""
        if self.mode != "bwrap":
            return True
        return self.network and (self.request_network or not requested)

    def command(
        self,
        argv: list[str],
        scratch: Scratch,
        cwd: Path,
        *,
        network: bool | None = None,
        grace: float = 0.0,
    ) -> list[str]:
        """``argv`` wrapped for this isolation, under the :mod:`.reaper` (limits, no leftovers).

        ``network``: this run's network (default: the node's ``jobs.network``); ``grace``: the
        seconds a stopped job's processes get between SIGTERM and SIGKILL."""
        self.check()
        limits = self.limits
        reaper = [
            sys.executable,
            "-I",
            "-S",
            REAPER,
            "--nproc",
            str(limits.processes),
            "--fsize",
            str(limits.file_size),
            "--grace",
            f"{max(0.0, grace):.3f}",
            "--",
        ]
        if self.mode == "none":
            return [*reaper, *argv]
        net = self.network if network is None else network
        return [*reaper, self.bwrap, *self._bwrap_args(scratch, cwd, net), "--", *argv]

    @property
    def tmp_limit(self) -> int | None:
        """The bytes the sandbox's ``/tmp`` may hold; None: unbounded (no limit set, no
        sandbox, or a bubblewrap older than 0.7, which cannot size a tmpfs)."""
        if self.mode != "bwrap" or self.limits.tmp_size <= 0 or not _bwrap_sizes_tmpfs(self.bwrap):
            return None
        return self.limits.tmp_size

    def _bwrap_args(self, scratch: Scratch, cwd: Path, network: bool | None = None) -> list[str]:
        # --new-session: no controlling terminal, so a job or trigger cannot push keystrokes
        # into the operator's shell (TIOCSTI)
        args = ["--unshare-all", "--unshare-user", "--cap-drop", "ALL", "--die-with-parent", "--new-session"]
        if self.network if network is None else network:
            args.append("--share-net")
        mounted: list[str] = []
        # the system first, then the private /tmp, then the node's extra paths (which may lie
        # under /tmp: mounted after it, they are not hidden by it)
        for path in SYSTEM_DIRS:
            if os.path.islink(path) and os.path.dirname(path) == "/":
                args += ["--symlink", os.readlink(path), path]
            elif os.path.exists(path):
                args += ["--ro-bind", path, path]
                mounted.append(os.path.realpath(path))
        args += ["--proc", "/proc", "--dev", "/dev"]
        for secret in PROC_SECRETS:
            if os.path.exists(secret):
                args += ["--ro-bind", "/dev/null", secret]
        if self.tmp_limit is not None:
            args += ["--size", str(self.tmp_limit)]
        args += ["--tmpfs", "/tmp", "--symlink", "/tmp", "/var/tmp"]
        for path in self.paths:
            if os.path.exists(path):
                real = os.path.realpath(path)
                args += ["--ro-bind", real, real]
                mounted.append(real)
        for secret in (*SYSTEM_SECRETS, *self.hidden):
            real = os.path.realpath(secret)
            if os.path.exists(real) and any(_under(real, m) for m in mounted):
                args += ["--tmpfs", real] if os.path.isdir(real) else ["--ro-bind", "/dev/null", real]
        root = str(scratch.root.resolve())
        args += ["--bind", root, root, "--chdir", str(cwd.resolve())]
        return args

    # -- can it be honoured? -------------------------------------------------------------
    def check(self) -> None:
        """Raise :class:`IsolationError` when no job may run here: no sandbox and none chosen by
        a person, or bwrap cannot make a sandbox here (cached)."""
        if self.refusal:
            raise IsolationError(self.refusal)
        if self.mode != "bwrap" or self._checked:
            return
        probe = Path(os.path.realpath(os.environ.get("TMPDIR") or "/tmp"))
        args = [self.bwrap, *self._bwrap_args(Scratch(probe), probe), "--", "true"]
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise IsolationError(f"cannot start bubblewrap ({self.bwrap}): {e}") from None
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise IsolationError(
                f"bubblewrap cannot make a sandbox here: {why} "
                "(allow unprivileged user namespaces, or set `git config jobs.isolation none`)"
            )
        self._checked.append(True)

    def describe(self) -> str:
        if self.refusal:
            return "refused (no sandbox; jobs.isolation = none not set)"
        if self.mode == "none":
            return "none (own checkout, scratch HOME, scrubbed environment; NO sandbox, set by a person)"
        requested = "on" if self.network and self.request_network else "off"
        tmp = f"{self.tmp_limit // 2**20} MiB" if self.tmp_limit else "unbounded"
        network = "on" if self.network else "off"
        return f"bwrap (network {network}, for requested work {requested}, /tmp {tmp})"

    def to_json(self) -> dict[str, object]:
        """What ``node.json`` says about it."""
        return {
            "mode": self.mode,
            "sandbox": self.mode == "bwrap" and not self.refusal,
            "refused": self.refusal or None,
            "network": self.network,
            "request_network": self.request_network and self.network,
            "max_processes": self.limits.processes,
            "max_file_size": self.limits.file_size,
            "tmp_size": self.tmp_limit if self.mode == "bwrap" and not self.refusal else None,
        }


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _config(repo: pygit2.Repository, name: str) -> str | None:
    try:
        value = repo.config[name]
    except (KeyError, pygit2.GitError):
        return None
    return str(value)


def _multi(repo: pygit2.Repository, name: str) -> list[str]:
    try:
        return [str(v) for v in repo.config.get_multivar(name)]
    except (KeyError, pygit2.GitError):
        return []


def _bool(repo: pygit2.Repository, name: str, default: bool) -> bool:
    try:
        return bool(repo.config.get_bool(name))
    except KeyError:
        return default
    except (pygit2.GitError, ValueError):
        raise IsolationError(f"git config {name}: not a boolean") from None


def node_paths(repo: pygit2.Repository, key: Path | None) -> list[str]:
    """What a job must never see: the git dir, work tree, HOME and key of the node."""
    out = [repo.path.rstrip("/")]
    if repo.workdir:
        out.append(repo.workdir.rstrip("/"))
    home = os.environ.get("HOME") or str(Path.home())
    out.append(home)
    if key is not None:
        out.append(str(key))
        # its directory too (backups, the .pub, other keys) unless that is a system directory
        if str(key.parent) not in ("/", *SYSTEM_DIRS):
            out.append(str(key.parent))
    return out


def _refuse_node_paths(repo: pygit2.Repository, key: Path | None, paths: list[str]) -> None:
    """A ``jobs.sandboxPath`` may not expose the git dir, work tree or key (a tool under HOME may)."""
    home = os.path.realpath(os.environ.get("HOME") or str(Path.home()))
    private = [os.path.realpath(p) for p in node_paths(repo, key) if os.path.realpath(p) != home]
    for path in paths:
        real = os.path.realpath(path)
        # a path *holding* the node's repository is fine: the repository is masked inside it
        if not os.path.isabs(path) or any(_under(real, p) for p in private):
            raise IsolationError(
                f"jobs.sandboxPath {path!r}: must be an absolute path outside the node's repository "
                "and key directory"
            )


def _size(repo: pygit2.Repository, name: str, default: int) -> int:
    """A byte count or count of ``git config NAME`` (``k``/``m``/``g`` suffixes; 0 = no limit)."""
    raw = _config(repo, name)
    if raw is None:
        return default
    text = raw.strip().lower()
    scale = {"k": 2**10, "m": 2**20, "g": 2**30}.get(text[-1:], 1)
    digits = text[:-1] if scale > 1 else text
    if not digits.isdigit() or len(digits) > 15:
        raise IsolationError(f"git config {name}: {raw[:40]!r} is not a count (e.g. 512m, 4g, 0 = no limit)")
    return int(digits) * scale


def load_limits(repo: pygit2.Repository) -> Limits:
    """The node's limits on a job (``jobs.maxProcesses``, ``jobs.maxFileSize``, ``jobs.tmpSize``)."""
    return Limits(
        processes=_size(repo, "jobs.maxProcesses", MAX_PROCESSES),
        file_size=_size(repo, "jobs.maxFileSize", MAX_FILE_SIZE),
        tmp_size=_size(repo, "jobs.tmpSize", TMP_SIZE),
    )


NO_SANDBOX = (
    "no job sandbox: bubblewrap is not installed, so this node runs no job "
    "(apt-get install bubblewrap, or let jobs run unsandboxed as this user: "
    "`git config jobs.isolation none` or --isolation none)"
)


def load_isolation(
    repo: pygit2.Repository,
    mode: str | None = None,
    key: Path | None = None,
    extra_hidden: Iterable[str] = (),
) -> Isolation:
    """The node's isolation from ``mode`` (a flag) or ``git config jobs.isolation``.

    Default: ``bwrap``. Where bubblewrap is missing and no person chose ``none``, the isolation
    *refuses* (:meth:`Isolation.check` raises, so nothing runs); asking for ``bwrap`` where it
    is missing, or for no network without a sandbox to enforce it, is an error.
    """
    chosen = mode or _config(repo, "jobs.isolation")
    found = shutil.which("bwrap")
    if chosen is not None and chosen not in MODES:
        raise IsolationError(f"jobs.isolation: {chosen!r} is not one of {', '.join(MODES)}")
    network = _bool(repo, "jobs.network", True)
    if chosen == "bwrap" and not found:
        raise IsolationError(
            "jobs.isolation is bwrap but bubblewrap is not installed (apt-get install bubblewrap)"
        )
    if chosen == "none" and not network:
        raise IsolationError("jobs.network = false needs jobs.isolation = bwrap to be enforced")
    paths = _multi(repo, "jobs.sandboxPath")
    _refuse_node_paths(repo, key, paths)
    return Isolation(
        mode=chosen or "bwrap",
        network=network,
        paths=tuple(paths),
        hidden=tuple([*node_paths(repo, key), *_multi(repo, "jobs.sandboxHide"), *extra_hidden]),
        pass_env=tuple(_multi(repo, "jobs.passEnv")),
        bwrap=found or "bwrap",
        limits=load_limits(repo),
        request_network=_bool(repo, "jobs.requestNetwork", False),
        refusal=NO_SANDBOX if chosen is None and not found else "",
    )
