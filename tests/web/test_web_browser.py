"""`git jobs serve` in a real headless Chromium (Debian's `chromium`, driven by Playwright).

What a maintainer does: open the page for a repository with two nodes' runs, see the matrix,
open a log, watch a new run appear when another process records it — and no hostile job
name, log URL, log line or commit subject ever runs a script (each payload would set
``window.__pwned``). Skipped, saying why, only where Chromium or Playwright is missing
(`.ci/run` installs both).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clirunner import gj
from tests.webhelpers import (
    HOSTILE_LOG_LINE,
    HOSTILE_NAME,
    HOSTILE_REJECTED,
    HOSTILE_SUBJECT,
    HOSTILE_URL,
    SYNCED_LOG_LINE,
    WebRepo,
    copy_web_repo,
    pristine_web_repo,
    serving,
)

CHROMIUM = os.environ.get("GIT_JOBS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed (pip install playwright)")
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> WebRepo:
    return pristine_web_repo(tmp_path_factory.mktemp("web"))


@pytest.fixture
def web(pristine: WebRepo, tmp_path: Path) -> WebRepo:
    """This test's own copy of the world."""
    return copy_web_repo(pristine, tmp_path / "web")


def _not_pwned(page: Any) -> None:
    assert page.evaluate("() => window.__pwned === undefined"), "a hostile string ran a script"


def _open(browser: Any, *, js: bool = True) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(java_script_enabled=js)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    return context, page, dialogs


@pytest.mark.slow
def test_matrix_log_and_live_run_in_chromium(browser: Any, web: WebRepo) -> None:
    with serving(web) as url:
        context, page, dialogs = _open(browser)
        response = page.goto(url)
        assert response is not None and response.status == 200
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "unsafe-inline" not in csp
        # The branch page: newest first, the hostile subject shown as text.
        rows = page.locator("table tbody tr")
        assert rows.count() == 4
        assert page.locator("tbody tr", has_text=HOSTILE_SUBJECT).count() == 1
        page.click(f"a[href='commit-{web.head}.html']")
        page.wait_for_url(f"**/commit-{web.head}.html")
        _not_pwned(page)
        # The matrix: jobs x the two nodes, this node marked "(you)".
        headers = page.locator("table.matrix thead th").all_inner_texts()
        assert len(headers) == 3 and sum("(you)" in h for h in headers) == 1
        assert page.locator("table.matrix tbody tr").count() == 2
        build = page.locator("table.matrix tbody tr", has_text="build")
        assert build.locator(".st-succeeded").count() == 3  # the job, and both nodes' cells
        test = page.locator("table.matrix tbody tr", has_text="test")
        assert test.locator(".st-failed").count() == 2
        # The change the rules rejected: a warning quoting the hostile URL as text.
        assert HOSTILE_REJECTED in page.locator(".warn").inner_text()
        # The other node's log, synced through Git and verified: coloured, hostile line as
        # text; its hostile log URL shown, not run.
        theirs = 1 - (headers.index(next(h for h in headers if "(you)" in h)) - 1)
        build.locator("td").nth(theirs).locator("a").first.click()
        page.wait_for_url("**/run-*.html")
        assert page.locator("pre.log .f6", has_text=SYNCED_LOG_LINE).count() == 1
        assert HOSTILE_LOG_LINE in page.locator("pre.log").inner_text()
        assert "published in Git, verified" in page.locator("main").inner_text()
        _not_pwned(page)
        page.go_back()
        # Open this node's log: colours as classes, the hostile line as text, line anchors.
        mine = headers.index(next(h for h in headers if "(you)" in h)) - 1
        build.locator("td").nth(mine).locator("a").first.click()
        page.wait_for_url("**/run-*.html")
        log = page.locator("pre.log")
        assert page.locator("pre.log .f2", has_text="green ok").count() == 1
        assert HOSTILE_LOG_LINE in log.inner_text()
        assert page.locator("pre.log #L3").count() == 1
        _not_pwned(page)
        # Live: another process records a run; it appears without a reload.
        page.goto(f"{url}commit-{web.head}.html")
        page.evaluate("() => { window.__same = 1; }")
        assert page.locator("table.matrix .st-running").count() == 0
        run = gj(web.path, "run", "HEAD~1:test", "--log", "https://ci.example/live", key=web.key_b)
        assert run.code == 0, run
        page.locator("table.matrix .st-running").wait_for(timeout=20_000)
        assert page.evaluate("() => window.__same") == 1  # the same document: no reload
        _not_pwned(page)
        # The invalid definitions quote a hostile job name: shown, not run.
        page.goto(f"{url}commit-{web.bad}.html")
        assert HOSTILE_NAME in page.locator(".bad").inner_text()
        _not_pwned(page)
        page.goto(f"{url}node-{web.nid_b}.html")
        assert page.locator("svg.chart rect").count() >= 1
        _not_pwned(page)
        assert dialogs == []
        if os.environ.get("GIT_JOBS_SCREENSHOT"):
            page.set_viewport_size({"width": 1100, "height": 520})
            page.goto(f"{url}commit-{web.head}.html")
            page.screenshot(path=os.environ["GIT_JOBS_SCREENSHOT"], full_page=True)
        context.close()


def test_pages_work_with_javascript_off(browser: Any, web: WebRepo) -> None:
    with serving(web) as url:
        context, page, _ = _open(browser, js=False)
        page.goto(f"{url}commit-{web.head}.html")
        assert page.locator("table.matrix tbody tr").count() == 2
        assert HOSTILE_URL not in page.content()  # escaped in the page source
        # This node's cell of the failed job opens its log, rendered by the server alone.
        headers = page.locator("table.matrix thead th").all_inner_texts()
        mine = next(i for i, h in enumerate(headers) if "(you)" in h) - 1
        test = page.locator("table.matrix tbody tr", has_text="test")
        test.locator("td").nth(mine).locator("a").first.click()
        page.wait_for_url("**/run-*.html")
        assert "testing" in page.locator("pre.log").inner_text()
        assert page.locator("pre.log #L1").count() == 1
        context.close()
