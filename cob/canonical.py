"""Canonical JSON: sorted keys, no whitespace, UTF-8 — the bytes every peer must agree on."""

from __future__ import annotations

from typing import Any

import msgspec

_encoder = msgspec.json.Encoder(order="sorted")


def dumps(value: Any) -> bytes:
    return _encoder.encode(value)
