"""A commit and its jobs are untrusted, and the node handles their outputs outside the sandbox.

Regressions from an attacker's review: outputs read through a linked parent directory, outputs
written through a link the next checkout tracks (parser inputs that nest or grow without a bound:
``tests/spec/test_definitions.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pygit2
import pytest

from jobs.node.outputs import collect, provide
from jobs.web.ansi import to_html

COMMIT = "ab" * 20


@pytest.fixture
def repo(tmp_path: Path) -> pygit2.Repository:
    return pygit2.init_repository(str(tmp_path / "node"))


def test_an_output_behind_a_linked_directory_is_not_copied_off_the_host(
    repo: pygit2.Repository, tmp_path: Path
) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "id_ed25519").write_text("SECRET\n")
    src = tmp_path / "checkout"
    src.mkdir()
    (src / "d").symlink_to(host)  # what a job can make inside its checkout
    note = collect(repo, COMMIT, "build", src, ["d/id_ed25519", "d"])
    assert "SECRET" not in note
    dest = tmp_path / "next"
    dest.mkdir()
    provide(repo, COMMIT, ["build"], dest)
    found = [p for p in dest.rglob("*") if p.is_file() and "SECRET" in p.read_text()]
    assert found == []


def test_outputs_are_never_written_through_a_link_the_next_checkout_tracks(
    repo: pygit2.Repository, tmp_path: Path
) -> None:
    src = tmp_path / "checkout"
    (src / "dist").mkdir(parents=True)
    (src / "dist" / "authorized_keys").write_text("attacker key\n")
    (src / "dist" / "link").symlink_to("/etc/hostname")  # a link is kept as a link
    os.mkfifo(src / "fifo")  # nothing to copy, and no error
    assert collect(repo, COMMIT, "build", src, ["dist", "fifo", "dist/authorized_keys"]).startswith(
        "outputs kept: dist"
    )
    victim = tmp_path / "victim"
    victim.mkdir()
    dest = tmp_path / "next"
    dest.mkdir()
    (dest / "dist").symlink_to(victim)  # tracked by the commit under test
    assert provide(repo, COMMIT, ["build"], dest) == ["build"]
    assert list(victim.iterdir()) == []
    assert not (dest / "dist").is_symlink() and (dest / "dist" / "link").is_symlink()
    assert (dest / "dist" / "authorized_keys").read_text() == "attacker key\n"


def test_a_colour_code_of_thousands_of_digits_is_no_colour_not_a_crash() -> None:
    html = to_html("\x1b[" + "9" * 5000 + "mred\n")
    assert "red" in html
