"""``outputs``: the paths a job declares (``outputs = ["dist/"]``); the node copies them
(:mod:`jobs.node.outputs`).
"""

from __future__ import annotations

from pathlib import PurePosixPath

MAX_OUTPUTS = 16  # paths one job declares


def check_path(path: str) -> str | None:
    """Why ``path`` is not a relative path inside the checkout, or None."""
    p = PurePosixPath(path)
    if not path or not p.parts or p.is_absolute() or ".." in p.parts or "\0" in path or len(path) > 256:
        return f"{path[:60]!r} must be a relative path inside the checkout (no .., at most 256)"
    if p.parts and p.parts[0] == ".git":
        return f"{path[:60]!r} is inside .git"
    return None
