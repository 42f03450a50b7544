"""A log with ANSI colours, as HTML that cannot run anything.

A log is written by the commit under test: every byte of it is hostile. Only SGR sequences
(``ESC [ … m``) are interpreted, and only into a fixed set of CSS classes (the 16 colours, bold,
dim, italic, underline); every other escape sequence is dropped, every other control character
shown visibly (:func:`jobs.text.safe`), and all text is HTML-escaped. No colour value from the
log ever reaches an attribute: 256-colour and true-colour codes map to the nearest of the 16
classes or to nothing. Each line gets an anchor (``#L12``) so a maintainer can link to it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

from ..text import safe

# CSI sequences (ESC [ params intermediates final) and other ESC sequences (OSC up to BEL/ST).
_ESCAPE = re.compile(
    r"\x1b\[([0-9;:?]*)[ -/]*([@-~])"  # CSI: SGR when final is "m"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC (window titles, hyperlinks): dropped
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes: dropped
)
_FLAGS = {1: "b", 2: "d", 3: "i", 4: "u"}
_UNSET = {22: ("b", "d"), 23: ("i",), 24: ("u",)}


class _Pen:
    """The current SGR state: foreground, background (0-15) and flags."""

    def __init__(self) -> None:
        self.fg: int | None = None
        self.bg: int | None = None
        self.flags: set[str] = set()

    def classes(self) -> str:
        out = sorted(self.flags)
        if self.fg is not None:
            out.append(f"f{self.fg}")
        if self.bg is not None:
            out.append(f"g{self.bg}")
        return " ".join(out)

    def apply(self, params: str) -> None:
        # at most 3 digits: a longer number is no colour (and int() of thousands of digits raises)
        parts = re.split("[;:]", params) if params else ["0"]
        codes = [int(p) if p.isdigit() and len(p) <= 3 else 0 for p in parts]
        i = 0
        while i < len(codes):
            i = self._one(codes, i)

    def _one(self, codes: list[int], i: int) -> int:
        c = codes[i]
        if c == 0:
            self.fg, self.bg, self.flags = None, None, set()
        elif c in _FLAGS:
            self.flags.add(_FLAGS[c])
        elif c in _UNSET:
            self.flags.difference_update(_UNSET[c])
        elif 30 <= c <= 37 or 90 <= c <= 97:
            self.fg = c - 30 if c < 90 else c - 90 + 8
        elif 40 <= c <= 47 or 100 <= c <= 107:
            self.bg = c - 40 if c < 100 else c - 100 + 8
        elif c == 39:
            self.fg = None
        elif c == 49:
            self.bg = None
        elif c in (38, 48):
            return self._extended(codes, i)
        return i + 1

    def _extended(self, codes: list[int], i: int) -> int:
        """``38;5;N`` / ``38;2;R;G;B``: only palette entries 0-15 keep a colour."""
        mode = codes[i + 1] if i + 1 < len(codes) else None
        colour = None
        if mode == 5 and i + 2 < len(codes):
            n = codes[i + 2]
            colour = n if n < 16 else None
            end = i + 3
        elif mode == 2:
            end = i + 5
        else:
            end = i + 2
        if codes[i] == 38:
            self.fg = colour
        else:
            self.bg = colour
        return end


def _span(text: str, classes: str) -> str:
    body = html.escape(safe(text, keep_newlines=False), quote=False)
    return f'<span class="{classes}">{body}</span>' if classes else body


def render_line(line: str, pen: _Pen) -> str:
    """One line of the log as escaped HTML; ``pen`` carries colour on to the next line."""
    out: list[str] = []
    pos = 0
    for m in _ESCAPE.finditer(line):
        if m.start() > pos:
            out.append(_span(line[pos : m.start()], pen.classes()))
        if m.group(2) == "m":
            pen.apply(m.group(1) or "")
        pos = m.end()
    if pos < len(line):
        out.append(_span(line[pos:], pen.classes()))
    return "".join(out)


def to_html(text: str) -> str:
    """The whole log: one ``<span class="l" id="L{n}">`` per line with a link to itself."""
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return render_lines(enumerate(lines, 1))


def render_lines(numbered: Iterable[tuple[int, str]]) -> str:
    """Numbered lines, each a ``<span class="l" id="L{n}">`` with a link to itself."""
    pen = _Pen()
    out = []
    for n, line in numbered:
        # A carriage return redraws the line (progress bars): keep what was drawn last.
        shown = line.rsplit("\r", 1)[-1] if "\r" in line else line
        out.append(
            f'<span class="l" id="L{n}"><a class="n" href="#L{n}">{n}</a>{render_line(shown, pen)}</span>\n'
        )
    return "".join(out)
