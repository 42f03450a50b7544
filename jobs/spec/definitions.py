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
    [jobs.notify]
    run = "./notify"
    needs = { test = "any" }          # succeeded (the list form's meaning) | failed | any
    [jobs.lint]
    run = "tox -e py{matrix.python}"
    matrix = { python = ["3.11", "3.12"] }   # jobs `lint (python=3.11)`, `lint (python=3.12)`
    [trigger]
    run = "curl -fsS -X POST https://ci.example/hooks --data commit={commit}"
    [log]
    url = "https://ci.example/logs/{run_id}"
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pygit2

from ..errors import DefinitionError
from ..jobtype import check_log_url, check_name
from ..text import safe
from .cache import CacheSpec, parse_cache
from .durations import DurationError, parse_duration
from .file import DEFINITIONS_FILE as DEFINITIONS_FILE
from .file import parse_toml, read_tables
from .labels import LABEL, MAX_LABELS
from .matrix import Combination, MatrixError, expand, job_name, substitute
from .outputs import MAX_OUTPUTS, check_path
from .patterns import PATTERNS
from .resources import RESOURCE
from .runner import check_definition
from .templates import TemplateError, render

if TYPE_CHECKING:
    from .conditions import Node

# Jobs in one file: enough for any real pipeline, and it bounds the `needs` walk's depth.
MAX_JOBS = 200
MAX_RETRY = 100
# [policy] is read from the policy ref by jobs.policy, never from the commit under test;
# [schedule] likewise, by jobs.node.schedule.
_TOP_KEYS = {"jobs", "trigger", "log", "policy", "schedule"}
MAX_ERRORS = 50  # problems listed for one file; the rest are counted
_JOB_KEYS = {"run", "needs", "timeout", "retry", "idempotent", "matrix", "resources", "if", "runs_on"}
_JOB_KEYS |= {"outputs", "reuse", "runner", "with", "check"}
_JOB_KEYS |= {"publish", "cache", "secrets"}  # issue 29: jobs.artifacts, .cache, .secrets
REUSE = ("tree",)  # `reuse = "tree"`: a trusted pass on another commit with the same tree counts
MAX_RESOURCES = 8  # named resources one job holds
# What a need must have ended as for its user to run (the list form of `needs` means succeeded).
NEED_STATES = ("succeeded", "failed", "any")
# A definition's own name: matrix jobs add ` (k=v, …)`, so the base has none of those characters.
_BASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]*$")
_RETRY_KEYS = {"max", "pattern", "on"}
# Failure classes a job may retry on (retry.on): a test's own failure, or the infrastructure's.
RETRY_ON = ("failed", "timed_out", "error")
_LOG_PLACEHOLDERS = {"run_id": "0190a4b2-0000-7000-8000-000000000000", "commit": "0" * 40, "job": "x"}


@dataclass(frozen=True, slots=True)
class RetrySpec:
    """``max``: the most attempts (runs) this node makes; ``pattern``: µTask's delay formula."""

    max: int = 1
    pattern: str = "seconds"
    on: tuple[str, ...] = RETRY_ON  # reasons that use up an attempt and are retried


@dataclass(frozen=True, slots=True)
class JobDef:
    name: str
    run: str
    needs: tuple[str, ...] = ()
    timeout: float | None = None
    retry: RetrySpec = field(default_factory=RetrySpec)
    idempotent: bool = False
    # Per need (same order as ``needs``): what it must have ended as (see NEED_STATES).
    need_states: tuple[str, ...] = ()
    base: str = ""  # the definition's name (differs from ``name`` for a matrix job)
    matrix: Combination = ()
    resources: tuple[str, ...] = ()  # held while it runs; capacities are the node's (slots.py)
    condition: str | None = None  # `if`, as written (see conditions.py)
    when: Node | None = None  # `if`, parsed
    runs_on: tuple[str, ...] = ()  # labels a node must have to serve it (labels.py)
    outputs: tuple[str, ...] = ()  # paths handed to the jobs that need it here (outputs.py)
    reuse: str | None = None  # "tree": a trusted pass of the same tree counts (jobs.evidence)
    runner: str = "sh"  # the node's runner that executes `run` (runners.py)
    data: Mapping[str, Any] = field(default_factory=dict, hash=False)  # `with`: the runner's data
    publish: bool = False  # its outputs travel as Git data (jobs.artifacts)
    cache: CacheSpec | None = None  # restored before and saved after a run (cache.py)
    secrets: tuple[str, ...] = ()  # names of node secrets it asks for (secrets.py)
    check: str | None = None  # `check`, as written: judged after the run (values.py, issue 32)
    checked: Node | None = None  # `check`, parsed
    dynamic: str | None = None  # a matrix over needs' outputs, as canonical JSON (fanout.py)
    fanout_error: str = ""  # why a dynamic matrix could not be expanded (the run fails with it)

    def need_state(self, need: str) -> str:
        """What ``need`` must end as for this job to run (``succeeded`` unless stated)."""
        states = dict(zip(self.needs, self.need_states, strict=False))
        return states.get(need, "succeeded")


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
    """Builds errors that name the file, the commit and the key, and collects them: every
    problem of a file is reported at once (:meth:`check` keeps going after one)."""

    def __init__(self, path: str, commit: str) -> None:
        self.path, self.commit = path, commit
        self.errors: list[str] = []

    def error(self, key: str | None, message: str) -> DefinitionError:
        where = f"{self.path} at {self.commit[:12]}"
        return DefinitionError(f"{where}: {key}: {message}" if key else f"{where}: {message}")

    @contextlib.contextmanager
    def check(self) -> Iterator[None]:
        """Record a :class:`DefinitionError` raised inside, and carry on with the next part."""
        try:
            yield
        except DefinitionError as e:
            self.errors.extend(e.errors)

    def raise_if_any(self) -> None:
        if self.errors:
            shown = self.errors[:MAX_ERRORS]
            more = len(self.errors) - len(shown)
            raise DefinitionError("; ".join(shown) + (f"; and {more} more" if more else ""), shown)


def _table(ctx: _Ctx, key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ctx.error(key, f"must be a table, not {type(value).__name__}")
    return value


def _unknown(ctx: _Ctx, prefix: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    """Record every unknown key (not only the first)."""
    for key in sorted(set(table) - allowed):
        name = f"{prefix}.{key}" if prefix else key
        expected = ", ".join(sorted(allowed))
        ctx.errors.extend(ctx.error(name, f"unknown key (expected one of: {expected})").errors)


def _retry(ctx: _Ctx, key: str, value: Any) -> RetrySpec:
    if isinstance(value, bool) or not isinstance(value, int | dict):
        raise ctx.error(key, 'must be a table like { max = 3, pattern = "seconds" } or an integer')
    if isinstance(value, int):
        value = {"max": value}
    _unknown(ctx, key, value, _RETRY_KEYS)
    most = value.get("max", 1)
    if isinstance(most, bool) or not isinstance(most, int) or not 1 <= most <= MAX_RETRY:
        raise ctx.error(f"{key}.max", f"must be an integer from 1 to {MAX_RETRY}, not {most!r}")
    pattern = value.get("pattern", "seconds")
    if pattern not in PATTERNS:
        raise ctx.error(f"{key}.pattern", f"must be one of {', '.join(PATTERNS)}, not {pattern!r}")
    on = value.get("on", list(RETRY_ON))
    if not isinstance(on, list) or not on or not all(isinstance(r, str) and r in RETRY_ON for r in on):
        raise ctx.error(f"{key}.on", f"must be a non-empty list of {', '.join(RETRY_ON)}")
    return RetrySpec(most, pattern, tuple(dict.fromkeys(on)))


def _reuse(ctx: _Ctx, key: str, reuse: Any) -> Any:
    """The job's ``reuse`` value; a wrong one is recorded as the job's error."""
    if reuse is not None and reuse not in REUSE:
        shown = safe(reuse[:40]) if isinstance(reuse, str) else type(reuse).__name__
        ctx.errors.extend(ctx.error(f"{key}.reuse", f'must be "tree", not {shown!r}').errors)
    return reuse


def _runner(ctx: _Ctx, key: str, table: Mapping[str, Any], run: Any) -> tuple[Any, Any]:
    """The job's ``runner`` and ``with`` (data only, see runners.py); a wrong one is recorded."""
    runner, data = table.get("runner", "sh"), table.get("with", {})
    bad = check_definition(runner, run, data) if isinstance(run, str) else None
    if bad:
        ctx.errors.extend(ctx.error(f"{key}.{bad[0]}", bad[1]).errors)
    return runner, data


def _job(ctx: _Ctx, name: str, value: Any) -> list[JobDef]:
    """The job(s) one definition declares: one, or one per matrix combination."""
    key = f"jobs.{name}"
    problem = check_name(name) or (
        None
        if _BASE.match(name)
        else f"invalid job name {safe(name)!r}"
        " (letters, digits and . _ / + - ; starting with a letter or digit)"
    )
    if problem:
        raise ctx.error(key, problem)
    table = _table(ctx, key, value)
    _unknown(ctx, key, table, _JOB_KEYS)
    before = len(ctx.errors)
    run = table.get("run")
    if not isinstance(run, str) or not run.strip():
        ctx.errors.extend(ctx.error(f"{key}.run", "a job needs a non-empty `run` command").errors)
    needs: list[str] = []
    states: list[str] = []
    with ctx.check():
        needs, states = _needs(ctx, f"{key}.needs", table.get("needs", []))
    timeout = _timeout(ctx, key, table)
    retry = RetrySpec()
    with ctx.check():
        retry = _retry(ctx, f"{key}.retry", table["retry"]) if "retry" in table else RetrySpec()
    idempotent = table.get("idempotent", False)
    if not isinstance(idempotent, bool):
        ctx.errors.extend(ctx.error(f"{key}.idempotent", "must be true or false").errors)
    resources: tuple[str, ...] = ()
    with ctx.check():
        resources = _resources(ctx, f"{key}.resources", table.get("resources", []))
    runs_on: tuple[str, ...] = ()
    with ctx.check():
        runs_on = _labels(ctx, f"{key}.runs_on", table.get("runs_on", []))
    outputs: tuple[str, ...] = ()
    with ctx.check():
        outputs = _outputs(ctx, f"{key}.outputs", table.get("outputs", []))
    reuse = _reuse(ctx, key, table.get("reuse"))
    runner, data = _runner(ctx, key, table, run)
    extras = _extras(ctx, key, table)
    condition, when = None, None
    with ctx.check():
        condition, when = _condition(ctx, f"{key}.if", table.get("if"), needs)
    values = _values_keys(ctx, key, table, needs)  # check, {needs…} placeholders, dynamic matrix
    static = values["dynamic"] is None
    combos: list[Combination] = [()]
    if "matrix" in table and static:
        try:
            combos = expand(f"{key}.matrix", table["matrix"])
        except MatrixError as e:
            ctx.errors.extend(ctx.error(None, str(e)).errors)
    if len(ctx.errors) > before:
        raise DefinitionError("invalid job", [])  # already recorded: the job is left out
    one = JobDef(name, str(run), tuple(needs), timeout, retry, idempotent, tuple(states), name)
    one = dataclasses.replace(one, resources=resources, condition=condition, when=when, runs_on=runs_on)
    one = dataclasses.replace(one, outputs=outputs, reuse=reuse, runner=runner, data=data, **extras, **values)
    return [_instance(ctx, key, one, combo) for combo in combos] if "matrix" in table and static else [one]


def _timeout(ctx: _Ctx, key: str, table: Mapping[str, Any]) -> float | None:
    """The job's ``timeout`` in seconds (None: the node's default); a wrong one is recorded."""
    if "timeout" not in table:
        return None
    try:
        return parse_duration(table["timeout"])
    except DurationError as e:
        ctx.errors.extend(ctx.error(f"{key}.timeout", str(e)).errors)
        return None


def _extras(ctx: _Ctx, key: str, table: Mapping[str, Any]) -> dict[str, Any]:
    """``publish``, ``cache`` and ``secrets`` (issue 29); a wrong one is recorded."""
    from .secrets import check_names

    out: dict[str, Any] = {}
    publish = table.get("publish", False)
    if not isinstance(publish, bool):
        ctx.errors.extend(ctx.error(f"{key}.publish", "must be true or false").errors)
    out["publish"] = publish is True
    if publish is True and not table.get("outputs"):
        ctx.errors.extend(
            ctx.error(f"{key}.publish", "publishes the job's outputs: list them in `outputs`").errors
        )
    if "cache" in table:
        try:
            out["cache"] = parse_cache(table["cache"])
        except ValueError as e:
            ctx.errors.extend(ctx.error(f"{key}.cache", safe(str(e))).errors)
    problem = check_names(table.get("secrets", []))
    if problem:
        ctx.errors.extend(ctx.error(f"{key}.secrets", problem).errors)
    else:
        out["secrets"] = tuple(dict.fromkeys(table.get("secrets", [])))
    return out


def _instance(ctx: _Ctx, key: str, job: JobDef, combo: Combination) -> JobDef:
    """The job of one matrix combination: its name and its ``run`` with placeholders filled."""
    name = job_name(job.name, combo)
    problem = check_name(name)
    if problem:
        raise ctx.error(f"{key}.matrix", problem)
    try:
        run = substitute(job.run, combo)
    except MatrixError as e:
        raise ctx.error(f"{key}.run", str(e)) from None
    return dataclasses.replace(job, name=name, run=run, matrix=combo)


def _values_keys(ctx: _Ctx, key: str, table: Mapping[str, Any], needs: list[str]) -> dict[str, Any]:
    """The keys that read values (issue 32): ``check``, ``{needs.JOB.outputs.NAME}`` in ``run``
    and a dynamic ``matrix``, as JobDef fields (errors recorded in ``ctx``)."""
    out: dict[str, Any] = {"check": None, "checked": None, "dynamic": None}
    run = table.get("run")
    with ctx.check():
        out["check"], out["checked"] = _condition(ctx, f"{key}.check", table.get("check"), needs, after=True)
    with ctx.check():
        _placeholders(ctx, f"{key}.run", run if isinstance(run, str) else "", needs)
    matrix = table.get("matrix")
    if isinstance(matrix, dict) and any(isinstance(v, str) for v in matrix.values()):
        out["dynamic"] = ""  # not static, even when invalid
        with ctx.check():
            out["dynamic"] = _dynamic(ctx, f"{key}.matrix", matrix, needs, run)
    return out


def _placeholders(ctx: _Ctx, key: str, text: str, needs: list[str]) -> None:
    """``{needs.JOB.outputs.NAME}`` in ``run``: well formed, JOB one of the needs (values.py)."""
    if "{needs." in text:
        from .values import check_placeholders

        problem = check_placeholders(text, needs)
        if problem:
            raise ctx.error(key, problem)


def _dynamic(ctx: _Ctx, key: str, table: dict[str, Any], needs: list[str], run: Any) -> str:
    """A matrix with an axis ``"{needs.JOB.outputs.NAME}"`` (expanded at run time, fanout.py):
    its table as canonical JSON, checked now as far as it can be."""
    from .fanout import check_dynamic

    problem = check_dynamic(key, table, needs, run if isinstance(run, str) else "")
    if problem:
        raise ctx.error(None, problem)
    import json

    return json.dumps(table, separators=(",", ":"))  # axes in the order written (names)


def _condition(
    ctx: _Ctx, key: str, value: Any, needs: list[str], *, after: bool = False
) -> tuple[str | None, Node | None]:
    """``if`` (or ``check``, ``after`` the run): parsed now, so a bad expression is a
    definition error (see conditions.py)."""
    if value is None:
        return None, None
    if not isinstance(value, str):
        raise ctx.error(key, "must be a string like 'branch(\"main\")'")
    from .conditions import ConditionError, jobs_named, parse  # only files with an `if` pay for it

    try:
        node = parse(value, after=after)
    except ConditionError as e:
        raise ctx.error(key, str(e)) from None
    for name in sorted(jobs_named(node) - set(needs)):
        raise ctx.error(key, f"asks about {safe(name)!r}, which is not in this job's needs")
    return value, node


def _outputs(ctx: _Ctx, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_OUTPUTS or not all(isinstance(p, str) for p in value):
        raise ctx.error(key, f"must be a list of at most {MAX_OUTPUTS} relative paths, like ['dist/']")
    for path in value:
        problem = check_path(path)
        if problem:
            raise ctx.error(key, safe(problem))
    return tuple(dict.fromkeys(value))


def _labels(ctx: _Ctx, key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or len(value) > MAX_LABELS
        or not all(isinstance(x, str) and LABEL.match(x) for x in value)
    ):
        raise ctx.error(key, f"must be a list of at most {MAX_LABELS} labels of a-z 0-9 _ . - like ['linux']")
    return tuple(dict.fromkeys(value))


def _resources(ctx: _Ctx, key: str, value: Any) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or len(value) > MAX_RESOURCES
        or not all(isinstance(r, str) and RESOURCE.match(r) for r in value)
    ):
        raise ctx.error(key, f"must be a list of at most {MAX_RESOURCES} names of a-z 0-9 _ -, like ['gpu']")
    return tuple(dict.fromkeys(value))


def _needs(ctx: _Ctx, key: str, value: Any) -> tuple[list[str], list[str]]:
    """``needs`` as (names, states): a list means every one must have succeeded."""
    if isinstance(value, dict | list) and len(value) > MAX_JOBS:  # no file has more jobs to need
        raise ctx.error(key, f"names {len(value)} jobs (at most {MAX_JOBS})")
    if isinstance(value, dict):
        names, states = list(value), list(value.values())
        for n, state in value.items():
            if state not in NEED_STATES:
                shown = state if isinstance(state, str) else type(state).__name__
                raise ctx.error(f"{key}.{n}", f"must be one of {', '.join(NEED_STATES)}, not {shown!r}")
        return names, states
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise ctx.error(key, 'must be a list of job names or a table like { build = "succeeded" }')
    if len(set(value)) != len(value):
        raise ctx.error(key, "names a job more than once")
    return list(value), ["succeeded"] * len(value)


def _resolve_needs(jobs: dict[str, JobDef]) -> dict[str, JobDef]:
    """A need naming a matrix definition means every job of that matrix (with the same state)."""
    groups: dict[str, list[str]] = {}
    for job in jobs.values():
        if job.matrix:
            groups.setdefault(job.base, []).append(job.name)
    out = {}
    for name, job in jobs.items():
        needs: list[str] = []
        states: list[str] = []
        for need in job.needs:
            for one in groups.get(need, [need]):
                if one not in needs:
                    needs.append(one)
                    states.append(job.need_state(need))
        out[name] = dataclasses.replace(job, needs=tuple(needs), need_states=tuple(states))
    return out


def _order(ctx: _Ctx, jobs: dict[str, JobDef], known: Collection[str] = ()) -> tuple[JobDef, ...]:
    """Topological order (needs first; ties by name), or an error naming a cycle.

    ``known``: names of jobs that are defined but invalid (already reported): a need on one of
    them is not reported again as unknown.
    """
    missing = False
    for job in jobs.values():
        for need in job.needs:
            if need not in jobs and need not in known:
                ctx.errors.extend(ctx.error(f"jobs.{job.name}.needs", f"unknown job {need!r}").errors)
            missing = missing or need not in jobs
    if missing:
        raise DefinitionError("unknown needs", [])  # recorded above
    done: dict[str, JobDef] = {}
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycle = [*visiting[visiting.index(name) :], name]
            raise ctx.error(f"jobs.{name}.needs", f"cycle in needs: {' -> '.join(cycle)}")
        visiting.append(name)
        for need in sorted(jobs[name].needs):
            visit(need)
        visiting.pop()
        done[name] = jobs[name]

    for name in sorted(jobs):
        visit(name)
    return tuple(done.values())


def parse_definitions(text: str, commit: str, path: str = DEFINITIONS_FILE) -> Definitions:
    """Parse and validate the file's text; raise :class:`DefinitionError` on any problem."""
    return definitions_of(parse_toml(text, f"{path} at {commit[:12]}", DefinitionError), commit, path)


def definitions_of(data: Mapping[str, Any], commit: str, path: str = DEFINITIONS_FILE) -> Definitions:
    """Validate the tables of a parsed file (:mod:`.file`): the definitions, or
    :class:`DefinitionError` listing every problem."""
    ctx = _Ctx(path, commit)
    _unknown(ctx, "", data, _TOP_KEYS)
    jobs_table = _table(ctx, "jobs", data.get("jobs", {}))
    if len(jobs_table) > MAX_JOBS:
        raise ctx.error("jobs", f"{len(jobs_table)} jobs (at most {MAX_JOBS} in one file)")
    jobs: dict[str, JobDef] = {}
    for name, value in jobs_table.items():
        with ctx.check():
            jobs.update((j.name, j) for j in _job(ctx, name, value))
    if len(jobs) > MAX_JOBS:
        raise ctx.error("jobs", f"{len(jobs)} jobs after matrix expansion (at most {MAX_JOBS})")
    jobs = _resolve_needs(jobs)
    ordered: tuple[JobDef, ...] = ()
    with ctx.check():
        ordered = _order(ctx, jobs, known=set(jobs_table))
    trigger = log_url = None
    with ctx.check():
        trigger = _trigger(ctx, data)
    with ctx.check():
        log_url = _log(ctx, data)
    ctx.raise_if_any()
    return Definitions(commit, ordered, trigger, log_url, path)


def _trigger(ctx: _Ctx, data: Mapping[str, Any]) -> str | None:
    trigger = None
    if "trigger" in data:
        table = _table(ctx, "trigger", data["trigger"])
        _unknown(ctx, "trigger", table, {"run"})
        trigger = table.get("run")
        if not isinstance(trigger, str) or not trigger.strip():
            raise ctx.error("trigger.run", "must be a non-empty command")
    return trigger


def _log(ctx: _Ctx, data: Mapping[str, Any]) -> str | None:
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
    return log_url


def load_definitions(repo: pygit2.Repository, commit: str) -> Definitions | None:
    """The definitions in ``commit``'s tree, or None when it has no ``.git-jobs.toml``."""
    try:
        obj = repo.revparse_single(commit).peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError) as e:
        raise DefinitionError(f"commit {commit!r} is not in this repository ({e})") from None
    sha = str(obj.id)
    data = read_tables(repo, obj, f"{DEFINITIONS_FILE} at {sha[:12]}", DefinitionError)
    return None if data is None else definitions_of(data, sha)
