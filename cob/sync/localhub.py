"""A remote on a local path, read in place: its refs listed and its objects borrowed without
running git.

``git ls-remote /srv/hub`` and ``git fetch /srv/hub`` start git, which starts ``git
upload-pack`` in the hub, which starts ``pack-objects``; our side runs ``index-pack`` and a
connectivity ``rev-list``: six processes, most of a daemon's sync, to move a change of ten
objects. libgit2's local transport and ``git clone --local`` read a repository on a local path
directly; so does a sync, when nothing could make git's answer differ from what is on disk:

* the remote is a path or a ``file:///`` URL, or a remote name whose one URL is;
* no ``url.*.insteadOf`` rewrites URLs, git's protocol policy allows ``file`` (the same rules:
  ``GIT_ALLOW_PROTOCOL``, ``protocol.file.allow``, ``protocol.allow``, default ``user`` with
  ``GIT_PROTOCOL_FROM_USER``; anything else it refuses, git is asked and says why), the remote
  names no ``uploadpack`` program;
* the hub opens with libgit2 (which refuses a repository another user owns, as git's
  ``safe.directory`` does), is not shallow and hides no refs (``uploadpack.hideRefs``,
  ``transfer.hideRefs``);
* no configuration only git reads (``git -c``, ``GIT_CONFIG_COUNT``, ``GIT_CONFIG_GLOBAL``,
  ``GIT_CONFIG_SYSTEM``) is set;
* only this user can write the hub (its git, ``objects`` and ``refs`` directories are ours and
  writable by no group or other user, no ``core.sharedRepository``): its files were written by
  git or by us, and a peer reaches it only through ``receive-pack``;
* what libgit2 opens there is regular files (no FIFO: it would block this process for good,
  where git runs under a timeout), the hub's config includes nothing, and it names no other
  directory (``commondir``, ``objects/info/alternates``).

Otherwise git runs, as before. Nothing else changes: the quarantine borrows the hub's objects
(one more line in its ``alternates``) instead of receiving a pack; what the wanted tips reach
is walked first, so a hub that lacks an object, or an update bigger than the copy's bounds,
goes through ``git fetch`` instead; the checks run on the quarantine; only what the accepted
tips reach is copied into the repository. Reading a hub runs nothing of its own (no hook, no
command its configuration names), which ``upload-pack`` on a local path may. Git never reads
a quarantine that borrows a hub: it would take the hub's commit-graph, bitmaps and
multi-pack-index as true (a forged parent makes it send objects no accepted tip reaches).
"""

from __future__ import annotations

import os
import stat

import pygit2

from ..errors import TransportError
from ..gitrun import describe
from ..refs import NAMESPACES, common_dir

_HIDING = ("uploadpack.hiderefs", "transfer.hiderefs")
# What libgit2 opens, in this process and with no time bound, to open a hub, list its refs and
# read its objects: each must be a regular file (a FIFO blocks an open for good; git reads the
# hub under the sync's timeout). A hub whose files point elsewhere is git's to read.
_READ = ("config", "config.worktree", "HEAD", "packed-refs", "shallow", "info/grafts")
_READ_OBJECTS = ("objects/pack/multi-pack-index",)
_ELSEWHERE = ("commondir", "objects/info/alternates")
MAX_CONFIG = 64 << 10
MAX_REF_FILE = 4 << 10  # a loose ref is 41 bytes ("ref: " and a name for a symbolic one)
MAX_PACKED_REFS = 256 << 20  # 2 million refs; libgit2 reads the file whole, into memory
# Configuration from the environment that git reads and libgit2 does not (``git -c``,
# ``GIT_CONFIG_COUNT``, another global or system file): it could forbid or rewrite the URL.
_GIT_ONLY_CONFIG = ("GIT_CONFIG_PARAMETERS", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM")


def local_hub(repo: pygit2.Repository, remote: str) -> pygit2.Repository | None:
    """The repository ``remote`` names, opened in place, when it may be read so (see the
    module's text); None when git must do the talking."""
    if not remote or remote.startswith("-") or "\n" in remote or "\0" in remote:
        return None  # refused by the listing, with its message
    path = _local_path(repo, remote)
    if path is None or not _plain(path):
        return None
    try:
        hub = pygit2.Repository(path, pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
        if hub.is_shallow or any(_values(hub.config, key) for key in _HIDING):
            return None
        borrowed = objects_dir(hub)
        if "\n" in borrowed or borrowed.startswith('"'):
            return None  # not a line of an alternates file
    except (pygit2.GitError, KeyError, ValueError, OSError):
        return None  # not a repository libgit2 opens here: git says what it makes of it
    return hub


def objects_dir(hub: pygit2.Repository) -> str:
    """The hub's object directory, absolute (what a quarantine's ``alternates`` names)."""
    return os.path.realpath(os.path.join(common_dir(hub), "objects"))


def listed(hub: pygit2.Repository) -> list[tuple[str, str]]:
    """(oid, name) of the hub's refs under ``refs/namespaces/``, as ``git ls-remote --refs``
    prints them: symbolic refs resolved, broken ones left out."""
    out: list[tuple[str, str]] = []
    try:
        for ref in hub.references.iterator():
            if not ref.name.startswith(NAMESPACES):
                continue
            try:
                target = ref.resolve().target
            except (pygit2.GitError, KeyError, ValueError):
                continue
            out.append((str(target), ref.name))
    except (pygit2.GitError, OSError, ValueError) as e:  # e.g. a corrupt packed-refs: as git's refusal
        why = (str(e).splitlines() or ["unreadable refs"])[0][:200]
        raise TransportError(f"cannot list {describe(hub.path.rstrip('/'))}: {why}") from None
    return out


def _plain(path: str) -> bool:
    """Whether libgit2 may open the repository at ``path`` here without blocking on it: what
    it reads there (:data:`_READ`) is regular files, its config includes nothing and is
    small, and it names no other directory (:data:`_ELSEWHERE`, whose files would need the
    same care and may name our own repository); and only this user can create files there
    (:func:`_ours_alone`), so that nothing can be swapped in after this look."""
    if not any(_ours_alone(d) for d in (path, os.path.join(path, ".git"))):
        return False
    for gitdir in (path, os.path.join(path, ".git")):
        if not os.path.isdir(gitdir):
            if gitdir != path and os.path.lexists(gitdir):
                return False  # a gitfile: git follows it
            continue
        if any(os.path.lexists(os.path.join(gitdir, name)) for name in _ELSEWHERE):
            return False
        for name in (*_READ, *_READ_OBJECTS):
            found = os.path.join(gitdir, name)
            if os.path.lexists(found) and not _regular(found):
                return False
        if not _plain_config(os.path.join(gitdir, "config")):
            return False
        if not _small_files(os.path.join(gitdir, "refs"), MAX_REF_FILE):
            return False
        packed = os.path.join(gitdir, "packed-refs")
        if os.path.lexists(packed) and os.stat(packed).st_size > MAX_PACKED_REFS:
            return False
    return True


_OWN_DIRS = ("", "objects", "objects/pack", "objects/info", "refs")


def _ours_alone(gitdir: str) -> bool:
    """Whether ``gitdir`` is a git directory only this user (or root) can write: it and its
    ``objects`` and ``refs`` directories are ours, writable by no group and no other user,
    none a symbolic link, and git is not told to share it (``core.sharedRepository``). What
    is there was then written by git or by this user: a peer reaches such a hub only through
    ``receive-pack``, which writes no FIFO, no oversized ref and no commit-graph of its own,
    and cannot swap a file in after :func:`_plain` looked. A hub others write to directly (a
    shared directory) is git's to read, under its timeouts, as before."""
    uid = os.geteuid()
    for name in _OWN_DIRS:
        try:
            st = os.lstat(os.path.join(gitdir, name) if name else gitdir)
        except (OSError, ValueError):
            return False
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o022:
            return False
    return True  # core.sharedRepository: _plain_config


def _small_files(root: str, limit: int) -> bool:
    """Whether every file under ``root`` (libgit2 reads each loose ref whole, into memory) is
    a regular file of at most ``limit`` bytes, and no directory there is a symbolic link."""
    stack = [root]
    while stack:
        try:
            with os.scandir(stack.pop()) as found:
                for entry in found:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif not entry.is_file() or entry.stat().st_size > limit:
                        return False
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return True


def _regular(path: str) -> bool:
    """Whether ``path`` is, or links to, a regular file (not a FIFO, device or directory)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _plain_config(path: str) -> bool:
    """Whether the config file at ``path`` is absent, or a regular file of at most
    :data:`MAX_CONFIG` bytes that includes no other file and shares nothing with a group
    (``core.sharedRepository``; read without blocking)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        text = os.read(fd, MAX_CONFIG + 1)
    finally:
        os.close(fd)
    lowered = text.lower()  # git shares the files it creates with a group: not ours alone
    return len(text) <= MAX_CONFIG and b"include" not in lowered and b"sharedrepository" not in lowered


def loose_is_regular(objects: str, oid: str) -> bool:
    """Whether the loose copy of ``oid`` in ``objects`` is a regular file, or absent (packed,
    or not there: the odb says so)."""
    found = os.path.join(objects, oid[:2], oid[2:])
    try:
        return stat.S_ISREG(os.stat(found).st_mode)
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False


def _local_path(repo: pygit2.Repository, remote: str) -> str | None:
    """The absolute path ``remote`` names on this machine, or None (a URL of another scheme,
    or anything git might read otherwise)."""
    config = repo.config
    if (
        any(os.environ.get(name) for name in _GIT_ONLY_CONFIG)
        or os.environ.get("GIT_CONFIG_COUNT", "0") != "0"
    ):
        return None  # configuration git reads and libgit2 does not (git -c, env): git decides
    if not _file_allowed(config) or _rewrites_urls(config):
        return None
    url = remote
    urls = _values(config, f"remote.{remote}.url")
    if urls:
        if len(urls) != 1 or _values(config, f"remote.{remote}.uploadpack"):
            return None
        url = urls[0]
    if url.startswith("file://"):
        url = url[len("file://") :]
        if not url.startswith("/") or "%" in url:
            return None  # a host, or escapes: git's reading of it
    elif "://" in url or _scp_like(url):
        return None
    return os.path.abspath(url) if url else None


def _file_allowed(config: pygit2.Config) -> bool:
    """Whether git's protocol policy lets it read a repository on a local path (``git help
    config``, ``protocol.allow``); an unknown value is a refusal here, git then says why."""
    allowed = os.environ.get("GIT_ALLOW_PROTOCOL")
    if allowed is not None:
        return "file" in allowed.split(":")
    policy = _value(config, "protocol.file.allow") or _value(config, "protocol.allow") or "user"
    if policy.lower() == "always":
        return True
    from_user = os.environ.get("GIT_PROTOCOL_FROM_USER", "1").lower()
    return policy.lower() == "user" and from_user in ("1", "true", "yes", "on")


def _scp_like(url: str) -> bool:
    """``host:path``, git's other spelling of ssh: a colon before any slash."""
    colon = url.find(":")
    slash = url.find("/")
    return colon >= 0 and (slash < 0 or colon < slash)


def _rewrites_urls(config: pygit2.Config) -> bool:
    for entry in config:
        name = entry.name.lower()
        if name.startswith("url.") and name.endswith(".insteadof"):
            return True
    return False


def _value(config: pygit2.Config, key: str) -> str | None:
    """The value git uses: the most specific file's, its last line."""
    try:
        return str(config[key])
    except (pygit2.GitError, KeyError, ValueError):
        return None


def _values(config: pygit2.Config, key: str) -> list[str]:
    try:
        return [str(v) for v in config.get_multivar(key)]
    except (pygit2.GitError, KeyError, ValueError):
        return []
