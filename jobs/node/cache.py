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


MAX_MATCH_STEPS = 10_000_000  # steps all of a key's globs may take over the commit's tree
MAX_GLOB_SETS = 4096  # sets of pattern positions one glob may meet
_COSTLY = "hash(): its globs cost too much to match against the commit's tree"
_WILD = ("**/", "**", "*", "?")


class Glob:
    """``*``/``?`` within one directory, ``**`` across them; the whole path must match.

    Matched by sets of positions in the pattern moved along the path (a Thompson NFA, made a
    DFA as it goes), never by a backtracking regex: the glob and the tree are the commit's,
    and ``**/`` twenty times against a path twenty directories deep took a regex hours (run by
    the node, before the job, with no time limit). Every character and every new set spends
    from one budget (:data:`MAX_MATCH_STEPS`, about 3 s); past it, or past
    :data:`MAX_GLOB_SETS` sets, the key cannot be computed and the cache is not used."""

    def __init__(self, glob: str) -> None:
        tokens: list[str] = []
        i = 0
        while i < len(glob):
            token = next((w for w in _WILD if glob.startswith(w, i)), glob[i])
            if not (token == "**/" and tokens and tokens[-1] == "**/"):  # **/**/ is **/
                tokens.append(token)
            i += len(token)
        self.tokens = tokens
        wild = [n for n, t in enumerate(tokens) if t in _WILD]
        self.exact = glob if not wild else None
        self.prefix = "".join(tokens[: wild[0]]) if wild else glob
        self.suffix = "".join(tokens[wild[-1] + 1 :]) if wild else ""
        self._letters = {t for t in tokens if t not in _WILD} | {"/"}
        first = frozenset(self._closure({0}))
        self._sets: list[frozenset[int]] = [first]
        self._ids: dict[frozenset[int], int] = {first: 0}
        self._moves: dict[tuple[int, str], int] = {}
        self._start = 0

    # A state is 2*i at the start of token i, or 2*i+1 inside a `**/` (some of it read: only a
    # slash ends it there).
    def _closure(self, states: set[int]) -> set[int]:
        out = set()
        for state in states:
            out.add(state)
            i = state // 2
            while state % 2 == 0 and i < len(self.tokens) and self.tokens[i] in ("**/", "**", "*"):
                i += 1  # each may be empty
                out.add(2 * i)
        return out

    def _step(self, states: frozenset[int], c: str) -> frozenset[int]:
        end = 2 * len(self.tokens)
        moved: set[int] = set()
        for state in states:
            i = state // 2
            token = self.tokens[i] if state < end else None
            if token == "**/":
                moved.update((2 * i + 1, 2 * i + 2) if c == "/" else (2 * i + 1,))
            elif token == "**" or (token == "*" and c != "/"):
                moved.add(state)
            elif (token == "?" and c != "/") or token == c:
                moved.add(2 * i + 2)
        return frozenset(self._closure(moved))

    def match(self, path: str, budget: list[int]) -> bool:
        """Does ``path`` match? ``budget[0]``: steps left (ValueError when spent). Sets of
        states met are numbered and their moves kept (a DFA built as it is needed), so a
        path costs a lookup per character once the glob's few sets are known."""
        if self.exact is not None:
            return path == self.exact
        if not path.startswith(self.prefix) or not path.endswith(self.suffix):
            return False
        if len(path) < len(self.prefix) + len(self.suffix):
            return False
        budget[0] -= len(path)
        if budget[0] < 0:
            raise ValueError(_COSTLY)
        current = self._start
        for c in path:
            kind = c if c in self._letters else ""  # other characters all move alike
            nxt = self._moves.get((current, kind))
            if nxt is None:
                states = self._sets[current]
                budget[0] -= len(states)
                if budget[0] < 0 or len(self._sets) >= MAX_GLOB_SETS:
                    raise ValueError(_COSTLY)
                found = self._step(states, kind or "\0")
                nxt = self._ids.setdefault(found, len(self._sets))
                if nxt == len(self._sets):
                    self._sets.append(found)
                self._moves[(current, kind)] = nxt
            if not self._sets[nxt]:
                return False
            current = nxt
        return 2 * len(self.tokens) in self._sets[current]


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
    budget = [MAX_MATCH_STEPS]
    for kind, value in parts(spec.key):
        if kind == "text":
            out.append(str(value))
        elif kind == "name":
            out.append(job if value == "job" else env.get(str(value), ""))
        else:
            files = files if files is not None else _tree_files(repo, obj.tree)
            globs = [Glob(g) for g in value]
            digest = hashlib.sha256()
            for path, oid in sorted(files):
                if any(g.match(path, budget) for g in globs):
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
            entries = _files(item, MAX_FILES - files)
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
