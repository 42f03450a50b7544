"""Runners: a definition names one (``runner = "python"``), the node's config decides which exist.

A third-party runner comes from a real distribution's entry point (a ``.dist-info`` with
``entry_points.txt`` on the node process's ``PYTHONPATH``, as ``pip install`` would leave it),
enabled with ``git config jobs.runners``. Its module records every import in a marker file, so a
test can show that a commit naming it (or any module) never makes the node load code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pygit2
import pytest

import cob
import jobs
from jobs.node import parse_definitions
from jobs.node.logs import log_path
from jobs.node.runners import RunContext, Runner, Runners, RunResult
from tests.conftest import git, no_sandbox
from tests.node.test_node_work import cli, commit_defs, key, reasons, work_repo  # noqa: F401

PLUGIN = '''
import os
from pathlib import Path

from jobs.model import Reason
from jobs.node.runners import RunResult

with open(os.environ["GJTEST_IMPORTED"], "a") as fh:  # proves when the node loads this module
    fh.write("imported\\n")


class EchoRunner:
    """`run` is a greeting; `with.suffix` is appended; it runs in the job's sandbox."""

    def valid_config(self, run, data):
        if set(data) - {"suffix"}:
            return "echo takes only `with.suffix`"
        return None

    def run(self, ctx):
        ctx.log.write(b"echo runner here\\n")
        result = ctx.process(
            ["sh", "-c", 'printf "%s%s\\\\n" "$GREETING" "$SUFFIX" | tee echoed.txt'],
            env={"GREETING": ctx.run, "SUFFIX": ctx.data.get("suffix", "")},
        )
        return RunResult(result.reason, result.detail, result.exit_status, {"plugin": "gjtest"})
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny installed distribution with a `git_jobs.runners` entry point named `echo`; the
    marker file it writes on import is returned."""
    site = tmp_path / "site"
    (site / "gjtest_runner").mkdir(parents=True)
    (site / "gjtest_runner" / "__init__.py").write_text(PLUGIN)
    info = site / "gjtest_runner-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gjtest-runner\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[git_jobs.runners]\necho = gjtest_runner:EchoRunner\n")
    marker = tmp_path / "imported.txt"
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("GJTEST_IMPORTED", str(marker))
    return marker


ECHO = """
[jobs.hello]
runner = "echo"
run = "hello from a plugin"
with = { suffix = "!" }
"""


def _log_of(path: Path, store: jobs.Jobs, sha: str, nid: str, name: str) -> str:
    job = next(j for j in store.find_by_commit(sha) if j.name == name)
    run_id = list(job.runs_of(nid))[-1]
    return log_path(pygit2.Repository(str(path)), run_id).read_text()


def test_a_runner_from_an_entry_point_enabled_in_node_config_runs_a_job(
    work_repo: Path, key: tuple[cob.Signer, Path], plugin: Path
) -> None:
    sha = commit_defs(work_repo, ECHO)
    git(work_repo, "config", "jobs.runners", "sh echo")
    res = cli(work_repo, "work", "any", key=key[1])
    assert res.returncode == 0, res.stdout + res.stderr
    store = jobs.Jobs.open(work_repo)
    assert reasons(store, sha, key[0].nid) == {"hello": ["succeeded"]}
    log = _log_of(work_repo, store, sha, key[0].nid, "hello")
    assert "echo runner here" in log and "hello from a plugin!" in log
    assert "git-jobs: runner echo: plugin=gjtest" in log
    assert plugin.read_text() == "imported\n"


def test_the_same_definition_on_a_node_without_the_runner_enabled_is_one_clear_error(
    work_repo: Path, key: tuple[cob.Signer, Path], plugin: Path
) -> None:
    sha = commit_defs(work_repo, ECHO)
    for config, says in ((None, "is not enabled on this node"), ("sh python", "is not enabled on this node")):
        if config:
            git(work_repo, "config", "jobs.runners", config)
        res = cli(work_repo, "work", "any", key=key[1])
        assert res.returncode == 2, res.stdout + res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
        assert sha[:12] in lines[0] and "jobs.hello.runner" in lines[0] and says in lines[0]
        assert "'echo'" in lines[0] and "jobs.runners" in lines[0]
    assert not plugin.exists()  # installed but not enabled: never imported
    assert reasons(jobs.Jobs.open(work_repo), sha, key[0].nid) == {}  # nothing ran


def test_a_runner_the_node_enables_but_lacks_is_a_node_setting_error(
    work_repo: Path, key: tuple[cob.Signer, Path]
) -> None:
    commit_defs(work_repo, '[jobs.a]\nrun = "true"\n')
    git(work_repo, "config", "jobs.runners", "sh nosuchrunner")
    res = cli(work_repo, "work", "any", key=key[1])
    assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert (
        "jobs.runners" in res.stderr and "'nosuchrunner'" in res.stderr and "git_jobs.runners" in res.stderr
    )


@pytest.mark.parametrize("named", ["os", "gjtest_runner", "os.path:join", "gjtest_runner:EchoRunner", "Echo"])
@pytest.mark.slow
def test_a_commit_cannot_load_code_by_naming_a_module(
    work_repo: Path, key: tuple[cob.Signer, Path], plugin: Path, named: str
) -> None:
    sha = commit_defs(work_repo, f'[jobs.evil]\nrunner = "{named}"\nrun = "x"\n')
    git(work_repo, "config", "jobs.runners", "sh python")
    res = cli(work_repo, "work", "any", key=key[1])
    assert res.returncode == 2, res.stdout + res.stderr
    line = res.stderr.strip()
    assert "\n" not in line and "Traceback" not in line and "jobs.evil.runner" in line and sha[:12] in line
    assert not plugin.exists()  # the entry point's module was never imported
    assert reasons(jobs.Jobs.open(work_repo), sha, key[0].nid) == {}


def test_a_name_that_is_no_runner_name_is_an_error_wherever_definitions_are_read() -> None:
    for text, says in (
        ('[jobs.a]\nrunner = "os.path:join"\nrun = "x"\n', "jobs.a.runner: must be a runner name"),
        ('[jobs.a]\nrunner = "python"\nrun = "not a target"\n', "jobs.a.runner: runner python: run"),
        ('[jobs.a]\nrunner = "python"\nrun = "../up.py"\n', "jobs.a.runner: runner python: run"),
        ('[jobs.a]\nrunner = "python"\nrun = "m:f"\nwith = { env = "x" }\n', "unknown `with` key 'env'"),
        ('[jobs.a]\nrun = "true"\nwith = { x = 1 }\n', "jobs.a.runner: runner sh takes no `with`"),
        ('[jobs.a]\nrunner = "echo"\nrun = "x"\nwith = 3\n', "jobs.a.with: must be a table"),
    ):
        with pytest.raises(jobs.DefinitionError) as err:
            parse_definitions(text, "ab" * 20)
        assert says in str(err.value), str(err.value)
    defs = parse_definitions('[jobs.a]\nrunner = "python"\nrun = "ci.checks:main"\n', "ab" * 20)
    assert defs.jobs[0].runner == "python" and defs.jobs[0].data == {}


CHECKS = """
import os, sys

def main():
    print("python runner in", os.path.basename(os.getcwd()), "args", sys.argv[1:])
    print("job", os.environ["GIT_JOBS_JOB"])

def fail():
    print("failing on purpose")
    return 3

def peek():
    for path in sys.argv[1:]:
        print(path, "visible" if os.path.exists(path) else "hidden")
"""

SCRIPT = 'import sys\nprint("script says", " ".join(sys.argv[1:]))\n'

PYTHON_JOBS = """
[jobs.function]
runner = "python"
run = "ci.checks:main"
with = { args = ["--fast", "x y"] }
[jobs.script]
runner = "python"
run = "ci/script.py"
with = { args = ["hello"] }
[jobs.failing]
runner = "python"
run = "ci.checks:fail"
[jobs.nodeside]
runner = "python"
run = "jobs.cli:main"
[jobs.stdlib]
runner = "python"
run = "json:dumps"
"""


def _commit_python(path: Path, defs: str) -> str:
    (path / "ci").mkdir()
    (path / "ci" / "__init__.py").write_text("")
    (path / "ci" / "checks.py").write_text(CHECKS)
    (path / "ci" / "script.py").write_text(SCRIPT)
    git(path, "add", "ci")
    return commit_defs(path, defs)


def test_the_python_runner_runs_a_function_or_a_script_from_the_checkout_only(
    work_repo: Path, key: tuple[cob.Signer, Path]
) -> None:
    sha = _commit_python(work_repo, PYTHON_JOBS)
    res = cli(work_repo, "work", "any", key=key[1])  # python is on by default
    assert res.returncode == 1, res.stdout + res.stderr  # some jobs fail, as they should
    store, nid = jobs.Jobs.open(work_repo), key[0].nid
    assert reasons(store, sha, nid) == {
        "function": ["succeeded"],
        "script": ["succeeded"],
        "failing": ["failed"],
        "nodeside": ["failed"],
        "stdlib": ["failed"],
    }
    function = _log_of(work_repo, store, sha, nid, "function")
    assert "python runner in src args ['--fast', 'x y']" in function and "job function" in function
    assert "script says hello" in _log_of(work_repo, store, sha, nid, "script")
    failing = _log_of(work_repo, store, sha, nid, "failing")
    assert "failing on purpose" in failing and "exit status 3" in failing
    failed = next(j for j in store.find_by_commit(sha) if j.name == "failing").runs_of(nid)
    assert [r.exit_status for r in failed.values()] == [3]
    # the node's own package is importable by the node's interpreter, but not from a commit
    assert "module 'jobs' is not in the checkout" in _log_of(work_repo, store, sha, nid, "nodeside")
    assert "module 'json' is not in the checkout" in _log_of(work_repo, store, sha, nid, "stdlib")


@pytest.mark.skipif(no_sandbox(), reason="bubblewrap cannot make a sandbox here")
def test_the_python_runner_runs_inside_the_same_sandbox_as_sh(
    work_repo: Path, key: tuple[cob.Signer, Path]
) -> None:
    git(work_repo, "config", "jobs.isolation", "bwrap")
    secret = [str(work_repo / ".git"), str(key[1]), str(Path.home())]
    args = json.dumps(secret)
    defs = f'[jobs.peek]\nrunner = "python"\nrun = "ci.checks:peek"\nwith = {{ args = {args} }}\n'
    sha = _commit_python(work_repo, defs)
    res = cli(work_repo, "work", "any", key=key[1])
    assert res.returncode == 0, res.stdout + res.stderr
    log = _log_of(work_repo, jobs.Jobs.open(work_repo), sha, key[0].nid, "peek")
    for path in secret:
        assert f"{path} hidden" in log, log


class _Upper:
    """A runner given from Python by the node's operator (no entry point needed)."""

    def valid_config(self, run: str, data: object) -> str | None:
        return None

    def run(self, ctx: RunContext) -> RunResult:
        return ctx.process(["sh", "-c", f"echo {ctx.run.upper()}"])


def test_runners_from_python_and_the_workshop_api(work_repo: Path, key: tuple[cob.Signer, Path]) -> None:
    assert isinstance(_Upper(), Runner)
    sha = commit_defs(work_repo, '[jobs.a]\nrunner = "upper"\nrun = "quiet"\n')
    store = jobs.Jobs.open(work_repo, key[0])
    runners = Runners.load(names=["sh"], upper=_Upper())
    assert runners.names == ["sh", "upper"]
    report = jobs.node.Workshop(store, runners=runners).work_any(sha)
    assert [o.reason.value for o in report.outcomes] == ["succeeded"]
    assert "QUIET" in _log_of(work_repo, store, sha, key[0].nid, "a")
    with pytest.raises(jobs.DefinitionError, match="unknown runner 'upper'"):
        jobs.node.Workshop(store, runners=Runners.load(names=["sh"])).work_any(sha)
