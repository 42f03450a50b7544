"""`cob`'s modules import each other without a cycle, and never import `jobs`.

Every import counts: at the top, inside a function, under ``TYPE_CHECKING``. Read from the
installed package's sources with `ast` (nothing is imported to check it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import cob


def _graph(package_dir: Path) -> dict[str, set[str]]:
    """{module: the modules of the package (or outside it, e.g. ``jobs``) it imports}."""
    root = package_dir.name
    modules = {}
    for path in package_dir.rglob("*.py"):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    deps.add(full if full in modules else base)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d != name and (d in modules or not d.startswith(root))}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle (its modules in order), or []."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = 1
        stack.append(module)
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep in graph and dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[module] = 2
        return []

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return []


def test_cob_has_no_import_cycle_and_never_imports_jobs() -> None:
    graph = _graph(Path(cob.__file__).parent)
    assert {"cob.refs", "cob.sigrefs", "cob.reader", "cob.sync.fetching"} <= graph.keys()
    assert _cycle(graph) == []
    assert sorted(m for m, deps in graph.items() if any(d.split(".")[0] == "jobs" for d in deps)) == []


def test_the_check_finds_a_function_local_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "cob"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("x = 1\n\n\ndef f():\n    from . import a\n")
    (pkg / "c.py").write_text("import jobs.store\n")
    graph = _graph(pkg)
    assert _cycle(graph) == ["cob.a", "cob.b", "cob.a"]
    assert graph["cob.c"] == {"jobs.store"}
