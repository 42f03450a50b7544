"""Human durations (``30s``, ``20m``, ``1h30m``, ``250ms``) as used in definitions and flags.

One parser for both so that a timeout in ``.git-jobs.toml`` and ``--interval`` accept the same
spellings. A bare number (TOML int or float, or a digits-only string) means seconds.
"""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$")


class DurationError(ValueError):
    """Not a duration; the message says what is accepted."""


MAX_DURATION = 366 * 24 * 3600.0  # no timeout or interval is longer than a year


def parse_duration(value: object) -> float:
    """Seconds (> 0) from ``"20m"``, ``"1h30m"``, ``"0.2s"``, ``"250ms"`` or a number."""
    if isinstance(value, bool):
        raise DurationError(f"invalid duration {value!r} (use e.g. 30s, 20m, 1h)")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif _WHOLE.match(text):
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
        else:
            raise DurationError(f"invalid duration {value!r} (use e.g. 30s, 20m, 1h30m, 250ms)")
    else:
        raise DurationError(f"invalid duration {value!r} (use e.g. 30s, 20m, 1h)")
    if not math.isfinite(seconds) or seconds <= 0:
        raise DurationError(f"invalid duration {value!r} (must be a finite number greater than zero)")
    if seconds > MAX_DURATION:
        raise DurationError(f"invalid duration {value!r} (at most 366 days)")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human form: ``1.5s``, ``2m5s``, ``1h``."""
    if seconds < 60:
        return f"{seconds:.3g}s" if seconds < 10 else f"{seconds:.0f}s"
    whole = round(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((h, "h"), (m, "m"), (s, "s")) if n) or "0s"
