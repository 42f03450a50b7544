"""Concurrency: two OS processes appending to one object in one repository lose nothing.

With one key file both processes move the same ref, so they race on its compare-and-swap and
the loser rebuilds its change on the new tip; with two keys each moves its own ref and their
changes interleave as concurrent branches. Either way all 400 appends are there, each process's
appends stay in the order it made them, and stock git finds the repository sound.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pygit2
import pytest

import cob
from tests.toytype import LOG, TAGS, Append, Create

PROJECT = Path(__file__).resolve().parents[2]
PER_PROCESS = 200

_WRITER = f"""
import sys, time
from pathlib import Path
import cob
from tests.toytype import LOG, TAGS, Append, Tag

repo, key, object_id, typename, label, go = sys.argv[1:7]
cobtype = LOG if typename == LOG.typename else TAGS
store = cob.Store(repo, cob.Signer.from_file(key))
while not Path(go).exists():  # start both writers together
    time.sleep(0.001)
ev = None
for i in range({PER_PROCESS}):
    op = Append(f"{{label}} {{i}}") if cobtype is LOG else Tag(f"{{label}} {{i:03d}}")
    _, ev = store.update(cobtype, object_id, [op], base=ev)
print("done")
"""


def _race(repo: pygit2.Repository, tmp_path: Path, keys: list[Path], cobtype: object, object_id: str) -> None:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, repo.path, str(key), object_id, cobtype.typename, label, str(go)],  # type: ignore[attr-defined]
            cwd=PROJECT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for label, key in zip("AB", keys, strict=True)
    ]
    time.sleep(0.3)  # let both import and wait
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert out.strip() == "done"


@pytest.mark.slow
@pytest.mark.parametrize("same_key", [True, False], ids=["one key", "two keys"])
def test_two_processes_append_200_each_to_a_log(
    repo: pygit2.Repository, tmp_path: Path, same_key: bool
) -> None:
    first = cob.Signer.generate()
    keys = [first.save(tmp_path / "a")]
    keys.append(keys[0] if same_key else cob.Signer.generate().save(tmp_path / "b"))
    object_id = cob.Store(repo, first).create(LOG, [Append("root")]).object_id
    _race(repo, tmp_path, keys, LOG, object_id)

    ev = cob.Store(repo.path, cache=False).load(LOG, object_id)
    assert ev is not None and ev.state is not None and not ev.rejected
    lines = ev.state.lines
    assert len(lines) == 1 + 2 * PER_PROCESS
    for label in "AB":
        mine = [line for line in lines if line.startswith(label + " ")]
        assert mine == [f"{label} {i}" for i in range(PER_PROCESS)]  # all there, in order
    tips = cob.Store(repo.path).tips(LOG, object_id)
    assert len(tips) == (1 if same_key else 2)


def test_two_processes_append_200_each_to_a_cached_commutative_object(
    repo: pygit2.Repository, tmp_path: Path
) -> None:
    """The same race through the shared SQLite cache and the incremental fold."""
    keys = [cob.Signer.generate().save(tmp_path / "a"), cob.Signer.generate().save(tmp_path / "b")]
    object_id = cob.Store(repo, cob.Signer.from_file(keys[0])).create(TAGS, [Create("c")]).object_id
    _race(repo, tmp_path, keys, TAGS, object_id)
    expected = sorted(f"{label} {i:03d}" for label in "AB" for i in range(PER_PROCESS))
    for cache in (True, False):
        ev = cob.Store(repo.path, cache=cache).load(TAGS, object_id)
        assert ev is not None and ev.state is not None and not ev.rejected
        assert ev.state.tags == expected
