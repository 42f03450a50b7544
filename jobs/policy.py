"""Whose runs count: the trust :class:`Policy`, read from a *trusted ref*, never from the commit
under test.

The ledger proves who recorded a run; the policy decides whose runs decide a merge. It is the
``[policy]`` table of ``.git-jobs.toml`` at the tip of the **policy ref** — by default the
remote's default branch as fetched (``refs/remotes/<remote>/HEAD``), else the local default
branch; ``git config jobs.policyRef`` chooses another. It is never read from HEAD or from the
commit whose status is asked: a pull request that adds its own key to ``[policy]`` in its tree
changes nothing until a maintainer merges it into the policy ref.

The table itself (its keys, :class:`Policy`, :func:`parse_policy`) is :mod:`jobs.spec.policy`,
read through the one reader of the file (:mod:`jobs.spec.file`). Local trust
(:mod:`jobs.trust`) adds nodes for one person on top of it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pygit2

import cob

from . import paths
from .errors import PolicyError, PolicyRewoundError
from .spec.file import DEFINITIONS_FILE, read_tables
from .spec.policy import DEFAULT_TAKEOVER as DEFAULT_TAKEOVER
from .spec.policy import MAX_NODES as MAX_NODES
from .spec.policy import Policy as Policy
from .spec.policy import PolicySource as PolicySource
from .spec.policy import check_node_name as check_node_name
from .spec.policy import parse_policy as parse_policy
from .text import safe

POLICY_REF_KEY = "jobs.policyRef"


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
    (the target of ``refs/remotes/<remote>/HEAD``; without it — a clone of a hub that was still
    empty — the remote's ``init.defaultBranch``, ``main`` or ``master``), else the local default branch
    (``init.defaultBranch``, ``main``, ``master``). HEAD is never used: it may be the commit
    under test.
    """
    chosen = _config(repo, POLICY_REF_KEY)
    if chosen is not None:
        return _configured(repo, chosen)
    remote = _default_remote(repo)
    target = _remote_default(repo, remote) if remote is not None else None
    sha = _commit_of(repo, target) if target is not None else None
    if target is not None and sha is not None:
        return PolicySource(target, sha, "remote default branch")
    for branch in _default_branches(repo):
        name = f"refs/heads/{branch}"
        sha = _commit_of(repo, name)
        if sha is not None:
            return PolicySource(name, sha, "local default branch")
    return None


def _default_branches(repo: pygit2.Repository) -> list[str]:
    return list(dict.fromkeys(b for b in (_config(repo, "init.defaultBranch"), "main", "master") if b))


def _remote_default(repo: pygit2.Repository, remote: str) -> str | None:
    """``remote``'s default branch as fetched: the target of ``refs/remotes/<remote>/HEAD``, or,
    when the clone has none (it was made while the hub was empty, and ``git fetch`` never sets
    it), the first of the default branch names it has fetched."""
    prefix = f"refs/remotes/{remote}/"
    head = repo.references.get(f"{prefix}HEAD")
    if head is not None and head.type == pygit2.enums.ReferenceType.SYMBOLIC:
        target = str(head.target)
        return target if target.startswith(prefix) else None
    for branch in _default_branches(repo):
        if _commit_of(repo, prefix + branch) is not None:
            return prefix + branch
    return None


def _configured(repo: pygit2.Repository, chosen: str) -> PolicySource:
    for name in (chosen, f"refs/heads/{chosen}", f"refs/remotes/{chosen}", f"refs/tags/{chosen}"):
        if name.startswith("refs/"):
            sha = _commit_of(repo, name)
            if sha is not None:
                return PolicySource(name, sha, POLICY_REF_KEY)
    raise PolicyError.of([f"git config {POLICY_REF_KEY}: {safe(chosen)!r} is not a ref of this repository"])


def tables_at(
    repo: pygit2.Repository, source: PolicySource, error: Callable[[str], Exception] | None = None
) -> Mapping[str, Any] | None:
    """The tables of ``.git-jobs.toml`` at the policy ref's tip (None: no file there); a file
    that cannot be read is ``error`` (default :class:`PolicyError`) naming the ref."""
    commit = repo.get(source.commit)
    assert isinstance(commit, pygit2.Commit)
    return read_tables(repo, commit, f"{DEFINITIONS_FILE} at {source}", error or _policy_error)


def _policy_error(message: str) -> PolicyError:
    return PolicyError.of([message])


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
    data = tables_at(repo, source)
    if data is None or "policy" not in data:
        return Policy(source=source, everyone=True)
    return parse_policy(data["policy"], f"{DEFINITIONS_FILE} at {source}", source)


# -- fail closed: the last policy this clone has seen ----------------------------------------
SEEN_FILE = "policy-seen"  # under <gitdir>/git-jobs/: the commit of the last policy seen here
_DESCENDS: dict[tuple[str, str], bool] = {}


def _seen_path(repo: pygit2.Repository) -> str:
    return str(paths.state_file(repo, SEEN_FILE))


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
    if ref is None and remote == _default_remote(repo) and _config(repo, POLICY_REF_KEY) is None:
        ref = _discover_default(repo, remote, timeout)  # a clone made while the hub was empty
    if ref is None:
        return None
    branch = ref[len(f"refs/remotes/{remote}/") :]
    args = [*cob_sync.QUIET_FETCH, remote, f"refs/heads/{branch}:{ref}"]
    try:
        res = cob_sync.run_git(str(repo.path).rstrip("/"), args, timeout=timeout)
    except cob.TransportError as e:
        return f"cannot fetch the policy ref {safe(ref)}: {safe(str(e))}"
    if res.returncode != 0:
        why = cob_sync.first_error(res.stderr)
        return f"policy ref {safe(ref)} kept as it was (a fast-forward only): {safe(why)}"
    return None


def _discover_default(repo: pygit2.Repository, remote: str, timeout: float) -> str | None:
    """``refs/remotes/<remote>/<branch>`` for the remote's default branch, asked of the remote
    (``ls-remote --symref``: its HEAD when that names a branch it has, else the first of
    ``init.defaultBranch``, ``main``, ``master`` it has); None when it has none (still empty)."""
    from cob import sync as cob_sync

    wanted = [f"refs/heads/{b}" for b in _default_branches(repo)]
    try:
        res = cob_sync.run_git(
            str(repo.path).rstrip("/"), ["ls-remote", "--symref", remote, "HEAD", *wanted], timeout=timeout
        )
    except cob.TransportError:
        return None
    if res.returncode != 0:
        return None
    symref, heads = None, set()
    for line in res.stdout.splitlines()[:100]:
        if line.startswith("ref: ") and line.endswith("\tHEAD"):
            symref = line[len("ref: ") : -len("\tHEAD")]
        elif "\t" in line:
            heads.add(line.split("\t", 1)[1])
    found = [symref] if symref in heads else [h for h in wanted if h in heads]
    if not found or not pygit2.reference_is_valid_name(found[0]):
        return None
    return f"refs/remotes/{remote}/{found[0][len('refs/heads/') :]}"


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
    return _remote_default(repo, remote)


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
