"""Bench: the web page's branch view for 2,000 commits and 10,000 jobs — its first page.

Goal (issue 18): "renders its first page in well under a second". Measured in the same run:

- ours, warm: a long-lived site (what `git jobs serve` is) renders the first branch page
  (30 commits, their 150 jobs) to HTML — `Site.render`, data + HTML;
- ours, over HTTP: the same page fetched from a real `git jobs serve` server on 127.0.0.1
  (ETag check, lock, headers), a fresh connection each time;
- ours, fresh: a new store and site per page (what `git jobs report` or a first request pays
  with the index current);
- the commit page and the last branch page (page 67: a walk past 1,980 commits);
- baseline: `git log -n 30 --format=%H%x20%s main` (stock git listing the same 30 commits,
  no jobs at all), so the ratio says what the jobs cost on top of listing commits.

    .venv/bin/python benches/web.py            # 2,000 commits, 10,000 jobs
    .venv/bin/python benches/web.py --quick    # 200 commits, 1,000 jobs
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen

import jobs
from jobs.web.server import serve
from jobs.web.site import Route, Site


def build(path: str, commits: int, count: int) -> list[str]:
    shas = gen.make_commits(path, commits)
    repo = jobs.Jobs.open(path).repo
    gen.many_jobs(repo, shas, count)
    return shas


def get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": f"127.0.0.1:{port}"})
        res = conn.getresponse()
        body = res.read()
        assert res.status == 200, (res.status, body[:200])
        return body
    finally:
        conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    commits, count = (200, 1_000) if args.quick else (2_000, 10_000)
    parent = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=parent) as tmp:
        path = os.path.join(tmp, "repo")
        t = time.perf_counter()
        shas = build(path, commits, count)
        print(f"built {commits:,} commits, {count:,} jobs in {time.perf_counter() - t:.1f}s")
        store = jobs.Jobs.open(path)
        t = time.perf_counter()
        store.find_by_commit(shas[0])  # the index is built once, as on a first `git jobs` call
        print(f"index built in {time.perf_counter() - t:.1f}s (once per repository)")
        site = Site(store, "main", live=True)
        first = Route("branch", ("1",), "html")
        last_page = str(-(-commits // site.per_page))
        last = Route("branch", (last_page,), "html")
        commit = Route("commit", (shas[-1],), "html")
        nid = next(iter(store.find_by_commit(shas[-1])[0].runs()))
        node = Route("node", (nid,), "html")
        html = site.render(first, site.etag(first))[1]
        assert html.count(b"<tr>") >= 30, html[:500]
        server = serve(Site(jobs.Jobs.open(path), "main", live=True), 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        get(port, "/")
        cases: list[tuple[str, Callable[[], object]]] = [
            ("branch page 1 (30 commits), warm site", lambda: site.render(first, "x")),
            ("branch page 1 over HTTP (git jobs serve)", lambda: get(port, "/")),
            (
                "branch page 1, fresh store + site",
                lambda: Site(jobs.Jobs.open(path), "main").render(first, "x"),
            ),
            (f"branch page {last_page} (walk past {commits - 30:,} commits)", lambda: site.render(last, "x")),
            ("commit page (5 jobs)", lambda: site.render(commit, "x")),
            (f"node page (runs in ~{count // 3:,} of {count:,} jobs)", lambda: site.render(node, "x")),
            (
                "baseline: git log -n 30 (no jobs)",
                lambda: subprocess.run(
                    ["git", "log", "-n", "30", "--format=%H %s", "main"],
                    cwd=path,
                    check=True,
                    capture_output=True,
                ),
            ),
        ]
        # Interleaved: every repeat runs every case once, so background load hits all alike.
        times: dict[str, list[float]] = {name: [] for name, _ in cases}
        for _ in range(args.repeats):
            for name, fn in cases:
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        rows = [(name, statistics.median(times[name])) for name, _ in cases[:-1]]
        base = statistics.median(times[cases[-1][0]])
        server.shutdown()
        server.server_close()
    print(f"\n{'case':<48} {'median':>10} {'vs git log -n 30':>18}")
    for name, secs in rows:
        print(f"{name:<48} {secs * 1e3:>8.1f}ms {secs / base:>17.1f}x")
    print(f"{'baseline: git log -n 30 (no jobs)':<48} {base * 1e3:>8.1f}ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
