"""Per-fetch bounds on what is new to this repository (:class:`Limits`)."""

from __future__ import annotations

from dataclasses import dataclass

# New refs and namespaces taken from one remote per fetch; the rest is refused ("limit") and
# taken by a later fetch. A hub can hold any number of namespaces; without these bounds one
# pusher with throwaway keys would make every peer download, verify and then carry them all.
MAX_NEW_NAMESPACES = 256
MAX_NEW_REFS = 20_000
# Objects one node's index may add or move in one fetch, and index commits between its old and
# new tip that are walked: bounds on what one namespace costs to check.
MAX_NEW_ENTRIES = 1_000_000
# New refs of one ref family (log buckets) taken from one namespace per fetch, newest first:
# a hub pusher's thousands of junk buckets under a node's namespace cost a few per sync (and
# once each: cob.refused), never the node's index or its current bucket.
MAX_NEW_FAMILY_REFS = 32
# What a namespace whose node the caller does not trust may hold: objects in its index, and
# index commits between the tip we have and its new tip. A stranger's index is data nobody's
# verdict reads; beyond these it is refused as ``too-large`` (and remembered).
MAX_UNTRUSTED_ENTRIES = 10_000
MAX_UNTRUSTED_CHAIN = 10_000


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-fetch bounds on what is new to this repository (see :data:`MAX_NEW_REFS`)."""

    new_namespaces: int = MAX_NEW_NAMESPACES
    new_refs: int = MAX_NEW_REFS
    new_entries: int = MAX_NEW_ENTRIES
    new_family_refs: int = MAX_NEW_FAMILY_REFS
    untrusted_entries: int = MAX_UNTRUSTED_ENTRIES
    untrusted_chain: int = MAX_UNTRUSTED_CHAIN
