"""Keep the source tree out of every Python the tests start, so they test what users install.

The suite runs against the installed wheel (`.ci/run`): an editable install once hid a wheel
without `jobs.cli`. pytest puts the project root on ``sys.path`` (``tests`` is a package), and
child processes (``python -c`` with ``cwd`` at the root, ``python -m tests.stress.worker``)
would put it there too, so ``import jobs`` would find the sources. This module, imported first
by ``conftest.py``, removes the root from ``sys.path`` and gives every child Python a path
holding ``tests`` alone (a directory with one symlink) and ``PYTHONSAFEPATH`` (no cwd first).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent


def _tests_only_dir() -> Path:
    """A directory whose only entry is a symlink ``tests`` to this suite (made once, shared)."""
    tag = hashlib.sha256(str(SOURCE).encode()).hexdigest()[:12]
    where = Path(tempfile.gettempdir()) / f"git-jobs-tests-{tag}"
    where.mkdir(exist_ok=True)
    link = where / "tests"
    with contextlib.suppress(FileExistsError):
        link.symlink_to(SOURCE / "tests", target_is_directory=True)
    return where


def _is_source(entry: str) -> bool:
    try:
        return Path(entry or os.curdir).resolve() == SOURCE
    except OSError:
        return False


def apply() -> None:
    sys.path[:] = [p for p in sys.path if not _is_source(p)]
    os.environ["PYTHONSAFEPATH"] = "1"
    os.environ["PYTHONPATH"] = str(_tests_only_dir())


apply()
