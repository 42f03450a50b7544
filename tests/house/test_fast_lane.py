"""The fast lane (`pytest -m "not slow"`) still reaches every test file and every library module.

Marking a test `slow` takes it out of the lane a developer runs on each change; this check keeps
that lane from quietly losing a part of the code. It is static and cheap (one `--collect-only`
in a subprocess, then `ast`), so it proves less than a coverage run would, and says so:

- Every test file keeps at least one fast test (pytest's own collection with ``-m "not slow"``,
  so module-level ``pytestmark`` and parametrized marks count), except the files in
  `ALL_SLOW`, each named with the fast tests that cover the same code.
- Every module of the installed `cob` and `jobs` is *loaded* by some fast test file: the file
  imports it (function-local imports included, and ``jobs.Name`` through the packages' lazy
  exports), or runs a CLI command it implements (``gj(path, "status")`` loads `jobs.cli.query`),
  or imports a module that imports it at module level (function-local imports inside the library
  are not followed: they run only if that function does). A test helper module a test file
  imports (``tests.jobhelpers``...) counts as part of that file, and `tests/conftest.py` as part
  of every file.

What it does not prove: that a loaded module's functions run, or run on the lines a slow test
covers. It proves that deleting, renaming or leaving a module to slow tests alone cannot go
unnoticed in the fast lane.
"""

from __future__ import annotations

import ast
import functools
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from tests.house.test_layers import _modules

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
# Test files with no fast test, and the fast tests of the same code.
ALL_SLOW = {
    "tests/test_maintainers_day.py": "a story of every command; each has fast tests in tests/cli",
    "tests/test_maintainers_day_evidence.py": "the day's evidence; fast tests in tests/node, tests/cli",
}
# Modules the library runs as a script (by path), which no import statement shows.
RUN_AS_SCRIPT = {"jobs.node.isolation": {"jobs.node.reaper"}}


def _fast_tests() -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "not slow", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return [line for line in proc.stdout.splitlines() if "::" in line]


def _test_files() -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in TESTS.rglob("test_*.py")}


def _library() -> dict[str, tuple[Path, bool]]:
    """Every module of the installed `cob` and `jobs`: ``{name: (path, is_package)}``."""
    return _modules()


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


@functools.cache
def _imported(path: Path) -> frozenset[str]:
    """Every dotted name a test or helper file imports (function-local imports included)."""
    return frozenset(n for node in _import_nodes(_tree(path), module_level=False) for n in _names(node, []))


def _base(name: str, is_package: bool) -> list[str]:
    return name.split(".") if is_package else name.split(".")[:-1]


def _import_nodes(tree: ast.AST, module_level: bool) -> list[ast.Import | ast.ImportFrom]:
    """The imports that run: all of them, or those outside functions (``if TYPE_CHECKING:`` never)."""
    out: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.orelse:
                    visit(sub)
            elif isinstance(child, ast.Import | ast.ImportFrom):
                out.append(child)
            elif not (module_level and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)):
                visit(child)

    visit(tree)
    return out


def _from(node: ast.ImportFrom, base: list[str]) -> str:
    prefix = base[: len(base) - node.level + 1] if node.level else []
    return ".".join([*prefix, *([node.module] if node.module else [])])


def _names(node: ast.Import | ast.ImportFrom, base: list[str]) -> set[str]:
    """Dotted names an import loads: the module, and each imported name that may be a submodule."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    module = _from(node, base)
    return {module, *(f"{module}.{a.name}" for a in node.names)}


def _lazy_exports(library: dict[str, tuple[Path, bool]]) -> dict[str, dict[str, str]]:
    """``{package: {name: module}}`` for the packages whose names load on first use: their
    ``if TYPE_CHECKING:`` block imports each lazy name from the module `lazy.exports` loads."""
    out: dict[str, dict[str, str]] = {}
    for name, (path, is_package) in library.items():
        text = path.read_text(encoding="utf-8")
        if not is_package or "exports(" not in text:
            continue
        table: dict[str, str] = {}
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                for sub in ast.walk(node):
                    if isinstance(sub, ast.ImportFrom):
                        module = _from(sub, _base(name, True))
                        table.update({a.asname or a.name: module for a in sub.names})
        out[name] = table
    return out


def _library_graph(library: dict[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    """Imports between library modules, function-local ones included (a package's ``__init__``
    runs before its modules)."""
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in library.items():
        tree = _tree(path)
        deps: set[str] = set()
        for node in _import_nodes(tree, module_level=False):
            deps |= _names(node, _base(name, is_package))
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        scripts = RUN_AS_SCRIPT.get(name, set())
        graph[name] = ((deps | parents | scripts) & library.keys()) - {name}
    return graph


def _cli_modules() -> dict[str, str]:
    from jobs.cli import COMMANDS

    return {command: f"jobs.cli.{module}" for command, (module, _) in COMMANDS.items()}


def _loaded_by(
    path: Path, library: set[str], lazy: dict[str, dict[str, str]], runs_cli: bool
) -> tuple[set[str], set[str]]:
    """(library modules, test helper files) that one test or helper file loads directly;
    ``runs_cli``: the file runs the CLI (it, or a helper it imports, imports tests.clirunner or
    `jobs.cli`), so a command name among a call's arguments loads the module implementing it."""
    tree = _tree(path)
    loaded: set[str] = set()
    helpers: set[str] = set()
    aliases: dict[str, str] = {}
    for node in _import_nodes(tree, module_level=False):
        for name in _names(node, []):
            loaded.add(name)
            if name.startswith("tests.") and (ROOT / (name.replace(".", "/") + ".py")).exists():
                helpers.add(name.replace(".", "/") + ".py")
        if isinstance(node, ast.Import):
            aliases.update({a.asname or a.name: a.name for a in node.names})
        elif node.module and not node.level:
            for a in node.names:
                loaded.add(lazy.get(node.module, {}).get(a.name, ""))
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    commands = _cli_modules()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            package = aliases.get(node.value.id, "")
            loaded.add(lazy.get(package, {}).get(node.attr, ""))
        elif runs_cli and isinstance(node, ast.Call):
            for arg in node.args:
                if isinstance(arg, ast.Constant) and arg.value in commands:
                    loaded |= {"jobs.cli", commands[arg.value]}
                elif isinstance(arg, ast.List | ast.Tuple):
                    words = [e.value for e in arg.elts if isinstance(e, ast.Constant)]
                    loaded |= {commands[w] for w in words if isinstance(w, str) and w in commands}
        if isinstance(node, ast.List | ast.Tuple):  # [python, "-m", "jobs", ...]
            words = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            for flag, module in itertools.pairwise(words):
                if flag == "-m" and isinstance(module, str):
                    loaded |= {module, f"{module}.__main__"}
    return loaded & library, helpers


def _helpers(rel: str) -> set[str]:
    """The test file and the helper files it imports, transitively."""
    todo, seen = {rel}, set()
    while todo:
        seen.add(path := todo.pop())
        for name in _imported(ROOT / path):
            helper = name.replace(".", "/") + ".py"
            if name.startswith("tests.") and (ROOT / helper).exists() and helper not in seen:
                todo.add(helper)
    return seen


def _reached(files: set[str], library: dict[str, tuple[Path, bool]]) -> set[str]:
    lazy = _lazy_exports(library)
    reached: set[str] = set()
    done: dict[tuple[str, bool], set[str]] = {}
    for rel in {*files, "tests/conftest.py"}:
        group = _helpers(rel)
        runs_cli = "tests/clirunner.py" in group or any("jobs.cli" in _imported(ROOT / p) for p in group)
        for path in group:
            if (path, runs_cli) not in done:
                done[path, runs_cli] = _loaded_by(ROOT / path, set(library), lazy, runs_cli)[0]
            reached |= done[path, runs_cli]
    graph = _library_graph(library)
    stack = list(reached)
    while stack:
        for dep in graph[stack.pop()] - reached:
            reached.add(dep)
            stack.append(dep)
    return reached


@pytest.mark.slow
def test_every_test_file_keeps_a_fast_test_and_every_module_is_loaded_by_one() -> None:
    fast_files = {test.split("::")[0] for test in _fast_tests()}
    assert _test_files() - fast_files == set(ALL_SLOW)
    library = _library()
    assert sorted(library.keys() - _reached(fast_files, library)) == []


def test_the_check_sees_what_a_test_file_loads(tmp_path: Path) -> None:
    library = _library()
    lazy = _lazy_exports(library)
    assert lazy["jobs"]["Jobs"] == "jobs.store"
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "import jobs\nfrom tests.clirunner import ok\n\n\n"
        "def test_x(p):\n    from cob.sync import fetching\n"
        "    jobs.Jobs.open(p)\n    ok(p, 'status', '--json')\n"
    )
    modules, helpers = _loaded_by(probe, set(library), lazy, runs_cli=True)
    assert {"jobs", "jobs.store", "cob.sync.fetching", "jobs.cli", "jobs.cli.query"} <= modules
    assert helpers == {"tests/clirunner.py"}
    assert "jobs.node.work" not in modules
    probe = tmp_path / "test_probe_cli.py"
    probe.write_text(
        "import sys\nfrom jobs.cli import main\n\n\ndef test_y():\n"
        "    main(['cache', 'status'])\n    run([sys.executable, '-m', 'jobs', '-V'])\n"
    )
    modules, _ = _loaded_by(probe, set(library), lazy, runs_cli=True)
    assert {"jobs.cli.cache", "jobs.__main__"} <= modules
    # followed only through module-level imports: `jobs` alone loads its lazy table, not its names
    graph = _library_graph(library)
    assert "jobs.lazy" in graph["jobs"] and "jobs.store" not in graph["jobs"]
