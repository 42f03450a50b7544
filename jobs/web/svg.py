"""A node's pass rate over time as a small inline SVG: no script, no external asset, no style.

Only numbers the page computed and day labels it formatted go into the SVG (escaped all the
same); colours are presentation attributes from a fixed palette, so the strict
Content-Security-Policy (no inline ``style``) holds.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 640
HEIGHT = 140
PAD = 28


@dataclass(frozen=True, slots=True)
class Point:
    """One period (a UTC day): runs that passed out of those that finished with a verdict."""

    label: str
    passed: int
    total: int

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else 0.0


def chart(points: Sequence[Point]) -> str:
    """Bars of the pass rate per period, with the runs counted in each bar's tooltip."""
    if not points:
        return '<p class="muted">No finished runs yet.</p>'
    n = len(points)
    inner_w = WIDTH - 2 * PAD
    inner_h = HEIGHT - 2 * PAD
    step = inner_w / n
    bar = max(1.0, step * 0.8)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}"'
        ' role="img" aria-label="pass rate over time" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{PAD}" y1="{PAD}" x2="{WIDTH - PAD}" y2="{PAD}" stroke="#ccc"/>',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#888"/>',
        f'<text x="2" y="{PAD + 4}" font-size="10" fill="#666">100%</text>',
        f'<text x="8" y="{HEIGHT - PAD + 4}" font-size="10" fill="#666">0%</text>',
    ]
    for i, p in enumerate(points):
        h = inner_h * p.rate
        x = PAD + i * step + (step - bar) / 2
        y = HEIGHT - PAD - h
        fill = "#2da44e" if p.rate >= 0.999 else ("#d29922" if p.rate >= 0.5 else "#cf222e")
        tip = html.escape(f"{p.label}: {p.passed}/{p.total} passed ({p.rate:.0%})")
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{max(h, 1.0):.1f}"'
            f' fill="{fill}"><title>{tip}</title></rect>'
        )
    first, last = html.escape(points[0].label), html.escape(points[-1].label)
    parts.append(f'<text x="{PAD}" y="{HEIGHT - 8}" font-size="10" fill="#666">{first}</text>')
    parts.append(
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" font-size="10" fill="#666" text-anchor="end">{last}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
