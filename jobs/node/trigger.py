"""``work trigger``: ask other machines to work on the *other* commits that still need it.

Ocuroot's idea: a node does the work for its own checkout (``work any``) and, for every other
commit with outstanding work, calls the ``[trigger] run`` command of *that commit's*
definitions once — typically a webhook that starts a CI machine for it. A failing trigger is
reported and the others still run. ``--intent`` limits the candidates to branch tips.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pygit2

from ..errors import DefinitionError
from .durations import format_duration
from .work import WORK, Workshop

TRIGGER_TIMEOUT = 120.0


@dataclass(slots=True)
class Triggered:
    commit: str
    ok: bool
    detail: str
    command: str = ""

    def line(self) -> str:
        return f"{'triggered' if self.ok else 'FAILED   '} {self.commit[:12]}  {self.detail}"


def _branch_tips(repo: pygit2.Repository) -> list[str]:
    out = []
    for name in repo.references:
        if name.startswith("refs/heads/"):
            try:
                out.append(str(repo.references[name].peel(pygit2.Commit).id))
            except (pygit2.GitError, KeyError, ValueError):
                continue
    return out


def candidates(workshop: Workshop, *, intent: bool) -> list[str]:
    """Commits to consider: branch tips, plus (without ``intent``) every commit with jobs."""
    repo = workshop.jobs.repo
    seen: dict[str, None] = dict.fromkeys(_branch_tips(repo))
    if not intent:
        for job in workshop.jobs.all():
            seen.setdefault(job.commit, None)
    try:
        head = str(repo.head.peel(pygit2.Commit).id)
    except (pygit2.GitError, KeyError, ValueError):
        head = ""
    return [c for c in seen if c != head and c in repo]


def trigger(
    workshop: Workshop,
    *,
    intent: bool = False,
    out: Callable[[str], None] | None = None,
    commits: Iterable[str] | None = None,
    timeout: float = TRIGGER_TIMEOUT,
) -> list[Triggered]:
    """Run each outstanding commit's trigger once; returns one result per commit considered."""
    say = out or (lambda line: None)
    results: list[Triggered] = []
    repo = workshop.jobs.repo
    for commit in commits if commits is not None else candidates(workshop, intent=intent):
        try:
            _, defs = workshop.definitions(commit)
        except DefinitionError as e:
            results.append(Triggered(commit, False, str(e)))
            say(results[-1].line())
            continue
        if defs is None:
            continue
        pending = [p.name for p in workshop.plan(defs) if p.action in WORK or p.action == "blocked"]
        if not pending:
            continue
        if not defs.trigger:
            results.append(Triggered(commit, False, f"outstanding work ({', '.join(pending)}) but "
                                     "no [trigger] run in its .git-jobs.toml"))
            say(results[-1].line())
            continue
        command = defs.trigger.replace("{commit}", shlex.quote(commit))
        cwd = repo.workdir or repo.path
        try:
            done = subprocess.run(
                ["sh", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                stdin=subprocess.DEVNULL, check=False,
                # the command comes from a commit's tree: it gets no pointer to our key
                env={k: v for k, v in os.environ.items() if k != "GIT_JOBS_KEY"},
            )
        except subprocess.TimeoutExpired:
            results.append(Triggered(commit, False, f"timed out after {format_duration(timeout)}", command))
        except OSError as e:
            results.append(Triggered(commit, False, f"cannot start: {e.strerror or e}", command))
        else:
            if done.returncode == 0:
                results.append(Triggered(commit, True, f"jobs: {', '.join(pending)}", command))
            else:
                tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or [""]
                results.append(Triggered(
                    commit, False, f"exit status {done.returncode}: {tail[0]}".rstrip(": "), command
                ))
        say(results[-1].line())
    return results
