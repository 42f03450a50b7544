"""The site: which path is which view, its ETag, and its HTML or JSON — no HTTP here.

Paths are flat and validated by one regular expression each (hex ids, a uuid, a NID, a page
number): nothing from the path reaches git or the file system unchecked. The server and the
static export (:mod:`jobs.web.report`) both render through :meth:`Site.render`, so the two
can never differ.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from cob.cache import is_racy

from ..errors import JobsError
from ..history import span
from ..jobtype import TYPENAME
from ..store import Jobs
from . import data, page, views
from .badge import badge_data, badge_svg
from .logs import log_stamp

MAX_REF = 256
_UUID = r"[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}"

_ROUTES: list[tuple[str, re.Pattern[str]]] = [
    ("branch", re.compile(r"/(?:index\.(html|json))?")),
    ("branch", re.compile(r"/page-([1-9][0-9]{0,5})\.(html|json)")),
    ("commit", re.compile(r"/commit-([0-9a-f]{40}(?:[0-9a-f]{24})?)\.(html|json)")),
    (
        "run",
        re.compile(
            r"/run-([0-9a-f]{40}(?:[0-9a-f]{24})?)-(" + _UUID + r")(?:-L([1-9][0-9]{0,8}))?\.(html|json)"
        ),
    ),
    ("node", re.compile(r"/node-(z[1-9A-HJ-NP-Za-km-z]{40,60})\.(html|json)")),
    ("badge", re.compile(r"/badge\.(svg)")),  # the branch's gate verdict (badge.py)
]


class BadRequestError(ValueError):
    """A path or query the site does not serve (404 for paths, 400 for queries)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Route:
    view: str
    args: tuple[str, ...]
    fmt: str  # "html" | "json"
    ref: str | None = None


def parse(path: str, query: dict[str, list[str]]) -> Route:
    """The route of a request path (without its query) and its parsed query."""
    ref = None
    for key, values in query.items():
        if key != "ref" or len(values) != 1 or not 0 < len(values[0]) <= MAX_REF:
            raise BadRequestError(400, "the only query parameter is one ref=NAME")
        ref = values[0]
    for view, pattern in _ROUTES:
        m = pattern.fullmatch(path)
        if m is None:
            continue
        groups = m.groups()
        fmt = groups[-1] or "html"
        args = tuple(g for g in groups[:-1] if g is not None)  # a run's log window: its first line
        if view == "branch" and not args:
            args = ("1",)
        return Route(view, args, fmt, ref)
    raise BadRequestError(404, "no such page")


class Site:
    """Renders routes for one repository; ``default_ref`` is the branch of the index page."""

    def __init__(
        self, store: Jobs, default_ref: str | None, *, per_page: int = 30, live: bool = True
    ) -> None:
        self.store = store
        self.default_ref = default_ref
        self.per_page = per_page
        self.live = live

    def etag(self, route: Route) -> str:
        """Changes whenever what ``route`` shows may have changed: the job refs' stamp, the
        branch tip, the run's log file. A stamp too fresh to trust gets a unique tag."""
        token, newest = self.store.store.refs.stamp(TYPENAME)
        parts = [token, repr(route)]
        if route.view in ("branch", "badge"):
            parts.append(self._tip(route.ref))
        if route.view == "run":
            log, mtime = log_stamp(self.store, route.args[1])
            parts.append(log)
            newest = max(newest, mtime)
        if is_racy(newest):
            parts.append(str(time.time_ns()))
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]

    def _tip(self, ref: str | None) -> str:
        try:
            return span(self.store, ref or self.default_ref).tip
        except JobsError:
            return "-"

    def data(self, route: Route) -> dict[str, Any]:
        """The view's JSON (the CLI's shapes, see :mod:`jobs.web.data`)."""
        if route.view == "branch":
            ref = route.ref or self.default_ref
            return data.branch_data(self.store, ref, int(route.args[0]), self.per_page)
        if route.view == "commit":
            return data.commit_data(self.store, route.args[0])
        if route.view == "badge":
            return badge_data(self.store, route.ref or self.default_ref)
        if route.view == "run":
            # a static report is published: only the log as this node publishes it (redacted)
            return data.run_data(self.store, route.args[0], route.args[1], local_ok=self.live)
        return data.node_data(self.store, route.args[0])

    def html(self, route: Route, value: dict[str, Any], etag: str) -> str:
        if route.view == "branch":
            title, body = views.branch(value, ref=route.ref)
        elif route.view == "commit":
            title, body = views.commit(value)
        elif route.view == "run":
            start = int(route.args[2]) if len(route.args) > 2 else None
            title, body = views.run(value, start=start, paged=self.live)
        else:
            title, body = views.node(value)
        home = views.page_href(1, route.ref)
        return page.document(title, body, etag=etag, live=self.live, home=home)

    def render(self, route: Route, etag: str) -> tuple[str, bytes]:
        """(content type, body) of a route."""
        value = self.data(route)
        if route.fmt == "svg":
            return "image/svg+xml", badge_svg(value).encode()
        if route.fmt == "json":
            return "application/json", json.dumps(value, indent=2, sort_keys=True).encode()
        return "text/html; charset=utf-8", self.html(route, value, etag).encode()


def error_page(status: int, message: str) -> bytes:
    body = f"<h1>{status}</h1><p>{page.esc(message)}</p>"
    return page.document(f"{status}", body, etag="", live=False).encode()
