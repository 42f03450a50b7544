"""``work trigger``: ask other machines to work on the *other* commits that still need it.

Ocuroot's idea: a node does the work for its own checkout (``work any``) and, for every other
commit with outstanding work, calls the ``[trigger] run`` command of *that commit's*
definitions once — typically a webhook that starts a CI machine for it. A failing trigger is
reported and the others still run; a commit whose definitions have no ``[trigger]`` is skipped,
not a failure. The trigger is code from the commit, so only :mod:`.candidates` choose the
commits (followed refs, the node's branches and remote-tracking branches, trusted requests —
never a commit that merely arrived) and it runs isolated like a job (:mod:`.isolation`).
``--intent`` limits the candidates to branch tips.
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import pygit2

from ..errors import DefinitionError
from ..spec.durations import format_duration
from ..text import safe
from .candidates import branches, followed, ordered, requested
from .checkout import remove_tree
from .follow import Follow
from .isolation import Scratch
from .plan import WORK, Action
from .process import kill
from .work import Workshop

TRIGGER_TIMEOUT = 120.0


@dataclass(slots=True)
class Triggered:
    commit: str
    ok: bool
    detail: str
    command: str = ""
    triggered: bool = True

    def line(self) -> str:
        status = "triggered" if self.ok and self.triggered else "untriggered" if self.ok else "FAILED   "
        return f"{status} {self.commit[:12]}  {safe(self.detail)}"  # the detail quotes the commit


def candidates(
    workshop: Workshop,
    *,
    intent: bool,
    follows: Iterable[Follow] = (),
    depth: int = 1,
    requesters: Collection[str] = (),
) -> list[str]:
    """Commits to consider, newest first, except HEAD: local branch tips and followed tips, plus
    (without ``intent``) the followed tips' ancestors to ``depth`` and trusted requests."""
    repo = workshop.jobs.repo
    found = branches(repo) + followed(repo, follows, 1)
    if not intent:
        found += followed(repo, follows, depth) + requested(workshop.jobs, requesters)
    try:
        head = str(repo.head.peel(pygit2.Commit).id)
    except (pygit2.GitError, KeyError, ValueError):
        head = ""
    return [c.commit for c in ordered(found, repo) if c.commit != head]


def trigger(
    workshop: Workshop,
    *,
    intent: bool = False,
    out: Callable[[str], None] | None = None,
    commits: Iterable[str] | None = None,
    timeout: float = TRIGGER_TIMEOUT,
    follows: Iterable[Follow] = (),
    depth: int = 1,
    requesters: Collection[str] = (),
) -> list[Triggered]:
    """Run each outstanding commit's trigger once; returns one result per commit considered."""
    say = out or (lambda line: None)
    results: list[Triggered] = []
    chosen = commits
    if chosen is None:
        chosen = candidates(workshop, intent=intent, follows=follows, depth=depth, requesters=requesters)
    for commit in chosen:
        try:
            _, defs = workshop.definitions(commit)
        except DefinitionError as e:
            results.append(Triggered(commit, False, str(e)))
            say(results[-1].line())
            continue
        if defs is None:
            continue
        pending = [p.name for p in workshop.plan(defs) if p.action in WORK or p.action == Action.BLOCKED]
        if not pending:
            continue
        if not defs.trigger:
            results.append(
                Triggered(
                    commit,
                    True,
                    f"outstanding work ({', '.join(pending)}); its .git-jobs.toml has no [trigger]",
                    triggered=False,
                )
            )
            say(results[-1].line())
            continue
        command = defs.trigger.replace("{commit}", shlex.quote(commit))
        results.append(_run(workshop, commit, command, pending, timeout))
        say(results[-1].line())
    return results


def _run(workshop: Workshop, commit: str, command: str, pending: list[str], timeout: float) -> Triggered:
    """Run one trigger command isolated like a job: scratch directory, HOME and environment."""
    isolation = workshop.isolation
    isolation.check()
    scratch = Scratch(Path(tempfile.mkdtemp(prefix="git-jobs-trigger-")))
    try:
        scratch.make()
        env = isolation.environment(scratch, {"GIT_JOBS_COMMIT": commit, "GIT_JOBS_NODE": workshop.nid})
        # its own session, under the reaper: what it leaves running is killed when it ends
        with subprocess.Popen(
            isolation.command(["sh", "-c", command], scratch, scratch.root, grace=workshop.kill_grace / 2),
            cwd=scratch.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        ) as proc:
            try:
                stdout, stderr = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill(proc, workshop.kill_grace)  # SIGTERM its group (the reaper ends the rest), then SIGKILL
                proc.communicate()
                return Triggered(commit, False, f"timed out after {format_duration(timeout)}", command)
        done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    except OSError as e:
        return Triggered(commit, False, f"cannot start: {e.strerror or e}", command)
    finally:
        remove_tree(scratch.root)
    if done.returncode == 0:
        return Triggered(commit, True, f"jobs: {', '.join(pending)}", command)
    tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or [""]
    return Triggered(commit, False, f"exit status {done.returncode}: {tail[0]}".rstrip(": "), command)
