"""The text `git jobs status` prints for one commit's merge verdict (also used by the demo).

Three groups, so that what decides the verdict is never mixed with what does not: the required
jobs (counted runs, or ``expected``), then extra jobs ("not required"), then runs of nodes the
policy does not trust ("not counted"). Every peer- or commit-derived string (subjects, log
URLs, names, definition errors) goes through :func:`jobs.text.safe`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..gate import GateCell, GateStatus
from ..model import Run
from ..summary import flaky_attempts
from ..text import safe
from .common import Style, short, short_nid
from .trust import describe_policy

if TYPE_CHECKING:
    from ..store import Jobs


def subject(store: Jobs, commit: str) -> str:
    """The commit's subject line, or "" when the commit is not (yet) in this repository."""
    try:
        obj: Any = store.repo.get(commit)
        message: str = obj.message if obj is not None else ""
    except (ValueError, AttributeError, KeyError):
        return ""
    first = message.strip().splitlines()[0] if message.strip() else ""
    return safe(first)  # the commit author chose it


def _duration(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def run_duration(run: Run, now: float | None = None) -> str:
    end = run.finished_at.timestamp() if run.finished_at else (now or time.time())
    return _duration(end - run.started_at.timestamp())


def node_label(
    status: GateStatus, nid: str | None, style: Style, me: str | None, labels: Mapping[str, str] | None
) -> str:
    """A trusted node by its name, others by short NID; this node marked "(you)"."""
    if nid is None:
        return "-"
    if labels and nid in labels:
        return safe(labels[nid])
    name = status.policy.name_of(nid)
    text = safe(name) if name else short_nid(nid, unicode=style.unicode)
    return text + (" (you)" if nid == me else "")


def _assigned(
    status: GateStatus, name: str, style: Style, me: str | None, labels: Mapping[str, str] | None
) -> str:
    """ "assigned to alice-linux, bob-mac" for a job nobody counted has run yet (or "")."""
    nids = status.assigned(name)
    if not nids:
        return ""
    return "assigned to " + ", ".join(node_label(status, n, style, me, labels) for n in nids)


def _rows(
    status: GateStatus,
    cells: list[GateCell],
    style: Style,
    me: str | None,
    labels: Mapping[str, str] | None,
) -> list[tuple[str, ...]]:
    now = time.time()
    rows: list[tuple[str, ...]] = []
    for c in cells:
        took = "" if c.run is None else run_duration(c.run, now)
        flaky = flaky_attempts(c.job.runs_of(c.node)) if c.job is not None and c.node else 0
        if flaky:  # passed only on a later attempt: shown, so a flaky test is not hidden by retries
            took = f"{took} flaky ({flaky} failed)"
        log = _assigned(status, c.name, style, me, labels) if c.run is None else safe(c.run.log)
        if c.run is None and c.name in status.unservable:  # already escaped (jobs.profile)
            log = status.unservable[c.name]
        reused = status.reused(c.name) if c.run is None else None
        if reused is not None:
            log = f"passed (reused from {short(reused.commit)})"
        rows.append((c.state, safe(c.name), node_label(status, c.node, style, me, labels), took, log))
    rows.sort(key=lambda r: (r[1], r[2]))  # by job name, then node: stable across refreshes
    return rows


def _table(rows: list[tuple[str, ...]], style: Style, widths: list[int]) -> list[str]:
    out = []
    for state, name, node, took, log in rows:
        out.append(
            f"  {style.symbol(state)} {name:<{widths[1]}}  {node:<{widths[2]}}  "
            f"{style.state(state, f'{state:<{widths[0]}}')}  {took:>{widths[3]}}  {log}".rstrip()
        )
    return out


def render_status(
    status: GateStatus,
    style: Style,
    *,
    me: str | None = None,
    title: str = "",
    labels: Mapping[str, str] | None = None,
) -> list[str]:
    """The lines `git jobs status` prints for one commit."""
    head = f"commit {style(short(status.commit), 'yellow')}"
    trust = describe_policy(status.policy)
    if status.all_nodes and not status.policy.everyone:
        trust += "; --all-nodes: every node's runs counted"
    lines = [f"{head}  {safe(title)}".rstrip(), style(trust, "dim")]
    if status.errors:
        lines.append(f"  {style(f'.git-jobs.toml has {len(status.errors)} error(s):', 'red')}")
        lines.extend(f"    {safe(e)}" for e in status.errors)
    elif not status.required and not status.jobs and not status.undefined:
        why = "no jobs defined" if status.present else "no jobs for this commit (not in this repository)"
        lines.append(f"  {style('no jobs', 'dim')}")
        lines.append(f"{style.state('none', 'none')}: {why}")
        return lines
    lines.extend(
        f"  {style(f'required job {safe(n)!r} is not defined by this commit', 'red')}"
        for n in status.undefined
    )
    groups = [
        ("", [c for c in status.counted() if c.required]),
        ("not required (shown, not blocking):", [c for c in status.counted() if not c.required]),
        ("not counted (untrusted nodes; --all-nodes counts them):", status.not_counted()),
    ]
    tables = [(title_, _rows(status, cells, style, me, labels)) for title_, cells in groups]
    every = [r for _, rows in tables for r in rows]
    if every:
        widths = [max(len(r[i]) for r in every) for i in range(4)]
        for caption, rows in tables:
            if rows and caption:
                lines.append(style(caption, "dim"))
            lines.extend(_table(rows, style, widths))
    lines.extend(evidence_notes(status, style, me, labels))
    lines.append(_summary(status, style))
    return lines


def evidence_notes(
    status: GateStatus, style: Style, me: str | None = None, labels: Mapping[str, str] | None = None
) -> list[str]:
    """One line per job the evidence says something about (jobs.evidence): whether trusted
    nodes' outputs agree, whether it fails on some trusted nodes only."""
    out = []
    for name, ev in sorted(status.evidence.items()):
        parts = []
        a = ev.agreement
        if a is not None and a.reproducible:
            parts.append(style(f"reproducible ({a.agree}/{a.total} agree)", "green"))
        elif a is not None:
            who = []
            for nid in a.differs:
                files = a.files.get(nid)
                shown = f" ({', '.join(safe(f) for f in files)})" if files else " (by digest)"
                who.append(node_label(status, nid, style, me, labels) + shown)
            parts.append(style("differs: " + ", ".join(who), "red"))
        if ev.divergent:
            nodes = ", ".join(node_label(status, n, style, me, labels) for n in ev.divergent)
            parts.append(style(f"divergent (fails on {nodes})", "yellow"))
        if parts:
            out.append(f"  {safe(name)}: " + "; ".join(parts))
    return out


def _summary(status: GateStatus, style: Style) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in status.counts().items())
    if status.errors:
        counts = ".git-jobs.toml does not parse" + (f"; {counts}" if counts else "")
    elif status.undefined:
        counts = f"{len(status.undefined)} required not defined" + (f"; {counts}" if counts else "")
    elif not status.required:
        counts = "nothing required" + (f"; {counts}" if counts else "")
    if status.expected:
        counts += f"; expected: {', '.join(safe(n) for n in status.expected)}"
    for name, why in status.unservable.items():
        counts += f"; {safe(name)}: {why}"
    uncounted = len(status.not_counted())
    if uncounted:
        counts += f"; {uncounted} not counted"
    return f"{style.state(status.outcome)}: {counts}"
