"""One attempt of one job, on this node: check out, sandbox, runner, outputs, the finish.

:class:`Execution` is the half of :class:`~.work.Workshop` that runs a started run — what the
plan (:mod:`.plan`) decided — and records how it ended: the checkout and the needs' outputs,
the cache, the secrets it may have, the runner in the sandbox (:mod:`.runners`,
:mod:`.process`), its structured outputs and ``check`` (:mod:`.values`), its kept and
published outputs, its log and the signed ``finish`` with what it ran under. The workshop
keeps the scheduling: which runs start, when, and how many at once.
"""

from __future__ import annotations

import dataclasses
import functools
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import uuid6

import cob

from .. import logs as published
from ..errors import JobsError
from ..model import Reason
from ..provenance.attest import sign_finish
from ..spec.conditions import Facts
from ..spec.definitions import Definitions, JobDef
from ..spec.durations import format_duration
from ..store import JobMut, Jobs
from ..text import safe
from .cache import around as cache_around
from .candidates import REQUESTED
from .capture import CappedLog
from .checkout import CheckoutError, make_checkout, remove_tree
from .evidence import environment
from .evidence import record as record_evidence
from .handoff import Handoff, publish_outputs
from .isolation import Isolation, IsolationError, Scratch, load_isolation
from .journal import Entry, Journal
from .logs import log_path, log_url
from .outputs import collect, provide
from .process import kill_group, wait
from .runners import RunContext, Runners, RunResult, run_with
from .secrets import Given, for_run
from .values import OUTPUT_FILE, NeedValues, ValuesError, judge, render_run
from .values import read as read_values


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


class Execution:
    """How a started run is carried out and finished (the :class:`~.work.Workshop` is one).

    The attributes it reads are the workshop's, set in its ``__init__``."""

    jobs: Jobs
    nid: str
    clock: Callable[[], float]
    cancel: threading.Event
    out: Callable[[str], None]
    kill_grace: float
    journal: Journal
    labels: frozenset[str]
    handoff: Handoff
    values: NeedValues
    _values: dict[uuid.UUID, dict[str, str]]
    _isolation: Isolation | None
    _runners: Runners | None
    _max_timeout: float | None
    _sources: dict[str, str]
    _facts: dict[str, Facts]
    _finished: dict[tuple[str, str], float]

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

    def note_source(self, commit: str, source: str) -> None:
        """How ``commit`` was reached (a followed ref, a named REV): what ``if`` conditions see."""
        self._sources[commit] = source
        self._facts.pop(commit, None)

    def _source(self, commit: str) -> str:
        return self._sources.get(commit, commit)

    def requested_only(self, commit: str) -> bool:
        """Was ``commit`` reached only by a requester's ask (no ref here followed, no REV named)?"""
        return self._sources.get(commit, "").startswith(REQUESTED)

    def _start(self, job: JobMut, d: JobDef, defs: Definitions) -> tuple[uuid.UUID, str, Path]:
        run_id: uuid.UUID = uuid6.uuid7()
        url = log_url(self.nid, run_id, defs.commit, d.name, defs.log_url)
        path = log_path(self.jobs.repo, run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        return run_id, url, path

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
        self,
        d: JobDef,
        defs: Definitions,
        run_id: uuid.UUID,
        root: Path,
        log: Any,
        given: Given | None = None,
    ) -> tuple[Reason, str] | None:
        """What the run wrote to ``$GIT_JOBS_OUTPUT`` (kept for its finish) and its ``check``'s
        verdict (values.py): None when the exit status decides. Outputs holding a secret the
        run was given are refused: a finish is signed and reaches every peer for good."""
        try:
            values = read_values(root)
        except ValuesError as e:
            return Reason.FAILED, f"outputs refused: {e}"
        leak = given.leaks(values) if given is not None else None
        if leak:
            return Reason.FAILED, f"outputs refused: {leak}"
        self._values[run_id] = values
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
                reason, detail = self._judge(d, defs, run_id, scratch.root, log, given) or (reason, detail)
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
        code = wait(proc, limit, self.cancel, self.kill_grace)
        if isinstance(code, tuple):
            return RunResult(*code)
        status = code if code >= 0 else 128 - code
        # The run ends with its command: background processes it left behind are stopped
        # (as CI services do), so nothing writes to the log after its closing line.
        kill_group(proc.pid, self.kill_grace)
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
