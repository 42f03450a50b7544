"""A node's own settings: git config of its repository, overridden by command-line flags.

Everything that decides *what* a node runs and *how* lives here, on the node — never in the
commit under test::

    [jobs]
        remote = origin                  # sync with (repeatable); --remote
        follow = refs/heads/main         # build these refs' tips (repeatable); --follow
        follow = origin:refs/pull/*/head #   R:SPEC follows on R only
        depth = 1                        # first-parent commits per followed tip; --depth
        interval = 30s                   # --interval
        isolation = bwrap                # bwrap | none (a person's choice); --isolation
        network = true                   # false: jobs get no network (bwrap only)
        requestNetwork = false           # true: work only a requester asked for gets it too
        maxProcesses = 4096              # RLIMIT_NPROC of a job (0: none)
        maxFileSize = 4g                 # RLIMIT_FSIZE of a job (0: none)
        tmpSize = 512m                   # the sandbox's /tmp tmpfs
        sandboxPath = /opt/toolchain     # also visible, read-only, in the sandbox (repeatable)
        sandboxHide = /srv/secrets       # never visible in the sandbox (repeatable)
        passEnv = CARGO_HOME             # also passed to jobs (repeatable)
        parallel = 2                     # jobs at once; --jobs
        resources = gpu=1,db=2           # resource capacities (repeatable); --resource
        labels = gpu                     # labels beside the detected OS/arch (repeatable); --label
        maxTimeout = 6h                  # no job runs longer (caps its timeout; at most 7d)
        lostGrace = 10m                  # readers: a started run is lost this long past its deadline
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pygit2

from ..deadline import DEFAULT_TIMEOUT, MAX_TIMEOUT
from ..errors import JobsError
from ..spec.durations import DurationError, parse_duration
from ..spec.labels import node_labels
from .candidates import MAX_DEPTH
from .follow import Follow, parse_follow
from .slots import parse_parallel, parse_resources


class ConfigError(JobsError):
    """A node setting (git config or flag) that is not valid."""


@dataclass(slots=True)
class NodeConfig:
    remotes: list[str] = field(default_factory=list)
    follows: list[Follow] = field(default_factory=list)
    depth: int = 1
    interval: float = 30.0
    isolation: str | None = None
    parallel: int = 1
    resources: dict[str, int] = field(default_factory=dict)
    labels: frozenset[str] = frozenset()


def _get(repo: pygit2.Repository, name: str) -> str | None:
    try:
        return str(repo.config[name])
    except (KeyError, pygit2.GitError):
        return None


def _multi(repo: pygit2.Repository, name: str) -> list[str]:
    try:
        return [str(v) for v in repo.config.get_multivar(name)]
    except (KeyError, pygit2.GitError):
        return []


def parse_depth(text: str | int) -> int:
    try:
        depth = int(text)
    except ValueError:
        raise ConfigError(f"depth: {text!r} is not a number") from None
    if not 1 <= depth <= MAX_DEPTH:
        raise ConfigError(f"depth: must be from 1 to {MAX_DEPTH}, not {depth}")
    return depth


def load_config(
    repo: pygit2.Repository,
    *,
    remotes: Sequence[str] | None = None,
    follows: Sequence[str] | None = None,
    depth: str | int | None = None,
    interval: str | None = None,
    isolation: str | None = None,
    parallel: str | int | None = None,
    resources: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
) -> NodeConfig:
    """The node's settings: each flag given replaces the git config value(s) of that name."""
    chosen = list(remotes) if remotes else _multi(repo, "jobs.remote")
    specs = list(follows) if follows else _multi(repo, "jobs.follow")
    fallback = chosen or (["origin"] if "origin" in repo.remotes.names() else [])
    out: list[Follow] = []
    for spec in specs:
        for f in parse_follow(spec, fallback):
            if f not in out:
                out.append(f)
    raw_interval = interval or _get(repo, "jobs.interval") or "30s"
    try:
        seconds = parse_duration(raw_interval)
    except DurationError as e:
        raise ConfigError(f"interval: {e}") from None
    raw_depth = depth if depth is not None else _get(repo, "jobs.depth") or 1
    chosen_isolation = isolation or _get(repo, "jobs.isolation")
    slots = slots_config(repo, parallel, resources)
    found = labels_config(repo, labels)
    return NodeConfig(chosen, out, parse_depth(raw_depth), seconds, chosen_isolation, *slots, found)


MAX_TIMEOUT_KEY = "jobs.maxTimeout"


def max_timeout(repo: pygit2.Repository, override: str | None = None) -> float:
    """``jobs.maxTimeout``: the longest any job runs on this node (default 6 hours, at most 7
    days); a job's ``timeout`` above it, or none, is capped to it."""
    raw = override if override is not None else _get(repo, MAX_TIMEOUT_KEY)
    if raw is None:
        return float(DEFAULT_TIMEOUT)
    try:
        seconds = parse_duration(raw)
    except DurationError as e:
        raise ConfigError(f"maxTimeout: {e}") from None
    if seconds > MAX_TIMEOUT:
        raise ConfigError(f"maxTimeout: at most 7d (what a run may promise), not {raw!r}")
    return seconds


def labels_config(repo: pygit2.Repository, labels: Sequence[str] | None = None) -> frozenset[str]:
    """Detected labels plus ``--label`` (else git config ``jobs.labels``)."""
    return node_labels(list(labels) if labels else _multi(repo, "jobs.labels"))


def slots_config(
    repo: pygit2.Repository, parallel: str | int | None = None, resources: Sequence[str] | None = None
) -> tuple[int, dict[str, int]]:
    """``--jobs`` / ``jobs.parallel`` and ``--resource`` / ``jobs.resources`` (flags win)."""
    raw = parallel if parallel is not None else _get(repo, "jobs.parallel") or 1
    specs = list(resources) if resources else _multi(repo, "jobs.resources")
    return parse_parallel(raw), parse_resources(specs)
