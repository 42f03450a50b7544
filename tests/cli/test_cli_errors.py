"""Every user error is one clear line on stderr and exit code 2 — never a traceback.

Each case names the mistake a user makes and a word the message must contain, so a message
that stops saying what went wrong fails the test, not only a crash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pygit2
import pytest

import cob
import jobs
from tests.clirunner import gj, ok, user_error


@pytest.fixture
def setup(repo: pygit2.Repository, tmp_path: Path) -> dict[str, str]:
    """A repository with a job that has a run of node a, and keys of nodes a and b."""
    a = cob.Signer.generate()
    b = cob.Signer.generate()
    key_a, key_b = a.save(tmp_path / "a.key"), b.save(tmp_path / "b.key")
    store = jobs.Jobs.open(repo.path, signer=a)
    job = store.create("HEAD", "build")
    run = job.run("https://ci.example/1")
    return {"wd": repo.workdir, "a": str(key_a), "b": str(key_b), "job": job.id, "run": str(run)}


def check(cases: Sequence[tuple[tuple[str, ...], Mapping[str, str | None], str]], cwd: str) -> None:
    failures = []
    for args, env, needle in cases:
        try:
            line = user_error(cwd, *args, **dict(env))
            assert needle.lower() in line.lower(), f"{needle!r} not in {line!r}"
        except AssertionError as e:
            failures.append(f"{args}: {e}")
    assert not failures, "\n".join(failures)


def test_outside_a_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    check(
        [
            (("list",), {}, "not a git repository"),
            (("status",), {}, "not a git repository"),
            (("show", "abc"), {}, "not a git repository"),
            (("verify",), {}, "not a git repository"),
            (("sync",), {}, "not a git repository"),
            (("allowed-signers",), {}, "not a git repository"),
            (("-C", str(tmp_path / "missing"), "list"), {}, "cannot change to"),
            (("whoami",), {}, "no key"),
            (("frobnicate",), {}, "invalid choice"),
        ],
        str(plain),
    )
    bare = gj(plain)
    assert bare.code == 2 and bare.out.startswith("usage: git jobs") and bare.err == ""


@pytest.mark.slow
def test_unknown_and_ambiguous_jobs(setup: dict[str, str], repo: pygit2.Repository) -> None:
    # Enough jobs that two ids share a first hex digit (pigeonhole: 17 ids, 16 digits).
    store = jobs.Jobs.open(repo.path, signer=cob.Signer.from_file(setup["a"]))
    ids = [store.create("HEAD", f"j{i}").id for i in range(17)]
    firsts = [i[0] for i in ids]
    shared = next(c for c in firsts if firsts.count(c) > 1)
    a = {"GIT_JOBS_KEY": setup["a"]}
    check(
        [
            (("show", shared), {}, "ambiguous"),
            (("run", shared, "--log", "https://x.example/1"), a, "ambiguous"),
            (("show", "0" * 40), {}, "no job"),
            (("show", "not-hex"), {}, "not a job id"),
            (("show", "HEAD:nope"), {}, "no job 'nope'"),
            (("show", "nosuchrev:build"), {}, "not in this repository"),
            (("run", "HEAD:nope", "--log", "https://x.example/1"), a, "no job"),
            (("finish", "HEAD:nope", setup["run"], "failed"), a, "no job"),
            (("create", "nosuchrev"), a, "not in this repository"),
            (("status", "nosuchrev"), {}, "not in this repository"),
            (("list", "--commit", "nosuchrev"), {}, "not in this repository"),
            (("list", "--node", "z6Mknotanode"), {}, "node id"),
        ],
        setup["wd"],
    )


@pytest.mark.slow
def test_bad_input_and_keys(setup: dict[str, str], tmp_path: Path) -> None:
    a = {"GIT_JOBS_KEY": setup["a"]}
    b = {"GIT_JOBS_KEY": setup["b"]}
    job, run = setup["job"], setup["run"]
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key\n")
    check(
        [
            # bad URL
            (("run", job, "--log", "not a url"), a, "log url"),
            (("run", job, "--log", "ci.example/logs/1"), a, "url"),
            (("run", job, "--log", "file:relative/path"), a, "absolute path"),
            (("run", job), a, "--log"),
            # bad reason, bad or unknown run
            (("finish", job, run, "exploded"), a, "unknown reason"),
            (("finish", job, "zz-not-a-run", "failed"), a, "not a run id"),
            (("finish", job, "ffff", "failed"), a, "no run"),
            (("finish", job, run, "failed"), b, "belongs to node"),
            # bad name
            (("create", "HEAD", "--name", "../etc"), a, "invalid job name"),
            (("create", "HEAD", "--name", ""), a, "name"),
            # no key, bad keys
            (("create", "HEAD"), {"GIT_JOBS_KEY": None}, "no key"),
            (("run", job, "--log", "https://x.example/1"), {}, "no key"),
            (("finish", job, run, "failed"), {}, "no key"),
            (("--key", str(tmp_path / "missing.key"), "create", "HEAD"), {}, "key file not found"),
            (("create", "HEAD", "--key", str(garbage)), {}, "not an openssh private key"),
            (("whoami",), {"GIT_JOBS_KEY": str(tmp_path / "missing.key")}, "missing.key"),
            # bad options
            (("status", "--watch", "--interval", "0"), {}, "interval"),
            (("status", "--interval", "soon"), {}, "invalid float"),
            (("sync",), {}, "no remote"),
            (("sync", str(tmp_path / "no-such-hub")), a, "no-such-hub"),
            (("demo", "--keep", setup["wd"]), {}, "not empty"),
        ],
        setup["wd"],
    )
    # A run finished once cannot be finished again; nothing changed by any of the above.
    ok(setup["wd"], "finish", job, run, "succeeded", **a)
    check([(("finish", job, run, "failed"), a, "already finished")], setup["wd"])
    shown = ok(setup["wd"], "show", job, "--json").json
    assert [(r["id"], r["reason"]) for r in shown["runs"]] == [(run, "succeeded")]
    assert gj(setup["wd"], "verify").code == 0
