"""The web page over plain HTTP, the static report, and `git jobs status --branch` / `A..B`.

Real repositories, the real `git jobs serve` process on 127.0.0.1, real HTTP requests; the
browser-level checks (script execution, live refresh) are in test_web_browser.py.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from jobs.web.ansi import to_html
from jobs.web.page import external
from tests.clirunner import gj
from tests.conftest import git
from tests.webhelpers import (
    HOSTILE_LOG_LINE,
    HOSTILE_SUBJECT,
    HOSTILE_URL,
    SYNCED_LOG_LINE,
    WebRepo,
    copy_web_repo,
    pristine_web_repo,
    serving,
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> WebRepo:
    return pristine_web_repo(tmp_path_factory.mktemp("web"))


@pytest.fixture
def web(pristine: WebRepo, tmp_path: Path) -> WebRepo:
    """This test's own copy of the world."""
    return copy_web_repo(pristine, tmp_path / "web")


def request(
    url: str, path: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    finally:
        conn.close()


# -- status --branch / A..B -------------------------------------------------------------------
@pytest.mark.slow
def test_status_branch_lists_commits_newest_first_with_outcome_and_counts(web: WebRepo) -> None:
    res = gj(web.path, "status", "--branch", "main")
    assert res.code == 0, res
    lines = res.out.strip().splitlines()
    assert [line.split()[1] for line in lines] == [
        git(web.path, "rev-parse", "--short=12", f"HEAD~{i}").strip() for i in range(4)
    ]
    # a commit whose definitions do not parse fails the gate (status exits 1 for it)
    assert "invalid definitions" in lines[0] and "failed" in lines[0] and "no jobs" in lines[0]
    assert HOSTILE_SUBJECT[:20] in lines[1] and "failed" in lines[1]
    assert "1 failed, 2 succeeded" in lines[1]


def verdict(status: dict[str, Any]) -> dict[str, Any]:
    """`status --json` without `progress` (the CLI adds where each node stands; the page and
    the branch list show the verdict, the same shape otherwise)."""
    return {k: v for k, v in status.items() if k != "progress"}


@pytest.mark.slow
def test_status_range_and_pages(web: WebRepo) -> None:
    res = gj(web.path, "status", "HEAD~2..HEAD")
    assert res.code == 0 and len(res.out.strip().splitlines()) == 2, res
    first = gj(web.path, "status", "--branch", "main", "--limit", "3")
    lines = first.out.strip().splitlines()
    assert len(lines) == 4 and "--page 2" in lines[-1]
    second = gj(web.path, "status", "--branch", "main", "--limit", "3", "--page", "2")
    assert len(second.out.strip().splitlines()) == 1


@pytest.mark.slow
def test_status_branch_json_is_the_status_shape_of_each_commit(web: WebRepo) -> None:
    value = gj(web.path, "status", "--branch", "main", "--json").json
    assert value["branch"] == "main" and value["more"] is False and value["page"] == 1
    entry = value["commits"][1]
    assert entry["subject"] == HOSTILE_SUBJECT
    one = verdict(gj(web.path, "status", entry["commit"], "--json").json)
    assert {k: v for k, v in entry.items() if k != "subject"} == one


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("--branch", "nope"),
        ("nope..HEAD",),
        ("--branch", "main", "--limit", "0"),
        ("--branch", "main", "--page", "0"),
        ("HEAD...HEAD~1",),
    ],
)
def test_status_branch_bad_input_is_one_line(web: WebRepo, args: tuple[str, ...]) -> None:
    res = gj(web.path, "status", *args)
    assert res.code == 2 and res.err.startswith("error: ") and len(res.err.strip().splitlines()) == 1


# -- the server over HTTP -------------------------------------------------------------------------
@pytest.mark.slow
def test_server_answers_only_well_formed_local_reads(web: WebRepo) -> None:
    with serving(web) as url:
        host = {"Host": urlsplit(url).netloc}
        status, headers, body = request(url, "/", headers=host)
        assert status == 200 and b"<table>" in body
        assert "default-src 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert request(url, "/", headers={"Host": "attacker.example"})[0] == 421  # DNS rebinding
        assert request(url, "/", method="POST", headers=host)[0] == 405
        assert request(url, "/" + "a" * 3000, headers=host)[0] == 414
        assert request(url, "/?x=1", headers=host)[0] == 400
        assert request(url, "/../../etc/passwd", headers=host)[0] == 404
        assert request(url, "/commit-HEAD.html", headers=host)[0] == 404
        assert request(url, "/index.html?ref=no-such-branch", headers=host)[0] == 400
        assert request(url, f"/node-z{'1' * 45}.html", headers=host)[0] == 404


@pytest.mark.slow
def test_etag_changes_when_another_process_records_a_run(web: WebRepo) -> None:
    with serving(web) as url:
        host = {"Host": urlsplit(url).netloc}
        path = f"/commit-{web.head}.html"
        status, headers, _ = request(url, path, headers=host)
        tag = headers["etag"]
        # A tag taken while the refs were too fresh to trust is unique; wait until it settles.
        for _ in range(50):
            again = request(url, path, headers={**host, "If-None-Match": tag})
            if again[0] == 304:
                break
            tag = again[1]["etag"]
        assert again[0] == 304
        assert gj(web.path, "run", "HEAD~1:test", "--log", "https://ci.example/x", key=web.key_b).code == 0
        status, headers, body = request(url, path, headers={**host, "If-None-Match": tag})
        assert status == 200 and headers["etag"] != tag and b"st-running" in body


@pytest.mark.slow
def test_json_pages_are_the_cli_shapes(web: WebRepo) -> None:
    with serving(web) as url:
        host = {"Host": urlsplit(url).netloc}
        _, headers, body = request(url, f"/commit-{web.head}.json", headers=host)
        assert headers["content-type"] == "application/json"
        value = json.loads(body)
        assert value["status"] == verdict(gj(web.path, "status", web.head, "--json").json)
        for job in value["jobs"]:
            assert job == gj(web.path, "show", job["id"], "--json").json
        _, _, body = request(url, "/index.json", headers=host)
        assert json.loads(body) == gj(web.path, "status", "--branch", "main", "--limit", "30", "--json").json


@pytest.mark.slow
def test_a_retried_cell_shows_its_attempts_and_flaky(web: WebRepo) -> None:
    for reason in ("failed", "succeeded"):
        run = gj(web.path, "run", "HEAD~1:test", "--log", f"https://ci.example/{reason}", key=web.key_b)
        assert gj(web.path, "finish", "HEAD~1:test", run.line, reason, key=web.key_b).code == 0
    with serving(web) as url:
        host = {"Host": urlsplit(url).netloc}
        _, _, body = request(url, f"/commit-{web.head}.html", headers=host)
        cell = body.decode().split('class="st st-flaky"')
        assert len(cell) == 2  # one flaky cell: node B's test (node A's only attempt failed)
        assert "<summary>2 attempts</summary>" in cell[1]
        assert cell[1].index("st-failed") < cell[1].index("</details>")  # the earlier attempt


@pytest.mark.slow
def test_a_peer_log_url_never_makes_the_page_read_a_local_file(web: WebRepo, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT\n")
    run = gj(web.path, "run", "HEAD~1:build", "--log", secret.as_uri(), key=web.key_b)
    assert run.code == 0
    with serving(web) as url:
        host = {"Host": urlsplit(url).netloc}
        job = gj(web.path, "show", "HEAD~1:build", "--json").json["id"]
        status, _, page = request(url, f"/run-{job}-{run.line}.html", headers=host)
        assert status == 200 and b"TOP-SECRET" not in page
        assert f"<code>{secret.as_uri()}</code>".encode() in page  # shown, not linked


@pytest.mark.slow
def test_hostile_strings_are_escaped_in_the_html(web: WebRepo) -> None:
    with serving(web) as url:
        host = {"Host": urlsplit(url).netloc}
        pages = [f"/commit-{web.head}.html", f"/commit-{web.bad}.html", "/", f"/node-{web.nid_b}.html"]
        bodies = [request(url, p, headers=host)[2].decode() for p in pages]
        run_links = re.findall(r'href="(run-[^"]+\.html)"', bodies[0])
        bodies += [request(url, "/" + r, headers=host)[2].decode() for r in run_links]
        text = "\n".join(bodies)
        assert "<script>window" not in text and "<img src=x" not in text and "<img/src" not in text
        assert "onerror=window" in text  # present, as escaped text
        assert 'href="https://ci.example/log/%22%3E%3Cimg/src=x/onerror=window.__pwned=4%3E"' in text
        assert HOSTILE_URL not in text


# -- static report ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_report_writes_the_same_views_as_static_files(web: WebRepo, tmp_path: Path) -> None:
    out = tmp_path / "site"
    res = gj(web.path, "report", "--html", str(out), "--branch", "main", "--commits", "3", key=web.key_a)
    assert res.code == 0, res
    index = (out / "index.html").read_text()
    assert "<script" not in index and "script-src 'none'" in index.replace("&#x27;", "'")
    commit = out / f"commit-{web.head}.html"
    assert commit.exists() and 'table class="matrix"' in commit.read_text()
    runs = sorted(out.glob("run-*.html"))
    assert len(runs) == 3
    assert any("green ok" in r.read_text() for r in runs)  # this node's own log
    assert any(SYNCED_LOG_LINE in r.read_text() for r in runs)  # node B's, synced through Git
    assert (out / f"node-{web.nid_a}.html").exists() and (out / f"node-{web.nid_b}.html").exists()
    value: dict[str, Any] = json.loads((out / f"commit-{web.head}.json").read_text())
    assert value["status"] == verdict(gj(web.path, "status", web.head, "--json").json)
    # Every local link of every page points at a page that was written.
    for page in out.glob("*.html"):
        for href in re.findall(r'href="([^"#?]+\.html)', page.read_text()):
            if not href.startswith("run-") and not href.startswith("http"):
                assert (out / href).exists(), (page.name, href)


@pytest.mark.slow
def test_serve_and_report_bad_input_is_one_line(web: WebRepo, tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = str(taken.getsockname()[1])
        for args in (
            ("serve", "--port", "70000"),
            ("serve", "--branch", "nope"),
            ("serve", "--port", port),
            ("report", "--html", str(tmp_path / "x"), "--commits", "0"),
        ):
            res = gj(web.path, *args)
            assert res.code == 2 and res.err.startswith("error: "), res
            assert len(res.err.strip().splitlines()) == 1
    finally:
        taken.close()


# -- rendering pieces ---------------------------------------------------------------------------------
def test_ansi_colours_become_classes_and_everything_else_is_text() -> None:
    out = to_html("\x1b[1;31mred\x1b[0m plain\n\x1b]0;title\x07<b>&\x1b[38;5;200mx\x1b[38;2;1;2;3my\n")
    assert '<span class="b f1">red</span>' in out
    assert "title" not in out and "&lt;b&gt;&amp;" in out
    assert '<span class="l" id="L2">' in out and 'href="#L2"' in out
    assert "\x1b" not in out and "style=" not in out
    assert HOSTILE_LOG_LINE not in to_html(HOSTILE_LOG_LINE)


def test_only_http_urls_become_links() -> None:
    assert "<a " not in external("javascript:alert(1)")
    assert "<a " not in external("file:///etc/passwd")
    assert "<a " not in external("data://x/<script>")
    assert external("https://ci.example/a?b=1&c=2").startswith('<a href="https://ci.example/a?b=1&amp;c=2"')


@pytest.mark.slow
def test_runs_marked_not_counted_are_shown_apart(web: WebRepo) -> None:
    """The contract with the trust policy: a run object with ``"counted": false`` (what
    `status --json` gives an untrusted node's run) is rendered apart from the verdict's."""
    import cob
    import jobs
    from jobs.web import data, views

    store = jobs.Jobs.open(cob.open_repository(str(web.path)))
    value = data.commit_data(store, web.head)
    for job in value["status"]["jobs"]:
        for run in job["latest"]:
            run["counted"] = run["node"] != web.nid_b
    _, body = views.commit(value)
    counted, _, apart = body.partition("Runs not counted")
    assert apart, body
    assert f"node-{web.nid_b}.html" not in counted and f"node-{web.nid_b}.html" in apart
    assert f"node-{web.nid_a}.html" in counted and f"node-{web.nid_a}.html" not in apart
    assert "not counted" in apart
