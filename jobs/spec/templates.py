"""URL templates from ``.git-jobs.toml``: ``{name}`` placeholders and nothing else.

The template comes from the repository, i.e. from anyone who can push a commit, so it is
peer data. ``str.format`` would honour format specs (``{run_id:>999999999}`` allocates a
gigabyte) and attribute access (``{run_id.__class__}``); here only bare, known names are
allowed, and the output is built by concatenation.
"""

from __future__ import annotations

import string
from collections.abc import Mapping

MAX_TEMPLATE = 2048


class TemplateError(ValueError):
    """The template uses an unknown placeholder, a format spec, or is too long."""


def render(template: str, values: Mapping[str, object]) -> str:
    """Substitute ``{name}`` placeholders (``{{``/``}}`` are literal braces)."""
    if len(template) > MAX_TEMPLATE:
        raise TemplateError(f"longer than {MAX_TEMPLATE} characters")
    out: list[str] = []
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise TemplateError(str(e)) from None
    for literal, field, spec, conversion in parts:
        out.append(literal)
        if field is None:
            continue
        if field not in values:
            names = ", ".join("{" + n + "}" for n in values)
            raise TemplateError(f"unknown placeholder {{{field}}} (use {names})")
        if spec or conversion:
            raise TemplateError(f"placeholder {{{field}}} takes no format spec or conversion")
        out.append(str(values[field]))
    return "".join(out)
