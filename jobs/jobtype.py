"""The Job type's rules: how changes fold into a :class:`~jobs.model.JobState`.

Authorization is part of the type (radicle-job has none): a run belongs to the node that signed
its start, and only that node may finish it — a finish is valid only if the same node started
that run in an *ancestor* change. Deciding by ancestry rather than by what happened to be folded
first is what makes the fold commutative: the verdict on a change depends on its own history
alone, so a cached state plus new changes equals a full fold. Duplicates (a run id started
twice, a run finished twice) keep the op with the least (commit time, change oid).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

from cob import Change, CobType, EvalContext, Reject
from cob.refs import is_oid

from .deadline import check_timeout
from .model import Evidence, JobState, Reason, RequestState, RunState
from .ops import FinishRun, Op, Release, Request, Rerun, StartRun
from .text import safe, unsafe_chars

TYPENAME = "dev.gitjobs.job"
MAX_NAME = 100
MAX_URL = 2048
# Single spaces, parentheses, `=` and `,` are allowed for matrix jobs: `test (os=linux, py=3.12)`.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+=(),-]*(?: [A-Za-z0-9._/+=(),-]+)*$")
_REASONS = frozenset(r.value for r in Reason)
MAX_EXIT = 255


def check_name(name: str) -> str | None:
    """Why ``name`` is not a valid job name, or None."""
    if not isinstance(name, str) or not name:
        return "a job name must not be empty"
    if len(name) > MAX_NAME:
        return f"a job name has at most {MAX_NAME} characters"
    if not _NAME.fullmatch(name) or ".." in name or name.endswith("/"):
        return (
            f"invalid job name {safe(name)!r}"
            " (letters, digits, . _ / + = ( ) , - and single inner spaces; starting with a letter or digit)"
        )
    return None


_PRINTABLE = re.compile(r"[!-~]+")
# What nearly every log URL and run id is, checked without building urlsplit / uuid.UUID
# objects (a cold listing checks 100,000 of each); anything else takes the full checks below.
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:[/?#][!-~]*)?")
_UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def check_log_url(url: str) -> str | None:
    """Why ``url`` is not an absolute log URL, or None."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        return "a log URL must be a non-empty string of at most 2048 characters"
    # Printable ASCII without spaces (nearly every URL) has nothing to look for character by
    # character: a fold checks every run's URL, 100,000 of them in a cold listing.
    printable = _PRINTABLE.fullmatch(url) is not None
    if printable and _PLAIN_URL.fullmatch(url):
        return None
    bad = [] if printable else unsafe_chars(url)
    if bad or (not printable and any(c.isspace() for c in url)):
        # C1 controls (U+009B acts as CSI) and bidi overrides (U+202E) would reach a terminal
        # or a web page through every reader; such a change is rejected, not escaped later.
        shown = ", ".join(bad[:5]) if bad else "whitespace"
        return f"a log URL must not contain spaces, control or bidi characters ({shown})"
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"not a URL: {url!r}"
    if not parts.scheme or not re.fullmatch(r"[a-z][a-z0-9+.-]*", parts.scheme):
        return f"not an absolute URL (no scheme): {url!r}"
    if parts.scheme == "file":
        if not parts.path.startswith("/"):
            return f"a file: log URL needs an absolute path: {url!r}"
    elif not parts.netloc:
        return f"not an absolute URL (no host): {url!r}"
    return None


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
    ev = Evidence(op.defs, op.policy, op.tree, op.outputs, op.env)
    return ev if ev else None


def check_start(op: StartRun) -> str | None:
    """Why a ``run`` op is invalid (its run id, log URL, optional timeout), or None."""
    problem = check_run_id(op.run_id) or check_log_url(op.log)
    return problem or (check_timeout(op.timeout) if op.timeout is not None else None)


def check_run_id(run_id: str) -> str | None:
    """Why ``run_id`` is not a canonical uuid7 string, or None."""
    if isinstance(run_id, str) and _UUID7.fullmatch(run_id):
        return None
    try:
        parsed = uuid.UUID(run_id)
    except (ValueError, TypeError, AttributeError):
        return f"run id {run_id!r} is not a UUID"
    if str(parsed) != run_id:
        return f"run id {run_id!r} is not in canonical form"
    if parsed.version != 7:
        return f"run id {run_id} is not a uuid7"
    return None


class JobType(CobType[JobState]):
    typename: ClassVar[str] = TYPENAME
    op_type: ClassVar[Any] = Op
    state_type: ClassVar[Any] = JobState
    content_addressed_root: ClassVar[bool] = True
    commutative: ClassVar[bool] = True
    # 2: the signed ``release`` op; a finish carries its log blob and exit. 3: the ``rerun`` op.
    # 4: a ``release`` may carry ``ask`` (a request to other nodes).
    # 4 also: a run carries the ``timeout`` its node promised.
    # 5: a finish carries what it ran under (defs, policy, tree, outputs, env: issue 27).
    rules: ClassVar[int] = 5

    def initial(self, root: Change) -> JobState:
        if len(root.ops) != 1 or not isinstance(root.ops[0], Request):
            raise Reject("a job's root must carry exactly one request op")
        req = root.ops[0]
        if not is_oid(req.commit):
            raise Reject(f"request names an invalid commit {safe(req.commit)!r}")
        problem = check_name(req.name)
        if problem:
            raise Reject(problem)
        return JobState(req.commit, req.name)

    def validate(self, state: JobState, change: Change, ctx: EvalContext) -> None:
        author = change.author
        if author is None:
            raise Reject("only the root may be unsigned")
        mine = state.runs.get(author, {})
        started_here: set[str] = set()
        for op in change.ops:
            if isinstance(op, Request):
                raise Reject("a request op may only appear in the root")
            if isinstance(op, StartRun):
                problem = check_start(op)
                if problem:
                    raise Reject(problem)
                started_here.add(op.run_id)
            elif isinstance(op, FinishRun):
                problem = check_run_id(op.run_id) or check_finish_extras(op.log_blob, op.exit)
                problem = problem or check_evidence(op)
                if problem:
                    raise Reject(problem)
                if op.reason not in _REASONS:
                    raise Reject(f"unknown reason {op.reason!r}")
                if op.run_id in started_here:
                    continue
                run = mine.get(op.run_id)
                if run is None or not any(ctx.is_ancestor(c, change.oid) for c in run.start_changes):
                    owner = state.owner_of(op.run_id, other_than=author)
                    if owner is not None:
                        raise Reject(f"run {op.run_id} belongs to {owner}, not {author}")
                    raise Reject(f"finish of unknown run {op.run_id}")

    def apply(self, state: JobState, change: Change) -> None:
        author = change.author
        assert author is not None
        mine = state.runs.setdefault(author, {})
        key = change.key
        for op in change.ops:
            if isinstance(op, Release):
                _note_request(state.requests, author, change.timestamp, key)
                if op.ask:
                    _note_request(state.asks, author, change.timestamp, key)
            elif isinstance(op, Rerun):
                _note_request(state.reruns, author, change.timestamp, key)
            elif isinstance(op, StartRun):
                run = mine.get(op.run_id)
                if run is None:
                    mine[op.run_id] = RunState(
                        op.log, change.timestamp, key, [change.oid], timeout=op.timeout
                    )
                else:
                    # Each change is applied once, its ops in a row: only a repeat within this
                    # change can already be recorded (`not in` the list was O(n) per start).
                    if run.start_changes[-1:] != [change.oid]:
                        run.start_changes.append(change.oid)
                    if key < tuple(run.start_key):
                        run.log, run.started_at, run.start_key = op.log, change.timestamp, key
                        run.timeout = op.timeout
            elif isinstance(op, FinishRun):
                run = mine[op.run_id]
                if run.finish_key is None or key < tuple(run.finish_key):
                    run.reason, run.finished_at, run.finish_key = op.reason, change.timestamp, key
                    run.log_blob, run.exit = op.log_blob, op.exit
                    run.evidence = evidence_of(op)

    def summary(self, ops: Sequence[Any]) -> str:
        parts = []
        for op in ops:
            if isinstance(op, Request):
                parts.append(f"Request {op.name} for {op.commit}")
            elif isinstance(op, Release):
                parts.append("Release")
            elif isinstance(op, Rerun):
                parts.append("Rerun")
            elif isinstance(op, StartRun):
                parts.append(f"Run {op.run_id}: started")
            elif isinstance(op, FinishRun):
                parts.append(f"Finish {op.run_id}: {op.reason}")
        return "; ".join(parts) or "empty change"

    def index_keys(self, root: Change) -> Iterable[tuple[str, str]]:
        req = root.ops[0]
        if isinstance(req, Request):
            yield ("commit", req.commit)
            yield ("name", req.name)


def _note_request(requests: dict[str, RequestState], nid: str, when: int, key: tuple[int, str]) -> None:
    """Keep ``nid``'s first and latest release (or rerun) by (commit time, oid): order-independent."""
    req = requests.get(nid)
    if req is None:
        requests[nid] = RequestState(when, key, when, key)
        return
    if key < tuple(req.first_key):
        req.first_at, req.first_key = when, key
    if key > tuple(req.last_key):
        req.last_at, req.last_key = when, key


JOB_TYPE = JobType()
