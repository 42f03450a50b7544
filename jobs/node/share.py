"""The one place a node applies the assignment (:mod:`jobs.assign`) to its plan.

:class:`Sharing` is the filter :class:`~.work.Workshop` runs over every plan it makes: a job of
a group assigned to other nodes becomes ``elsewhere`` (nothing is run or recorded for it), with
the reason a person reads ("assigned to alice-linux, bob-mac") and, in ``not_before``, when this
node would take it over if none of them starts it.

It applies only when it can mean anything: the repository's policy names trusted nodes, this
node is one of them, and neither ``--all`` nor ``git config jobs.assignment all`` asks for
everything. Otherwise (no policy; a node the policy does not trust, whose runs count for
nobody but which a developer may well run by hand) the plan is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..artifacts import grouping_needs
from ..assign import ALL, Assignment, assign, assignment_mode, shared
from ..policy import Policy, load_repository_policy
from ..profile import eligibility
from ..spec.definitions import Definitions
from ..store import Jobs
from .plan import ELSEWHERE, PlanItem


@dataclass(frozen=True, slots=True)
class Shares:
    """One commit's assignment as this node sees it (``mode`` says whether it applies)."""

    mode: str  # "shared" | "all" (flag or config) | "off" (no policy, or not trusted)
    why: str
    policy: Policy
    jobs: dict[str, Assignment]

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "why": self.why}


class Sharing:
    """Turns the jobs assigned to other nodes into ``elsewhere`` items of the plan."""

    def __init__(self, jobs: Jobs, nid: str, mode: str | None = None) -> None:
        self.jobs = jobs
        self.nid = nid
        self.mode = mode  # None: git config jobs.assignment (read at every plan)

    def shares(self, defs: Definitions, now: float) -> Shares:
        """The assignment of ``defs``' jobs now (empty unless it applies to this node)."""
        if assignment_mode(self.jobs.repo, self.mode) == ALL:
            return Shares(ALL, "every job runs here (--all or jobs.assignment = all)", Policy.none(), {})
        policy = load_repository_policy(self.jobs.repo)
        if not shared(policy):
            return Shares("off", "no policy names trusted nodes: every job runs here", policy, {})
        if self.nid not in policy.nodes:
            why = "this node is not trusted by the policy (its runs count for nobody): every job runs here"
            return Shares("off", why, policy, {})
        found = {j.name: j for j in self.jobs.find_by_commit(defs.commit) if defs.get(j.name)}
        needs = grouping_needs(defs)  # a published need does not bind its users here
        eligible, _ = eligibility(self.jobs, defs, policy)  # the same answer `status` ranks by
        table = assign(found, needs, policy, now, eligible)
        return Shares("shared", f"quorum {policy.quorum} of {len(policy.nodes)} trusted nodes", policy, table)

    def __call__(self, defs: Definitions, plan: list[PlanItem], now: float) -> list[PlanItem]:
        found = self.shares(defs, now)
        for item in plan:
            a = found.jobs.get(item.name)
            if a is None or a.runs_on(self.nid):
                continue
            item.action = ELSEWHERE
            item.reason = a.why_not(self.nid, found.policy)
            item.not_before = a.takes_over_at(self.nid)
        return plan
