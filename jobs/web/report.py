"""`git jobs report --html OUT`: the served views written as static files.

The same :class:`~jobs.web.site.Site` renders every page (without the live-refresh script),
so a published report and the live page never differ. Written: the branch pages, each listed
commit's page, every run page of those commits, and a page per node seen — each also as
``.json`` (the CLI's shapes). Files are written to a temporary name and renamed, so a reader
never sees half a page.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..history import MAX_PER_PAGE
from .site import Route, Site

MAX_COMMITS = 10_000


def _write(out: Path, name: str, body: bytes) -> None:
    tmp = out / f".{name}.tmp"
    tmp.write_bytes(body)
    os.replace(tmp, out / name)


def _page(site: Site, out: Path, route: Route, stem: str, *, last: bool = False) -> dict[str, object]:
    value = site.data(route)
    # The last branch page written links to no older page: that page is not in the report.
    shown = {**value, "more": False} if last else value
    _write(out, f"{stem}.html", site.html(route, shown, "").encode())
    _write(out, f"{stem}.json", json.dumps(value, indent=2, sort_keys=True).encode())
    return value


def write_report(site: Site, out: Path, commits: int) -> int:
    """Write the report for the first ``commits`` commits of the site's branch; returns the
    number of files written."""
    out.mkdir(parents=True, exist_ok=True)
    per_page = min(site.per_page, MAX_PER_PAGE)
    pages = max(1, -(-commits // per_page))
    written, shas, nodes = 0, [], set()
    for n in range(1, pages + 1):
        route = Route("branch", (str(n),), "html")
        value = _page(site, out, route, "index" if n == 1 else f"page-{n}", last=n == pages)
        written += 2
        listed = value["commits"]
        assert isinstance(listed, list)
        shas.extend(c["commit"] for c in listed)
        if not value["more"]:
            break
    for sha in shas[:commits]:
        commit = _page(site, out, Route("commit", (sha,), "html"), f"commit-{sha}")
        written += 2
        jobs = commit["jobs"]
        assert isinstance(jobs, list)
        for job in jobs:
            for run in job["runs"]:
                nodes.add(run["node"])
                _page(site, out, Route("run", (job["id"], run["id"]), "html"), f"run-{job['id']}-{run['id']}")
                written += 2
    for nid in sorted(nodes):
        _page(site, out, Route("node", (nid,), "html"), f"node-{nid}")
        written += 2
    return written
