"""``matrix``: one definition, one job per combination — names, bounds and placeholders."""

from __future__ import annotations

import pytest

import jobs
from jobs.spec.definitions import parse_definitions

NINE = ",".join(f'"{i}"' for i in range(9))


@pytest.mark.parametrize(
    ("matrix", "problem"),
    [
        ('{ python = ["3.11", "a b"] }', "matrix value"),
        ('{ python = ["3.11", "x\\u001b[31m"] }', "matrix value"),
        ('{ "Py Thon" = ["3"] }', "axis name"),
        (f"{{ a = [{NINE}], b = [{NINE}] }}", "64"),
        ('{ python = ["3"], exclude = [{ python = "3" }] }', "no combination"),
        ('{ python = ["3"], exclude = [{ os = "x" }] }', "not an axis"),
        ('"3.12"', "must be a table"),
    ],
)
def test_a_bad_or_oversized_matrix_is_a_definition_error(matrix: str, problem: str) -> None:
    text = f"[jobs.t]\nrun = 'x {{matrix.python}}'\nmatrix = {matrix}\n"
    with pytest.raises(jobs.DefinitionError) as err:
        parse_definitions(text, "ab" * 20)
    assert problem in str(err.value) and "jobs.t" in str(err.value)
    assert "\x1b" not in str(err.value)


def test_matrix_expansion_is_bounded_across_the_file() -> None:
    axis = ",".join(f'"{i}"' for i in range(8))
    big = f"{{ a = [{axis}], b = [{axis}] }}"
    text = "".join(f"[jobs.t{i}]\nrun = 'x'\nmatrix = {big}\n" for i in range(4))
    with pytest.raises(jobs.DefinitionError, match="after matrix expansion"):
        parse_definitions(text, "ab" * 20)


def test_a_matrix_placeholder_must_name_an_axis_and_shell_braces_are_left_alone() -> None:
    text = "[jobs.t]\nrun = 'echo ${HOME} {a,b} {matrix.v}'\nmatrix = { v = [1] }\n"
    defs = parse_definitions(text, "ab" * 20)
    assert [j.run for j in defs] == ["echo ${HOME} {a,b} 1"]
    with pytest.raises(jobs.DefinitionError, match=r"jobs.t.run: unknown placeholder \{matrix.w\}"):
        parse_definitions("[jobs.t]\nrun = 'echo {matrix.w}'\nmatrix = { v = [1] }\n", "ab" * 20)
