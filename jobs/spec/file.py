"""The one reader of ``.git-jobs.toml``: a commit's file, read with bounds and parsed once.

One file holds what a commit runs (``[jobs]``, ``[trigger]``, ``[log]``: :mod:`.definitions`,
read from the commit under test) and what the policy ref decides (``[policy]``:
:mod:`jobs.policy`; ``[schedule]``: :mod:`jobs.node.schedule`). Each reader takes its own tables
from :func:`read_tables`; the bounds and the problems are the same for all of them: a blob of
at most :data:`MAX_BYTES`, UTF-8, arrays and inline tables nested at most :data:`MAX_NESTING`
deep, valid TOML. Each problem is one line naming the file and where it was read (``where``),
raised as the caller's own error type (``error``).

A blob never changes, so its tables are parsed once per process (the policy, the schedules and
the definitions at the policy ref are one parse). The tables returned are shared: a reader
must not modify them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from typing import Any

import pygit2

from ..text import safe

DEFINITIONS_FILE = ".git-jobs.toml"
# A definitions file is a few hundred bytes; anything past this is not read at all.
MAX_BYTES = 256 * 1024
MAX_NESTING = 16  # arrays / inline tables inside each other (tomllib recurses)
MAX_CACHED = 32  # parsed files kept (by blob id)

Error = Callable[[str], Exception]
_PARSED: dict[str, Mapping[str, Any] | str] = {}  # blob id -> tables, or the problem


def parse_toml(text: str, where: str, error: Error) -> Mapping[str, Any]:
    """The tables of ``text``; ``error("<where>: <problem>")`` when it is not bounded TOML."""
    found = _parse(text)
    if isinstance(found, str):
        raise error(f"{where}: {found}")
    return found


def read_tables(
    repo: pygit2.Repository, commit: pygit2.Commit, where: str, error: Error
) -> Mapping[str, Any] | None:
    """The tables of ``.git-jobs.toml`` in ``commit``'s tree, or None when it has none."""
    try:
        entry = commit.tree[DEFINITIONS_FILE]
    except KeyError:
        return None
    key = str(entry.id)
    found = _PARSED.get(key)
    if found is None:
        found = _read(repo, entry.id)
        if len(_PARSED) >= MAX_CACHED:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = found
    if isinstance(found, str):
        raise error(f"{where}: {found}")
    return found


def _read(repo: pygit2.Repository, oid: pygit2.Oid) -> Mapping[str, Any] | str:
    kind, size = repo.odb.read_header(oid)
    if kind != pygit2.enums.ObjectType.BLOB:
        return "is not a file"
    if size > MAX_BYTES:
        return f"is {size} bytes (limit {MAX_BYTES})"
    blob = repo.get(oid)
    assert isinstance(blob, pygit2.Blob)
    try:
        text = blob.data.decode("utf-8")
    except UnicodeDecodeError:
        return "is not UTF-8 text"
    return _parse(text)


def _parse(text: str) -> Mapping[str, Any] | str:
    if nesting(text) > MAX_NESTING:
        return f"arrays or inline tables nested deeper than {MAX_NESTING} levels"
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return f"invalid TOML: {safe(str(e))[:300]}"
    except RecursionError:  # the scan above should make this unreachable; never a crash
        return "nested too deeply"


def nesting(text: str) -> int:
    """The deepest nesting of ``[`` / ``{`` in TOML text, outside strings and comments.

    tomllib parses nested arrays and inline tables recursively: 40 KB of ``[[[[…`` raised
    RecursionError. This linear scan runs first, so such a file is one clear error.
    """
    depth = most = i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "#":
            i = _line_end(text, i)
        elif c in "\"'":
            i = _string_end(text, i)
        elif c in "[{":
            depth += 1
            most = max(most, depth)
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return most


def _line_end(text: str, i: int) -> int:
    end = text.find("\n", i)
    return len(text) if end < 0 else end


def _string_end(text: str, i: int) -> int:
    """The index of the last character of the string starting at ``i`` (or the text's end)."""
    quote = text[i]
    if text.startswith(quote * 3, i):
        end = text.find(quote * 3, i + 3)
        return len(text) if end < 0 else end + 2
    j = i + 1
    while j < len(text) and text[j] not in (quote, "\n"):
        j += 2 if quote == '"' and text[j] == "\\" else 1
    return j
