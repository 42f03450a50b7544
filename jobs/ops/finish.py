"""``finish {run_id, reason, …}``: the signer finishes one of its own runs (FORMAT.md 11.1-11.3).

A new field of a finish is added here: the struct field (optional, default None, so older
finishes keep their bytes), its rule in :func:`check_evidence` (or its own check called from
:meth:`FinishRun.validate`), and what the fold keeps of it in :meth:`FinishRun.apply`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar

from cob import Reject
from cob.refs import is_oid

from ..model import Evidence, Reason
from ..text import safe
from .base import Checking, Folding, JobOp
from .fields import check_run_id

_REASONS = frozenset(r.value for r in Reason)
MAX_EXIT = 255


class FinishRun(JobOp, tag="finish"):
    """The signer finishes one of its own runs with a reason.

    ``log_blob``: the Git blob id of the run's published log (FORMAT.md 11.4), so a reader
    verifies the log against this signed op; ``exit``: the command's exit status (0..255,
    128+N when killed by signal N). Both are optional and omitted when absent, so a finish
    without them has the same bytes (and a job the same change ids) as before they existed.

    What the run ran under (issue 27; all optional, omitted when absent, so old finishes keep
    their bytes): ``defs``, the blob id of the ``.git-jobs.toml`` it ran; ``policy``, the tip
    of the policy ref the node read; ``tree``, the commit's tree id; ``outputs``, the Git tree
    id of the job's kept output files; ``env``, a short bounded description of the node (os,
    arch, its labels). Readers derive reproducibility and reuse from them (jobs.evidence).
    ``values``: the key/values the job wrote to ``$GIT_JOBS_OUTPUT`` (bounded: :func:`check_values`).
    """

    help: ClassVar[str] = "The signer finishes its own run: reason, log blob, exit, what it ran under."

    run_id: str
    reason: str
    log_blob: str | None = None
    exit: int | None = None
    defs: str | None = None
    policy: str | None = None
    tree: str | None = None
    outputs: str | None = None
    env: dict[str, str] | None = None
    values: dict[str, str] | None = None  # structured outputs ($GIT_JOBS_OUTPUT; issue 32)

    def validate(self, at: Checking) -> None:
        problem = check_run_id(self.run_id) or check_finish_extras(self.log_blob, self.exit)
        problem = problem or check_evidence(self)
        problem = problem or (check_values(self.values) if self.values is not None else None)
        if problem:
            raise Reject(problem)
        if self.reason not in _REASONS:
            raise Reject(f"unknown reason {self.reason!r}")
        if self.run_id in at.started:
            return
        # Only the node that started the run, in an ancestor change, may finish it: deciding by
        # ancestry, not by fold order, keeps the fold commutative.
        run = at.mine.get(self.run_id)
        if run is None or not any(at.dag.is_ancestor(c, at.change.oid) for c in run.start_changes):
            owner = at.state.owner_of(self.run_id, other_than=at.author)
            if owner is not None:
                raise Reject(f"run {self.run_id} belongs to {owner}, not {at.author}")
            raise Reject(f"finish of unknown run {self.run_id}")

    def apply(self, at: Folding) -> None:
        run, key = at.mine[self.run_id], at.key
        if run.finish_key is None or key < tuple(run.finish_key):
            run.reason, run.finished_at, run.finish_key = self.reason, at.change.timestamp, key
            run.log_blob, run.exit = self.log_blob, self.exit
            run.evidence = evidence_of(self)
            run.values = self.values

    def summary(self) -> str:
        return f"Finish {self.run_id}: {self.reason}"


def check_finish_extras(log_blob: str | None, exit_status: int | None) -> str | None:
    """Why a finish's ``log_blob`` / ``exit`` is invalid, or None (both are optional)."""
    if log_blob is not None and not is_oid(log_blob):
        return f"a log blob id must be a lowercase hex object id, not {log_blob[:80]!r}"
    if exit_status is not None and not 0 <= exit_status <= MAX_EXIT:
        return f"an exit status must be in 0..{MAX_EXIT}, not {exit_status}"
    return None


MAX_ENV = 16  # entries of a finish's ``env``
MAX_ENV_KEY = 32
MAX_ENV_VALUE = 200
_ENV_KEY = re.compile(r"^[a-z][a-z0-9_.-]*$")
_ENV_VALUE = re.compile(r"^[ -~]*$")  # printable ASCII (spaces allowed)


def check_evidence(op: FinishRun) -> str | None:
    """Why a finish's evidence fields (defs, policy, tree, outputs, env) are invalid, or None.

    Object ids are lowercase hex; ``env`` has at most 16 entries, keys of a-z 0-9 _ . - (at
    most 32 characters), values of printable ASCII (at most 200): no byte of it can move a
    terminal or a web page before it is escaped."""
    for field_name in ("defs", "policy", "tree", "outputs"):
        value = getattr(op, field_name)
        if value is not None and not is_oid(value):
            return f"a finish's {field_name} must be a lowercase hex object id, not {safe(value[:80])!r}"
    if op.env is not None:
        if len(op.env) > MAX_ENV:
            return f"a finish's env has at most {MAX_ENV} entries, not {len(op.env)}"
        for key, value in op.env.items():
            if len(key) > MAX_ENV_KEY or not _ENV_KEY.fullmatch(key):
                return f"a finish's env key must be a-z 0-9 _ . - (at most {MAX_ENV_KEY}): {safe(key[:40])!r}"
            if len(value) > MAX_ENV_VALUE or not _ENV_VALUE.fullmatch(value):
                return f"a finish's env value of {key} must be printable ASCII (at most {MAX_ENV_VALUE})"
    return None


def evidence_of(op: FinishRun) -> Evidence | None:
    """What the fold keeps of a finish's evidence fields (None when it has none)."""
    ev = Evidence(op.defs, op.policy, op.tree, op.outputs, op.env)
    return ev if ev else None


# A finish's ``values`` (structured outputs, FORMAT.md 11.1): bounded, as every replica keeps them.
MAX_VALUES = 32  # keys
MAX_VALUE = 4096  # bytes of one value (UTF-8)
MAX_VALUES_TOTAL = 8192  # bytes of all keys and values
VALUE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


def check_values(values: Mapping[str, str]) -> str | None:
    """Why a finish's ``values`` break the bounds, or None: at most 32 keys of A-Z a-z 0-9 _ -
    (at most 64, not starting with a digit or -), values of text without NUL of at most 4096
    bytes, 8192 bytes in all. The writer (jobs.node.values) applies the same rule."""
    if len(values) > MAX_VALUES:
        return f"{len(values)} outputs (at most {MAX_VALUES})"
    total = 0
    for key, value in values.items():
        if not isinstance(key, str) or not VALUE_KEY.fullmatch(key):
            return f"output name {safe(str(key)[:40])!r} must be A-Z a-z 0-9 _ - (at most 64)"
        if not isinstance(value, str) or "\0" in value:
            return f"output {key} must be text without NUL"
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > MAX_VALUE:
            return f"output {key} is {size} bytes (at most {MAX_VALUE})"
        total += size + len(key)
    if total > MAX_VALUES_TOTAL:
        return f"outputs are {total} bytes in all (at most {MAX_VALUES_TOTAL})"
    return None
