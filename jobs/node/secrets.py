"""``secrets``: values from the node's configuration, given to the jobs that ask for them.

    git config --add jobs.secret PYPI_TOKEN=file:/etc/git-jobs/pypi-token
    git config --add jobs.secret DEPLOY_KEY=env:DEPLOY_KEY

    [jobs.upload]
    run = "twine upload dist/*"
    secrets = ["PYPI_TOKEN"]

Each ``jobs.secret`` value is ``NAME=file:PATH`` (the file's content, without a trailing newline)
or ``NAME=env:VAR`` (the node's environment). The name is in the value because git config
variable names cannot hold ``_`` and ignore case. A value is read when a run starts, passed in
its environment as ``NAME``, and added to the log's redaction (:mod:`.capture`), so the log
shows ``[REDACTED]`` wherever it is printed whole. The signed finish records the *names* a run
received (``secrets``, FORMAT.md), never a value.

Who gets them: a run of a commit reached through a followed branch or tag (``refs/heads/*``,
``refs/tags/*`` of a ``jobs.follow``), a revision this node's user named, or a commit a trusted
requester released that is in the history of a followed branch or tag (a rerun of ``main``, a
schedule). Never a contributor's commit — one only a requester asked for, or one of a followed
ref outside heads and tags (``refs/pull/*/head``) — unless the policy ref's ``[policy]`` says
``secrets_for_requests = true``. A job denied its secrets still runs, without them, and its log
says so.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pygit2

from ..errors import JobsError
from ..model import Evidence
from ..spec.secrets import NAME
from ..text import safe
from .candidates import REQUESTED
from .follow import FOLLOW_ROOT

CONFIG = "jobs.secret"
MAX_VALUE = 64 * 1024
MIN_REDACTED = 4  # a shorter value is not redacted (it would blank out ordinary text)
MIN_LINE = 8  # a shorter line of a value of several lines is not redacted on its own
MAX_TIPS = 1000  # followed refs looked at for a requested commit's ancestry


class SecretError(JobsError):
    """A bad ``jobs.secret`` setting, or a value that cannot be read (names the secret)."""


def sources(repo: pygit2.Repository) -> dict[str, str]:
    """{name: source} of ``jobs.secret`` (the last value of a name wins)."""
    out: dict[str, str] = {}
    try:
        values = [str(v) for v in repo.config.get_multivar(CONFIG)]
    except (KeyError, pygit2.GitError):
        values = []
    for text in values:
        name, sep, source = text.partition("=")
        if not sep or not NAME.match(name) or not source.startswith(("file:", "env:")):
            raise SecretError(f"{CONFIG}: {text[:40]!r} is not NAME=file:PATH or NAME=env:VAR")
        out[name] = source
    return out


def read(name: str, source: str) -> str:
    """The value of one secret (SecretError, naming it, when it cannot be read)."""
    kind, _, where = source.partition(":")
    if kind == "env":
        value = os.environ.get(where)
        if value is None:
            raise SecretError(f"secret {name}: environment variable {where} is not set on this node")
    else:
        try:
            with open(Path(where), "rb") as fh:
                raw = fh.read(MAX_VALUE + 1)
        except OSError as e:
            raise SecretError(f"secret {name}: cannot read {where}: {e.strerror or e}") from None
        if len(raw) > MAX_VALUE:
            raise SecretError(f"secret {name}: {where} is over {MAX_VALUE} bytes")
        value = raw.decode("utf-8", "replace").rstrip("\r\n")
    if "\0" in value:
        raise SecretError(f"secret {name}: the value holds a NUL byte")
    return value


def _followed_tips(repo: pygit2.Repository) -> list[str]:
    """Commits of the followed branches and tags (``refs/git-jobs/follow/<remote>/heads|tags/…``)."""
    out = []
    for name in repo.references:
        rest = name[len(FOLLOW_ROOT) :].split("/", 1) if name.startswith(FOLLOW_ROOT) else []
        if len(rest) == 2 and rest[1].startswith(("heads/", "tags/")):
            try:
                out.append(str(repo.references[name].peel(pygit2.Commit).id))
            except (pygit2.GitError, KeyError, ValueError):
                continue
            if len(out) >= MAX_TIPS:
                break
    return out


def on_followed(repo: pygit2.Repository, commit: str) -> bool:
    """Is ``commit`` a followed branch's or tag's tip, or in its history?"""
    for tip in _followed_tips(repo):
        try:
            if tip == commit or repo.descendant_of(tip, commit):
                return True
        except (pygit2.GitError, KeyError, ValueError):
            continue
    return False


def contributed(repo: pygit2.Repository, commit: str, source: str) -> str:
    """Why ``commit`` (reached through ``source``) is a contributor's, or "" when it is not:
    only a requester asked for it and no followed branch or tag holds it, or its followed ref
    is not a branch or tag (``refs/pull/*/head``). Caches keep such runs apart (cache.py)."""
    contributor = ""
    if source.startswith(REQUESTED):
        if not on_followed(repo, commit):
            contributor = "only a requester asked for this commit (not on a followed branch)"
    elif source.startswith(FOLLOW_ROOT):
        rest = source[len(FOLLOW_ROOT) :].split("/", 1)
        if len(rest) != 2 or not rest[1].startswith(("heads/", "tags/")):
            contributor = "its followed ref is not a branch or tag (a contributor's ref)"
    return contributor


def allowed(repo: pygit2.Repository, commit: str, source: str) -> str:
    """Why this run gets no secrets ("" when it gets them); ``source``: how it was reached."""
    contributor = contributed(repo, commit, source)
    if not contributor:
        return ""
    from ..errors import PolicyError
    from ..policy import load_repository_policy

    try:
        if load_repository_policy(repo).secrets_for_requests:
            return ""
    except PolicyError:
        pass
    return contributor + "; [policy] secrets_for_requests is not true"


@dataclass(slots=True)
class Given:
    """What one run receives: the environment, the names, and notes for its log."""

    env: dict[str, str] = field(default_factory=dict)
    names: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    def recorded(self, evidence: Evidence) -> Evidence:
        """``evidence`` with the names received in its env (``secrets``: comma-separated)."""
        if not self.names:
            return evidence
        return msgspec.structs.replace(
            evidence, env={**(evidence.env or {}), "secrets": ",".join(self.names)}
        )

    @property
    def patterns(self) -> list[re.Pattern[bytes]]:
        """Redaction patterns of the values (long enough to be told apart from text): each
        value whole and, for a value of several lines (a PEM key), each of its lines too — a
        program that prints it escaped (``repr``, JSON: ``\\n`` between the lines), indented
        or line by line between other output never shows it whole. Longest first, so a line
        is not redacted out of a whole value before the whole is."""
        texts = set()
        for v in self.env.values():
            texts.update(_pieces(v))
        kept = sorted(texts, key=lambda t: (-len(t), t))
        return [re.compile(re.escape(t.encode())) for t in kept]

    def leaks(self, values: Mapping[str, str]) -> str | None:
        """Why ``values`` (a run's ``$GIT_JOBS_OUTPUT``, signed into its finish and sent to
        every peer for good) may not be recorded: one holds a secret this run was given (whole,
        or a line of it); None when none does. Names the output and the secret, never the value."""
        for name, value in self.env.items():
            pieces = _pieces(value)
            for key, text in values.items():
                if any(p in text for p in pieces):
                    return f"output {safe(key)!r} holds the value of secret {name}"
        return None


def _pieces(value: str) -> list[str]:
    """What of a secret's value is redacted: the value, and each line of a value of several."""
    lines = [line.strip() for line in value.splitlines()] if "\n" in value.strip() else []
    return [value] * (len(value) >= MIN_REDACTED) + [line for line in lines if len(line) >= MIN_LINE]


def for_run(repo: pygit2.Repository, wanted: Sequence[str], commit: str, source: str) -> Given:
    """The secrets ``wanted`` by a job of ``commit`` (reached through ``source``)."""
    given = Given()
    if not wanted:
        return given
    why = allowed(repo, commit, source)
    if why:
        given.notes.append(f"secrets not given ({', '.join(wanted)}): {why}")
        return given
    try:
        found = sources(repo)
    except SecretError as e:
        given.notes.append(f"secrets not given: {e}")
        return given
    for name in wanted:
        if name not in found:
            given.notes.append(f"secret {name}: not configured on this node ({CONFIG})")
            continue
        try:
            given.env[name] = read(name, found[name])
        except SecretError as e:
            given.notes.append(str(e))
    given.names = tuple(sorted(given.env))
    if given.names:
        given.notes.append(f"secrets given: {', '.join(given.names)}")
    return given
