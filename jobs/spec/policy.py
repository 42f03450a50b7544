"""The ``[policy]`` table of ``.git-jobs.toml``: whose runs count (:class:`Policy`).

    [policy]
    nodes = { "z6Mk…" = "alice-linux", "z6Mk…" = "bob-arm" }  # trusted nodes and their names
    required = ["build", "test"]   # default: every job the commit's own definitions declare
    quorum = 1                     # trusted passes each required job needs
    requesters = ["z6Mk…"]         # who may request work (default: nobody)
    takeover = "10m"               # a job's next-ranked node runs it when its assigned one has
                                   # not started it that long after its release (jobs.assign)
    reproducible = ["build"]       # jobs whose trusted nodes' outputs must agree
    secrets_for_requests = false   # node secrets also for commits only a requester asked for

Validation is strict and reports *every* problem at once (:class:`~jobs.errors.PolicyError`):
a policy that does not parse must not silently become "no policy, every node counts". Where the
table is read (the policy ref, never the commit under test) is :mod:`jobs.policy`'s concern.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cob

from ..errors import PolicyError
from ..jobtype import check_name
from ..text import safe, unsafe_chars
from .durations import DurationError, parse_duration

MAX_REQUIRED = 200  # as many as one file may define jobs
MAX_NODES = 1000  # trusted nodes (and requesters) in one policy
MAX_NODE_NAME = 64  # characters of a node's human name
MAX_ERRORS = 50  # errors listed for one policy; the rest are counted
DEFAULT_TAKEOVER = 600.0  # seconds: a dead node delays its share of the work this long
MIN_TAKEOVER = 1.0  # ledger times are whole seconds: a shorter delay would be noise
_KEYS = ("nodes", "required", "quorum", "requesters", "takeover", "reproducible", "secrets_for_requests")


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
    # Node secrets also for commits only a requester asked for (jobs.node.secrets): default no.
    secrets_for_requests: bool = False

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
            secrets_for_requests=self.secrets_for_requests,
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
    secrets = table.get("secrets_for_requests", False)
    if not isinstance(secrets, bool):
        errors.add("secrets_for_requests", "must be true or false")
    errors.raise_if_any()
    return Policy(
        nodes,
        required,
        quorum,
        requesters,
        {},
        source,
        takeover=takeover,
        reproducible=reproducible,
        secrets_for_requests=secrets is True,
    )
