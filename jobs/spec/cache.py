"""A job's ``cache`` key: ``{ key = "deps-{hash('requirements*.txt')}", paths = [".venv"] }``.

The key is a template the node fills from the commit's tree (``hash(GLOB)``: the paths and blob
ids of the matched files) and a few names (``job``, ``os``, ``arch``) — never by running the
commit's code. Parsing is the language's; restoring and saving are the node's
(:mod:`jobs.node.cache`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .outputs import check_path

MAX_KEY = 200
MAX_PATHS = 16
MAX_GLOBS = 8
_LITERAL = re.compile(r"^[A-Za-z0-9._-]*$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_HASH = re.compile(r"^hash\((.*)\)$", re.S)
_ARG = re.compile(r"""\s*(?:'([^']*)'|"([^"]*)")\s*(,|$)""")
_NAMES = ("job", "os", "arch")


@dataclass(frozen=True, slots=True)
class CacheSpec:
    """A job's ``cache``: the key template and the paths kept."""

    key: str
    paths: tuple[str, ...]


def parts(key: str) -> list[tuple[str, str | tuple[str, ...]]]:
    """The key as ("text", literal) / ("name", name) / ("hash", globs); ValueError if bad."""
    out: list[tuple[str, str | tuple[str, ...]]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(key):
        out.append(("text", key[pos : m.start()]))
        inner = m.group(1).strip()
        h = _HASH.match(inner)
        if inner in _NAMES:
            out.append(("name", inner))
        elif h:
            globs, rest = [], h.group(1)
            while rest.strip():
                a = _ARG.match(rest)
                if a is None:
                    raise ValueError(
                        f"hash() takes quoted globs, like hash('requirements*.txt'): {inner[:60]!r}"
                    )
                globs.append(a.group(1) if a.group(1) is not None else a.group(2))
                rest = rest[a.end() :]
            if not globs or len(globs) > MAX_GLOBS or any(check_path(g.replace("*", "x")) for g in globs):
                raise ValueError(f"hash() takes 1 to {MAX_GLOBS} relative globs: {inner[:60]!r}")
            out.append(("hash", tuple(globs)))
        else:
            raise ValueError(f"unknown placeholder {{{inner[:40]}}} (use hash('GLOB'), job, os, arch)")
        pos = m.end()
    out.append(("text", key[pos:]))
    for kind, value in out:
        if kind == "text" and not _LITERAL.match(str(value)):
            raise ValueError(f"key text may hold letters, digits and . _ - only: {key[:60]!r}")
    return out


def parse_cache(value: object) -> CacheSpec:
    """A ``cache`` table from the definitions (ValueError says what is wrong)."""
    if not isinstance(value, dict) or set(value) - {"key", "paths"} or "key" not in value:
        raise ValueError(
            'must be a table like { key = "deps-{hash(\'requirements*.txt\')}", paths = [".venv"] }'
        )
    key, paths = value["key"], value.get("paths", [])
    if not isinstance(key, str) or not key or len(key) > MAX_KEY:
        raise ValueError(f"key must be a string of 1 to {MAX_KEY} characters")
    parts(key)
    if (
        not isinstance(paths, list)
        or not 1 <= len(paths) <= MAX_PATHS
        or not all(isinstance(p, str) for p in paths)
    ):
        raise ValueError(f"paths must be a list of 1 to {MAX_PATHS} relative paths, like ['.venv']")
    for path in paths:
        problem = check_path(path)
        if problem:
            raise ValueError(f"paths: {problem}")
    return CacheSpec(key, tuple(dict.fromkeys(paths)))
