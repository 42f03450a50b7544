"""Read-only views of a job: :class:`Job`, :class:`Runs`, :class:`Run` — radicle-job's API.

The folded state (:class:`JobState`) is a plain msgspec struct so the cache can store it; the
views wrap it without copying. Runs are keyed by node, then by uuid7 run id, and iterate in
uuid7 order (which is start-time order).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from cob import Rejection

from .deadline import Judge


class Status(enum.Enum):
    STARTED = "started"
    FINISHED = "finished"


class Reason(enum.Enum):
    """Why a run finished. ``ERROR`` is infrastructure trouble (retryable)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ERROR = "error"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"

    @classmethod
    def parse(cls, value: Reason | str) -> Reason:
        from .errors import InvalidInputError

        if isinstance(value, Reason):
            return value
        text = str(value).strip().lower().replace("-", "_")
        try:
            return cls(text)
        except ValueError:
            names = ", ".join(r.value for r in cls)
            raise InvalidInputError(f"unknown reason {value!r} (expected one of: {names})") from None


# Finished runs that did not pass. SKIPPED is neither a pass nor a failure.
FAILING = frozenset({Reason.FAILED, Reason.ERROR, Reason.TIMED_OUT, Reason.CANCELLED})
_REASON_VALUES = {r.value: r.value for r in Reason}


def reason_value(reason: str) -> str:
    """A folded finish reason as :class:`Reason`'s value (the fold keeps what the op said)."""
    return _REASON_VALUES.get(reason) or Reason(reason).value


class Evidence(msgspec.Struct, array_like=True, frozen=True):
    """What a run ran under, as its signed finish says (FORMAT.md 11; every field optional):
    the definitions blob, the policy tip, the commit's tree, the outputs tree, the node's env."""

    defs: str | None = None
    policy: str | None = None
    tree: str | None = None
    outputs: str | None = None
    env: dict[str, str] | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.defs, self.policy, self.tree, self.outputs, self.env))

    def to_json(self) -> dict[str, object]:
        return {
            "defs": self.defs,
            "policy": self.policy,
            "tree": self.tree,
            "outputs": self.outputs,
            "env": dict(self.env) if self.env is not None else None,
        }


class RunState(msgspec.Struct, array_like=True):
    """One run in the fold. ``*_key`` = (commit time, change oid) of the winning op."""

    log: str
    started_at: int
    start_key: tuple[int, str]
    start_changes: list[str]
    reason: str | None = None
    finished_at: int | None = None
    finish_key: tuple[int, str] | None = None
    log_blob: str | None = None  # of the winning finish (FORMAT.md 11.4)
    exit: int | None = None
    timeout: int | None = None  # of the winning start: the deadline its node promised
    evidence: Evidence | None = None  # of the winning finish: what it ran under (issue 27)
    values: dict[str, str] | None = None  # of the winning finish: its structured outputs


class RequestState(msgspec.Struct, array_like=True):
    """A node's ``release`` ops on a job: its first and its latest, by (commit time, oid)."""

    first_at: int
    first_key: tuple[int, str]
    last_at: int
    last_key: tuple[int, str]


class JobState(msgspec.Struct, array_like=True):
    commit: str
    name: str
    runs: dict[str, dict[str, RunState]] = msgspec.field(default_factory=dict)
    requests: dict[str, RequestState] = msgspec.field(default_factory=dict)
    reruns: dict[str, RequestState] = msgspec.field(default_factory=dict)  # ``rerun`` ops, by node
    asks: dict[str, RequestState] = msgspec.field(default_factory=dict)  # ``release`` with ``ask``
    # ``release`` with ``fanout``, by node: (key, names) of its first one (least key)
    fanouts: dict[str, tuple[tuple[int, str], list[str]]] = msgspec.field(default_factory=dict)

    def owner_of(self, run_id: str, other_than: str | None = None) -> str | None:
        """The node (not ``other_than``) that has a run ``run_id``, for "belongs to" errors."""
        return next((nid for nid, rs in self.runs.items() if run_id in rs and nid != other_than), None)


def _utc(ts: int | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True, slots=True)
class Run:
    """One execution attempt by one node.

    ``lost``: still started past its deadline plus the reader's grace (:mod:`jobs.deadline`),
    judged when the view was made; ``lost_at``: when that is (None once finished)."""

    status: Status
    reason: Reason | None
    log: str
    started_at: datetime
    finished_at: datetime | None
    # The published log's blob id and the command's exit status, as the signed finish says.
    log_blob: str | None = None
    exit_status: int | None = None
    timeout: int | None = None  # the deadline the start promised (seconds), if it says
    lost: bool = False
    lost_at: float | None = None
    evidence: Evidence | None = None  # what it ran under, as the signed finish says
    values: Mapping[str, str] | None = None  # its structured outputs, as the signed finish says

    @classmethod
    def from_state(cls, s: RunState, judge: Judge | None = None, key: str = "") -> Run:
        reason = Reason(s.reason) if s.reason is not None else None
        status = Status.FINISHED if reason is not None else Status.STARTED
        started = _utc(s.started_at) or datetime.min
        lost, lost_at = False, None
        if reason is None and judge is not None:
            lost_at = judge.lost_at(key, s.started_at, s.timeout)
            lost = judge.now() >= lost_at
        return cls(
            status,
            reason,
            s.log,
            started,
            _utc(s.finished_at),
            s.log_blob,
            s.exit,
            s.timeout,
            lost,
            lost_at,
            s.evidence,
            s.values,
        )

    @property
    def is_started(self) -> bool:
        return self.status is Status.STARTED

    @property
    def is_finished(self) -> bool:
        return self.status is Status.FINISHED

    @property
    def succeeded(self) -> bool:
        return self.reason is Reason.SUCCEEDED

    @property
    def failed(self) -> bool:
        return self.reason in FAILING or self.lost

    @property
    def outcome(self) -> Reason | None:
        """What retry rules read: the finish reason, and ``error`` (infrastructure) for a lost run."""
        return Reason.ERROR if self.lost else self.reason


class Runs(Mapping[uuid.UUID, Run]):
    """A node's runs, ``run_id → Run``, in uuid7 (start) order. Read-only.

    Made from a folded state (:meth:`from_state`), a run becomes a :class:`Run` only when it is
    read: counting them or reading the latest (what a listing shows) converts one run, not all.
    """

    __slots__ = ("_built", "_judge", "_nid", "_raw", "_runs")

    def __init__(self, runs: Mapping[uuid.UUID, Run] | None = None) -> None:
        self._runs: dict[uuid.UUID, Run] | None = dict(sorted((runs or {}).items()))
        self._raw: Mapping[str, RunState] = {}
        self._built: dict[str, Run] = {}
        self._judge: Judge | None = None
        self._nid = ""

    @classmethod
    def from_state(cls, runs: Mapping[str, RunState], judge: Judge | None = None, nid: str = "") -> Runs:
        out = cls.__new__(cls)
        out._runs, out._raw, out._built, out._judge, out._nid = None, runs, {}, judge, nid
        return out

    def _run(self, k: str) -> Run:
        run = self._built.get(k)
        if run is None:
            run = self._built[k] = Run.from_state(self._raw[k], self._judge, f"{self._nid}/{k}")
        return run

    def _all(self) -> dict[uuid.UUID, Run]:
        if self._runs is None:
            self._runs = {uuid.UUID(k): self._run(k) for k in sorted(self._raw)}
            self._raw, self._built = {}, {}
        return self._runs

    def __getitem__(self, key: uuid.UUID | str) -> Run:
        return self._all()[key if isinstance(key, uuid.UUID) else uuid.UUID(key)]

    def __iter__(self) -> Iterator[uuid.UUID]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._runs) if self._runs is not None else len(self._raw)

    def __repr__(self) -> str:
        return f"Runs({self._all()!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Runs):
            return self._all() == other._all()
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def _where(self, pred: Callable[[Run], bool]) -> Runs:
        out = Runs()
        out._runs = {k: v for k, v in self._all().items() if pred(v)}
        return out

    def latest(self) -> tuple[uuid.UUID, Run] | None:
        """The most recently started run (greatest uuid7)."""
        if self._runs is None:
            if not self._raw:
                return None
            k = max(self._raw)  # the order of from_state's keys (canonical uuids: the uuid order)
            return uuid.UUID(k), self._run(k)
        if not self._runs:
            return None
        key = next(reversed(self._runs))
        return key, self._runs[key]

    def started(self) -> Runs:
        return self._where(lambda r: r.status is Status.STARTED)

    def finished(self) -> Runs:
        return self._where(lambda r: r.status is Status.FINISHED)

    def succeeded(self) -> Runs:
        return self._where(lambda r: r.reason is Reason.SUCCEEDED)

    def failed(self) -> Runs:
        return self._where(lambda r: r.reason in FAILING)

    def partition(self) -> tuple[Runs, Runs, Runs]:
        """(started, succeeded, failed)."""
        return self.started(), self.succeeded(), self.failed()


@dataclass(frozen=True, slots=True)
class Requested:
    """A node's signed ``release`` of a job: when it first asked, and when it last asked."""

    first_at: datetime
    last_at: datetime
    change: str = ""  # the latest request's change oid (what a rerun is ordered by, causally)


def _requested(requests: Mapping[str, RequestState]) -> dict[str, Requested]:
    return {
        nid: Requested(_utc(r.first_at) or datetime.min, _utc(r.last_at) or datetime.min, r.last_key[1])
        for nid, r in sorted(requests.items())
    }


class Job:
    """A job: one unit of CI work (``name``) for one commit, with every node's runs."""

    __slots__ = ("_judge", "_runs", "_state", "commit", "id", "name", "rejected", "tips")

    def __init__(
        self,
        job_id: str,
        state: JobState,
        rejected: list[Rejection] | None = None,
        tips: Mapping[str, str] | None = None,
        judge: Judge | None = None,
    ) -> None:
        self.id = job_id
        self.commit = state.commit
        self.name = state.name
        self.rejected: list[Rejection] = list(rejected or [])
        self.tips: dict[str, str] = dict(tips or {})
        self._state = state
        self._runs: dict[str, Runs] | None = None
        self._judge = judge  # when started runs turn lost (None: never, as in the ledger)

    def __repr__(self) -> str:
        return f"Job({self.id[:12]} {self.name!r} @ {self.commit[:12]})"

    def run_totals(self) -> tuple[int, int]:
        """(runs, nodes with runs): what ``runs()`` counts, without building it (a listing)."""
        if self._runs is not None:
            return sum(len(r) for r in self._runs.values()), len(self._runs)
        counts = [len(rs) for rs in self._state.runs.values() if rs]
        return sum(counts), len(counts)

    def latest_outcomes(self) -> list[tuple[str | None, bool]]:
        """For every node with runs, its latest run's finish reason (the value; None while it is
        started) and whether it is lost: what ``runs()[nid].latest()`` says, without building a
        :class:`Run` per node (a listing reads only this)."""
        if self._runs is not None:
            return [
                (run.reason.value if run.reason is not None else None, run.lost)
                for rs in self._runs.values()
                if (latest := rs.latest()) and (run := latest[1])
            ]
        out: list[tuple[str | None, bool]] = []
        judge = self._judge
        for nid, rs in sorted(self._state.runs.items()):
            if not rs:
                continue
            k = max(rs)  # Runs.latest's order
            s = rs[k]
            if s.reason is not None:
                out.append((reason_value(s.reason), False))
            elif judge is not None:
                out.append((None, judge.now() >= judge.lost_at(f"{nid}/{k}", s.started_at, s.timeout)))
            else:
                out.append((None, False))
        return out

    def runs(self) -> dict[str, Runs]:
        """{nid: Runs} for every node with at least one run."""
        if self._runs is None:
            self._runs = {
                nid: Runs.from_state(rs, self._judge, nid)
                for nid, rs in sorted(self._state.runs.items())
                if rs
            }
        return dict(self._runs)

    @property
    def judge(self) -> Judge | None:
        """The reader's judge of time this job was loaded with (None: times as claimed)."""
        return self._judge

    def runs_of(self, nid: str) -> Runs:
        return self.runs().get(nid, Runs())

    def nodes(self) -> list[str]:
        return list(self.runs())

    def requests(self) -> dict[str, Requested]:
        """{nid: Requested} of every node that signed a ``release`` of this job, by NID."""
        return _requested(self._state.requests)

    def asks(self) -> dict[str, Requested]:
        """{nid: Requested} of every node that signed a ``release`` with ``ask`` (a person's
        request to other nodes, ``git jobs release``), by NID."""
        return _requested(self._state.asks)

    def fanouts(self) -> dict[str, list[str]]:
        """{nid: job names} each node's signed ``release`` with ``fanout`` expanded this (a
        dynamic matrix's) job into: its first such release, by (commit time, oid)."""
        return {nid: list(f[1]) for nid, f in sorted(self._state.fanouts.items())}

    def reruns(self) -> dict[str, Requested]:
        """{nid: Requested} of every node that signed a ``rerun`` of this job, by NID."""
        return _requested(self._state.reruns)

    def start_change(self, nid: str, run_id: uuid.UUID | str) -> str | None:
        """The change that started ``nid``'s run ``run_id`` (the winning one), or None."""
        run = self._state.runs.get(nid, {}).get(str(run_id))
        return run.start_key[1] if run is not None else None

    def finish_change(self, nid: str, run_id: uuid.UUID | str) -> str | None:
        """The change holding ``nid``'s winning finish of ``run_id`` (its attestation), or None."""
        run = self._state.runs.get(nid, {}).get(str(run_id))
        return run.finish_key[1] if run is not None and run.finish_key is not None else None

    def latest(self) -> tuple[str, uuid.UUID, Run] | None:
        """The most recently started run of any node: (nid, run_id, Run)."""
        best: tuple[str, uuid.UUID, Run] | None = None
        for nid, runs in self.runs().items():
            latest = runs.latest()
            if latest and (best is None or latest[0] > best[1]):
                best = (nid, latest[0], latest[1])
        return best

    def latest_of(self, nid: str) -> tuple[uuid.UUID, Run] | None:
        return self.runs_of(nid).latest()

    def _per_node(self, name: str) -> dict[str, Runs]:
        out = {}
        for nid, runs in self.runs().items():
            sub: Runs = getattr(runs, name)()
            if sub:
                out[nid] = sub
        return out

    def started(self) -> dict[str, Runs]:
        return self._per_node("started")

    def finished(self) -> dict[str, Runs]:
        return self._per_node("finished")

    def succeeded(self) -> dict[str, Runs]:
        return self._per_node("succeeded")

    def failed(self) -> dict[str, Runs]:
        return self._per_node("failed")

    def partition(self) -> dict[str, tuple[Runs, Runs, Runs]]:
        """{nid: (started, succeeded, failed)}."""
        return {nid: runs.partition() for nid, runs in self.runs().items()}

    def runs_by_prefix(self, prefix: str) -> list[tuple[str, uuid.UUID, Run]]:
        """(nid, run id, Run) of every run whose id starts with ``prefix`` (see
        :func:`run_prefix`), whichever node it belongs to."""
        return [
            (nid, run_id, run)
            for nid, runs in self.runs().items()
            for run_id, run in runs.items()
            if run_id.hex.startswith(prefix)
        ]


def run_prefix(text: str) -> str | None:
    """A run id or prefix as typed (dashes anywhere, any case) as the undashed lower-case hex
    :meth:`Job.runs_by_prefix` matches; None when it cannot be one."""
    bare = text.strip().lower().replace("-", "")
    if not bare or len(bare) > 32 or any(c not in "0123456789abcdef" for c in bare):
        return None
    return bare
