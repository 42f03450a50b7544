"""``runs_on``: which nodes may serve a job, by labels.

A job lists the labels it needs (``runs_on = ["linux", "gpu"]``); a node has some it detects
(its OS and architecture, e.g. ``linux``, ``x86_64`` — with the aliases ``amd64``/``x64``, or
``aarch64``/``arm64``) and the ones its owner gives it (``--label gpu`` or git config
``jobs.labels``). A node lacking one leaves the job for others and records nothing about it:
"cannot serve" is not a result.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Iterable

from ..errors import JobsError

LABEL = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")
MAX_LABELS = 16  # per job
_ALIASES = {
    "x86_64": ("amd64", "x64"),
    "amd64": ("x86_64", "x64"),
    "aarch64": ("arm64",),
    "arm64": ("aarch64",),
}


class LabelError(JobsError):
    """A node label given by the user is not valid."""


def detected() -> frozenset[str]:
    """This machine's OS and architecture (lowercase), with the usual aliases."""
    system, machine = platform.system().lower(), platform.machine().lower()
    found = {system, machine, *_ALIASES.get(machine, ())}
    return frozenset(x for x in found if LABEL.match(x))


def node_labels(given: Iterable[str] = ()) -> frozenset[str]:
    """The detected labels plus ``given`` (each may be a comma-separated list)."""
    out = set(detected())
    for spec in given:
        for label in filter(None, (s.strip() for s in spec.split(","))):
            if not LABEL.match(label):
                raise LabelError(f"a label is 1-32 of a-z 0-9 _ . - (alphanumeric first), not {label[:40]!r}")
            out.add(label)
    return frozenset(out)
