"""Fuzzing the ``.git-jobs.toml`` decoder: any text gives definitions or a
:class:`~jobs.DefinitionError` naming the file, never another exception; and it is bounded in
memory (the input that once was not lives in ``tests/corpus/``)."""

from __future__ import annotations

import importlib
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CORPUS = Path(__file__).parents[1] / "corpus"
SLOW = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))


def _definitions_parser() -> Any:
    try:
        module = importlib.import_module("jobs.spec.definitions")
    except ImportError:
        return None
    return getattr(module, "parse_definitions", None)


toml_like = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.sampled_from(
            [
                "[jobs.ci]",
                '[jobs."a b"]',
                "[jobs]",
                "[[jobs]]",
                'run = "make test"',
                "run = 1",
                'timeout = "10m"',
                'timeout = "-1s"',
                "timeout = 1e309",
                'timeout = "nan"',
                'needs = ["ci"]',
                'needs = ["ci", "ci"]',
                "needs = [1]",
                "retry = 3",
                "retry = -1",
                'retry = { max = 3, pattern = "x" }',
                "idempotent = 1",
                'command = ["a"]',
                "x = [[[[[[1]]]]]]",
                'env = { A = "1" }',
                "= 1",
                "[a.b.c]",
                'name = "\\u0000"',
                'timeout = "999999999999999999h"',
                "[trigger]",
                'run = "{commit}"',
                "[log]",
                'url = "https://x/{run_id}"',
                'url = "https://x/{nope}"',
                'url = "https://x/{0}"',
                'url = "https://x/{run_id!r:^20}"',
                'url = "{"',
                'url = "https://x/{run_id.__class__}"',
            ]
        ),
        max_size=10,
    ).map("\n".join),
)


@SLOW
@given(toml_like)
def test_job_definitions_decoder_returns_definitions_or_definition_error(text: str) -> None:
    import jobs

    parse = _definitions_parser()
    if parse is None:
        pytest.skip("jobs.spec.definitions is not there yet")
    try:
        defs = parse(text, "0" * 40)
    except jobs.DefinitionError as e:
        assert str(e).startswith(".git-jobs.toml")
        return
    assert all(job.run for job in defs.jobs)


def test_job_definitions_decoder_is_bounded_in_memory() -> None:
    """A log URL template's format spec (``{run_id:>999999999}``) must not allocate 1 GB."""
    import jobs

    parse = _definitions_parser()
    if parse is None:
        pytest.skip("jobs.spec.definitions is not there yet")
    text = (CORPUS / "definitions-format-width.toml").read_text()
    tracemalloc.start()
    try:
        with pytest.raises(jobs.DefinitionError):
            parse(text, "0" * 40)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"validating a log URL template took {peak >> 20} MiB"
