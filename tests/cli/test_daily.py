"""The maintainer's daily loop (issue 29 items 4-7): notifications on verdict changes, branch
badges, schedules, shell completion and ``python -m jobs`` — through the installed CLI."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET
from calendar import timegm
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cob
import jobs
import jobs.identity
from jobs import Jobs
from jobs.node import Node
from jobs.node.schedule import ScheduleError, Scheduler, load_schedules
from tests.clirunner import GIT_JOBS, gj
from tests.conftest import git, init_repo
from tests.node.test_node_daemon import World, publish, wait_for, world  # noqa: F401 - the node fixture

SVG = "{http://www.w3.org/2000/svg}"


def _repo(root: Path, definitions: str) -> tuple[Path, Path, str]:
    """A repository on main with ``definitions`` committed; (path, key, head)."""
    path = root / "work"
    init_repo(path)
    (path / ".git-jobs.toml").write_text(definitions)
    git(path, "add", ".git-jobs.toml")
    git(path, "commit", "-q", "-m", "add jobs")
    key = root / "key"
    cob.Signer.generate().save(key)
    return path, key, git(path, "rev-parse", "HEAD").strip()


def _record(path: Path, key: Path, rev: str, name: str, reason: str) -> None:
    """A run of ``rev:name`` recorded by this node, finished with ``reason`` (in-process, as
    a node's own process writes: the CLI's create/run/finish have their own tests)."""
    job = Jobs.open(str(path), cob.Signer.from_file(key)).create(rev, name)
    job.finish(job.run("https://ci.example/log"), reason)


def _wait_for(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


# -- 7. python -m jobs, completion ------------------------------------------------------------
def test_python_dash_m_jobs_is_the_cli() -> None:
    out = subprocess.run([sys.executable, "-m", "jobs", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("git-jobs "), out
    usage = subprocess.run([sys.executable, "-m", "jobs", "nosuch"], capture_output=True, text=True)
    assert usage.returncode == 2 and usage.stderr.startswith("error: ") and "Traceback" not in usage.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
@pytest.mark.slow
def test_completion_scripts_list_every_command_and_its_options(shell: str, tmp_path: Path) -> None:
    res = gj(tmp_path, "completion", shell)
    assert res.code == 0, res
    for word in ("status", "watch", "completion", "serve"):
        assert word in res.out, (shell, word)
    for option in ("watch", "notify", "branch", "fail-fast"):
        assert (f"-l {option}" if shell == "fish" else f"--{option}") in res.out, (shell, option)
    if shell in ("bash", "zsh") and shutil.which(shell):
        checked = subprocess.run([shell, "-n"], input=res.out, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
    if shell == "fish" and shutil.which("fish"):
        checked = subprocess.run(["fish", "--no-execute"], input=res.out, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr


def test_bash_completion_completes_commands_and_options(tmp_path: Path) -> None:
    script = tmp_path / "git-jobs.bash"
    script.write_text(gj(tmp_path, "completion", "bash").out)
    probe = (
        f"source {script}\n"
        'COMP_WORDS=(git-jobs sta); COMP_CWORD=1; _git_jobs_script; echo "${COMPREPLY[*]}"\n'
        'COMP_WORDS=(git-jobs -C x wat); COMP_CWORD=3; _git_jobs_script; echo "${COMPREPLY[*]}"\n'
        'COMP_WORDS=(git jobs status --fail); COMP_CWORD=3; _git_jobs; echo "${COMPREPLY[*]}"\n'
    )
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["status", "watch", "--fail-fast"]


def test_completion_for_an_unknown_shell_is_one_line(tmp_path: Path) -> None:
    res = gj(tmp_path, "completion", "ksh")
    assert res.code == 2 and res.out == "" and len(res.err.strip().splitlines()) == 1, res


# -- 4. notifications -------------------------------------------------------------------------
@pytest.fixture
def watched(tmp_path: Path) -> tuple[Path, Path, str]:
    return _repo(tmp_path, '[jobs.test]\nrun = "true"\n')


def _watch(path: Path, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [GIT_JOBS, "watch", "--branch", "main", "--interval", "0.2", "--timeout", "60", *args],
        cwd=path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert "watching the newest 5 commit(s) of main" in proc.stdout.readline()
    time.sleep(0.6)  # the baseline look is done
    return proc


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.terminate()
    out, err = proc.communicate(timeout=10)
    assert "Traceback" not in err, err
    return out, err


class _Lines:
    """A watch's stdout and stderr read as they come, so a test waits for a line, not a time."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(f, to), daemon=True)
            for f, to in ((proc.stdout, self.out), (proc.stderr, self.err))
        ]
        for t in self.readers:
            t.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def wait_err(self, text: str) -> None:
        _wait_for(lambda: any(text in line for line in self.err) or self.proc.poll() is not None)

    def wait_out(self, text: str) -> None:
        _wait_for(lambda: any(text in line for line in self.out) or self.proc.poll() is not None)

    def stop(self) -> tuple[str, str]:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        for t in self.readers:
            t.join(timeout=10)
        out, err = "".join(self.out), "".join(self.err)
        assert "Traceback" not in err, err
        return out, err


@pytest.mark.slow
def test_watch_notify_receives_the_verdict_change(watched: tuple[Path, Path, str], tmp_path: Path) -> None:
    path, key, head = watched
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    command = (
        f'cat > {inbox}/"$GIT_JOBS_OUTCOME".json;'
        f' echo "$GIT_JOBS_COMMIT $GIT_JOBS_PREVIOUS $GIT_JOBS_OUTCOME $GIT_JOBS_BRANCH $GIT_JOBS_EXIT"'
        f' > {inbox}/"$GIT_JOBS_OUTCOME".env'
    )
    proc = _watch(path, "--notify", command)
    try:
        assert list(inbox.iterdir()) == []  # the baseline (pending) notifies nothing
        _record(path, key, head, "test", "succeeded")
        got = _wait_for(lambda: (inbox / "succeeded.env").exists() and (inbox / "succeeded.env").read_text())
    finally:
        out, err = _stop(proc)
    assert got.split() == [head, "pending", "succeeded", "main", "0"]
    payload = json.loads((inbox / "succeeded.json").read_text())
    assert payload["commit"] == head and payload["outcome"] == "succeeded"
    assert payload["previous"] == "pending" and payload["subject"] == "add jobs"
    assert payload["status"]["outcome"] == "succeeded"  # the `status --json` shape
    assert f"{head[:12]} pending -> succeeded  add jobs" in out
    assert f"notified {head[:12]} pending -> succeeded" in err
    assert [p.name for p in inbox.iterdir() if p.suffix == ".json"] == ["succeeded.json"]


@pytest.mark.slow
def test_a_failing_or_slow_notify_command_is_reported_and_the_watch_goes_on(
    watched: tuple[Path, Path, str],
) -> None:
    path, key, head = watched
    git(path, "config", "jobs.notify", "sleep 30")  # from config when no --notify is given
    git(path, "config", "jobs.notifyTimeout", "0.5")
    (path / "file.txt").write_text("next\n")
    git(path, "commit", "-qam", "next")
    nxt = git(path, "rev-parse", "HEAD").strip()
    watch = _Lines(_watch(path))  # its first look saw both commits pending
    try:
        _record(path, key, head, "test", "failed")
        watch.wait_err("notify failed for")  # the slow command was killed; the watch goes on
        _record(path, key, nxt, "test", "succeeded")
        watch.wait_out(f"{nxt[:12]} pending -> succeeded")
        assert watch.proc.poll() is None, "the watch ended"
    finally:
        out, err = watch.stop()
    assert f"notify failed for {head[:12]} pending -> failed: timed out after 0.5s (killed)" in err
    assert f"{nxt[:12]} pending -> succeeded" in out  # a later change is still seen


@pytest.mark.slow
def test_notify_exit_status_is_reported(watched: tuple[Path, Path, str]) -> None:
    path, key, head = watched
    watch = _Lines(_watch(path, "--notify", "exit 3"))
    try:
        _record(path, key, head, "test", "succeeded")
        watch.wait_err("notify failed for")
    finally:
        _, err = watch.stop()
    assert f"notify failed for {head[:12]} pending -> succeeded: exit status 3" in err


@pytest.mark.slow
def test_watch_bad_input_is_one_line(watched: tuple[Path, Path, str]) -> None:
    path, _, _ = watched
    for args in (("--branch", "nosuch"), ("--interval", "0"), ("--depth", "0"), ("--notify", " ")):
        res = gj(path, "watch", *args, "--timeout", "1")
        assert res.code == 2 and len(res.err.strip().splitlines()) == 1, res


# -- 5. badges --------------------------------------------------------------------------------
def _badge(svg: bytes | str) -> tuple[str, str]:
    """(word, title) of a badge, parsed as XML (it must be well-formed)."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    texts = [t.text for t in root.iter(f"{SVG}text")]
    title = root.find(f"{SVG}title")
    assert texts[0] == "git jobs" and title is not None and title.text
    assert root.find(f".//{SVG}script") is None and "style" not in str(svg)
    return str(texts[1]), title.text


@pytest.mark.slow
def test_report_badge_says_pending_passing_failing(tmp_path: Path) -> None:
    path, key, head = _repo(tmp_path, '[jobs.test]\nrun = "true"\n')
    out = tmp_path / "site"

    def word() -> str:
        res = gj(path, "report", "--html", str(out), "--branch", "main")
        assert res.code == 0, res
        return _badge((out / "badge.svg").read_bytes())[0]

    assert word() == "pending"
    _record(path, key, head, "test", "succeeded")
    assert word() == "passing"
    (path / "file.txt").write_text("next\n")
    git(path, "commit", "-qam", "next")
    _record(path, key, "HEAD", "test", "failed")
    assert word() == "failing"


def _get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture
def badge_server(tmp_path: Path) -> Iterator[tuple[str, Path, Path, str]]:
    path, key, head = _repo(tmp_path, '[jobs.test]\nrun = "true"\n')
    hostile = 'x<script>alert(1)</script>&"'  # a legal git branch name
    git(path, "branch", hostile)
    proc = subprocess.Popen(
        [GIT_JOBS, "serve", "--port", "0", "--branch", "main"],
        cwd=path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[1]
        yield url, path, key, head
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
        assert "Traceback" not in err, err


def test_serve_badge_is_cache_friendly_and_escaped(badge_server: tuple[str, Path, Path, str]) -> None:
    url, path, key, head = badge_server
    status, headers, body = _get(url + "badge.svg")
    assert status == 200 and headers["Content-Type"] == "image/svg+xml"
    assert "max-age=" in headers["Cache-Control"] and headers["ETag"]
    assert _badge(body)[0] == "pending"
    again, _, empty = _get(url + "badge.svg", **{"If-None-Match": headers["ETag"]})
    assert again == 304 and empty == b""
    _record(path, key, head, "test", "succeeded")
    status, moved, body = _get(url + "badge.svg", **{"If-None-Match": headers["ETag"]})
    assert status == 200 and moved["ETag"] != headers["ETag"] and _badge(body)[0] == "passing"
    from urllib.parse import quote

    status, _, body = _get(url + "badge.svg?ref=" + quote('x<script>alert(1)</script>&"'))
    word, title = _badge(body)  # well-formed: the name is escaped
    assert status == 200 and word == "passing" and "<script>" in title and b"<script>" not in body
    status, _, body = _get(url + "badge.svg?ref=nosuch")
    assert status == 200 and _badge(body)[0] == "unknown"


@pytest.mark.slow
def test_badge_renders_in_chromium(badge_server: tuple[str, Path, Path, str]) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed (pip install playwright)")
    chromium = os.environ.get("GIT_JOBS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(chromium):
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    url, path, key, head = badge_server
    _record(path, key, head, "test", "failed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            response = page.goto(url + "badge.svg")
            assert response is not None and response.status == 200
            assert page.locator("text").nth(1).text_content() == "failing"
            box = page.locator("svg").bounding_box()
            assert box is not None and box["width"] > 50 and box["height"] == 20
        finally:
            browser.close()


# -- 6. schedules -----------------------------------------------------------------------------
SCHEDULED = (
    '[jobs.build]\nrun = "true"\n'
    '[jobs.test]\nrun = "echo tested"\n'
    '[schedule.nightly]\ncron = "0 3 * * *"\njobs = ["test"]\n'
)


def _at(hhmmss: str) -> float:
    return float(timegm(time.strptime(f"2026-03-01 {hhmmss}", "%Y-%m-%d %H:%M:%S")))


def _runs(path: Path, name: str) -> int:
    shown = gj(path, "show", f"HEAD:{name}", "--json")
    assert shown.code == 0, shown
    return len(shown.json["runs"])


@pytest.mark.slow
def test_a_scheduled_job_runs_at_its_time(tmp_path: Path) -> None:
    path, key, head = _repo(tmp_path, SCHEDULED)
    assert gj(path, "work", "any", key=key).code == 0
    assert (_runs(path, "build"), _runs(path, "test")) == (1, 1)
    now = [_at("02:58:00")]
    scheduler = Scheduler(clock=lambda: now[0])
    store = Jobs.open(str(path), jobs.identity.load_signer(cob.open_repository(str(path)), str(key)))
    lines: list[str] = []
    tips = [(head, "main")]
    assert scheduler.tick(store, tips, lines.append) == []  # starts the clock
    now[0] = _at("02:59:59")
    assert scheduler.tick(store, tips, lines.append) == []
    now[0] = _at("03:00:20")
    fired = scheduler.tick(store, tips, lines.append)
    assert [(f.schedule.name, f.commit, f.jobs) for f in fired] == [("nightly", head, ("test",))]
    due = "schedule nightly (0 3 * * *) due 2026-03-01T03:00:00Z"
    assert lines == [f"{due}: rerun test on {head[:12]} (main)"]
    now[0] = _at("03:10:00")
    assert scheduler.tick(store, tips, lines.append) == []  # once a day, not once a look
    # The signed rerun is the record; the node's ordinary work loop runs the job again.
    assert gj(path, "work", "any", key=key).code == 0
    assert (_runs(path, "build"), _runs(path, "test")) == (1, 2)


def test_schedules_come_from_the_default_branch_never_the_commit_under_test(tmp_path: Path) -> None:
    path, _, _ = _repo(tmp_path, SCHEDULED)
    git(path, "checkout", "-q", "-b", "feature")
    mine = SCHEDULED.replace("0 3 * * *", "* * * * *") + '[schedule.x]\ncron = "* * * * *"\n'
    (path / ".git-jobs.toml").write_text(mine)
    git(path, "commit", "-qam", "schedule everything")
    repo = cob.open_repository(str(path))
    schedules, where = load_schedules(repo)
    assert [(s.name, s.cron) for s in schedules] == [("nightly", "0 3 * * *")]
    assert where is not None and "refs/heads/main" in where
    assert gj(path, "status", "--json").code in (1, 8)  # the commit's own [schedule] parses


def test_a_bad_schedule_is_one_line_and_ignored(tmp_path: Path) -> None:
    path, key, head = _repo(tmp_path, '[jobs.test]\nrun = "true"\n[schedule.n]\ncron = "61 * * * *"\n')
    repo = cob.open_repository(str(path))
    with pytest.raises(ScheduleError, match="not a five-field cron expression"):
        load_schedules(repo)
    store = Jobs.open(str(path), jobs.identity.load_signer(repo, str(key)))
    lines: list[str] = []
    now = [_at("00:00:00")]
    scheduler = Scheduler(clock=lambda: now[0])
    for t in ("00:00:00", "05:00:00", "06:00:00"):
        now[0] = _at(t)
        assert scheduler.tick(store, [(head, "main")], lines.append) == []
    assert len(lines) == 1 and lines[0].startswith("schedules ignored: ")


# -- the node: jobs.notify and [schedule] in `git jobs node` ----------------------------------
SLOW_TEST = '[jobs.test]\nrun = "sleep 1.5; echo tested"\n'


@pytest.mark.slow
def test_the_node_runs_jobs_notify_when_a_verdict_it_works_on_changes(world: World) -> None:
    sha = publish(world, SLOW_TEST)
    path, _, key = world.node_repo("alice")
    inbox = world.tmp / "inbox.jsonl"
    git(path, "config", "jobs.notify", f"cat >> {inbox}")
    world.start_node(path, key)
    wait_for(
        lambda: inbox.exists() and bool(inbox.read_text().strip()),
        60,
        "the notify command",
        lambda: world.node_log(path),
    )
    change = json.loads(inbox.read_text().splitlines()[0])
    assert (change["commit"], change["previous"], change["outcome"]) == (sha, "pending", "succeeded")
    said = f"worker:notify notified {sha[:12]} pending -> succeeded"  # logged once the command exits
    wait_for(lambda: said in world.node_log(path), 30, "the notify line", lambda: world.node_log(path))


@pytest.mark.slow
def test_the_node_runs_a_scheduled_job_at_its_time(world: World) -> None:
    """The real node (in-process, so the test is its clock: ``Node.clock``) fires ``0 3 * * *``
    once the clock passes 03:00, not before, and once: the scheduled job runs again, only it."""
    sha = publish(world, SCHEDULED)
    path, _, key = world.node_repo("alice")
    signer = cob.Signer.from_file(key)
    now = [_at("02:59:00")]
    stream = io.StringIO()
    node = Node(str(path), signer, ["origin"], 0.2, stream=stream, clock=lambda: now[0])
    thread = threading.Thread(target=node.run, daemon=True)
    thread.start()

    def tests() -> int:
        found = jobs.Jobs.open(path).find_by_commit(sha)
        return sum(len(j.runs_of(signer.nid)) for j in found if j.name == "test")

    def passes(n: int, task: str = "worker:schedule") -> None:  # n more passes of a worker
        status = node.status.get(task)
        seen = status.runs if status else 0
        wait_for(
            lambda: (s := node.status.get(task)) is not None and s.runs >= seen + n,
            30,
            f"{n} passes of {task}",
            stream.getvalue,
        )

    try:
        wait_for(lambda: tests() >= 1, 60, "the first run", stream.getvalue)
        passes(2)
        now[0] = _at("02:59:59")
        passes(3)
        assert tests() == 1 and "worker:schedule" not in stream.getvalue()  # not before its time
        now[0] = _at("03:00:01")
        wait_for(lambda: tests() >= 2, 60, "the scheduled run", stream.getvalue)
        passes(3)
        passes(3, "worker:work")
    finally:
        node.stop.set()
        thread.join(timeout=60)
    log = stream.getvalue()
    due = "worker:schedule schedule nightly (0 3 * * *) due 2026-03-01T03:00:00Z: "
    assert log.count("worker:schedule") == 1 and f"{due}rerun test on {sha[:12]} (HEAD)" in log, log
    assert tests() == 2  # once, not once a look
    builds = [j for j in jobs.Jobs.open(path).find_by_commit(sha) if j.name == "build"]
    assert len(builds[0].runs_of(signer.nid)) == 1  # only the scheduled job ran again
    assert "stopped cleanly" in log and not thread.is_alive()
