"""Field rules shared by several ops, and by readers of names and URLs outside the ledger
(the definitions, the policy, the store's writers): one check per kind of value."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

from ..text import safe, unsafe_chars

MAX_NAME = 100
MAX_URL = 2048
# Single spaces, parentheses, `=` and `,` are allowed for matrix jobs: `test (os=linux, py=3.12)`.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+=(),-]*(?: [A-Za-z0-9._/+=(),-]+)*$")


def check_name(name: str) -> str | None:
    """Why ``name`` is not a valid job name, or None."""
    if not isinstance(name, str) or not name:
        return "a job name must not be empty"
    if len(name) > MAX_NAME:
        return f"a job name has at most {MAX_NAME} characters"
    if not _NAME.fullmatch(name) or ".." in name or name.endswith("/"):
        return (
            f"invalid job name {safe(name)!r}"
            " (letters, digits, . _ / + = ( ) , - and single inner spaces; starting with a letter or digit)"
        )
    return None


_PRINTABLE = re.compile(r"[!-~]+")
# What nearly every log URL and run id is, checked without building urlsplit / uuid.UUID
# objects (a cold listing checks 100,000 of each); anything else takes the full checks below.
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:[/?#][!-~]*)?")
_UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def check_log_url(url: str) -> str | None:
    """Why ``url`` is not an absolute log URL, or None."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        return "a log URL must be a non-empty string of at most 2048 characters"
    # Printable ASCII without spaces (nearly every URL) has nothing to look for character by
    # character: a fold checks every run's URL, 100,000 of them in a cold listing.
    printable = _PRINTABLE.fullmatch(url) is not None
    if printable and _PLAIN_URL.fullmatch(url):
        return None
    bad = [] if printable else unsafe_chars(url)
    if bad or (not printable and any(c.isspace() for c in url)):
        # C1 controls (U+009B acts as CSI) and bidi overrides (U+202E) would reach a terminal
        # or a web page through every reader; such a change is rejected, not escaped later.
        shown = ", ".join(bad[:5]) if bad else "whitespace"
        return f"a log URL must not contain spaces, control or bidi characters ({shown})"
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"not a URL: {url!r}"
    if not parts.scheme or not re.fullmatch(r"[a-z][a-z0-9+.-]*", parts.scheme):
        return f"not an absolute URL (no scheme): {url!r}"
    if parts.scheme == "file":
        if not parts.path.startswith("/"):
            return f"a file: log URL needs an absolute path: {url!r}"
    elif not parts.netloc:
        return f"not an absolute URL (no host): {url!r}"
    return None


def check_run_id(run_id: str) -> str | None:
    """Why ``run_id`` is not a canonical uuid7 string, or None."""
    if isinstance(run_id, str) and _UUID7.fullmatch(run_id):
        return None
    try:
        parsed = uuid.UUID(run_id)
    except (ValueError, TypeError, AttributeError):
        return f"run id {run_id!r} is not a UUID"
    if str(parsed) != run_id:
        return f"run id {run_id!r} is not in canonical form"
    if parsed.version != 7:
        return f"run id {run_id} is not a uuid7"
    return None
