"""A job's ``runner`` and ``with`` keys: which registered runner, and the data it is given.

The commit under test chooses only *which* runner (a short name, never a module path) and
*what data* (plain values, bounded); the node's own config decides which names load code
(:mod:`jobs.node.runners`). The built-in runners' checks live here so that every reader of
the definitions (the gate, ``status``) refuses the same things the node would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..text import safe

DEFAULT = "sh"  # a definition without `runner`
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
MAX_WITH_BYTES = 16 * 1024  # a job's `with` table, as JSON
MAX_WITH_DEPTH = 4
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_TARGET = re.compile(rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*$")
_PY_KEYS = {"args"}
MAX_ARGS = 64


def sh_config(run: str, data: Mapping[str, Any]) -> str | None:
    """``sh`` takes everything in ``run``: no ``with``."""
    return "runner sh takes no `with` (put everything in `run`)" if data else None


def python_config(run: str, data: Mapping[str, Any]) -> str | None:
    """The problem with a ``python`` job's ``run`` and ``with``, or None."""
    unknown = sorted(set(data) - _PY_KEYS)
    if unknown:
        return f"runner python: unknown `with` key {safe(unknown[0])!r} (expected: args)"
    args = data.get("args", [])
    if not isinstance(args, list) or len(args) > MAX_ARGS or not all(isinstance(a, str) for a in args):
        return f"runner python: `with.args` must be a list of at most {MAX_ARGS} strings"
    target = run.strip()
    if _TARGET.match(target):
        return None
    parts = target.split("/")
    if target.endswith(".py") and not target.startswith("/") and ".." not in parts and "" not in parts:
        return None
    return (
        f"runner python: run {safe(target[:80])!r} must be 'package.module:function' or a "
        "relative path to a .py file in the checkout"
    )


BUILTIN_CONFIG: dict[str, Callable[[str, Mapping[str, Any]], str | None]] = {
    "sh": sh_config,
    "python": python_config,
}


def check_data(value: Any) -> str | None:
    """The problem with a ``with`` table (data only: strings, numbers, booleans, lists and
    tables, bounded), or None."""
    if not isinstance(value, dict):
        return "must be a table like { args = ['-v'] }"

    def plain(v: Any, depth: int) -> bool:
        if depth > MAX_WITH_DEPTH:
            return False
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x, depth + 1) for k, x in v.items())
        if isinstance(v, list):
            return all(plain(x, depth + 1) for x in v)
        return isinstance(v, str | int | float | bool)

    if not plain(value, 0):
        return (
            f"must hold only strings, numbers, booleans, lists and tables (nested at most {MAX_WITH_DEPTH})"
        )
    if len(json.dumps(value)) > MAX_WITH_BYTES:
        return f"is larger than {MAX_WITH_BYTES} bytes"
    return None


def check_definition(runner: Any, run: str, data: Any) -> tuple[str, str] | None:
    """(key, problem) with a job's ``runner``/``with`` wherever definitions are read; a
    built-in runner's own check included (third-party ones are checked by the node)."""
    if not isinstance(runner, str) or not NAME.match(runner):
        shown = safe(runner[:40]) if isinstance(runner, str) else type(runner).__name__
        return "runner", f"must be a runner name like 'sh' or 'python' (a-z 0-9 _ -), not {shown!r}"
    problem = check_data(data)
    if problem:
        return "with", problem
    builtin = BUILTIN_CONFIG.get(runner)
    problem = builtin(run, data) if builtin is not None else None
    return ("runner", problem) if problem else None
