"""A dynamic matrix, as written: ``matrix = { target = "{needs.plan.outputs.targets}" }``.

Checked when the file is read (each string axis is one placeholder of a need, the rest a valid
matrix); expanded at run time from the ledger by the node (:mod:`jobs.node.fanout`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .matrix import MatrixError, expand, substitute
from .values import PLACEHOLDER, check_placeholders


def dynamic_axes(table: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """{axis: (job, output)} of the dynamic axes."""
    out = {}
    for axis, value in table.items():
        if isinstance(value, str):
            m = PLACEHOLDER.fullmatch(value.strip())
            if m is not None:
                out[axis] = (m.group(1), m.group(2))
    return out


def check_dynamic(where: str, table: Mapping[str, Any], needs: list[str], run: str) -> str | None:
    """Why a dynamic matrix table is wrong (checked when the file is read), or None: each
    string axis is one placeholder of a need, the rest is a valid matrix, ``{matrix.KEY}`` in
    ``run`` names its axes."""
    sources = dynamic_axes(table)
    for axis, value in table.items():
        if isinstance(value, str) and axis not in sources:
            problem = check_placeholders(value, needs)
            return f"{where}.{axis}: " + (problem or 'must be a list or "{needs.JOB.outputs.NAME}"')
        if axis in sources and sources[axis][0] not in needs:
            return f"{where}.{axis}: reads {sources[axis][0]!r}, which is not in this job's needs"
    sample = {k: (["x"] if k in sources else v) for k, v in table.items()}
    try:
        combos = expand(where, sample)
        substitute(run, combos[0])
    except MatrixError as e:
        return str(e)
    return None
