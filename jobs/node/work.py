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
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent import futures
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import JobsError
from ..model import Job, Reason, Runs
from ..spec.conditions import Facts, changed_paths
from ..spec.definitions import Definitions, JobDef, load_definitions
from ..spec.durations import format_duration
from ..spec.labels import node_labels
from ..store import JobMut, Jobs
from .execute import Execution, Outcome, Started
from .fanout import expand_dynamic
from .follow import reached_by
from .handoff import Handoff
from .isolation import Isolation
from .journal import Entry, Journal, WorkLock, kill_orphan, remove_checkout
from .logs import log_path
from .outputs import prune as prune_outputs
from .plan import ELSEWHERE, WORK, Action, PlanItem, assess, servable
from .process import KILL_GRACE
from .runners import Runners
from .slots import Slots
from .values import NeedValues


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
            if p.action in WORK or p.action == Action.BLOCKED or (p.action == ELSEWHERE and p.not_before)
        ]

    @property
    def ok(self) -> bool:
        """Every job this node may serve and is assigned has succeeded here (``elsewhere``: not its)."""
        return all(p.action in (Action.DONE, ELSEWHERE, Action.REUSED) for p in self.plan)


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


class Workshop(Execution):
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
                if any(p.action in (Action.RUN, Action.SKIP) for p in plan):
                    continue
                due = [p.not_before for p in plan if p.action == Action.WAIT and p.not_before is not None]
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
            if item.action == Action.SKIP:
                tried.add(item.name)
                self._record(report, self.skip(mut[d.name], d, defs, item.reason))
                acted = True
            elif item.action == Action.RUN and len(running) < self.parallel and slots.take(d.resources):
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
            if item.action == Action.RUN:
                outcome = self.attempt(mut[d.name], d, defs)
            elif item.action == Action.SKIP:
                outcome = self.skip(mut[d.name], d, defs, item.reason)
            else:
                continue
            report.outcomes.append(outcome)
            self.out(outcome.line())
            if outcome.reason is Reason.CANCELLED:
                return True
        return False

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
