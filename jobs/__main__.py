"""``python -m jobs``: the same command line as ``git jobs`` (e.g. where no script is on PATH)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
