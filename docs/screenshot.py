"""Make docs/web-commit.png: the commit page of `git jobs demo`'s newest commit, in Chromium.

    .venv/bin/python docs/screenshot.py [--chromium /usr/bin/chromium]

Runs `git jobs demo --keep` in a temporary directory, serves alice's clone with
`git jobs serve --port 0`, and has Playwright (headless Debian `chromium`) photograph it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
GIT_JOBS = shutil.which("git-jobs") or str(Path(sys.executable).parent / "git-jobs")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--out", default=str(HERE / "web-commit.png"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        demo = json.loads(subprocess.run(
            [GIT_JOBS, "demo", "--keep", f"{tmp}/demo", "--json"], check=True, capture_output=True, text=True
        ).stdout)
        alice = next(n for n in demo["nodes"] if n["name"] == "alice")
        # The commit with the most runs shows the most.
        commit = max(demo["commits"], key=lambda c: sum(c["counts"].values()))["commit"]
        env = dict(os.environ, GIT_JOBS_KEY=alice["key"])
        proc = subprocess.Popen(
            [GIT_JOBS, "serve", "--port", "0"], cwd=alice["path"], env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None
            m = re.search(r"http://\S+/", proc.stdout.readline())
            assert m
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1000, "height": 420})
                page.goto(f"{m.group(0)}commit-{commit}.html")
                page.screenshot(path=args.out, full_page=True)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
