"""``matrix``: one job definition fanned out into several jobs, one per combination.

    [jobs.test]
    run = "tox -e py{matrix.python}"
    [jobs.test.matrix]
    python = ["3.11", "3.12"]
    os = ["linux"]
    include = [{ python = "3.13", os = "linux" }]
    exclude = [{ python = "3.11" }]

gives ``test (python=3.12, os=linux)`` and ``test (python=3.13, os=linux)``. The names depend
only on the file (axes in the order written, values in the order listed, then the includes),
so every node derives the same names and therefore the same content-addressed job ids.

The file is peer data: axes, values and combinations are bounded, and keys and values are
restricted to characters that are safe both in a job name and unquoted in a shell command.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any

from ..text import safe

MAX_AXES = 8
MAX_VALUES = 32  # per axis
MAX_COMBINATIONS = 64  # jobs one definition may fan out into
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_VALUE = re.compile(r"^[A-Za-z0-9._+-]{1,40}$")
_SPECIAL = ("include", "exclude")

Combination = tuple[tuple[str, str], ...]


class MatrixError(ValueError):
    """The matrix table is malformed (the message names the part)."""


def _value(where: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MatrixError(f"{where}: a matrix value must be a string or an integer")
    text = str(value)
    if not _VALUE.match(text):
        raise MatrixError(f"{where}: matrix value {text[:40]!r} must be 1-40 of A-Z a-z 0-9 . _ + -")
    return text


def _entry(where: str, value: Any, axes: Mapping[str, list[str]], extra: bool) -> Combination:
    """One include/exclude entry; ``extra``: keys beyond the axes are allowed (include)."""
    if not isinstance(value, dict) or not value:
        raise MatrixError(f'{where}: must be a non-empty table like {{ python = "3.12" }}')
    out = []
    for key, v in value.items():
        if not _KEY.match(key) or (not extra and key not in axes):
            raise MatrixError(f"{where}.{safe(key[:40])}: not an axis of this matrix")
        out.append((key, _value(f"{where}.{key}", v)))
    return tuple(out)


def _axes(where: str, table: Mapping[str, Any]) -> dict[str, list[str]]:
    axes: dict[str, list[str]] = {}
    for key, values in table.items():
        if key in _SPECIAL:
            continue
        if not _KEY.match(key):
            raise MatrixError(f"{where}.{safe(key[:40])}: an axis name is a-z, 0-9, _ (at most 32)")
        if not isinstance(values, list) or not values or len(values) > MAX_VALUES:
            raise MatrixError(f"{where}.{key}: must be a list of 1 to {MAX_VALUES} values")
        texts = [_value(f"{where}.{key}", v) for v in values]
        if len(set(texts)) != len(texts):
            raise MatrixError(f"{where}.{key}: lists a value more than once")
        axes[key] = texts
    if len(axes) > MAX_AXES:
        raise MatrixError(f"{where}: at most {MAX_AXES} axes")
    return axes


def _entries(
    where: str, table: Mapping[str, Any], key: str, axes: Mapping[str, list[str]]
) -> list[Combination]:
    raw = table.get(key, [])
    if not isinstance(raw, list) or len(raw) > MAX_COMBINATIONS:
        raise MatrixError(f"{where}.{key}: must be a list of at most {MAX_COMBINATIONS} tables")
    return [_entry(f"{where}.{key}[{i}]", e, axes, key == "include") for i, e in enumerate(raw)]


def expand(where: str, table: Any) -> list[Combination]:
    """Every combination of the matrix, in a deterministic order; :class:`MatrixError` if bad."""
    if not isinstance(table, dict):
        raise MatrixError(f'{where}: must be a table like {{ python = ["3.11", "3.12"] }}')
    axes = _axes(where, table)
    size = 1
    for listed in axes.values():
        size *= len(listed)
        if size > MAX_COMBINATIONS:
            raise MatrixError(f"{where}: more than {MAX_COMBINATIONS} combinations")
    include = _entries(where, table, "include", axes)
    exclude = _entries(where, table, "exclude", axes)
    combos: list[Combination] = []
    if axes:
        for picked in itertools.product(*axes.values()):
            combo = tuple(zip(axes, picked, strict=True))
            if not any(set(e) <= set(combo) for e in exclude):
                combos.append(combo)
    for combo in include:
        if combo not in combos:
            combos.append(combo)
    if not combos:
        raise MatrixError(f"{where}: no combination is left")
    if len(combos) > MAX_COMBINATIONS:
        raise MatrixError(f"{where}: more than {MAX_COMBINATIONS} combinations")
    return combos


def job_name(base: str, combo: Combination) -> str:
    """``test (python=3.12, os=linux)``."""
    return f"{base} ({', '.join(f'{k}={v}' for k, v in combo)})"


_PLACEHOLDER = re.compile(r"\{matrix\.([^{}]{0,40})\}")


def substitute(run: str, combo: Combination) -> str:
    """``{matrix.KEY}`` in ``run`` replaced by the combination's value; an unknown key is an error.

    Only this exact form is touched, so a shell's own braces (``${HOME}``, ``{a,b}``) are left
    alone; the values are restricted to characters a shell takes literally."""
    values = dict(combo)

    def one(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            known = ", ".join("{matrix." + k + "}" for k in values)
            raise MatrixError(f"unknown placeholder {{matrix.{m.group(1)}}} (use {known})")
        return values[m.group(1)]

    return _PLACEHOLDER.sub(one, run)
