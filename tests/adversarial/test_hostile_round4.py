"""Round 4 of the attacker's review: what landed with runners, structured outputs, artifacts,
caches, secrets and provenance. Each test reproduces a finding and failed before its fix.

Real processes (``sh``), real repositories and the installed CLI where the finding is about
what a node does; the redaction pieces in-process, where a pipe's timing would otherwise
decide whether the old code leaked.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pygit2
import pytest

import cob
import jobs
from jobs import artifacts
from jobs.node.capture import MAX_LINE, CappedLog
from jobs.node.secrets import Given
from jobs.node.values import render_run
from tests.clirunner import gj, ok
from tests.conftest import git
from tests.jobs.test_logs import Net, gjb, net, only_run
from tests.jobs.test_logs import ok as ok_net
from tests.node.test_node_requests import Hub, hub  # noqa: F401 - the fixture
from tests.node.test_node_work import commit_defs, key, work_repo  # noqa: F401 - fixtures
from tests.node.test_outputs_values import ACROSS, finishes, forge

__all__ = ["net"]  # the fixture

# -- values: a need's output is data wherever the placeholder stands --------------------------
HOSTILE = "$(touch PWNED)`touch PWNED`'; touch PWNED; '\"; touch PWNED; \"\nEOF\ntouch PWNED\n"


@pytest.mark.parametrize(
    "run",
    [
        "printf '%s' {needs.p.outputs.v}",  # unquoted: what shlex.quote was for
        'printf "%s" "{needs.p.outputs.v}"',  # in double quotes: $(…) ran
        "printf '%s' 'v={needs.p.outputs.v}'",  # in single quotes: the value closed them
        'printf "%s" "$(printf "%s" {needs.p.outputs.v})"',  # in a command substitution
        "cat <<EOF\n{needs.p.outputs.v}\nEOF",  # in a here-document: $(…) ran
    ],
)
def test_a_needs_value_is_never_code_in_any_quoting(run: str, tmp_path: Path) -> None:
    rendered, missing = render_run(run, lambda job, key: HOSTILE if (job, key) == ("p", "v") else None)
    assert missing == []
    got = subprocess.run(["sh", "-c", rendered], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert not (tmp_path / "PWNED").exists(), rendered
    assert HOSTILE.rstrip("\n") in got.stdout  # the value itself, byte for byte


def test_a_missing_value_is_empty_and_named(tmp_path: Path) -> None:
    rendered, missing = render_run('printf "[%s]" "{needs.p.outputs.v}"', lambda job, key: None)
    assert missing == ["{needs.p.outputs.v}"]
    got = subprocess.run(["sh", "-c", rendered], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert got.stdout == "[]"


QUOTED = """
[jobs.plan]
run = '''
echo 'title=$(touch "$HOME/../PWNED"; touch /tmp/git-jobs-round4-pwned)' >> "$GIT_JOBS_OUTPUT"
'''
[jobs.use]
needs = ["plan"]
run = 'echo "building: {needs.plan.outputs.title}"'
"""


def test_a_quoted_placeholder_runs_no_value_on_a_node(
    work_repo: Path,
    key: tuple[cob.Signer, Path],
) -> None:
    marker = Path("/tmp/git-jobs-round4-pwned")
    marker.unlink(missing_ok=True)
    sha = commit_defs(work_repo, QUOTED)
    res = gj(work_repo, "work", "any", key=key[1])
    assert res.code == 0, res.out + res.err
    assert not marker.exists()
    store = jobs.Jobs.open(work_repo)
    job = next(j for j in store.find_by_commit(sha) if j.name == "use")
    latest = job.runs_of(key[0].nid).latest()
    assert latest is not None and latest[1].succeeded
    log = ok(work_repo, "logs", str(latest[0])).out
    assert 'building: $(touch "$HOME/../PWNED"; touch /tmp/git-jobs-round4-pwned)' in log


# -- secrets: a value of several lines, and a line longer than the redaction window ----------
PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACBk0H8qI4Yp0G8rUuVZcJq3X1lq9d0g2Jm0Jxv7bXJ2WQAAAJgQ8m3LEPJt\n"
    "-----END OPENSSH PRIVATE KEY-----"
)
PEM_LINES = PEM.splitlines()[1:3]


def _captured(tmp_path: Path, patterns: list[re.Pattern[bytes]], *chunks: bytes) -> bytes:
    """What a run's log file holds after the pump took ``chunks`` (as reads of the pipe)."""
    path = tmp_path / "log"
    log = CappedLog(path, 8 * 2**20, patterns)
    for chunk in chunks:
        log._redacted(chunk)  # as the pump thread does for each read of the pipe
    log.close()
    return path.read_bytes()


@pytest.mark.parametrize(
    "printed",
    [
        repr(PEM).encode() + b"\n",  # Python's repr, JSON: "\n" between the lines
        b"".join(b"  " + line.encode() + b"\n" for line in PEM.splitlines()),  # indented (YAML)
    ],
)
def test_a_multiline_secret_printed_escaped_or_indented_is_redacted(tmp_path: Path, printed: bytes) -> None:
    given = Given(env={"DEPLOY_KEY": PEM}, names=("DEPLOY_KEY",))
    got = _captured(tmp_path, given.patterns, printed)
    assert not any(line.encode() in got for line in PEM_LINES), got
    assert b"[REDACTED]" in got


def test_a_secret_cut_by_the_redaction_window_is_still_redacted(tmp_path: Path) -> None:
    secret = "pypi-AgEIcHlwaS5vcmcCJGE0ZjM5"
    given = Given(env={"PYPI_TOKEN": secret}, names=("PYPI_TOKEN",))
    pad = b"x" * (MAX_LINE - 3)  # a progress bar with no newline, then the token
    got = _captured(tmp_path, given.patterns, pad + secret.encode()[:3], secret.encode()[3:] + b"\n")
    assert secret[3:].encode() not in got and got.endswith(b"[REDACTED]\n"), got[-80:]
    assert got.count(b"x") == len(pad)


def test_a_secret_in_the_outputs_is_named_never_signed() -> None:
    given = Given(env={"PYPI_TOKEN": "pypi-AgEIcHlwaS5vcmc", "DEPLOY_KEY": PEM})
    assert given.leaks({"version": "1.2.3"}) is None
    assert given.leaks({"v": "x pypi-AgEIcHlwaS5vcmc y"}) == "output 'v' holds the value of secret PYPI_TOKEN"
    assert given.leaks({"k": PEM_LINES[1]}) == "output 'k' holds the value of secret DEPLOY_KEY"
    assert Given(env={"SHORT": "ab"}).leaks({"k": "ab"}) is None  # too short to tell from text


LEAKY = '[jobs.upload]\nrun = "echo token=$PYPI_TOKEN >> \\"$GIT_JOBS_OUTPUT\\""\nsecrets = ["PYPI_TOKEN"]\n'


def test_a_secret_written_to_the_outputs_is_not_signed_into_the_finish(net: Net, tmp_path: Path) -> None:
    token = "pypi-AgEIcHlwaS5vcmcCJGE0ZjM5"
    (tmp_path / "token").write_text(token + "\n")
    git(net.a, "config", "--add", "jobs.secret", f"PYPI_TOKEN=file:{tmp_path / 'token'}")
    (net.a / ".git-jobs.toml").write_text(LEAKY)
    git(net.a, "add", ".git-jobs.toml")
    git(net.a, "commit", "-qm", "leaky")
    git(net.a, "push", "-q", "hub", "HEAD:main")
    gjb(net.a, "work", "any", "--follow", "hub:refs/heads/main", key=net.a_key)
    _, run = only_run(net.a, "upload", net.a_nid)
    assert token not in str(run.values or {})  # a finish is signed and sent to every peer, for good
    assert run.failed


# -- caches: one contributor's ref never restores another's -------------------------------
POISON = (
    "[jobs.deps]\n"
    'run = "mkdir -p .venv && echo POISONED > .venv/marker"\n'
    'cache = { key = "deps-{hash(\'requirements*.txt\')}", paths = [".venv"] }\n'
)
DEPS = (
    "[jobs.deps]\n"
    'run = "if [ -f .venv/marker ]; then echo reused $(cat .venv/marker); '
    'else mkdir -p .venv && echo clean > .venv/marker && echo fresh; fi"\n'
    'cache = { key = "deps-{hash(\'requirements*.txt\')}", paths = [".venv"] }\n'
)


def _pull(net: Net, number: int, defs: str) -> None:
    git(net.a, "checkout", "-q", "--detach", "main")
    (net.a / ".git-jobs.toml").write_text(defs)
    (net.a / "README").write_text(f"pull request {number}\n")
    git(net.a, "add", ".git-jobs.toml", "README")
    git(net.a, "commit", "-qm", f"pull request {number}")
    git(net.a, "push", "-q", "hub", f"HEAD:refs/pull/{number}/head")


@pytest.mark.slow
def test_one_contributors_cache_never_reaches_another_contributors_run(net: Net) -> None:
    (net.a / "requirements.txt").write_text("msgspec\n")
    git(net.a, "add", "requirements.txt")
    git(net.a, "commit", "-qm", "requirements")
    git(net.a, "push", "-q", "hub", "HEAD:main")
    _pull(net, 7, POISON)  # the attacker's pull request saves a poisoned .venv under the key
    ok_net(net.a, "work", "any", "--follow", "hub:refs/pull/7/head", key=net.a_key)
    _pull(net, 8, DEPS)  # an honest one computes the same key from the same requirements
    ok_net(net.a, "work", "any", "--follow", "hub:refs/pull/8/head", key=net.a_key)
    log = ok_net(net.a, "logs", "HEAD:deps", key=net.a_key).out
    assert b"(contributed scope)" in log and b"POISONED" not in log and b"fresh" in log, log


# -- artifacts: a tree naming one entry twice is refused before anything is written ----------
def test_an_artifact_naming_a_directory_and_a_link_alike_is_refused(tmp_path: Path) -> None:
    repo = pygit2.init_repository(str(tmp_path / "r"), bare=True)
    blob = repo.create_blob(b"export PWNED=1\n")
    inner = repo.TreeBuilder()
    inner.insert(".bashrc", blob, pygit2.enums.FileMode.BLOB)
    sub = inner.write()
    link = repo.create_blob(str(tmp_path / "home").encode())
    # git's own writer never repeats a name; raw bytes can: `x` a directory, then `x` a link
    raw = b"40000 x\0" + sub.raw + b"120000 x\0" + link.raw
    tree = str(repo.odb.write(pygit2.enums.ObjectType.TREE, raw))
    (tmp_path / "home").mkdir()
    assert "twice" in (artifacts.verify_tree(repo, tree) or "")
    with pytest.raises(OSError):
        artifacts.write_tree(repo, tree, tmp_path / "out")
    assert not (tmp_path / "home" / ".bashrc").exists()
    assert os.listdir(tmp_path / "home") == []


# -- dynamic matrix: a need's value nested deep enough to break json.loads -------------------
DEEP = """
[jobs.plan]
run = 'printf "targets=%s\\\\n" "$(head -c 3000 /dev/zero | tr "\\\\0" "[")" >> "$GIT_JOBS_OUTPUT"'
[jobs.build]
needs = ["plan"]
run = "echo {matrix.target}"
matrix = { target = "{needs.plan.outputs.targets}" }
[jobs.other]
run = "echo other"
"""


@pytest.mark.slow
def test_a_deeply_nested_list_value_fails_its_matrix_not_the_node(
    work_repo: Path,
    key: tuple[cob.Signer, Path],
) -> None:
    sha = commit_defs(work_repo, DEEP)
    res = gj(work_repo, "work", "any", key=key[1])
    assert res.code == 1, res.out + res.err  # `build` failed: not an internal error (3)
    assert "Traceback" not in res.err and "internal error" not in res.err
    store = jobs.Jobs.open(work_repo)
    got = {j.name: j.runs_of(key[0].nid).latest() for j in store.find_by_commit(sha)}
    assert got["other"] is not None and got["other"][1].succeeded
    assert got["build"] is not None and got["build"][1].failed
    assert "not a JSON list" in ok(work_repo, "logs", str(got["build"][0])).out


# -- provenance: a bundle whose manifest nests past json's recursion limit -------------------
def test_a_bundle_with_a_deeply_nested_manifest_is_refused_in_one_line(tmp_path: Path) -> None:
    maker = tmp_path / "maker"
    maker.mkdir()
    git(maker, "init", "-q")
    (maker / "manifest.json").write_text("[" * 200_000)
    git(maker, "add", "manifest.json")
    git(maker, "commit", "-qm", "git-jobs evidence bundle 1")
    git(maker, "update-ref", "refs/git-jobs-evidence/manifest", "HEAD")
    bundle = tmp_path / "evil.bundle"
    git(maker, "bundle", "create", "-q", str(bundle), "refs/git-jobs-evidence/manifest")
    res = gj(maker, "verify", "--bundle", str(bundle))
    assert res.code == 2, res
    assert (
        res.err.strip()
        == f"error: refused {bundle}: it is not a git-jobs evidence bundle (no readable manifest)"
    )


# -- runners: a directory in the checkout is no licence to import a module of that name ------
NAMESPACE = """
[jobs.zen]
runner = "python"
run = "this:x"
[jobs.nodeside]
runner = "python"
run = "jobs.cli:main"
"""


@pytest.mark.slow
def test_the_python_runner_imports_no_module_a_bare_directory_of_the_checkout_names(
    work_repo: Path,
    key: tuple[cob.Signer, Path],
) -> None:
    # A directory without __init__.py is a namespace portion: a regular package or module of
    # that name elsewhere on sys.path (the stdlib's `this`, the node's own `jobs`) wins the import.
    for top in ("this", "jobs"):
        (work_repo / top).mkdir()
        (work_repo / top / "README").write_text("not a package\n")
        git(work_repo, "add", top)
    sha = commit_defs(work_repo, NAMESPACE)
    res = gj(work_repo, "work", "any", key=key[1])
    assert res.code == 1, res.out + res.err
    store = jobs.Jobs.open(work_repo)
    logs = {}
    for job in store.find_by_commit(sha):
        latest = job.runs_of(key[0].nid).latest()
        assert latest is not None and latest[1].failed
        logs[job.name] = ok(work_repo, "logs", str(latest[0])).out
    assert "Beautiful is better than ugly" not in logs["zen"]  # the stdlib's `this` never ran
    assert "module 'this' is not in the checkout" in logs["zen"]
    assert "module 'jobs' is not in the checkout" in logs["nodeside"]


def test_an_artifact_naming_one_subtree_many_times_is_bounded_by_visits(tmp_path: Path) -> None:
    # Three tree objects that a reader walks as 1,000 x 1,000 directories: bounded by what is
    # visited, not by what is stored (the empty tree holds no file, so no file bound was hit).
    repo = pygit2.init_repository(str(tmp_path / "r"), bare=True)
    empty = repo.TreeBuilder().write()
    level = empty
    for _ in range(2):
        builder = repo.TreeBuilder()
        for i in range(1000):
            builder.insert(f"d{i:04}", level, pygit2.enums.FileMode.TREE)
        level = builder.write()
    assert "over 40000 files and directories" in (artifacts.verify_tree(repo, str(level)) or "")


def test_comparing_an_outputs_tree_that_names_one_subtree_many_times_is_bounded(tmp_path: Path) -> None:
    # `status` names the files where trusted nodes' outputs differ (with no policy, every
    # node's): a diff walked the hostile tree as 1,000 x 1,000 x 1,000 directories.
    from jobs.evidence import diff_trees

    repo = pygit2.init_repository(str(tmp_path / "r"), bare=True)
    honest = repo.TreeBuilder()
    honest.insert("wheel.whl", repo.create_blob(b"wheel"), pygit2.enums.FileMode.BLOB)
    level = repo.TreeBuilder().write()
    for _ in range(2):
        builder = repo.TreeBuilder()
        for i in range(1000):
            builder.insert(f"d{i:04}", level, pygit2.enums.FileMode.TREE)
        level = builder.write()
    assert diff_trees(repo, str(honest.write()), str(level)) is None  # by digest only
    other = repo.TreeBuilder()
    other.insert("wheel.whl", repo.create_blob(b"other"), pygit2.enums.FileMode.BLOB)
    assert diff_trees(repo, str(honest.write()), str(other.write())) == ["wheel.whl"]


# -- caches: a key's globs are the commit's, and so is the tree they are matched against ------
def test_a_cache_key_glob_made_to_backtrack_costs_a_bounded_time(tmp_path: Path) -> None:
    from jobs.spec.cache import parse_cache

    repo_dir = tmp_path / "r"
    deep = repo_dir.joinpath(*["a"] * 16)
    deep.mkdir(parents=True)
    (deep / "y").write_text("y\n")
    (repo_dir / "x").write_text("x\n")
    git(tmp_path, "init", "-q", str(repo_dir))
    git(repo_dir, "add", "-A")
    git(repo_dir, "commit", "-qm", "deep")
    glob = "**/" * 20 + "x"
    parse_cache({"key": f"k-{{hash('{glob}')}}", "paths": [".venv"]})  # a valid definition
    script = (
        "import sys, pygit2\n"
        "from jobs.node.cache import cache_key\n"
        "from jobs.spec.cache import parse_cache\n"
        "repo = pygit2.Repository(sys.argv[1])\n"
        "spec = parse_cache({'key': sys.argv[2], 'paths': ['.venv']})\n"
        "print(cache_key(repo, str(repo.head.target), spec, 'deps', {}))\n"
    )
    got = subprocess.run(
        [sys.executable, "-c", script, str(repo_dir), f"k-{{hash('{glob}')}}"],
        capture_output=True,
        text=True,
        timeout=60,  # a backtracking regex took hours here, in the node, before the job
        check=True,
    )
    assert got.stdout.startswith("k-") and len(got.stdout.strip()) == 18


# -- the daemon: one commit that breaks the node's code never starves the others ------------
def test_one_commit_that_breaks_the_work_pass_does_not_stop_the_others(
    work_repo: Path,
    key: tuple[cob.Signer, Path],
) -> None:
    import io

    from jobs.node.candidates import Candidate
    from jobs.node.daemon import Node
    from jobs.node.work import Workshop

    good = commit_defs(work_repo, '[jobs.ok]\nrun = "true"\n')
    bad = commit_defs(work_repo, '[jobs.ok]\nrun = "echo newer"\n')
    store = jobs.Jobs.open(work_repo, key[0])

    class Breaks(Workshop):  # stands for any data no check foresaw (the deep JSON list was one)
        def work_any(self, commit: str, **kw: object) -> jobs.node.work.WorkReport:  # type: ignore[override]
            if commit == bad:
                raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")
            return super().work_any(commit, **kw)  # type: ignore[arg-type]

    class Both(Node):
        def _commits(self, store: jobs.Jobs) -> list[Candidate]:
            return [Candidate(bad, "refs/pull/1/head"), Candidate(good, "refs/heads/main")]  # newest first

    out = io.StringIO()
    node = Both(str(work_repo), key[0], [], stream=out)
    node._work(Breaks(store))  # the pass goes on: no exception, the older commit is worked
    ok_job = next(j for j in store.find_by_commit(good) if j.name == "ok")
    latest = ok_job.runs_of(key[0].nid).latest()
    assert latest is not None and latest[1].succeeded
    assert f"{bad[:12]} (refs/pull/1/head): error: maximum recursion depth exceeded" in out.getvalue()
    assert node.status["worker:work"].failures == 1

    class Only(Node):
        def _commits(self, store: jobs.Jobs) -> list[Candidate]:
            return [Candidate(bad, "refs/pull/1/head")]

    with pytest.raises(RecursionError):  # every commit failed: the worker backs off, as before
        Only(str(work_repo), key[0], [], stream=io.StringIO())._work(Breaks(store))


# -- values with no policy: a stranger's pass never feeds this node's commands ----------------
@pytest.mark.slow
def test_with_no_policy_a_strangers_values_never_reach_a_command(hub: Hub) -> None:
    b_path, b, b_key = hub.node("b")
    c_path, c, c_key = hub.node("c")  # any key that can push to the hub
    sha = commit_defs(hub.maintainer, ACROSS)  # no [policy]: every node counts for status
    hub.push()
    for path in (b_path, c_path):
        git(path, "pull", "-q", "origin", "main")
    forge(c_path, c, c_key, sha)  # a pass of `plan` (runs_on planner) with values c chose
    ok(b_path, "sync", "origin", key=b_key)
    res = gj(b_path, "work", "any", key=b_key)  # b has no planner label: plan is elsewhere
    assert res.code in (0, 8), res.out + res.err
    store = jobs.Jobs.open(b_path)
    assert finishes(store, sha, b.nid) == {}  # nothing ran on c's word: no `build (target=evil)`
    base = next((j for j in store.find_by_commit(sha) if j.name == "build"), None)
    assert base is None or b.nid not in base.fanouts()


# -- handoff: a node removed from trust stops counting in the same process ---------------------
@pytest.mark.slow
def test_a_published_artifact_stops_counting_once_its_node_is_no_longer_trusted(
    net: Net, tmp_path: Path
) -> None:
    from jobs.node.handoff import Handoff
    from jobs.spec.definitions import load_definitions
    from tests.jobs.test_logs import clone_m
    from tests.jobs.test_logs import commit_defs as commit_net
    from tests.node.test_artifacts import BUILD

    sha = commit_net(net, BUILD)
    ok_net(net.a, "work", "any", key=net.a_key)
    ok_net(net.a, "sync", "hub", key=net.a_key)
    m = clone_m(net)
    ok_net(m, "sync", key=net.m_key)
    ok_net(m, "trust", "add", net.a_nid, "--name", "a", key=net.m_key)
    store = jobs.Jobs.open(m)
    build = next(d for d in load_definitions(store.repo, sha) if d.name == "build")
    handoff = Handoff(store)  # a node process: it keeps what it found
    assert (handoff.why(sha, build) or "").startswith(f"outputs published by node {net.a_nid[:16]}")
    ok_net(m, "trust", "remove", net.a_nid, key=net.m_key)  # a's key was stolen
    assert handoff.why(sha, build) is None  # the node builds it itself again
    dest = tmp_path / "checkout"
    dest.mkdir()
    assert handoff.provide(sha, ["build"], dest) == [] and os.listdir(dest) == []


# -- outputs and caches: a job's millions of files are not listed only to be refused ----------
def test_listing_a_jobs_files_stops_past_the_bound(tmp_path: Path) -> None:
    from jobs.node.outputs import _files

    many = tmp_path / ".venv"
    for d in range(10):
        (many / f"d{d}").mkdir(parents=True)
        for f in range(50):
            (many / f"d{d}" / f"f{f}").write_text("")
    assert len(_files(str(many))) == 1 + 10 + 500
    cut = _files(str(many), 100)
    assert 100 < len(cut) <= 101  # enough to refuse (over MAX_FILES), no more in memory
