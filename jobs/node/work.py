"""``release`` and ``work any``: turn a commit's definitions into jobs, and run them here.

A :class:`Workshop` is this node at work in one repository. For a commit it

1. recovers runs that a dead process of this node left ``started`` (see :mod:`.journal`),
2. releases the jobs its definitions declare (idempotent: the job id is content-addressed),
3. :func:`assess` es each job from *this node's runs in the ledger* — the ledger is the only
   state, so a restarted node, another process, or a dry run all see the same plan — and
4. runs what is ready in ``needs`` order: every attempt is a run recorded with its log URL,
   its output streamed to the log, finished with a reason (exit 0 → succeeded, non-zero →
   failed, timeout → timed_out, cannot start → error, interrupted → cancelled).

Retries: an attempt after ``n`` failed ones waits µTask's pattern delay (:mod:`.retry`) after
the last failure; ``retry.max`` bounds the failed attempts (failed, timed_out, error).
A job whose need has settled without success is finished ``skipped`` with the reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent import futures
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import uuid6

import cob

from .. import logs as published
from ..errors import JobsError
from ..model import Job, Reason, Runs
from ..provenance.attest import sign_finish
from ..retries import ATTEMPTS, exhausted
from ..spec.conditions import Facts, changed_paths, evaluate
from ..spec.definitions import Definitions, JobDef, load_definitions
from ..spec.durations import format_duration
from ..spec.labels import node_labels
from ..spec.patterns import pattern_delay
from ..store import JobMut, Jobs
from ..text import safe
from .cache import around as cache_around
from .candidates import REQUESTED
from .capture import CappedLog
from .checkout import CheckoutError, make_checkout, remove_tree
from .evidence import environment
from .evidence import record as record_evidence
from .fanout import expand_dynamic
from .follow import reached_by
from .handoff import Handoff, publish_outputs
from .isolation import Isolation, IsolationError, Scratch, load_isolation
from .journal import Entry, Journal, WorkLock, kill_orphan, remove_checkout
from .logs import log_path, log_url
from .outputs import collect, provide
from .outputs import prune as prune_outputs
from .runners import RunContext, Runners, RunResult, run_with
from .secrets import Given, for_run
from .slots import Slots
from .values import OUTPUT_FILE, NeedValues, ValuesError, judge, render_run
from .values import read as read_values

COUNTED = ATTEMPTS  # failed attempts use up retry.max (the rule: jobs.retries, shared with status)


class Action(StrEnum):
    """What a pass would do about one job (``PlanItem.action``); the JSON shows the value."""

    RUN = "run"  # run it now
    SKIP = "skip"  # record it skipped now (a need failed, or its condition is false)
    WAIT = "wait"  # a retry not yet due
    BLOCKED = "blocked"  # a need has not ended yet
    RUNNING = "running"  # a run of this node is in progress
    DONE = "done"  # succeeded on this node
    EXHAUSTED = "exhausted"  # its attempts are used up
    HELD = "held"  # interrupted and not idempotent: rerun only when asked
    SKIPPED = "skipped"  # already recorded skipped
    ELSEWHERE = "elsewhere"  # another node's: not this node's labels, or assigned elsewhere
    REUSED = "reused"  # reuse = "tree": a trusted pass of the same tree counts; not run here


WORK = (Action.RUN, Action.SKIP, Action.WAIT)  # the actions that are work; the rest are settled or wait
SETTLED_BAD = frozenset({Action.EXHAUSTED, Action.HELD, Action.SKIP, Action.SKIPPED})
# Assigned to other nodes (jobs.assign, applied by .share): nothing runs or is recorded here.
ELSEWHERE = Action.ELSEWHERE
KILL_GRACE = 2.0


@dataclass(slots=True)
class PlanItem:
    """What this node would do next about one job of a commit, and why."""

    name: str
    action: Action
    reason: str
    command: str
    needs: list[str]
    attempts: int
    max_attempts: int
    job: str | None = None
    not_before: float | None = None

    def to_json(self) -> dict[str, Any]:
        """``not_before`` as an ISO 8601 UTC time (``null`` when the job is not waiting)."""
        out = asdict(self)
        if self.not_before is not None:
            out["not_before"] = datetime.fromtimestamp(self.not_before, UTC).isoformat()
        return out


@dataclass(slots=True)
class Outcome:
    """One run this node recorded (or recovered)."""

    name: str
    commit: str
    job: str
    run_id: str
    reason: Reason
    log: str
    detail: str = ""

    def line(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.name:<16} {self.reason.value:<10} run {self.run_id}  {self.log}{extra}"


@dataclass(slots=True)
class Started:
    """A run recorded ``started`` whose command is yet to run or running (see ``attempt``)."""

    job: JobMut
    d: JobDef
    defs: Definitions
    run_id: uuid.UUID
    url: str
    path: Path
    scratch: Scratch
    entry: Entry
    log: CappedLog
    settings: published.LogSettings
    began: float
    secrets: Given | None = None  # what the run was given (secrets.py)


@dataclass(slots=True)
class WorkReport:
    commit: str
    defined: bool
    outcomes: list[Outcome] = field(default_factory=list)
    recovered: list[Outcome] = field(default_factory=list)
    plan: list[PlanItem] = field(default_factory=list)
    interrupted: bool = False

    @property
    def remaining(self) -> list[PlanItem]:
        """Work still to come here: a job elsewhere counts while this node may take it over."""
        return [
            p
            for p in self.plan
            if p.action in WORK or p.action == "blocked" or (p.action == ELSEWHERE and p.not_before)
        ]

    @property
    def ok(self) -> bool:
        """Every job this node may serve and is assigned has succeeded here (``elsewhere``: not its)."""
        return all(p.action in ("done", ELSEWHERE, Action.REUSED) for p in self.plan)


def _latest_id(runs: Runs) -> uuid.UUID | None:
    latest = runs.latest()
    return latest[0] if latest else None


def _group_alive(pgid: int) -> bool:
    """Is any process of group ``pgid`` still running (not merely a zombie)?

    A sandboxed job leaves bwrap's inner process as a zombie once it ends; its new parent (the
    machine's init) may take seconds to reap it, and ``killpg(pgid, 0)`` counts zombies, so
    waiting on that alone cost every sandboxed run up to the whole kill grace.
    """
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True  # no /proc: only the signal can tell
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _skipped_since_needs(d: JobDef, runs: dict[str, Runs], latest: tuple[uuid.UUID, Any] | None) -> bool:
    """Its latest run here is a skip recorded after every need's latest run (nothing new)."""
    if latest is None or latest[1].reason is not Reason.SKIPPED:
        return False
    need_ids = [i for i in (_latest_id(runs.get(n, Runs())) for n in d.needs) if i]
    return all(latest[0] > i for i in need_ids)


def condition_holds(d: JobDef, out: dict[str, PlanItem], facts: Facts) -> bool:
    """``d``'s ``if`` for these facts, its needs' outcomes taken from the plan so far.

    ``succeeded(NAME)`` / ``failed(NAME)`` of a matrix definition look at all its jobs:
    succeeded when every one did, failed when any used up its attempts."""

    def outcome(name: str) -> str:
        items = [out[n] for n in d.needs if n == name or n.startswith(name + " (")]
        if items and all(p.action in ("done", "reused") for p in items):
            return "succeeded"
        return "failed" if any(p.action in ("exhausted", "held") for p in items) else ""

    assert d.when is not None
    return evaluate(d.when, dataclasses.replace(facts, outcome=outcome))


def elsewhere(d: JobDef, out: dict[str, PlanItem], labels: frozenset[str] | None) -> str:
    """Why this node leaves ``d`` to others (it lacks a ``runs_on`` label, or a need is left
    to others: needs are met per node), or "" when it may serve it. ``None``: labels unchecked."""
    if labels is not None:
        missing = [x for x in d.runs_on if x not in labels]
        if missing:
            return f"runs_on needs label {missing[0]!r}, which this node lacks"
    away = [n for n in d.needs if out[n].action == "elsewhere"]
    return f"need {away[0]!r} is left to other nodes" if away else ""


def need_met(state: str, action: str) -> bool:
    """Whether a need whose plan is ``action`` has ended as ``state`` asks (see NEED_STATES)."""
    if state == "succeeded":
        return action in ("done", "reused")
    if state == "failed":
        return action in ("exhausted", "held")
    return action in ("done", "reused") or action in SETTLED_BAD  # any: settled, whatever the outcome


def need_satisfiable(state: str, action: str) -> bool:
    """False once a need has settled in a way that can never meet ``state`` on this node."""
    if state == "succeeded":
        return action not in SETTLED_BAD
    if state == "failed":
        return action not in ("done", "skip", "skipped")
    return True


@dataclass(slots=True)
class _Context:
    """What every rule of :func:`assess` may consult besides the job and its runs here."""

    runs: dict[str, Runs]
    now: float
    finished: dict[str, float]
    skip_ids: set[str]
    rerun_held: bool
    facts: Facts
    labels: frozenset[str] | None
    reusable: Callable[[JobDef], str | None] | None = None  # why it is reused, or None
    passed: Callable[[JobDef], str | None] | None = None  # a trusted node passed it (values.py)


@dataclass(slots=True)
class _Seen:
    """This node's runs of one job, as the rules read them."""

    latest: tuple[uuid.UUID, Any] | None
    attempts: int
    recovered: bool  # the latest run was ended by crash recovery (not an attempt)

    @property
    def last(self) -> Any:
        return self.latest[1] if self.latest else None


def _seen(rs: Runs, skip_ids: set[str]) -> _Seen:
    latest = rs.latest()
    attempts = sum(1 for i, r in rs.items() if r.reason in COUNTED and str(i) not in skip_ids)
    return _Seen(latest, attempts, latest is not None and str(latest[0]) in skip_ids)


Verdict = tuple[Action, str] | None  # (action, reason) that settles a job's plan, or None: go on


def _settled_here(d: JobDef, seen: _Seen, ctx: _Context, out: dict[str, PlanItem]) -> Verdict:
    last = seen.last
    if last is not None and last.succeeded:
        return Action.DONE, "succeeded on this node"
    if last is not None and last.is_started and not last.lost:
        return Action.RUNNING, "a run of this node is in progress"
    away = elsewhere(d, out, ctx.labels)
    if away and ctx.passed is not None and (why := ctx.passed(d)):
        return Action.REUSED, why  # not served here, passed on a trusted node: needs are met
    return (Action.ELSEWHERE, away) if away else None


def _reused(d: JobDef, seen: _Seen, ctx: _Context, out: dict[str, PlanItem]) -> Verdict:
    """``reuse = "tree"`` and nothing run here: a trusted signed pass of the same tree and
    definitions on another commit counts for this one (jobs.evidence), so it is not run."""
    if (d.reuse is None and not d.publish) or ctx.reusable is None or seen.latest is not None:
        return None
    why = ctx.reusable(d)
    return (Action.REUSED, why) if why else None


def _exhausted(d: JobDef, seen: _Seen, ctx: _Context, out: dict[str, PlanItem]) -> Verdict:
    last = seen.last.reason if seen.last is not None else None
    why = exhausted(last, seen.attempts, d.retry.max, d.retry.on, recovered=seen.recovered)
    return (Action.EXHAUSTED, why) if why is not None else None


def _held(d: JobDef, seen: _Seen, ctx: _Context, out: dict[str, PlanItem]) -> Verdict:
    last = seen.last
    interrupted = last is not None and (
        last.reason is Reason.CANCELLED
        # an `error` is only an interruption when crash recovery wrote it (the command may
        # have half-run); a command that could not start never ran, so it is just retried
        or (last.reason is Reason.ERROR and seen.recovered)
    )
    if interrupted and last.reason and not d.idempotent and not ctx.rerun_held:
        return Action.HELD, f"the last run ended {last.reason.value} and the job is not idempotent"
    return None


def _needs_failed(d: JobDef, seen: _Seen, ctx: _Context, out: dict[str, PlanItem]) -> Verdict:
    bad = [n for n in d.needs if not need_satisfiable(d.need_state(n), out[n].action)]
    if not bad:
        return None
    action = Action.SKIPPED if _skipped_since_needs(d, ctx.runs, seen.latest) else Action.SKIP
    n, state = bad[0], d.need_state(bad[0])
    ends = "did not succeed" if state == "succeeded" else f"cannot end {state}"
    return action, f"need {n!r} {ends} on this node ({out[n].action}: {out[n].reason})"


def _blocked(d: JobDef, seen: _Seen, ctx: _Context, out: dict[str, PlanItem]) -> Verdict:
    waiting = [n for n in d.needs if not need_met(d.need_state(n), out[n].action)]
    if waiting:
        return Action.BLOCKED, f"waiting for need {waiting[0]!r} ({out[waiting[0]].action})"
    return None


def _unexpanded(d: JobDef, seen: _Seen, ctx: _Context, out: dict[str, PlanItem]) -> Verdict:
    """A dynamic matrix waits for its needs' values (fanout.py expands it once they exist)."""
    return (Action.BLOCKED, "its matrix waits for its needs' outputs") if d.dynamic else None


def _condition_false(d: JobDef, seen: _Seen, ctx: _Context, out: dict[str, PlanItem]) -> Verdict:
    if d.when is not None and not condition_holds(d, out, ctx.facts):
        action = Action.SKIPPED if _skipped_since_needs(d, ctx.runs, seen.latest) else Action.SKIP
        return action, f"its condition is false (if = {d.condition})"
    return None


# In order: the first rule with a verdict settles the job; none means it runs (or waits).
_RULES = (_settled_here, _reused, _exhausted, _held, _needs_failed, _blocked, _unexpanded, _condition_false)


def _to_run(item: PlanItem, d: JobDef, seen: _Seen, ctx: _Context) -> None:
    """A job that runs: why, and — after a counted failure — when its retry is due."""
    last = seen.last
    if last is not None and last.reason is not None and last.reason not in COUNTED:
        item.reason = f"run again: the last run here ended {last.reason.value} (not an attempt)"
    elif seen.recovered:
        item.reason = "run again: the last run here was interrupted (not an attempt)"
    elif last is not None and last.lost:
        item.reason = "run again: the last run here is lost, past its deadline (not an attempt)"
    if last is None or last.reason not in COUNTED or seen.recovered:
        return
    ended = ctx.finished.get(d.name)
    if ended is None:
        ended = (last.finished_at or last.started_at).timestamp()
    due = ended + pattern_delay(d.retry.pattern, seen.attempts)
    item.reason = f"retry {seen.attempts + 1} of {d.retry.max} ({d.retry.pattern} pattern)"
    if due > ctx.now:
        item.action, item.not_before = Action.WAIT, due
        item.reason += f", due in {format_duration(due - ctx.now)}"


def assess(
    defs: Definitions,
    runs: dict[str, Runs],
    now: float,
    finished: dict[str, float] | None = None,
    job_ids: dict[str, str] | None = None,
    uncounted: set[str] | None = None,
    rerun_held: bool = False,
    facts: Facts | None = None,
    labels: frozenset[str] | None = None,
    reusable: Callable[[JobDef], str | None] | None = None,
    passed: Callable[[JobDef], str | None] | None = None,
) -> dict[str, PlanItem]:
    """The plan for every job of ``defs`` from this node's ``runs`` of each (by job name).

    ``finished`` overrides, per job, when its last failure ended (the caller's clock), so that
    retry delays are measured on one clock; otherwise the ledger's finish time is used.
    ``uncounted``: run ids that do not use up a retry (runs ended by crash recovery).
    """
    ctx = _Context(
        runs, now, finished or {}, uncounted or set(), rerun_held, facts or Facts(), labels, reusable, passed
    )
    out: dict[str, PlanItem] = {}
    for d in defs:
        seen = _seen(runs.get(d.name, Runs()), ctx.skip_ids)
        item = PlanItem(
            d.name,
            Action.RUN,
            "not run on this node yet",
            d.run,
            list(d.needs),
            seen.attempts,
            d.retry.max,
            (job_ids or {}).get(d.name),
        )
        out[d.name] = item
        verdict = next((v for rule in _RULES if (v := rule(d, seen, ctx, out)) is not None), None)
        if verdict is not None:
            item.action, item.reason = verdict
        else:
            _to_run(item, d, seen, ctx)
    return out


def release(
    jobs: Jobs,
    defs: Definitions,
    labels: frozenset[str] | None = None,
    *,
    ask: bool = False,
    passed: Collection[str] = (),
) -> list[tuple[JobMut, bool]]:
    """Create every job ``defs`` declares (idempotent); ``(job, created)`` in needs order.

    ``labels``: only the jobs a node with these labels may serve (see :func:`servable`).
    ``ask``: a person asks other nodes to run them (``git jobs release``), not a node's own
    release of what it works on."""
    existing = {j.name for j in jobs.find_by_commit(defs.commit)}
    names = servable(defs, labels, passed) if labels is not None else set(defs.names)
    return [
        (jobs.create(defs.commit, d.name, ask=ask), d.name not in existing) for d in defs if d.name in names
    ]


def servable(defs: Definitions, labels: frozenset[str], passed: Collection[str] = ()) -> set[str]:
    """Jobs a node with ``labels`` may serve: its ``runs_on`` labels, and so all its needs'
    (or the need ``passed`` on a trusted node: :class:`.values.NeedValues`)."""
    out: set[str] = set()
    for d in defs:  # needs first
        if set(d.runs_on) <= labels and all(n in out or n in passed for n in d.needs):
            out.add(d.name)
    return out


class Workshop:
    """This node running jobs in one repository (the library API behind ``git jobs work``).

    ``clock``/``sleep`` are injectable so tests can fake time; ``cancel`` (set by SIGTERM in the
    node) interrupts a running job — it is killed and finished ``cancelled`` — and any wait.
    ``lock``: a :class:`WorkLock` the caller already holds (the node holds one for its life).
    ``isolation``: how jobs are cut off from the node (default: the node's git config, see
    :mod:`.isolation`); never anything a commit says.
    ``reruns``: (job, this node's NID) → this node's runs of it that still count — a *trusted*
    ``rerun`` leaves out the runs started before this node saw it, so its attempts start afresh
    (:class:`.requests.Reruns`; the caller gives it the trust policy's requesters).
    ``assignment``: ``"all"`` runs every job; ``"shared"`` only those the policy assigns here;
    None: ``git config jobs.assignment`` (:mod:`jobs.assign`, applied by :mod:`.share`).
    """

    def __init__(
        self,
        jobs: Jobs,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
        cancel: threading.Event | None = None,
        out: Callable[[str], None] | None = None,
        lock: WorkLock | None = None,
        kill_grace: float = KILL_GRACE,
        rerun_held: bool = False,
        isolation: Isolation | None = None,
        reruns: Callable[[Job, str], Runs] | None = None,
        parallel: int = 1,
        resources: Mapping[str, int] | None = None,
        labels: frozenset[str] | None = None,
        assignment: str | None = None,
        max_timeout: float | None = None,
        runners: Runners | None = None,
    ) -> None:
        if jobs.signer is None:
            raise JobsError("running jobs needs this node's key (see `git jobs init`)")
        self.jobs = jobs
        self.nid = jobs.signer.nid
        self.clock = clock
        self.cancel = cancel or threading.Event()
        self.sleep = sleep or (lambda s: self.cancel.wait(max(0.0, s)) and None)
        self.out = out or (lambda line: None)
        self.kill_grace = kill_grace
        # A human's "yes, run it again": interrupted non-idempotent jobs are otherwise held.
        self.rerun_held = rerun_held
        self.journal = Journal(jobs.repo)
        self._isolation = isolation
        self._runners = runners  # the node's enabled runners (None: its git config, when needed)
        self.reruns = reruns or (lambda job, nid: job.runs_of(nid))
        self._lock = lock
        # --jobs N and --resource NAME=N (see .slots): independent jobs at once, bounded
        self.parallel = max(1, parallel)
        self.resources = dict(resources or {})
        # runs_on: the node's labels (detected OS/arch, plus --label / jobs.labels)
        self.labels = labels if labels is not None else node_labels()
        self._finished: dict[tuple[str, str], float] = {}
        # jobs.maxTimeout (None: read from git config when first needed)
        self._max_timeout = max_timeout
        self._sources: dict[str, str] = {}  # commit -> how it was reached (for `if` conditions)
        self._facts: dict[str, Facts] = {}
        self._announced: tuple[object, ...] | None = None  # what announce() last published
        self._reuse: dict[tuple[str, str], str] = {}  # (commit, job) → why it is reused
        from .share import Sharing  # it filters this module's plans

        self.sharing = Sharing(jobs, self.nid, assignment)
        self.handoff = Handoff(jobs)  # trusted nodes' published outputs (jobs.artifacts)
        self.values = NeedValues(jobs, self.nid)  # needs' outputs, from the ledger (values.py)
        self._values: dict[uuid.UUID, dict[str, str]] = {}  # run → what it wrote (to its finish)

    @property
    def isolation(self) -> Isolation:
        """The node's isolation, read from its config when first needed (release needs none)."""
        if self._isolation is None:
            assert self.jobs.signer is not None
            self._isolation = load_isolation(self.jobs.repo, key=self.jobs.signer.path)
        return self._isolation

    @property
    def runners(self) -> Runners:
        """The runners this node enabled (``jobs.runners``; see :mod:`.runners`)."""
        if self._runners is None:
            self._runners = Runners.load(self.jobs.repo)
        return self._runners

    @property
    def max_timeout(self) -> float:
        """``jobs.maxTimeout``: no job runs longer here (a bad setting stops the pass)."""
        if self._max_timeout is None:
            from .config import max_timeout

            self._max_timeout = max_timeout(self.jobs.repo)
        return self._max_timeout

    def time_limit(self, d: JobDef) -> float:
        """How long ``d`` may run here: its ``timeout`` capped by ``jobs.maxTimeout`` (no
        timeout: the cap). The run op records it as the deadline this node promises."""
        return self.max_timeout if d.timeout is None else min(d.timeout, self.max_timeout)

    # -- reading ---------------------------------------------------------------------------
    def definitions(self, commit: str = "HEAD") -> tuple[str, Definitions | None]:
        sha = self.jobs.resolve_commit(commit)
        defs = load_definitions(self.jobs.repo, sha)
        if defs is not None:
            self.runners.check(defs)  # a runner this node lacks: one definition error
        return sha, defs

    def _runs(self, defs: Definitions) -> tuple[dict[str, Runs], dict[str, str]]:
        runs: dict[str, Runs] = {}
        ids: dict[str, str] = {}
        for job in self.jobs.find_by_commit(defs.commit):
            if defs.get(job.name) is not None:
                # a trusted rerun request: runs started before this node saw it no longer count
                runs[job.name] = self.reruns(job, self.nid)
                ids[job.name] = job.id
        return runs, ids

    def note_source(self, commit: str, source: str) -> None:
        """How ``commit`` was reached (a followed ref, a named REV): what ``if`` conditions see."""
        self._sources[commit] = source
        self._facts.pop(commit, None)

    def _source(self, commit: str) -> str:
        return self._sources.get(commit, commit)

    def requested_only(self, commit: str) -> bool:
        """Was ``commit`` reached only by a requester's ask (no ref here followed, no REV named)?"""
        return self._sources.get(commit, "").startswith(REQUESTED)

    def facts(self, defs: Definitions) -> Facts:
        """What the commit's ``if`` conditions may look at (computed once, only if one has any)."""
        if not any(d.when is not None for d in defs):
            return Facts()
        if defs.commit not in self._facts:
            repo = self.jobs.repo
            ref = reached_by(repo, self._sources.get(defs.commit))
            value = lambda job, key: self.values.value(defs.commit, job, key)  # noqa: E731
            self._facts[defs.commit] = Facts(ref, changed_paths(repo, defs.commit), value=value)
        return self._facts[defs.commit]

    def plan(self, defs: Definitions) -> list[PlanItem]:
        """What :meth:`work_any` would do now for these definitions (nothing is written)."""
        defs = self.expanded(defs, record=False)  # a dynamic matrix's jobs, once known
        runs, ids = self._runs(defs)
        finished = {n: t for (c, n), t in self._finished.items() if c == defs.commit}
        crashed = self.journal.recovered()
        facts = self.facts(defs)
        now = self.clock()
        plan = assess(
            defs,
            runs,
            now,
            finished,
            ids,
            crashed,
            self.rerun_held,
            facts,
            self.labels,
            lambda d: self.reusable(defs.commit, d),
            lambda d: self.values.passed_elsewhere(defs.commit, d.name),
        )
        return self.sharing(defs, list(plan.values()), now)  # jobs assigned elsewhere left alone

    def expanded(self, defs: Definitions, *, record: bool = True) -> Definitions:
        """``defs`` with its dynamic matrices expanded where its needs' values are known (the
        expansion recorded in a signed ``release`` with ``fanout`` when ``record``: fanout.py)."""
        grown, fanned = expand_dynamic(defs, lambda job: self.values.of(defs.commit, job))
        for base, names in fanned.items() if record else ():
            self.jobs.create(defs.commit, base).fanout(names)
        return grown

    def _passed(self, defs: Definitions) -> set[str]:
        """Jobs this node does not serve (runs_on) that a trusted node passed (values.py)."""
        if not any(d.runs_on for d in defs):
            return set()
        return {d.name for d in defs if d.runs_on and self.values.passed_elsewhere(defs.commit, d.name)}

    def reusable(self, commit: str, d: JobDef) -> str | None:
        """Why ``d`` (``reuse = "tree"``) need not run at ``commit``: a pass by this node or a
        node its policy trusts on another commit with the same tree and definitions (a found
        one is kept for the process: a signed pass never changes), or None."""
        if d.publish and (got := self.handoff.why(commit, d)) is not None:
            return got
        found = self._reuse.get((commit, d.name))
        if d.reuse is None:
            return None
        if found is None:
            from ..errors import PolicyError
            from ..evidence import find_reuse
            from ..policy import load_policy

            try:
                policy = load_policy(self.jobs.repo)
            except PolicyError:
                return None  # no trust to go by: run it
            trusts = lambda nid: nid == self.nid or policy.trusts(nid)  # noqa: E731
            reuse = find_reuse(self.jobs.find_by_name(d.name), self.jobs.repo, commit, d.name, trusts)
            if reuse is None or len(reuse.nodes) < policy.quorum:
                return None  # as the gate counts it: a quorum of trusted signers
            found = f"passed on {reuse.commit[:12]} with the same tree (run {reuse.run_id[:8]}): not run"
            self._reuse[(commit, d.name)] = found
        return found

    def announce(self) -> bool:
        """Publish this node's labels and resource capacities in its signed profile
        (:mod:`jobs.profile`) when they differ from what it published; True if it wrote."""
        now = (tuple(sorted(self.labels)), tuple(sorted(self.resources.items())))
        if self._announced == now:
            return False
        from ..profile import announce

        wrote = announce(self.jobs, self.labels, self.resources)
        self._announced = now
        return wrote

    # -- crash recovery --------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        if self._lock is not None:
            yield
            return
        with WorkLock(self.jobs.repo):
            yield

    def recover(self) -> list[Outcome]:
        """Finish ``error`` every run a dead process of this node left started (needs the lock)."""
        out = []
        for entry in self.journal.entries():
            kill_orphan(entry)
            remove_checkout(self.jobs.repo, entry.checkout)
            job = self.jobs.get_mut(entry.job_id)
            run = job.runs_of(self.nid).get(uuid.UUID(entry.run_id)) if job is not None else None
            if job is not None and run is not None and run.is_started:
                detail = "the node stopped mid-run; finished as error"
                with contextlib.suppress(OSError), open(log_path(self.jobs.repo, entry.run_id), "ab") as fh:
                    fh.write(f"\ngit-jobs: {detail}\n".encode())
                self.journal.mark_recovered(entry.run_id)
                blob = self._publish(entry.run_id, log_path(self.jobs.repo, entry.run_id))
                job.finish(entry.run_id, Reason.ERROR, log_blob=blob)
                outcome = Outcome(entry.job, job.commit, job.id, entry.run_id, Reason.ERROR, run.log, detail)
                out.append(outcome)
                self.out(f"recovered: {outcome.line()}")
            self.journal.remove(entry.run_id)
        return out

    # -- working ---------------------------------------------------------------------------
    def work_any(
        self, commit: str = "HEAD", *, comprehensive: bool = False, source: str | None = None
    ) -> WorkReport:
        """Run this node's outstanding jobs of ``commit`` (one pass, or until none is left).

        ``source``: how the commit was reached (default: ``commit`` itself, e.g. ``HEAD``)."""
        sha, defs = self.definitions(commit)
        if sha not in self._sources or source is not None:
            self.note_source(sha, source or commit)
        report = WorkReport(sha, defs is not None)
        with self.locked():
            report.recovered = self.recover()
            self.announce()  # what this node can run, for every reader's ranking
            prune_outputs(self.jobs.repo, keep=sha)  # outputs of commits unused for days, or LRU
            if defs is None:
                return report
            self.isolation.check()
            _ = self.max_timeout  # a bad jobs.maxTimeout stops the pass before anything runs
            defs = self.expanded(defs)  # dynamic matrices whose needs' outputs are known (fanout.py)
            mut = {
                job.name: job for job, _ in release(self.jobs, defs, self.labels, passed=self._passed(defs))
            }
            while True:
                if self._one_pass(defs, mut, report):
                    report.interrupted = True
                    break
                grown = self.expanded(defs)  # a pass may have made a dynamic matrix's values
                if grown is not defs:
                    defs = grown
                    mut.update(
                        (j.name, j)
                        for j, _ in release(self.jobs, defs, self.labels, passed=self._passed(defs))
                    )
                    continue
                if not comprehensive:
                    break
                plan = self.plan(defs)
                if any(p.action in ("run", "skip") for p in plan):
                    continue
                due = [p.not_before for p in plan if p.action == "wait" and p.not_before is not None]
                if not due:
                    break
                delay = min(due) - self.clock()
                self.out(f"waiting {format_duration(max(delay, 0.0))} before the next retry")
                self.sleep(max(delay, 0.0))
                if self.cancel.is_set():
                    report.interrupted = True
                    break
        report.plan = self.plan(defs)
        return report

    def _one_pass(self, defs: Definitions, mut: dict[str, JobMut], report: WorkReport) -> bool:
        """One pass over the commit's jobs: one at a time, or ``parallel`` at once."""
        if self.parallel > 1:
            return self._pass_parallel(defs, mut, report)
        return self._pass(defs, mut, report)

    def _pass_parallel(self, defs: Definitions, mut: dict[str, JobMut], report: WorkReport) -> bool:
        """Like :meth:`_pass`, with up to ``parallel`` commands running at once (True: interrupted).

        Every ledger write (start, skip, finish) and every plan happens in this thread; worker
        threads only run commands. A job starts once its needs are met (the plan says ``run``),
        a worker slot is free and :class:`Slots` grants each of its resources; each job runs at
        most once per pass, as in the sequential pass.
        """
        slots, tried = Slots(self.resources), set[str]()
        running: dict[Future[tuple[Reason, str]], Started] = {}
        with ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="job") as pool:
            changed = True  # replan only after something was recorded
            while True:
                acted = changed and not self.cancel.is_set()
                acted = acted and self._dispatch(defs, mut, report, slots, tried, running, pool)
                if not running and not acted:
                    break
                done, _ = futures.wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
                changed = acted or bool(done)
                for future in done:
                    started = running.pop(future)
                    slots.give(started.d.resources)
                    self._record(report, self._conclude(started, *future.result()))
        return self.cancel.is_set() or any(o.reason is Reason.CANCELLED for o in report.outcomes)

    def _dispatch(
        self,
        defs: Definitions,
        mut: dict[str, JobMut],
        report: WorkReport,
        slots: Slots,
        tried: set[str],
        running: dict[Future[tuple[Reason, str]], Started],
        pool: ThreadPoolExecutor,
    ) -> bool:
        """Skip or start what the plan says is ready now; True when something was recorded."""
        acted = False
        for item in self.plan(defs):
            d = defs.get(item.name)
            if d is None or d.dynamic or item.name in tried:  # dynamic: runs as expanded, next pass
                continue
            if item.action == "skip":
                tried.add(item.name)
                self._record(report, self.skip(mut[d.name], d, defs, item.reason))
                acted = True
            elif item.action == "run" and len(running) < self.parallel and slots.take(d.resources):
                tried.add(item.name)
                started = self._begin(mut[d.name], d, defs)
                running[pool.submit(self._run_started, started)] = started
                acted = True
        return acted

    def _record(self, report: WorkReport, outcome: Outcome) -> None:
        report.outcomes.append(outcome)
        self.out(outcome.line())

    def _pass(self, defs: Definitions, mut: dict[str, JobMut], report: WorkReport) -> bool:
        """One pass in needs order; True when interrupted."""
        for d in defs:
            if self.cancel.is_set():
                return True
            item = next((p for p in self.plan(defs) if p.name == d.name), None)
            if item is None or d.dynamic:  # a dynamic matrix runs as expanded, in the next pass
                continue
            if item.action == "run":
                outcome = self.attempt(mut[d.name], d, defs)
            elif item.action == "skip":
                outcome = self.skip(mut[d.name], d, defs, item.reason)
            else:
                continue
            report.outcomes.append(outcome)
            self.out(outcome.line())
            if outcome.reason is Reason.CANCELLED:
                return True
        return False

    def _start(self, job: JobMut, d: JobDef, defs: Definitions) -> tuple[uuid.UUID, str, Path]:
        run_id: uuid.UUID = uuid6.uuid7()
        url = log_url(self.nid, run_id, defs.commit, d.name, defs.log_url)
        path = log_path(self.jobs.repo, run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        return run_id, url, path

    def skip(self, job: JobMut, d: JobDef, defs: Definitions, why: str) -> Outcome:
        """Record a run finished ``skipped``; its log says why."""
        run_id, url, path = self._start(job, d, defs)
        path.write_text(f"git-jobs: job {d.name} at {defs.commit} skipped: {why}\n")
        self.journal.add(Entry(str(run_id), job.id, d.name, defs.commit))  # never left started
        job.run(url, run_id=run_id)
        job.finish(run_id, Reason.SKIPPED, log_blob=self._publish(run_id, path))
        self.journal.remove(run_id)
        return Outcome(d.name, defs.commit, job.id, str(run_id), Reason.SKIPPED, url, why)

    def attempt(self, job: JobMut, d: JobDef, defs: Definitions) -> Outcome:
        """One run of ``d``: record it, execute it in a checkout, finish it with a reason."""
        started = self._begin(job, d, defs)
        reason, detail = self._run_started(started)
        return self._conclude(started, reason, detail)

    def _begin(self, job: JobMut, d: JobDef, defs: Definitions) -> Started:
        """Record the run ``started`` (a signed write: in the scheduling thread) and open its log."""
        settings = published.LogSettings.load(self.jobs.repo)  # a bad setting stops us here
        d = self._rendered(d, defs)  # {needs.JOB.outputs.NAME}, shell-quoted (values.py)
        run_id, url, path = self._start(job, d, defs)
        given = for_run(self.jobs.repo, d.secrets, defs.commit, self._source(defs.commit))
        settings = replace(settings, redact=settings.redact + tuple(given.patterns))  # values never logged
        scratch = Scratch(Path(tempfile.mkdtemp(prefix=f"git-jobs-{run_id}-")))
        entry = Entry(str(run_id), job.id, d.name, defs.commit, 0, str(scratch.root))
        self.journal.add(entry)
        log = CappedLog(path, settings.max_bytes, settings.redact)  # redacted before capped
        try:
            log.write(f"git-jobs: run {run_id} of job {d.name} at {defs.commit} on {self.nid}\n".encode())
            log.write("".join(f"git-jobs: {note}\n" for note in given.notes).encode())
            limit = self.time_limit(d)
            if d.timeout is not None and d.timeout > limit:
                capped = f"timeout {format_duration(d.timeout)} capped to {format_duration(limit)}"
                log.write(f"git-jobs: {capped} (jobs.maxTimeout)\n".encode())
            job.run(url, run_id=run_id, timeout=limit)
        except BaseException:
            log.close()
            remove_tree(scratch.root)
            raise
        return Started(
            job, d, defs, run_id, url, path, scratch, entry, log, settings, time.monotonic(), given
        )

    def _rendered(self, d: JobDef, defs: Definitions) -> JobDef:
        if "{needs." not in d.run:
            return d
        run, _ = render_run(d.run, lambda job, key: self.values.value(defs.commit, job, key))
        return dataclasses.replace(d, run=run)

    def _judge(
        self, d: JobDef, defs: Definitions, run_id: uuid.UUID, root: Path, log: Any
    ) -> tuple[Reason, str] | None:
        """What the run wrote to ``$GIT_JOBS_OUTPUT`` (kept for its finish) and its ``check``'s
        verdict (values.py): None when the exit status decides."""
        try:
            values = self._values[run_id] = read_values(root)
        except ValuesError as e:
            return Reason.FAILED, f"outputs refused: {e}"
        reader = lambda job, key: self.values.value(defs.commit, job, key)  # noqa: E731
        verdict = judge(d, log.exit_status, values, reader)
        if verdict is not None and verdict[1]:
            log.write(f"git-jobs: {verdict[1]}\n".encode())
        return verdict

    def _run_started(self, s: Started) -> tuple[Reason, str]:
        """The command of a started run, to its end (no ledger write: safe in a worker thread)."""
        try:
            if s.d.fanout_error:  # a dynamic matrix its needs' outputs could not expand: no command
                s.log.write(f"git-jobs: {safe(s.d.fanout_error)}\n".encode())
                return Reason.FAILED, safe(s.d.fanout_error)
            return self._execute(s.d, s.defs, s.run_id, s.scratch, s.log, s.entry, s.secrets)
        except BaseException:
            s.log.close()
            raise
        finally:
            remove_tree(s.scratch.root)

    def _conclude(self, s: Started, reason: Reason, detail: str) -> Outcome:
        """Close the log, publish it and record the finish (in the scheduling thread)."""
        took = format_duration(time.monotonic() - s.began)
        note = publish_outputs(self.jobs, s.d, s.defs.commit, s.run_id, reason)  # jobs.artifacts
        s.log.write(f"git-jobs: {note}\n".encode() if note else b"")
        s.log.write(f"git-jobs: {reason.value} after {took}{': ' + detail if detail else ''}\n".encode())
        s.log.close()
        blob = self._publish(s.run_id, s.path, s.settings)
        kept = reason is Reason.SUCCEEDED and bool(s.d.outputs)
        evidence = record_evidence(self.jobs.repo, s.defs.commit, s.d.name, self.labels, kept)
        evidence = s.secrets.recorded(evidence) if s.secrets is not None else evidence  # names only
        signed = sign_finish(self.jobs, s.job, s.run_id, evidence, blob)  # its attestation, if any
        s.job.finish(
            s.run_id,
            reason,
            log_blob=blob,
            exit_status=s.log.exit_status,
            evidence=evidence,
            attestation=signed,
            values=self._values.pop(s.run_id, None),
        )
        self.journal.remove(s.run_id)
        self._finished[(s.defs.commit, s.d.name)] = self.clock()
        return Outcome(s.d.name, s.defs.commit, s.job.id, str(s.run_id), reason, s.url, detail)

    def _publish(
        self, run_id: uuid.UUID | str, path: Path, settings: published.LogSettings | None = None
    ) -> str | None:
        """Publish a run's log in this node's bucket (jobs.logs); its blob id, or None.

        A log that cannot be read or published is reported, and the run is still finished:
        the result matters more than its log."""
        assert self.jobs.signer is not None
        try:
            with open(path, "rb") as fh:
                data = fh.read(published.MAX_MAX_BYTES + published.CAP_SLACK)
            return published.publish(self.jobs.repo, self.jobs.signer, run_id, data, settings)
        except (OSError, JobsError, cob.CobError) as e:
            self.out(f"log of run {run_id} not published: {e}")
            return None

    def _execute(
        self,
        d: JobDef,
        defs: Definitions,
        run_id: uuid.UUID,
        scratch: Scratch,
        log: Any,
        entry: Entry,
        given: Given | None = None,
    ) -> tuple[Reason, str]:
        try:
            make_checkout(self.jobs.repo, defs.commit, scratch.src)
        except CheckoutError as e:
            log.write(f"git-jobs: cannot check out {defs.commit}: {e}\n".encode())
            return Reason.ERROR, f"cannot check out the commit: {e}"
        scratch.make()
        handed = provide(self.jobs.repo, defs.commit, d.needs, scratch.src)
        handed += self.handoff.provide(defs.commit, [n for n in d.needs if n not in handed], scratch.src)
        cache = cache_around(self.jobs.repo, d.cache, defs.commit, d.name, self._source(defs.commit))
        log.write(
            f"git-jobs: {cache.restore(scratch.src, environment(self.labels))}\n".encode() if cache else b""
        )
        if handed:
            log.write(f"git-jobs: outputs of {', '.join(handed)} copied into the checkout\n".encode())
        env = self.isolation.environment(
            scratch,
            {
                "GIT_JOBS_COMMIT": defs.commit,
                "GIT_JOBS_RUN_ID": str(run_id),
                "GIT_JOBS_JOB": d.name,
                "GIT_JOBS_NODE": self.nid,
                **(given.env if given is not None else {}),
                "GIT_JOBS_OUTPUT": str(scratch.root / OUTPUT_FILE),  # key=value lines (values.py)
            },
        )
        network = self._network(defs.commit, log)
        limit = self.time_limit(d)
        process = functools.partial(self._process, scratch, env, network, limit, log, entry)
        ids = (d.name, defs.commit, str(run_id), d.run, d.data, scratch.src, env, limit)
        result = run_with(self.runners, d.runner, RunContext(*ids, self.cancel, log, process, self.isolation))
        reason, detail = result.reason, result.detail
        if result.exit_status is not None:
            log.exit_status = result.exit_status  # recorded in the finish
            if reason in (Reason.SUCCEEDED, Reason.FAILED):  # ran to its end: outputs and `check`
                reason, detail = self._judge(d, defs, run_id, scratch.root, log) or (reason, detail)
        if reason is Reason.SUCCEEDED:
            detail = ""
            saved = cache.save(scratch.src) if cache is not None else ""
            log.write(f"git-jobs: {saved}\n".encode() if saved else b"")
            self._keep_outputs(d, defs, scratch, log)
        return reason, detail

    def _process(
        self,
        scratch: Scratch,
        base: Mapping[str, str],
        network: bool,
        limit: float | None,
        log: Any,
        entry: Entry,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
    ) -> RunResult:
        """A runner's program in the job's sandbox, to its end (see :class:`.runners.Process`)."""
        try:
            wrapped = self.isolation.command(
                list(argv), scratch, scratch.src, network=network, grace=self.kill_grace / 2
            )
        except IsolationError as e:
            return RunResult(Reason.ERROR, str(e))
        try:
            proc = subprocess.Popen(
                wrapped,
                cwd=scratch.src,
                env={**base, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as e:
            return RunResult(Reason.ERROR, f"cannot start: {e.strerror or e}")
        entry.pid = proc.pid
        self.journal.add(entry)
        code = self._wait(proc, limit)
        if isinstance(code, tuple):
            return RunResult(*code)
        status = code if code >= 0 else 128 - code
        # The run ends with its command: background processes it left behind are stopped
        # (as CI services do), so nothing writes to the log after its closing line.
        self._kill_group(proc.pid)
        if code == 0:
            return RunResult(Reason.SUCCEEDED, "", status)
        if code < 0:
            return RunResult(Reason.FAILED, f"killed by signal {-code}", status)
        return RunResult(Reason.FAILED, f"exit status {code}", status)

    def _keep_outputs(self, d: JobDef, defs: Definitions, scratch: Scratch, log: Any) -> tuple[Reason, str]:
        """A passed run: its declared ``outputs`` are kept for the jobs that need it here."""
        if d.outputs:
            note = collect(self.jobs.repo, defs.commit, d.name, scratch.src, d.outputs)
            if note:
                log.write(f"git-jobs: {note}\n".encode())
        return Reason.SUCCEEDED, ""

    def _network(self, commit: str, log: Any) -> bool:
        """Whether this run gets the network (see :meth:`.Isolation.network_for`); its log says
        when work only a requester asked for has none, or has it for want of a sandbox."""
        requested = self.requested_only(commit)
        network = self.isolation.network_for(requested)
        if requested and not network and self.isolation.network:
            log.write(b"git-jobs: no network: only a requester asked for this commit (jobs.requestNetwork)\n")
        elif requested and self.isolation.mode == "none" and not self.isolation.request_network:
            log.write(b"git-jobs: network not cut: no sandbox (jobs.isolation none)\n")
        return network

    def _wait(self, proc: subprocess.Popen[bytes], timeout: float | None) -> int | tuple[Reason, str]:
        """The command's exit code; or, when it was stopped (cancelled, timed out), why."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
            if self.cancel.is_set():
                self._kill(proc)
                return Reason.CANCELLED, "interrupted (SIGTERM or Ctrl-C)"
            if timeout is not None and deadline is not None and time.monotonic() >= deadline:
                self._kill(proc)
                return Reason.TIMED_OUT, f"timed out after {format_duration(timeout)}"

    def _kill_group(self, pgid: int) -> None:
        """SIGTERM what is left of a finished job's process group, SIGKILL after the grace."""
        try:
            os.killpg(pgid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            return  # nothing left
        deadline = time.monotonic() + self.kill_grace
        while time.monotonic() < deadline:
            if not _group_alive(pgid):
                return
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    def _kill(self, proc: subprocess.Popen[Any]) -> None:
        """SIGTERM the job's process group, then SIGKILL after a grace period."""
        for sig, wait in ((signal.SIGTERM, self.kill_grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # The leader may be gone while children linger in the group: make sure.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
