"""Push: this node's own index ref and family refs, never forced; git's rejections as refusals."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection, Mapping

import pygit2

from .. import layout
from ..errors import TransportError
from ..family import RefFamily, family_of, family_refs
from ..gitrun import DEFAULT_IDLE, DEFAULT_TIMEOUT, describe, first_error, run_git
from ..refs import is_oid, parse_ref
from ..sigrefs import (
    index_ref,
    lookup,
    tree_of,
)
from .checks import (
    _has_commit,
    _local_target,
)
from .listing import _check_remote, _gitdir, _pruned
from .results import PUSH, PushResult, RefUpdate, Refusal, RefusalKind


def own_refs(repo: pygit2.Repository, nid: str, typenames: Collection[str] | None = None) -> dict[str, str]:
    """{ref: oid} of this node's index ref (it holds every type: ``typenames`` is kept for
    callers of the per-object layout). Reads one ref, whatever the repository holds."""
    name = index_ref(nid)
    target = _local_target(repo, name)
    return {name: target} if target is not None else {}


def push_refspecs(nid: str, typenames: Collection[str] | None = None) -> list[str]:
    """The non-forced refspec that pushes ``nid``'s index ref."""
    name = index_ref(nid)
    return [f"{name}:{name}"]


_PORCELAIN = re.compile(r"^(?P<flag>[ +\-*=!])\t(?P<src>[^:\t]*):(?P<dst>[^\t]+)\t(?P<summary>.*)$")


def push(
    repo: pygit2.Repository,
    remote: str,
    nid: str,
    *,
    typenames: Collection[str],
    remote_refs: Mapping[str, str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    idle: float | None = DEFAULT_IDLE,
    families: tuple[RefFamily, ...] = (),
) -> PushResult:
    """Push ``nid``'s refs of ``typenames``, never forced; report what the remote refused.

    ``remote_refs`` (the remote's cob refs, as listed by a fetch just before) lets a push with
    nothing new skip the connection entirely. ``families``: our own refs of those families are
    pushed too (never forced), and our pruned ones the remote still lists are deleted there.
    """
    _check_remote(remote)
    result = PushResult()
    mine = own_refs(repo, nid, typenames)
    specs = push_refspecs(nid, typenames) if mine else []
    for family in families:
        ours = {n: o for n, o in family_refs(repo, family, nid).items() if not _pruned(n, families)}
        mine.update(ours)
        if ours:
            specs.append(f"{family.prefix(nid)}*:{family.prefix(nid)}*")
    deletions = _deletions(nid, remote_refs, families)
    specs.extend(f":{name}" for name in deletions)
    legacy = _legacy_deletions(repo, nid, remote_refs)
    if not specs and not legacy:
        return result
    index = index_ref(nid)
    if remote_refs is not None and not deletions and all(remote_refs.get(n) == o for n, o in mine.items()):
        specs = []  # nothing new to send
    if specs:
        _push(repo, remote, specs, [], mine, remote_refs, result, timeout, idle)
    index_there = (remote_refs or {}).get(index) == mine.get(index) or any(
        u.ref == index for u in result.pushed
    )
    if index_there and mine.get(index) is not None:
        _mark_published(repo, mine[index])
    if legacy and index_there and mine.get(index) is not None:
        # Only once our index is on the remote, and each only if it still holds the value our
        # index covers (a lease): the remote never loses what no index of ours holds there.
        leases = [f"--force-with-lease={name}:{oid}" for name, oid in legacy.items()]
        _push(repo, remote, [f":{name}" for name in legacy], leases, mine, remote_refs, result, timeout, idle)
    return result


def _mark_published(repo: pygit2.Repository, tip: str) -> None:
    """Remember that a remote holds our index at ``tip`` (:attr:`cob.layout.Layout.published_ref`)."""
    with contextlib.suppress(pygit2.GitError, ValueError, OSError):
        repo.references.create(layout.current().published_ref, pygit2.Oid(hex=tip), force=True)


def _push(
    repo: pygit2.Repository,
    remote: str,
    specs: list[str],
    options: list[str],
    mine: Mapping[str, str],
    remote_refs: Mapping[str, str] | None,
    result: PushResult,
    timeout: float | None,
    idle: float | None,
) -> None:
    # Level-1 packing: a family's blobs (run logs, up to megabytes) are deflated again for the
    # pack; zlib's fastest level costs a third of git's default for a slightly larger transfer
    # (a hub that unpacks a small push stores loose objects at level 1 anyway).
    args = ["-c", "pack.compression=1", "push", "--porcelain", "--progress", "--no-verify", *options, remote]
    res = run_git(_gitdir(repo), [*args, *specs], timeout=timeout, idle=idle)
    seen = _read_porcelain(repo, res.stdout, mine, remote_refs, result)
    if res.returncode != 0 and not (seen and result.refused):
        # git exits 1 when it refused refs (reported above); anything else is the transport.
        raise TransportError(f"cannot push to {describe(remote)}: {first_error(res.stderr)}")


def _legacy_deletions(
    repo: pygit2.Repository, nid: str, remote_refs: Mapping[str, str] | None
) -> dict[str, str]:
    """{ref: remote oid} of our own per-object refs (the layout before the index) the remote
    still lists whose value our index holds (the same tip, or an older one of its history)."""
    from ..migrate import covered

    if remote_refs is None:
        return {}
    tree = tree_of(repo, _local_target(repo, index_ref(nid)))
    out = {}
    for name, oid in sorted(remote_refs.items()):
        parsed = parse_ref(name)
        mine = parsed is not None and parsed[0] == nid and _has_commit(repo, oid)
        if mine and parsed and covered(repo, lookup(repo, tree, parsed[1], parsed[2]), oid):
            out[name] = oid
    return out


def _read_porcelain(
    repo: pygit2.Repository,
    stdout: str,
    mine: Mapping[str, str],
    remote_refs: Mapping[str, str] | None,
    result: PushResult,
) -> bool:
    """Record what ``git push --porcelain`` says of each ref; False when it said nothing."""
    seen = False
    for line in stdout.splitlines():
        m = _PORCELAIN.match(line)
        if m is None:
            continue
        seen = True
        flag, src, dst, summary = m["flag"], m["src"], m["dst"], m["summary"]
        local = mine.get(src) or _local_target(repo, src)
        old = remote_refs.get(dst) if remote_refs is not None else None
        if flag == "=":
            continue
        if flag == "-":
            result.deleted.append(dst)
        elif flag == "!":
            why = re.sub(r"^\[[^\]]*\]\s*", "", summary).strip("() ") or summary
            kind, reason = _push_refusal(why)
            result.refused.append(Refusal(dst, reason, PUSH, kind, local, old))
        elif local is not None and flag == "*":
            result.pushed.append(RefUpdate(dst, None, local))
        elif local is not None:
            if old is None and ".." in summary:
                old = _expand(repo, summary.split("..", 1)[0].strip())
            result.pushed.append(RefUpdate(dst, old, local))
    return seen


# What `git push --porcelain` says when another push moved the same ref at the same moment:
# harmless (our tip is there or the next sync sends it), so not a hook's refusal.
_LOST_RACE = ("failed to update ref", "cannot lock ref", "incorrect old value", "failed to lock")


def _push_refusal(why: str) -> tuple[RefusalKind, str]:
    """The kind and one-line reason of a ref the remote refused, from git's porcelain summary."""
    if "fast-forward" in why or "fetch first" in why:
        return RefusalKind.NON_FAST_FORWARD, (
            f"the remote refused it ({why}); the remote has changes this node lacks: fetch, then sync again"
        )
    if any(marker in why for marker in _LOST_RACE):
        return RefusalKind.BUSY, (
            f"another push updated it at the same moment ({why}); the next sync completes"
        )
    return RefusalKind.REJECTED, f"the remote refused it ({why})"


def _deletions(nid: str, remote_refs: Mapping[str, str] | None, families: tuple[RefFamily, ...]) -> list[str]:
    """Our own pruned family refs that the remote still lists (known only after a listing)."""
    if remote_refs is None:
        return []
    out = []
    for name in sorted(remote_refs):
        found = family_of(name, families)
        if found is not None and found[1] == nid and found[0].is_pruned(found[2]):
            out.append(name)
    return out


def _expand(repo: pygit2.Repository, short: str) -> str | None:
    if is_oid(short):
        return short
    try:
        return str(repo.revparse_single(short).id)
    except (KeyError, ValueError, pygit2.GitError):
        return None
