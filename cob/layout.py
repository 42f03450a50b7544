"""The names cob gives what it keeps beside an application's objects: one :class:`Layout`.

cob is generic: the files it keeps in the git directory (its index cache, index log, refused
memory, writers' lock, fetch quarantine), its local refs (the last published index, a fetch's
staging refs), its git config section and the command its hints name are all taken from the
layout in use. The defaults are generic (``cob-…``); an
application builds its layout once and installs it with :func:`use` before it opens a
repository (an application does so on import, with the names its format documents). A process serves
one application, so the layout is per process, like :mod:`cob.durable`'s settings.

What decides an object's id is never per process: the author of a content-addressed root is
the type's (:attr:`cob.CobType.root_author`), so two programs on one repository agree on ids.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Layout:
    """Every product-specific name cob uses (see the module's docstring)."""

    prefix: str = "cob"  # <gitdir>/<prefix>-index.sqlite3 ..., refs/<prefix>-published/ ...
    config_section: str = "cob"  # git config: <section>.fsync
    command: str = "cob"  # the command named in hints ("run <command> sync")
    new_key_hint: str = ""  # how to give a node a key of its own, for one error's hint

    def file(self, what: str) -> str:
        """The name of one of cob's files in the git directory, e.g. ``cob-index-log``."""
        return f"{self.prefix}-{what}"

    @property
    def published_ref(self) -> str:
        """Local only: the last index tip of ours a push delivered (:mod:`cob.sigrefs`)."""
        return f"refs/{self.prefix}-published/sigrefs"

    @property
    def staging_refs(self) -> str:
        """Where a fetch's quarantine receives the remote's tips (ends with ``/``)."""
        return f"refs/{self.prefix}-staging/"

    def config(self, key: str) -> str:
        """A git config key of cob's section, e.g. ``cob.fsync``."""
        return f"{self.config_section}.{key}"


_current = Layout()


def use(layout: Layout) -> None:
    """Install the application's layout for this process (before it opens a repository)."""
    global _current
    _current = layout


def current() -> Layout:
    """The layout in use: the application's, or the generic default."""
    return _current
