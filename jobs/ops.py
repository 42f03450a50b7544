"""The Job type's operations: the msgspec structs that go into a change's ``ops`` blob.

Tagged by ``"type"`` and strict (unknown fields are a decode error): peer data that does not
match exactly is rejected, not guessed at. Field values are validated by the type
(:mod:`jobs.jobtype`), where a bad value rejects the change with a reason.
"""

from __future__ import annotations

import msgspec


class Request(msgspec.Struct, tag="request", tag_field="type", forbid_unknown_fields=True):
    """The root op: a job is a request to run ``name`` on ``commit``."""

    commit: str
    name: str


class Release(
    msgspec.Struct, tag="release", tag_field="type", forbid_unknown_fields=True, omit_defaults=True
):
    """The signer asks for this job to be run: who asked (the signer) and when (commit time).

    The root's ``request`` is unsigned (anyone can derive it from (commit, name)), so it says
    nothing about *who* wants the job. A node that creates a job writes one ``release`` in its
    own namespace; it is the signed change that lets peers take the job at fetch, and what a
    trust policy reads to decide whose requests count. A node may release a job again (a later
    request, e.g. to ask for a rerun); the fold keeps each node's first and latest.

    ``ask``: a person asked other nodes to run it (``git jobs release``). A node's own release
    of a commit it works on has none (omitted: the bytes of a plain release are unchanged), and
    is never a request to other nodes: only an ``ask`` (or a ``rerun``) by a policy requester is.

    ``fanout``: on the job of a dynamic matrix's definition (issue 32), the names of the jobs
    the signer expanded it into from its needs' outputs (FORMAT.md 11.6); omitted otherwise.
    """

    ask: bool = False
    fanout: list[str] | None = None


class Rerun(msgspec.Struct, tag="rerun", tag_field="type", forbid_unknown_fields=True):
    """The signer asks every node to run this job again, with fresh attempts.

    No fields: who (the signer) and which change (its oid) say it all. A node's runs that
    started before it had *seen* this change (their start change does not descend from it) no
    longer count towards its attempts, when the signer may request work under the node's trust
    policy. Causal, not by clock: no requester's or node's clock can move it. The fold keeps
    each node's first and latest rerun, as for ``release``.
    """


class StartRun(msgspec.Struct, tag="run", tag_field="type", forbid_unknown_fields=True, omit_defaults=True):
    """The signer starts a run (one execution attempt); ``log`` is an absolute URL.

    ``timeout``: the deadline its node promised, whole seconds from the run's start (readers
    show the run ``lost`` past it plus a grace: :mod:`jobs.deadline`). Optional and omitted
    when absent, so a start without it has the same bytes (and a job the same ids) as before.
    """

    run_id: str
    log: str
    timeout: int | None = None


class FinishRun(
    msgspec.Struct, tag="finish", tag_field="type", forbid_unknown_fields=True, omit_defaults=True
):
    """The signer finishes one of its own runs with a reason.

    ``log_blob``: the Git blob id of the run's published log (FORMAT.md 11.4), so a reader
    verifies the log against this signed op; ``exit``: the command's exit status (0..255,
    128+N when killed by signal N). Both are optional and omitted when absent, so a finish
    without them has the same bytes (and a job the same change ids) as before they existed.

    What the run ran under (issue 27; all optional, omitted when absent, so old finishes keep
    their bytes): ``defs``, the blob id of the ``.git-jobs.toml`` it ran; ``policy``, the tip
    of the policy ref the node read; ``tree``, the commit's tree id; ``outputs``, the Git tree
    id of the job's kept output files; ``env``, a short bounded description of the node (os,
    arch, its labels). Readers derive reproducibility and reuse from them (jobs.evidence).
    ``values``: the key/values the job wrote to ``$GIT_JOBS_OUTPUT`` (bounded: jobtype).
    """

    run_id: str
    reason: str
    log_blob: str | None = None
    exit: int | None = None
    defs: str | None = None
    policy: str | None = None
    tree: str | None = None
    outputs: str | None = None
    env: dict[str, str] | None = None
    values: dict[str, str] | None = None  # structured outputs ($GIT_JOBS_OUTPUT; issue 32)


Op = Request | Release | Rerun | StartRun | FinishRun
