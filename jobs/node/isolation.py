"""How a job's command runs: cut off from the node that runs it.

A job's command comes from the commit under test, so it is untrusted code. Whatever it does,
it must not be able to act *as the node*: read the node's key, write the node's git directory
(hooks, config, refs — and through them forge this node's results), or read the node's HOME.
The rules, whichever isolation the node chose:

- the job runs in a :mod:`.checkout` of its own (a fresh repository, not a linked worktree);
- it gets a scratch ``HOME`` and ``TMPDIR`` inside its scratch directory, deleted afterwards;
- its environment is an allowlist (:data:`PASS_ENV` plus the node's ``jobs.passEnv``), so no
  ``GIT_JOBS_KEY``, ``SSH_AUTH_SOCK``, ``GIT_DIR`` or cloud credential leaks through.

With ``bwrap`` (the default where bubblewrap is installed) it also runs in a sandbox: new
user, pid, ipc, uts and mount namespaces with every capability dropped; the system directories
(:data:`SYSTEM_DIRS`) read-only; ``/tmp`` empty; only its scratch directory writable; the
node's git directory, working tree, HOME and key not mounted at all (and masked should they lie
under a mounted path). The network is shared unless ``jobs.network = false``.

The choice is the node's (git config or a command-line flag), never the commit's: nothing in
``.git-jobs.toml`` can weaken it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pygit2

from ..errors import JobsError

MODES = ("bwrap", "none")
# Read-only in the sandbox, where they exist: what programs need to run.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/nix")
# Secrets commonly found under those: masked even though their parent is mounted.
SYSTEM_SECRETS = ("/etc/ssh", "/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/sudoers.d",
                  "/etc/ssl/private")
# The environment a job inherits from the node; everything else is dropped.
PASS_ENV = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM", "USER", "LOGNAME",
            "http_proxy", "https_proxy", "no_proxy", "all_proxy",
            "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")
PROBE_TIMEOUT = 30.0


class IsolationError(JobsError):
    """The node's isolation setting cannot be honoured here (the node runs no job then)."""


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
    def command(self, argv: list[str], scratch: Scratch, cwd: Path) -> list[str]:
        """``argv`` wrapped for this isolation (unchanged for ``none``)."""
        if self.mode == "none":
            return argv
        return [self.bwrap, *self._bwrap_args(scratch, cwd), "--", *argv]

    def _bwrap_args(self, scratch: Scratch, cwd: Path) -> list[str]:
        # --new-session: no controlling terminal, so a job or trigger cannot push keystrokes
        # into the operator's shell (TIOCSTI)
        args = ["--unshare-all", "--unshare-user", "--cap-drop", "ALL", "--die-with-parent", "--new-session"]
        if self.network:
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
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp"]
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
        """Raise :class:`IsolationError` when bwrap cannot make a sandbox here (cached)."""
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
        if self.mode == "none":
            return "none (own checkout, scratch HOME, scrubbed environment; no sandbox)"
        return f"bwrap (network {'on' if self.network else 'off'})"


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


def load_isolation(
    repo: pygit2.Repository,
    mode: str | None = None,
    key: Path | None = None,
    extra_hidden: Iterable[str] = (),
) -> Isolation:
    """The node's isolation from ``mode`` (a flag) or ``git config jobs.isolation``.

    Default: ``bwrap`` when bubblewrap is installed, else ``none``. Asking for ``bwrap`` where
    it is missing, or for no network without a sandbox to enforce it, is an error.
    """
    chosen = mode or _config(repo, "jobs.isolation")
    found = shutil.which("bwrap")
    if chosen is None:
        chosen = "bwrap" if found else "none"
    if chosen not in MODES:
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
        mode=chosen,
        network=network,
        paths=tuple(paths),
        hidden=tuple([*node_paths(repo, key), *_multi(repo, "jobs.sandboxHide"), *extra_hidden]),
        pass_env=tuple(_multi(repo, "jobs.passEnv")),
        bwrap=found or "bwrap",
    )
