"""Nodes by the names people know them by: the policy's names and this person's local trust.

`status` prints a trusted node by its name (a local trust name wins over the policy's, see
:attr:`jobs.policy.Policy.trusted`); everything that takes a node from a person — ``git jobs
logs REV:JOB --node bob`` — accepts that same name, and every view (the web page, the static
report) shows it in place of the NID.
"""

from __future__ import annotations

from .errors import InvalidInputError, PolicyError
from .policy import Policy
from .store import Jobs
from .text import safe


def node_names(store: Jobs, policy: Policy | None = None) -> dict[str, str]:
    """NID → name of every named trusted node (empty when the policy does not validate: the
    names are lost, nothing else; `status` reports the policy's problems)."""
    if policy is None:
        try:
            policy = store.policy()
        except PolicyError:
            return {}
    return {nid: name for nid in policy.trusted if (name := policy.name_of(nid))}


def resolve_node(store: Jobs, text: str, policy: Policy | None = None) -> str:
    """The NID a person means by ``text``: a trusted node's name exactly as `status` prints
    it, else ``text`` itself (a NID, ``did:key:`` form or prefix, resolved by the caller)."""
    wanted = text.strip()
    found = [nid for nid, name in node_names(store, policy).items() if name == wanted]
    if len(found) > 1:
        raise InvalidInputError(f"{len(found)} trusted nodes are named {safe(wanted)!r}: give a NID")
    return found[0] if found else wanted


__all__ = ["node_names", "resolve_node"]
