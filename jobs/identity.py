"""Which key is this node's: the documented resolution order (``docs/FORMAT.md``, *Identity*).

explicit argument → ``$GIT_JOBS_KEY`` → ``git config jobs.key`` → ``git config
user.signingKey`` (when it is an ed25519 key file) → ``$XDG_CONFIG_HOME/git-jobs/key``, by
default ``~/.config/git-jobs/key`` (made by ``git jobs init``). `cob` only reads and writes key
files (:class:`cob.Signer`); the names are the product's, so they live here.
"""

from __future__ import annotations

import os
from pathlib import Path

from cob.errors import NoKeyError
from cob.signer import KeySource, Signer

ENV_KEY = "GIT_JOBS_KEY"
CONFIG_KEY = "jobs.key"


def default_key_path() -> Path:
    """``$XDG_CONFIG_HOME/git-jobs/key``, by default ``~/.config/git-jobs/key``."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "git-jobs" / "key"


def new_key_hint() -> str:
    """How a person gives a second copy of a node a key of its own (named in one error)."""
    return f"git jobs --key NEW-FILE init; git config {CONFIG_KEY} NEW-FILE"


def load_signer(repo: object = None, path: str | os.PathLike[str] | None = None) -> Signer:
    """Resolve the node's key: ``path`` → ``$GIT_JOBS_KEY`` → ``jobs.key`` →
    ``user.signingKey`` (if an ed25519 key file) → :func:`default_key_path`."""
    source = resolve_key_path(repo, path)
    if source is None:
        raise NoKeyError(
            f"no key: set {ENV_KEY}, `git config {CONFIG_KEY} PATH`, or run `git jobs init` "
            f"(which writes {default_key_path()})"
        )
    return Signer.from_file(source.path, source.origin)


def _config_get(repo: object, name: str) -> str | None:
    import pygit2

    config: pygit2.Config
    try:
        if isinstance(repo, pygit2.Repository):
            config = repo.config
        elif isinstance(repo, str | os.PathLike):
            config = pygit2.Repository(os.fspath(repo)).config
        else:
            config = pygit2.Config.get_global_config()
        value = config[name]
    except (KeyError, OSError, pygit2.GitError):
        return None
    return str(value) if value else None


def _is_ed25519_private_key_file(path: Path) -> bool:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        data = path.read_bytes()[:65536]
        key = serialization.load_ssh_private_key(data, password=None)
    except Exception:
        return False
    return isinstance(key, Ed25519PrivateKey)


def resolve_key_path(repo: object = None, path: str | os.PathLike[str] | None = None) -> KeySource | None:
    """Which key file the resolution order picks, or None when nothing resolves.

    An explicitly named file (argument, environment, ``jobs.key``) is returned even if it is
    missing, so that the caller's error names it; ``user.signingKey`` is only taken when it is an
    ed25519 private key file (or a ``.pub`` whose private half sits beside it).
    """
    if path:
        return KeySource(Path(path).expanduser(), "argument")
    env = os.environ.get(ENV_KEY)
    if env:
        return KeySource(Path(env).expanduser(), ENV_KEY)
    configured = _config_get(repo, CONFIG_KEY)
    if configured:
        return KeySource(Path(configured).expanduser(), CONFIG_KEY)
    signing = _config_get(repo, "user.signingKey")
    if signing and not signing.startswith(("key::", "ssh-")):
        candidate = Path(signing).expanduser()
        if candidate.suffix == ".pub":
            candidate = candidate.with_suffix("")
        if _is_ed25519_private_key_file(candidate):
            return KeySource(candidate, "user.signingKey")
    default = default_key_path()
    if default.exists():
        return KeySource(default, "default")
    return None
