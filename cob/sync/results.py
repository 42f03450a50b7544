"""What a fetch or a push did: the refs moved, the refs left as they were (:class:`Refusal`), and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ..refs import parse_ref
from ..sigrefs import (
    parse_index_ref,
)

FETCH = "fetch"
PUSH = "push"


@dataclass(frozen=True, slots=True)
class RefUpdate:
    """A ref that moved: ``old`` is None when it was created."""

    ref: str
    old: str | None
    new: str

    def to_json(self) -> dict[str, object]:
        """``type`` and ``object`` are null for an index ref (it holds every object of its node)."""
        parsed = parse_ref(self.ref)
        nid, typename, object_id = parsed if parsed else (parse_index_ref(self.ref), None, None)
        return {
            "ref": self.ref,
            "nid": nid,
            "type": typename,
            "object": object_id,
            "old": self.old,
            "new": self.new,
        }


class RefusalKind(StrEnum):
    """Why a ref was left as it is, as a stable code (the values are the JSON ``kind``)."""

    BEHIND = "behind"
    DIVERGED = "diverged"
    NOT_A_COMMIT = "not-a-commit"
    BAD_TIP = "bad-tip"
    BAD_NAMESPACE = "bad-namespace"
    LIMIT = "limit"
    OWN_NAMESPACE = "own-namespace"
    MISSING = "missing"
    BUSY = "busy"
    NON_FAST_FORWARD = "non-fast-forward"
    REJECTED = "rejected"
    TOO_LARGE = "too-large"


# Verdicts on the data itself: unchanged while neither the remote's ref nor ours moves, so
# remembered (cob.refused) and not downloaded or checked again.
REMEMBERED_KINDS = frozenset(
    {
        RefusalKind.BAD_TIP,
        RefusalKind.NOT_A_COMMIT,
        RefusalKind.BAD_NAMESPACE,
        RefusalKind.DIVERGED,
        RefusalKind.TOO_LARGE,
    }
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A ref left as it is, and why.

    ``side`` is ``"fetch"`` (a peer's ref we did not take) or ``"push"`` (a ref the remote did
    not take). ``kind`` is a stable short code: ``behind``, ``diverged``, ``not-a-commit``,
    ``bad-tip`` (tip not validly signed by the namespace's node), ``bad-namespace`` (not a
    NID), ``limit`` (over :class:`Limits`, taken by a later fetch), ``own-namespace`` (the remote
    has changes of ours we do not have and cannot verify), ``non-fast-forward``, ``rejected``
    (by the remote, e.g. a hook). ``local`` / ``remote`` are the two oids when known.
    """

    ref: str
    reason: str
    side: str
    kind: RefusalKind
    local: str | None = None
    remote: str | None = None

    def __str__(self) -> str:
        return f"{self.side}: {self.ref}: {self.reason}"

    def to_json(self) -> dict[str, object]:
        return {
            "ref": self.ref,
            "side": self.side,
            "kind": str(self.kind),
            "reason": self.reason,
            "local": self.local,
            "remote": self.remote,
        }


@dataclass(slots=True)
class FetchResult:
    updated: list[RefUpdate] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    remote_refs: dict[str, str] = field(default_factory=dict)  # every cob ref the remote had
    skipped: int = 0  # remote refs outside the namespaces asked for (left untouched)
    # Our own index on the remote, signed by us but diverged from ours (a node that wrote
    # before its first sync after a reinstall): its objects are kept for Store.merge_own.
    own_index: str | None = None
    # Our own ref-family refs (e.g. log buckets) on the remote, signed by us but diverged from
    # ours (two copies of one key published into one bucket): {ref: remote tip}, objects kept
    # so that the caller can merge them (e.g. an application's own merge of its log buckets).
    own_families: dict[str, str] = field(default_factory=dict)
    # Refs refused before with the same values (cob.refused): skipped unread, only counted.
    remembered: int = 0
    # Refs listed that no fetch takes (other nodes' per-object refs, pruned or future leaves).
    ignored: int = 0
    # New family refs of a namespace beyond Limits.new_family_refs: taken by later fetches.
    deferred: int = 0


@dataclass(slots=True)
class PushResult:
    pushed: list[RefUpdate] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # pruned family refs removed from the remote
