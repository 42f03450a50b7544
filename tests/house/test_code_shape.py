"""The library stays readable: no function in `cob` or `jobs` over 60 lines, no module over 600.

Read from the installed package's sources (what users get), with the standard `ast` module.
Long functions are where a reader gets lost and where two jobs hide in one; split them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cob
import jobs

MAX_LINES = 60
PENDING: set[tuple[str, str]] = set()  # none: every function fits


def _long_functions(package_dir: Path) -> list[tuple[str, str, int]]:
    out = []
    for path in sorted(package_dir.rglob("*.py")):
        rel = f"{package_dir.name}/{path.relative_to(package_dir).as_posix()}"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_LINES and (rel, node.name) not in PENDING:
                    out.append((rel, node.name, lines))
    return out


def test_no_function_in_the_library_is_longer_than_60_lines() -> None:
    for package in (cob, jobs):
        assert _long_functions(Path(package.__file__).parent) == []


MAX_MODULE_LINES = 600


def test_no_module_in_the_library_is_longer_than_600_lines() -> None:
    long = []
    for package in (cob, jobs):
        top = Path(package.__file__).parent
        for path in sorted(top.rglob("*.py")):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_MODULE_LINES:
                long.append((path.relative_to(top.parent).as_posix(), lines))
    assert long == []


def test_the_check_finds_a_long_function(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (pkg / "m.py").write_text(f"def long():\n{body}\n\n\ndef short():\n    return 1\n")
    assert _long_functions(pkg) == [("pkg/m.py", "long", MAX_LINES + 1)]


# A type's `Reject` is the signal a type raises to refuse a change (like StopIteration), not an
# error of the program; private control-flow exceptions start with "_".
NOT_ERRORS = {"Reject"}


def test_every_exception_name_ends_in_error_as_pep8_asks() -> None:
    import importlib
    import pkgutil

    bad = []
    for package in (cob, jobs):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if (
                    isinstance(value, type)
                    and issubclass(value, BaseException)
                    and value.__module__ == module.__name__
                    and not name.endswith("Error")
                    and not name.startswith("_")
                    and name not in NOT_ERRORS
                ):
                    bad.append(f"{module.__name__}.{name}")
    assert bad == []
