"""The import layers hold: the picture in docs/ARCHITECTURE.md is what the code does.

Read from the installed packages' sources with `ast`, every import counted — module-level and
function-local alike, since a function-local import is still a dependency that runs. Only
imports under ``if TYPE_CHECKING:`` are left out: they never run, they only name types.

The rules:
- `cob` is generic: it never imports `jobs`.
- The definitions language (`jobs.spec`) needs only the job type's names and checks
  (`jobs.errors`, `jobs.jobtype`, `jobs.text`): never a store, the gate or the worker.
- The core (gate, policy, store, ...) never imports an application (`jobs.node`, `jobs.cli`,
  `jobs.web`); `jobs.web` never imports the worker or the CLI; the worker never imports the CLI.
- No cycles between modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import cob
import jobs

APPS = ("jobs.node", "jobs.cli", "jobs.web")
SPEC_NEEDS = ("jobs.spec", "jobs.errors", "jobs.jobtype", "jobs.text")
# Modules that start the applications for a user: the CLI's entry points and the demo.
ENTRY = ("jobs.cli", "jobs.__main__", "jobs.demo")


def _modules() -> dict[str, tuple[Path, bool]]:
    found: dict[str, tuple[Path, bool]] = {}
    for package in (cob, jobs):
        top = Path(package.__file__ or "").parent
        for path in top.rglob("*.py"):
            parts = [top.name, *path.relative_to(top).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            yield from (n for orelse in child.orelse for n in ast.walk(orelse))
            continue
        yield child
        yield from _runtime_nodes(child)


def _imports(name: str, modules: dict[str, tuple[Path, bool]]) -> set[str]:
    path, is_package = modules[name]
    base = name.split(".") if is_package else name.split(".")[:-1]
    out: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            prefix = base[: len(base) - node.level + 1] if node.level else []
            module = ".".join([*prefix, *([node.module] if node.module else [])])
            subs = {f"{module}.{a.name}" for a in node.names} & modules.keys()
            out.update(subs)
            if len(subs) < len(node.names):
                out.add(module)
    return (out & modules.keys()) - {name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, modules) for name in modules}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for name, deps in sorted(graph.items()):
        for dep in sorted(deps):
            if _under(name, ("cob",)) and _under(dep, ("jobs",)):
                bad.append(f"{name} -> {dep} (cob is generic)")
            elif _under(name, ("jobs.spec",)) and _under(dep, ("jobs",)) and not _under(dep, SPEC_NEEDS):
                bad.append(f"{name} -> {dep} (the language needs only the job type's names)")
            elif not _under(name, (*APPS, *ENTRY)) and _under(dep, APPS):
                bad.append(f"{name} -> {dep} (the core never imports an application)")
            elif _under(name, ("jobs.web",)) and _under(dep, ("jobs.node", "jobs.cli")):
                bad.append(f"{name} -> {dep} (the web page never imports the worker or the CLI)")
            elif _under(name, ("jobs.node",)) and _under(dep, ("jobs.cli",)):
                bad.append(f"{name} -> {dep} (the worker never imports the CLI)")
    return bad


def test_imports_point_down_the_layers() -> None:
    assert _violations(_graph()) == []


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_the_cycle_check_finds_a_cycle(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert _cycles(graph) == expected


def test_the_layer_check_finds_a_wrong_import() -> None:
    graph = {
        "cob.x": {"jobs.y"},
        "jobs.gate": {"jobs.node.work"},
        "jobs.web.a": {"jobs.cli.b"},
        "jobs.spec.d": {"jobs.store", "jobs.text"},
    }
    assert len(_violations(graph)) == 4
