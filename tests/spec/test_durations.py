"""Durations (``timeout``, ``takeover``) and µTask's retry delay patterns."""

from __future__ import annotations

import math

import pytest

from jobs.spec.durations import parse_duration
from jobs.spec.patterns import pattern_delay


def test_durations_and_retry_patterns() -> None:
    assert parse_duration("20m") == 1200 and parse_duration("1h30m") == 5400
    assert parse_duration("0.2s") == pytest.approx(0.2) and parse_duration("250ms") == 0.25
    assert parse_duration(45) == 45.0
    for bad in ("", "10x", "-1s", "0", True):
        with pytest.raises(ValueError):
            parse_duration(bad)
    # µTask: seconds = 10s + 10s*ln(n); minutes/hours = one unit twice, then 10 units*ln(n-1).
    assert [round(pattern_delay("seconds", n), 2) for n in (1, 2, 3)] == [10.0, 16.93, 20.99]
    assert [round(pattern_delay("minutes", n) / 60, 2) for n in (1, 2, 3, 4)] == [1, 1, 6.93, 10.99]
    assert pattern_delay("hours", 3) == pytest.approx(3600 * 10 * math.log(2))
