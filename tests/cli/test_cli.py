"""`git jobs` as a maintainer and a CI node use it: every command, its --json shape, the exit
codes of `status`, colour rules and help — all through the installed script, in real repos."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import time
import uuid
from pathlib import Path

import pygit2
import pytest

import cob
import jobs
from tests.clirunner import GIT_JOBS, env_with, gj, ok
from tests.conftest import commits_of, git, head

RUN_KEYS = {
    "node",
    "id",
    "status",
    "reason",
    "state",
    "log",
    "log_blob",
    "exit",
    "started_at",
    "finished_at",
    "timeout",
    "lost_at",
    "evidence",
    "values",
}
STATUS_RUN_KEYS = RUN_KEYS | {"counted", "node_name"}  # status also says whether a run counts
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def workdir(repo: pygit2.Repository) -> Path:
    return Path(repo.workdir)


@pytest.fixture
def keys(tmp_path: Path) -> list[Path]:
    """Key files of three nodes."""
    out = []
    for name in ("a", "b", "c"):
        out.append(cob.Signer.generate().save(tmp_path / "keys" / name))
    return out


def nid_of(key: Path) -> str:
    return cob.Signer.from_file(key).nid


def lib(repo: pygit2.Repository, key: Path) -> jobs.Jobs:
    """The same node through the library: for setting the scene fast (a subprocess costs
    ~0.2 s); what is under test is always read back through the script."""
    return jobs.Jobs.open(repo.path, signer=cob.Signer.from_file(key))


# -- identity ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_init_makes_a_key_once_and_whoami_shows_it(tmp_path: Path, isolated_home: Path) -> None:
    default = isolated_home / ".config" / "git-jobs" / "key"
    first = ok(tmp_path, "init")  # outside any repository: a key is per user
    nid = first.line
    assert cob.is_nid(nid) and "created key" in first.err and default.exists()
    assert oct(default.stat().st_mode & 0o777) == "0o600"
    again = ok(tmp_path, "init", "--json").json
    assert again == {"nid": nid, "key": str(default), "origin": "default", "created": False}

    who = ok(tmp_path, "whoami").out
    assert nid in who and str(default) in who and f'{nid} namespaces="git" ssh-ed25519 ' in who
    info = ok(tmp_path, "whoami", "--json").json
    assert info["nid"] == nid and info["did"] == f"did:key:{nid}" and info["key"] == str(default)
    assert info["allowed_signers"] == cob.allowed_signers_line(nid) and info["origin"] == "default"

    # An explicitly named key that does not exist yet is made there; the default is untouched.
    chosen = tmp_path / "ci" / "node.key"
    made = ok(tmp_path, "--key", str(chosen), "init", "--json").json
    assert made["created"] and made["key"] == str(chosen) and made["nid"] != nid
    assert ok(tmp_path, "whoami", "--key", str(chosen)).out.startswith(f"nid              {made['nid']}")
    # The key git signs with (ssh-keygen's format) is picked up through user.signingKey.
    ssh_key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh_key)], check=True)
    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", str(repo))
    git(repo, "config", "user.signingKey", str(ssh_key) + ".pub")
    assert ok(repo, "whoami", "--json").json["origin"] == "user.signingKey"


# -- writing and reading one job ----------------------------------------------------------------
@pytest.mark.slow
def test_create_run_finish_show_list(repo: pygit2.Repository, keys: list[Path]) -> None:
    wd, a, b = workdir(repo), keys[0], keys[1]
    sha = head(repo)
    job = ok(wd, "create", "HEAD", key=a).line
    assert re.fullmatch(r"[0-9a-f]{40}", job)
    # Idempotent, whatever names the commit, on whichever node: the same id.
    assert ok(wd, "create", sha[:7], key=a).line == job
    assert ok(wd, "create", "main", "--name", "ci", key=b).line == job
    created = ok(wd, "create", "HEAD~1", "--name", "test", "--json", key=a).json
    assert created.keys() == {"id", "commit", "name", "new"} and created["new"] is True
    assert created["commit"] == commits_of(repo)[1] and created["name"] == "test"
    assert ok(wd, "create", "HEAD~1", "--name", "test", "--json", key=b).json["new"] is False

    run = ok(wd, "run", job[:8], "--log", "https://ci.example/logs/1", key=a).line
    assert uuid.UUID(run).version == 7
    started = ok(wd, "run", "HEAD:ci", "--log", "file:///var/log/ci/2.txt", "--json", key=b).json
    assert started["job"] == job and started["node"] == nid_of(b)
    assert started["log"] == "file:///var/log/ci/2.txt" and uuid.UUID(started["run"])
    # RUN may be a unique prefix, with or without dashes.
    assert ok(wd, "finish", job[:12], run[:23], "succeeded", key=a).out == ""
    done = ok(wd, "finish", "HEAD:ci", started["run"].replace("-", "")[:20], "failed", "--json", key=b)
    assert done.json == {
        "job": job,
        "run": started["run"],
        "node": nid_of(b),
        "reason": "failed",
        "log_blob": None,
        "exit": None,
    }

    shown = ok(wd, "show", job[:10], key=a).out
    for text in (
        job,
        sha,
        run,
        started["run"],
        "https://ci.example/logs/1",
        "succeeded",
        "failed",
        nid_of(a) + " (you)",
        nid_of(b),
        "runs     2 on 2 nodes",
    ):
        assert text in shown
    data = ok(wd, "show", "HEAD:ci", "--json").json
    assert data.keys() == {"id", "commit", "name", "state", "nodes", "runs", "rejected", "fanout"}
    assert (data["id"], data["commit"], data["name"], data["state"], data["nodes"]) == (
        job,
        sha,
        "ci",
        "failed",
        2,
    )
    assert data["rejected"] == []
    for r in data["runs"]:
        assert r.keys() == RUN_KEYS and r["status"] == "finished" and ISO.match(r["started_at"])
        assert ISO.match(r["finished_at"])
    assert {(r["node"], r["id"], r["reason"]) for r in data["runs"]} == {
        (nid_of(a), run, "succeeded"),
        (nid_of(b), started["run"], "failed"),
    }

    lines = ok(wd, "list").out.splitlines()
    assert len(lines) == 2 and lines[0].startswith(job[:12] + "  " + sha[:12] + "  ci ")
    assert "failed" in lines[0] and "2 runs on 2 nodes" in lines[0] and "queued" in lines[1]
    listed = ok(wd, "list", "--json").json
    assert [j["id"] for j in listed] == [job, created["id"]]  # newest commit first
    assert listed[0] == {
        "id": job,
        "commit": sha,
        "name": "ci",
        "state": "failed",
        "nodes": 2,
        "runs": 2,
        "rejected": 0,
    }
    assert [j["id"] for j in ok(wd, "list", "--commit", "HEAD~1", "--json").json] == [created["id"]]
    assert [j["name"] for j in ok(wd, "list", "--name", "test", "--json").json] == ["test"]
    assert ok(wd, "list", "--name", "nope", "--json").json == []
    assert ok(wd, "list", "--name", "nope").out == ""
    assert [j["id"] for j in ok(wd, "list", "--node", f"did:key:{nid_of(b)}", "--json").json] == [job]
    assert ok(wd, "list", "--node", nid_of(keys[2]), "--json").json == []
    # -C works like git's.
    assert ok(wd.parent, "-C", str(wd), "list", "--json").json == listed


# -- status --------------------------------------------------------------------------------------
def status(wd: Path, *args: str) -> tuple[int, dict[str, object]]:
    r = gj(wd, "status", *args, "--json")
    return r.code, r.json


@pytest.mark.slow
def test_status_exit_codes_follow_gh_pr_checks(repo: pygit2.Repository, keys: list[Path]) -> None:
    wd, a = workdir(repo), keys[0]
    # No jobs: not a pass (as gh: "no checks reported" exits 1).
    none = gj(wd, "status")
    assert none.code == 1 and "no jobs" in none.out
    code, data = status(wd)
    assert code == 1 and {k: data[k] for k in ("commit", "outcome", "counts", "jobs", "progress")} == {
        "commit": head(repo),
        "outcome": "none",
        "counts": {},
        "jobs": [],
        "progress": {},
    }
    assert data["policy"]["everyone"] is True and data["expected"] == [] and data["errors"] == []

    node_a, node_b, node_c = (lib(repo, k) for k in keys)
    build_job = node_a.create("HEAD", "build")
    build = build_job.id
    code, data = status(wd)
    # No definitions and no policy: every job someone made is required, and one nobody ran is
    # expected (pending).
    assert code == 8 and data["outcome"] == "pending" and data["counts"] == {"expected": 1}
    assert data["jobs"] == [
        {
            "id": build,
            "name": "build",
            "state": "expected",
            "required": True,
            "verdict": "expected",
            "assigned": None,
            "latest": [],
            "evidence": None,
        }
    ]
    assert data["expected"] == ["build"]

    run_a = build_job.run("https://ci.example/a/1")
    assert status(wd)[0] == 8
    build_job.finish(run_a, jobs.Reason.SUCCEEDED)
    code, data = status(wd)
    assert (code, data["outcome"], data["counts"]) == (0, "succeeded", {"succeeded": 1})
    text = ok(wd, "status", key=a).out
    assert "build" in text and "succeeded" in text and "(you)" in text and head(repo)[:12] in text
    assert "commit 1" in text or "commit 2" in text  # the subject line

    # A second node's run on a second job: running → 8; its failure → 1, even with one running.
    test_b = node_b.create("HEAD", "test")
    run_b = test_b.run("https://ci.example/b/1")
    assert status(wd)[0] == 8
    test_c = node_c.create("HEAD", "test")
    run_c = test_c.run("https://ci.example/c/1")
    test_b.finish(run_b, jobs.Reason.TIMED_OUT)
    code, data = status(wd)
    assert code == 1 and data["outcome"] == "failed"
    assert data["counts"] == {"running": 1, "succeeded": 1, "timed_out": 1}
    by_name = {j["name"]: j for j in data["jobs"]}  # type: ignore[attr-defined]
    assert by_name["test"]["state"] == "failed" and len(by_name["test"]["latest"]) == 2
    for cell in by_name["test"]["latest"]:
        assert cell.keys() == STATUS_RUN_KEYS and cell["counted"] is True
    assert {c["state"] for c in by_name["test"]["latest"]} == {"timed_out", "running"}

    # The latest run per node counts: b retries and passes, c's run is skipped → all green.
    retry = test_b.run("https://ci.example/b/2")
    assert gj(wd, "status").code == 8
    test_b.finish(retry, jobs.Reason.SUCCEEDED)
    test_c.finish(run_c, jobs.Reason.SKIPPED)
    code, data = status(wd, "main")
    assert (code, data["outcome"]) == (0, "succeeded")
    assert data["counts"] == {"skipped": 1, "succeeded": 2}
    # Another commit is independent; a full sha not in the repository is accepted (no jobs).
    assert status(wd, "HEAD~1")[0] == 1
    assert status(wd, "ab" * 20)[1]["outcome"] == "none"


def test_status_watch_waits_until_nothing_runs(repo: pygit2.Repository, keys: list[Path]) -> None:
    wd, a = workdir(repo), keys[0]
    job = lib(repo, a).create("HEAD", "build")
    run = job.run("https://ci.example/1")
    as_json = subprocess.Popen(
        [GIT_JOBS, "status", "--watch", "--interval", "0.1", "--json"],
        cwd=wd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env_with(),
    )
    text = subprocess.Popen(
        [GIT_JOBS, "status", "--watch", "--interval", "0.1"],
        cwd=wd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env_with(),
    )
    try:
        assert text.stdout is not None
        first = []
        while not (first and first[-1].startswith("pending:")):  # its first table, then…
            line = text.stdout.readline()
            assert line, "the watcher ended before anything finished"
            first.append(line)
        assert text.poll() is None  # …it keeps watching while a run is going
        job.finish(run, jobs.Reason.FAILED)
        rest, err = text.communicate(timeout=60)
        jout, jerr = as_json.communicate(timeout=60)
    finally:
        for p in (text, as_json):
            if p.poll() is None:
                p.kill()
    out = "".join(first) + rest
    assert text.returncode == 1 and as_json.returncode == 1, (err, jerr)
    assert "Traceback" not in err + jerr
    # Into a pipe, a new table is printed only when something changed: running, then failed.
    assert out.count("pending: 1 running") == 1 and out.count("failed: 1 failed") == 1
    assert out.rstrip().endswith("failed: 1 failed")
    assert '"outcome": "failed"' in jout and jout.count('"outcome"') == 1  # only the final JSON


def test_watch_returns_at_once_when_nothing_is_pending(repo: pygit2.Repository, keys: list[Path]) -> None:
    wd, a = workdir(repo), keys[0]
    job = lib(repo, a).create("HEAD")
    job.finish(job.run("https://ci.example/1"), jobs.Reason.SUCCEEDED)
    started = time.monotonic()
    r = gj(wd, "status", "--watch", "--interval", "30")
    assert r.code == 0 and time.monotonic() - started < 20 and r.out.count("succeeded:") == 1


# -- verify ------------------------------------------------------------------------------------
def entry_of(wd: Path, nid: str, job_id: str) -> str:
    """The tip ``nid``'s index names for one job, read with plain git."""
    path = cob.sigrefs.entry_path(jobs.TYPENAME, job_id)
    return git(wd, "rev-parse", f"{cob.index_ref(nid)}:{path}").strip()


def forge_change(repo: pygit2.Repository, job_id: str, nid: str) -> str:
    """Put an unsigned change claiming to be by ``nid`` on top of its entry with plain git: an
    unsigned index commit on top of ``nid``'s index names it (commit-tree, update-index)."""
    wd = workdir(repo)
    ref = cob.index_ref(nid)
    index = git(wd, "rev-parse", ref).strip()
    tip = entry_of(wd, nid, job_id)
    tree = git(wd, "rev-parse", f"{tip}^{{tree}}").strip()
    env = env_with(
        GIT_AUTHOR_NAME=nid,
        GIT_COMMITTER_NAME=nid,
        GIT_AUTHOR_EMAIL="x@example.invalid",
        GIT_COMMITTER_EMAIL="x@example.invalid",
        GIT_INDEX_FILE=str(Path(repo.path) / "forge-index"),
    )

    def plain(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=wd, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    forged = plain("commit-tree", tree, "-p", tip, "-m", "forged")
    plain("read-tree", index)
    plain("update-index", "--cacheinfo", f"160000,{forged},{cob.sigrefs.entry_path(jobs.TYPENAME, job_id)}")
    new_index = plain("commit-tree", plain("write-tree"), "-p", index, "-p", forged, "-m", "forged index")
    git(wd, "update-ref", ref, new_index, index)
    assert entry_of(wd, nid, job_id) == forged
    return forged


@pytest.mark.slow
def test_verify_reports_rejected_changes(repo: pygit2.Repository, keys: list[Path]) -> None:
    wd, a = workdir(repo), keys[0]
    node = lib(repo, a)
    mut = node.create("HEAD")
    job, run = mut.id, str(mut.run("https://ci.example/1"))
    node.create("HEAD~1")
    clean = ok(wd, "verify")
    assert clean.line == "verified 2 jobs: every change verified"
    assert ok(wd, "verify", "--json").json == {"jobs": 2, "rejected": []}

    forged = forge_change(repo, job, nid_of(a))
    bad = gj(wd, "verify")
    assert bad.code == 1
    assert f"job {job[:12]} change {forged[:12]}: " in bad.out and "1 rejected change" in bad.out
    data = gj(wd, "verify", "--json").json
    assert data["jobs"] == 2 and len(data["rejected"]) == 1
    assert data["rejected"][0]["job"] == job and data["rejected"][0]["change"] == forged
    assert data["rejected"][0]["reason"]
    # The honest run is still there; show and list report what was rejected.
    shown = ok(wd, "show", job, "--json").json
    assert [r["id"] for r in shown["runs"]] == [run]
    assert [r["change"] for r in shown["rejected"]] == [forged]
    assert "rejected 1 change" in ok(wd, "show", job).out
    assert "1 rejected" in ok(wd, "list", "--commit", "HEAD").out


# -- allowed signers ---------------------------------------------------------------------------
def test_allowed_signers_lets_stock_git_verify_changes(
    repo: pygit2.Repository, keys: list[Path], tmp_path: Path
) -> None:
    wd = workdir(repo)
    job = lib(repo, keys[0]).create("HEAD").id
    lib(repo, keys[1]).get_mut(job).run("https://ci.example/1")  # type: ignore[union-attr]
    lines = ok(wd, "allowed-signers").out.splitlines()
    assert sorted(lines) == sorted(cob.allowed_signers_line(nid_of(k)) for k in keys[:2])
    data = ok(wd, "allowed-signers", "--json").json
    assert {d["nid"] for d in data} == {nid_of(k) for k in keys[:2]}
    signers = tmp_path / "signers"
    ok(wd, "allowed-signers", "-o", str(signers))
    assert signers.read_text().splitlines() == lines
    git(wd, "config", "gpg.ssh.allowedSignersFile", str(signers))
    # Every change of every node, and every index commit, verifies with stock git.
    commits = []
    for key in keys[:2]:
        index = git(wd, "rev-parse", cob.index_ref(nid_of(key))).strip()
        tip = entry_of(wd, nid_of(key), job)
        chain = git(wd, "rev-list", "--first-parent", index).split()
        changes = git(wd, "rev-list", tip, f"^{job}").split()  # the root is content-addressed
        assert len(chain) >= 2 and changes
        commits += [(nid_of(key), c) for c in chain]  # an index commit: signed by its node
        commits += [(git(wd, "show", "-s", "--format=%an", c).strip(), c) for c in changes]
    assert {nid for nid, _ in commits} == {nid_of(k) for k in keys[:2]}
    for nid, oid in commits:
        verified = subprocess.run(["git", "verify-commit", oid], cwd=wd, capture_output=True, text=True)
        said = verified.stderr + verified.stdout
        assert verified.returncode == 0 and f'Good "git" signature for {nid} ' in said, (oid, said)


# -- output conventions --------------------------------------------------------------------------
def on_a_tty(cwd: Path, *args: str, **env: str | None) -> str:
    """Run with stdout on a pseudo-terminal; return what it printed."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [GIT_JOBS, *args],
            cwd=cwd,
            stdout=follower,
            stderr=subprocess.PIPE,
            env=env_with(**env),
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        assert proc.returncode in (0, 1, 8) and b"Traceback" not in proc.stderr
        return b"".join(chunks).decode()
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)


@pytest.mark.slow
def test_colour_only_on_a_tty_and_never_with_no_color(repo: pygit2.Repository, keys: list[Path]) -> None:
    wd = workdir(repo)
    lib(repo, keys[0]).create("HEAD").run("https://ci.example/1")
    assert "\x1b[" not in gj(wd, "status", NO_COLOR=None).out  # a pipe: no colour
    assert "\x1b[" in on_a_tty(wd, "status", NO_COLOR=None, TERM="xterm")
    assert "\x1b[" not in on_a_tty(wd, "status", NO_COLOR="1", TERM="xterm")
    assert "\x1b[" not in on_a_tty(wd, "list", NO_COLOR="1", TERM="xterm")


def test_help_with_examples_on_every_command(tmp_path: Path) -> None:
    from jobs.cli import build_parser

    top = ok(tmp_path, "--help").out
    assert "usage: git jobs" in top
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    names = sorted(sub.choices)  # type: ignore[arg-type]
    for name in (
        "init",
        "whoami",
        "create",
        "run",
        "finish",
        "show",
        "list",
        "status",
        "sync",
        "verify",
        "allowed-signers",
        "demo",
    ):
        assert name in names and name in top
    # One process for all: the script's own argv handling, command by command.
    script = (
        "import sys, contextlib, io\n"
        "from jobs.cli import main\n"
        "for name in sys.argv[1:]:\n"
        "    buf = io.StringIO()\n"
        "    with contextlib.redirect_stdout(buf):\n"
        "        try: main([name, '--help'])\n"
        "        except SystemExit as e: assert e.code == 0, name\n"
        "    text = buf.getvalue()\n"
        "    assert 'examples:' in text and 'git jobs ' + name in text, name\n"
        "print('ok')\n"
    )
    python = Path(GIT_JOBS).parent / "python"
    proc = subprocess.run([str(python), "-c", script, *names], capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr
    assert "examples:" in ok(tmp_path, "status", "--help").out
    version = ok(tmp_path, "--version").line
    assert version.startswith("git-jobs ")


def test_git_dispatches_to_git_jobs(repo: pygit2.Repository, keys: list[Path]) -> None:
    """`git jobs …` works once the script is on PATH, as installing it puts it there."""
    path = str(Path(GIT_JOBS).parent) + os.pathsep + os.environ.get("PATH", "")
    wd = workdir(repo)
    job = subprocess.run(
        ["git", "jobs", "create", "HEAD"],
        cwd=wd,
        env=env_with(PATH=path, GIT_JOBS_KEY=str(keys[0])),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert job == ok(wd, "list", "--json").json[0]["id"]
