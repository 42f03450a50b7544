"""The plan: what this node would do now about each job of a commit, and why.

A pure function of the ledger (this node's runs of each job, as :class:`~jobs.model.Runs`),
the commit's definitions and the time (:func:`assess`): the same inputs give the same plan on
a restarted node, in another process or in a dry run, so the ledger stays the only state.
Each job gets one typed :class:`Action` — run, skip, wait, or a settled state — from the
first rule that decides it (:data:`_RULES`). :mod:`.work` carries the plan out.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ..model import Reason, Runs
from ..retries import ATTEMPTS, exhausted
from ..spec.conditions import Facts, evaluate
from ..spec.definitions import Definitions, JobDef
from ..spec.durations import format_duration
from ..spec.patterns import pattern_delay

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


def _latest_id(runs: Runs) -> uuid.UUID | None:
    latest = runs.latest()
    return latest[0] if latest else None


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
        if items and all(p.action in (Action.DONE, Action.REUSED) for p in items):
            return "succeeded"
        return "failed" if any(p.action in (Action.EXHAUSTED, Action.HELD) for p in items) else ""

    assert d.when is not None
    return evaluate(d.when, dataclasses.replace(facts, outcome=outcome))


def elsewhere(d: JobDef, out: dict[str, PlanItem], labels: frozenset[str] | None) -> str:
    """Why this node leaves ``d`` to others (it lacks a ``runs_on`` label, or a need is left
    to others: needs are met per node), or "" when it may serve it. ``None``: labels unchecked."""
    if labels is not None:
        missing = [x for x in d.runs_on if x not in labels]
        if missing:
            return f"runs_on needs label {missing[0]!r}, which this node lacks"
    away = [n for n in d.needs if out[n].action == Action.ELSEWHERE]
    return f"need {away[0]!r} is left to other nodes" if away else ""


def need_met(state: str, action: Action) -> bool:
    """Whether a need whose plan is ``action`` has ended as ``state`` asks (see NEED_STATES)."""
    if state == "succeeded":
        return action in (Action.DONE, Action.REUSED)
    if state == "failed":
        return action in (Action.EXHAUSTED, Action.HELD)
    return (
        action in (Action.DONE, Action.REUSED) or action in SETTLED_BAD
    )  # any: settled, whatever the outcome


def need_satisfiable(state: str, action: Action) -> bool:
    """False once a need has settled in a way that can never meet ``state`` on this node."""
    if state == "succeeded":
        return action not in SETTLED_BAD
    if state == "failed":
        return action not in (Action.DONE, Action.SKIP, Action.SKIPPED)
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


def servable(defs: Definitions, labels: frozenset[str], passed: Collection[str] = ()) -> set[str]:
    """Jobs a node with ``labels`` may serve: its ``runs_on`` labels, and so all its needs'
    (or the need ``passed`` on a trusted node: :class:`.values.NeedValues`)."""
    out: set[str] = set()
    for d in defs:  # needs first
        if set(d.runs_on) <= labels and all(n in out or n in passed for n in d.needs):
            out.add(d.name)
    return out
