"""The shape of the names cob reads from peers and from its own files: object ids, type names.

A leaf module: everything that parses a ref, an index entry or a log line uses these, so they
import nothing of cob.
"""

from __future__ import annotations

import re

_HEX = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_TYPENAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,127}$")


def is_oid(text: str) -> bool:
    """A full SHA-1 or SHA-256 object id in lower-case hex."""
    return bool(_HEX.fullmatch(text))


def is_typename(text: str) -> bool:
    """A type name (reverse-DNS, e.g. ``org.example.issue``): also a ref path segment."""
    return bool(_TYPENAME.match(text))
