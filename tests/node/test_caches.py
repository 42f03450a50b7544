"""Caches between runs: restored before and saved after a job, keyed by a hash of files of the
commit's tree (computed without running its code), node-local, bounded, in separate scopes.

Through the installed `git-jobs` script on one node (caches never travel).
"""

from __future__ import annotations

import os

import pygit2
import pytest

from jobs.node import cache
from jobs.spec.definitions import parse_definitions
from tests.conftest import git
from tests.jobs.test_logs import Net, gjb, net, ok

__all__ = ["net"]  # the fixture

DEPS = (
    "[jobs.deps]\n"
    'run = "if [ -f .venv/marker ]; then echo reused $(cat .venv/marker); '
    'else mkdir -p .venv && echo built-$GIT_JOBS_RUN_ID > .venv/marker && echo fresh; fi"\n'
    'cache = { key = "deps-{hash(\'requirements*.txt\')}", paths = [".venv"] }\n'
)


def _commit(net: Net, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (net.a / name).write_text(text)
        git(net.a, "add", name)
    git(net.a, "commit", "-qm", message)
    git(net.a, "push", "-q", "hub", "HEAD:main")
    return git(net.a, "rev-parse", "HEAD").strip()


def _log(net: Net, rev: str = "HEAD") -> bytes:
    return ok(net.a, "logs", f"{rev}:deps", key=net.a_key).out


@pytest.mark.slow
def test_a_cache_hit_on_the_second_run(net: Net) -> None:
    _commit(net, {".git-jobs.toml": DEPS, "requirements.txt": "msgspec\n"}, "one")
    ok(net.a, "work", "any", key=net.a_key)
    first = _log(net)
    assert (
        b"cache miss: deps-" in first
        and b"fresh" in first
        and b"cache deps-" in first
        and b"saved .venv" in first
    )
    _commit(net, {"README": "unrelated change\n"}, "two")  # same requirements: same key
    ok(net.a, "work", "any", key=net.a_key)
    second = _log(net)
    assert b"cache hit: deps-" in second and b"reused built-" in second, second
    key = first.split(b"cache miss: ")[1].split(b" ")[0]
    assert key in second
    _commit(net, {"requirements-dev.txt": "pytest\n"}, "three")  # a matched file changed: new key
    ok(net.a, "work", "any", key=net.a_key)
    third = _log(net)
    assert b"cache miss: deps-" in third and b"fresh" in third and key not in third


@pytest.mark.slow
def test_a_contributors_cache_never_reaches_a_followed_branchs_run(net: Net) -> None:
    _commit(net, {".git-jobs.toml": DEPS, "requirements.txt": "msgspec\n"}, "one")
    git(net.a, "checkout", "-q", "-b", "pr")
    (net.a / "README").write_text("contributor\n")
    git(net.a, "add", "README")
    git(net.a, "commit", "-qm", "contributor")
    git(net.a, "push", "-q", "hub", "HEAD:refs/pull/7/head")
    ok(net.a, "work", "any", "--follow", "hub:refs/pull/*/head", key=net.a_key)
    assert b"cache miss" in _log(net) and b"(contributed scope)" in _log(net)
    git(net.a, "checkout", "-q", "main")
    ok(net.a, "work", "any", "--follow", "hub:refs/heads/main", key=net.a_key)
    main = _log(net)
    assert b"cache miss" in main and b"(trusted scope)" in main and b"fresh" in main  # not the contributor's


def test_the_store_is_bounded_least_recently_used_first(net: Net) -> None:
    repo = pygit2.Repository(str(net.a))
    src = net.tmp / "src"
    (src / ".venv").mkdir(parents=True)
    (src / ".venv" / "blob").write_bytes(b"x" * 4000)
    git(net.a, "config", "jobs.cacheMax", "10k")
    for key in ("k1", "k2"):
        assert "saved" in cache.save(repo, "trusted", key, src, (".venv",))
    old = cache.entry_dir(repo, "trusted", "k1")
    os.utime(old, (1, 1))  # k1: the least recently used
    assert "kept as it is" in cache.save(repo, "trusted", "k2", src, (".venv",))  # never overwritten
    note = cache.save(repo, "trusted", "k3", src, (".venv",))
    assert "evicted 1" in note, note
    assert not old.exists() and cache.entry_dir(repo, "trusted", "k3").exists()


def test_the_key_is_computed_from_the_tree_without_running_code(net: Net) -> None:
    (net.a / "sub").mkdir()
    sha = _commit(net, {"requirements.txt": "a\n", "sub/requirements-x.txt": "b\n"}, "reqs")
    repo = pygit2.Repository(str(net.a))
    spec = cache.CacheSpec("deps-{hash('requirements*.txt')}-{os}", (".venv",))
    one = cache.cache_key(repo, sha, spec, "j", {"os": "linux"})
    deep = cache.cache_key(repo, sha, cache.CacheSpec("d-{hash('**/requirements*.txt')}", ("x",)), "j", {})
    assert one.startswith("deps-") and one.endswith("-linux") and deep != one
    (net.a / "sub" / "requirements-x.txt").write_text("changed\n")
    git(net.a, "commit", "-qam", "sub only")
    sha2 = git(net.a, "rev-parse", "HEAD").strip()
    assert cache.cache_key(repo, sha2, spec, "j", {"os": "linux"}) == one  # * stays in one directory
    assert (
        cache.cache_key(repo, sha2, cache.CacheSpec("d-{hash('**/requirements*.txt')}", ("x",)), "j", {})
        != deep
    )


@pytest.mark.parametrize(
    "value",
    [
        '{ key = "k-{run(\'rm -rf /\')}", paths = [".venv"] }',
        '{ key = "k {hash(\'a\')}", paths = [".venv"] }',
        '{ key = "k", paths = ["../up"] }',
        '{ key = "k", paths = [] }',
        '{ key = "k-{hash(a)}", paths = [".venv"] }',
        '{ key = "k", paths = [".venv"], extra = 1 }',
    ],
)
def test_a_bad_cache_is_a_definition_error(value: str) -> None:
    with pytest.raises(Exception, match=r"jobs\.x\.cache"):
        parse_definitions(f'[jobs.x]\nrun = "true"\ncache = {value}\n', "0" * 40)


def test_a_bad_cache_max_is_one_line(net: Net) -> None:
    _commit(net, {".git-jobs.toml": DEPS, "requirements.txt": "x\n"}, "one")
    git(net.a, "config", "jobs.cacheMax", "lots")
    got = gjb(net.a, "work", "any", key=net.a_key)
    log = _log(net)
    assert got.code == 0 and b"cache not used: git config jobs.cacheMax: 'lots' is not a count" in log, log
