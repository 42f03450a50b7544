"""Listing a remote's cob refs (``git ls-remote``) and naming who owns a listed ref."""

from __future__ import annotations

from collections.abc import Collection

import pygit2

from ..errors import TransportError
from ..family import RefFamily, family_of
from ..gitrun import DEFAULT_IDLE, DEFAULT_TIMEOUT, describe, first_error, run_git
from ..refs import NAMESPACES, common_dir, is_oid, parse_ref
from ..sigrefs import (
    parse_index_ref,
)
from .localhub import listed, local_hub


def _gitdir(repo: pygit2.Repository) -> str:
    return common_dir(repo)  # refs and objects live there, also for a linked worktree


# -- listing ---------------------------------------------------------------------------------
def ls_remote(
    repo: pygit2.Repository,
    remote: str,
    typenames: Collection[str] | None = None,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    idle: float | None = DEFAULT_IDLE,
    families: tuple[RefFamily, ...] = (),
) -> dict[str, str]:
    """{ref: oid} of the remote's cob refs (of ``typenames``, or of every type), and of
    ``families`` (every leaf, pruned ones too: push deletes our own)."""
    return _listing(repo, remote, typenames, timeout, idle, families, None, local_hub(repo, remote))[0]


def _listing(
    repo: pygit2.Repository,
    remote: str,
    typenames: Collection[str] | None,
    timeout: float | None,
    idle: float | None,
    families: tuple[RefFamily, ...],
    legacy_of: str | None,
    hub: pygit2.Repository | None = None,
) -> tuple[dict[str, str], int]:
    """:func:`ls_remote`, and how many listed refs were ignored. ``legacy_of``: keep per-object
    refs (the layout before the index) of that namespace only — the only ones a sync uses (our
    own, for push to delete) — so a hub's 200,000 old-layout refs cost a line each, not a
    parse, a dict entry and a check each. (Git's ``ls-remote`` sends no protocol v2
    ``ref-prefix`` for a pattern, so the remote still sends every name under the prefix.)
    ``hub``: the remote opened in place (:mod:`cob.sync.localhub`), read without git."""
    _check_remote(remote)
    out: dict[str, str] = {}
    ignored = 0
    own_legacy = None if legacy_of is None else f"{NAMESPACES}{legacy_of}/refs/cobs/"
    for oid, name in _lines(repo, remote, timeout, idle) if hub is None else listed(hub):
        if own_legacy is not None and "/refs/cobs/" in name and not name.startswith(own_legacy):
            ignored += 1  # another node's per-object ref: never fetched
            continue
        parsed = parse_ref(name)
        if is_oid(oid) and parse_index_ref(name) is not None:
            out[name] = oid
            continue
        if families and parsed is None and is_oid(oid) and family_of(name, families):
            out[name] = oid
            continue
        if parsed is None or not is_oid(oid):
            ignored += 1
            continue
        if typenames is not None and parsed[1] not in typenames:
            ignored += 1
            continue
        out[name] = oid
    return out, ignored


def _lines(
    repo: pygit2.Repository, remote: str, timeout: float | None, idle: float | None
) -> list[tuple[str, str]]:
    """(oid, name) of the remote's refs under ``refs/namespaces/``, listed by ``git ls-remote``."""
    res = run_git(
        _gitdir(repo), ["ls-remote", "--refs", remote, NAMESPACES + "*"], timeout=timeout, idle=idle
    )
    if res.returncode != 0:
        raise TransportError(f"cannot list {describe(remote)}: {first_error(res.stderr)}")
    return [(oid, name) for oid, _, name in (line.partition("\t") for line in res.stdout.splitlines())]


def _check_remote(remote: str) -> None:
    if not remote or remote.startswith("-") or "\n" in remote or "\0" in remote:
        raise TransportError(f"not a remote name or URL: {remote!r}")


def _pruned(name: str, families: tuple[RefFamily, ...]) -> bool:
    found = family_of(name, families) if families else None
    return found is not None and found[0].is_pruned(found[2])


def _owner(name: str, families: tuple[RefFamily, ...]) -> tuple[str, str | None, str]:
    """(nid, typename, object id) of a fetched ref; a family ref has neither type nor object
    (its tip must be signed by the namespace's node like any other)."""
    parsed = parse_ref(name)
    if parsed is not None:
        return parsed
    nid = parse_index_ref(name)
    if nid is not None:
        return nid, None, ""
    found = family_of(name, families)
    assert found is not None
    return found[1], None, ""
