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
  ``transfer.hideRefs``).

Otherwise git runs, as before. Nothing else changes: the quarantine borrows the hub's objects
(one more line in its ``alternates``) instead of receiving a pack; what the wanted tips reach
is walked first, so a hub that lacks an object, or an update bigger than the copy's bounds,
goes through ``git fetch`` instead; the checks run on the quarantine; only what the accepted
tips reach is copied into the repository. Reading a hub runs nothing of its own (no hook, no
command its configuration names), which ``upload-pack`` on a local path may.
"""

from __future__ import annotations

import os

import pygit2

from ..refs import NAMESPACES, common_dir

_HIDING = ("uploadpack.hiderefs", "transfer.hiderefs")


def local_hub(repo: pygit2.Repository, remote: str) -> pygit2.Repository | None:
    """The repository ``remote`` names, opened in place, when it may be read so (see the
    module's text); None when git must do the talking."""
    if not remote or remote.startswith("-") or "\n" in remote or "\0" in remote:
        return None  # refused by the listing, with its message
    path = _local_path(repo, remote)
    if path is None:
        return None
    try:
        hub = pygit2.Repository(path, pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
        if hub.is_shallow or any(_values(hub.config, key) for key in _HIDING):
            return None
        if "\n" in objects_dir(hub) or objects_dir(hub).startswith('"'):
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
    for ref in hub.references.iterator():
        if not ref.name.startswith(NAMESPACES):
            continue
        try:
            target = ref.resolve().target
        except (pygit2.GitError, KeyError, ValueError):
            continue
        out.append((str(target), ref.name))
    return out


def _local_path(repo: pygit2.Repository, remote: str) -> str | None:
    """The absolute path ``remote`` names on this machine, or None (a URL of another scheme,
    or anything git might read otherwise)."""
    config = repo.config
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
