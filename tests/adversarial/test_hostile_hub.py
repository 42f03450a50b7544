"""Hostile hubs, round two: attacks from an outside review, replayed through a real hub.

Mallory can push any object and move any ref on the hub (a ``git daemon`` on 127.0.0.1),
sometimes with a throwaway key. Bob is honest and syncs with ``Jobs.sync``. Each attack is now
refused or harmless, reported in the ``SyncReport``, and Alice's data stays intact.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

import cob
import jobs
from cob.change import Codec, write_root
from tests.gitdaemon import GitDaemon
from tests.stress.common import git
from tests.stress.hostile import Arena, forge, forge_index, ops_bytes, tree_of


@pytest.fixture(params=["git daemon", "path"])
def arena(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Arena]:
    """The hub served by ``git daemon`` on loopback (git lists and fetches), or on a local
    path (read in place: cob.sync.localhub): every attack is replayed through both."""
    served = tmp_path / "served"
    served.mkdir()
    git(tmp_path, "init", "-q", "--bare", str(served / "hub.git"))
    if request.param == "path":
        yield Arena(tmp_path / "arena", str(served / "hub.git"))
        return
    with GitDaemon(served) as daemon:
        yield Arena(tmp_path / "arena", daemon.url("hub.git"))


def kinds(report: jobs.sync.SyncReport) -> dict[str, str]:
    return {r.ref: r.kind for r in report.refused}


def fresh(repo: pygit2.Repository) -> pygit2.Repository:
    """The repository as a new process sees it (no cached pack list)."""
    return pygit2.Repository(repo.path)


def mallory_commit(arena: Arena, definitions: str) -> str:
    """A commit of Mallory's own, with her ``.git-jobs.toml``, on no branch of the project."""
    r = arena.mallory_repo
    blob = r.create_blob(definitions.encode())
    builder = r.TreeBuilder()
    builder.insert(".git-jobs.toml", blob, pygit2.enums.FileMode.BLOB)
    ident = pygit2.Signature("m", "m@example.invalid", 1_700_000_000, 0)
    return str(r.create_commit(None, ident, ident, "evil\n", builder.write(), []))


# -- 1. keyless refs -------------------------------------------------------------------------
def test_keyless_refs_and_their_objects_are_refused_at_fetch(arena: Arena) -> None:
    """The review's attack: a commit of Mallory's own, and the job for it under namespaces
    that signed nothing (a throwaway NID, a non-NID string), so that `work trigger` ran it.
    On the index layout: a throwaway NID's index ref whose index commit is unsigned (naming
    the job), one in a namespace that is not a NID, and Mallory's own index ref pointing
    straight at her commit (no index commit, nothing she signed)."""
    r = arena.mallory_repo
    evil = mallory_commit(arena, '[jobs.ci]\nrun = "cat ~/.config/git-jobs/key"\n')
    root = write_root(r, Codec(jobs.JOB_TYPE), [jobs.Request(evil, "ci")])
    stranger = cob.Signer.generate().nid  # a valid NID whose key signed nothing here
    start = forge_index(r, None, {}, author=stranger, signer=None)
    unsigned = forge_index(r, start, {root: root}, author=stranger, signer=None)
    keyless = cob.index_ref(stranger)
    not_a_nid = "refs/namespaces/evil/refs/sigrefs"
    carrier = arena.ref("mallory")  # brings the commit
    arena.mallory_push(unsigned, keyless)
    arena.mallory_push(unsigned, not_a_nid)
    arena.mallory_push(evil, carrier)

    report = arena.bob.sync(arena.url)

    assert kinds(report) == {keyless: "bad-tip", not_a_nid: "bad-namespace", carrier: "bad-tip"}
    assert report.fetched == []
    assert arena.bob_alice_state_intact()
    bob = fresh(arena.bob.repo)
    for oid in (evil, root, start, unsigned):  # nothing of a refused tip is kept
        assert oid not in bob
    assert cob.reader.RefReader(bob).index_tips().keys() == {arena.nid("alice")}
    assert arena.bob.get(root) is None and arena.bob.find_by_commit(evil) == []
    assert [j.id for j in jobs.Jobs.open(bob).all()] == [arena.job_id]
    assert not list(Path(bob.path).glob("git-jobs-quarantine/*"))


def test_a_root_tip_that_does_not_re_derive_is_refused(arena: Arena) -> None:
    """A parentless, unsigned commit named after a job id it is not (its own oid differs):
    refused as unsigned as an index tip; named as a tip by Mallory's own signed index (which
    is taken: entries are data), rejected by the load, and no job for Bob."""
    r = arena.mallory_repo
    fake = forge(
        r, tree_of(r, ops_bytes([jobs.Request(arena.commit, "ci")])), [], author="git-jobs", signer=None
    )
    ref = arena.ref("mallory")
    arena.mallory_push(fake, ref)
    report = arena.bob.sync(arena.url)
    assert kinds(report) == {ref: "bad-tip"}
    assert fake not in fresh(arena.bob.repo)

    # Mallory's signed index {fake: fake}, on a chain of her own (forced over the fake tip:
    # an index built on it would hold its manifest and ops, and be refused as malformed)
    start = cob.sigrefs.write_commit(r, arena.signers["mallory"], arena.nid("mallory"), None, {})
    index = cob.sigrefs.write_commit(
        r, arena.signers["mallory"], arena.nid("mallory"), start, {(jobs.TYPENAME, fake): fake}
    )
    arena.mallory_push(index, ref)
    report = arena.bob.sync(arena.url)
    assert report.refused == [] and [u.ref for u in report.fetched] == [ref]
    assert fake in [r.change for r in report.rejected if r.object_id == fake]
    assert arena.bob.get(fake) is None and [j.id for j in arena.bob.all()] == [arena.job_id]
    assert arena.bob_alice_state_intact()


def test_a_job_is_shared_by_its_creators_signed_release(arena: Arena) -> None:
    """What replaced the keyless root: `create` writes one signed `release` per node and job,
    which peers take; a second node's create adds its own release."""
    job = arena.bob.get(arena.job_id)
    assert job is not None and list(job.requests()) == [arena.nid("alice")]
    again = arena.bob.create(arena.commit)  # Bob asks for the same job
    assert again.id == arena.job_id
    tip = again.tips[arena.nid("bob")]
    assert arena.bob.create(arena.commit).tips[arena.nid("bob")] == tip  # once per node
    message = arena.bob.repo[tip].message
    assert message == "Release\n"
    arena.bob.sync(arena.url)
    arena.alice.sync(arena.url)
    seen = arena.alice.get(arena.job_id)
    assert seen is not None
    assert sorted(seen.requests()) == sorted([arena.nid("alice"), arena.nid("bob")])


@pytest.mark.slow
def test_the_release_command_makes_jobs_visible_to_peers(tmp_path: Path) -> None:
    """`git jobs release` then `sync`: a peer sees the jobs (they are signed, not bare roots)."""
    from tests.clirunner import ok

    hub = tmp_path / "hub.git"
    git(tmp_path, "init", "-q", "--bare", str(hub))
    a, b = tmp_path / "a", tmp_path / "b"
    git(tmp_path, "init", "-q", str(a))
    (a / ".git-jobs.toml").write_text('[jobs.build]\nrun = "true"\n')
    git(a, "add", ".git-jobs.toml")
    git(a, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    git(a, "push", "-q", str(hub), "HEAD:refs/heads/main")
    git(tmp_path, "clone", "-q", str(hub), str(b))
    keys = {}
    for who in ("a", "b"):
        keys[who] = cob.Signer.generate().save(tmp_path / f"{who}.key")
    ok(a, "release", key=keys["a"])
    ok(a, "sync", str(hub), key=keys["a"])
    ok(b, "sync", str(hub), key=keys["b"])
    listed = ok(b, "list", "--json", key=keys["b"]).json
    assert [j["name"] for j in listed] == ["build"]


def test_no_staging_or_quarantine_left_after_a_failed_fetch(arena: Arena, tmp_path: Path) -> None:
    with pytest.raises(jobs.SyncError):
        arena.bob.sync(str(tmp_path / "no-such-hub.git"))
    gitdir = Path(arena.bob.repo.path)
    assert not (gitdir / "git-jobs-quarantine").exists()
    assert (
        subprocess.run(
            ["git", "--git-dir", str(gitdir), "for-each-ref", "refs/git-jobs-staging/"],
            capture_output=True,
            text=True,
        ).stdout
        == ""
    )


# -- 3. malleable signature armor -----------------------------------------------------------
def rewrap(repo: pygit2.Repository, oid: str, how: str) -> str:
    """The same commit and signature blob, armored differently: a new oid, same signer."""
    raw = repo.odb.read(oid)[1].decode()
    head, _, message = raw.partition("\n\n")
    lines = head.split("\n")
    start = next(i for i, ln in enumerate(lines) if ln.startswith("gpgsig "))
    end = next(i for i in range(start, len(lines)) if "END SSH SIGNATURE" in lines[i])
    body = "".join(ln.strip() for ln in lines[start + 1 : end])
    if how == "64 columns":
        armored = [body[i : i + 64] for i in range(0, len(body), 64)]
    elif how == "trailing newline":
        armored = [body[i : i + 70] for i in range(0, len(body), 70)]
    else:  # "indented"
        armored = ["  " + body[i : i + 70] for i in range(0, len(body), 70)]
    sig = ["-----BEGIN SSH SIGNATURE-----", *armored, "-----END SSH SIGNATURE-----"]
    if how == "trailing newline":
        sig.append("")
    header = lines[:start] + ["gpgsig " + sig[0]] + [" " + s for s in sig[1:]] + lines[end + 1 :]
    text = "\n".join(header) + "\n\n" + message
    return str(repo.odb.write(pygit2.enums.ObjectType.COMMIT, text.encode()))


@pytest.mark.parametrize("how", ["64 columns", "trailing newline", "indented"])
@pytest.mark.slow
def test_a_re_armored_signature_is_refused_and_the_honest_history_still_flows(arena: Arena, how: str) -> None:
    """The review's attack: Alice's tip re-wrapped (a new oid that verified as Alice's), forced
    onto the hub as Alice's ref; a fresh peer took it, then refused Alice's real history.
    On the index layout the tip is Alice's index commit: its twin would name the same entries,
    and Alice's next index commit would no longer be a fast-forward of it."""
    r = arena.mallory_repo
    index = arena.hub_index("alice")
    assert index is not None
    twin = rewrap(r, index, how)
    assert twin != index
    arena.mallory_push(twin, arena.ref("alice"))
    carol_dir = arena.base / "carol"
    git(arena.base, "clone", "-q", str(arena.paths["alice"]), str(carol_dir))
    carol = jobs.Jobs.open(carol_dir, signer=cob.Signer.generate())
    report = carol.sync(arena.url)
    assert kinds(report) == {arena.ref("alice"): "bad-tip"}
    assert "not canonical" in report.refused[0].reason
    assert carol.get(arena.job_id) is None  # nothing signed by Alice reached Carol
    assert twin not in fresh(carol.repo) and carol.repo.references.get(arena.ref("alice")) is None
    # Alice repairs the hub (a plain push of her real tip is refused: the hub moved sideways)
    job = arena.alice.get_mut(arena.job_id)
    assert job is not None
    job.run("https://ci.example/alice/2")
    subprocess.run(
        ["git", "push", "-q", "--force", arena.url, f"{arena.ref('alice')}:{arena.ref('alice')}"],
        cwd=arena.paths["alice"],
        check=True,
    )
    report = carol.sync(arena.url)
    assert arena.ref("alice") in {u.ref for u in report.fetched} and not report.refused
    ours = arena.alice.repo.references[arena.ref("alice")].target
    assert carol.repo.references[arena.ref("alice")].target == ours
    seen = carol.get(arena.job_id)
    assert seen is not None and len(seen.runs_of(arena.nid("alice"))) == 2


def test_a_re_armored_change_below_a_valid_tip_is_rejected(arena: Arena) -> None:
    r = arena.mallory_repo
    twin = rewrap(r, arena.alice_tip(), "64 columns")
    tip = forge(
        r,
        tree_of(
            r, ops_bytes([jobs.StartRun("01900000-0000-7000-8000-0000000000cc", "https://evil.example/3")])
        ),
        [twin],
        author=arena.nid("mallory"),
        signer=arena.signers["mallory"],
    )
    arena.mallory_publish(tip)
    report = arena.bob.sync(arena.url)
    assert arena.ref("mallory") in {u.ref for u in report.fetched}
    reasons = {x.change: x.reason for x in report.rejected}
    assert "not canonical" in reasons[twin] and "descends from rejected" in reasons[tip]
    assert arena.bob_alice_state_intact()


# -- 4. terminal injection ------------------------------------------------------------------
UNSAFE = ("\x1b", "\x9b", "\u202e", "\x07")


def assert_clean(text: str) -> None:
    assert not any(ch in text for ch in UNSAFE), repr(text)


@pytest.mark.slow
def test_peer_and_commit_text_reaches_the_terminal_escaped(arena: Arena) -> None:
    """The review's attack: a signed change whose unknown field name (`\\u001b` in JSON)
    set the terminal title and cleared the screen through the rejection reason; a commit
    subject and log URLs (C1 CSI U+009B, RLO U+202E) printed raw by `status` and `show`."""
    from tests.clirunner import gj, ok

    r = arena.mallory_repo
    title = "\x1b]0;pwned\x07\x1b[2J\x1b[32mverified\x1b[0m"
    evil_ops = ops_bytes(
        [
            {
                "log": "https://e.example/1",
                "run_id": "01900000-0000-7000-8000-0000000000dd",
                "type": "run",
                title: 1,
            }
        ]
    )
    evil_log = ops_bytes(
        [jobs.StartRun("01900000-0000-7000-8000-0000000000ee", "https://e.example/\u202egnp.exe\x9b2J")]
    )
    one = forge(
        r,
        tree_of(r, evil_ops),
        [arena.alice_tip()],
        author=arena.nid("mallory"),
        signer=arena.signers["mallory"],
    )
    two = forge(
        r,
        tree_of(r, evil_log),
        [arena.alice_tip()],
        author=arena.nid("mallory"),
        signer=arena.signers["mallory"],
        timestamp=1_700_000_001,
    )
    tip = forge(
        r,
        tree_of(r, ops_bytes([jobs.Release()])),
        [one, two],
        author=arena.nid("mallory"),
        signer=arena.signers["mallory"],
        timestamp=1_700_000_002,
    )
    arena.mallory_publish(tip)
    bob_dir, key = arena.paths["bob"], arena.keys["bob"]
    # a commit whose subject is an escape sequence, with a job on it (Bob's own)
    git(
        bob_dir,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        f"fix {title}\u202e",
    )
    ok(bob_dir, "create", "HEAD", key=key)

    synced = ok(bob_dir, "sync", arena.url, "--verbose", key=key)
    assert "rejected" in synced.out and "unknown field" in synced.out
    assert "\\x1b]0;pwned" in synced.out  # shown, visibly escaped
    outputs = [synced.out, synced.err]
    for args in (["show", arena.job_id], ["verify"], ["status", "HEAD"], ["list"], ["status", arena.commit]):
        res = gj(bob_dir, *args, key=key)  # exit codes vary (verify: 1); never a traceback
        assert res.out.strip()
        outputs += [res.out, res.err]
    for text in outputs:
        assert_clean(text)


def test_urls_and_names_with_control_or_bidi_characters_are_refused_when_written(
    arena: Arena,
) -> None:
    job = arena.bob.create(arena.commit)
    for url in (
        "https://ci.example/\u202eexe.txt",
        "https://ci.example/\x9b2J",
        "https://ci.example/\u200bx",
        "https://ci.example/x\n",
    ):
        with pytest.raises(jobs.InvalidInputError, match="control or bidi"):
            job.run(url)
    for name in ("ci\n", "ci\u202e", "c\x1bi"):
        with pytest.raises(jobs.InvalidInputError):
            arena.bob.create(arena.commit, name)


# -- 5. a nested .git-jobs.toml -------------------------------------------------------------
@pytest.mark.slow
def test_a_deeply_nested_definitions_file_is_one_clear_error_and_other_commits_proceed(
    tmp_path: Path,
) -> None:
    """40 KB of `[[[[…` raised RecursionError ("internal error") and aborted `work trigger`
    for every commit."""
    from tests.clirunner import gj, ok

    hub, author, node = tmp_path / "hub.git", tmp_path / "author", tmp_path / "node"
    git(tmp_path, "init", "-q", "--bare", str(hub))
    git(tmp_path, "init", "-q", "-b", "main", str(author))
    ident = ["-c", "user.name=t", "-c", "user.email=t@t"]
    git(author, *ident, "commit", "-q", "--allow-empty", "-m", "base")
    out = tmp_path / "triggered.txt"
    for branch, text in (
        ("good", f"[jobs.a]\nrun = 'true'\n[trigger]\nrun = \"echo {{commit}} >> {out}\"\n"),
        ("evil", "[jobs.a]\nrun = 'true'\nx = " + "[" * 40_000 + "\n"),
    ):
        git(author, "checkout", "-q", "-b", branch, "main")
        (author / ".git-jobs.toml").write_text(text)
        git(author, "add", ".git-jobs.toml")
        git(author, *ident, "commit", "-q", "-m", branch)
    git(author, "push", "-q", str(hub), "main", "good", "evil")
    git(tmp_path, "clone", "-q", str(hub), str(node))
    key = cob.Signer.generate().save(tmp_path / "node.key")
    sha = {b: git(node, "rev-parse", f"origin/{b}").stdout.strip() for b in ("good", "evil")}
    for b in ("good", "evil"):  # a node triggers what it follows: here, local branches
        git(node, "branch", "-q", b, f"origin/{b}")
    git(node, "config", "jobs.isolation", "none")  # the trigger writes a file the test reads
    ok(node, "release", sha["good"], key=key)
    ok(node, "create", sha["evil"], "--name", "a", key=key)
    res = gj(node, "work", "trigger", key=key)
    assert res.code == 1, res
    assert f".git-jobs.toml at {sha['evil'][:12]}" in res.out and "nested deeper than" in res.out
    assert "internal error" not in res.out + res.err
    assert out.read_text().split() == [sha["good"]]  # the other commit's trigger still ran


# -- 6. a silent remote ---------------------------------------------------------------------
@pytest.fixture
def silent_remote() -> Iterator[str]:
    """A server on 127.0.0.1 that accepts connections and never says a word."""
    import socket
    import threading

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"git://127.0.0.1:{server.getsockname()[1]}/hub.git"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("how", ["option", "config"])
@pytest.mark.slow
def test_a_remote_that_never_answers_stops_the_sync_with_one_line(
    arena: Arena, silent_remote: str, how: str
) -> None:
    """It blocked `sync` for 600 s per git call; now a transfer without progress stops."""
    from tests.clirunner import gj

    bob = arena.paths["bob"]
    if how == "config":
        git(bob, "config", "jobs.idleTimeout", "2")
        res = gj(bob, "sync", silent_remote, key=arena.keys["bob"])
    else:
        res = gj(bob, "sync", silent_remote, "--idle-timeout", "2", key=arena.keys["bob"])
    assert res.code != 0
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and "made no progress for 2 s" in lines[0], res
    assert arena.bob_alice_state_intact()


def test_a_bad_idle_timeout_is_a_clear_error(arena: Arena) -> None:
    from tests.clirunner import user_error

    git(arena.paths["bob"], "config", "jobs.idleTimeout", "soon")
    assert "jobs.idleTimeout" in user_error(arena.paths["bob"], "sync", arena.url, key=arena.keys["bob"])


@pytest.mark.slow
def test_the_shared_deadline_bounds_every_git_call_of_a_sync(arena: Arena, silent_remote: str) -> None:
    """The node's final sync: all its git calls share one limit (`cob.sync.deadline`)."""
    with cob.sync.deadline(1.5), pytest.raises(jobs.SyncError, match=r"timed out|used up"):
        arena.bob.sync(silent_remote, idle=60)


# -- 7. key files under a permissive umask ---------------------------------------------------
def test_init_under_umask_000_makes_a_private_key_directory(tmp_path: Path, isolated_home: Path) -> None:
    """~/.config/git-jobs/ was created 0777 and key.pub 0666 under umask 000."""
    import stat

    from tests.clirunner import GIT_JOBS

    res = subprocess.run(
        ["sh", "-c", f'umask 000 && exec "{GIT_JOBS}" init'],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    keydir = isolated_home / ".config" / "git-jobs"

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    assert mode(keydir) == 0o700
    assert mode(keydir / "key") == 0o600
    assert mode(keydir / "key.pub") == 0o644
    assert mode(isolated_home / ".config") == 0o700  # created by us, so private too
    # an explicit path under a strict umask: the public key is still readable (0644)
    res = subprocess.run(
        ["sh", "-c", f'umask 077 && exec "{GIT_JOBS}" init --key {tmp_path}/k/n.key'],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert (mode(tmp_path / "k"), mode(tmp_path / "k" / "n.key"), mode(tmp_path / "k" / "n.key.pub")) == (
        0o700,
        0o600,
        0o644,
    )


# -- 8. linked worktrees --------------------------------------------------------------------
@pytest.mark.slow
def test_a_linked_worktree_sees_and_writes_the_shared_jobs(arena: Arena) -> None:
    """`git worktree add`: `list` showed nothing and `show HEAD:ci` said "no job"."""
    from tests.clirunner import ok

    bob, key = arena.paths["bob"], arena.keys["bob"]
    linked = arena.base / "bob-linked"
    git(bob, "worktree", "add", "-q", "--detach", str(linked), arena.commit)
    listed = ok(linked, "list", "--json", key=key).json
    assert [j["id"] for j in listed] == [arena.job_id]
    assert arena.job_id in ok(linked, "show", "HEAD:ci", key=key).out
    ok(linked, "create", "HEAD", "--name", "lint", key=key)  # written where the main checkout sees it
    assert {j["name"] for j in ok(bob, "list", "--json", key=key).json} == {"ci", "lint"}
    assert not (
        Path(git(bob, "rev-parse", "--absolute-git-dir").stdout.strip())
        / "worktrees"
        / "bob-linked"
        / "git-jobs-index.sqlite3"
    ).exists()
    report = ok(linked, "sync", arena.url, "--json", key=key).json
    assert [u["ref"] for u in report["pushed"]] == [arena.ref("bob")]
    lint = next(j["id"] for j in ok(bob, "list", "--json", key=key).json if j["name"] == "lint")
    hub = pygit2.Repository(str(arena.base.parent / "served" / "hub.git"))
    pushed = cob.sigrefs.tree_of(hub, arena.hub_index("bob"))
    assert cob.sigrefs.entries(hub, pushed, jobs.TYPENAME).keys() == {lint}


# -- 9. allowed-signers in repository config -------------------------------------------------
def test_allowed_signers_help_warns_against_repository_config(tmp_path: Path) -> None:
    from tests.clirunner import ok

    git(tmp_path, "init", "-q")
    text = ok(tmp_path, "allowed-signers", "--help").out
    assert "do NOT set this file as gpg.ssh.allowedSignersFile" in text
    assert "git config gpg.ssh.allowedSignersFile" not in text  # the old, unsafe example
    assert "-c gpg.ssh.allowedSignersFile=" in text


# -- 2. floods of namespaces ----------------------------------------------------------------
def hub_index_refs(hub: Path) -> dict[str, str]:
    """{index ref: tip} of every node on the hub."""
    out = git(hub, "for-each-ref", "--format=%(refname) %(objectname)", "refs/namespaces/").stdout
    return {n: o for n, o in (ln.split() for ln in out.splitlines()) if cob.sigrefs.parse_index_ref(n)}


@pytest.mark.slow
def test_a_flood_of_new_namespaces_is_bounded_per_sync_and_reported(arena: Arena, tmp_path: Path) -> None:
    """Thousands of keyless namespaces are refused without download; signed ones from
    throwaway keys are taken at most MAX_NEW_NAMESPACES per sync, the rest refused ("limit")
    and taken later; known namespaces (Alice) are never held back."""
    from tests.stress.namespaces import flood_keyless, flood_signed

    hub = tmp_path / "served" / "hub.git"
    limit = cob.sync.MAX_NEW_NAMESPACES
    known = hub_index_refs(hub)
    flood_keyless(hub, arena.job_id, 1000)
    keyless = {n for n, o in hub_index_refs(hub).items() if n not in known and o == arena.job_id}
    assert len(keyless) == 1000
    flood_signed(hub, arena.job_id, limit + 40)
    signed = {n for n in hub_index_refs(hub) if n not in known and n not in keyless}
    assert len(signed) == limit + 40
    job = arena.alice.get_mut(arena.job_id)
    assert job is not None
    job.run("https://ci.example/alice/2")
    arena.alice.sync(arena.url)

    report = arena.bob.sync(arena.url)
    counts: dict[str, int] = {}
    for r in report.refused:
        counts[r.kind] = counts.get(r.kind, 0) + 1
    assert counts == {"bad-tip": 1000, "limit": 40}
    assert {r.ref for r in report.refused if r.kind == "bad-tip"} == keyless
    assert len(report.fetched) == limit + 1  # the new namespaces allowed, and Alice's move
    assert arena.ref("alice") in {u.ref for u in report.fetched}  # a known namespace: never held back
    assert {u.ref for u in report.fetched} <= {*signed, arena.ref("alice")}
    seen = arena.bob.get(arena.job_id)
    assert seen is not None and len(seen.runs_of(arena.nid("alice"))) == 2
    assert len(seen.requests()) == limit + 1
    again = arena.bob.sync(arena.url)  # the rest, next time
    assert len(again.fetched) == 40 and again.refused == []  # refused once (cob.refused)
    assert again.remembered == 1000
    assert {u.ref for u in report.fetched + again.fetched} == {*signed, arena.ref("alice")}
    assert not any(bob_has_ref(arena, name) for name in keyless)


def bob_has_ref(arena: Arena, name: str) -> bool:
    return arena.bob.repo.references.get(name) is not None


def test_the_new_refs_limit(arena: Arena, tmp_path: Path) -> None:
    from tests.stress.namespaces import flood_signed

    flood_signed(tmp_path / "served" / "hub.git", arena.job_id, 30)
    report = jobs.sync.sync(arena.bob, arena.url, limits=cob.sync.Limits(new_namespaces=100, new_refs=10))
    assert len(report.fetched) == 10
    assert [r.kind for r in report.refused] == ["limit"] * 20
    assert all("more than 10 new refs" in r.reason for r in report.refused)


def test_concurrent_creates_write_one_release_per_node(tmp_path: Path) -> None:
    """Four processes of one node create the same job at once: one signed release, no loss."""
    import sys

    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", str(repo))
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "c")
    key = cob.Signer.generate().save(tmp_path / "k")
    code = (
        f"import cob, jobs; s = jobs.Jobs.open({str(repo)!r}, cob.Signer.from_file({str(key)!r}));"
        " print(s.create('HEAD').id)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(4)
    ]
    ids = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs) and len(ids) == 1
    (job_id,) = ids
    tip = jobs.Jobs.open(repo).get(job_id)
    assert tip is not None and len(tip.requests()) == 1
    nid = cob.Signer.from_file(key).nid
    r = pygit2.Repository(str(repo))
    index = r.references[cob.index_ref(nid)].target
    entry = cob.sigrefs.lookup(r, cob.sigrefs.tree_of(r, str(index)), jobs.TYPENAME, job_id)
    assert entry is not None and tip.tips == {nid: entry}
    log = git(repo, "log", "--format=%s", entry).stdout.split("\n")
    assert [line for line in log if line] == ["Release", f"Request ci for {tip.commit}"]
    # the index chain: its parentless start, then one commit naming the release (the losers
    # of the race wrote nothing, not even an index commit)
    chain = git(repo, "rev-list", "--first-parent", str(index)).stdout.split()
    assert len(chain) == 2


@pytest.mark.slow
def test_sync_counts_refusals_by_kind_and_lists_them_only_when_asked(arena: Arena, tmp_path: Path) -> None:
    from tests.clirunner import ok
    from tests.stress.namespaces import flood_keyless

    flood_keyless(tmp_path / "served" / "hub.git", arena.job_id, 50)
    res = ok(arena.paths["bob"], "sync", arena.url, key=arena.keys["bob"])
    lines = [ln for ln in res.out.splitlines() if "refused" in ln and ln.startswith("  ")]
    assert lines == ["  refused  50 refs (50 fetch bad-tip)"]
    again = ok(arena.paths["bob"], "sync", arena.url, key=arena.keys["bob"])
    assert "refused before, not fetched again 50" in again.out  # once, not on every sync
    (arena.paths["bob"] / ".git" / "git-jobs-refused").unlink()  # forget them: listed again
    verbose = ok(arena.paths["bob"], "sync", arena.url, "--verbose", key=arena.keys["bob"])
    assert sum(1 for ln in verbose.out.splitlines() if ln.startswith("  refused  fetch: ")) == 50
    (arena.paths["bob"] / ".git" / "git-jobs-refused").unlink()
    as_json = ok(arena.paths["bob"], "sync", arena.url, "--json", key=arena.keys["bob"]).json
    assert len(as_json["refused"]) == 50
