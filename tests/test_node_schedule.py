"""Definitions that fan out and depend on outcomes: matrix jobs and needs with states.

Real repositories and the real CLI as a subprocess: what a maintainer writes in
``.git-jobs.toml`` and what every node then records.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cob
import jobs
from jobs.node import parse_definitions

from .conftest import git
from .test_node_work import cli, commit_defs, key, new_key, reasons, work_repo  # noqa: F401

MATRIX = """
[jobs.build]
run = "echo built"
[jobs.test]
run = "echo python={matrix.python} os={matrix.os}"
needs = ["build"]
[jobs.test.matrix]
python = ["3.11", "3.12"]
os = ["linux", "mac"]
exclude = [{ os = "mac" }]
include = [{ python = "3.13", os = "linux" }]
[jobs.report]
run = "echo report"
needs = ["test"]
"""

NINE = ",".join(f'"{i}"' for i in range(9))
NAMES = [
    "build",
    "test (python=3.11, os=linux)",
    "test (python=3.12, os=linux)",
    "test (python=3.13, os=linux)",
    "report",
]


def test_a_matrix_gives_the_same_named_jobs_with_the_same_ids_on_two_nodes(
    work_repo: Path, tmp_path: Path, key: tuple[cob.Signer, Path]  # noqa: F811
) -> None:
    sha = commit_defs(work_repo, MATRIX)
    _, other_key = new_key(tmp_path / "other.key")
    one = json.loads(cli(work_repo, "release", "--json", key=key[1], check=True).stdout)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(work_repo), str(clone))
    two = json.loads(cli(clone, "release", sha, "--json", key=other_key, check=True).stdout)
    assert sorted(j["name"] for j in one["jobs"]) == sorted(NAMES)
    assert {j["name"]: j["id"] for j in one["jobs"]} == {j["name"]: j["id"] for j in two["jobs"]}

    res = cli(work_repo, "work", "any", key=key[1])
    assert res.returncode == 0, res.stdout + res.stderr
    assert reasons(jobs.Jobs.open(work_repo), sha, key[0].nid) == {n: ["succeeded"] for n in NAMES}
    log = cli(work_repo, "logs", "HEAD:test (python=3.12, os=linux)", check=True).stdout
    assert "python=3.12 os=linux" in log
    # `report` needs the whole matrix: its plan lists every combination.
    plan = json.loads(cli(work_repo, "work", "any", "--dry-run", "--json", key=key[1], check=True).stdout)
    report = next(p for p in plan["jobs"] if p["name"] == "report")
    assert report["needs"] == NAMES[1:4]


@pytest.mark.parametrize(
    ("matrix", "problem"),
    [
        ('{ python = ["3.11", "a b"] }', "matrix value"),
        ('{ python = ["3.11", "x\\u001b[31m"] }', "matrix value"),
        ('{ "Py Thon" = ["3"] }', "axis name"),
        (f"{{ a = [{NINE}], b = [{NINE}] }}", "64"),
        ('{ python = ["3"], exclude = [{ python = "3" }] }', "no combination"),
        ('{ python = ["3"], exclude = [{ os = "x" }] }', "not an axis"),
        ('"3.12"', "must be a table"),
    ],
)
def test_a_bad_or_oversized_matrix_is_a_definition_error(matrix: str, problem: str) -> None:
    text = f"[jobs.t]\nrun = 'x {{matrix.python}}'\nmatrix = {matrix}\n"
    with pytest.raises(jobs.DefinitionError) as err:
        parse_definitions(text, "ab" * 20)
    assert problem in str(err.value) and "jobs.t" in str(err.value)
    assert "\x1b" not in str(err.value)


def test_matrix_expansion_is_bounded_across_the_file() -> None:
    axis = ",".join(f'"{i}"' for i in range(8))
    big = f"{{ a = [{axis}], b = [{axis}] }}"
    text = "".join(f"[jobs.t{i}]\nrun = 'x'\nmatrix = {big}\n" for i in range(4))
    with pytest.raises(jobs.DefinitionError, match="after matrix expansion"):
        parse_definitions(text, "ab" * 20)


def test_a_matrix_placeholder_must_name_an_axis_and_shell_braces_are_left_alone() -> None:
    text = "[jobs.t]\nrun = 'echo ${HOME} {a,b} {matrix.v}'\nmatrix = { v = [1] }\n"
    defs = parse_definitions(text, "ab" * 20)
    assert [j.run for j in defs] == ["echo ${HOME} {a,b} 1"]
    with pytest.raises(jobs.DefinitionError, match=r"jobs.t.run: unknown placeholder \{matrix.w\}"):
        parse_definitions("[jobs.t]\nrun = 'echo {matrix.w}'\nmatrix = { v = [1] }\n", "ab" * 20)


NOTIFY = """
[jobs.test]
run = "echo testing; exit 3"
[jobs.notify]
run = "echo notifying"
needs = { test = "any" }
[jobs.cleanup]
run = "echo cleaning"
needs = { test = "failed" }
[jobs.deploy]
run = "echo deploying"
needs = ["test"]
[jobs.celebrate]
run = "echo yay"
needs = { test = "succeeded" }
"""


def test_needs_with_states_run_notify_and_cleanup_after_a_failure(
    work_repo: Path, key: tuple[cob.Signer, Path]  # noqa: F811
) -> None:
    sha = commit_defs(work_repo, NOTIFY)
    res = cli(work_repo, "work", "any", key=key[1])
    assert res.returncode == 1, res.stdout + res.stderr
    assert reasons(jobs.Jobs.open(work_repo), sha, key[0].nid) == {
        "test": ["failed"],
        "notify": ["succeeded"],
        "cleanup": ["succeeded"],
        "deploy": ["skipped"],
        "celebrate": ["skipped"],
    }
    assert "notifying" in cli(work_repo, "logs", "HEAD:notify", check=True).stdout


def test_a_need_that_must_fail_skips_its_user_after_a_success(
    work_repo: Path, key: tuple[cob.Signer, Path]  # noqa: F811
) -> None:
    sha = commit_defs(work_repo, NOTIFY.replace("exit 3", "true"))
    res = cli(work_repo, "work", "any", key=key[1])
    assert res.returncode == 1, res.stdout + res.stderr
    assert reasons(jobs.Jobs.open(work_repo), sha, key[0].nid) == {
        "test": ["succeeded"],
        "notify": ["succeeded"],
        "cleanup": ["skipped"],
        "deploy": ["succeeded"],
        "celebrate": ["succeeded"],
    }
    assert "need 'test' cannot end failed" in cli(work_repo, "logs", "HEAD:cleanup", check=True).stdout


def test_a_need_state_must_be_known() -> None:
    with pytest.raises(jobs.DefinitionError, match=r"jobs.b.needs.a: must be one of succeeded, failed, any"):
        parse_definitions("[jobs.a]\nrun='x'\n[jobs.b]\nrun='x'\nneeds = { a = 'maybe' }\n", "ab" * 20)
