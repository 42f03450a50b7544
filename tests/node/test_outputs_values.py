"""Structured outputs, dynamic fan-out and after-run checks (issue 32 items 3-5).

A job writes ``key=value`` lines to ``$GIT_JOBS_OUTPUT``; the node signs them in the run's
``finish``; the jobs that need it read them as ``{needs.JOB.outputs.NAME}`` in ``run``, ``if``
and ``matrix`` — from the ledger, so across nodes, and only from nodes the policy trusts. A
``check`` judges a run after it ended. Real repositories, real processes, the installed CLI.
"""

from __future__ import annotations

import json
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
        ('[jobs.a]\nrun = "{matrix.u}"\nneeds = ["b"]\nmatrix = { t = "{needs.b.outputs.x}" }\n[jobs.b]\nrun = "true"\n', "unknown placeholder"),
        ('[jobs.a]\nrun = "true"\nneeds = ["b"]\nmatrix = { t = "x86 arm" }\n[jobs.b]\nrun = "true"\n', "must be a list"),
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


def test_outputs_template_run_if_and_a_dynamic_matrix_on_one_node(
    work_repo: Path,
    key: tuple[cob.Signer, Path],  # noqa: F811
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
    assert runs["plan"].values == {"version": "1.4.2", "targets": '["x86", "arm"]', "quote": "it's $(not run)"}
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
    shown = ok(work_repo, "show", f"{sha}:plan", "--json").json
    assert shown["runs"][0]["values"]["version"] == "1.4.2"
    assert "output  quote=it's $(not run)" in ok(work_repo, "show", f"{sha}:plan").out
    assert ok(work_repo, "show", f"{sha}:build", "--json").json["fanout"] == base.fanouts()
