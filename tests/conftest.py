"""Shared fixtures: isolated HOME/git config, temporary repositories, signers.

Every test runs with its own HOME (so `~/.config/git-jobs/key` and `~/.gitconfig` are never the
developer's) and with system git config ignored.
"""

# ruff: noqa: I001  (tests.sourceless first: the package under test is the installed one)
from __future__ import annotations

import tests.sourceless  # noqa: F401  (first: the package under test is the installed one)

import contextlib
import functools
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pygit2
import pytest

import cob
from jobs.node.isolation import Isolation, IsolationError


@functools.cache
def sandbox_problem() -> str | None:
    """Why bubblewrap, though installed, cannot make a job sandbox here (None: it can, or it is
    not installed, and then the node's default is no sandbox anyway)."""
    found = shutil.which("bwrap")
    if found is None:
        return None
    try:
        Isolation(mode="bwrap", bwrap=found).check()
    except IsolationError as e:
        return str(e)
    return None


def no_sandbox() -> bool:
    """No usable job sandbox here (bubblewrap missing or unusable): jobs run with isolation none."""
    return shutil.which("bwrap") is None or sandbox_problem() is not None


def pytest_report_header() -> str:
    if shutil.which("bwrap") is None:
        return "job sandbox: bubblewrap not installed (bwrap tests skip; jobs run with isolation none)"
    problem = sandbox_problem()
    return f"job sandbox: {'bwrap unusable: ' + problem if problem else 'bwrap'}"


# The longest stories start first: under `pytest -n 2` the other worker runs the rest of the
# suite meanwhile, instead of one worker finishing a long story alone at the end.
LONGEST_FIRST = ("test_maintainers_day.py", "test_maintainers_day_evidence.py")

# Repositories the tests make are writable by their user alone, whatever the caller's umask
# (a hub others can write is read by git, not in place: cob.sync.localhub; tests of that
# say so themselves).
os.umask(0o022)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    first = [i for i in items if i.path.parent == here and i.path.name in LONGEST_FIRST]
    if first:
        items[:] = first + [i for i in items if i not in first]


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    return _isolate(tmp_path_factory.mktemp("home"), monkeypatch)


@contextlib.contextmanager
def isolated_env(home: Path) -> Iterator[Path]:
    """What `isolated_home` sets up, for a fixture wider than one test (a world built once per
    module): the environment is restored at the end of the block."""
    home.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        yield _isolate(home, mp)


def _isolate(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test User\n\temail = test@example.invalid\n"
        "[init]\n\tdefaultBranch = main\n"
        "[protocol]\n\tallow = always\n" + ("[jobs]\n\tisolation = none\n" if no_sandbox() else "")
        # where bubblewrap is missing or cannot sandbox, jobs run without one — a node refuses
        # to unless told so (the bwrap-specific tests set jobs.isolation themselves and skip)
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    monkeypatch.delenv("GIT_JOBS_KEY", raising=False)
    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    # libgit2 reads HOME once per process: point its config search paths at this HOME too,
    # or pygit2 would read the developer's ~/.gitconfig while stock git reads ours.
    levels = pygit2.enums.ConfigLevel
    pygit2.settings.search_path[levels.GLOBAL] = str(home)
    pygit2.settings.search_path[levels.XDG] = str(home / ".config" / "git")
    pygit2.settings.search_path[levels.SYSTEM] = str(home / "no-system-config")
    return home


def git(cwd: Path | str, *args: str, check: bool = True) -> str:
    """Run stock git; return stdout."""
    out = subprocess.run(["git", *args], cwd=cwd, check=check, capture_output=True, text=True, timeout=120)
    return out.stdout


def init_repo(path: Path, commits: int = 1, bare: bool = False) -> pygit2.Repository:
    """A repository with ``commits`` commits on main (files differ, so shas differ)."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", *(["--bare"] if bare else []))
    if not bare:
        for i in range(commits):
            (path / "file.txt").write_text(f"content {i} of {path.name}\n")
            git(path, "add", "file.txt")
            git(path, "commit", "-q", "-m", f"commit {i}")
    return pygit2.Repository(str(path))


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., pygit2.Repository]:
    counter = iter(range(1000))

    def make(name: str | None = None, commits: int = 1, bare: bool = False) -> pygit2.Repository:
        return init_repo(tmp_path / (name or f"repo{next(counter)}"), commits, bare)

    return make


@pytest.fixture
def repo(make_repo: Callable[..., pygit2.Repository]) -> pygit2.Repository:
    return make_repo("repo", commits=3)


@pytest.fixture
def signer() -> cob.Signer:
    return cob.Signer.generate()


@pytest.fixture
def signers() -> Iterator[cob.Signer]:
    """An endless supply of fresh signers: ``alice, bob = next(signers), next(signers)``."""

    def gen() -> Iterator[cob.Signer]:
        while True:
            yield cob.Signer.generate()

    return gen()


def head(repo: pygit2.Repository) -> str:
    return str(repo.head.target)


def commits_of(repo: pygit2.Repository) -> list[str]:
    """All commits on HEAD, newest first."""
    return [str(c.id) for c in repo.walk(repo.head.target)]
