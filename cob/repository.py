"""Opening a repository: a path (work tree or git directory) or a pygit2 handle."""

from __future__ import annotations

import os

import pygit2

from .errors import RepositoryError


def open_repository(repo: pygit2.Repository | str | os.PathLike[str]) -> pygit2.Repository:
    """A pygit2 repository for a path (work tree or git dir), with a clear error otherwise."""
    if isinstance(repo, pygit2.Repository):
        return repo
    path = os.fspath(repo)
    try:
        found = pygit2.discover_repository(path)
        if found is None:
            raise RepositoryError(f"not a git repository: {path}")
        return pygit2.Repository(found)
    except pygit2.GitError as e:
        raise RepositoryError(f"not a git repository: {path} ({e})") from None


__all__ = ["open_repository"]
