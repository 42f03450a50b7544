"""The import layers (docs/TYPES.md): the worker is an application beside the CLI and the web page.

- ``jobs.spec`` — the ``.git-jobs.toml`` language — needs only the job type's names and checks
  (``jobs.errors``, ``jobs.jobtype``, ``jobs.text``), never a store, the gate or the worker;
- nothing outside ``jobs.node`` and ``jobs.cli`` imports ``jobs.node``: the gate, the policy,
  the web page, the profile read definitions through ``jobs.spec``;
- ``cob`` never imports ``jobs``.

Every import counts: module level, under ``TYPE_CHECKING`` and inside functions, read from the
installed package's sources with ``ast``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cob
import jobs

WORKER = "jobs.node"
MAY_IMPORT_THE_WORKER = ("jobs.node", "jobs.cli")
SPEC_NEEDS = ("jobs.spec", "jobs.errors", "jobs.jobtype", "jobs.text")


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: Path) -> dict[str, set[str]]:
    """{module: every module it imports} for the package at ``root`` (relative ones resolved;
    ``from X import name`` counts both ``X`` and ``X.name``, which may be a submodule)."""
    out: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        name = _module_name(root, path)
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in node.names)
        out[name] = found
    return out


def _within(module: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(module == p or module.startswith(f"{p}.") for p in prefixes)


def worker_imports(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    return {
        module: sorted(m for m in found if _within(m, WORKER))
        for module, found in graph.items()
        if not _within(module, MAY_IMPORT_THE_WORKER) and any(_within(m, WORKER) for m in found)
    }


def test_only_the_cli_and_the_worker_import_the_worker() -> None:
    assert worker_imports(imports(Path(jobs.__file__).parent)) == {}


def test_the_language_needs_only_the_job_types_names_and_checks() -> None:
    graph = imports(Path(jobs.__file__).parent)
    beyond = {
        module: sorted(m for m in found if _within(m, "jobs") and not _within(m, SPEC_NEEDS))
        for module, found in graph.items()
        if _within(module, "jobs.spec")
    }
    assert {k: v for k, v in beyond.items() if v} == {}


def test_cob_never_imports_jobs() -> None:
    graph = imports(Path(cob.__file__).parent)
    assert {module: found for module, found in graph.items() if any(_within(m, "jobs") for m in found)} == {}


def test_the_check_sees_relative_and_function_local_imports(tmp_path: Path) -> None:
    root = tmp_path / "jobs"
    (root / "node").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "node" / "__init__.py").write_text("")
    (root / "node" / "work.py").write_text("from .. import gate\n")
    (root / "gate.py").write_text("def f():\n    from .node.work import x\n")
    (root / "web.py").write_text("from . import node\n")
    assert worker_imports(imports(root)) == {
        "jobs.gate": ["jobs.node.work", "jobs.node.work.x"],
        "jobs.web": ["jobs.node"],
    }
