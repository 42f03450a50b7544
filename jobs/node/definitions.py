"""``.git-jobs.toml``: what a node runs for a commit, read from *that commit's own tree*.

Reading the definitions from the commit (never the working copy) is what makes every node agree
on the work for a commit, and makes a release reproducible: re-running it later, anywhere, gives
the same jobs. Validation is strict — an unknown key is an error, not a silently ignored typo —
and every error names the file, the commit and the key (:class:`jobs.DefinitionError`).

    [jobs.build]
    run = "make"
    [jobs.test]
    run = "make test"
    needs = ["build"]
    timeout = "20m"
    retry = { max = 3, pattern = "seconds" }
    idempotent = true
    [trigger]
    run = "curl -fsS -X POST https://ci.example/hooks --data commit={commit}"
    [log]
    url = "https://ci.example/logs/{run_id}"
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pygit2

from ..errors import DefinitionError
from ..jobtype import check_log_url, check_name
from .durations import DurationError, parse_duration
from .retry import PATTERNS
from .templates import TemplateError, render

# A definitions file is a few hundred bytes; anything past this is not read at all.
MAX_DEFINITIONS_BYTES = 256 * 1024
# Jobs in one file: enough for any real pipeline, and it bounds the `needs` walk's depth.
MAX_JOBS = 200
MAX_NESTING = 16  # arrays / inline tables inside each other (tomllib recurses)

DEFINITIONS_FILE = ".git-jobs.toml"
MAX_RETRY = 100
_TOP_KEYS = {"jobs", "trigger", "log"}
_JOB_KEYS = {"run", "needs", "timeout", "retry", "idempotent"}
_RETRY_KEYS = {"max", "pattern"}
_LOG_PLACEHOLDERS = {"run_id": "0190a4b2-0000-7000-8000-000000000000", "commit": "0" * 40, "job": "x"}


@dataclass(frozen=True, slots=True)
class RetrySpec:
    """``max``: the most attempts (runs) this node makes; ``pattern``: µTask's delay formula."""

    max: int = 1
    pattern: str = "seconds"


@dataclass(frozen=True, slots=True)
class JobDef:
    name: str
    run: str
    needs: tuple[str, ...] = ()
    timeout: float | None = None
    retry: RetrySpec = field(default_factory=RetrySpec)
    idempotent: bool = False


@dataclass(frozen=True, slots=True)
class Definitions:
    """A commit's definitions; ``jobs`` is in ``needs`` order (every need before its users)."""

    commit: str
    jobs: tuple[JobDef, ...]
    trigger: str | None = None
    log_url: str | None = None
    path: str = DEFINITIONS_FILE

    def __iter__(self) -> Iterator[JobDef]:
        return iter(self.jobs)

    def get(self, name: str) -> JobDef | None:
        return next((j for j in self.jobs if j.name == name), None)

    @property
    def names(self) -> list[str]:
        return [j.name for j in self.jobs]


class _Ctx:
    """Builds errors that name the file, the commit and the key."""

    def __init__(self, path: str, commit: str) -> None:
        self.path, self.commit = path, commit

    def error(self, key: str | None, message: str) -> DefinitionError:
        where = f"{self.path} at {self.commit[:12]}"
        return DefinitionError(f"{where}: {key}: {message}" if key else f"{where}: {message}")


def _table(ctx: _Ctx, key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ctx.error(key, f"must be a table, not {type(value).__name__}")
    return value


def _unknown(ctx: _Ctx, prefix: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    for key in sorted(set(table) - allowed):
        name = f"{prefix}.{key}" if prefix else key
        raise ctx.error(name, f"unknown key (expected one of: {', '.join(sorted(allowed))})")


def _retry(ctx: _Ctx, key: str, value: Any) -> RetrySpec:
    if isinstance(value, bool) or not isinstance(value, int | dict):
        raise ctx.error(key, "must be a table like { max = 3, pattern = \"seconds\" } or an integer")
    if isinstance(value, int):
        value = {"max": value}
    _unknown(ctx, key, value, _RETRY_KEYS)
    most = value.get("max", 1)
    if isinstance(most, bool) or not isinstance(most, int) or not 1 <= most <= MAX_RETRY:
        raise ctx.error(f"{key}.max", f"must be an integer from 1 to {MAX_RETRY}, not {most!r}")
    pattern = value.get("pattern", "seconds")
    if pattern not in PATTERNS:
        raise ctx.error(f"{key}.pattern", f"must be one of {', '.join(PATTERNS)}, not {pattern!r}")
    return RetrySpec(most, pattern)


def _job(ctx: _Ctx, name: str, value: Any) -> JobDef:
    key = f"jobs.{name}"
    problem = check_name(name)
    if problem:
        raise ctx.error(key, problem)
    table = _table(ctx, key, value)
    _unknown(ctx, key, table, _JOB_KEYS)
    run = table.get("run")
    if not isinstance(run, str) or not run.strip():
        raise ctx.error(f"{key}.run", "a job needs a non-empty `run` command")
    needs = table.get("needs", [])
    if not isinstance(needs, list) or not all(isinstance(n, str) for n in needs):
        raise ctx.error(f"{key}.needs", "must be a list of job names")
    if len(set(needs)) != len(needs):
        raise ctx.error(f"{key}.needs", "names a job more than once")
    timeout = None
    if "timeout" in table:
        try:
            timeout = parse_duration(table["timeout"])
        except DurationError as e:
            raise ctx.error(f"{key}.timeout", str(e)) from None
    retry = _retry(ctx, f"{key}.retry", table["retry"]) if "retry" in table else RetrySpec()
    idempotent = table.get("idempotent", False)
    if not isinstance(idempotent, bool):
        raise ctx.error(f"{key}.idempotent", "must be true or false")
    return JobDef(name, run, tuple(needs), timeout, retry, idempotent)


def _order(ctx: _Ctx, jobs: dict[str, JobDef]) -> tuple[JobDef, ...]:
    """Topological order (needs first; ties by name), or an error naming a cycle."""
    for job in jobs.values():
        for need in job.needs:
            if need not in jobs:
                raise ctx.error(f"jobs.{job.name}.needs", f"unknown job {need!r}")
    done: dict[str, JobDef] = {}
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycle = [*visiting[visiting.index(name):], name]
            raise ctx.error(f"jobs.{name}.needs", f"cycle in needs: {' -> '.join(cycle)}")
        visiting.append(name)
        for need in sorted(jobs[name].needs):
            visit(need)
        visiting.pop()
        done[name] = jobs[name]

    for name in sorted(jobs):
        visit(name)
    return tuple(done.values())


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


def parse_definitions(text: str, commit: str, path: str = DEFINITIONS_FILE) -> Definitions:
    """Parse and validate the file's text; raise :class:`DefinitionError` on any problem."""
    ctx = _Ctx(path, commit)
    if nesting(text) > MAX_NESTING:
        raise ctx.error(None, f"arrays or inline tables nested deeper than {MAX_NESTING} levels")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ctx.error(None, f"invalid TOML: {e}") from None
    except RecursionError:  # the scan above should make this unreachable; never a crash
        raise ctx.error(None, "nested too deeply") from None
    _unknown(ctx, "", data, _TOP_KEYS)
    jobs_table = _table(ctx, "jobs", data.get("jobs", {}))
    if len(jobs_table) > MAX_JOBS:
        raise ctx.error("jobs", f"{len(jobs_table)} jobs (at most {MAX_JOBS} in one file)")
    jobs = {name: _job(ctx, name, value) for name, value in jobs_table.items()}
    trigger = None
    if "trigger" in data:
        table = _table(ctx, "trigger", data["trigger"])
        _unknown(ctx, "trigger", table, {"run"})
        trigger = table.get("run")
        if not isinstance(trigger, str) or not trigger.strip():
            raise ctx.error("trigger.run", "must be a non-empty command")
    log_url = None
    if "log" in data:
        table = _table(ctx, "log", data["log"])
        _unknown(ctx, "log", table, {"url"})
        log_url = table.get("url")
        if not isinstance(log_url, str):
            raise ctx.error("log.url", "must be a URL template like https://ci.example/logs/{run_id}")
        try:
            sample = render(log_url, _LOG_PLACEHOLDERS)
        except TemplateError as e:
            raise ctx.error("log.url", str(e)) from None
        problem = check_log_url(sample)
        if problem:
            raise ctx.error("log.url", problem)
    return Definitions(commit, _order(ctx, jobs), trigger, log_url, path)


def load_definitions(repo: pygit2.Repository, commit: str) -> Definitions | None:
    """The definitions in ``commit``'s tree, or None when it has no ``.git-jobs.toml``."""
    try:
        obj = repo.revparse_single(commit).peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError) as e:
        raise DefinitionError(f"commit {commit!r} is not in this repository ({e})") from None
    sha = str(obj.id)
    try:
        entry = obj.tree[DEFINITIONS_FILE]
    except KeyError:
        return None
    kind, size = repo.odb.read_header(entry.id)
    if kind != pygit2.enums.ObjectType.BLOB:
        raise DefinitionError(f"{DEFINITIONS_FILE} at {sha[:12]}: is not a file")
    if size > MAX_DEFINITIONS_BYTES:
        raise DefinitionError(
            f"{DEFINITIONS_FILE} at {sha[:12]}: is {size} bytes (limit {MAX_DEFINITIONS_BYTES})"
        )
    blob = repo.get(entry.id)
    assert isinstance(blob, pygit2.Blob)
    try:
        text = blob.data.decode("utf-8")
    except UnicodeDecodeError:
        raise DefinitionError(f"{DEFINITIONS_FILE} at {sha[:12]}: is not UTF-8 text") from None
    return parse_definitions(text, sha)
