"""What a user installs: the wheel's contents, the script's start-up, `--version`, `--help`.

The suite runs against the wheel installed in a fresh virtual environment (`.ci/run`); these
tests check that it really is the wheel, that nothing of the sources is missing from it, and
that commands import only what they use (start-up is paid in every prompt and hook).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cob
import jobs
from tests.clirunner import GIT_JOBS, env_with, ok
from tests.sourceless import SOURCE

DIST = importlib.metadata.distribution("git-jobs")


def _editable() -> bool:
    text = DIST.read_text("direct_url.json")
    return bool(text and json.loads(text).get("dir_info", {}).get("editable"))


wheel_only = pytest.mark.skipif(
    _editable(), reason="editable install: the package is the source tree; `.ci/run` tests the wheel"
)


@wheel_only
def test_the_suite_imports_the_installed_package_not_the_sources() -> None:
    for package in (cob, jobs):
        where = Path(package.__file__ or "").resolve()
        assert where.parent != SOURCE / package.__name__, where  # not the source tree's copy
        assert where == Path(str(DIST.locate_file(f"{package.__name__}/__init__.py"))).resolve()


@wheel_only
def test_the_wheel_holds_every_module_typing_marker_licence_and_man_page() -> None:
    installed = {str(f) for f in DIST.files or ()}
    sources = sorted(
        str(p.relative_to(SOURCE))
        for top in ("cob", "jobs")
        for p in (SOURCE / top).rglob("*")
        if p.suffix in (".py", ".typed") and "__pycache__" not in p.parts
    )
    assert sources and not [s for s in sources if s not in installed]
    assert any(f.endswith("licenses/LICENSE-MIT") for f in installed)
    assert any(f.endswith("licenses/LICENSE-APACHE") for f in installed)
    assert any(f.endswith("share/man/man1/git-jobs.1") for f in installed)
    assert "# git-jobs" in (DIST.metadata.get_payload() or "")  # type: ignore[attr-defined]


def test_version_long_and_short(tmp_path: Path) -> None:
    expected = f"git-jobs {DIST.version}"
    assert ok(tmp_path, "--version").line == expected
    assert ok(tmp_path, "-V").line == expected


@wheel_only  # an editable install installs no man page
def test_git_jobs_help_through_git_opens_the_man_page(tmp_path: Path) -> None:
    if shutil.which("man") is None:
        pytest.skip("no `man` on this machine: `git jobs -h` is the documented fallback")
    bin_dir = str(Path(GIT_JOBS).parent)
    env = env_with(
        PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""), MANPAGER="cat", PAGER="cat", MANWIDTH="100"
    )
    proc = subprocess.run(
        ["git", "jobs", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc
    assert "git-jobs - decentralized CI jobs over Git" in proc.stdout
    assert "git jobs status" in proc.stdout
    assert "git jobs -h" not in proc.stderr and "Traceback" not in proc.stderr


def test_the_man_page_in_the_tree_is_what_the_parser_writes() -> None:
    from jobs.cli.manpage import render

    assert (SOURCE / "docs" / "git-jobs.1").read_text() == render(), (
        "run: python -m jobs.cli.manpage > docs/git-jobs.1"
    )


def _registered(module: str) -> dict[str, str]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    importlib.import_module(f"jobs.cli.{module}").register(sub)
    return {a.dest: a.help or "" for a in sub._choices_actions}


def test_the_command_table_is_what_the_modules_register() -> None:
    from jobs.cli import COMMANDS

    modules = {module for module, _ in COMMANDS.values()}
    registered = {name: (m, h) for m in modules for name, h in _registered(m).items()}
    assert registered == COMMANDS


def _help_texts(parser: argparse.ArgumentParser, where: str) -> list[tuple[str, str]]:
    texts = [(where, parser.description or "")]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            texts += [(f"{where} {c.dest}", c.help or "") for c in action._choices_actions]
            for name, child in action.choices.items():
                texts += _help_texts(child, f"{where} {name}")
        elif action.help not in (None, argparse.SUPPRESS) and not isinstance(action, argparse._HelpAction):
            texts.append((f"{where} {'/'.join(action.option_strings) or action.dest}", str(action.help)))
    return texts


def test_every_help_text_is_one_style_capital_and_full_stop() -> None:
    from jobs.cli import build_parser

    bad = [
        (where, text)
        for where, text in _help_texts(build_parser(), "git jobs")
        if not (text[:1].isupper() or text[:1] in "`.") or not text.rstrip().endswith((".", ")."))
    ]
    assert not bad, bad


_MODULES_AFTER = (
    "import sys\nfrom jobs.cli import main\ncode = main(sys.argv[1:])\nprint(' '.join(sorted(sys.modules)))\n"
)


def _modules_after(cwd: Path, *args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _MODULES_AFTER, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=env_with(),
    )
    assert proc.returncode in (0, 1), proc
    return set(proc.stdout.strip().splitlines()[-1].split())


def test_version_and_help_import_nothing_of_the_library(tmp_path: Path) -> None:
    for args in (["--version"], ["-h"]):
        script = _MODULES_AFTER.replace("code = main", "try:\n    main").replace(
            "(sys.argv[1:])\n", "(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", script, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env=env_with(),
        )
        loaded = set(proc.stdout.strip().splitlines()[-1].split())
        assert not {"pygit2", "cryptography", "msgspec", "cob", "jobs.store"} & loaded, args


def test_status_imports_no_runner_sync_or_demo_code(tmp_path: Path) -> None:
    """A status check reads definitions (required jobs, retries), never the runner's code."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".git-jobs.toml").write_text("[jobs.ci]\nrun = 'true'\nretry = { max = 2 }\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    subprocess.run(
        ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one"],
        check=True,
    )
    key = cob.Signer.generate().save(tmp_path / "key")
    ok(tmp_path, "release", key=key)
    loaded = _modules_after(tmp_path, "status")
    assert {"jobs.store", "jobs.gate", "jobs.spec.definitions"} <= loaded
    heavy = (
        "jobs.node.work",
        "jobs.node.checkout",
        "jobs.node.isolation",
        "jobs.demo",
        "cob.sync",
        "jobs.sync",
        "jobs.web",
    )
    assert not {m for m in loaded if m.startswith(heavy)}


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (SOURCE / "README.md").read_text()
    ci = (SOURCE / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"\n{ci}\n" in readme
    assert "pip install -q -e" not in ci and "build" in ci and "pytest" in ci
