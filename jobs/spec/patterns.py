"""µTask's retry delay patterns: how long a job waits before its next attempt.

Apart from :mod:`.retry` (the node's own backoff against remotes) so that reading a commit's
definitions — which `git jobs status` does — does not import the worker's machinery.
"""

from __future__ import annotations

import math

PATTERNS = ("seconds", "minutes", "hours")
_UNIT = {"seconds": 1.0, "minutes": 60.0, "hours": 3600.0}


def pattern_delay(pattern: str, attempts: int) -> float:
    """Seconds to wait before the next attempt, after ``attempts`` (≥ 1) failed ones."""
    unit = _UNIT[pattern]
    n = max(1, attempts)
    if unit >= 60:
        if n <= 2:
            return unit
        n -= 1
        return unit * math.log(n) * 10
    return unit * math.log(n) * 10 + 10 * unit
