"""Changes: what the store writes is a plain signed Git commit, and what peers write is checked.

Stock git is the referee: every change passes `git verify-commit` with `gpg.format=ssh` and an
allowed-signers file built from the NIDs, the repository passes `git fsck --strict`, and a
commit signed by `git commit-tree -S` is accepted as a change. Hostile commits, written by hand
into a namespace ref, are dropped with their descendants and reported; loading never raises.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

import cob
from cob import canonical
from cob.change import Codec, read_change, write_change
from tests.conftest import git
from tests.toytype import (
    LOG,
    LOG_TYPENAME,
    TAGS,
    TAGS_TYPENAME,
    Append,
    Create,
    LogState,
    Tag,
    allowed_signers_file,
    commit_buffer,
    manifest_bytes,
    ops_bytes,
    point,
    swap_tree,
    verify_commits,
    write_raw,
    write_tree,
)

PROJECT = Path(__file__).resolve().parents[2]


# -- round trip -----------------------------------------------------------------------------

_RELOAD = """
import json, sys
import cob
from tests.toytype import LOG
ev = cob.Store(sys.argv[1], cache=False).load(LOG, sys.argv[2])
print(json.dumps({
    "oids": [c.oid for c in ev.changes],
    "ops": [[op.text for op in c.ops] for c in ev.changes],
    "authors": [c.author for c in ev.changes],
    "lines": ev.state.lines,
    "rejected": ev.rejected,
}))
"""


@pytest.mark.slow
def test_thousand_changes_reload_in_new_process(repo: pygit2.Repository, signer: cob.Signer) -> None:
    store = cob.Store(repo, signer, cache=False)
    ev = store.create(LOG, [Append("root")])
    oids = [ev.object_id]
    ops = [["root"]]
    for i in range(1000):
        texts = [f"line {i}"] + ([f"extra {i}"] if i % 10 == 0 else [])
        change, ev = store.update(LOG, ev.object_id, [Append(t) for t in texts], base=ev)
        oids.append(change.oid)
        ops.append(texts)
    out = subprocess.run(
        [sys.executable, "-c", _RELOAD, repo.path, ev.object_id],
        cwd=PROJECT,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    got = json.loads(out.stdout)
    assert got["oids"] == oids
    assert got["ops"] == ops
    assert got["authors"] == [signer.nid] * 1001
    assert got["lines"] == [t for texts in ops for t in texts]
    assert got["rejected"] == {}


# -- stock git verifies every change ----------------------------------------------------------


def _multi_writer_history(
    repo: pygit2.Repository, signers: Iterator[cob.Signer]
) -> tuple[list[cob.Signer], str, str]:
    """Three nodes, each in its own clone, writing a LOG and a TAGS object concurrently and
    exchanging namespaces with `git fetch` between rounds (so later changes are merges)."""
    nodes = [next(signers) for _ in range(3)]
    base = Path(repo.workdir).parent
    paths = [str(base / f"node{n}") for n in range(3)]
    for p in paths:
        git(base, "clone", "-q", repo.workdir, p)
    stores = [cob.Store(p, s) for p, s in zip(paths, nodes, strict=True)]
    log = stores[0].create(LOG, [Append("hello")]).object_id
    tags = stores[0].create(TAGS, [Create("set")]).object_id
    assert stores[1].create(TAGS, [Create("set")]).object_id == tags  # same root, own namespace

    def exchange(into: list[str]) -> None:
        for n, p in enumerate(paths):
            for m in range(3):
                ns = f"refs/namespaces/{nodes[m].nid}/*"
                if m != n and p in into:
                    git(p, "fetch", "-q", paths[m], f"{ns}:{ns}")

    exchange(paths)
    for round_ in range(3):
        for n, store in enumerate(stores):
            store.update(LOG, log, [Append(f"{n}.{round_}")])
            store.update(TAGS, tags, [Tag(f"{n}.{round_}")])
        exchange(paths)
    stores[2].update(LOG, log, [Append("with embed")], embeds={"note.txt": b"hi\n"})
    exchange([repo.workdir])
    for m in range(3):
        ns = f"refs/namespaces/{nodes[m].nid}/*"
        git(repo.workdir, "fetch", "-q", paths[m], f"{ns}:{ns}")
    return nodes, log, tags


@pytest.mark.slow
def test_every_change_passes_git_verify_commit_and_fsck(
    repo: pygit2.Repository, tmp_path: Path, signers: Iterator[cob.Signer]
) -> None:
    nodes, log, tags = _multi_writer_history(repo, signers)
    reader = cob.Store(repo.path, cache=False)
    log_ev = reader.load(LOG, log)
    tags_ev = reader.load(TAGS, tags)
    assert log_ev is not None and tags_ev is not None
    assert not log_ev.rejected and not tags_ev.rejected
    assert len(log_ev.changes) == 11 and len(tags_ev.changes) == 10
    assert any(len(c.parents) > 1 for c in log_ev.changes), "expected merge changes"
    signed = [c.oid for c in log_ev.changes] + [c.oid for c in tags_ev.changes if c.author]
    allowed = allowed_signers_file(tmp_path / "allowed", (s.nid for s in nodes))
    result = verify_commits(repo.workdir, allowed, signed)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count('Good "git" signature for z6Mk') == len(signed)
    # So does every index commit, signed by its own node (the whole chain of each index ref).
    for node in nodes:
        chain = subprocess.run(
            ["git", "rev-list", "--first-parent", cob.index_ref(node.nid)],
            cwd=repo.workdir,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.split()
        assert len(chain) >= 2  # the empty first commit and at least one with entries
        got = verify_commits(repo.workdir, allowed, chain)
        assert got.returncode == 0, got.stderr
        assert got.stderr.count(f'Good "git" signature for {node.nid} ') == len(chain)
    # A verify-commit without the signer in the allowed list fails: the check has teeth.
    stranger = allowed_signers_file(tmp_path / "stranger", [cob.Signer.generate().nid])
    assert verify_commits(repo.workdir, stranger, signed[:1]).returncode != 0
    # The content-addressed root is unsigned by design (its oid is its proof).
    assert verify_commits(repo.workdir, allowed, [tags]).returncode != 0
    fsck = subprocess.run(
        ["git", "fsck", "--strict", "--no-dangling"],
        cwd=repo.workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_change_layout_is_as_documented(repo: pygit2.Repository, signer: cob.Signer) -> None:
    store = cob.Store(repo, signer)
    ev = store.create(LOG, [Append("b"), Append("a")])
    commit = repo[ev.object_id]
    assert isinstance(commit, pygit2.Commit)
    assert sorted(e.name for e in commit.tree) == ["manifest", "ops"]
    assert repo[commit.tree["manifest"].id].data == b'{"type":"test.cob.log","version":1}'
    assert repo[commit.tree["ops"].id].data == b'[{"text":"b","type":"append"},{"text":"a","type":"append"}]'
    raw = repo.odb.read(commit.id)[1].decode()
    header, _, message = raw.partition("\n\n")
    lines = header.split("\n")
    assert lines[0] == f"tree {commit.tree_id}"
    assert lines[1].startswith(f"author {signer.nid} <{signer.nid}> ") and lines[1].endswith(" +0000")
    assert lines[2].startswith(f"committer {signer.nid} <{signer.nid}> ")
    assert lines[3] == "gpgsig -----BEGIN SSH SIGNATURE-----"
    assert lines[-1] == " -----END SSH SIGNATURE-----"
    assert message == "Append 2 line(s)\n"
    index = repo.references[cob.index_ref(signer.nid)].peel(pygit2.Commit)
    entry = index.tree[f"{LOG_TYPENAME}/{ev.object_id[:2]}/{ev.object_id}"]
    assert entry.filemode == pygit2.enums.FileMode.COMMIT and str(entry.id) == ev.object_id
    assert [str(p) for p in index.parent_ids[1:]] == [ev.object_id]  # the index reaches its tips


def test_commit_signed_by_stock_git_is_accepted(repo: pygit2.Repository, tmp_path: Path) -> None:
    """`git commit-tree -S` with gpg.format=ssh writes exactly the format we read."""
    signer = cob.Signer.generate()
    key = signer.save(tmp_path / "key")
    tree = write_tree(repo, {"manifest": manifest_bytes(LOG_TYPENAME), "ops": ops_bytes("by git")})
    env = dict(os.environ)
    for who in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{who}_NAME"] = env[f"GIT_{who}_EMAIL"] = signer.nid
        env[f"GIT_{who}_DATE"] = "1700000000 +0000"
    out = subprocess.run(
        [
            "git",
            "-c",
            "gpg.format=ssh",
            "-c",
            f"user.signingKey={key}",
            "commit-tree",
            "-S",
            "-m",
            "made by git",
            str(tree),
        ],
        cwd=repo.workdir,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    oid = out.stdout.strip()
    change = read_change(repo, Codec(LOG), oid, is_root=True)
    assert change.author == signer.nid and change.timestamp == 1700000000
    assert [op.text for op in change.ops] == ["by git"]
    point(repo, signer.nid, LOG_TYPENAME, oid, oid)
    ev = cob.Store(repo).load(LOG, oid)
    assert ev is not None and ev.state is not None and ev.state.lines == ["by git"]


# -- rejection of hostile changes --------------------------------------------------------------


class Scene:
    """alice creates a LOG and appends; bob appends concurrently (valid); mallory misbehaves.

    Every bad change gets a correctly signed child by carol, so the test sees whether
    descendants are dropped too. Each bad branch sits in its own namespace ref.
    """

    def __init__(self, repo: pygit2.Repository) -> None:
        self.repo = repo
        self.alice, self.bob, self.carol, self.mallory = (cob.Signer.generate() for _ in range(4))
        self.alice_store = cob.Store(repo, self.alice, cache=False)
        ev = self.alice_store.create(LOG, [Append("root")])
        self.id = ev.object_id
        self.a1, ev = self.alice_store.update(LOG, self.id, [Append("a1")], base=ev)
        self.a2, _ = self.alice_store.update(LOG, self.id, [Append("a2")], base=ev)
        # bob, offline, appended to a1 too: a valid branch concurrent with a2 and the bad ones
        b1 = write_change(repo, Codec(LOG), self.bob, self.bob.nid, [Append("b1")], [self.a1.oid])
        point(repo, self.bob.nid, LOG_TYPENAME, self.id, b1)
        self.b1 = read_change(repo, Codec(LOG), b1, is_root=False)
        self.bad: dict[str, tuple[str, str, str]] = {}  # kind -> (bad, child, grandchild)

    def add_bad(self, kind: str, bad: str) -> None:
        child = write_raw(
            self.repo,
            parents=[bad],
            author=self.carol.nid,
            sign_with=self.carol,
            ops=ops_bytes(f"child of {kind}"),
            when=1_700_000_100,
        )
        grandchild = write_raw(
            self.repo,
            parents=[child, self.a1.oid],
            author=self.carol.nid,
            sign_with=self.carol,
            ops=ops_bytes("merge"),
            when=1_700_000_200,
        )
        ns = cob.Signer.generate().nid  # an arbitrary peer's namespace carries the branch
        point(self.repo, ns, LOG_TYPENAME, self.id, grandchild)
        self.bad[kind] = (bad, child, grandchild)

    def make(self, kind: str) -> str:
        r, m, parent = self.repo, self.mallory, [self.a1.oid]
        if kind == "unsigned":
            return write_raw(r, parents=parent, author=m.nid, sign_with=None)
        if kind == "wrong key":
            return write_raw(r, parents=parent, author=self.alice.nid, sign_with=m)
        if kind == "committer differs":
            tree = write_tree(r, {"manifest": manifest_bytes(LOG_TYPENAME), "ops": ops_bytes("x")})
            buf = commit_buffer(r, tree, parent, m.nid).replace(
                f"committer {m.nid} <{m.nid}>", f"committer {self.alice.nid} <{m.nid}>"
            )
            return str(r.create_commit_with_signature(buf, cob.sshsig.sign(m, buf.encode())))
        if kind == "tree swapped":
            signed = write_raw(r, parents=parent, author=m.nid, sign_with=m, ops=ops_bytes("ok"))
            evil = write_tree(r, {"manifest": manifest_bytes(LOG_TYPENAME), "ops": ops_bytes("evil")})
            return swap_tree(r, signed, evil)
        if kind == "other type":
            return write_raw(
                r, parents=parent, author=m.nid, sign_with=m, manifest=manifest_bytes(TAGS_TYPENAME)
            )
        if kind == "ops do not decode":
            return write_raw(r, parents=parent, author=m.nid, sign_with=m, ops=b'[{"type":"append"}]')
        if kind == "ops not json":
            return write_raw(r, parents=parent, author=m.nid, sign_with=m, ops=b"\xff not json")
        if kind == "unknown version":
            return write_raw(
                r, parents=parent, author=m.nid, sign_with=m, manifest=manifest_bytes(LOG_TYPENAME, 2)
            )
        if kind == "type refuses":
            return write_raw(r, parents=parent, author=m.nid, sign_with=m, ops=ops_bytes("REJECT"))
        if kind == "second root":
            return write_raw(r, parents=[], author=m.nid, sign_with=m)
        if kind == "extra tree entry":
            tree = write_tree(
                r, {"manifest": manifest_bytes(LOG_TYPENAME), "ops": ops_bytes("x"), "zzz": b"surprise"}
            )
            buf = commit_buffer(r, tree, parent, m.nid)
            return str(r.create_commit_with_signature(buf, cob.sshsig.sign(m, buf.encode())))
        if kind == "empty ops":
            return write_raw(r, parents=parent, author=m.nid, sign_with=m, ops=b"[]")
        if kind == "signature namespace":
            buf = commit_buffer(
                r,
                write_tree(r, {"manifest": manifest_bytes(LOG_TYPENAME), "ops": ops_bytes("x")}),
                parent,
                m.nid,
            )
            sig = cob.sshsig.sign(m, buf.encode(), namespace=b"file")
            return str(r.create_commit_with_signature(buf, sig))
        raise AssertionError(kind)


REASONS = {
    "unsigned": "change is not signed",
    "wrong key": "but authored as",
    "committer differs": "and committed as 'z6Mk",
    "tree swapped": "signature does not verify",
    "other type": "manifest type is 'test.cob.tags'",
    "ops do not decode": "ops do not decode",
    "ops not json": "ops do not decode",
    "unknown version": "unsupported manifest",
    "type refuses": "the type refuses the text 'REJECT'",
    "second root": "second root",
    "extra tree entry": "unexpected tree entry 'zzz'",
    "empty ops": "no ops",
    "signature namespace": "namespace",
}


def _check_scene(scene: Scene, ev: cob.Evaluation[LogState] | None) -> None:
    assert ev is not None and ev.state is not None
    # the valid concurrent branches are kept, and the order is deterministic
    assert sorted(ev.state.lines) == sorted(["root", "a1", "b1", "a2"])
    assert ev.state.lines[:2] == ["root", "a1"]
    reported = {r.change: r.reason for r in ev.rejections()}
    assert all(r.object_id == scene.id for r in ev.rejections())
    for kind, (bad, child, grandchild) in scene.bad.items():
        assert REASONS[kind] in reported[bad], (kind, reported[bad])
        assert reported[child] == f"descends from rejected change {bad[:12]}"
        assert reported[grandchild] == f"descends from rejected change {child[:12]}"
    assert len(reported) == 3 * len(scene.bad)


@pytest.mark.parametrize("kind", sorted(REASONS))
def test_bad_change_dropped_with_descendants(repo: pygit2.Repository, kind: str) -> None:
    scene = Scene(repo)
    scene.add_bad(kind, scene.make(kind))
    _check_scene(scene, cob.Store(repo.path, cache=False).load(LOG, scene.id))
    _check_scene(scene, cob.Store(repo.path, cache=True).load(LOG, scene.id))


def test_all_bad_changes_at_once_and_writer_never_builds_on_them(repo: pygit2.Repository) -> None:
    scene = Scene(repo)
    for kind in REASONS:
        scene.add_bad(kind, scene.make(kind))
    ev = cob.Store(repo.path, cache=False).load(LOG, scene.id)
    _check_scene(scene, ev)
    # alice writes next: her change's parents are the accepted heads only
    change, after = cob.Store(repo, scene.alice, cache=False).update(LOG, scene.id, [Append("a3")])
    assert set(change.parents) == {scene.a2.oid, scene.b1.oid}
    assert after.state is not None and after.state.lines[-1] == "a3"
    again = cob.Store(repo.path, cache=False).load(LOG, scene.id)
    assert again is not None and again.state is not None
    assert again.state.lines[-1] == "a3" and len(again.rejected) == 3 * len(REASONS)


def test_ref_to_missing_object_or_non_commit(repo: pygit2.Repository) -> None:
    scene = Scene(repo)
    blob = str(repo.create_blob(b"not a commit"))
    missing = "0123456789abcdef0123456789abcdef01234567"
    (Path(repo.path) / "refs" / "namespaces" / "znope" / "refs" / "cobs" / LOG_TYPENAME).mkdir(parents=True)
    point(repo, cob.Signer.generate().nid, LOG_TYPENAME, scene.id, blob)
    # a dangling index entry, as a broken fetch could leave
    point(repo, cob.Signer.generate().nid, LOG_TYPENAME, scene.id, missing)
    ev = cob.Store(repo.path, cache=False).load(LOG, scene.id)
    assert ev is not None and ev.state is not None and len(ev.state.lines) == 4
    assert "not a commit" in ev.rejected[blob]
    assert "missing" in ev.rejected[missing]


def test_invalid_root_rejects_everything_without_raising(repo: pygit2.Repository) -> None:
    mallory = cob.Signer.generate()
    root = write_raw(repo, parents=[], author=mallory.nid, sign_with=None)  # unsigned root
    child = write_raw(repo, parents=[root], author=mallory.nid, sign_with=mallory)
    point(repo, mallory.nid, LOG_TYPENAME, root, child)
    ev = cob.Store(repo.path, cache=False).load(LOG, root)
    assert ev is not None and ev.state is None and not ev.valid
    assert ev.rejected[root] == "change is not signed"
    assert ev.rejected[child] == f"descends from rejected change {root[:12]}"
    with pytest.raises(cob.UnknownObjectError):
        cob.Store(repo, mallory).update(LOG, root, [Append("x")])


def test_change_with_parent_outside_the_object(repo: pygit2.Repository) -> None:
    """A change that points into a branch's history is not part of any object."""
    scene = Scene(repo)
    m = scene.mallory
    bad = write_raw(repo, parents=[scene.a1.oid, str(repo.head.target)], author=m.nid, sign_with=m)
    point(repo, m.nid, LOG_TYPENAME, scene.id, bad)
    ev = cob.Store(repo.path, cache=False).load(LOG, scene.id)
    assert ev is not None and ev.state is not None and len(ev.state.lines) == 4
    assert str(repo.head.target) in ev.rejected and "descends from rejected" in ev.rejected[bad]


def test_oversized_ops_rejected_without_decoding(repo: pygit2.Repository) -> None:
    scene = Scene(repo)
    m = scene.mallory
    big = canonical.dumps([Append("x" * (1 << 20))])
    bad = write_raw(repo, parents=[scene.a1.oid], author=m.nid, sign_with=m, ops=big)
    point(repo, m.nid, LOG_TYPENAME, scene.id, bad)
    ev = cob.Store(repo.path, cache=False).load(LOG, scene.id)
    assert ev is not None and "limit" in ev.rejected[bad]


def test_commit_time_and_oid_break_ties(repo: pygit2.Repository) -> None:
    """Siblings fold by (commit time, oid): an older clock goes first regardless of arrival."""
    a, b = cob.Signer.generate(), cob.Signer.generate()
    codec = Codec(LOG)
    root = write_change(repo, codec, a, a.nid, [Append("root")], [], timestamp=100)
    late = write_change(repo, codec, a, a.nid, [Append("late")], [root], timestamp=300)
    early = write_change(repo, codec, b, b.nid, [Append("early")], [root], timestamp=200)
    same1 = write_change(repo, codec, a, a.nid, [Append("s1")], [root], timestamp=250)
    same2 = write_change(repo, codec, b, b.nid, [Append("s2")], [root], timestamp=250)
    for tip in (late, early, same1, same2):
        point(repo, cob.Signer.generate().nid, LOG_TYPENAME, root, tip)
    ev = cob.Store(repo.path, cache=False).load(LOG, root)
    assert ev is not None and ev.state is not None
    tied = ["s1", "s2"] if same1 < same2 else ["s2", "s1"]
    assert ev.state.lines == ["root", "early", *tied, "late"]
    # a child with a clock behind its parent still folds after it (topology first)
    skewed = write_change(repo, codec, b, b.nid, [Append("skewed")], [late], timestamp=1)
    point(repo, b.nid, LOG_TYPENAME, root, skewed)
    ev = cob.Store(repo.path, cache=False).load(LOG, root)
    assert ev is not None and ev.state is not None
    assert ev.state.lines == ["root", "early", *tied, "late", "skewed"]


def test_git_log_shows_good_signatures(repo: pygit2.Repository, tmp_path: Path) -> None:
    signer = cob.Signer.generate()
    ev = cob.Store(repo, signer).create(LOG, [Append("x")])
    allowed = allowed_signers_file(tmp_path / "allowed", [signer.nid])
    out = git(
        repo.workdir,
        "-c",
        "gpg.format=ssh",
        "-c",
        f"gpg.ssh.allowedSignersFile={allowed}",
        "log",
        "--format=%G? %GS %an",
        ev.object_id,
    )
    assert out.strip() == f"G {signer.nid} {signer.nid}"


# -- docs/FORMAT.md's worked example is real --------------------------------------------------


def _documented_commit(doc: str, oid: str) -> bytes:
    """The raw commit bytes of a ``git cat-file -p <oid>`` block in FORMAT.md."""
    start = doc.index(f"$ git cat-file -p {oid}\n") + len(f"$ git cat-file -p {oid}\n")
    text = doc[start : doc.index("\n$ ", start)] + "\n"
    return text.encode()


def test_format_example_verifies_and_rederives(repo: pygit2.Repository) -> None:
    import jobs.jobtype
    from cob.change import commit_oid, write_root
    from jobs.ops import Request

    doc = (PROJECT / "docs" / "FORMAT.md").read_text()
    nid = "z6MkuVTdbAFGJY66PmaSqfgRhFgrB8NXmboH9yr1BVPJzh8u"
    job_id = "9fa9f1c0f6a7ab20dcf67b921fbac896272ebb7a"
    # the job root, the release, the run start, the finish, and the log bucket commit (11.4)
    for oid in (
        job_id,
        "f2547742065377b8e12399f65f9b3d848c35fed3",
        "104341ee8ffb88794ae3c9e73088562ad5b104bd",
        "cb375bcb04a6e90fd025ec4af3ad811b1178a5cf",
        "2ff08343b417e221485b65efb5eada781322244d",
    ):
        raw = _documented_commit(doc, oid)
        assert commit_oid(raw) == oid  # the pasted bytes are exactly the object
        if oid == job_id:
            continue
        header, _, message = raw.partition(b"\n\n")
        lines = header.split(b"\n")
        at = next(i for i, line in enumerate(lines) if line.startswith(b"gpgsig "))
        end = at + 1
        while end < len(lines) and lines[end].startswith(b" "):
            end += 1
        armored = b"\n".join([lines[at][len(b"gpgsig ") :]] + [ln[1:] for ln in lines[at + 1 : end]])
        payload = b"\n".join(lines[:at] + lines[end:]) + b"\n\n" + message
        key = cob.sshsig.verify(armored, payload)
        assert cob.nid_from_public_key(key) == nid
    # the documented log is the blob the documented finish names
    log = doc[doc.index("$ git cat-file -p 7bba103a412fbc336b062e60981f5daa97f4b3f6\n") :].split("\n", 1)[1]
    log = log[: log.index("\n```")] + "\n"
    assert str(pygit2.hash(log.encode())) == "7bba103a412fbc336b062e60981f5daa97f4b3f6"
    assert '"log_blob":"7bba103a412fbc336b062e60981f5daa97f4b3f6"' in doc
    # the job root re-derives from its request alone, in any repository
    commit = "5012552ee0a40e8a9b26d3e5b8c70219092edfcd"
    assert write_root(repo, Codec(jobs.jobtype.JOB_TYPE), [Request(commit, "ci")]) == job_id
