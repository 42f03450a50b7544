"""``git jobs node``: a long-running peer — preflights first, then workers on intervals.

Phase 1 (autosolve's preflights): the key loads; the repository is readable and writable and no
other worker of this node holds it; every remote answers for fetch (``git ls-remote``) and push
(``git push --dry-run``). Any failure is one line and a non-zero exit *before any work*: a
node that cannot publish its results should not produce them.

Phase 2: crash recovery (runs a dead predecessor left ``started`` are finished ``error``), then
one thread per worker — ``worker:sync:<remote>``, ``worker:release``, ``worker:work``,
``worker:heartbeat`` — each on its interval. A failing worker backs off under the policy its
error falls in (:mod:`.retry`) and keeps the others running. Preflights and workers are named
tasks (:mod:`.tasks`): ``Node(..., preflights=[...], workers=[...])`` adds more from Python.
SIGTERM/SIGINT: the running job is killed and finished ``cancelled``, results are pushed one
last time, and the node exits 0.
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import pygit2

import cob
from cob import sync as cob_sync

from ..errors import DefinitionError, JobsError
from ..requests import Reruns, fetch_requested, trusted_requesters
from ..spec.definitions import load_definitions
from ..spec.durations import format_duration
from ..spec.labels import node_labels
from ..store import Jobs
from ..sync import Publication, SyncReport
from ..text import safe
from .candidates import Candidate, followed, select
from .follow import Follow, fetch
from .invalid import InvalidDefinitions
from .isolation import Isolation, IsolationError, load_isolation
from .journal import Journal, LockedError, WorkLock
from .logs import state_dir
from .periodic import notifier, scheduler
from .plan import Action
from .preflights import PreflightError, check_remote, check_repository
from .progress import state
from .retry import Backoff, policies
from .runners import Runners, RunnerUnavailableError
from .tasks import Preflight, Registry, TaskError, Worker, given, preflight, worker
from .work import WorkReport, Workshop, release

FINAL_SYNC_TIMEOUT = 30.0


MAX_PROGRESS = 100  # commits remembered in node.json

# threading.Event.wait refuses timeouts past ~292 years; no worker sleeps more than a day.
MAX_WAIT = 24 * 3600.0


@dataclass(slots=True)
class TaskStatus:
    runs: int = 0
    failures: int = 0
    last_ok: float | None = None
    last_error: str | None = None


@dataclass(slots=True)
class Node:
    """One node process in one repository. ``run()`` returns the exit code."""

    path: str
    signer: cob.Signer
    remotes: list[str]
    interval: float = 30.0
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    rand: Callable[[], float] = random.random
    stop: threading.Event = field(default_factory=threading.Event)
    kill_grace: float = 2.0
    follows: list[Follow] = field(default_factory=list)
    depth: int = 1
    isolation_mode: str | None = None
    # NIDs whose signed requests this node honours; None: the trust policy's, re-read every pass
    requesters: frozenset[str] | None = None
    parallel: int = 1  # --jobs N
    resources: dict[str, int] = field(default_factory=dict)  # --resource NAME=N
    labels: frozenset[str] | None = None  # for runs_on (None: detected only)
    assignment: str | None = None  # "all" | "shared" | None: git config jobs.assignment
    status: dict[str, TaskStatus] = field(default_factory=dict)
    _lock: WorkLock | None = None
    _isolation: Isolation | None = None
    _settled: set[tuple[str, str]] = field(default_factory=set)  # (commit, newest trusted request)
    _reruns: Reruns | None = None
    _said: set[str] = field(default_factory=set)
    _progress: dict[str, dict[str, Any]] = field(default_factory=dict)
    _log_lock: threading.Lock = field(default_factory=threading.Lock)
    # remote -> since when and why this node's own results are not on it (degraded until a
    # sync publishes them; node.json "unpublished", and one log line each way)
    _unpublished: dict[str, dict[str, Any]] = field(default_factory=dict)
    clock: Callable[[], float] = time.time  # for [schedule] (a test replaces it)
    notify: str | None = None  # git config jobs.notify: run on each verdict change (notify.py)
    notify_timeout: float = 30.0
    # Tasks given from Python (jobs.node.tasks): run beside the node's own, each on its interval
    workers: list[Worker] = field(default_factory=list)
    preflights: list[Preflight] = field(default_factory=list)
    runners: Runners | None = None  # None: the node's git config (jobs.runners), at preflight

    # -- output ------------------------------------------------------------------------------
    def log(self, task: str, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._log_lock:
            self.stream.write(f"{stamp} {task} {safe(message)}\n")
            self.stream.flush()

    def _jobs(self) -> Jobs:
        """A store of this thread's own (pygit2 repositories are not shared across threads)."""
        return Jobs.open(self.path, self.signer)

    # -- phase 1 -----------------------------------------------------------------------------
    def preflight(self) -> None:
        """Run every preflight in order (the node's own, then those given); raise
        :class:`PreflightError` on the first failure. Last, take the repository's work lock."""
        found: dict[str, Any] = {}
        try:
            given("worker", self.workers)
            given("preflight", self.preflights)
            tasks = Registry("preflight", [*self._builtin_preflights(found), *self.preflights])
        except TaskError as e:
            raise PreflightError(f"preflight: {e}") from None
        for task in tasks:
            try:
                task.check()
            except PreflightError:
                raise
            except Exception as e:  # a given preflight's failure, in its own words
                said = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise PreflightError(f"{task.name}: {said}") from None
        lock = WorkLock(found["repo"])
        try:
            lock.acquire()
        except LockedError as e:
            raise PreflightError(f"preflight: {e}") from None
        self._lock = lock

    def _builtin_preflights(self, found: dict[str, Any]) -> list[Preflight]:
        """The node's own preflights; ``found`` passes the repository and HEAD between them."""
        checks = [
            preflight("preflight:repository", lambda: self._check_repository(found)),
            preflight("preflight:isolation", lambda: self._check_isolation(found["repo"])),
            preflight("preflight:runners", lambda: self._check_runners(found["repo"])),
        ]
        remotes = [(r, True) for r in self.remotes]
        remotes += [(r, False) for r in sorted({f.remote for f in self.follows} - set(self.remotes))]
        for remote, push in remotes:
            name = f"preflight:{'remote' if push else 'follow'}:{cob_sync.describe(remote)}"
            check = functools.partial(self._check_found_remote, found, remote, push)
            checks.append(preflight(name, check))
        return checks

    def _check_repository(self, found: dict[str, Any]) -> None:
        repo, head = check_repository(self.path, self.remotes)
        found.update(repo=repo, head=head)

    def _check_isolation(self, repo: pygit2.Repository) -> None:
        try:
            self._isolation = load_isolation(repo, self.isolation_mode, key=self.signer.path)
            self._isolation.check()
        except IsolationError as e:
            raise PreflightError(f"preflight: {e}") from None

    def _check_runners(self, repo: pygit2.Repository) -> None:
        """The runners ``jobs.runners`` enables load (only those: see :mod:`.runners`)."""
        if self.runners is None:
            try:
                self.runners = Runners.load(repo)
            except JobsError as e:
                raise PreflightError(f"preflight: {e}") from None

    def _check_found_remote(self, found: dict[str, Any], remote: str, push: bool) -> None:
        self._check_remote(found["repo"], remote, found["head"], push)

    def _check_remote(self, repo: pygit2.Repository, remote: str, head: str, push: bool = True) -> None:
        check_remote(repo, remote, head, self.signer.nid, push)

    # -- phase 2 -----------------------------------------------------------------------------
    def run(self) -> int:
        """Preflight, recover, run the workers until stopped; 0 on a clean stop."""
        self.preflight()
        previous = self._install_signals()
        try:
            follows = safe(", ".join(map(str, self.follows)) or "HEAD only")
            isolation = self._isolation.describe() if self._isolation else "?"
            self.log(
                "node",
                f"started: node {self.signer.nid}, "
                f"remotes {', '.join(map(cob_sync.describe, self.remotes))}, "
                f"follows {follows} (depth {self.depth}), isolation {isolation}, "
                f"interval {format_duration(self.interval)}, "
                f"assignment {self.assignment or 'per git config'}, "
                f"runners {', '.join(self.runners.names) if self.runners else '?'}, pid {os.getpid()}",
            )
            if self._isolation is not None and self._isolation.mode == "none":
                self.log(
                    "node",
                    "isolation none: jobs run WITHOUT a sandbox, as this user (a person's "
                    "choice: jobs.isolation / --isolation)",
                )
            workshop = self._workshop(self._jobs(), "worker:work")
            recovered = workshop.recover()
            if workshop.announce():
                self.log("node", f"published labels {', '.join(sorted(workshop.labels))}")
            if recovered:
                self.log("node", f"recovered {len(recovered)} run(s) left started by a previous process")
            threads = {w.name: self._spawn(w.name, w.run, w.interval) for w in self._worker_tasks(workshop)}
            work = threads.pop("worker:work")
            others = list(threads.values())
            while not self.stop.wait(0.2):
                pass
            self.log("node", "stopping (a running job, if any, is finished as cancelled)")
            work.join()
            for t in others:
                t.join(timeout=FINAL_SYNC_TIMEOUT)
            self._final_sync()
            self.log("node", "stopped cleanly")
            return 0
        finally:
            self._restore_signals(previous)
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _worker_tasks(self, workshop: Workshop) -> Registry[Worker]:
        """The node's own workers, then those given (a bad or duplicate name stops the node)."""
        own = [worker("worker:work", lambda: self._work(workshop))]
        own += [worker(f"worker:sync:{cob_sync.describe(r)}", self._syncer(r)) for r in self.remotes]
        for remote in dict.fromkeys(f.remote for f in self.follows):
            own.append(worker(f"worker:follow:{cob_sync.describe(remote)}", self._follower(remote)))
        own.append(worker("worker:release", self._releaser()))
        own.append(worker("worker:heartbeat", self._heartbeat))
        own.append(worker("worker:schedule", scheduler(self)))
        if self.notify:
            own.append(worker("worker:notify", notifier(self)))
        return Registry("worker", [*own, *self.workers])

    def _workshop(self, jobs: Jobs, task: str) -> Workshop:
        self._reruns = Reruns(jobs.repo)
        return Workshop(
            jobs,
            reruns=self._reruns,
            cancel=self.stop,
            lock=self._lock,
            kill_grace=self.kill_grace,
            out=lambda line: self.log(task, line),
            isolation=self._isolation,
            parallel=self.parallel,
            resources=self.resources,
            labels=self.labels,
            assignment=self.assignment,
            runners=self.runners,
        )

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: self.stop.set())
        return previous

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _spawn(self, task: str, body: Callable[[], None], interval: float | None = None) -> threading.Thread:
        args = (task, body, interval)
        thread = threading.Thread(target=self._loop, args=args, name=task, daemon=True)
        thread.start()
        return thread

    def _loop(self, task: str, body: Callable[[], None], interval: float | None = None) -> None:
        """Run ``body`` every interval (the worker's, else the node's); on errors back off
        under the error's policy."""
        every = interval or self.interval
        backoff = Backoff(policies(every), self.rand)
        status = self.status.setdefault(task, TaskStatus())
        while not self.stop.is_set():
            status.runs += 1
            wait = every
            try:
                body()
            except Exception as e:  # a worker must survive anything; the policy decides the pace
                try:
                    kind, wait = backoff.next_delay(e)
                    status.failures += 1
                    status.last_error = str(e) or type(e).__name__
                    hint = f", remote asked for {format_duration(kind.hint)}" if kind.hint else ""
                    self.log(
                        task,
                        f"error ({kind.policy} policy{hint}; retry in {format_duration(wait)}): "
                        f"{_first_line(status.last_error)}",
                    )
                except Exception as inner:  # never let reporting an error end the worker
                    wait = every
                    self.log(task, f"error: {_first_line(str(inner) or type(inner).__name__)}")
            else:
                backoff.reset()
                status.last_ok = time.time()
            self.stop.wait(min(max(wait, 0.0), MAX_WAIT))

    def _syncer(self, remote: str) -> Callable[[], None]:
        task = f"worker:sync:{cob_sync.describe(remote)}"
        jobs: list[Jobs] = []

        def body() -> None:
            if not jobs:
                jobs.append(self._jobs())
            # the sync fetches the policy ref first, whatever this node follows: a revocation
            # reaches it now
            report = jobs[0].sync(remote)
            if report.policy_kept:
                self._say_once(report.policy_kept)
            if report.fetched or report.pushed or report.refused or report.rejected:
                self.log(task, report.summary())
            self._note_publication(task, remote, report)
            fetched = fetch_requested(jobs[0], self._requesters(jobs[0]), remote)
            if fetched:
                shown = ", ".join(c[:12] for c in fetched)
                self.log(task, f"fetched {len(fetched)} requested commit(s): {shown}")

        return body

    def _note_publication(self, task: str, remote: str, report: SyncReport) -> None:
        """Degraded while a remote does not hold this node's results (typed, never matched on
        text): one log line when it starts, one when a push works again; node.json says so."""
        line = report.unpublished_line()
        name = cob_sync.describe(remote)
        if report.publication is Publication.UNPUBLISHED and line is not None:
            if name not in self._unpublished:
                self.log(task, f"degraded: {safe(line)}")
            self._unpublished[name] = {
                "since": self._unpublished.get(name, {}).get("since", time.time()),
                "reason": line,
                "refused": [r.to_json() for r in report.unpublished],
            }
        elif report.publication is Publication.PUBLISHED and self._unpublished.pop(name, None) is not None:
            self.log(task, f"recovered: this node's results are published to {name} again")

    def _follower(self, remote: str) -> Callable[[], None]:
        """Fetch this remote's followed refs into the node's private refs (HEAD never moves)."""
        follows = [f for f in self.follows if f.remote == remote]
        jobs: list[Jobs] = []

        def body() -> None:
            if not jobs:
                jobs.append(self._jobs())
            fetch(jobs[0].repo, follows)

        return body

    def _requesters(self, store: Jobs) -> frozenset[str]:
        """Who may request work now: given, else the policy as fetched (a broken one: nobody)."""
        if self.requesters is not None:
            return self.requesters
        return trusted_requesters(store, self._say_once)

    def _say_once(self, line: str) -> None:
        if line not in self._said:
            self._said.add(line)
            self.log("node", line)

    def _commits(self, store: Jobs) -> list[Candidate]:
        """The commits this node works on now: the followed ones (else HEAD), trusted requests."""
        requesters = self._requesters(store)
        if self._reruns is not None and store.repo is self._reruns.repo:
            self._reruns.requesters = requesters
        me = store.signer.nid if store.signer is not None else None
        found = select(store, follows=self.follows, depth=self.depth, requesters=requesters, me=me, own=me)
        if not self.follows:
            found.insert(0, Candidate(store.resolve_commit("HEAD"), "HEAD"))
        return found

    def _releaser(self) -> Callable[[], None]:
        jobs: list[Jobs] = []
        seen: set[str] = set()

        def body() -> None:
            if not jobs:
                jobs.append(self._jobs())
            store = jobs[0]
            for commit in (c.commit for c in self._commits(store)):
                if commit in seen or self.stop.is_set():
                    continue
                seen.add(commit)
                if commit in InvalidDefinitions(store.repo):
                    continue  # reported once already (see worker:work)
                try:
                    defs = load_definitions(store.repo, commit)
                except DefinitionError as e:
                    self.log("worker:release", safe(e))
                    continue
                if defs is None:
                    self.log("worker:release", f"no .git-jobs.toml at {commit[:12]}: nothing to release")
                    continue
                made = release(store, defs, self.labels if self.labels is not None else node_labels())
                created = [job.name for job, new in made if new]
                if created:
                    existed = [job.name for job, new in made if not new]
                    also = f" ({', '.join(existed)} already existed)" if existed else ""
                    self.log("worker:release", f"released {', '.join(created)} for {commit[:12]}{also}")

        return body

    def _tips(self, store: Jobs) -> list[tuple[str, str]]:
        """(commit, why) of what this node follows now: the followed tips, else HEAD."""
        if not self.follows:
            return [(store.resolve_commit("HEAD"), "HEAD")]
        return [(c.commit, c.source) for c in followed(store.repo, self.follows)]  # tips only

    def _work(self, workshop: Workshop) -> None:
        """One pass over the commits this node works on, newest first. One commit that breaks
        the node's code (a peer's or a commit's data no check foresaw) is logged and counted,
        and the pass goes on with the others: the newest pull request never starves the rest.
        Only when every commit failed does the pass raise (the worker backs off: the trouble is
        likely the node's own)."""
        failed: Exception | None = None
        worked = False
        for c in self._commits(workshop.jobs):
            if self.stop.is_set():
                return
            try:
                self._work_one(workshop, c)
                worked = True
            except Exception as e:
                failed = failed or e
                status = self.status.setdefault("worker:work", TaskStatus())
                status.failures += 1
                status.last_error = f"{c.commit[:12]}: {str(e) or type(e).__name__}"
                line = _first_line(str(e) or type(e).__name__)
                self.log("worker:work", f"{c.commit[:12]} ({safe(c.source)}): error: {safe(line)}")
        if failed is not None and not worked:
            raise failed

    def _work_one(self, workshop: Workshop, c: Candidate) -> None:
        """Work on one commit (see :meth:`_work`)."""
        commit, why, settled = c.commit, c.source, (c.commit, c.request)
        if settled in self._settled:  # a newer trusted request makes it worth a look again
            return
        invalid = InvalidDefinitions(workshop.jobs.repo)
        if commit in invalid:  # found invalid before, maybe by an earlier process: a fact
            self._settled.add(settled)
            return
        try:
            report = workshop.work_any(commit, source=why)
        except RunnerUnavailableError as e:  # this node's config, not the commit: not recorded
            self.log("worker:work", f"{safe(e)} (not run here while this node lacks the runner)")
            self._settled.add(settled)
            return
        except DefinitionError as e:  # this commit's definitions never change: say it once
            self.log("worker:work", f"{safe(e)} (recorded: this commit is not tried again)")
            self._settled.add(settled)
            invalid.add(commit)
            return
        self._report(report, why)
        self._note_progress(report, why)
        if (self.follows or c.request) and not report.interrupted and not report.remaining:
            self._settled.add(settled)

    def _report(self, report: WorkReport, why: str) -> None:
        if not report.defined:
            return
        waiting = [p for p in report.plan if p.action == Action.WAIT]
        if waiting and not report.outcomes:
            return
        if report.outcomes:
            done = sum(p.action == Action.DONE for p in report.plan)
            self.log(
                "worker:work",
                f"{report.commit[:12]} ({safe(why)}): {done} of {len(report.plan)} jobs done on this node",
            )

    def _note_progress(self, report: WorkReport, why: str) -> None:
        """Remember where each commit stands on this node (shown in ``node.json``; bounded)."""
        if not report.defined:
            return
        jobs = {p.name: {"state": state(p), "not_before": p.not_before} for p in report.plan}
        self._progress.pop(report.commit, None)
        self._progress[report.commit] = {"source": why, "jobs": jobs}
        while len(self._progress) > MAX_PROGRESS:
            self._progress.pop(next(iter(self._progress)))

    def _progress_now(self, repo: pygit2.Repository) -> dict[str, Any]:
        """The remembered progress, with the runs in flight right now marked ``running``."""
        shown = {
            c: {"source": p["source"], "jobs": {n: dict(j) for n, j in p["jobs"].items()}}
            for c, p in list(self._progress.items())
        }
        for entry in Journal(repo).entries():
            commit = shown.setdefault(entry.commit, {"source": "", "jobs": {}})
            commit["jobs"][entry.job] = {"state": "running", "run": entry.run_id, "not_before": None}
        return shown

    def _heartbeat(self) -> None:
        """Say the node is alive, locally: ``<gitdir>/git-jobs/node.json`` and the log."""
        beat = {
            "nid": self.signer.nid,
            "pid": os.getpid(),
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "remotes": [cob_sync.describe(r) for r in self.remotes],
            "follows": [str(f) for f in self.follows],
            "interval": self.interval,
            "status": "degraded" if self._unpublished else "ok",
            "unpublished": dict(self._unpublished),
            "isolation": self._isolation.to_json() if self._isolation else None,
            "workers": {
                task: {
                    "runs": s.runs,
                    "failures": s.failures,
                    "last_ok": s.last_ok,
                    "last_error": s.last_error,
                }
                for task, s in sorted(self.status.items())
            },
        }
        repo = cob.open_repository(self.path)
        beat["progress"] = self._progress_now(repo)
        path = state_dir(repo) / "node.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(beat, indent=2, sort_keys=True))
        os.replace(tmp, path)

    def _final_sync(self) -> None:
        """Push what the last moments produced (e.g. the cancelled run) — best effort."""
        jobs = self._jobs()
        with cob_sync.deadline(FINAL_SYNC_TIMEOUT):  # every git call of every remote, together
            for remote in self.remotes:
                task = f"worker:sync:{cob_sync.describe(remote)}"
                try:
                    report = jobs.sync(remote)
                    self.log(task, f"final sync: {report.summary()}")
                    unpublished = report.unpublished_line()
                    if unpublished is not None:
                        self.log(task, f"final sync: degraded: {safe(unpublished)}")
                except Exception as e:
                    self.log(task, f"final sync failed: {_first_line(str(e))}")


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for prefix in ("fatal:", "error:"):
        for ln in lines:
            if ln.startswith(prefix):
                return ln[len(prefix) :].strip()
    return lines[-1] if lines else "failed"
