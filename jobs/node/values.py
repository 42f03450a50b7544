"""Structured outputs: ``key=value`` pairs a job writes to ``$GIT_JOBS_OUTPUT``, signed in its
``finish`` (the ``values`` field, FORMAT.md 11.5), read by the jobs that need it.

    [jobs.plan]
    run = 'echo "version=1.4.2" >> "$GIT_JOBS_OUTPUT"; echo "targets=x86 arm" >> "$GIT_JOBS_OUTPUT"'
    [jobs.build]
    needs = ["plan"]
    run = "make VERSION={needs.plan.outputs.version} TARGET={matrix.target}"
    matrix = { target = "{needs.plan.outputs.targets}" }

The file takes GitHub's two forms: ``key=value`` (one line) and a heredoc for multi-line
values (``key<<EOF``, the lines, ``EOF``). Keys are letters, digits, ``_`` and ``-`` (at most
64, starting with a letter or ``_``); a later line for the same key replaces the value. The
file is the job's (untrusted) data and ends up in every replica of the ledger, so it is
bounded: at most :data:`MAX_VALUES` keys, :data:`MAX_VALUE` bytes per value and
:data:`MAX_TOTAL` bytes in all; past any bound nothing is kept and the run fails with the
reason (a dependent must never run on half of what its need meant to say).

Readers take a need's values **from the ledger**: the latest succeeded run of the needed job
at the same commit by this node, else by a node the policy trusts (:func:`lookup`). So a
job on one node reads what its need printed on another; an untrusted node's values are never
used. In ``run`` a placeholder becomes a quoted expansion of a shell variable holding the value
(:func:`render_run`): a value is data, never shell syntax, wherever the placeholder stands.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..model import Job
from ..ops.finish import MAX_VALUE, MAX_VALUES, VALUE_KEY, check_values
from ..spec.values import PLACEHOLDER as PLACEHOLDER
from ..spec.values import check_placeholders as check_placeholders
from ..spec.values import needed as needed
from ..store import Jobs
from ..text import safe

if TYPE_CHECKING:
    from ..model import Reason
    from ..spec.definitions import JobDef

MAX_FILE = 64 * 1024  # bytes of $GIT_JOBS_OUTPUT read at all (more: refused unread)
OUTPUT_FILE = "output"  # directly in the job's scratch directory


class ValuesError(ValueError):
    """The outputs file breaks a bound or a rule (the message says which, escaped)."""


def _heredoc(lines: list[str], i: int, marker: str) -> tuple[str, int]:
    """The value of a ``key<<EOF`` whose body starts at line ``i``; and the line after it."""
    if not marker.strip():
        raise ValuesError(f"line {i}: a heredoc needs a delimiter (key<<EOF)")
    body: list[str] = []
    while i < len(lines) and lines[i].removesuffix("\r") != marker:
        body.append(lines[i].removesuffix("\r"))
        i += 1
    if i >= len(lines):
        raise ValuesError(f"line {i}: heredoc {safe(marker[:40])!r} is not closed")
    return "\n".join(body), i + 1


def parse(data: bytes) -> dict[str, str]:
    """The values the file's bytes declare; :class:`ValuesError` when they break a rule."""
    if len(data) > MAX_FILE:
        raise ValuesError(f"$GIT_JOBS_OUTPUT is larger than {MAX_FILE} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValuesError("$GIT_JOBS_OUTPUT is not UTF-8 text") from None
    out: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].removesuffix("\r")
        i += 1
        if not line.strip():
            continue
        if "=" in line and ("<<" not in line or line.index("=") < line.index("<<")):
            key, value = line.split("=", 1)
        elif "<<" in line:
            key, marker = line.split("<<", 1)
            value, i = _heredoc(lines, i, marker)
        else:
            raise ValuesError(f"line {i}: not key=value or key<<EOF: {safe(line[:60])!r}")
        if not VALUE_KEY.fullmatch(key):
            raise ValuesError(
                f"line {i}: output name {safe(key[:40])!r} must be A-Z a-z 0-9 _ - (at most 64)"
            )
        out.pop(key, None)
        out[key] = value
        if len(out) > MAX_VALUES:
            raise ValuesError(f"more than {MAX_VALUES} outputs")
    problem = check_values(out)
    if problem:
        raise ValuesError(problem)
    return out


def read(root: Path) -> dict[str, str]:
    """The values a run wrote to its outputs file, :data:`OUTPUT_FILE` directly in its scratch
    directory ``root`` (none when it wrote none).

    The job may have replaced the file by a link to a file of the node, or by a FIFO: it is
    opened relative to ``root`` (a mount point the job cannot move), never following a link,
    without blocking, and read only when it is a regular file."""
    import os
    import stat

    try:
        dirfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as e:
        raise ValuesError(f"cannot read $GIT_JOBS_OUTPUT: {e.strerror or e}") from None
    try:
        fd = os.open(OUTPUT_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dirfd)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ValuesError(f"$GIT_JOBS_OUTPUT is not a regular file ({e.strerror or e})") from None
    finally:
        os.close(dirfd)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValuesError("$GIT_JOBS_OUTPUT is not a regular file")
        data = fh.read(MAX_FILE + 1)
    return parse(data)


def judge(
    d: JobDef, status: int, values: Mapping[str, str], value: Callable[[str, str], str | None]
) -> tuple[Reason, str] | None:
    """A ``check``'s verdict on a run that exited with ``status`` and wrote ``values``: None
    when the exit rule stands (no check; or a check that does not read ``exit`` and a non-zero
    exit, which fails the run as always); else (succeeded, "") or (failed, why).

    A check that reads ``exit`` replaces the exit rule (``exit == 0 || exit == 3`` passes on 3);
    one that does not is added to it (``output("coverage") >= 80`` also needs exit 0)."""
    from ..model import Reason
    from ..spec.conditions import Facts, evaluate, reads_exit

    if d.checked is None or (status != 0 and not reads_exit(d.checked)):
        return None
    if evaluate(d.checked, Facts(value=value, exit=status, outputs=values)):
        return Reason.SUCCEEDED, ""
    return Reason.FAILED, f"check is false: {safe(d.check)}"


# -- reading a need's values from the ledger ------------------------------------------------
def values_of(job: Job, nid: str) -> dict[str, str] | None:
    """The values of ``nid``'s latest run of ``job`` when it succeeded, else None."""
    latest = job.runs_of(nid).latest()
    if latest is None or not latest[1].succeeded:
        return None
    return dict(latest[1].values or {})


def lookup(job: Job | None, own: str, trusts: Callable[[str], bool]) -> tuple[str, dict[str, str]] | None:
    """(node, values) of the run a dependent reads: this node's latest run of ``job`` when it
    succeeded, else the newest succeeded latest run of a node ``trusts`` accepts; else None.
    An untrusted node's values are never returned."""
    if job is None:
        return None
    mine = values_of(job, own)
    if mine is not None:
        return own, mine
    best: tuple[object, str, dict[str, str]] | None = None
    for nid, runs in job.runs().items():
        latest = runs.latest()
        if nid == own or latest is None or not latest[1].succeeded or not trusts(nid):
            continue
        if best is None or latest[0] > best[0]:  # type: ignore[operator]
            best = (latest[0], nid, dict(latest[1].values or {}))
    return (best[1], best[2]) if best is not None else None


VAR = "GIT_JOBS_NEED_"  # the shell variables a rendered `run` assigns its values to


def _quote_states(run: str) -> list[str]:
    """The quoting ("" unquoted, "'" or '"') at each offset of ``run``, as ``sh`` reads it:
    backslashes, single and double quotes, and ``$(…)`` (unquoted inside, whatever is around
    it); enough to know how to write an expansion there."""
    states: list[str] = []
    outer: list[tuple[str, int]] = []  # the contexts around each open $( … )
    state, parens, i = "", 0, 0
    while i < len(run):
        c = run[i]
        states.append(state)
        if state != "'" and c == "\\" and i + 1 < len(run):
            states.append(state)
            i += 2
            continue
        if state != "'" and run.startswith("$(", i):
            states.append(state)
            outer.append((state, parens))
            state, parens, i = "", 0, i + 2
            continue
        if state == "" and c in "'\"":
            state = c
        elif state == c:
            state = ""
        elif state == "" and c == "(":
            parens += 1
        elif state == "" and c == ")":
            if parens:
                parens -= 1
            elif outer:
                state, parens = outer.pop()
        i += 1
    return states


def render_run(run: str, values: Callable[[str, str], str | None]) -> tuple[str, list[str]]:
    """``run`` with each placeholder replaced by a quoted expansion of a shell variable, the
    variables assigned (shell-quoted) in lines put before it; and the placeholders that had no
    value (for the log; their value is ``''``).

    A value never becomes text of the script: ``"${GIT_JOBS_NEED_1}"`` expands to the value
    (unquoted, in ``$(…)``; ``${GIT_JOBS_NEED_1}`` within double quotes; inside single quotes
    it closes and reopens them: ``'…'"${GIT_JOBS_NEED_1}"'…'``), and the shell never reads an
    expansion's result as code — so even where this reading of the quotes is wrong (a
    here-document shows the quotes) a value stays data. Quoting the value
    itself into the script (``shlex.quote``) was code as soon as a placeholder was written in
    quotes: ``echo "{needs.plan.outputs.v}"`` ran a value ``$(id)``."""
    missing: list[str] = []
    names: dict[tuple[str, str], str] = {}
    assigned: list[str] = []
    states = _quote_states(run)

    def one(m: re.Match[str]) -> str:
        key = (m.group(1), m.group(2))
        if key not in names:
            value = values(*key)
            if value is None:
                missing.append(m.group(0))
                value = ""
            names[key] = f"{VAR}{len(names) + 1}"
            assigned.append(f"{names[key]}={shlex.quote(value)}\n")
        ref = f"${{{names[key]}}}"
        quoting = states[m.start()]
        return ref if quoting == '"' else f"'\"{ref}\"'" if quoting == "'" else f'"{ref}"'

    body = PLACEHOLDER.sub(one, run)
    return "".join(assigned) + body, missing


# -- a list of values for a dynamic matrix ---------------------------------------------------
MAX_LIST_TEXT = MAX_VALUE


def as_list(value: str) -> list[str]:
    """A value as a list: a JSON array of strings/integers (``["x86", "arm"]``), or words
    separated by commas and/or whitespace (``x86, arm``); :class:`ValuesError` otherwise."""
    text = value.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except (ValueError, RecursionError):  # 4 KiB of "[" nests past json's recursion limit
            raise ValuesError("not a JSON list") from None
        if not isinstance(items, list) or not all(
            isinstance(x, str | int) and not isinstance(x, bool) for x in items
        ):
            raise ValuesError("a JSON list of strings or integers is expected")
        return [str(x) for x in items]
    return [w for w in re.split(r"[\s,]+", text) if w]


class NeedValues:
    """What a node reads of its needs' values, from the ledger, as its policy trusts.

    ``of(commit, job)``: the values of the run of ``job`` at ``commit`` a dependent reads
    (:func:`lookup`: this node's pass, else a trusted node's), None before there is one. The
    policy is read at each call (it moves on fetch); when it does not validate, or there is
    none (every node would count), only this node's own values count."""

    def __init__(self, jobs: Jobs, nid: str) -> None:
        self.jobs = jobs
        self.nid = nid

    def trusts(self) -> Callable[[str], bool]:
        from ..errors import PolicyError
        from ..policy import load_policy

        try:
            policy = load_policy(self.jobs.repo)
        except PolicyError:
            return lambda nid: False
        # With no policy every node counts for `status`, but values are inputs of this node's
        # commands (as published outputs are, jobs.artifacts.trusted): then only its own.
        return (lambda nid: False) if policy.everyone else policy.trusts

    def job(self, commit: str, name: str) -> Job | None:
        return next((j for j in self.jobs.find_by_commit(commit) if j.name == name), None)

    def of(self, commit: str, name: str) -> dict[str, str] | None:
        found = lookup(self.job(commit, name), self.nid, self.trusts())
        return found[1] if found is not None else None

    def value(self, commit: str, name: str, key: str) -> str | None:
        values = self.of(commit, name)
        return None if values is None else values.get(key)

    def passed_elsewhere(self, commit: str, name: str) -> str | None:
        """Why ``name`` at ``commit`` counts as passed though this node does not serve it (a
        node its policy trusts passed it: a dependent here may run, reading its values)."""
        job = self.job(commit, name)
        if job is None:
            return None
        found = lookup(job, self.nid, self.trusts())
        if found is None or found[0] == self.nid:
            return None
        return f"passed on trusted node {found[0][:16]}…: not run here"
