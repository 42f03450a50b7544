"""The `[policy]` table and local trust as the library reads them: strict, every problem
reported at once, bounded, and never anything but a Policy or a PolicyError (fuzzed)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cob
import jobs
from jobs.policy import MAX_NODES, Policy, load_policy, parse_policy, policy_ref
from jobs.spec.definitions import parse_definitions
from jobs.trust import local_trust, trust_add, trust_remove
from tests.conftest import git

A, B = cob.Signer.generate().nid, cob.Signer.generate().nid


def problems(table: Any) -> list[str]:
    with pytest.raises(jobs.PolicyError) as e:
        parse_policy(table, "here")
    assert str(e.value) == "; ".join(e.value.errors)
    return e.value.errors


def test_a_valid_policy_normalises_node_ids_and_keeps_names() -> None:
    p = parse_policy(
        {
            "nodes": {f"did:key:{A}": "alice", B: "bob"},
            "required": ["build"],
            "quorum": 2,
            "requesters": [A, A],
        },
        "here",
    )
    assert p.nodes == {A: "alice", B: "bob"} and p.required == ("build",) and p.quorum == 2
    assert p.requesters == (A,) and p.trusts(A) and not p.trusts("z6Mkx") and not p.everyone
    assert p.name_of(B) == "bob" and p.name_of("other") is None


def test_every_problem_is_reported_at_once() -> None:
    errors = problems(
        {
            "nodes": {A: "same", B: "same", "z6Mkbad": "x", "did:key:" + A: "dup"},
            "required": ["ok", "../no", 3],
            "quorum": True,
            "requesters": ["nope"],
            "extra": 1,
        }
    )
    joined = "\n".join(errors)
    for part in (
        "policy.extra",
        "z6Mkbad",
        "given to another node",
        "listed already",
        "required[1]",
        "required[2]",
        "quorum",
        "requesters[0]",
    ):
        assert part in joined, part
    assert all(e.startswith("here: ") for e in errors)


@pytest.mark.parametrize(
    ("table", "part"),
    [
        ({}, "policy.nodes: missing"),
        ({"nodes": []}, "must be a table"),
        ({"nodes": {A: ""}}, "1 to 64"),
        ({"nodes": {A: "x" * 65}}, "1 to 64"),
        ({"nodes": {A: "a\u202eb"}}, "U+202E"),
        ({"nodes": {A: "a\x1b[2J"}}, "U+001B"),
        ({"nodes": {A: 1}}, "must be a string"),
        ({"nodes": {A: "a"}, "required": []}, "non-empty"),
        ({"nodes": {A: "a"}, "required": ["a", "a"]}, "more than once"),
        ({"nodes": {A: "a"}, "quorum": 2}, "only 1 node"),
        ({"nodes": {A: "a"}, "quorum": 0}, "from 1 to"),
        ({"nodes": {A: "a"}, "requesters": "x"}, "list"),
        ("not a table", "must be a table"),
    ],
)
def test_one_problem_one_clear_message(table: Any, part: str) -> None:
    assert part in "\n".join(problems(table))


def test_sizes_are_bounded() -> None:
    many = {f"n{i}": "x" for i in range(MAX_NODES + 1)}
    assert "at most" in problems({"nodes": many})[0]
    assert "at most" in problems({"nodes": {}, "required": ["a"] * 201})[0]


def test_escapes_never_reach_a_message() -> None:
    errors = problems({"nodes": {"\x1b]0;pwned\x07": "x"}, "\x1b[2Jkey": 1})
    assert not any("\x1b" in e or "\x07" in e for e in errors)


policy_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=20)
    | st.sampled_from([A, B, "did:key:" + A]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["nodes", "required", "quorum", "requesters", "x", A, B]), inner, max_size=5
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(policy_like)
def test_fuzzed_tables_give_a_policy_or_a_policy_error(table: Any) -> None:
    try:
        p = parse_policy(table, "here")
    except jobs.PolicyError as e:
        assert e.errors and all(e_.startswith("here: ") for e_ in e.errors)
        return
    assert isinstance(p, Policy) and all(cob.is_nid(n) for n in p.nodes)
    assert 1 <= p.quorum <= max(1, len(p.nodes))


def test_definitions_report_every_error_and_tolerate_a_policy_table() -> None:
    text = (
        '[jobs.a]\nrun = ""\nretry = 0\n[jobs.b]\nrun = "x"\nneeds = ["a", "zz"]\nwhat = 1\n'
        '[log]\nurl = "nope"\n[trigger]\nrun = ""\n[policy]\nnodes = {}\n'
    )
    with pytest.raises(jobs.DefinitionError) as e:
        parse_definitions(text, "f" * 40)
    keys = [err.split(": ")[1] for err in e.value.errors]
    assert keys == ["jobs.a.run", "jobs.a.retry.max", "jobs.b.what", "jobs.b.needs", "trigger.run", "log.url"]
    # [policy] alone is no error for the definitions: it is read elsewhere.
    assert parse_definitions("[policy]\nnodes = {}\n", "f" * 40).jobs == ()
    tomllib.loads(text)  # the file itself is valid TOML: only its meaning was wrong


def test_the_policy_ref_is_never_head(tmp_path: Path) -> None:
    repo_path = tmp_path / "r"
    git(tmp_path, "init", "-q", str(repo_path))
    (repo_path / ".git-jobs.toml").write_text(f'[policy]\nnodes = {{ "{A}" = "alice" }}\n')
    git(repo_path, "add", ".")
    git(repo_path, "commit", "-q", "-m", "policy")
    git(repo_path, "checkout", "-q", "-b", "feature")
    (repo_path / ".git-jobs.toml").write_text(f'[policy]\nnodes = {{ "{B}" = "mallory" }}\n')
    git(repo_path, "commit", "-q", "-am", "trust me")
    repo = pygit2.Repository(str(repo_path))
    source = policy_ref(repo)
    assert source is not None and source.ref == "refs/heads/main" and source.how == "local default branch"
    assert load_policy(repo).nodes == {A: "alice"}
    git(repo_path, "config", "jobs.policyRef", "feature")
    assert load_policy(repo).nodes == {B: "mallory"}  # chosen explicitly by this person


def test_local_trust_round_trip(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", str(tmp_path / "r"))
    repo = pygit2.Repository(str(tmp_path / "r"))
    assert trust_add(repo, A, "laptop") and not trust_add(repo, A, "desk")
    assert trust_add(repo, f"did:key:{B}")
    assert local_trust(repo) == dict(sorted({A: "desk", B: ""}.items()))
    assert load_policy(repo).trusted == local_trust(repo) and not load_policy(repo).everyone
    assert trust_remove(repo, A) and not trust_remove(repo, A)
    assert local_trust(repo) == {B: ""}
    with pytest.raises(jobs.InvalidInputError):
        trust_add(repo, "z6Mkshort")
    with pytest.raises(jobs.InvalidInputError):
        trust_add(repo, A, "tab\there")
