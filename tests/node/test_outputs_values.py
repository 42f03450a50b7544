"""Structured outputs, dynamic fan-out and after-run checks (issue 32 items 3-5).

A job writes ``key=value`` lines to ``$GIT_JOBS_OUTPUT``; the node signs them in the run's
``finish``; the jobs that need it read them as ``{needs.JOB.outputs.NAME}`` in ``run``, ``if``
and ``matrix`` — from the ledger, so across nodes, and only from nodes the policy trusts. A
``check`` judges a run after it ended. Real repositories, real processes, the installed CLI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import cob
import jobs
from jobs.errors import DefinitionError
from jobs.node import parse_definitions
from jobs.node.values import ValuesError, parse
from tests.clirunner import gj, ok
from tests.conftest import git
from tests.node.test_node_requests import Hub, hub, policy  # noqa: F401 - the fixture
from tests.node.test_node_work import commit_defs, key, reasons, work_repo  # noqa: F401 - fixtures

COMMIT = "ab" * 20


def finishes(store: jobs.Jobs, commit: str, nid: str) -> dict[str, jobs.Run]:
    """Each job's latest run by ``nid`` at ``commit``."""
    out = {}
    for job in store.find_by_commit(commit):
        latest = job.runs_of(nid).latest()
        if latest is not None:
            out[job.name] = latest[1]
    return out


def log_of(path: Path, run: jobs.Run) -> str:
    return ok(path, "logs", run.log.rsplit("/", 1)[1]).out


# -- the file -----------------------------------------------------------------------------
def test_the_outputs_file_takes_lines_and_heredocs() -> None:
    data = b"version=1.2.3\nnotes<<EOF\nline one\nline=two\nEOF\n\nversion=1.2.4\nempty=\n"
    assert parse(data) == {"notes": "line one\nline=two", "version": "1.2.4", "empty": ""}


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"no equals sign\n", "not key=value"),
        (b"bad key=1\n", "output name"),
        (b"x<<EOF\nnever closed\n", "not closed"),
        (b"big=" + b"x" * 5000 + b"\n", "at most 4096"),
        (b"".join(b"k%d=%s\n" % (i, b"v" * 300) for i in range(30)), "at most 8192"),
        (b"".join(b"k%d=1\n" % i for i in range(33)), "more than 32"),
        (b"\xff\xfe=1\n", "not UTF-8"),
    ],
)
def test_outputs_past_a_bound_or_malformed_are_refused_with_the_reason(data: bytes, why: str) -> None:
    with pytest.raises(ValuesError, match=why):
        parse(data)


# -- definitions --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('[jobs.a]\nrun = "echo {needs.b.outputs.x}"\n[jobs.b]\nrun = "true"\n', "not in this job's needs"),
        ('[jobs.a]\nrun = "echo {needs.b.outputs.}"\nneeds = ["b"]\n[jobs.b]\nrun = "true"\n', "must be"),
        ('[jobs.a]\nrun = "true"\nif = "exit == 0"\n', "only after the run"),
        ('[jobs.a]\nrun = "true"\ncheck = "output(coverage) > 1"\n', "quoted string"),
        ('[jobs.a]\nrun = "true"\nmatrix = { t = "{needs.b.outputs.x}" }\n', "not in this job's needs"),
        (
            '[jobs.a]\nrun = "{matrix.u}"\nneeds = ["b"]\nmatrix = { t = "{needs.b.outputs.x}" }\n'
            '[jobs.b]\nrun = "true"\n',
            "unknown placeholder",
        ),
        (
            '[jobs.a]\nrun = "true"\nneeds = ["b"]\nmatrix = { t = "x86 arm" }\n[jobs.b]\nrun = "true"\n',
            "must be a list",
        ),
    ],
)
def test_placeholders_checks_and_dynamic_matrices_are_checked_when_the_file_is_read(
    text: str, why: str
) -> None:
    with pytest.raises(DefinitionError, match=why):
        parse_definitions(text, COMMIT)


# -- one node -------------------------------------------------------------------------------
PIPELINE = """
[jobs.plan]
run = '''
echo "version=1.4.2" >> "$GIT_JOBS_OUTPUT"
echo 'targets=["x86", "arm"]' >> "$GIT_JOBS_OUTPUT"
echo "quote=it's \\$(not run)" >> "$GIT_JOBS_OUTPUT"
'''
[jobs.build]
needs = ["plan"]
run = "echo building {matrix.target} {needs.plan.outputs.version} {needs.plan.outputs.quote}"
matrix = { target = "{needs.plan.outputs.targets}" }
[jobs.publish]
needs = ["build", "plan"]
run = "echo publishing"
if = '{needs.plan.outputs.version} == "1.4.2"'
[jobs.never]
needs = ["plan"]
run = "echo never"
if = '{needs.plan.outputs.version} >= 2'
"""


@pytest.mark.slow
def test_outputs_template_run_if_and_a_dynamic_matrix_on_one_node(
    work_repo: Path,
    key: tuple[cob.Signer, Path],
) -> None:
    sha = commit_defs(work_repo, PIPELINE)
    res = gj(work_repo, "work", "any", key=key[1])
    assert res.code == 1, res.out + res.err  # `never` is skipped: not a pass here, as ever
    store = jobs.Jobs.open(work_repo)
    assert reasons(store, sha, key[0].nid) == {
        "plan": ["succeeded"],
        "build": [],
        "build (target=x86)": ["succeeded"],
        "build (target=arm)": ["succeeded"],
        "publish": ["succeeded"],
        "never": ["skipped"],
    }
    runs = finishes(store, sha, key[0].nid)
    assert runs["plan"].values == {
        "version": "1.4.2",
        "targets": '["x86", "arm"]',
        "quote": "it's $(not run)",
    }
    # a value is data: substituted shell-quoted, never run
    assert "building arm 1.4.2 it's $(not run)\n" in log_of(work_repo, runs["build (target=arm)"])
    # the expansion is a signed release naming the jobs, on the definition's own job
    base = next(j for j in store.find_by_commit(sha) if j.name == "build")
    assert base.fanouts() == {key[0].nid: ["build (target=x86)", "build (target=arm)"]}
    assert base.runs_of(key[0].nid) == jobs.Runs()  # the definition's job itself never runs
    # status requires what the definition expanded into, and shows the values escaped
    status = ok(work_repo, "status", sha, "--json").json
    assert status["outcome"] == "succeeded"
    assert {"build (target=x86)", "build (target=arm)"} <= set(status["required"])
    progress = status["progress"][key[0].nid]
    assert "build" not in progress and progress["build (target=arm)"]["state"] == "succeeded"
    shown = ok(work_repo, "show", f"{sha}:plan", "--json").json
    assert shown["runs"][0]["values"]["version"] == "1.4.2"
    assert "output  quote=it's $(not run)" in ok(work_repo, "show", f"{sha}:plan").out
    assert ok(work_repo, "show", f"{sha}:build", "--json").json["fanout"] == base.fanouts()


CHECKED = """
[jobs.cover]
run = 'echo "coverage=75.5" >> "$GIT_JOBS_OUTPUT"'
check = 'exit == 0 && output("coverage") >= 80'
[jobs.flaky-ok]
run = 'exit 3'
check = 'exit == 0 || exit == 3'
[jobs.no-exit]
run = 'echo "coverage=95" >> "$GIT_JOBS_OUTPUT"; exit 1'
check = 'output("coverage") >= 80'
[jobs.big]
run = 'head -c 5000 /dev/zero | tr "\\\\0" x | sed "s/^/blob=/" >> "$GIT_JOBS_OUTPUT"'
[jobs.linked]
run = 'ln -s /etc/hostname "$GIT_JOBS_OUTPUT"'
[jobs.hostile]
run = 'printf "title=\\\\033]0;pwned\\\\007\\\\n" >> "$GIT_JOBS_OUTPUT"'
"""


@pytest.mark.slow
def test_a_check_judges_the_run_and_bounds_refuse_outputs_with_a_clear_reason(
    work_repo: Path,
    key: tuple[cob.Signer, Path],
) -> None:
    sha = commit_defs(work_repo, CHECKED)
    res = gj(work_repo, "work", "any", key=key[1])
    assert res.code == 1
    store = jobs.Jobs.open(work_repo)
    runs = finishes(store, sha, key[0].nid)
    # exit 0, and still failed: the check is false; what it read is signed in the finish
    assert runs["cover"].reason is jobs.Reason.FAILED and runs["cover"].exit_status == 0
    assert runs["cover"].values == {"coverage": "75.5"}
    assert 'check is false: exit == 0 && output("coverage") >= 80' in log_of(work_repo, runs["cover"])
    assert "check is false" in res.out
    # a check that reads `exit` replaces the exit rule; one that does not is added to it
    assert runs["flaky-ok"].reason is jobs.Reason.SUCCEEDED and runs["flaky-ok"].exit_status == 3
    assert runs["no-exit"].reason is jobs.Reason.FAILED
    # past a bound, or not a regular file: nothing kept, the run fails with the reason
    assert runs["big"].reason is jobs.Reason.FAILED and runs["big"].values is None
    assert "outputs refused: output blob is 5000 bytes (at most 4096)" in log_of(work_repo, runs["big"])
    assert runs["linked"].reason is jobs.Reason.FAILED and runs["linked"].values is None
    assert "is not a regular file" in log_of(work_repo, runs["linked"])
    # a value is shown escaped, never as terminal control
    assert runs["hostile"].values == {"title": "\x1b]0;pwned\x07"}
    shown = ok(work_repo, "show", f"{sha}:hostile").out
    assert "\x1b" not in shown and "output  title=\\x1b]0;pwned\\x07" in shown


def test_a_finish_with_values_past_a_bound_is_refused_by_the_writer_and_rejected_by_readers(
    work_repo: Path,
    key: tuple[cob.Signer, Path],
) -> None:
    sha = commit_defs(work_repo, "[jobs.a]\nrun = 'true'\n")
    store = jobs.Jobs.open(work_repo, key[0])
    job = store.create(sha, "a")
    run_id = job.run("https://ci.example/1")
    with pytest.raises(jobs.JobsError, match="at most 4096"):
        job.finish(run_id, "succeeded", values={"x": "y" * 5000})
    with pytest.raises(jobs.JobsError, match="output name"):
        job.finish(run_id, "succeeded", values={"bad key": "1"})
    job.finish(run_id, "succeeded", values={"ok": "1"})
    assert finishes(jobs.Jobs.open(work_repo), sha, key[0].nid)["a"].values == {"ok": "1"}


# -- across nodes ---------------------------------------------------------------------------
ACROSS = """
[jobs.plan]
runs_on = ["planner"]
run = '''
echo "version=2.0.1" >> "$GIT_JOBS_OUTPUT"
echo "targets=x86, arm riscv" >> "$GIT_JOBS_OUTPUT"
'''
[jobs.build]
needs = ["plan"]
run = "echo built {matrix.target} at {needs.plan.outputs.version}"
matrix = { target = "{needs.plan.outputs.targets}" }
"""
CELLS = ["build (target=x86)", "build (target=arm)", "build (target=riscv)"]


def forge(path: Path, signer: cob.Signer, key: Path, sha: str) -> None:
    """A node signs a pass of ``plan`` with values it chose, and pushes it."""
    store = jobs.Jobs.open(path, signer)
    job = store.create(sha, "plan")
    run_id = job.run("https://evil.example/1")
    job.finish(run_id, "succeeded", values={"version": "6.6.6", "targets": "evil"})
    ok(path, "sync", "origin", key=key)


@pytest.mark.slow
def test_outputs_flow_from_plan_on_node_a_to_a_dynamic_matrix_built_on_node_b(hub: Hub) -> None:
    a_path, a, a_key = hub.node("a")
    b_path, b, b_key = hub.node("b")
    c_path, c, c_key = hub.node("c")  # not trusted
    sha = commit_defs(hub.maintainer, policy(a.nid, b.nid) + ACROSS)
    hub.push()
    for path in (a_path, b_path, c_path):
        git(path, "pull", "-q", "origin", "main")
        git(path, "config", "jobs.assignment", "all")
    # node c (untrusted) signs a pass of plan with values of its own: they are never used
    forge(c_path, c, c_key, sha)
    # node b cannot run plan (no planner label): the build waits, whatever c says
    ok(b_path, "sync", "origin", key=b_key)
    waiting = gj(b_path, "work", "any", "--dry-run", "--json", key=b_key).json
    assert {j["name"]: j["action"] for j in waiting["jobs"]} == {"plan": "elsewhere", "build": "elsewhere"}
    # node a (trusted, a planner) runs plan only: its build cells are not its to run
    res = gj(a_path, "work", "any", "--label", "planner", key=a_key)
    assert finishes(jobs.Jobs.open(a_path), sha, a.nid)["plan"].values == {
        "version": "2.0.1",
        "targets": "x86, arm riscv",
    }
    ok(a_path, "sync", "origin", key=a_key)
    forge(c_path, c, c_key, sha)  # newer than a's pass, and still not used
    # node b reads a's values from the ledger, expands the matrix, builds each cell
    ok(b_path, "sync", "origin", key=b_key)
    res = gj(b_path, "work", "any", key=b_key)
    assert res.code == 0, res.out + res.err
    store = jobs.Jobs.open(b_path)
    runs = finishes(store, sha, b.nid)
    assert sorted(runs) == sorted(CELLS)
    assert all(r.succeeded for r in runs.values())
    assert "built riscv at 2.0.1\n" in log_of(b_path, runs["build (target=riscv)"])
    base = next(j for j in store.find_by_commit(sha) if j.name == "build")
    assert base.fanouts()[b.nid] == CELLS
    # every reader sees the expanded jobs: the maintainer's clone requires and counts them
    ok(b_path, "sync", "origin", key=b_key)
    ok(hub.maintainer, "sync", "origin", key=hub.maintainer_key)
    status = ok(hub.maintainer, "status", sha, "--json").json
    assert status["outcome"] == "succeeded"
    assert sorted(status["required"]) == sorted(["plan", *CELLS])


def test_a_dynamic_matrix_its_values_cannot_expand_fails_with_the_reason(
    work_repo: Path,
    key: tuple[cob.Signer, Path],
) -> None:
    text = (
        "[jobs.plan]\nrun = \"echo 'targets=x86 $(rm)' >> $GIT_JOBS_OUTPUT\"\n"
        '[jobs.build]\nneeds = ["plan"]\nrun = "echo {matrix.target}"\n'
        'matrix = { target = "{needs.plan.outputs.targets}" }\n'
    )
    sha = commit_defs(work_repo, text)
    res = gj(work_repo, "work", "any", key=key[1])
    assert res.code == 1
    store = jobs.Jobs.open(work_repo, key[0])
    runs = finishes(store, sha, key[0].nid)
    assert runs["build"].reason is jobs.Reason.FAILED and runs["build"].exit_status is None
    assert "matrix value '$(rm)' must be 1-40 of" in log_of(work_repo, runs["build"])
    # a fanout names only the definition's own matrix jobs: the writer refuses anything else
    base = next(j for j in store.find_by_commit(sha) if j.name == "build")
    with pytest.raises(jobs.JobsError, match="not one of its matrix jobs"):
        store.get_mut(base.id).fanout(["plan"])  # type: ignore[union-attr]
