"""`git jobs serve`: the site over HTTP on 127.0.0.1 only, read-only, bounded.

Standard library only (``http.server.ThreadingHTTPServer``): a page for one person on one
machine does not need a framework. Bounds and defences, each in one place:

- bound to 127.0.0.1, and the ``Host`` header must name it (or ``localhost``) with our port,
  so a web page elsewhere cannot reach the server through DNS rebinding;
- GET and HEAD only, no request body read; a path longer than :data:`MAX_PATH` is refused;
- at most :data:`MAX_CONCURRENT` requests at once (others get 503), a socket timeout;
- one lock around the repository (pygit2 and SQLite handles are not shared across threads);
- strict CSP, ``nosniff``, no referrer, no framing, on every answer.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..errors import JobsError
from . import page
from .data import NotFoundError
from .site import BadRequestError, Route, Site, error_page, parse

HOST = "127.0.0.1"
MAX_PATH = 2048
MAX_CONCURRENT = 16
SOCKET_TIMEOUT = 30
BADGE_CACHE = "public, max-age=60, must-revalidate"


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, site: Site, port: int) -> None:
        self.site = site
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(MAX_CONCURRENT)
        super().__init__((HOST, port), Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that went away mid-answer is normal; anything else is one line."""
        e = sys.exc_info()[1]
        if isinstance(e, (ConnectionError, TimeoutError)):
            return
        print(f"git jobs serve: {type(e).__name__}: {e}", file=sys.stderr)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"


class Handler(BaseHTTPRequestHandler):
    server: Server
    timeout = SOCKET_TIMEOUT
    protocol_version = "HTTP/1.1"
    server_version = "git-jobs"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a page open in a browser polls every two seconds."""

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _refuse(self) -> None:
        self._send(405, "text/html; charset=utf-8", error_page(405, "read-only: GET and HEAD only"))

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def _host_ok(self) -> bool:
        port = self.server.server_address[1]
        return self.headers.get("Host", "") in {f"{HOST}:{port}", f"localhost:{port}"}

    def _serve(self, *, head: bool) -> None:
        if not self.server.slots.acquire(blocking=False):
            self._send(503, "text/plain", b"busy\n", head=head, extra={"Retry-After": "2"})
            return
        try:
            self._answer(head)
        finally:
            self.server.slots.release()

    def _answer(self, head: bool) -> None:
        if len(self.path) > MAX_PATH:
            self._send(414, "text/html; charset=utf-8", error_page(414, "path too long"), head=head)
            return
        if not self._host_ok():
            self._send(421, "text/html; charset=utf-8", error_page(421, "wrong Host"), head=head)
            return
        try:
            parts = urlsplit(self.path)
            route = parse(parts.path, parse_qs(parts.query, keep_blank_values=True, max_num_fields=4))
        except (BadRequestError, ValueError) as e:
            status = e.status if isinstance(e, BadRequestError) else 400
            self._send(status, "text/html; charset=utf-8", error_page(status, str(e)), head=head)
            return
        self._view(route, head)

    def _view(self, route: Route, head: bool) -> None:
        wanted = self.headers.get("If-None-Match", "").strip().removeprefix("W/").strip('"')
        try:
            with self.server.lock:
                etag = self.server.site.etag(route)
                if wanted and wanted == etag:
                    self._send(304, None, b"", head=True, extra={"ETag": f'"{etag}"'})
                    return
                ctype, body = self.server.site.render(route, etag)
        except NotFoundError as e:
            self._send(404, "text/html; charset=utf-8", error_page(404, str(e)), head=head)
            return
        except JobsError as e:
            self._send(400, "text/html; charset=utf-8", error_page(400, str(e)), head=head)
            return
        except Exception as e:  # a bug: one line on the server's stderr, a 500 for the browser
            print(f"git jobs serve: internal error on {route}: {type(e).__name__}: {e}", file=sys.stderr)
            self._send(500, "text/html; charset=utf-8", error_page(500, "internal error"), head=head)
            return
        extra = {"ETag": f'"{etag}"'}
        if route.view == "badge":  # a README's <img>: caches may keep it a minute, then ask
            extra["Cache-Control"] = BADGE_CACHE
        self._send(200, ctype, body, head=head, extra=extra)

    def _send(
        self,
        status: int,
        ctype: str | None,
        body: bytes,
        *,
        head: bool = False,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", page.csp(script=self.server.site.live))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        extra = dict(extra or {})
        self.send_header("Cache-Control", extra.pop("Cache-Control", "no-cache"))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)


def serve(site: Site, port: int = 0) -> Server:
    """A server for ``site`` on 127.0.0.1:``port`` (0: any free port), not yet serving."""
    return Server(site, port)
