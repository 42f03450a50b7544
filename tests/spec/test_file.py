"""One reader of ``.git-jobs.toml``: the definitions (from the commit under test), the policy and
the schedules (from the policy ref) read the file with the same bounds and the same one-line
problems, and a file is parsed once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pygit2
import pytest

import jobs
from jobs.errors import PolicyError
from jobs.node.schedule import ScheduleError, load_schedules
from jobs.policy import load_repository_policy, tables_at
from jobs.spec.definitions import load_definitions
from jobs.spec.file import MAX_BYTES, MAX_NESTING, read_tables
from tests.conftest import git, init_repo

NID = "z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
FILE = f"""
[jobs.build]
run = "make"
[policy]
nodes = {{ "{NID}" = "alice" }}
[schedule.nightly]
cron = "0 3 * * *"
"""


def _repo(tmp_path: Path, data: bytes) -> tuple[pygit2.Repository, str]:
    """A repository whose main branch (the policy ref) has ``.git-jobs.toml`` = ``data``."""
    path = tmp_path / "repo"
    init_repo(path)
    (path / ".git-jobs.toml").write_bytes(data)
    git(path, "add", ".git-jobs.toml")
    git(path, "commit", "-q", "-m", "definitions")
    return pygit2.Repository(str(path)), git(path, "rev-parse", "HEAD").strip()


def test_the_definitions_policy_and_schedules_take_their_tables_from_one_parse(tmp_path: Path) -> None:
    repo, sha = _repo(tmp_path, FILE.encode())
    defs = load_definitions(repo, sha)
    assert defs is not None and defs.names == ["build"]
    policy = load_repository_policy(repo)
    assert policy.name_of(NID) == "alice" and policy.source is not None and policy.source.commit == sha
    schedules, _ = load_schedules(repo)
    assert [s.name for s in schedules] == ["nightly"]
    commit = repo.get(sha)
    assert isinstance(commit, pygit2.Commit)
    first = read_tables(repo, commit, "a", ValueError)
    assert first is not None and read_tables(repo, commit, "b", ValueError) is first  # parsed once
    assert tables_at(repo, policy.source) is first


DEEP = b"[" * (MAX_NESTING + 1) + b"]" * (MAX_NESTING + 1)
BAD: list[tuple[bytes, str]] = [
    (b"[jobs.a]\nrun = 'x'\nx = " + DEEP + b"\n", "nested deeper"),
    (b"# " + b"x" * MAX_BYTES + b"\n", f"(limit {MAX_BYTES})"),
    (b"[jobs.a]\nrun = '\xff'\n", "is not UTF-8 text"),
    (b"[jobs.a\n", "invalid TOML"),
]


@pytest.mark.parametrize(("data", "problem"), BAD, ids=["nested", "big", "utf8", "toml"])
def test_every_reader_refuses_a_bad_file_with_the_same_one_line_problem(
    tmp_path: Path, data: bytes, problem: str
) -> None:
    repo, sha = _repo(tmp_path, data)
    readers: list[tuple[type[Exception], Callable[[], object]]] = [
        (jobs.DefinitionError, lambda: load_definitions(repo, sha)),
        (PolicyError, lambda: load_repository_policy(repo)),
        (ScheduleError, lambda: load_schedules(repo)),
    ]
    for error, read in readers:
        with pytest.raises(error) as err:
            read()
        message = str(err.value)
        assert message.startswith(".git-jobs.toml at ") and sha[:12] in message, message
        assert problem in message and "\n" not in message, message
