"""``{needs.JOB.outputs.KEY}``: a job reads what a job it needs wrote to ``$GIT_JOBS_OUTPUT``.

The placeholder's syntax and its checks when a file is read are the language's; the values
themselves come from the ledger at run time (:mod:`jobs.node.values`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..text import safe

# {needs.JOB.outputs.KEY}: JOB as a definition's name (no spaces), KEY as above.
PLACEHOLDER = re.compile(
    r"\{needs\.([A-Za-z0-9][A-Za-z0-9._/+-]{0,99})\.outputs\.([A-Za-z_][A-Za-z0-9_-]{0,63})\}"
)
_LOOSE = re.compile(r"\{needs\.[^{}]{0,200}\}")  # anything that looks meant as one (for errors)


def needed(text: str) -> list[tuple[str, str]]:
    """Every ``(job, key)`` the text's ``{needs.JOB.outputs.KEY}`` placeholders name."""
    return [(m.group(1), m.group(2)) for m in PLACEHOLDER.finditer(text)]


def check_placeholders(text: str, needs: Iterable[str]) -> str | None:
    """Why the text's ``{needs…}`` placeholders are wrong (a malformed one, or a job that is
    not one of ``needs``), or None."""
    wanted = set(needs)
    for m in _LOOSE.finditer(text):
        p = PLACEHOLDER.fullmatch(m.group(0))
        if p is None:
            return f"placeholder {safe(m.group(0)[:60])} must be {{needs.JOB.outputs.NAME}}"
        if p.group(1) not in wanted:
            return f"placeholder {m.group(0)} reads {p.group(1)!r}, which is not in this job's needs"
    return None
