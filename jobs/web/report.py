"""`git jobs report --html OUT`: the served views written as static files.

The same :class:`~jobs.web.site.Site` renders every page (without the live-refresh script),
so a published report and the live page never differ. Written: the branch pages, each listed
commit's page, every run page of those commits, and a page per node seen — each also as
``.json`` (the CLI's shapes) — and ``badge.svg``, the branch's badge (:mod:`.badge`). Files
are written to a temporary name and renamed, so a reader never sees half a page.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .data import NotFoundError
from .site import Route, Site

MAX_COMMITS = 10_000


def _write(out: Path, name: str, body: bytes) -> None:
    tmp = out / f".{name}.tmp"
    tmp.write_bytes(body)
    os.replace(tmp, out / name)


def _emit(site: Site, out: Path, route: Route, stem: str, value: dict[str, Any]) -> None:
    _write(out, f"{stem}.html", site.html(route, value, "").encode())
    _write(out, f"{stem}.json", json.dumps(value, indent=2, sort_keys=True).encode())


def _branch(site: Site, out: Path, commits: int) -> tuple[list[str], int]:
    """Write the branch pages covering the first ``commits`` commits; return their shas and
    the number of pages."""
    shas: list[str] = []
    n = 0
    while len(shas) < commits:
        n += 1
        route = Route("branch", (str(n),), "html")
        value = site.data(route)
        listed = value["commits"][: commits - len(shas)]
        shas.extend(c["commit"] for c in listed)
        # The last page written links to no older page: that page is not in the report.
        last = not value["more"] or len(shas) >= commits
        value = {**value, "commits": listed, "more": value["more"] and not last}
        _emit(site, out, route, "index" if n == 1 else f"page-{n}", value)
        if last:
            break
    return shas, n


def write_report(site: Site, out: Path, commits: int) -> int:
    """Write the report for the first ``commits`` commits of the site's branch; returns the
    number of pages written (each as .html and .json)."""
    out.mkdir(parents=True, exist_ok=True)
    shas, written = _branch(site, out, commits)
    nodes: set[str] = set()
    for sha in shas:
        route = Route("commit", (sha,), "html")
        commit = site.data(route)
        _emit(site, out, route, f"commit-{sha}", commit)
        written += 1
        for job in commit["jobs"]:
            for run in job["runs"]:
                nodes.add(run["node"])
                route = Route("run", (job["id"], run["id"]), "html")
                try:
                    value = site.data(route)
                except NotFoundError:  # a peer reused this run id: no single run to show
                    continue
                _emit(site, out, route, f"run-{job['id']}-{run['id']}", value)
                written += 1
    for nid in sorted(nodes):
        route = Route("node", (nid,), "html")
        _emit(site, out, route, f"node-{nid}", site.data(route))
        written += 1
    badge = Route("badge", (), "svg")
    _write(out, "badge.svg", site.render(badge, "")[1])  # the branch's badge, for a README
    return written
