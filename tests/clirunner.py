"""Drive the installed `git-jobs` script through subprocess, as a user's shell would.

Every call checks the promise made for every command: no traceback on stderr, ever.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# The venv's console script; in CI the venv's bin is not on PATH, so find it beside python.
_BESIDE = Path(sys.executable).parent / "git-jobs"
GIT_JOBS = str(_BESIDE) if _BESIDE.exists() else (shutil.which("git-jobs") or str(_BESIDE))


class Result:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.args = proc.args

    def __repr__(self) -> str:
        return f"Result({self.args!r}, code={self.code}, out={self.out!r}, err={self.err!r})"

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def line(self) -> str:
        """The single line of stdout."""
        lines = self.out.strip().splitlines()
        assert len(lines) == 1, self
        return lines[0]


def env_with(**extra: str | None) -> dict[str, str]:
    env = dict(os.environ)
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def gj(cwd: Path | str, *args: str, key: Path | str | None = None, **env: str | None) -> Result:
    """Run `git-jobs ARGS` in ``cwd``; ``key`` sets $GIT_JOBS_KEY (the node)."""
    if key is not None:
        env["GIT_JOBS_KEY"] = str(key)
    proc = subprocess.run(
        [GIT_JOBS, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env_with(**env),
        stdin=subprocess.DEVNULL,
    )
    result = Result(proc)
    assert "Traceback" not in result.err, result
    return result


def ok(cwd: Path | str, *args: str, key: Path | str | None = None, **env: str | None) -> Result:
    result = gj(cwd, *args, key=key, **env)
    assert result.code == 0, result
    return result


def user_error(cwd: Path | str, *args: str, key: Path | str | None = None, **env: str | None) -> str:
    """Run a command that must fail as a user error: exit 2, one line on stderr. Returns it."""
    result = gj(cwd, *args, key=key, **env)
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result
    return lines[0]
