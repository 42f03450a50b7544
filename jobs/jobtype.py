"""The Job type's rules: how changes fold into a :class:`~jobs.model.JobState`.

Authorization is part of the type (radicle-job has none): a run belongs to the node that signed
its start, and only that node may finish it — a finish is valid only if the same node started
that run in an *ancestor* change. Deciding by ancestry rather than by what happened to be folded
first is what makes the fold commutative: the verdict on a change depends on its own history
alone, so a cached state plus new changes equals a full fold. Duplicates (a run id started
twice, a run finished twice) keep the op with the least (commit time, change oid).

Each op owns its rules (:mod:`jobs.ops`, one module per op): this type only checks the root
and dispatches ``validate``, ``apply`` and ``summary`` to the ops of a change, in order. The
ops it decodes are its registry, :attr:`JobType.ops` (:data:`jobs.ops.OPS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from cob import Change, CobType, EvalContext, Evaluation, Reject

from .layout import ROOT_AUTHOR  # (importing it installs git-jobs' names in cob)
from .listing import JobRow, row_of
from .model import JobState
from .ops import OPS, Checking, Folding, JobOp, Request, decode_type

# The field rules, for the writers and readers that check a value before it reaches an op
# (store, policy, definitions, CLI): they live with the ops (jobs.ops.fields, jobs.ops.finish).
from .ops.fields import MAX_NAME as MAX_NAME
from .ops.fields import MAX_URL as MAX_URL
from .ops.fields import check_log_url as check_log_url
from .ops.fields import check_name as check_name
from .ops.fields import check_run_id as check_run_id
from .ops.finish import MAX_ENV as MAX_ENV
from .ops.finish import MAX_ENV_KEY as MAX_ENV_KEY
from .ops.finish import MAX_ENV_VALUE as MAX_ENV_VALUE
from .ops.finish import MAX_EXIT as MAX_EXIT
from .ops.finish import check_evidence as check_evidence
from .ops.finish import check_finish_extras as check_finish_extras
from .ops.finish import check_values as check_values
from .ops.finish import evidence_of as evidence_of
from .ops.release import check_fanout as check_fanout

TYPENAME = "dev.gitjobs.job"


class JobType(CobType[JobState]):
    typename: ClassVar[str] = TYPENAME
    ops: ClassVar[tuple[type[JobOp], ...]] = OPS
    op_type: ClassVar[Any] = decode_type(OPS)
    state_type: ClassVar[Any] = JobState
    listing_type: ClassVar[Any] = JobRow
    content_addressed_root: ClassVar[bool] = True
    root_author: ClassVar[str] = ROOT_AUTHOR
    commutative: ClassVar[bool] = True
    # 2: the signed ``release`` op; a finish carries its log blob and exit. 3: the ``rerun`` op.
    # 4: a ``release`` may carry ``ask`` (a request to other nodes).
    # 4 also: a run carries the ``timeout`` its node promised.
    # 5: a finish carries what it ran under (defs, policy, tree, outputs, env: issue 27).
    # 6: a finish carries ``values`` (structured outputs); a release may carry ``fanout``.
    rules: ClassVar[int] = 6

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass that sets ``ops`` decodes exactly those (a test's extra op, a fork's)."""
        super().__init_subclass__(**kwargs)
        cls.op_type = decode_type(cls.ops)

    def initial(self, root: Change) -> JobState:
        if len(root.ops) != 1 or not isinstance(root.ops[0], Request):
            raise Reject("a job's root must carry exactly one request op")
        return root.ops[0].initial()

    def validate(self, state: JobState, change: Change, ctx: EvalContext) -> None:
        if change.author is None:
            raise Reject("only the root may be unsigned")
        at = Checking(state, change, change.author, ctx)
        op: JobOp
        for op in change.ops:
            op.validate(at)

    def apply(self, state: JobState, change: Change) -> None:
        assert change.author is not None
        at = Folding(state, change, change.author)
        op: JobOp
        for op in change.ops:
            op.apply(at)

    def summary(self, ops: Sequence[Any]) -> str:
        return "; ".join(op.summary() for op in ops) or "empty change"

    def listing(self, ev: Evaluation[JobState]) -> JobRow:
        return row_of(ev)

    def index_keys(self, root: Change) -> Iterable[tuple[str, str]]:
        req = root.ops[0]
        if isinstance(req, Request):
            yield ("commit", req.commit)
            yield ("name", req.name)


JOB_TYPE = JobType()
