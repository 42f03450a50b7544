"""Runners: how a job's ``run`` is executed, chosen by name from what the *node* enabled.

A definition says ``runner = "python"`` (default ``"sh"``) and gives data only: its ``run``
string and an optional ``with`` table. The node looks the name up among the runners *its own
config* enables (``git config jobs.runners``); a commit can never make the node load code:

- built-in runners (:data:`BUILTIN`): ``sh`` (``sh -c RUN``, always on) and ``python`` (on
  unless ``jobs.runners`` leaves it out);
- third-party runners are Python entry points in the group :data:`ENTRY_POINTS`; one is loaded
  only when its name is listed in ``jobs.runners`` — never because a commit named it;
- a name is a short lowercase word (:data:`NAME`): ``runner = "os"`` or ``"pkg.mod:fn"`` is not
  a module to import, just a runner this node does not have (a definition error).

A :class:`Runner` gets a :class:`RunContext`: the prepared checkout, the job's environment,
its time limit, the cancel event, the log, and :attr:`RunContext.process` — the node's way to
start a program *inside the job's sandbox* (isolation, limits, timeout, cancellation, kill of
leftovers), which every shipped runner uses. It returns a :class:`RunResult`.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pygit2

from ..errors import DefinitionError, JobsError
from ..model import Reason
from ..spec.runner import (
    NAME,
    python_config,
    sh_config,
)
from ..text import safe

if TYPE_CHECKING:  # definitions import this module: no sandbox or metadata code loads for them
    import importlib.metadata

    from .isolation import Isolation

ENTRY_POINTS = "git_jobs.runners"  # the entry point group third-party runners register in
RUNNERS_KEY = "jobs.runners"  # git config of the node: the runners it enables, by name


class RunnerError(JobsError):
    """A runner the node's config enables cannot be loaded (a node setting, not a commit's)."""


class RunnerUnavailableError(DefinitionError):
    """A definition names a runner this node does not have or has not enabled.

    A fact about this node, not about the commit: the node does not record the commit as
    invalid for good (another node, or this one once configured, may run it)."""


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended: its reason, a short detail, the exit status, and runner metadata
    (short ``key: value`` pairs written to the run's log)."""

    reason: Reason
    detail: str = ""
    exit_status: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


class Process(Protocol):
    """Start ``argv`` in the job's sandbox (cwd: the checkout) and wait for its end, honouring
    the run's time limit and cancellation; ``env``: extra variables for this program."""

    def __call__(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> RunResult: ...


class Log(Protocol):
    def write(self, data: bytes, /) -> Any: ...


@dataclass(frozen=True, slots=True)
class RunContext:
    """What a runner gets for one run (see the module docstring)."""

    job: str
    commit: str
    run_id: str
    run: str  # the definition's `run` (matrix placeholders filled)
    data: Mapping[str, Any]  # the definition's `with` table (data only)
    checkout: Path
    env: Mapping[str, str]
    timeout: float | None
    cancel: threading.Event
    log: Log
    process: Process
    isolation: Isolation


@runtime_checkable
class Runner(Protocol):
    """A named way to execute a job (µTask's ``Runner``: ``Exec`` + ``ValidConfig``)."""

    def valid_config(self, run: str, data: Mapping[str, Any]) -> str | None:
        """The problem with this definition's ``run`` and ``with`` for this runner, or None."""
        ...

    def run(self, ctx: RunContext) -> RunResult:
        """Execute the job; never raise for the job's own failure (return ``FAILED``)."""
        ...


class ShRunner:
    """``sh -c RUN``: the default, what every job did before runners existed."""

    def valid_config(self, run: str, data: Mapping[str, Any]) -> str | None:
        return sh_config(run, data)

    def run(self, ctx: RunContext) -> RunResult:
        ctx.log.write(f"$ {ctx.run}\n".encode())
        return ctx.process(["sh", "-c", ctx.run])


# Run by the node's interpreter in isolated mode (-I: no PYTHON* variables, no user site, no
# current directory on sys.path). The module or script is looked up in the checkout only.
_BOOT = r"""
import importlib, importlib.machinery, json, os, runpy, sys
def inside(root, path):
    path = os.path.realpath(path)
    return path == root or path.startswith(root + os.sep)
def main():
    target, args = sys.argv[1], json.loads(sys.argv[2])
    root = os.path.realpath(os.getcwd())
    sys.argv = [target, *args]
    if ":" not in target:
        path = os.path.join(root, target)
        if not inside(root, path) or not os.path.isfile(path):
            return "git-jobs: script %r is not a file in the checkout" % target
        sys.path.insert(0, os.path.dirname(os.path.realpath(path)))
        runpy.run_path(path, run_name="__main__")
        return 0
    name, _, attr = target.partition(":")
    top = name.split(".")[0]
    spec = None if top in sys.modules else importlib.machinery.PathFinder.find_spec(top, [root])
    # a directory without __init__.py is a namespace portion: a package elsewhere would win
    if spec is None or spec.loader is None or spec.origin is None:
        return "git-jobs: module %r is not in the checkout" % top
    sys.path.insert(0, root)
    module = importlib.import_module(name)
    if not inside(root, getattr(module, "__file__", None) or "/"):
        return "git-jobs: module %r is not in the checkout" % name
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part)
    result = fn()
    if result is None or result is True:
        return 0
    return 1 if result is False else result
sys.exit(main())
"""


class PythonRunner:
    """``run = "pkg.module:function"`` (called with no arguments; ``None``/``0``/``True`` is
    success, an int is the exit status) or ``run = "path/to/script.py"``, with the node's
    interpreter, in the same sandbox as ``sh``. ``with = { args = [...] }``: ``sys.argv[1:]``."""

    def valid_config(self, run: str, data: Mapping[str, Any]) -> str | None:
        return python_config(run, data)

    def run(self, ctx: RunContext) -> RunResult:
        python = interpreter(ctx.isolation)
        if python is None:
            return RunResult(
                Reason.ERROR,
                f"the node's interpreter {sys.executable} is not visible in the sandbox "
                "(add its directory with jobs.sandboxPath)",
            )
        target = ctx.run.strip()
        args = list(ctx.data.get("args", []))
        ctx.log.write(f"$ python {' '.join([target, *args])}\n".encode())
        result = ctx.process([python, "-I", "-u", "-c", _BOOT, target, json.dumps(args)])
        meta = {"interpreter": python}
        return RunResult(result.reason, result.detail, result.exit_status, meta)


def interpreter(isolation: Isolation) -> str | None:
    """The node's interpreter as the job sees it: ``sys.executable``; in a sandbox that does
    not mount it (a virtual environment, pyenv), the interpreter it links to, else the same
    ``pythonX.Y`` on ``PATH`` under the system directories — without the node's packages
    either way; None when none is visible there (``jobs.sandboxPath`` can mount one)."""
    from .isolation import SYSTEM_DIRS

    if isolation.mode != "bwrap":
        return sys.executable
    mounted = [os.path.realpath(p) for p in (*SYSTEM_DIRS, *isolation.paths) if os.path.exists(p)]
    hidden = [os.path.realpath(p) for p in isolation.hidden]

    def under(path: str, parent: str) -> bool:
        return path == parent or path.startswith(parent.rstrip("/") + "/")

    def visible(path: str) -> bool:
        return any(under(path, m) for m in mounted) and not any(under(path, h) for h in hidden)

    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    on_path = [os.path.join(d, version) for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    for candidate in (sys.executable, os.path.realpath(sys.executable), *on_path):
        real = os.path.realpath(candidate)
        if os.path.isfile(real) and visible(os.path.abspath(candidate)) and visible(real):
            return candidate
    return None


BUILTIN: dict[str, Callable[[], Runner]] = {"sh": ShRunner, "python": PythonRunner}
DEFAULT_ENABLED = ("sh", "python")


def _installed() -> dict[str, importlib.metadata.EntryPoint]:
    """Entry points of the group, by name (metadata only: nothing is imported)."""
    import importlib.metadata

    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINTS)}


@dataclass(slots=True)
class Runners:
    """The runners this node enabled, by name (``sh`` always among them)."""

    enabled: dict[str, Runner]

    @classmethod
    def load(
        cls, repo: pygit2.Repository | None = None, names: Iterable[str] | None = None, **extra: Runner
    ) -> Runners:
        """The runners ``names`` (default: ``git config jobs.runners``, else sh and python):
        built-ins, else entry points of :data:`ENTRY_POINTS` — loaded only for these names.
        ``extra``: runners given from Python by the node's operator (enabled as given)."""
        if names is None:
            names = _configured(repo) if repo is not None else None
        chosen = list(dict.fromkeys(["sh", *(DEFAULT_ENABLED if names is None else names)]))
        enabled: dict[str, Runner] = {}
        installed: dict[str, importlib.metadata.EntryPoint] | None = None
        for name in chosen:
            if not NAME.match(name):
                raise RunnerError(f"{RUNNERS_KEY}: {safe(name[:40])!r} is not a runner name (a-z 0-9 _ -)")
            if name in BUILTIN:
                enabled[name] = BUILTIN[name]()
                continue
            if name in extra:
                continue
            installed = _installed() if installed is None else installed
            if name not in installed:
                raise RunnerError(
                    f"{RUNNERS_KEY}: no runner {name!r} is installed "
                    f"(no entry point of that name in group {ENTRY_POINTS})"
                )
            enabled[name] = _instantiate(name, installed[name])
        for name, runner in extra.items():
            if not NAME.match(name) or not isinstance(runner, Runner):
                raise RunnerError(f"runner {safe(name[:40])!r}: not a runner name, or not a Runner")
            enabled[name] = runner
        return cls(enabled)

    @property
    def names(self) -> list[str]:
        return sorted(self.enabled)

    def get(self, name: str) -> Runner:
        return self.enabled[name]

    def check(self, defs: Any) -> None:
        """Raise :class:`RunnerUnavailableError` naming every job whose runner this node lacks or
        whose ``run``/``with`` that runner refuses (``defs``: a commit's Definitions)."""
        problems: list[str] = []
        where = f"{defs.path} at {defs.commit[:12]}"
        for d in defs:
            runner = self.enabled.get(d.runner)
            key = f"jobs.{d.base or d.name}.runner"
            if runner is None:
                problems.append(f"{where}: {key}: {self.why_missing(d.runner)}")
                continue
            if d.runner in BUILTIN:
                continue  # checked with the definitions
            try:
                problem = runner.valid_config(d.run, d.data)
            except Exception as e:  # a third-party check must not crash the node
                problem = f"runner {d.runner} cannot check it: {e}"
            if problem:
                problems.append(f"{where}: {key}: {safe(problem)}")
        if problems:
            shown = list(dict.fromkeys(problems))
            raise RunnerUnavailableError("; ".join(shown), shown)

    def why_missing(self, name: str) -> str:
        enabled = ", ".join(self.names)
        if name in BUILTIN or name in _installed():
            return (
                f"runner {name!r} is not enabled on this node (enabled: {enabled}; git config {RUNNERS_KEY})"
            )
        return f"unknown runner {safe(name)!r}: this node has no runner of that name (enabled: {enabled})"


def _configured(repo: pygit2.Repository) -> list[str] | None:
    """``jobs.runners``: names separated by spaces or commas (repeatable); None: unset."""
    try:
        values = [str(v) for v in repo.config.get_multivar(RUNNERS_KEY)]
    except (KeyError, pygit2.GitError):
        return None
    if not values:
        return None
    return [n for v in values for n in re.split(r"[\s,]+", v) if n]


def _instantiate(name: str, ep: importlib.metadata.EntryPoint) -> Runner:
    """Load an enabled entry point: a Runner, or a class/factory making one."""
    try:
        found = ep.load()
        runner = found if isinstance(found, Runner) and not isinstance(found, type) else found()
    except Exception as e:
        raise RunnerError(f"runner {name!r} ({ep.value}) cannot be loaded: {e}") from None
    if not isinstance(runner, Runner):
        raise RunnerError(f"runner {name!r} ({ep.value}) is not a Runner (valid_config, run)")
    return runner


def run_with(runners: Runners, name: str, ctx: RunContext) -> RunResult:
    """Run ``ctx`` with the enabled runner ``name``; its metadata goes to the log. A runner that
    raises ends this run ``error``, never the node."""
    runner = runners.enabled.get(name)
    if runner is None:  # checked when the definitions were read: only a changed node gets here
        return RunResult(Reason.ERROR, runners.why_missing(name))
    try:
        result = runner.run(ctx)
    except Exception as e:
        return RunResult(Reason.ERROR, f"runner {name} failed: {safe(str(e) or type(e).__name__)[:200]}")
    if not isinstance(result, RunResult) or not isinstance(result.reason, Reason):
        return RunResult(Reason.ERROR, f"runner {name} returned no RunResult")
    if result.reason is Reason.SKIPPED:
        return RunResult(Reason.ERROR, f"runner {name} may not skip a run", result.exit_status)
    shown = ", ".join(f"{safe(k)[:40]}={safe(str(v))[:200]}" for k, v in list(result.metadata.items())[:16])
    if shown:
        ctx.log.write(f"git-jobs: runner {name}: {shown}\n".encode())
    return result
