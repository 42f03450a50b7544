"""Syncing jobs with a Git remote, and what it changed: :func:`sync`, :class:`SyncReport`.

`cob.sync` moves refs; this module says what that meant for jobs. It snapshots each node's index
tip before the fetch (:meth:`cob.Store.snapshot`), and after it asks the store what moved
(:meth:`cob.Store.changed_since`): the jobs whose folded state differs, and the changes a load
newly rejected even when the state did not move (a forged change fetched from a peer changes
nothing but must be seen).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import pygit2

import cob
from cob import sync as cob_sync
from cob.family import RefFamily
from cob.sync import RefUpdate, Refusal, RefusalKind

from . import artifacts, logs
from .errors import JobsError, PolicyError, SyncError
from .jobtype import JOB_TYPE, TYPENAME
from .policy import fetch_policy, load_policy
from .summary import rejection_json
from .text import safe

if TYPE_CHECKING:
    from .store import Jobs

__all__ = ["Publication", "RefUpdate", "Refusal", "SyncReport", "allowed_signers", "idle_timeout", "sync"]

JSON_VERSION = 1
# Rounds of fetch, merge and push when our own index or a log bucket lost a race on the remote
# (another copy of this node, or another process of it, pushed between our fetch and our push).
PUSH_ROUNDS = 4


class Publication(StrEnum):
    """Whether this node's own results (its index, its log buckets) reached the remote."""

    PUBLISHED = "published"  # the remote holds them (or there was nothing to send)
    UNPUBLISHED = "unpublished"  # the remote refused them, or our index could not be merged
    NOT_ATTEMPTED = "not-attempted"  # --no-push, or no key: nothing of ours to publish


@dataclass(slots=True)
class SyncReport:
    """What one sync did. ``to_json()`` is the stable, documented shape (README)."""

    remote: str
    fetched: list[RefUpdate] = field(default_factory=list)
    pushed: list[RefUpdate] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    rejected: list[cob.Rejection] = field(default_factory=list)
    # Log bucket refs (jobs.logs) moved, and this node's pruned buckets deleted on the remote.
    logs_fetched: list[RefUpdate] = field(default_factory=list)
    logs_pushed: list[RefUpdate] = field(default_factory=list)
    logs_deleted: list[str] = field(default_factory=list)
    skipped: int = 0  # the remote's refs of untrusted nodes, not fetched (jobs.fetch = trusted)
    scope: str = "all"  # "all" | "trusted": whose namespaces were fetched
    own: str | None = None  # this node's NID when it pushed (None: fetch only)
    # Objects two copies of this node both changed, joined by a merge change (Store.merge_own).
    merged: list[str] = field(default_factory=list)
    # Why the policy ref was kept as it was (a rewind refused, the remote away), or None: the
    # policy ref is fetched first, fast-forward only, so a revocation reaches every reader.
    policy_kept: str | None = None
    # Refs not downloaded (cob.sync.FetchResult): refused before at the same values, listed
    # but never taken (other nodes' old-layout refs, pruned or future log buckets), and new log
    # buckets of one node beyond the per-fetch bound (taken by later syncs).
    remembered: int = 0
    ignored: int = 0
    deferred: int = 0
    # Why the fetch failed, when it did: the push still ran (our own results always go out).
    fetch_error: str | None = None

    @property
    def unpublished(self) -> list[Refusal]:
        """The refusals that left this node's own results off the remote: a push refused (our
        index or a log bucket), or our own index on the remote that could not be merged."""
        if self.own is None:
            return []
        index = cob.index_ref(self.own)
        own = RefusalKind.OWN_NAMESPACE
        return [
            r
            for r in self.refused
            if r.side == cob_sync.PUSH
            or (r.kind is own and (r.ref == index or logs.family().parse(r.ref) is not None))
            or (r.kind is own and artifacts.family().parse(r.ref) is not None)
        ]

    @property
    def publication(self) -> Publication:
        if self.own is None:
            return Publication.NOT_ATTEMPTED
        return Publication.UNPUBLISHED if self.unpublished else Publication.PUBLISHED

    @property
    def ok(self) -> bool:
        """True when nothing was refused and nothing fetched was rejected."""
        return not self.refused and not self.rejected

    def to_json(self) -> dict[str, object]:
        return {
            "version": JSON_VERSION,
            "remote": self.remote,
            "fetched": [u.to_json() for u in self.fetched],
            "pushed": [u.to_json() for u in self.pushed],
            "refused": [r.to_json() for r in self.refused],
            "changed": list(self.changed),
            "rejected": [rejection_json(r) for r in self.rejected],
            "logs": {
                "fetched": [_log_json(u) for u in self.logs_fetched],
                "pushed": [_log_json(u) for u in self.logs_pushed],
                "deleted": list(self.logs_deleted),
            },
            "fetch": self.scope,
            "skipped": self.skipped,
            "published": str(self.publication),
            "unpublished": [r.to_json() for r in self.unpublished],
            "merged": list(self.merged),
            "policy_kept": self.policy_kept,
            "remembered": self.remembered,
            "ignored": self.ignored,
            "deferred": self.deferred,
            "fetch_error": self.fetch_error,
        }

    def summary(self) -> str:
        """One line for humans."""
        line = (
            f"{cob_sync.describe(self.remote)}: fetched {len(self.fetched)}, "
            f"pushed {len(self.pushed)}, refused {len(self.refused)}, "
            f"jobs changed {len(self.changed)}, changes rejected {len(self.rejected)}"
            + (f", untrusted refs skipped {self.skipped}" if self.scope == "trusted" else "")
        )
        if self.logs_fetched or self.logs_pushed or self.logs_deleted:
            line += _buckets_line(self.logs_fetched, self.logs_pushed, self.logs_deleted)
        if self.merged:
            line += f"; jobs written on two copies of this node merged {len(self.merged)}"
        if self.remembered or self.deferred:
            line += f"; refused before, not fetched again {self.remembered}" + (
                f"; new log buckets deferred {self.deferred}" if self.deferred else ""
            )
        if self.ignored:
            line += f"; refs never taken, ignored {self.ignored}"
        return line

    def unpublished_line(self) -> str | None:
        """One line saying this node's results did not reach the remote, and why; None when
        they did."""
        refused = self.unpublished
        if not refused:
            return None
        first = refused[0]
        return (
            f"this node's results were not published to {cob_sync.describe(self.remote)}:"
            f" {first.reason}" + (f" (and {len(refused) - 1} more refusals)" if len(refused) > 1 else "")
        )


def _buckets_line(fetched: list[RefUpdate], pushed: list[RefUpdate], deleted: list[str]) -> str:
    """``; log buckets fetched F, pushed P[, deleted D]``, and the artifact buckets apart."""
    out = ""
    for kind, label in ((logs.KIND, "log"), (artifacts.KIND, "artifact")):
        got = sum(1 for u in fetched if _log_json(u)["kind"] == kind)
        sent = sum(1 for u in pushed if _log_json(u)["kind"] == kind)
        gone = sum(1 for ref in deleted if f"/refs/{kind}/" in ref)
        if kind == logs.KIND or got or sent or gone:
            out += f"; {label} buckets fetched {got}, pushed {sent}" + (f", deleted {gone}" if gone else "")
    return out


def _log_json(update: RefUpdate) -> dict[str, object]:
    nid, _, rest = update.ref[len(cob.refs.NAMESPACES) :].partition("/refs/")
    kind, _, bucket = rest.partition("/")  # logs, or artifacts (jobs.artifacts)
    return {
        "ref": update.ref,
        "nid": nid,
        "bucket": bucket,
        "kind": kind,
        "old": update.old,
        "new": update.new,
    }


def _split(updates: list[RefUpdate]) -> tuple[list[RefUpdate], list[RefUpdate]]:
    """(job ref updates, log bucket updates)."""
    jobs = [u for u in updates if _is_job_ref(u.ref)]
    return jobs, [u for u in updates if not _is_job_ref(u.ref)]


def _is_job_ref(name: str) -> bool:
    """A node's index ref (or a per-object ref of the layout before it), not a log bucket."""
    return cob.sigrefs.parse_index_ref(name) is not None or cob.refs.parse_ref(name) is not None


def sync(
    jobs: Jobs,
    remote: str,
    *,
    fetch: bool = True,
    push: bool = True,
    timeout: float | None = cob_sync.DEFAULT_TIMEOUT,
    idle: float | None = None,
    limits: cob_sync.Limits | None = None,
    trusted_only: bool | None = None,
) -> SyncReport:
    """Fetch every node's jobs from ``remote`` (fast-forward only), then push this node's.

    A store opened without a signer only fetches. ``timeout`` bounds each git call, ``idle``
    stops a transfer that shows no progress for that long (None: :func:`idle_timeout`);
    ``limits`` bounds the new refs and namespaces taken (:class:`cob.sync.Limits`).
    ``trusted_only`` (default: ``git config jobs.fetch`` = ``trusted``) fetches only the
    namespaces of the nodes the policy trusts; with no policy at all every node is trusted.
    A transport failure raises
    :class:`~jobs.errors.SyncError` (also a :class:`cob.TransportError`) carrying the partial
    report in ``.report``: refs fetched before a failed push are kept and listed there.
    """
    report = SyncReport(remote)
    repo = jobs.repo
    if idle is None:
        idle = idle_timeout(repo)
    own = jobs.signer.nid if jobs.signer is not None else None
    if own is not None:
        jobs.store.repair_index()  # an index tip git's prune deleted: move on from an intact one
    remote_refs: dict[str, str] | None = None
    if push and own is not None:
        report.own = own
    try:
        if fetch:
            remote_refs = _first_fetch(jobs, remote, report, own, trusted_only, limits, timeout, idle)
            fetch = report.fetch_error is None
        if push and own is not None:
            _push(jobs, remote, report, own, remote_refs, fetch, trusted_only, limits, timeout, idle)
    except cob.TransportError as e:  # the fetch's failure, when both failed, is said first
        raise SyncError(report.fetch_error or str(e), report) from None
    if report.fetch_error is not None:
        raise SyncError(report.fetch_error, report)
    return report


def _push(
    jobs: Jobs,
    remote: str,
    report: SyncReport,
    own: str,
    remote_refs: dict[str, str] | None,
    fetched: bool,
    trusted_only: bool | None,
    limits: cob_sync.Limits | None,
    timeout: float | None,
    idle: float | None,
) -> None:
    """Push our refs; when our index moved on the remote meanwhile, fetch, merge and push again."""
    repo = jobs.repo
    families = (logs.family_for(repo), artifacts.family_for(repo))  # logs and artifacts travel beside
    for round_ in range(PUSH_ROUNDS):
        jobs.store.migrate(again=True)  # our per-object refs of the layout before the index
        sent = cob_sync.push(
            repo,
            remote,
            own,
            typenames=(TYPENAME,),
            remote_refs=remote_refs,
            timeout=timeout,
            idle=idle,
            families=families,
        )
        pushed, logs_pushed = _split(sent.pushed)
        report.pushed.extend(pushed)
        report.logs_pushed.extend(logs_pushed)
        report.logs_deleted.extend(d for d in sent.deleted if not _is_job_ref(d))
        sent.refused = _settle_busy(jobs, remote, sent.refused, timeout, idle, families)
        if not fetched or round_ + 1 == PUSH_ROUNDS or not _lost_race(sent.refused, own):
            report.refused.extend(sent.refused)
            return
        # Our index moved on the remote since our fetch (another copy of this node, or
        # another process of it, pushed meanwhile): fetch and merge again, then push.
        remote_refs = _fetch(jobs, remote, report, own, trusted_only, limits, timeout, idle)


def _first_fetch(
    jobs: Jobs,
    remote: str,
    report: SyncReport,
    own: str | None,
    trusted_only: bool | None,
    limits: cob_sync.Limits | None,
    timeout: float | None,
    idle: float | None,
) -> dict[str, str] | None:
    """:func:`_fetch`; when it fails and this node has something to push, the failure is
    noted in ``report.fetch_error`` (raised after the push) and None returned: a hub that
    cannot serve its refs in time may delay what we take from others, never our own results.
    The policy ref comes first, fast-forward only: a revocation reaches every reader."""
    report.policy_kept = fetch_policy(jobs.repo, remote)
    try:
        return _fetch(jobs, remote, report, own, trusted_only, limits, timeout, idle)
    except cob.TransportError as e:
        if report.own is None:  # nothing of ours to push (--no-push, or no key)
            raise
        report.fetch_error = str(e)
        return None


def _settle_busy(
    jobs: Jobs,
    remote: str,
    refused: list[Refusal],
    timeout: float | None,
    idle: float | None,
    families: tuple[RefFamily, ...],
) -> list[Refusal]:
    """Drop the ``busy`` push refusals (another push moved the ref at the same moment) whose
    ref the remote now holds at the value we pushed: another process of this node delivered
    the same tip, so it is published. One more listing, only after such a race."""
    busy = [r for r in refused if r.side == cob_sync.PUSH and r.kind is RefusalKind.BUSY]
    if not busy:
        return refused
    listed = cob_sync.ls_remote(jobs.repo, remote, timeout=timeout, idle=idle, families=families)
    done = {id(r) for r in busy if r.local is not None and listed.get(r.ref) == r.local}
    return [r for r in refused if id(r) not in done]


def _lost_race(refused: list[Refusal], own: str) -> bool:
    """Whether the remote refused our index or a log bucket of ours because it moved since our
    fetch (a push only sends our own namespace)."""
    lost = (RefusalKind.NON_FAST_FORWARD, RefusalKind.BUSY)
    return any(r.side == cob_sync.PUSH and r.kind in lost for r in refused)


def _fetch(
    jobs: Jobs,
    remote: str,
    report: SyncReport,
    own: str | None,
    trusted_only: bool | None,
    limits: cob_sync.Limits | None,
    timeout: float | None,
    idle: float | None,
) -> dict[str, str]:
    """The fetch half of :func:`sync`, into ``report``; returns the remote's listed refs."""
    before = jobs.store.snapshot(JOB_TYPE)
    namespaces = _scope(jobs, trusted_only)
    report.scope = "all" if namespaces is None else "trusted"
    got = cob_sync.fetch(  # strangers' namespaces are held to smaller bounds (Limits.untrusted_*)
        jobs.repo,
        remote,
        own_nid=own,
        typenames=(TYPENAME,),
        limits=limits,
        timeout=timeout,
        idle=idle,
        families=(logs.family_for(jobs.repo), artifacts.family_for(jobs.repo)),
        namespaces=namespaces,
        trusted=_trusted(jobs),
    )
    report.remembered, report.ignored, report.deferred = got.remembered, got.ignored, got.deferred
    fetched, logs_fetched = _split(got.updated)
    report.fetched.extend(fetched)
    report.logs_fetched.extend(logs_fetched)
    report.skipped = got.skipped
    seen = {(r.ref, r.side, r.kind) for r in report.refused}  # a second round says it once
    report.refused.extend(r for r in got.refused if (r.ref, r.side, r.kind) not in seen)
    if got.own_index is not None and jobs.signer is not None:
        _merge_own(jobs, got.own_index, report)
    if got.own_families and jobs.signer is not None:
        _merge_own_logs(jobs, got.own_families, report)
    found = jobs.store.changed_since(JOB_TYPE, before)
    report.changed.extend(j for j in found.changed if j not in report.changed)
    known = {(r.object_id, r.change) for r in report.rejected}
    report.rejected.extend(r for r in found.rejected if (r.object_id, r.change) not in known)
    return got.remote_refs


def _merge_own(jobs: Jobs, theirs: str, report: SyncReport) -> None:
    """The remote holds our own index, signed by us but diverged (this node wrote before its
    first sync after a reinstall, or another copy of it writes through the same remote): merge
    it into ours, so that the push is a fast-forward. The fetch's refusal is dropped when the
    merge succeeds; otherwise it says why (and this node's results stay unpublished)."""
    index = cob.index_ref(jobs.store.signer.nid if jobs.store.signer else "")
    own = RefusalKind.OWN_NAMESPACE
    report.refused = [r for r in report.refused if not (r.ref == index and r.kind is own)]
    try:
        both = jobs.store.merge_own(theirs, (JOB_TYPE,))
    except cob.ConflictError as e:  # not ours to merge: say why
        report.refused.append(Refusal(index, str(e), "fetch", own, None, theirs))
        return
    report.merged.extend(object_id for _, object_id in both if object_id not in report.merged)


def _merge_own_logs(jobs: Jobs, theirs: dict[str, str], report: SyncReport) -> None:
    """Our own log buckets on the remote, signed by us but diverged (two copies of this node
    published logs of one month): merged into ours (:func:`jobs.logs.merge_own`), so that the
    push is a fast-forward; a bucket that cannot be merged stays refused, saying why."""
    assert jobs.signer is not None
    own = RefusalKind.OWN_NAMESPACE
    for name, tip in sorted(theirs.items()):
        try:
            merge = artifacts.merge_own if artifacts.family().parse(name) else logs.merge_own
            merge(jobs.repo, jobs.signer, name, tip)
        except JobsError as e:
            report.refused = [r for r in report.refused if not (r.ref == name and r.kind is own)]
            report.refused.append(Refusal(name, str(e), "fetch", own, None, tip))
            continue
        report.refused = [r for r in report.refused if not (r.ref == name and r.kind is own)]


IDLE_CONFIG = "jobs.idleTimeout"


def idle_timeout(repo: pygit2.Repository) -> float | None:
    """Seconds a transfer may go without progress: ``git config jobs.idleTimeout`` (0 turns
    the check off), else :data:`cob.sync.DEFAULT_IDLE` (30). A bad value is a clear error."""
    try:
        text = repo.config[IDLE_CONFIG]
    except (KeyError, pygit2.GitError):
        return cob_sync.DEFAULT_IDLE
    try:
        value = float(str(text).strip())
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86400:
        raise SyncError(f"{IDLE_CONFIG} must be a number of seconds from 0 to 86400, not {text!r}")
    return value or None


FETCH_KEY = "jobs.fetch"
FETCH_SCOPES = ("all", "trusted")


def fetch_scope(repo: pygit2.Repository) -> str:
    """``git config jobs.fetch``: ``all`` (default) or ``trusted``; anything else is an error."""
    try:
        value = str(repo.config[FETCH_KEY]).strip().lower()
    except (KeyError, ValueError, pygit2.GitError):
        return "all"
    if value not in FETCH_SCOPES:
        raise PolicyError(f"git config {FETCH_KEY}: {safe(value)!r} is not one of: all, trusted")
    return value


def _scope(jobs: Jobs, trusted_only: bool | None) -> set[str] | None:
    """The namespaces to fetch, or None for every one."""
    if trusted_only is None:
        trusted_only = fetch_scope(jobs.repo) == "trusted"
    if not trusted_only:
        return None
    policy = load_policy(jobs.repo)
    return None if policy.everyone else set(policy.trusted)


def _trusted(jobs: Jobs) -> set[str] | None:
    """The NIDs whose data verdicts read (the policy's nodes and local trust); None when there
    is no policy (everyone counts). A policy that cannot be read trusts nobody here (fail
    closed: every namespace gets the smaller bounds until it is readable again)."""
    try:
        policy = load_policy(jobs.repo)
    except (JobsError, PolicyError):
        return set()
    return None if policy.everyone else set(policy.trusted)


def allowed_signers(jobs: Jobs) -> str:
    """An allowed-signers file (``gpg.ssh.allowedSignersFile``) for every NID seen in jobs.

    Every namespace, and every NID that authored a change reachable from a job ref (a peer's
    ref may carry changes by nodes that have no namespace here), one line each, sorted.
    """
    return "".join(cob.allowed_signers_line(nid) + "\n" for nid in sorted(_nids(jobs)))


def _nids(jobs: Jobs) -> set[str]:
    found: set[str] = set()
    repo = jobs.repo
    tips: set[str] = set()
    for by_nid in jobs.store.all_tips(JOB_TYPE).values():
        for nid, tip in by_nid.items():
            if cob.is_nid(nid):
                found.add(cob.normalize_nid(nid))
            tips.add(tip)
    for commit in _walk(repo, tips):
        # raw bytes: a hostile commit's encoding header must not make decoding raise
        name = commit.author.raw_name.decode("utf-8", "replace")
        if cob.is_nid(name):
            found.add(cob.normalize_nid(name))
    return found


def _walk(repo: pygit2.Repository, tips: set[str]) -> Iterator[pygit2.Commit]:
    if not tips:
        return
    walker = repo.walk(None, pygit2.enums.SortMode.NONE)
    for tip in sorted(tips):
        try:
            walker.push(pygit2.Oid(hex=tip))
        except (KeyError, ValueError, pygit2.GitError):
            continue
    yield from walker
