"""git-jobs' names on disk and on the wire are those of docs/FORMAT.md, though `cob` is generic.

`cob` takes every product name from one `cob.layout.Layout` (defaults ``cob-…``); `jobs` installs
its own (`jobs/layout.py`), so repositories, caches and refs written before stay readable and
every peer derives the same job ids.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pygit2

import cob
import cob.layout
from jobs import Jobs
from tests.conftest import init_repo


def test_a_store_keeps_git_jobs_names_for_files_refs_and_roots(
    repo: pygit2.Repository, signer: cob.Signer, tmp_path: Path
) -> None:
    store = Jobs.open(repo.path, signer=signer)
    job = store.create(str(repo.head.target), "build")
    assert [j.id for j in store.all()] == [job.id]
    gitdir = Path(repo.path)
    for name in ("git-jobs-index.sqlite3", "git-jobs-index-log", "git-jobs-writers.lock"):
        assert (gitdir / name).is_file(), name
    assert not list(gitdir.glob("cob-*"))
    root = repo[job.id]
    assert isinstance(root, pygit2.Commit)
    assert (root.author.name, root.author.email) == ("git-jobs", "content-addressed-root")

    hub = init_repo(tmp_path / "hub.git", bare=True)
    assert store.sync(hub.path).ok
    assert repo.references.get("refs/git-jobs-published/sigrefs") is not None
    assert not [r for r in repo.listall_references() if r.startswith("refs/git-jobs-staging/")]


def test_cob_alone_uses_its_generic_names(tmp_path: Path) -> None:
    """A program on `cob` without `jobs` gets `cob-…` names (a fresh interpreter: this one has
    git-jobs' layout installed)."""
    code = (
        "import cob.layout, jobs.layout as j\n"
        "d = cob.layout.Layout()\n"
        "print(d.file('index-log'), d.published_ref, d.staging_refs, d.config('fsync'))\n"
        "print(j.LAYOUT.file('index-log'), j.LAYOUT.published_ref, j.LAYOUT.config('fsync'))\n"
        "assert cob.layout.current() == j.LAYOUT\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.splitlines() == [
        "cob-index-log refs/cob-published/sigrefs refs/cob-staging/ cob.fsync",
        "git-jobs-index-log refs/git-jobs-published/sigrefs jobs.fsync",
    ]
