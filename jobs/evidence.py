"""Evidence readers derive from signed finishes (issue 27): agreement, divergence, reuse.

A finish records what its run ran under (:class:`~jobs.model.Evidence`: definitions blob,
policy tip, tree, outputs tree, environment). Nothing here trusts a name: every answer is
derived from those signed fields, and only the runs the reader's policy trusts count.

- **Agreement** (:func:`agreement`): where two or more counted nodes passed a job with an
  outputs tree, ``reproducible (3/3 agree)`` when every outputs tree id is the same, else
  ``differs: bob`` — the nodes outside the largest group (ties: the group of the run that
  finished first), with the files that differ when both trees are in this repository.
- **Divergence** (:func:`divergence`): a job whose latest counted run failed (its own
  failure: failed, timed out) on some trusted node and passed on another, for the same commit:
  an environment difference, not ``flaky`` (a pass after a failed retry on the *same* node).
- **Reuse** (:func:`find_reuse`): for a job with ``reuse = "tree"``, a trusted node's signed
  pass of the same job name on *another* commit whose finish records this commit's tree and
  definitions blob. The tree fixes the definitions file, so the job's definition, its matrix
  values (part of the name) and every input are the same; the match is exact, never by name
  alone. Cost: one index lookup of the jobs with that name, and a fold of each (cached).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pygit2

from .model import Evidence, Job, Reason, Run
from .text import safe

MAX_FILES_SHOWN = 20  # differing files named per node
MAX_PATH_SHOWN = 256  # characters of each (a path in a tree may be much longer)
MAX_DIFF_ENTRIES = 100_000  # entries of both outputs trees a reader walks to name the files
DEFINITIONS_FILE = ".git-jobs.toml"


def evidence_lines(ev: Evidence | None) -> list[str]:
    """What a run ran under, one escaped line per field (for `show` and the web page)."""
    if not ev:
        return []
    out = []
    fields = (("tree", ev.tree), ("defs", ev.defs), ("policy", ev.policy), ("outputs", ev.outputs))
    for label, value in fields:
        if value is not None:
            out.append(f"{label:<8}{safe(value)}")
    if ev.env:
        out.append("env     " + ", ".join(f"{safe(k)}={safe(v)}" for k, v in sorted(ev.env.items())))
    return out


@dataclass(frozen=True, slots=True)
class Agreement:
    """Counted nodes' outputs trees of one job: who agrees, who differs, and in which files."""

    total: int
    agree: int
    differs: list[str]  # NIDs outside the reference group
    files: dict[str, list[str]] = field(default_factory=dict)  # NID → paths that differ (if known)
    digests: dict[str, str] = field(default_factory=dict)  # NID → outputs tree id

    @property
    def reproducible(self) -> bool:
        return not self.differs

    def to_json(self) -> dict[str, Any]:
        return {
            "reproducible": self.reproducible,
            "agree": self.agree,
            "total": self.total,
            "differs": list(self.differs),
            "files": {n: list(f) for n, f in self.files.items()},
            "outputs": dict(self.digests),
        }


def agreement(repo: pygit2.Repository, latest: Iterable[tuple[str, str, Run]]) -> Agreement | None:
    """Agreement over ``(nid, run id, latest run)`` of counted nodes; None under two outputs.

    The reference is the largest group of equal outputs; on a tie, the group of the run that
    started first (uuid7 run ids are in start order), so every reader names the same nodes."""
    outs: dict[str, str] = {}
    first: dict[str, str] = {}
    for nid, run_id, run in latest:
        if run.reason is Reason.SUCCEEDED and run.evidence is not None and run.evidence.outputs:
            outs[nid] = run.evidence.outputs
            first[nid] = run_id
    if len(outs) < 2:
        return None
    groups: dict[str, list[str]] = {}
    for nid, digest in outs.items():
        groups.setdefault(digest, []).append(nid)
    ref = min(groups, key=lambda d: (-len(groups[d]), min(first[n] for n in groups[d])))
    differs = sorted(n for n in outs if outs[n] != ref)
    files = {}
    for nid in differs:
        changed = diff_trees(repo, ref, outs[nid])
        if changed is not None:
            files[nid] = changed
    return Agreement(len(outs), len(groups[ref]), differs, files, dict(sorted(outs.items())))


def _entries_within(repo: pygit2.Repository, tree: pygit2.Tree, budget: int) -> int:
    """``budget`` less the entries a walk of ``tree`` visits (a subtree named N times is
    visited N times, as a diff does); negative once over (the walk stops there)."""
    stack = [tree]
    while stack and budget >= 0:
        here = stack.pop()
        budget -= len(here)
        for entry in here:
            if entry.filemode == pygit2.enums.FileMode.TREE:
                sub = repo[entry.id]
                if isinstance(sub, pygit2.Tree):
                    stack.append(sub)
    return budget


def diff_trees(repo: pygit2.Repository, a: str, b: str) -> list[str] | None:
    """The paths that differ between two trees (at most MAX_FILES_SHOWN), None when either
    tree (or a subtree) is not in this repository, or they hold more than MAX_DIFF_ENTRIES
    entries together: then only the digests say they differ. (A peer's outputs tree can name
    one subtree a thousand times at each level: three tree objects a diff walks as 10^9.)"""
    try:
        ta, tb = repo.get(a), repo.get(b)
        if not isinstance(ta, pygit2.Tree) or not isinstance(tb, pygit2.Tree):
            return None
        if _entries_within(repo, tb, _entries_within(repo, ta, MAX_DIFF_ENTRIES)) < 0:
            return None
        diff = ta.diff_to_tree(tb)
        paths = [d.new_file.path or d.old_file.path for d in diff.deltas]
    except (KeyError, ValueError, pygit2.GitError):
        return None
    return [p[:MAX_PATH_SHOWN] for p in sorted(paths)[:MAX_FILES_SHOWN]]


def divergence(latest: Iterable[tuple[str, Run]]) -> list[str]:
    """The counted nodes whose latest run failed on its own (failed, timed out) while another
    counted node's latest run passed: ``divergent (fails on carol)``. Empty if not."""
    runs = list(latest)
    passed = any(r.reason is Reason.SUCCEEDED for _, r in runs)
    failing = sorted(n for n, r in runs if r.reason in (Reason.FAILED, Reason.TIMED_OUT))
    return failing if passed and failing else []


@dataclass(frozen=True, slots=True)
class Reuse:
    """A signed pass of the same job on another commit with the same tree (the earliest), and
    every trusted node that signed such a pass (what a quorum counts)."""

    commit: str
    job: str
    node: str
    run_id: str
    nodes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "job": self.job,
            "node": self.node,
            "run": self.run_id,
            "nodes": list(self.nodes),
        }


@dataclass(slots=True)
class JobEvidence:
    """What the counted runs of one job of a commit say beyond pass or fail."""

    agreement: Agreement | None = None
    divergent: list[str] = field(default_factory=list)  # trusted nodes it fails on (others pass)
    flaky: list[str] = field(default_factory=list)  # nodes where it passed after a failed retry
    reused: Reuse | None = None

    def __bool__(self) -> bool:
        return bool(self.agreement or self.divergent or self.flaky or self.reused)

    def to_json(self) -> dict[str, Any]:
        return {
            "reproducible": self.agreement.to_json() if self.agreement else None,
            "divergent": {"fails_on": list(self.divergent)} if self.divergent else None,
            "flaky": list(self.flaky),
            "reused": self.reused.to_json() if self.reused else None,
        }


def covers(names: Iterable[str], job: str) -> bool:
    """Does a policy list (``reproducible``) name ``job``, or the matrix definition it is of?"""
    return any(job == n or job.startswith(n + " (") for n in names)


def tree_and_defs(repo: pygit2.Repository, commit: str) -> tuple[str, str | None] | None:
    """(tree id, definitions blob id) of a commit here, or None when it is not here."""
    try:
        obj = repo.get(commit)
    except (ValueError, KeyError):
        return None
    if not isinstance(obj, pygit2.Commit):
        return None
    try:
        defs: str | None = str(obj.tree[DEFINITIONS_FILE].id)
    except KeyError:
        defs = None
    return str(obj.tree_id), defs


def find_reuse(
    candidates: Iterable[Job], repo: pygit2.Repository, commit: str, name: str, trusts: Any
) -> Reuse | None:
    """A trusted node's signed pass of job ``name`` on another commit with ``commit``'s tree.

    ``candidates``: the jobs named ``name`` (any commit); ``trusts``: NID → bool. The finish
    must record this commit's tree and definitions blob; a candidate commit present here must
    have that tree too (else its signer lied, and it does not count). The earliest such pass
    wins (by finish time, then run id), so every reader names the same one."""
    mine = tree_and_defs(repo, commit)
    if mine is None:
        return None
    tree, defs = mine
    best: tuple[float, str, Reuse] | None = None
    signers: set[str] = set()
    for job in candidates:
        if job.commit == commit or job.name != name:
            continue
        theirs = tree_and_defs(repo, job.commit)
        if theirs is not None and theirs != (tree, defs):
            continue
        for nid, runs in job.runs().items():
            if not trusts(nid):
                continue
            for run_id, run in runs.items():
                ev = run.evidence
                if run.reason is not Reason.SUCCEEDED or ev is None or ev.tree != tree or ev.defs != defs:
                    continue
                signers.add(nid)
                when = run.finished_at.timestamp() if run.finished_at else 0.0
                key = (when, str(run_id))
                if best is None or key < best[:2]:
                    best = (when, str(run_id), Reuse(job.commit, job.id, nid, str(run_id)))
    if best is None:
        return None
    found = best[2]
    return Reuse(found.commit, found.job, found.node, found.run_id, tuple(sorted(signers)))


def annotate(store: Any, status: Any, defs: Any) -> None:
    """Fill ``status.evidence`` (a :class:`jobs.gate.GateStatus`) from the counted runs, and
    look for a reusable pass of each ``reuse = "tree"`` job that has not passed here yet."""
    from .summary import flaky_attempts

    repo = store.repo
    for name in status.names():
        cells = [c for c in status.cells if c.name == name and c.counted and c.run is not None and c.node]
        latest = [(c.node, c.run) for c in cells]
        with_ids = [(c.node, str(c.run_id), c.run) for c in cells]
        flaky = [c.node for c in cells if c.job is not None and flaky_attempts(c.job.runs_of(c.node))]
        ev = JobEvidence(agreement(repo, with_ids), divergence(latest), sorted(flaky))
        d = defs.get(name) if defs is not None else None
        passes = sum(1 for _, r in latest if r.reason is Reason.SUCCEEDED)
        failed = any(c.failed for c in cells)
        if d is not None and d.reuse == "tree" and passes < status.quorum and not failed:
            ev.reused = find_reuse(store.find_by_name(name), repo, status.commit, name, status.policy.trusts)
        if ev:
            status.evidence[name] = ev
