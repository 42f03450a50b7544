"""Dynamic fan-out: a matrix whose axis is a need's output, expanded at run time.

    [jobs.plan]
    run = 'echo "targets=x86 arm" >> "$GIT_JOBS_OUTPUT"'
    [jobs.build]
    needs = ["plan"]
    run = "make TARGET={matrix.target}"
    matrix = { target = "{needs.plan.outputs.targets}" }

Until ``plan`` has passed (here, or on a node the policy trusts: the values are read from the
ledger, :mod:`.values`) the definition is one job, ``build``, that waits. Then the value is
read as a list — a JSON array (``["x86", "arm"]``) or words separated by commas and/or
whitespace (``x86 arm``) — and the table is expanded exactly as a static matrix
(:func:`.matrix.expand`: the same bounds, value characters and names), giving ``build
(target=x86)`` and ``build (target=arm)``; a job that needs ``build`` needs all of them.

The node that expands it records the names in a signed ``release`` with ``fanout`` on the
``build`` job (FORMAT.md 11.6), so every reader — ``status`` on any clone — knows which jobs a
required ``build`` covers. A value that is not a valid list, or breaks a bound, is not
expanded: the job ``build`` runs no command and fails with the reason.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

from ..spec.definitions import Definitions, JobDef
from ..spec.fanout import check_dynamic as check_dynamic
from ..spec.fanout import dynamic_axes
from ..spec.matrix import MatrixError, expand, job_name, substitute
from .values import ValuesError, as_list

# A need's values (None: no counted pass yet), by the needed job's name.
Reader = Callable[[str], Mapping[str, str] | None]


def expand_one(d: JobDef, read: Reader) -> list[JobDef] | None:
    """The jobs ``d`` (a dynamic matrix) expands into now; None while a need has no counted
    pass; ``[d]`` with ``fanout_error`` when the values do not make a valid matrix."""
    assert d.dynamic is not None
    table: dict[str, Any] = json.loads(d.dynamic)
    where = f"jobs.{d.base}.matrix"
    try:
        for axis, (job, key) in dynamic_axes(table).items():
            values = read(job)
            if values is None:
                return None
            if key not in values:
                raise ValuesError(f"{job!r} wrote no output {key!r}")
            table[axis] = as_list(values[key])
        combos = expand(where, table)
        cells = [
            dataclasses.replace(d, name=job_name(d.base, c), run=substitute(d.run, c), matrix=c, dynamic=None)
            for c in combos
        ]
    except (ValuesError, MatrixError) as e:
        return [dataclasses.replace(d, dynamic=None, fanout_error=f"{where}: {e}")]
    from ..ops.release import check_fanout

    problem = check_fanout(d.base, [c.name for c in cells])
    if problem:
        return [dataclasses.replace(d, dynamic=None, fanout_error=f"{where}: {problem}")]
    return cells


def expand_dynamic(defs: Definitions, read: Reader) -> tuple[Definitions, dict[str, list[str]]]:
    """``defs`` with every dynamic matrix whose needs have passed expanded (a need naming it
    then names its jobs); and {definition: job names} of those expanded. ``defs`` itself when
    nothing changed."""
    if not any(d.dynamic for d in defs):
        return defs, {}
    grown: dict[str, list[JobDef]] = {}
    for d in defs:
        if d.dynamic:
            cells = expand_one(d, read)
            if cells is not None:
                grown[d.name] = cells
    if not grown:
        return defs, {}
    jobs: list[JobDef] = []
    for d in defs:
        for one in grown.get(d.name, [d]):
            jobs.append(_renamed_needs(one, grown))
    fanned = {base: [c.name for c in cells] for base, cells in grown.items() if not cells[0].fanout_error}
    return dataclasses.replace(defs, jobs=tuple(jobs)), fanned


def _renamed_needs(d: JobDef, grown: Mapping[str, list[JobDef]]) -> JobDef:
    """A need naming an expanded definition names each of its jobs (with the same state)."""
    if not any(n in grown and not grown[n][0].fanout_error for n in d.needs):
        return d
    needs: list[str] = []
    states: list[str] = []
    for need in d.needs:
        cells = grown.get(need)
        names = [c.name for c in cells] if cells and not cells[0].fanout_error else [need]
        for one in names:
            if one not in needs:
                needs.append(one)
                states.append(d.need_state(need))
    return dataclasses.replace(d, needs=tuple(needs), need_states=tuple(states))
