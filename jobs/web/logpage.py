"""One page of a log: at most :data:`MAX_PAGE_LINES` lines and :data:`MAX_PAGE_BYTES` of text.

A log is the commit under test's output, so its shape is hostile too: 2 MiB of newlines is two
million lines, and one anchor per line made 162 MB of HTML. A run page therefore renders one
window of the log — by default its end, where a failure is — and links to the windows before
and after it (``run-<job>-<run>-L<first line>.html``); a line longer than
:data:`MAX_LINE_CHARS` is shown cut, with a note. What one page costs is bounded whatever the
log holds; the whole log stays one ``git jobs logs`` away.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ansi import render_lines

MAX_PAGE_LINES = 1000
MAX_PAGE_BYTES = 256 * 1024  # characters of log text rendered on one page
MAX_LINE_CHARS = 16 * 1024  # a longer line is cut on the page


@dataclass(frozen=True, slots=True)
class LogWindow:
    """Lines ``first``..``last`` (1-based) of ``total``, rendered; the neighbours' first lines."""

    html: str
    first: int
    last: int
    total: int
    before: int | None  # first line of the window before this one
    after: int | None  # first line of the window after this one


def _cost(line: str) -> int:
    return min(len(line), MAX_LINE_CHARS) + 1


def _forward(lines: list[str], start: int) -> int:
    """The last line (1-based) of the window that starts at ``start``."""
    end, budget = start - 1, MAX_PAGE_BYTES
    while end < len(lines) and end - start + 1 < MAX_PAGE_LINES:
        cost = _cost(lines[end])
        if end >= start and cost > budget:
            break
        budget -= cost
        end += 1
    return max(end, start)


def _backward(lines: list[str], last: int) -> int:
    """The first line (1-based) of the window that ends at ``last``."""
    first, budget = last + 1, MAX_PAGE_BYTES
    while first > 1 and last - first + 1 < MAX_PAGE_LINES:
        cost = _cost(lines[first - 2])
        if first <= last and cost > budget:
            break
        budget -= cost
        first -= 1
    return min(first, last)


def window(text: str, start: int | None = None) -> LogWindow:
    """The window of ``text`` that starts at line ``start`` (default: the one that ends the
    log); a start past the end shows the last window."""
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    total = len(lines)
    if total == 0:
        return LogWindow("", 0, 0, 0, None, None)
    if start is None or start > total:
        last = total
        first = _backward(lines, last)
    else:
        first = max(1, start)
        last = _forward(lines, first)
    shown = []
    for n in range(first, last + 1):
        line = lines[n - 1]
        if len(line) > MAX_LINE_CHARS:
            line = f"{line[:MAX_LINE_CHARS]}… [git-jobs: line cut here: {len(line)} characters]"
        shown.append((n, line))
    before = _backward(lines, first - 1) if first > 1 else None
    after = last + 1 if last < total else None
    return LogWindow(render_lines(shown), first, last, total, before, after)
