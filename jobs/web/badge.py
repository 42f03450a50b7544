"""A branch's badge: an SVG saying whether its tip passes the gate, to link from a README.

The word comes from the gate verdict of the branch's tip (:func:`jobs.gate.gate_status`, the
one computation `git jobs status` makes): ``passing`` (succeeded), ``failing`` (failed or not
built), ``pending``, ``no jobs`` (nothing required). The branch name is the only string from
outside and is escaped; colours are presentation attributes (no ``style``), no script, no
external asset — it renders under the site's strict CSP and as an ``<img>`` anywhere.
"""

from __future__ import annotations

import html
from typing import Any

from ..errors import JobsError
from ..gate import gate_status
from ..history import span
from ..store import Jobs

LABEL = "git jobs"
# gate outcome -> (word, colour)
WORDS: dict[str, tuple[str, str]] = {
    "succeeded": ("passing", "#2da44e"),
    "failed": ("failing", "#cf222e"),
    "not_built": ("failing", "#cf222e"),
    "pending": ("pending", "#bf8700"),
    "none": ("no jobs", "#6e7781"),
}
UNKNOWN = ("unknown", "#6e7781")  # the branch does not exist (here)
CHAR_W = 7  # px per character of 11px Verdana, rounded up: the box never cuts a word
PAD = 6


def badge_data(store: Jobs, ref: str | None) -> dict[str, Any]:
    """``{"branch", "tip", "outcome", "word"}`` of the branch (None: the current one)."""
    try:
        where = span(store, ref)
    except JobsError:
        return {"branch": ref, "tip": None, "outcome": None, "word": UNKNOWN[0]}
    outcome = gate_status(store, where.tip, store.policy()).outcome
    return {
        "branch": where.label,
        "tip": where.tip,
        "outcome": outcome,
        "word": WORDS.get(outcome, UNKNOWN)[0],
    }


def badge_svg(value: dict[str, Any]) -> str:
    """The badge of :func:`badge_data`'s value, as a standalone SVG document."""
    word, colour = WORDS.get(value.get("outcome") or "", UNKNOWN)
    left = len(LABEL) * CHAR_W + 2 * PAD
    right = len(word) * CHAR_W + 2 * PAD
    width = left + right
    branch = value.get("branch") or "?"
    title = html.escape(f"{LABEL}: {branch}: {word}")
    esc_label, esc_word = html.escape(LABEL), html.escape(word)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20"'
        f' viewBox="0 0 {width} 20" role="img" aria-label="{title}">'
        f"<title>{title}</title>"
        f'<rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        '<g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11"'
        ' text-anchor="middle">'
        f'<text x="{left / 2:g}" y="14">{esc_label}</text>'
        f'<text x="{left + right / 2:g}" y="14" data-outcome="{html.escape(str(value.get("outcome")))}"'
        f">{esc_word}</text>"
        "</g></svg>\n"
    )
