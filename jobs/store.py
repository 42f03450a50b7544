"""`jobs.Jobs`: the Job type's store — create, run, finish, query — over a `cob.Store`."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pygit2
import uuid6

import cob
from cob.evaluate import Evaluation

from .deadline import Judge, check_timeout, whole_seconds
from .errors import (
    AlreadyFinishedError,
    AmbiguousJobError,
    InvalidInputError,
    JobsError,
    MissingCommitError,
    ReadOnlyError,
    UnknownJobError,
    UnknownRunError,
)
from .jobtype import (
    JOB_TYPE,
    check_evidence,
    check_fanout,
    check_finish_extras,
    check_log_url,
    check_name,
    check_run_id,
    check_values,
)
from .listing import JobListing
from .model import Evidence, Job, JobState, Reason
from .ops import FinishRun, Release, Request, Rerun, StartRun

if TYPE_CHECKING:
    from .gate import GateStatus
    from .policy import Policy
    from .sync import SyncReport

DEFAULT_NAME = "ci"


def _job(ev: Evaluation[JobState], judge: Judge | None = None) -> Job:
    assert ev.state is not None
    return Job(ev.object_id, ev.state, ev.rejections(), ev.tips, judge)


class Jobs:
    """All jobs of one repository. ``signer=None`` opens it read-only.

    ``judge``: when the jobs it returns show a started run ``lost`` (:mod:`jobs.deadline`;
    git config ``jobs.lostGrace``, read on first use); a caller may set its own."""

    def __init__(self, store: cob.Store) -> None:
        self.store = store
        self._judge: Judge | None = None

    @property
    def judge(self) -> Judge:
        if self._judge is None:
            self._judge = Judge.load(self.repo)
        return self._judge

    @judge.setter
    def judge(self, judge: Judge) -> None:
        self._judge = judge

    @classmethod
    def open(
        cls,
        repo: pygit2.Repository | str | os.PathLike[str],
        signer: cob.Signer | None = None,
        *,
        cache: bool = True,
    ) -> Jobs:
        return cls(cob.Store(repo, signer, cache=cache))

    @property
    def repo(self) -> pygit2.Repository:
        return self.store.repo

    @property
    def signer(self) -> cob.Signer | None:
        return self.store.signer

    def _signer(self) -> cob.Signer:
        if self.store.signer is None:
            raise ReadOnlyError("this job store is read-only: open it with a signer to write")
        return self.store.signer

    # -- resolving user input ------------------------------------------------------------
    def resolve_commit(self, commit: str | pygit2.Oid, *, must_exist: bool = True) -> str:
        """A full commit sha from an oid, a full or short hex sha, or (if present) any rev."""
        text = str(commit).strip()
        try:
            obj = self.repo.revparse_single(text)
            peeled = obj.peel(pygit2.Commit)
            return str(peeled.id)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
            pass
        if not must_exist and cob.refs.is_oid(text.lower()):
            return text.lower()
        raise MissingCommitError(f"commit {text!r} is not in this repository")

    def resolve(self, spec: str) -> str:
        """A job id from a full id, a unique id prefix, or ``REV:NAME``."""
        return self._resolve(spec)[0]

    def resolve_mut(self, spec: str) -> JobMut:
        """The job ``spec`` names (as :meth:`resolve`), ready to write: loaded once."""
        job_id, ev = self._resolve(spec)
        ev = ev or self._load(job_id)
        if ev is None:
            raise UnknownJobError(f"no job {spec!r}")
        return JobMut(self, ev)

    def _resolve(self, spec: str) -> tuple[str, Evaluation[JobState] | None]:
        """(job id, its evaluation when finding the id needed it loaded)."""
        text = spec.strip()
        if ":" in text:
            rev, _, name = text.rpartition(":")
            commit = self.resolve_commit(rev, must_exist=False)
            # Both keys are indexed: no job needs loading to find (commit, name).
            for job_id in self.store.lookup(JOB_TYPE, "commit", commit, ("name", name)):
                ev = self._load(job_id)
                if ev is not None:
                    return job_id, ev
            raise UnknownJobError(f"no job {name!r} on commit {commit[:12]}")
        lowered = text.lower()
        if not lowered or any(c not in "0123456789abcdef" for c in lowered):
            raise UnknownJobError(f"not a job id: {spec!r}")
        matches = self.store.resolve_prefix(JOB_TYPE, lowered)
        if not matches:
            raise UnknownJobError(f"no job {spec!r}")
        if len(matches) > 1:
            shown = ", ".join(m[:12] for m in matches[:5])
            raise AmbiguousJobError(f"job prefix {spec!r} is ambiguous: {shown}")
        return matches[0], None

    # -- writing -------------------------------------------------------------------------
    def create(self, commit: str | pygit2.Oid, name: str = DEFAULT_NAME, *, ask: bool = False) -> JobMut:
        """The job for (commit, name): the same id on every node, created if needed.

        The id is the unsigned, content-addressed root (anyone can derive it, so it proves
        nothing); what makes the job this node's request, and what peers take at fetch, is a
        signed ``release`` change in this node's namespace, written once per node per job.
        ``ask``: a person asks other nodes to run it (a ``release`` with ``ask``, written once
        per node per job too); only that, by a policy requester, is a request to them.
        """
        signer = self._signer()
        problem = check_name(name)
        if problem:
            raise InvalidInputError(problem)
        sha = self.resolve_commit(commit)
        job_id = cob.change.write_root(self.repo, self.store.codec(JOB_TYPE), [Request(sha, name)])
        ev = self._load(job_id)
        if ev is not None and ev.state is not None and signer.nid in ev.state.requests:
            mut = JobMut(self, ev)
            if ask and signer.nid not in ev.state.asks:
                mut.ask()
            return mut

        def not_yet(state: JobState) -> None:
            if signer.nid in state.requests:
                raise _AlreadyRequested

        try:
            ev = self.store.create(
                JOB_TYPE, [Request(sha, name)], then=[Release(ask=ask)], precondition=not_yet
            )
        except _AlreadyRequested:  # another process of this node released it meanwhile
            ev = self._load(job_id)
            if ev is None:
                raise JobsError(f"job {job_id[:12]} vanished while it was being created") from None
        except cob.NoKeyError as e:
            raise ReadOnlyError(str(e)) from None
        mut = JobMut(self, ev)
        if ask and ev.state is not None and signer.nid not in ev.state.asks:
            mut.ask()  # another process of this node released it meanwhile, without asking
        return mut

    # -- reading -------------------------------------------------------------------------
    def _load(self, job_id: str) -> Evaluation[JobState] | None:
        if not cob.refs.is_oid(job_id):
            return None
        ev = self.store.load(JOB_TYPE, job_id)
        if ev is None or ev.state is None:
            return None
        return ev

    def get(self, job_id: str) -> Job | None:
        ev = self._load(job_id)
        return _job(ev, self.judge) if ev is not None else None

    def get_mut(self, job_id: str) -> JobMut | None:
        ev = self._load(job_id)
        return JobMut(self, ev) if ev is not None else None

    def find_by_commit(self, commit: str | pygit2.Oid) -> list[Job]:
        """Every job of one commit (given as an oid or a full/short hex sha), by name."""
        sha = self.resolve_commit(commit, must_exist=False)
        jobs = list(self._get_many(self.store.lookup(JOB_TYPE, "commit", sha)))
        return sorted(jobs, key=lambda j: (j.name, j.id))

    def find_by_name(self, name: str) -> list[Job]:
        """Every job named ``name``, whatever its commit (one index lookup, then a fold of
        each: what reuse by tree scans, :mod:`jobs.evidence`)."""
        return sorted(self._get_many(self.store.lookup(JOB_TYPE, "name", name)), key=lambda j: j.id)

    def listing(self, commit: str | pygit2.Oid | None = None) -> list[JobListing]:
        """Every job (or every job of ``commit``) as a listing shows it, by id: what
        :meth:`all` and :func:`~jobs.summary.job_state` give, read from the index's small rows
        instead of every job's whole state (:mod:`jobs.listing`); judged by :attr:`judge`."""
        ids = None
        if commit is not None:
            ids = self.store.lookup(JOB_TYPE, "commit", self.resolve_commit(commit, must_exist=False))
        judge = self.judge
        return [JobListing.judged(i, row, judge) for i, row in self.store.listing(JOB_TYPE, ids)]

    def all(self) -> Iterator[Job]:
        yield from self._get_many(self.store.list(JOB_TYPE))

    def _get_many(self, job_ids: list[str]) -> Iterator[Job]:
        """The valid jobs among ``job_ids``: one batch, whose cost does not grow with the
        namespaces that hold none of them (:meth:`cob.Store.load_many`)."""
        for _, ev in self.store.load_many(JOB_TYPE, job_ids):
            if ev is not None and ev.state is not None:
                yield _job(ev, self.judge)

    def sync(
        self,
        remote: str,
        *,
        fetch: bool = True,
        push: bool = True,
        timeout: float | None = 600.0,  # cob.sync.DEFAULT_TIMEOUT, not imported: start-up
        idle: float | None = None,
        trusted_only: bool | None = None,
    ) -> SyncReport:
        """Fetch every node's jobs from ``remote`` (fast-forward only), push this node's own.

        ``timeout`` bounds each git call; ``idle`` stops a transfer silent for that long
        (default: ``git config jobs.idleTimeout``, else 30 s); ``trusted_only`` fetches only
        trusted nodes' namespaces (default: ``git config jobs.fetch``)."""
        from .sync import sync

        return sync(
            self, remote, fetch=fetch, push=push, timeout=timeout, idle=idle, trusted_only=trusted_only
        )

    def policy(self) -> Policy:
        """The trust policy in force here: the policy ref's ``[policy]`` plus local trust."""
        from .policy import load_policy

        return load_policy(self.repo)

    def status(
        self, rev: str = "HEAD", *, policy: Policy | None = None, all_nodes: bool = False
    ) -> GateStatus:
        """The merge verdict for a commit, counting only trusted runs (see :mod:`jobs.gate`)."""
        from .gate import gate_status

        return gate_status(self, rev, policy, all_nodes=all_nodes)

    def allowed_signers(self) -> str:
        """An allowed-signers file for every NID seen, for stock ``git verify-commit``."""
        from .sync import allowed_signers

        return allowed_signers(self)

    def rebuild_index(self) -> int:
        """Throw the job index away and rebuild it from the refs; returns the number of jobs.

        Never needed for correctness (the index notices ref moves by itself); it reclaims space
        and makes the next queries warm."""
        return self.store.rebuild_cache(JOB_TYPE)

    def count(self) -> int:
        """How many jobs have a ref in any namespace."""
        return len(self.store.list(JOB_TYPE))

    def rejected(self) -> list[cob.Rejection]:
        """Every change any job's load dropped, with the reason (re-verifies from scratch)."""
        out: list[cob.Rejection] = []
        for job_id in self.store.list(JOB_TYPE):
            ev = self.store.load(JOB_TYPE, job_id, full=True)
            if ev is not None:
                out.extend(ev.rejections())
        return out


class _AlreadyRequested(Exception):
    """This node's release of the job is already there: nothing to write."""


class JobMut(Job):
    """A job this node can write to: :meth:`run`, :meth:`finish`, :meth:`reload`."""

    __slots__ = ("_ev", "_jobs")

    def __init__(self, jobs: Jobs, ev: Evaluation[JobState]) -> None:
        assert ev.state is not None
        super().__init__(ev.object_id, ev.state, ev.rejections(), ev.tips, jobs.judge)
        self._jobs = jobs
        self._ev = ev

    def _refresh(self, ev: Evaluation[JobState]) -> None:
        assert ev.state is not None
        self._ev = ev
        self._state = ev.state
        self._runs = None
        self.rejected = ev.rejections()
        self.tips = dict(ev.tips)

    def reload(self) -> None:
        """Fold whatever changed since (other nodes' runs, other processes' writes)."""
        ev = self._jobs.store.load(JOB_TYPE, self.id, base=self._ev)
        if ev is not None and ev.state is not None:
            self._refresh(ev)

    def _write(
        self,
        ops: list[Any],
        precondition: Callable[[JobState], None] | None = None,
        embeds: dict[str, bytes] | None = None,
    ) -> None:
        self._jobs._signer()
        try:
            _, ev = self._jobs.store.update(
                JOB_TYPE, self.id, ops, base=self._ev, precondition=precondition, embeds=embeds
            )
        except cob.InvalidOpsError as e:
            self._refresh_after_refusal()
            raise InvalidInputError(str(e)) from None
        except JobsError:
            self._refresh_after_refusal()
            raise
        self._refresh(ev)

    def _refresh_after_refusal(self) -> None:
        """update() may have folded other writers' changes into our evaluation before refusing."""
        if self._ev.state is not None:
            self._refresh(self._ev)

    def ask(self) -> None:
        """Ask other nodes to run this job (a signed ``release`` with ``ask``); they honour it
        only when this node is one of their policy's ``requesters``."""
        self._write([Release(ask=True)])

    def fanout(self, names: Sequence[str]) -> None:
        """Record the jobs this node expanded this job (a dynamic matrix's definition) into: a
        signed ``release`` with ``fanout`` (FORMAT.md 11.6), written once per node per job."""
        problem = check_fanout(self.name, list(names))
        if problem:
            raise InvalidInputError(problem)
        if self._jobs._signer().nid not in self._state.fanouts:
            self._write([Release(fanout=list(names))])

    def rerun(self) -> None:
        """Ask every node to run this job again with fresh attempts (a signed ``rerun``).

        Nodes honour it only when this node may request work under their trust policy; each
        then no longer counts its runs started before it had seen this change."""
        self._write([Rerun()])

    def run(self, log: str, *, run_id: uuid.UUID | None = None, timeout: float | None = None) -> uuid.UUID:
        """Start a run on this node with its log URL; returns the new uuid7 run id.

        ``run_id`` lets a caller that must name the run before starting it (the node puts it
        in the log URL) pick the uuid7 itself. ``timeout``: the seconds within which this node
        promises to finish the run (rounded up to whole seconds, 1 s to 7 days); readers show
        it ``lost`` past that plus a grace. None records no promise: readers then allow
        :data:`jobs.deadline.DEFAULT_TIMEOUT` (6 hours).
        """
        problem = check_log_url(log) or (check_run_id(str(run_id)) if run_id is not None else None)
        seconds: int | None = None
        if timeout is not None and not problem:
            if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
                problem = f"a run's timeout must be a positive number of seconds, not {timeout!r}"
            else:
                seconds = whole_seconds(float(timeout)) if timeout < 1e9 else int(1e9)
                problem = check_timeout(seconds)
        if problem:
            raise InvalidInputError(problem)
        run_id = run_id if run_id is not None else uuid6.uuid7()
        self._write([StartRun(str(run_id), log, timeout=seconds)])
        return run_id

    def finish(
        self,
        run_id: uuid.UUID | str,
        reason: Reason | str,
        *,
        log_blob: str | None = None,
        exit_status: int | None = None,
        evidence: Evidence | None = None,
        attestation: bytes | None = None,
        values: Mapping[str, str] | None = None,
    ) -> None:
        """Finish one of this node's runs; ``log_blob`` names its published log
        (:func:`jobs.logs.publish`), ``exit_status`` the command's exit status, ``evidence``
        what it ran under (signed with the finish: FORMAT.md 11), ``attestation`` its DSSE
        envelope, embedded in the finish change (:mod:`jobs.provenance`, FORMAT.md 11.5),
        ``values`` its structured outputs (FORMAT.md 11.1; none or empty: omitted)."""
        signer = self._jobs._signer()
        why = Reason.parse(reason)
        try:
            key = str(uuid.UUID(str(run_id)))
        except ValueError:
            raise InvalidInputError(f"not a run id: {run_id!r}") from None
        problem = check_finish_extras(log_blob, exit_status)
        if problem:
            raise InvalidInputError(problem)

        def unfinished(state: JobState) -> None:
            run = state.runs.get(signer.nid, {}).get(key)
            if run is None:
                owner = state.owner_of(key, other_than=signer.nid)
                if owner is not None:
                    raise UnknownRunError(f"run {key} belongs to node {owner}, not to this node")
                raise UnknownRunError(f"job {self.id[:12]} has no run {key}")
            if run.reason is not None:
                raise AlreadyFinishedError(f"run {key} already finished: {run.reason}")

        # Checked inside update(), on the state it has just brought up to date with the refs.
        ev = evidence or Evidence()
        op = FinishRun(key, why.value, log_blob, exit_status, ev.defs, ev.policy, ev.tree, ev.outputs, ev.env)
        op.values = dict(values) if values else None
        problem = check_evidence(op) or (check_values(op.values) if op.values else None)
        if problem:
            raise InvalidInputError(problem)
        from .provenance import ATTESTATION_EMBED

        embeds = {ATTESTATION_EMBED: attestation} if attestation is not None else None
        self._write([op], precondition=unfinished, embeds=embeds)
