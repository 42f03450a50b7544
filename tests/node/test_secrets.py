"""Secrets per job: a followed branch's job gets them (redacted from its log, its finish names
them); a contributor's branch never does, unless the policy says so.

Through the installed `git-jobs` script, node A following the hub's `main` and its pull refs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.spec.definitions import parse_definitions
from jobs.spec.secrets import check_names
from tests.conftest import git
from tests.jobs.test_logs import Net, commit_defs, gjb, net, ok, only_run

__all__ = ["net"]  # the fixture

TOKEN = "pypi-AgEIcHlwaS5vcmcCJGE0ZjM5"
UPLOAD = (
    '[jobs.upload]\nrun = "echo token=$PYPI_TOKEN; echo also ${PYPI_TOKEN}x; test -n \\"$PYPI_TOKEN\\""\n'
    'secrets = ["PYPI_TOKEN"]\n'
)


def _configure(net: Net, tmp: Path) -> None:
    (tmp / "token").write_text(TOKEN + "\n")
    git(net.a, "config", "--add", "jobs.secret", f"PYPI_TOKEN=file:{tmp / 'token'}")


def _finish_env(repo: Path, nid: str) -> dict[str, str]:
    _, run = only_run(repo, "upload", nid)
    assert run.evidence is not None and run.evidence.env is not None
    return dict(run.evidence.env)


@pytest.mark.slow
def test_a_followed_branchs_job_gets_the_secret_redacted_and_named_in_its_finish(
    net: Net, tmp_path: Path
) -> None:
    _configure(net, tmp_path)
    sha = commit_defs(net, UPLOAD)
    ok(net.a, "work", "any", "--follow", "hub:refs/heads/main", key=net.a_key)
    run_id, run = only_run(net.a, "upload", net.a_nid)
    assert run.succeeded, run
    log = ok(net.a, "logs", str(run_id), key=net.a_key).out
    assert TOKEN.encode() not in log
    assert b"token=[REDACTED]" in log and b"also [REDACTED]x" in log and b"secrets given: PYPI_TOKEN" in log
    assert _finish_env(net.a, net.a_nid)["secrets"] == "PYPI_TOKEN"  # the name, never the value
    shown = ok(net.a, "show", f"{sha}:upload", "--json", key=net.a_key).out
    assert TOKEN.encode() not in shown


def test_a_contributors_branch_never_gets_it(net: Net, tmp_path: Path) -> None:
    _configure(net, tmp_path)
    commit_defs(net, "")
    (net.a / ".git-jobs.toml").write_text(UPLOAD)
    git(net.a, "commit", "-qam", "contributor: print the token")
    git(net.a, "push", "-q", "hub", "HEAD:refs/pull/1/head")
    git(net.a, "reset", "-q", "--hard", "HEAD~1")
    got = gjb(net.a, "work", "any", "--follow", "hub:refs/pull/*/head", key=net.a_key)
    assert got.code == 1, got  # the job fails: it got no token
    run_id, run = only_run(net.a, "upload", net.a_nid)
    assert run.failed
    log = ok(net.a, "logs", str(run_id), key=net.a_key).out
    assert TOKEN.encode() not in log and b"token=\n" in log
    assert b"secrets not given (PYPI_TOKEN): its followed ref is not a branch or tag" in log
    assert "secrets" not in _finish_env(net.a, net.a_nid)


def test_the_policy_can_give_them_to_contributors(net: Net, tmp_path: Path) -> None:
    _configure(net, tmp_path)
    policy = f'[policy]\nnodes = {{ "{net.a_nid}" = "a" }}\nsecrets_for_requests = true\n'
    commit_defs(net, policy)
    git(net.a, "fetch", "-q", "hub", "main:refs/remotes/hub/main")
    git(net.a, "remote", "set-head", "hub", "main")
    (net.a / ".git-jobs.toml").write_text(UPLOAD + policy)
    git(net.a, "commit", "-qam", "contributor")
    git(net.a, "push", "-q", "hub", "HEAD:refs/pull/2/head")
    ok(net.a, "work", "any", "--follow", "hub:refs/pull/*/head", key=net.a_key)
    assert _finish_env(net.a, net.a_nid)["secrets"] == "PYPI_TOKEN"


def test_a_secret_not_configured_or_unreadable_is_said_in_the_log(net: Net, tmp_path: Path) -> None:
    git(net.a, "config", "--add", "jobs.secret", "PYPI_TOKEN=env:NOT_SET_ANYWHERE_29")
    commit_defs(net, UPLOAD)
    assert gjb(net.a, "work", "any", key=net.a_key).code == 1
    run_id, _ = only_run(net.a, "upload", net.a_nid)
    log = ok(net.a, "logs", str(run_id), key=net.a_key).out
    assert b"secret PYPI_TOKEN: environment variable NOT_SET_ANYWHERE_29 is not set on this node" in log


@pytest.mark.parametrize(
    ("value", "ok_"),
    [
        (["PYPI_TOKEN"], True),
        (["A", "B_2"], True),
        ("PYPI_TOKEN", False),
        (["bad-name"], False),
        (["X" * 70], False),
    ],
)
def test_secret_names_are_checked(value: object, ok_: bool) -> None:
    assert (check_names(value) is None) is ok_
    text = f'[jobs.x]\nrun = "true"\nsecrets = {json.dumps(value)}\n'
    if ok_:
        assert parse_definitions(text, "0" * 40).jobs[0].secrets == tuple(value)  # type: ignore[arg-type]
    else:
        with pytest.raises(Exception, match=r"jobs\.x\.secrets"):
            parse_definitions(text, "0" * 40)


def test_a_requested_commit_gets_them_only_when_a_followed_branch_holds_it(net: Net) -> None:
    import pygit2

    from jobs.node.candidates import REQUESTED
    from jobs.node.secrets import allowed, contributed

    main = commit_defs(net, UPLOAD)
    git(net.a, "commit", "-q", "--allow-empty", "-m", "a contributor's commit")
    theirs = git(net.a, "rev-parse", "HEAD").strip()
    repo = pygit2.Repository(str(net.a))
    asked = f"{REQUESTED}z6MkRequester"
    assert contributed(repo, main, asked)  # nothing followed yet
    repo.references.create("refs/git-jobs/follow/hub/heads/main", main)
    assert contributed(repo, main, asked) == "" and allowed(repo, main, asked) == ""  # a rerun of main
    assert "only a requester asked" in allowed(repo, theirs, asked)
    assert "secrets_for_requests" in allowed(repo, theirs, asked)
    assert allowed(repo, theirs, "HEAD") == ""  # a revision this node's user named
    assert "not a branch or tag" in allowed(repo, theirs, "refs/git-jobs/follow/hub/pull/3/head")
