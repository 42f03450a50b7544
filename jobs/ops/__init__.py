"""The Job type's operations: the msgspec structs that go into a change's ``ops`` blob.

Tagged by ``"type"`` and strict (unknown fields are a decode error): peer data that does not
match exactly is rejected, not guessed at. Each op lives in a module of its own and owns its
rules — ``validate`` (field values and authorization; a bad value rejects the change with a
reason), ``apply`` (what the fold does with it), ``summary`` (its part of the change's commit
message) and ``help`` (one line for people) — as git-bug's ``entity/dag`` keeps one operation
per file. :mod:`jobs.jobtype` dispatches to them and names no op but the root.

:data:`OPS` is the registry, the one list of the ops: the type's decode table
(:func:`decode_type`), this package's public names and the help (:func:`help_lines`) derive
from it. A new op is one module here and one entry in :data:`OPS` (docs/TYPES.md).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable
from typing import Any

from .base import Checking as Checking
from .base import Folding as Folding
from .base import JobOp as JobOp
from .finish import FinishRun as FinishRun
from .release import Release as Release
from .request import Request as Request
from .rerun import Rerun as Rerun
from .run import StartRun as StartRun

OPS: tuple[type[JobOp], ...] = (Request, Release, Rerun, StartRun, FinishRun)
"""Every op of the Job type, in the order the docs and the help list them."""


def decode_type(ops: Iterable[type[JobOp]] = OPS) -> Any:
    """The msgspec type a change's ops decode to: the tagged union of ``ops``."""
    return functools.reduce(operator.or_, ops)


def tag_of(op: type[JobOp]) -> str:
    """The op's ``"type"`` on the wire (``run`` for :class:`StartRun`)."""
    return str(op.__struct_config__.tag)


def help_lines(ops: Iterable[type[JobOp]] = OPS) -> list[str]:
    """One aligned line per op, ``tag  help``, for help texts."""
    ops = list(ops)
    width = max(len(tag_of(op)) for op in ops)
    return [f"{tag_of(op):<{width}}  {op.help}" for op in ops]


Op: Any = decode_type()
"""The union of every op, as msgspec decodes it (derived from :data:`OPS`)."""

__all__ = ["OPS", "Checking", "Folding", "JobOp", "Op", "decode_type", "help_lines", "tag_of"]
__all__ += [op.__name__ for op in OPS]
