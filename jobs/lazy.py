"""Names of a package loaded on first use (PEP 562), for a fast start.

`git jobs --version` should not import pygit2, and `git jobs status` should not import the
runner: so ``jobs`` and ``jobs.node`` list their public names with the module that defines each,
and :func:`exports` gives them the module-level ``__getattr__``/``__dir__`` that import it when
a name is first used. Type checkers see the names through ``if TYPE_CHECKING:`` imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping


def where(**modules: Iterable[str]) -> dict[str, str]:
    """``{name: module}`` from ``module=(names…)`` keyword arguments."""
    return {name: module for module, names in modules.items() for name in names}


def exports(
    package: str, namespace: dict[str, object], names: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``names`` maps each public name to the
    submodule (relative to ``package``) that defines it; a loaded name is cached in
    ``namespace`` (the package's globals), so the next use is a plain lookup."""

    def getattr_(name: str) -> object:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(names))

    return getattr_, dir_
