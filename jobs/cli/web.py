"""`git jobs serve` and `git jobs report`: the maintainers' web page, live or as static files.

Only these commands import :mod:`jobs.web` (and ``http.server``): every other command's
start-up is unchanged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import command, open_jobs
from .errors import EXIT_OK, CliError

DEFAULT_REPORT_COMMITS = 100


def _site(args: argparse.Namespace, *, live: bool) -> Any:
    from ..history import span
    from ..web.site import Site

    store = open_jobs(args)
    span(store, args.branch)  # a bad branch is one clear error now, not a 400 page later
    return Site(store, args.branch, live=live)


def _serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be 0 to 65535, not {args.port}")
    from ..web.server import serve

    site = _site(args, live=True)
    try:
        server = serve(site, args.port)
    except OSError as e:
        raise CliError(f"cannot listen on 127.0.0.1:{args.port}: {e.strerror or e}") from None
    print(f"Serving {server.url} (read-only; Ctrl-C to stop)", flush=True)
    if args.open:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    if not 1 <= args.commits <= 10_000:
        raise CliError(f"--commits must be 1 to 10000, not {args.commits}")
    from ..web.report import write_report

    site = _site(args, live=False)
    out = Path(args.html)
    if out.exists() and not out.is_dir():
        raise CliError(f"{out} exists and is not a directory")
    written = write_report(site, out, args.commits)
    print(f"wrote {written} pages (.html and .json) to {out}/ — open {out / 'index.html'}")
    return EXIT_OK


def register(sub: Any) -> None:
    p = command(
        sub,
        "serve",
        "  git jobs serve                 # http://127.0.0.1:8765/\n"
        "  git jobs serve --port 0 --open # any free port, and open a browser\n"
        "  git jobs serve --branch release/1.x\n",
        _serve,
        "Views: a branch (commits newest first with their outcome), a commit (jobs x nodes),\n"
        "a run (its log), a node (its runs and pass rate). Each page is also JSON: replace\n"
        ".html with .json. Pages refresh by themselves when refs move; they work without\n"
        "JavaScript too.",
    )
    p.add_argument("--port", type=int, default=8765, metavar="N", help="The port (8765; 0: any free one).")
    p.add_argument("--open", action="store_true", help="Open the page in a browser.")
    p.add_argument("--branch", metavar="B", help="The branch of the front page (default: the current one).")

    p = command(
        sub,
        "report",
        "  git jobs report --html public/\n  git jobs report --html out --branch main --commits 500\n",
        _report,
    )
    p.add_argument("--html", required=True, metavar="OUT", help="The directory to write.")
    p.add_argument("--branch", metavar="B", help="The branch (default: the current one).")
    p.add_argument(
        "--commits",
        type=int,
        default=DEFAULT_REPORT_COMMITS,
        metavar="N",
        help=f"How many of its newest commits ({DEFAULT_REPORT_COMMITS}).",
    )
