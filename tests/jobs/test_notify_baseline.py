"""A node's notify baseline survives its restart (issue 29, item 4).

The notify worker remembers the last verdict it saw per commit; a node that was stopped while a
verdict changed must notify that change when it is back, not take the new verdict as its
baseline and stay silent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from jobs.notify import MAX_REMEMBERED, Watcher


@dataclass
class Seen:
    """What a watcher reads of a gate status: its commit, outcome and whether it is pending."""

    commit: str
    outcome: str
    pending: bool = False


def _look(watcher: Watcher, *statuses: Seen) -> list[tuple[str, str | None]]:
    return [(cast(Any, s).commit, before) for s, before in watcher.look(cast(Any, statuses))]


def test_a_change_while_the_node_was_stopped_notifies_after_its_restart(tmp_path: Path) -> None:
    path = tmp_path / "git-jobs" / "notify-seen.json"
    first = Watcher.load(path)  # nothing saved yet: the first look is the baseline
    assert _look(first, Seen("a" * 40, "pending", pending=True)) == []
    first.save(path)
    again = Watcher.load(path)  # the node restarted; meanwhile the commit passed
    assert _look(again, Seen("a" * 40, "succeeded")) == [("a" * 40, "pending")]
    again.save(path)
    assert _look(Watcher.load(path), Seen("a" * 40, "succeeded")) == []  # nothing new


def test_a_damaged_or_hostile_memory_is_a_fresh_baseline(tmp_path: Path) -> None:
    path = tmp_path / "notify-seen.json"
    for text in ("{not json", "[1, 2]", '{"a": 3}', '{"' + "x" * 100 + '": "succeeded"}'):
        path.write_text(text)
        watcher = Watcher.load(path)
        assert not watcher.started and watcher.seen == {}
        assert _look(watcher, Seen("b" * 40, "failed")) == []  # a baseline, as on a first start
    many = {f"{i:040x}": "succeeded" for i in range(MAX_REMEMBERED + 5)}
    path.write_text(json.dumps(many))
    assert len(Watcher.load(path).seen) == MAX_REMEMBERED
