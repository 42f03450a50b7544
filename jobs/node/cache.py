"""``cache``: files a job keeps between its runs on this node, restored before and saved after.

    [jobs.test]
    run = "python -m venv .venv && .venv/bin/pip install -r requirements.txt && .venv/bin/pytest"
    cache = { key = "deps-{hash('requirements*.txt')}", paths = [".venv"] }

The key is computed by the node *without running the commit's code*: literal text (letters,
digits, ``.`` ``_`` ``-``) and placeholders — ``{hash('GLOB', …)}`` (SHA-256 over the path and
blob id of every file of the commit's tree a glob matches: ``*`` and ``?`` stay in one
directory, ``**`` crosses them), ``{job}``, ``{os}``, ``{arch}``. Before the job starts, the
entry of that key (when there is one) is copied into the checkout; after it succeeds, when the
key had no entry, ``paths`` are copied into a new one. An entry is never overwritten (a key
names its content, as in GitHub Actions).

Entries live under ``<gitdir>/git-jobs/caches/<scope>/``, on this node only (they never travel).
There are two scopes, never mixed: ``trusted`` (commits of the branches and tags this node
follows, or that its user named) and ``contributed`` (a contributor's commit, as
:func:`.secrets.contributed` tells: one only a requester asked for, or one of a followed ref that
is not a branch or tag, like ``refs/pull/*/head``). A run restores from and saves to its own
scope only, so a cache written by a contributor's run never reaches a run of a followed branch;
and within ``contributed`` each contributor's ref (a commit only a requester asked for: each
commit) has entries of its own, so one pull request cannot poison another's cache.
Copies are made as outputs are (:mod:`.outputs`: links kept
as links, never followed; bounded). The store holds at most ``jobs.cacheMax`` bytes (default
2g, ``0``: caching off); the least recently used entries go first. Hits, misses and saves are
written to the run's log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pygit2

from .. import paths
from ..spec.cache import CacheSpec, parts
from .outputs import MAX_BYTES, MAX_FILES, _at, _copy_tree, _files, _inside

MAX_WALK = 200_000  # tree entries a hash() looks at
DEFAULT_MAX = 2 * 2**30
SCOPES = ("trusted", "contributed")


def glob_regex(glob: str) -> re.Pattern[str]:
    """``*``/``?`` within one directory, ``**`` across them; the whole path must match."""
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.S)


def _tree_files(repo: pygit2.Repository, tree: pygit2.Tree) -> list[tuple[str, str]]:
    """(path, blob id) of every file of ``tree`` (at most :data:`MAX_WALK` entries looked at)."""
    out: list[tuple[str, str]] = []
    stack: list[tuple[str, pygit2.Tree]] = [("", tree)]
    seen = 0
    while stack:
        prefix, t = stack.pop()
        for entry in t:
            seen += 1
            if seen > MAX_WALK:
                raise ValueError(f"the commit's tree has more than {MAX_WALK} entries to hash")
            path = prefix + (entry.name or "")
            if entry.filemode == pygit2.enums.FileMode.TREE:
                sub = repo[entry.id]
                if isinstance(sub, pygit2.Tree):
                    stack.append((path + "/", sub))
            elif entry.filemode != pygit2.enums.FileMode.COMMIT:
                out.append((path, str(entry.id)))
    return out


def cache_key(repo: pygit2.Repository, commit: str, spec: CacheSpec, job: str, env: dict[str, str]) -> str:
    """The key for ``commit`` (ValueError when it cannot be computed)."""
    obj = repo[commit].peel(pygit2.Commit)
    files: list[tuple[str, str]] | None = None
    out = []
    for kind, value in parts(spec.key):
        if kind == "text":
            out.append(str(value))
        elif kind == "name":
            out.append(job if value == "job" else env.get(str(value), ""))
        else:
            files = files if files is not None else _tree_files(repo, obj.tree)
            patterns = [glob_regex(g) for g in value]
            digest = hashlib.sha256()
            for path, oid in sorted(files):
                if any(p.match(path) for p in patterns):
                    digest.update(f"{path}\0{oid}\n".encode())
            out.append(digest.hexdigest()[:16])
    return "".join(out)


root = paths.caches_root


def entry_dir(repo: pygit2.Repository, scope: str, key: str, partition: str = "") -> Path:
    """Where the entry of ``key`` is; ``partition``: whose it is within the scope (a
    contributor's ref), so two partitions never share an entry of the same key."""
    named = f"{partition}\0{key}" if partition else key
    return root(repo) / scope / hashlib.sha256(named.encode()).hexdigest()[:32]


def cache_max(repo: pygit2.Repository) -> int:
    from .isolation import IsolationError, _size

    try:
        return _size(repo, "jobs.cacheMax", DEFAULT_MAX)
    except IsolationError as e:
        raise ValueError(str(e)) from None


def restore(repo: pygit2.Repository, scope: str, key: str, dest: Path, partition: str = "") -> bool:
    """Copy the entry of ``key`` into the checkout ``dest``; False on a miss."""
    entry = entry_dir(repo, scope, key, partition)
    data = entry / "data"
    if not (entry / "meta.json").is_file() or not data.is_dir():
        return False
    os.utime(entry)  # used now: the least recently used go first
    for top in sorted(os.listdir(data)):
        _copy_tree(str(data / top), str(dest / top), _files(str(data / top)))
    return True


def save(
    repo: pygit2.Repository, scope: str, key: str, src: Path, paths: tuple[str, ...], partition: str = ""
) -> str:
    """Keep ``paths`` of the checkout ``src`` as the entry of ``key``; a note for the log."""
    entry = entry_dir(repo, scope, key, partition)
    if (entry / "meta.json").is_file():
        return f"cache {key}: kept as it is (an entry is never overwritten)"
    limit = cache_max(repo)
    budget = min(MAX_BYTES, limit)
    tmp = entry.with_name(entry.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    base = os.path.realpath(src)
    total = files = 0
    kept = []
    try:
        for rel in paths:
            item = os.path.join(base, rel)
            if not os.path.lexists(item) or not _inside(os.path.realpath(item), base):
                continue
            entries = _files(item)
            files += len(entries)
            total += sum(os.lstat(_at(item, r)).st_size for r, k in entries if k == "file")
            if total > budget or files > MAX_FILES:
                shutil.rmtree(tmp, ignore_errors=True)
                return f"cache {key}: not saved: over {budget} bytes or {MAX_FILES} files"
            os.makedirs(os.path.dirname(str(tmp / "data" / rel)), exist_ok=True)
            _copy_tree(item, str(tmp / "data" / rel), entries)
            kept.append(rel)
        if not kept:
            shutil.rmtree(tmp, ignore_errors=True)
            return f"cache {key}: not saved: none of its paths exist"
        (tmp / "meta.json").write_text(json.dumps({"key": key, "bytes": total, "paths": kept}))
        entry.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp, entry)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        return f"cache {key}: not saved: {e.strerror or e}"
    gone = evict(repo, limit)
    return f"cache {key}: saved {', '.join(kept)} ({total} bytes)" + (f"; evicted {gone}" if gone else "")


def _entries(repo: pygit2.Repository) -> list[tuple[float, Path, int]]:
    out = []
    for scope in SCOPES:
        with contextlib.suppress(OSError):
            for e in os.scandir(root(repo) / scope):
                meta = Path(e.path) / "meta.json"
                size = 0
                with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
                    size = int(json.loads(meta.read_text()).get("bytes", 0))
                out.append((e.stat(follow_symlinks=False).st_mtime, Path(e.path), size))
    return sorted(out, key=lambda x: (x[0], str(x[1])))


def evict(repo: pygit2.Repository, limit: int) -> int:
    """Delete the least recently used entries until the store holds at most ``limit`` bytes."""
    found = _entries(repo)
    total = sum(size for _, _, size in found)
    gone = 0
    for _, path, size in found:
        if total <= limit:
            break
        shutil.rmtree(path, ignore_errors=True)
        total -= size
        gone += 1
    return gone


def around(
    repo: pygit2.Repository, spec: CacheSpec | None, commit: str, job: str, source: str
) -> Session | None:
    """A cache session of one run of ``commit``, reached through ``source`` (None: no cache)."""
    if spec is None:
        return None
    from .follow import FOLLOW_ROOT
    from .secrets import contributed

    if not contributed(repo, commit, source):
        return Session(repo, spec, commit, job, SCOPES[0])
    # One contributor's runs never restore what another's saved: a pull request's entries are
    # its ref's (refs/pull/7/head); a commit only a requester asked for has its own.
    partition = source if source.startswith(FOLLOW_ROOT) else f"commit {commit}"
    return Session(repo, spec, commit, job, SCOPES[1], partition)


@dataclass(slots=True)
class Session:
    """The cache of one run: :meth:`restore` before the command, :meth:`save` after success."""

    repo: pygit2.Repository
    spec: CacheSpec
    commit: str
    job: str
    scope: str
    partition: str = ""  # within the contributed scope: whose entries (around)
    key: str = ""
    hit: bool = False

    def restore(self, dest: Path, env: dict[str, str]) -> str:
        try:
            if cache_max(self.repo) == 0:
                return "cache off on this node (jobs.cacheMax = 0)"
            mine = pygit2.Repository(self.repo.path)  # its own: this runs in a worker thread
            self.key = cache_key(mine, self.commit, self.spec, self.job, env)
            self.hit = restore(self.repo, self.scope, self.key, dest, self.partition)
        except (ValueError, OSError, KeyError, pygit2.GitError) as e:
            self.key = ""
            return f"cache not used: {e}"
        what = "hit" if self.hit else "miss"
        return f"cache {what}: {self.key} ({self.scope} scope)"

    def save(self, src: Path) -> str:
        if not self.key or self.hit:
            return ""
        return save(self.repo, self.scope, self.key, src, self.spec.paths, self.partition)
