"""docs/TYPES.md teaches a new type by example: its code blocks must run, in order, as written."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import init_repo
from tests.sourceless import SOURCE


def test_the_types_guide_runs_as_written(tmp_path: Path) -> None:
    text = (SOURCE / "docs" / "TYPES.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    init_repo(tmp_path / "alice")
    init_repo(tmp_path / "bob")
    scope = {"alice_dir": str(tmp_path / "alice"), "bob_dir": str(tmp_path / "bob"), "__name__": "guide"}
    exec(compile("\n".join(blocks), "docs/TYPES.md", "exec"), scope)
    assert scope["seen_by_alice"].question == "Release on Friday?"
