"""Whose runs count: the trust :class:`Policy`, read from a *trusted ref*, never from the commit
under test.

The ledger proves who recorded a run; the policy decides whose runs decide a merge. It is the
``[policy]`` table of ``.git-jobs.toml`` at the tip of the **policy ref** — by default the
remote's default branch as fetched (``refs/remotes/<remote>/HEAD``), else the local default
branch; ``git config jobs.policyRef`` chooses another. It is never read from HEAD or from the
commit whose status is asked: a pull request that adds its own key to ``[policy]`` in its tree
changes nothing until a maintainer merges it into the policy ref.

    [policy]
    nodes = { "z6Mk…" = "alice-linux", "z6Mk…" = "bob-arm" }  # trusted nodes and their names
    required = ["build", "test"]   # default: every job the commit's own definitions declare
    quorum = 1                     # trusted passes each required job needs
    requesters = ["z6Mk…"]         # who may request work (default: nobody)
    takeover = "10m"               # a job's next-ranked node runs it when its assigned one has
                                   # not started it that long after its release (jobs.assign)

Validation is strict and reports *every* problem at once (:class:`~jobs.errors.PolicyError`):
a policy that does not parse must not silently become "no policy, every node counts". Local
trust (:mod:`jobs.trust`) adds nodes for one person on top of it.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pygit2

import cob

from .errors import PolicyError, PolicyRewoundError
from .jobtype import check_name
from .text import safe, unsafe_chars

POLICY_REF_KEY = "jobs.policyRef"
DEFINITIONS_FILE = ".git-jobs.toml"  # the same file the node reads its job definitions from
MAX_POLICY_BYTES = 256 * 1024  # as for definitions: a few hundred bytes in practice
MAX_REQUIRED = 200  # as many as one file may define jobs
MAX_NODES = 1000  # trusted nodes (and requesters) in one policy
MAX_NODE_NAME = 64  # characters of a node's human name
MAX_ERRORS = 50  # errors listed for one policy; the rest are counted
DEFAULT_TAKEOVER = 600.0  # seconds: a dead node delays its share of the work this long
MIN_TAKEOVER = 1.0  # ledger times are whole seconds: a shorter delay would be noise
_KEYS = ("nodes", "required", "quorum", "requesters", "takeover", "reproducible")


@dataclass(frozen=True, slots=True)
class PolicySource:
    """Where a policy was read: the ref as configured or found, and the commit at its tip."""

    ref: str
    commit: str
    how: str  # "jobs.policyRef" | "remote default branch" | "local default branch"

    def to_json(self) -> dict[str, str]:
        return {"ref": self.ref, "commit": self.commit, "how": self.how}

    def __str__(self) -> str:
        return f"{safe(self.ref)} ({self.commit[:12]})"


@dataclass(frozen=True, slots=True)
class Policy:
    """Trusted nodes (NID → name, "" when unnamed), required jobs, quorum, requesters, takeover.

    ``everyone`` is the absence of any policy (no ``[policy]`` table at the policy ref and no
    local trust): every node counts, as before trust existed, and no request is honoured.
    ``local`` holds the nodes trusted by this person only (``git jobs trust``), on top of
    ``nodes``. ``required`` None means "every job the commit's own definitions declare".
    ``takeover``: seconds after a job's release after which the next node in its ranking runs
    it if an assigned one has not started it (:mod:`jobs.assign`).
    """

    nodes: Mapping[str, str] = field(default_factory=dict)
    required: tuple[str, ...] | None = None
    quorum: int = 1
    explicit_requesters: tuple[str, ...] | None = None
    local: Mapping[str, str] = field(default_factory=dict)
    source: PolicySource | None = None
    everyone: bool = False
    takeover: float = DEFAULT_TAKEOVER
    # Jobs whose trusted nodes' outputs must agree (jobs.evidence): a difference fails the gate.
    reproducible: tuple[str, ...] = ()

    @classmethod
    def none(cls) -> Policy:
        """No policy at all: every node counts."""
        return cls(everyone=True)

    def with_local(self, local: Mapping[str, str]) -> Policy:
        """This policy plus one person's local trust (a policy of its own when there is none)."""
        if not local:
            return self
        return Policy(
            self.nodes,
            self.required,
            self.quorum,
            self.explicit_requesters,
            dict(local),
            self.source,
            everyone=False,
            takeover=self.takeover,
            reproducible=self.reproducible,
        )

    @property
    def trusted(self) -> dict[str, str]:
        """Every trusted NID → its name (a local name wins: it is this person's label)."""
        out = dict(self.nodes)
        for nid, name in self.local.items():
            out[nid] = name or out.get(nid, "")
        return dict(sorted(out.items()))

    def trusts(self, nid: str) -> bool:
        return self.everyone or nid in self.nodes or nid in self.local

    def name_of(self, nid: str) -> str | None:
        """The human name of a trusted node, or None (unnamed or not trusted)."""
        return self.local.get(nid) or self.nodes.get(nid) or None

    @property
    def requesters(self) -> tuple[str, ...]:
        """Who may request work: only the keys the policy's ``requesters`` names. Without that
        list nobody does, trusted nodes included: a node building a branch it follows must not
        make every other node build it too."""
        if self.everyone or self.explicit_requesters is None:
            return ()
        return self.explicit_requesters

    def may_request(self, nid: str) -> bool:
        return nid in self.requesters

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source.to_json() if self.source else None,
            "everyone": self.everyone,
            "trusted": [
                {"nid": nid, "name": name or None, "local": nid in self.local}
                for nid, name in self.trusted.items()
            ],
            "required": list(self.required) if self.required is not None else None,
            "quorum": self.quorum,
            "requesters": list(self.requesters),
            "takeover": self.takeover,
            "reproducible": list(self.reproducible),
        }


class _Errors:
    """Collects every problem of one policy table, each naming where it was found."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"{self.where}: {key}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            raise PolicyError.of(self.items)


def _nid(errors: _Errors, key: str, value: Any) -> str | None:
    if not isinstance(value, str):
        errors.add(key, f"a node id must be a string, not {type(value).__name__}")
        return None
    try:
        return cob.normalize_nid(value)
    except cob.CobError:
        errors.add(key, f"not a node id: {safe(value[:80])!r}")
        return None


def check_node_name(name: Any) -> str | None:
    """Why ``name`` is not a good human name for a node, or None."""
    if not isinstance(name, str):
        return f"a node name must be a string, not {type(name).__name__}"
    if not name.strip() or len(name) > MAX_NODE_NAME:
        return f"a node name must be 1 to {MAX_NODE_NAME} characters"
    bad = unsafe_chars(name)
    if bad:
        return f"a node name must not contain control or invisible characters ({', '.join(bad[:3])})"
    return None


def _nodes(errors: _Errors, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        errors.add("nodes", 'must be a table like { "z6Mk…" = "alice-linux" }')
        return {}
    if len(value) > MAX_NODES:
        errors.add("nodes", f"{len(value)} nodes (at most {MAX_NODES})")
        return {}
    out: dict[str, str] = {}
    names: dict[str, str] = {}
    for raw, name in value.items():
        nid = _nid(errors, f"nodes.{safe(raw[:80])}", raw)
        problem = check_node_name(name)
        if problem:
            errors.add(f"nodes.{safe(raw[:80])}", problem)
        if nid is None or problem:
            continue
        if nid in out:
            errors.add(f"nodes.{safe(raw[:80])}", "names a node listed already")
        elif name in names:
            errors.add(f"nodes.{safe(raw[:80])}", f"name {safe(name)!r} is given to another node too")
        out[nid], names[name] = name, nid
    return out


def _required(errors: _Errors, value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not value:
        errors.add(
            "required",
            "must be a non-empty list of job names (leave it out to require every job the commit defines)",
        )
        return None
    if len(value) > MAX_REQUIRED:
        errors.add("required", f"{len(value)} jobs (at most {MAX_REQUIRED})")
        return None
    ok = True
    for i, name in enumerate(value):
        problem = check_name(name) if isinstance(name, str) else "a job name must be a string"
        if problem:
            errors.add(f"required[{i}]", safe(problem))
            ok = False
    if ok and len(set(value)) != len(value):
        errors.add("required", "names a job more than once")
        ok = False
    return tuple(value) if ok else None


def _reproducible(errors: _Errors, value: Any) -> tuple[str, ...]:
    """``reproducible``: job names (a matrix definition's name covers its jobs)."""
    if not isinstance(value, list) or len(value) > MAX_REQUIRED:
        errors.add("reproducible", f"must be a list of at most {MAX_REQUIRED} job names")
        return ()
    for i, name in enumerate(value):
        problem = check_name(name) if isinstance(name, str) else "a job name must be a string"
        if problem:
            errors.add(f"reproducible[{i}]", safe(problem))
            return ()
    if len(set(value)) != len(value):
        errors.add("reproducible", "names a job more than once")
        return ()
    return tuple(value)


def _quorum(errors: _Errors, value: Any, nodes: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_NODES:
        errors.add("quorum", f"must be an integer from 1 to {MAX_NODES}, not {safe(repr(value))[:40]}")
        return 1
    if nodes and value > nodes:
        errors.add("quorum", f"{value} passes needed but only {nodes} node(s) are trusted")
    return value


def _requesters(errors: _Errors, value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list) or len(value) > MAX_NODES:
        errors.add("requesters", f"must be a list of at most {MAX_NODES} node ids")
        return None
    found = [_nid(errors, f"requesters[{i}]", v) for i, v in enumerate(value)]
    return tuple(dict.fromkeys(n for n in found if n is not None))


def _takeover(errors: _Errors, value: Any) -> float:
    """The takeover delay in seconds (``"10m"``, ``"90s"``, or a number of seconds)."""
    from .spec.durations import DurationError, parse_duration  # the spellings of definitions

    try:
        seconds = parse_duration(value)
    except DurationError as e:
        errors.add("takeover", safe(str(e))[:200])
        return DEFAULT_TAKEOVER
    if seconds < MIN_TAKEOVER:
        errors.add("takeover", f"must be at least {MIN_TAKEOVER:g}s (ledger times are whole seconds)")
        return DEFAULT_TAKEOVER
    return seconds


def parse_policy(table: Any, where: str, source: PolicySource | None = None) -> Policy:
    """Validate a ``[policy]`` table; raise :class:`PolicyError` listing every problem."""
    errors = _Errors(where)
    if not isinstance(table, dict):
        errors.add("policy", f"must be a table, not {type(table).__name__}")
        errors.raise_if_any()
    for key in sorted(set(table) - set(_KEYS)):
        errors.add(f"policy.{safe(key[:80])}", f"unknown key (expected one of: {', '.join(_KEYS)})")
    if "nodes" not in table:
        errors.add("policy.nodes", "missing: a policy names the nodes it trusts")
    nodes = _nodes(errors, table.get("nodes", {}))
    required = _required(errors, table["required"]) if "required" in table else None
    quorum = _quorum(errors, table.get("quorum", 1), len(nodes))
    requesters = _requesters(errors, table["requesters"]) if "requesters" in table else None
    takeover = _takeover(errors, table["takeover"]) if "takeover" in table else DEFAULT_TAKEOVER
    reproducible = _reproducible(errors, table["reproducible"]) if "reproducible" in table else ()
    errors.raise_if_any()
    return Policy(
        nodes, required, quorum, requesters, {}, source, takeover=takeover, reproducible=reproducible
    )


# -- finding the policy ref ----------------------------------------------------------------------
def _commit_of(repo: pygit2.Repository, name: str) -> str | None:
    try:
        ref = repo.references.get(name)
        if ref is None:
            return None
        target = ref.resolve().peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError):
        return None
    return str(target.id)


def _default_remote(repo: pygit2.Repository) -> str | None:
    names = list(repo.remotes.names())
    if "origin" in names:
        return "origin"
    return str(names[0]) if len(names) == 1 else None


def _config(repo: pygit2.Repository, key: str) -> str | None:
    try:
        value = repo.config[key]
    except (KeyError, ValueError, pygit2.GitError):
        return None
    return str(value) if value else None


def policy_ref(repo: pygit2.Repository) -> PolicySource | None:
    """Where the policy is read, or None when there is no such ref.

    ``jobs.policyRef`` (any ref or rev) must resolve: a configured but missing policy ref is an
    error, never a silent "no policy". Otherwise the remote's default branch as last fetched
    (the target of ``refs/remotes/<remote>/HEAD``), else the local default branch
    (``init.defaultBranch``, ``main``, ``master``). HEAD is never used: it may be the commit
    under test.
    """
    chosen = _config(repo, POLICY_REF_KEY)
    if chosen is not None:
        return _configured(repo, chosen)
    remote = _default_remote(repo)
    if remote is not None:
        head = repo.references.get(f"refs/remotes/{remote}/HEAD")
        if head is not None and head.type == pygit2.enums.ReferenceType.SYMBOLIC:
            target = str(head.target)
            sha = _commit_of(repo, target)
            if sha is not None:
                return PolicySource(target, sha, "remote default branch")
    for branch in dict.fromkeys(b for b in (_config(repo, "init.defaultBranch"), "main", "master") if b):
        name = f"refs/heads/{branch}"
        sha = _commit_of(repo, name)
        if sha is not None:
            return PolicySource(name, sha, "local default branch")
    return None


def _configured(repo: pygit2.Repository, chosen: str) -> PolicySource:
    for name in (chosen, f"refs/heads/{chosen}", f"refs/remotes/{chosen}", f"refs/tags/{chosen}"):
        if name.startswith("refs/"):
            sha = _commit_of(repo, name)
            if sha is not None:
                return PolicySource(name, sha, POLICY_REF_KEY)
    raise PolicyError.of([f"git config {POLICY_REF_KEY}: {safe(chosen)!r} is not a ref of this repository"])


def _policy_text(repo: pygit2.Repository, source: PolicySource) -> str | None:
    commit = repo.get(source.commit)
    assert isinstance(commit, pygit2.Commit)
    where = f"{DEFINITIONS_FILE} at {source}"
    try:
        entry = commit.tree[DEFINITIONS_FILE]
    except KeyError:
        return None
    kind, size = repo.odb.read_header(entry.id)
    if kind != pygit2.enums.ObjectType.BLOB:
        raise PolicyError.of([f"{where}: is not a file"])
    if size > MAX_POLICY_BYTES:
        raise PolicyError.of([f"{where}: is {size} bytes (limit {MAX_POLICY_BYTES})"])
    blob = repo.get(entry.id)
    assert isinstance(blob, pygit2.Blob)
    try:
        return blob.data.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError.of([f"{where}: is not UTF-8 text"]) from None


def load_repository_policy(repo: pygit2.Repository) -> Policy:
    """The repository's policy (without local trust): :meth:`Policy.none` when the policy ref
    or its ``[policy]`` table does not exist; :class:`PolicyError` when it does not validate.

    Fail closed: once this clone has seen a policy (:func:`seen_policy`), a missing policy ref,
    a tip without ``[policy]`` or a tip that is not a fast-forward of the last policy seen is a
    :class:`PolicyRewoundError` until a person accepts it (:func:`accept_policy`)."""
    source = policy_ref(repo)
    seen = seen_policy(repo)
    if source is None:
        if seen is not None:
            raise _rewound(f"the policy ref is gone; the last policy seen here is at {seen[:12]}")
        return Policy.none()
    if seen is not None and seen != source.commit and not _descends(repo, source.commit, seen):
        raise _rewound(
            f"policy ref {safe(source.ref)} at {source.commit[:12]} is not a fast-forward of the"
            f" last policy seen here ({seen[:12]})"
        )
    policy = _load_at(repo, source)
    if seen is not None and policy.everyone:
        raise _rewound(
            f"{DEFINITIONS_FILE} at {source} has no [policy]; the last policy seen here is at {seen[:12]}"
        )
    if not policy.everyone and seen != source.commit:
        _record_seen(repo, source.commit)
    return policy


def _load_at(repo: pygit2.Repository, source: PolicySource) -> Policy:
    # A commit never changes, so neither does its policy: parse it once per process (a watch
    # loop or a web page asks again and again).
    cached = _PARSED.get((source.ref, source.commit))
    if cached is None:
        try:
            cached = _parse_at(repo, source)
        except PolicyError as e:
            cached = e
        if len(_PARSED) >= 16:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[(source.ref, source.commit)] = cached
    if isinstance(cached, PolicyError):
        raise PolicyError(str(cached), cached.errors)
    return cached


_PARSED: dict[tuple[str, str], Policy | PolicyError] = {}


def _parse_at(repo: pygit2.Repository, source: PolicySource) -> Policy:
    text = _policy_text(repo, source)
    if text is None:
        return Policy(source=source, everyone=True)
    where = f"{DEFINITIONS_FILE} at {source}"
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        raise PolicyError.of([f"{where}: invalid TOML: {safe(str(e))[:300]}"]) from None
    if "policy" not in data:
        return Policy(source=source, everyone=True)
    return parse_policy(data["policy"], where, source)


# -- fail closed: the last policy this clone has seen ----------------------------------------
SEEN_FILE = "policy-seen"  # under <gitdir>/git-jobs/: the commit of the last policy seen here
_DESCENDS: dict[tuple[str, str], bool] = {}


def _seen_path(repo: pygit2.Repository) -> str:
    return os.path.join(str(repo.path).rstrip("/"), "git-jobs", SEEN_FILE)


def seen_policy(repo: pygit2.Repository) -> str | None:
    """The commit of the last policy ref tip with a ``[policy]`` this clone read, or None."""
    try:
        with open(_seen_path(repo), encoding="utf-8") as f:
            data = json.loads(f.read(4096))
    except (OSError, ValueError):
        return None
    commit = data.get("commit") if isinstance(data, dict) else None
    return commit if isinstance(commit, str) and cob.refs.is_oid(commit) else None


def _record_seen(repo: pygit2.Repository, commit: str | None) -> None:
    path = _seen_path(repo)
    try:
        if commit is None:
            os.unlink(path)
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps({"commit": commit}) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only clone (or nothing to remove) cannot remember: it only reads


def _descends(repo: pygit2.Repository, tip: str, seen: str) -> bool:
    key = (tip, seen)
    known = _DESCENDS.get(key)
    if known is None:
        try:
            known = bool(repo.descendant_of(pygit2.Oid(hex=tip), pygit2.Oid(hex=seen)))
        except (pygit2.GitError, KeyError, ValueError):
            known = False  # the last policy seen is not even here: not a fast-forward
        if len(_DESCENDS) >= 256:
            _DESCENDS.pop(next(iter(_DESCENDS)))
        _DESCENDS[key] = known
    return known


def _rewound(why: str) -> PolicyRewoundError:
    return PolicyRewoundError(
        f"policy refused: {why} (if a person meant this, `git jobs trust accept-policy` takes the"
        " policy ref as it is now)"
    )


def accept_policy(repo: pygit2.Repository) -> Policy:
    """A person takes the policy ref as it is now, whatever was seen before: its tip becomes
    the last policy seen (no policy there: none is remembered). Raises :class:`PolicyError`
    when it does not validate (nothing is recorded then)."""
    source = policy_ref(repo)
    policy = _load_at(repo, source) if source is not None else Policy.none()
    _record_seen(repo, None if source is None or policy.everyone else source.commit)
    return policy


def fetch_policy(repo: pygit2.Repository, remote: str, timeout: float = 120.0) -> str | None:
    """Fetch the policy ref from ``remote`` when it is that remote's branch (the default
    ``refs/remotes/<remote>/<branch>``, or ``jobs.policyRef`` naming one), as a fast-forward
    only: a rewound policy branch is refused by git and reported. Returns why it failed, or
    None (also when the policy ref is not the remote's)."""
    from cob import sync as cob_sync

    ref = _remote_policy_ref(repo, remote)
    if ref is None:
        return None
    branch = ref[len(f"refs/remotes/{remote}/") :]
    args = [
        "fetch",
        "--quiet",
        "--no-tags",
        "--no-write-fetch-head",
        "--no-recurse-submodules",
        remote,
        f"refs/heads/{branch}:{ref}",
    ]
    try:
        res = cob_sync.run_git(str(repo.path).rstrip("/"), args, timeout=timeout)
    except cob.TransportError as e:
        return f"cannot fetch the policy ref {safe(ref)}: {safe(str(e))}"
    if res.returncode != 0:
        why = cob_sync.first_error(res.stderr)
        return f"policy ref {safe(ref)} kept as it was (a fast-forward only): {safe(why)}"
    return None


def _remote_policy_ref(repo: pygit2.Repository, remote: str) -> str | None:
    """The policy ref when it is ``remote``'s branch (``refs/remotes/<remote>/<branch>``)."""
    prefix = f"refs/remotes/{remote}/"
    chosen = _config(repo, POLICY_REF_KEY)
    if chosen is not None:
        name = chosen if chosen.startswith("refs/") else f"refs/remotes/{chosen}"
        ok = name.startswith(prefix) and pygit2.reference_is_valid_name(name)
        return name if ok and not name.endswith("/HEAD") else None
    if remote != _default_remote(repo):
        return None
    head = repo.references.get(f"{prefix}HEAD")
    if head is None or head.type != pygit2.enums.ReferenceType.SYMBOLIC:
        return None
    target = str(head.target)
    return target if target.startswith(prefix) else None


def load_policy(repo: pygit2.Repository, *, local: bool = True) -> Policy:
    """The policy in force here: the repository's, plus this person's local trust."""
    from .trust import local_trust

    policy = load_repository_policy(repo)
    return policy.with_local(local_trust(repo)) if local else policy


def names(policy: Policy, nids: Iterable[str]) -> dict[str, str]:
    """{nid: name} for the given nodes that have a name under ``policy``."""
    return {nid: name for nid in nids if (name := policy.name_of(nid))}


# -- skips: the commit under test never skips what the policy source's definitions run -------
MAX_SKIP_DEPTH = 64  # needs followed when asking whether a job would be skipped
_SOURCE_DEFS: dict[str, Any] = {}


def skips_refused(
    repo: pygit2.Repository,
    policy: Policy,
    commit: str,
    names: Iterable[str],
    failed: Callable[[str], bool] = lambda name: False,
) -> frozenset[str]:
    """Of the required jobs ``names`` that ``commit``'s runs skipped, those a skip must not
    satisfy: the policy source's own definitions (``.git-jobs.toml`` at the policy ref) would
    run them for this commit. A pull request cannot skip its required check by giving it
    ``if = "false"`` or an unmeetable ``needs`` in its own tree.

    A skip counts when the source's definition of the job skips it too: its ``if`` is false
    for this commit (a condition on the ref or on outcomes, which a reader cannot see, is taken
    as the source's to make), a need it has *there* failed (``failed``) or would be skipped
    there. A job the source does not define counts its skip only when it is required merely
    because the commit declares it (the commit could as well have left it out). No repository
    policy: every skip counts, as every node does.
    """
    names = list(names)
    source = policy.source
    if not names or policy.everyone or source is None:
        return frozenset()
    defs = _source_definitions(repo, source.commit)
    if defs is False:
        return frozenset(names)  # the source's definitions do not parse: nothing may skip
    there = _Skips(repo, commit, defs, failed)
    refused = set()
    for name in names:
        if defs is None or defs.get(name) is None:
            if policy.required is not None and name in policy.required:
                refused.add(name)
        elif not there.skipped(name, 0):
            refused.add(name)
    return frozenset(refused)


class _Skips:
    """Would the policy source's definitions skip a job of ``commit``?"""

    def __init__(
        self, repo: pygit2.Repository, commit: str, defs: Any, failed: Callable[[str], bool]
    ) -> None:
        self.repo, self.commit, self.defs, self.failed = repo, commit, defs, failed
        self._paths: list[list[str] | None] = []

    def paths(self) -> list[str] | None:
        from .spec.conditions import changed_paths

        if not self._paths:
            self._paths.append(changed_paths(self.repo, self.commit) if self.commit in self.repo else [])
        return self._paths[0]

    def skipped(self, name: str, depth: int) -> bool:
        d = self.defs.get(name)
        if d is None or depth > MAX_SKIP_DEPTH:
            return False
        for need in d.needs:
            if d.need_state(need) == "succeeded" and (self.failed(need) or self.skipped(need, depth + 1)):
                return True
        return d.when is not None and _maybe(d.when, self.paths) is not True


def _source_definitions(repo: pygit2.Repository, commit: str) -> Any:
    """The definitions at the policy source (None: no file; False: they do not parse)."""
    from .errors import DefinitionError
    from .spec.definitions import load_definitions

    if commit not in _SOURCE_DEFS:
        try:
            found: Any = load_definitions(repo, commit)
        except DefinitionError:
            found = False
        if len(_SOURCE_DEFS) >= 16:
            _SOURCE_DEFS.pop(next(iter(_SOURCE_DEFS)))
        _SOURCE_DEFS[commit] = found
    return _SOURCE_DEFS[commit]


def _maybe(node: tuple[object, ...], paths: Callable[[], list[str] | None]) -> bool | None:
    """An ``if`` expression in three values: None where it depends on what a reader cannot
    know (the ref a node reached the commit by, the outcomes of needs on that node)."""
    import fnmatch

    kind = node[0]
    if kind == "const":
        return bool(node[1])
    if kind == "not":
        inner = _maybe(node[1], paths)  # type: ignore[arg-type]
        return None if inner is None else not inner
    if kind in ("and", "or"):
        left = _maybe(node[1], paths)  # type: ignore[arg-type]
        right = _maybe(node[2], paths)  # type: ignore[arg-type]
        short = kind == "or"  # True decides an "or", False an "and"
        if left is short or right is short:
            return short
        return None if left is None or right is None else not short
    if node[1] == "changed":
        found = paths()
        return found is None or any(fnmatch.fnmatchcase(p, str(node[2])) for p in found)
    return None
