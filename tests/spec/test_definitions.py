"""``.git-jobs.toml`` as a language: what a file means, and every mistake one error naming the
file, the commit and the key — parsed in-process, no node runs."""

from __future__ import annotations

import json

import pytest

import jobs
from jobs.spec.definitions import parse_definitions

COMMIT = "ab" * 20


@pytest.mark.parametrize(
    ("text", "key_named"),
    [
        ("[jobs.build]\nrun = 'make'\nrunn = 'typo'\n", "jobs.build.runn"),
        ("[jobs.build]\nrun = 'make'\n[jobz]\n", "jobz"),
        ("[jobs.a]\nrun = 'x'\nneeds = ['b']\n[jobs.b]\nrun = 'y'\nneeds = ['a']\n", "cycle in needs"),
        ("[jobs.a]\nrun = 'x'\nneeds = ['nope']\n", "jobs.a.needs"),
        ("[jobs.a]\nrun = 'x'\ntimeout = '20 parsecs'\n", "jobs.a.timeout"),
        ("[jobs.a]\nrun = 'x'\ntimeout = '0s'\n", "jobs.a.timeout"),
        ("[jobs.a]\nrun = 'x'\nretry = { max = 0 }\n", "jobs.a.retry.max"),
        ("[jobs.a]\nrun = 'x'\nretry = { max = 3, pattern = 'days' }\n", "jobs.a.retry.pattern"),
        ("[jobs.a]\nrun = 'x'\nretry = { max = 3, backoff = 2 }\n", "jobs.a.retry.backoff"),
        ("[jobs.a]\nrun = 'x'\nidempotent = 'yes'\n", "jobs.a.idempotent"),
        ("[jobs.a]\nneeds = []\n", "jobs.a.run"),
        ("[jobs.a]\nrun = 'x'\n[log]\nurl = 'not a url {run_id}'\n", "log.url"),
        ("[jobs.a]\nrun = 'x'\n[log]\nurl = 'https://x.example/{nope}'\n", "log.url"),
        ("[trigger]\nrun = 'x'\nwhen = 'always'\n", "trigger.when"),
        ("[jobs.a\nrun = 'x'\n", "invalid TOML"),
    ],
)
def test_invalid_definitions_are_one_error_naming_file_commit_and_key(text: str, key_named: str) -> None:
    commit = "ab" * 20
    with pytest.raises(jobs.DefinitionError) as err:
        parse_definitions(text, commit)
    message = str(err.value)
    assert message.startswith(f".git-jobs.toml at {commit[:12]}: ")
    assert key_named in message and "\n" not in message


def test_a_long_needs_chain_is_a_definition_error_not_a_crash() -> None:
    text = "".join(
        f'[jobs.j{i}]\nrun = "true"\n' + (f'needs = ["j{i - 1}"]\n' if i else "") for i in range(1500)
    )
    with pytest.raises(jobs.DefinitionError, match="at most"):
        parse_definitions(text, "0" * 40)


def test_a_need_state_must_be_known() -> None:
    with pytest.raises(jobs.DefinitionError, match=r"jobs.b.needs.a: must be one of succeeded, failed, any"):
        parse_definitions("[jobs.a]\nrun='x'\n[jobs.b]\nrun='x'\nneeds = { a = 'maybe' }\n", "ab" * 20)


def test_runs_on_must_be_labels() -> None:
    with pytest.raises(jobs.DefinitionError, match=r"jobs\.a\.runs_on"):
        parse_definitions("[jobs.a]\nrun = 'x'\nruns_on = ['Linux box']\n", "ab" * 20)


@pytest.mark.parametrize("path", ["/etc", "../x", "a/../../b", ".git/hooks"])
def test_outputs_stay_inside_the_checkout(path: str) -> None:
    with pytest.raises(jobs.DefinitionError, match=r"jobs\.a\.outputs"):
        parse_definitions(f"[jobs.a]\nrun = 'x'\noutputs = [{json.dumps(path)}]\n", "ab" * 20)


THREE_MISTAKES = """
[jobs.a]
run = "x {matrix.py}"
matrix = { py = ["3 .1"] }
needs = { b = "sometimes" }
if = 'branch(main)'
runs_on = ["Big Box"]
outputs = ["../up"]
resources = ["GPU"]
retry = { on = ["cancelled"] }
[jobs.b]
run = "y"
"""


def test_every_mistake_with_the_new_keys_is_reported_at_once() -> None:
    with pytest.raises(jobs.DefinitionError) as err:
        parse_definitions(THREE_MISTAKES, "ab" * 20)
    keys = [
        "jobs.a.matrix",
        "jobs.a.needs.b",
        "jobs.a.if",
        "jobs.a.runs_on",
        "jobs.a.outputs",
        "jobs.a.resources",
        "jobs.a.retry.on",
    ]
    assert all(k in str(err.value) for k in keys), str(err.value)
    assert len(err.value.errors) == len(keys)


@pytest.mark.parametrize(
    "text",
    [
        '[jobs.a]\nrun = "x"\nif = "' + "!" * 505 + 'true"\n',  # `!` nests like parentheses
        '[jobs.a]\nrun = "x"\nneeds = [' + ",".join(f'"j{i}"' for i in range(5000)) + "]\n",
        '[jobs.a]\nrun = "x"\noutputs = ["."]\n',  # the whole checkout, .git included
    ],
)
def test_definitions_that_nest_or_grow_without_bound_are_one_clear_error(text: str) -> None:
    with pytest.raises(jobs.DefinitionError):
        parse_definitions(text, COMMIT)


def test_the_names_jobs_node_exported_are_still_there() -> None:
    import jobs.node
    import jobs.spec.definitions
    import jobs.spec.durations

    for name in ("DEFINITIONS_FILE", "Definitions", "JobDef", "RetrySpec", "load_definitions"):
        assert getattr(jobs.node, name) is getattr(jobs.spec.definitions, name)
    assert jobs.node.parse_definitions is parse_definitions
    assert jobs.node.parse_duration is jobs.spec.durations.parse_duration
    assert jobs.node.format_duration is jobs.spec.durations.format_duration
