"""What a fetch refused for good, remembered so that it costs once, not on every sync.

A hub pusher without any key can point thousands of refs under a node's namespace at junk
(unsigned commits, objects that are not commits). Each is refused, but refusing it again on
every sync means downloading and checking it again: the junk would cost every peer every
time. So a fetch remembers each refusal whose verdict cannot change while neither side moves —
keyed by (ref, the remote's oid, our local oid) — and later fetches skip such a ref unread,
counting it (``FetchResult.remembered``) instead of downloading it. When the hub moves the ref
or our own ref moves, the key differs and the ref is checked again: a remembered refusal never
blocks a node's real update.

Only verdicts on the data itself are remembered (``bad-tip``, ``not-a-commit``,
``bad-namespace``, ``diverged``); ``limit``, ``missing``, ``busy`` and the like are about this
fetch and are never remembered. The file, ``<gitdir>/<prefix>-refused`` (:mod:`cob.layout`), holds at most
:data:`MAX_REMEMBERED` lines (the oldest are dropped); deleting it only costs a re-check.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from . import layout

MAX_REMEMBERED = 100_000
FILE = "refused"  # <gitdir>/<layout prefix>-refused (cob.layout)


def _key(ref: str, remote: str, local: str | None) -> str:
    return f"{ref} {remote} {local or '-'}"


class RefusedMemory:
    """The remembered refusals of one repository (read once, written once per fetch)."""

    def __init__(self, gitdir: str) -> None:
        self.path = os.path.join(gitdir, layout.current().file(FILE))
        self._keys: dict[str, None] = {}
        self._dirty = False
        with contextlib.suppress(OSError, UnicodeDecodeError), open(self.path, encoding="utf-8") as f:
            for line in f:
                text = line.rstrip("\n")
                if text.count(" ") == 2 and len(text) < 1200:
                    self._keys[text] = None
        while len(self._keys) > MAX_REMEMBERED:
            self._keys.pop(next(iter(self._keys)))

    def __len__(self) -> int:
        return len(self._keys)

    def knows(self, ref: str, remote: str, local: str | None) -> bool:
        return _key(ref, remote, local) in self._keys

    def add(self, ref: str, remote: str, local: str | None) -> None:
        if "\n" in ref or " " in ref:
            return  # never a ref name git lists
        key = _key(ref, remote, local)
        if key in self._keys:
            return
        self._keys[key] = None
        self._dirty = True
        while len(self._keys) > MAX_REMEMBERED:
            self._keys.pop(next(iter(self._keys)))

    def save(self) -> None:
        if not self._dirty:
            return
        directory = os.path.dirname(self.path)
        with contextlib.suppress(OSError):
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{layout.current().file(FILE)}-")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write("".join(k + "\n" for k in self._keys))
                os.replace(tmp, self.path)
                self._dirty = False
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
