"""The four views as HTML, rendered from the JSON of :mod:`jobs.web.data` and nothing else.

Every string that came from a peer or a commit goes through :func:`esc` (or :func:`external`
for URLs); only our own constants and numbers are written raw. Fields a later shape adds are
rendered where they are known (a run's ``counted``: false marks it "not counted"), so the
views follow the CLI's JSON rather than the library's objects.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from ..summary import FLAKY
from .logpage import window
from .page import esc, external, link, state
from .svg import Point, chart


# -- links (flat, relative: the same in the server and in a static export) -------------------
def commit_href(sha: str) -> str:
    return f"commit-{sha}.html"


def run_href(job: str, run: str, line: int | None = None) -> str:
    return f"run-{job}-{run}-L{line}.html" if line is not None else f"run-{job}-{run}.html"


def node_href(nid: str) -> str:
    return f"node-{nid}.html"


def page_href(page: int, ref: str | None) -> str:
    name = "index.html" if page == 1 else f"page-{page}.html"
    return f"{name}?ref={quote(ref, safe='')}" if ref else name


def short_nid(nid: str | None) -> str:
    if not nid:
        return "-"
    return nid if len(nid) <= 16 else f"{nid[:7]}…{nid[-7:]}"


def node_label(nid: str | None, me: str | None, names: dict[str, str] | None = None) -> str:
    """A node as `status` prints it: a trusted node by its name (the NID on hover), else the
    short NID; this node marked "(you)"."""
    name = (names or {}).get(nid or "")
    shown = f'<span title="{esc(nid)}">{esc(name)}</span>' if name else esc(short_nid(nid))
    return shown + (' <span class="muted">(you)</span>' if nid and nid == me else "")


def _required(j: dict[str, Any], why: str | None) -> str:
    """The mark of a required job (and why no trusted node can run it, when none can)."""
    if not j.get("required"):
        return ' <span class="small muted">not required</span>'
    mark = ' <span class="st st-required">required</span>'
    return mark + (f'<div class="small">{esc(why)}</div>' if why else "")


# -- times -------------------------------------------------------------------------------------
def _parse(iso: str | None) -> datetime | None:
    try:
        return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) if iso else None
    except ValueError:
        return None


def duration(run: dict[str, Any], now: datetime | None = None) -> str:
    start, end = _parse(run.get("started_at")), _parse(run.get("finished_at"))
    if start is None:
        return ""
    s = max(0, int(((end or now or datetime.now(UTC)) - start).total_seconds()))
    if s < 60:
        text = f"{s}s"
    elif s < 3600:
        text = f"{s // 60}m{s % 60:02d}s"
    else:
        text = f"{s // 3600}h{s % 3600 // 60:02d}m"
    return text if end else f"{text} so far"


def when(iso: str | None) -> str:
    return esc(iso.replace("T", " ")) if iso else "-"


def counts(c: dict[str, int]) -> str:
    text = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in c.items())
    return esc(text) if text else '<span class="muted">no jobs</span>'


# Run states that are a failure, for "flaky": an attempt failed, a later one passed.
_FAILING = frozenset(r.value for r in FLAKY)


def _uncounted(run: dict[str, Any]) -> bool:
    return run.get("counted") is False


# -- branch --------------------------------------------------------------------------------------
def branch(data: dict[str, Any], *, ref: str | None = None) -> tuple[str, str]:
    """(title, body) of the branch view: commits newest first, each with its outcome."""
    rows = []
    for c in data["commits"]:
        rows.append(
            f"<tr><td>{link(commit_href(c['commit']), esc(c['commit'][:12]), cls='sha')}</td>"
            f"<td>{esc(c.get('subject', ''))}</td><td>{state(c['outcome'])}</td>"
            f"<td>{counts(c['counts'])}</td><td>{len(c['jobs'])}</td></tr>"
        )
    table = (
        "<table><thead><tr><th>commit</th><th>subject</th><th>outcome</th><th>runs</th>"
        "<th>jobs</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        if rows
        else '<p class="muted">No commits.</p>'
    )
    nav = []
    if data["page"] > 1:
        nav.append(link(page_href(data["page"] - 1, ref), "← newer"))
    if data["more"]:
        nav.append(link(page_href(data["page"] + 1, ref), "older →"))
    title = f"{data['branch']} — page {data['page']}"
    body = (
        f"<h1>Branch <code>{esc(data['branch'])}</code></h1>"
        f'<p class="muted">Commits newest first, {data["per_page"]} a page; page {data["page"]}.</p>'
        f'{table}<div class="nav">{"".join(nav)}</div>'
    )
    return title, body


# -- commit --------------------------------------------------------------------------------------
def _cell(job: dict[str, Any], run: dict[str, Any] | None, attempts: list[dict[str, Any]]) -> str:
    """One job x node cell: the latest run, and the node's earlier attempts one click away."""
    if run is None:
        return '<td class="muted">-</td>'
    cls = ' class="uncounted"' if _uncounted(run) else ""
    note = ' <span class="small muted">not counted</span>' if _uncounted(run) else ""
    parts = [
        f"<td{cls}>{link(run_href(job['id'], run['id']), state(run['state']))}{note}",
        f'<div class="small">{esc(duration(run))} · started {when(run.get("started_at"))}</div>',
    ]
    earlier = [a for a in attempts if a["id"] != run["id"]]
    if run["state"] == "succeeded" and any(a["state"] in _FAILING for a in earlier):
        parts.insert(1, ' <span class="st st-flaky">flaky</span>')
    if earlier:
        items = "".join(
            f"<li>{link(run_href(job['id'], a['id']), state(a['state']))} "
            f'<span class="small">{when(a.get("started_at"))}</span></li>'
            for a in reversed(earlier)
        )
        parts.append(f"<details><summary>{len(attempts)} attempts</summary><ul>{items}</ul></details>")
    parts.append("</td>")
    return "".join(parts)


def _matrix(data: dict[str, Any], *, counted: bool = True) -> str:
    """Jobs x nodes. Runs the status marks ``"counted": false`` (untrusted) go in a second
    matrix (``counted=False``), apart from the verdict's."""
    status, me = data["status"], data.get("me")
    if not status["jobs"]:
        return '<p class="muted">No jobs for this commit.</p>' if counted else ""
    shown = {j["id"]: j for j in data["jobs"]}
    nodes = sorted(
        {r["node"] for j in status["jobs"] for r in j["latest"] if r.get("node") and _uncounted(r) != counted}
    )
    if not counted and not nodes:
        return ""
    names = data.get("names") or {}
    head = "".join(f"<th>{link(node_href(n), node_label(n, me, names))}</th>" for n in nodes)
    why = status.get("unservable") or {}
    rows = []
    for j in status["jobs"]:
        latest = {r["node"]: r for r in j["latest"] if _uncounted(r) != counted}
        runs = shown.get(j["id"], {}).get("runs", [])
        cells = "".join(_cell(j, latest.get(n), [r for r in runs if r["node"] == n]) for n in nodes)
        queued = "" if nodes else "<td></td>"
        mark = _required(j, why.get(j["name"])) if counted else ""
        mark += _evidence(j, me, names) if counted else ""
        rows.append(f"<tr><th>{esc(j['name'])} {state(j['state'])}{mark}</th>{cells}{queued}</tr>")
    title = "" if counted else "<h2>Runs not counted (nodes the policy does not trust)</h2>"
    cls = "matrix" if counted else "matrix uncounted"
    return (
        f'{title}<table class="{cls}"><thead><tr><th>job \\ node</th>{head or "<th>no runs yet</th>"}'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _evidence(j: dict[str, Any], me: str | None, names: dict[str, str]) -> str:
    """What trusted nodes' signed finishes say beyond pass or fail (jobs.evidence)."""
    ev = j.get("evidence") or {}
    notes = []
    agree = ev.get("reproducible")
    if agree and agree["reproducible"]:
        notes.append(f"reproducible ({agree['agree']}/{agree['total']} agree)")
    elif agree:
        who = []
        for nid in agree["differs"]:
            files = agree["files"].get(nid)
            shown = esc(", ".join(files)) if files else "by digest"
            who.append(f"{node_label(nid, me, names)} ({shown})")
        notes.append("differs: " + ", ".join(who))
    if ev.get("divergent"):
        fails = ", ".join(node_label(n, me, names) for n in ev["divergent"]["fails_on"])
        notes.append(f"divergent (fails on {fails})")
    if ev.get("reused") and not j["latest"]:
        notes.append(f"passed (reused from <code>{esc(ev['reused']['commit'][:12])}</code>)")
    # node_label escapes; every other part is escaped here
    return "".join(f'<div class="small">{n}</div>' for n in notes)


def _ran_under(r: dict[str, Any]) -> str:
    """The evidence fields of a run's signed finish, escaped."""
    ev = r.get("evidence")
    if not ev:
        return ""
    items = [f"{k} <code>{esc(ev[k])}</code>" for k in ("tree", "defs", "policy", "outputs") if ev.get(k)]
    if ev.get("env"):
        items.append("env " + esc(", ".join(f"{k}={v}" for k, v in sorted(ev["env"].items()))))
    return f'<p class="small">ran under: {" · ".join(items)}</p>'


def _rejected(data: dict[str, Any]) -> str:
    items = [
        f"<li>job <b>{esc(j['name'])}</b>, change <code>{esc(r['change'][:12])}</code>:"
        f" {esc(r['reason'])}</li>"
        for j in data["jobs"]
        for r in j.get("rejected", [])
    ]
    if not items:
        return ""
    return (
        f'<div class="warn"><b>{len(items)} change(s) rejected</b> (not counted; a peer sent data'
        f" that failed verification or the job rules):<ul>{''.join(items)}</ul></div>"
    )


def _definitions(data: dict[str, Any]) -> str:
    d = data.get("definitions")
    if not d:
        return '<p class="small muted">This commit has no job definitions file.</p>'
    if d.get("error"):
        return f'<div class="bad"><b>Invalid {esc(d["file"])}</b>: {esc(d["error"])}</div>'
    names = ", ".join(esc(n) for n in d["jobs"]) or "none"
    return f'<p class="small muted">Defined in {esc(d["file"])}: {names}.</p>'


def _undefined(status: dict[str, Any]) -> str:
    """The policy's required names this commit does not define (the gate fails on them)."""
    names = status.get("undefined") or []
    items = "".join(
        f"<li>required job <code>{esc(n)}</code> is not defined by this commit</li>" for n in names
    )
    return f'<div class="bad"><ul>{items}</ul></div>' if names else ""


def commit(data: dict[str, Any]) -> tuple[str, str]:
    """(title, body) of the commit view: the jobs x nodes matrix and what went wrong."""
    status = data["status"]
    sha = data["commit"]
    body = (
        f"<h1>Commit <code>{esc(sha[:12])}</code> {state(status['outcome'])}</h1>"
        f"<p>{esc(data.get('subject') or '')}</p>"
        f'<p class="small muted"><span class="sha">{esc(sha)}</span> · {counts(status["counts"])}</p>'
        f"{_rejected(data)}{_definitions(data)}{_undefined(status)}{_matrix(data)}"
        f"{_matrix(data, counted=False)}"
        f'<p class="small">{link(f"commit-{sha}.json", "JSON")}</p>'
    )
    return f"{sha[:12]} {status['outcome']}", body


# -- run -----------------------------------------------------------------------------------------
def _log_nav(job: str, run_id: str, w: Any, paged: bool) -> str:
    """Where this window is in the log, and links to the windows around it (served pages)."""
    if w.first == 1 and w.after is None:
        return ""
    where = f"Lines {w.first} to {w.last} of {w.total}."
    if not paged:
        return f'<p class="small muted">{where} `git jobs logs` shows the whole log.</p>'
    links = []
    if w.before is not None:
        links.append(link(run_href(job, run_id, 1), "first lines"))
        links.append(link(run_href(job, run_id, w.before), "earlier lines"))
    if w.after is not None:
        links.append(link(run_href(job, run_id, w.after), "later lines"))
        links.append(link(run_href(job, run_id), "last lines"))
    return f'<p class="small muted">{where} {" · ".join(links)}</p>'


def run(data: dict[str, Any], *, start: int | None = None, paged: bool = True) -> tuple[str, str]:
    """(title, body) of the run view: the run's facts and one window of its log with line
    anchors (:mod:`.logpage`: the log's end, or the lines from ``start``)."""
    job, r, me = data["job"], data["run"], data.get("me")
    log = data.get("log") or {"status": "missing", "text": None}
    if log.get("text") is None:
        shown = (
            f'<p class="muted">No log shown here: {esc(log.get("status"))}'
            f"{': ' + esc(log['detail']) if log.get('detail') else ''}."
            f" Its recorded URL: {external(r.get('log'))}</p>"
        )
    else:
        note = (
            f'<p class="small muted">Showing the last part of a {log["size"]}-byte log.</p>'
            if log["truncated"]
            else ""
        )
        source = "this node's copy" if log.get("source") == "local" else "published in Git, verified"
        w = window(log["text"], start)
        nav = _log_nav(job["id"], r["id"], w, paged)
        shown = f'<p class="small muted">{esc(source)}</p>{note}{nav}<pre class="log">{w.html}</pre>{nav}'

    attempts = "".join(
        f"<li>{link(run_href(job['id'], a['id']), state(a['state']))} "
        f'<span class="small">{when(a.get("started_at"))}</span>'
        f"{' (this run)' if a['id'] == r['id'] else ''}</li>"
        for a in data.get("attempts", [])
    )
    counted = " · <b>not counted</b>" if _uncounted(r) else ""
    body = (
        f"<h1>{esc(job['name'])} {state(r['state'])}</h1>"
        f"<p>commit {link(commit_href(job['commit']), esc(job['commit'][:12]), cls='sha')}"
        f" {esc(data.get('subject') or '')}</p>"
        f"<p>node {link(node_href(r['node']), node_label(r['node'], me, data.get('names')))}"
        f" · run <code>{esc(r['id'])}</code>"
        f"{counted}</p>"
        f'<p class="small">started {when(r.get("started_at"))} · finished {when(r.get("finished_at"))}'
        f" · {esc(duration(r))} · log {external(r.get('log'))}</p>{_ran_under(r)}"
        f"<h2>Attempts on this node</h2><ul>{attempts}</ul><h2>Log</h2>{shown}"
    )
    return f"{job['name']} {r['state']}", body


# -- node ----------------------------------------------------------------------------------------
def node(data: dict[str, Any]) -> tuple[str, str]:
    """(title, body) of the node view: the pass-rate chart and its most recent runs."""
    me = data.get("me")
    points = [Point(p["day"], p["passed"], p["total"]) for p in data["rate"]]
    rows = "".join(
        f"<tr><td>{link(run_href(r['job'], r['id']), state(r['state']))}</td>"
        f"<td>{esc(r['name'])}</td>"
        f"<td>{link(commit_href(r['commit']), esc(r['commit'][:12]), cls='sha')}</td>"
        f"<td>{when(r.get('started_at'))}</td><td>{esc(duration(r))}</td></tr>"
        for r in data["runs"]
    )
    more = (
        f'<p class="small muted">The {len(data["runs"])} most recent of {data["total"]} runs.</p>'
        if data["total"] > len(data["runs"])
        else ""
    )
    name = (data.get("names") or {}).get(data["node"])
    heading = (
        f'{esc(name)} <code class="small">{esc(data["node"])}</code>'
        if name
        else (f"<code>{esc(data['node'])}</code>")
    )
    body = (
        f"<h1>Node {heading}{' (you)' if data['node'] == me else ''}</h1>"
        f"<h2>Pass rate per day</h2>{chart(points)}"
        f"<h2>Runs</h2>{more}<table><thead><tr><th>state</th><th>job</th><th>commit</th>"
        f"<th>started</th><th>took</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    return f"node {name or short_nid(data['node'])}", body
