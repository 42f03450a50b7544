"""docs/EXTENDING.md builds a worked example: its code blocks run, in order, as written.

The pipeline (structured outputs, a dynamic matrix, a check), then a runner that runs a job
and a worker given to a node.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.conftest import init_repo
from tests.node.test_node_work import commit_defs, new_key
from tests.sourceless import SOURCE


def sections() -> dict[str, str]:
    """The guide's ``## `` sections by number (``"1"``, ``"2"``, …)."""
    text = (SOURCE / "docs" / "EXTENDING.md").read_text()
    parts = re.split(r"^## (\d+)\. .*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def python_blocks(text: str) -> str:
    return "\n".join(re.findall(r"```python\n(.*?)```", text, re.S))


def run_pipeline(tmp_path: Path) -> dict[str, Any]:
    guide = sections()
    defs = next(b for b in re.findall(r"```toml\n(.*?)```", guide["1"], re.S) if "[jobs." in b)
    repo = tmp_path / "repo"
    init_repo(repo)
    commit_defs(repo, defs)
    _, key = new_key(tmp_path / "node.key")
    scope: dict[str, Any] = {"repo_dir": str(repo), "key_file": str(key), "__name__": "guide"}
    exec(compile(python_blocks(guide["1"]), "docs/EXTENDING.md", "exec"), scope)
    return scope


def test_the_pipeline_of_the_guide_runs_as_written(tmp_path: Path) -> None:
    scope = run_pipeline(tmp_path)
    assert [o.name for o in scope["report"].outcomes][:1] == ["plan"]


def test_the_runner_and_the_worker_of_the_guide_run_as_written(tmp_path: Path) -> None:
    scope = run_pipeline(tmp_path)
    guide = sections()
    for number in ("2", "3"):
        exec(compile(python_blocks(guide[number]), "docs/EXTENDING.md", "exec"), scope)
