"""Ref families beside the cobs: ``refs/namespaces/<NID>/refs/<kind>/<leaf>``.

Some per-node data travels with the cobs but must not be reachable from any object's change
DAG — because it has to be prunable, which a signed, append-only DAG never is. A *family* is
such a set of refs (e.g. an application's run logs in monthly buckets). Sync treats
its refs like cob refs: fetched only as fast-forwards whose tip is signed by the namespace's
node, pushed only from our own namespace, never forced. The one difference is pruning: a
family's leaves sort in time order, and leaves before ``pruned_before`` are neither fetched
nor kept, and our own are deleted from the remote on push — a whole ref goes, and every ref
that remains still only moves forward.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pygit2

from .reader import RefReader
from .refs import NAMESPACES

_KIND = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


@dataclass(frozen=True, slots=True)
class RefFamily:
    """``kind``: the directory under ``refs/``; ``leaf``: the valid leaf names (a full match);
    ``pruned_before``: leaves sorting before it are pruned (not fetched, deleted on push);
    ``not_after``: leaves sorting after it cannot be valid yet (e.g. a month to come) and are
    not fetched; ``tip_problem``: the shape a tip must have (why not, or None), so that a commit
    of another family — an index, a change — signed by the same key is not taken as one."""

    kind: str
    leaf: re.Pattern[str]
    pruned_before: str | None = None
    not_after: str | None = None
    tip_problem: Callable[[pygit2.Repository, str, str], str | None] | None = field(
        default=None, compare=False
    )

    def __post_init__(self) -> None:
        if not _KIND.match(self.kind) or self.kind in ("cobs", "sigrefs"):
            raise ValueError(f"not a ref family name: {self.kind!r}")

    def ref(self, nid: str, leaf: str) -> str:
        return f"{NAMESPACES}{nid}/refs/{self.kind}/{leaf}"

    def prefix(self, nid: str) -> str:
        return f"{NAMESPACES}{nid}/refs/{self.kind}/"

    def parse(self, name: str) -> tuple[str, str] | None:
        """(nid, leaf) of one of this family's ref names, or None."""
        if not name.startswith(NAMESPACES):
            return None
        parts = name[len(NAMESPACES) :].split("/")
        if len(parts) != 4 or parts[1] != "refs" or parts[2] != self.kind:
            return None
        if not parts[0] or not self.leaf.fullmatch(parts[3]):
            return None
        return parts[0], parts[3]

    def is_pruned(self, leaf: str) -> bool:
        return self.pruned_before is not None and leaf < self.pruned_before

    def is_future(self, leaf: str) -> bool:
        return self.not_after is not None and leaf > self.not_after


def family_of(name: str, families: tuple[RefFamily, ...]) -> tuple[RefFamily, str, str] | None:
    """(family, nid, leaf) of a ref name in one of ``families``, or None."""
    for family in families:
        parsed = family.parse(name)
        if parsed is not None:
            return family, parsed[0], parsed[1]
    return None


def family_refs(repo: pygit2.Repository, family: RefFamily, nid: str | None = None) -> dict[str, str]:
    """{ref: target} of a family's refs (of one namespace, or of all).

    Read like :class:`~cob.refs.RefReader` reads cob refs — loose ref files first, then
    ``packed-refs`` — so listing a few buckets never costs a walk over every job ref.
    """
    reader = RefReader(repo)
    if reader._reftable:
        names = (n for n in repo.listall_references() if family.parse(n) is not None)
        found = {n: str(repo.references[n].resolve().target) for n in names}
        return {n: t for n, t in found.items() if not nid or n.startswith(family.prefix(nid))}
    out: dict[str, str] = {}
    nids = [nid] if nid else reader.namespaces()
    for one in nids:
        directory = os.path.join(reader.gitdir, family.prefix(one))
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for entry in os.scandir(directory):
                name = family.ref(one, entry.name)
                target = reader._read_loose(entry.path) if family.parse(name) else None
                if target is not None:
                    out[name] = target
    for name, target in reader._packed_refs().items():
        if name not in out and family.parse(name) and (not nid or name.startswith(family.prefix(nid))):
            out[name] = target
    return out
