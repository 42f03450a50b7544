"""Peer- and commit-derived text made safe for a person to read.

Anything a peer signed (log URLs, job names, rejection reasons quoting their fields) or a
commit carries (subjects, definitions) can hold terminal escapes: ESC sequences set the window
title or clear the screen, C1 controls such as U+009B act as CSI on many terminals, and bidi
overrides (U+202E) make text read differently from what it is. Every such string goes through
:func:`safe` before it is printed for a person (terminal or HTML alike, before HTML escaping),
and :func:`unsafe_chars` lets writers and validators refuse them outright.
"""

from __future__ import annotations

import unicodedata

# Bidirectional formatting characters (Unicode TR9): embeddings, overrides, isolates, marks.
_BIDI = frozenset("\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def is_unsafe(ch: str) -> bool:
    """A character that changes how a terminal or a reader interprets the text around it.

    C0 and C1 controls, DEL, bidi formatting, line/paragraph separators and every other
    invisible format character (category Cf, e.g. zero-width joiners) or unassigned/surrogate
    code point (Cn, Cs).
    """
    if ch in _BIDI:
        return True
    return unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def unsafe_chars(text: str) -> list[str]:
    """The unsafe characters of ``text`` as ``U+XXXX`` labels (empty when it is clean)."""
    return [f"U+{ord(ch):04X}" for ch in text if is_unsafe(ch)]


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` with every unsafe character shown as a visible escape (``\\x1b``, ``\\u202e``).

    A backslash is left as it is: the point is that nothing invisible reaches the terminal,
    not a reversible encoding. ``keep_newlines`` keeps ``\\n`` (and tabs) for multi-line
    output such as logs; everything else is escaped.
    """
    s = str(text)
    if s.isascii() and s.isprintable():
        return s
    keep = "\n\t" if keep_newlines else ""
    return "".join(ch if (ch in keep or not is_unsafe(ch)) else _escape(ch) for ch in s)
