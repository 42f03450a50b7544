"""Process-wide settings a writer needs: durable writes, and a bounded libgit2 object cache.

* **fsync.** libgit2 writes a loose object or a ref through a temporary file and a rename,
  without fsync unless told (``GIT_OPT_ENABLE_FSYNC_GITDIR``): after a power loss an
  acknowledged change could be an empty file, or the index ref could name an object that never
  reached the disk. With it on, every object file, ref file and their directories are flushed
  before the rename that publishes them; a write is acknowledged (the store returns, the CLI
  prints) only after the index ref moved, so only after all it names is on disk. ``git``
  subprocesses get ``core.fsync=committed`` (:func:`cob.gitrun.git_env`). ``git config
  <section>.fsync false`` (the section of :mod:`cob.layout`) turns it off (a scratch
  repository on tmpfs: fsync buys nothing there).
* **libgit2's object cache** holds up to 256 MB by default, and a long-running writer fills
  it with the commits and trees it writes (measured: ~8 KB per write, no plateau in
  practice). It is bounded here to :data:`LIBGIT2_CACHE_BYTES` unless the program set its own.

libgit2's options are per process: the first :class:`cob.Store` applies them.
"""

from __future__ import annotations

import pygit2

from . import layout

LIBGIT2_CACHE_BYTES = 4 << 20
# Trees up to this size are kept in libgit2's cache (its default, 4 KiB, leaves out an index's
# type directory of 256 fan-out entries, ~7.5 KiB, which a write reads four times).
LIBGIT2_TREE_BYTES = 16 << 10
_LIBGIT2_DEFAULT_CACHE = 256 << 20
_applied: bool | None = None  # fsync on (True) or off (False), once applied


def fsync_wanted(repo: pygit2.Repository) -> bool:
    """``<section>.fsync`` (:mod:`cob.layout`; default true)."""
    try:
        return bool(repo.config.get_bool(layout.current().config("fsync")))
    except (KeyError, pygit2.GitError, ValueError):
        return True


def apply(repo: pygit2.Repository) -> None:
    """Apply the settings once per process (the first store's repository decides fsync)."""
    global _applied
    if _applied is not None:
        return
    _applied = fsync_wanted(repo)
    pygit2.option(pygit2.enums.Option.ENABLE_FSYNC_GITDIR, _applied)
    _, allowed = pygit2.settings.cached_memory
    if allowed == _LIBGIT2_DEFAULT_CACHE:
        pygit2.settings.cache_max_size(LIBGIT2_CACHE_BYTES)
    pygit2.settings.cache_object_limit(pygit2.enums.ObjectType.TREE, LIBGIT2_TREE_BYTES)


def fsync_enabled() -> bool | None:
    """Whether this process writes with fsync (None: no store opened yet)."""
    return _applied
