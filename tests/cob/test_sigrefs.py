"""One signed index ref per node (docs/FORMAT.md 7): what users rely on.

Refs grow with nodes, not nodes x jobs; the index is verified by stock git and survives
``git gc``; an existing repository migrates by itself with nothing lost; the SQLite index
follows an index ref moved by plain git, reading only what moved.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cob
import jobs
from cob import sigrefs
from cob.change import Codec, write_change, write_root
from cob.reader import RefReader, _namespace_section
from jobs.sync import Publication
from tests.conftest import git, head, init_repo

CODEC = Codec(jobs.JOB_TYPE)


def _states(path: Path | str) -> dict[str, object]:
    store = jobs.Jobs.open(str(path), cache=False)
    return {
        j.id: sorted((n, str(r), run.status.value) for n, rs in j.runs().items() for r, run in rs.items())
        for j in store.all()
    }


def _refs(path: Path) -> list[str]:
    return git(path, "for-each-ref", "--format=%(refname)", "refs/namespaces/").split()


def test_refs_grow_with_nodes_not_jobs(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "r", commits=3)
    signers = [cob.Signer.generate() for _ in range(3)]
    for s in signers:
        store = jobs.Jobs.open(repo.path, signer=s)
        for sha in [str(c) for c in git(tmp_path / "r", "rev-list", "HEAD").split()]:
            for name in ("build", "test"):
                job = store.create(sha, name)
                job.finish(job.run("https://ci.example/x"), "succeeded")
    assert len(_refs(tmp_path / "r")) == 3  # one index ref per node for 6 jobs x 3 nodes
    assert len(jobs.Jobs.open(repo.path).find_by_commit(head(repo))) == 2


def test_every_index_commit_is_verified_by_stock_git_and_gc_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "r"
    repo = init_repo(path)
    signer = cob.Signer.generate()
    store = jobs.Jobs.open(repo.path, signer=signer)
    job = store.create(head(repo), "ci")
    job.finish(job.run("https://ci.example/1"), "failed")
    before = _states(path)
    signers_file = tmp_path / "allowed"
    signers_file.write_text(cob.allowed_signers_line(signer.nid) + "\n")
    chain = git(path, "rev-list", "--first-parent", cob.index_ref(signer.nid)).split()
    assert len(chain) >= 3  # the empty start, then one commit per write
    for oid in chain:  # each index commit is a signed statement of its node
        git(path, "-c", f"gpg.ssh.allowedSignersFile={signers_file}", "verify-commit", oid)
    git(path, "fsck", "--strict", "--no-dangling")
    git(path, "gc", "--prune=now", "--quiet")
    git(path, "fsck", "--strict", "--no-dangling")
    assert _states(path) == before and before[job.id]


@st.composite
def _update_batches(draw: st.DrawFn) -> list[dict[tuple[str, str], str | None]]:
    ids = [f"{i:02x}" + "ab" * 19 for i in draw(st.lists(st.integers(0, 255), min_size=1, max_size=6))]
    tips = ["t1", "t2", "t3", None]
    out = []
    for _ in range(draw(st.integers(1, 5))):
        keys = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=4, unique=True))
        types = draw(st.lists(st.sampled_from(["a.type", "b.type"]), min_size=len(keys), max_size=len(keys)))
        out.append({(t, k): draw(st.sampled_from(tips)) for t, k in zip(types, keys, strict=True)})
    return out


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=_update_batches())
def test_index_writes_and_diffs_match_a_plain_map(tmp_path_factory: object, batches: list[dict]) -> None:
    """Whatever the updates, the index holds exactly the map they describe, and ``diff`` between
    any two index commits is exactly the change between the two maps."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        repo = pygit2.init_repository(d, bare=True)
        signer = cob.Signer.generate()
        empty = repo.TreeBuilder().write()
        real: dict[str, str] = {}
        for name in ("t1", "t2", "t3"):
            ident = pygit2.Signature("x", "x", 0, 0)
            real[name] = str(repo.create_commit(None, ident, ident, name, empty, []))
        model: dict[tuple[str, str], str] = {}
        tips: list[tuple[str | None, dict[tuple[str, str], str]]] = [(None, {})]
        tip = None
        for batch in batches:
            updates = {k: (real[v] if v else None) for k, v in batch.items()}
            tip = sigrefs.write_commit(repo, signer, signer.nid, tip, updates)
            for k, v in updates.items():
                if v is None:
                    model.pop(k, None)
                else:
                    model[k] = v
            tips.append((tip, dict(model)))
        tree = sigrefs.tree_of(repo, tip)
        assert dict(((t, i), v) for t, i, v in sigrefs.walk_entries(repo, tree)) == model
        for typename, object_id in {k for b in batches for k in b}:
            assert sigrefs.lookup(repo, tree, typename, object_id) == model.get((typename, object_id))
        (a, ma), (b, mb) = random.sample(tips, 2) if len(tips) > 1 else (tips[0], tips[0])
        want = {k: mb.get(k) for k in ma.keys() | mb.keys() if ma.get(k) != mb.get(k)}
        assert sigrefs.diff_all(repo, sigrefs.tree_of(repo, a), sigrefs.tree_of(repo, b)) == want
        chain = sigrefs.first_parents(repo, tip, None, 1000)
        assert chain is not None and not chain[-1].parent_ids and len(chain[-1].tree) == 0
        assert not sigrefs.unreached(repo, chain, sigrefs.diff_all(repo, None, tree))


def _legacy_repo(tmp_path: Path) -> tuple[pygit2.Repository, cob.Signer, cob.Signer, list[str]]:
    """A repository as the per-object layout left it: our refs and a peer's, per job."""
    repo = init_repo(tmp_path / "old", commits=2)
    me, peer = cob.Signer.generate(), cob.Signer.generate()
    ids = []
    for i, sha in enumerate(git(tmp_path / "old", "rev-list", "HEAD").split()):
        root = write_root(repo, CODEC, [jobs.Request(sha, "ci")])
        ids.append(root)
        for k, s in enumerate((me, peer)):
            run = f"01890000-0000-7000-8000-0000000000{i}{k}"
            ops = [jobs.Release(), jobs.StartRun(run, "https://ci.example/x")]
            tip = write_change(repo, CODEC, s, s.nid, ops, [root])
            repo.references.create(cob.object_ref(s.nid, jobs.TYPENAME, root), pygit2.Oid(hex=tip))
    return repo, me, peer, ids


def test_an_existing_repository_migrates_by_itself_and_loses_nothing(tmp_path: Path) -> None:
    repo, me, peer, ids = _legacy_repo(tmp_path)
    path = tmp_path / "old"
    before = _states(path)  # read through the legacy refs
    assert set(before) == set(ids) and all(len(v) == 2 for v in before.values())
    git(path, "pack-refs", "--all")  # an auto-gc packed them: the migration reads packed refs too

    store = jobs.Jobs.open(repo.path, signer=me)
    job = store.get_mut(ids[0])
    assert job is not None
    job.finish(job.run("https://ci.example/new"), "succeeded")  # the first write migrates

    names = _refs(path)
    assert cob.index_ref(me.nid) in names
    assert not [n for n in names if f"{me.nid}/refs/cobs/" in n]  # ours all moved
    assert len([n for n in names if f"{peer.nid}/refs/cobs/" in n]) == 2  # the peer's: only it can sign
    after = _states(path)
    assert {k: v for k, v in after.items() if k != ids[0]} == {k: v for k, v in before.items() if k != ids[0]}
    assert set(before[ids[0]]) < set(after[ids[0]])
    git(path, "fsck", "--strict", "--no-dangling")


def test_a_peers_legacy_refs_go_once_its_own_index_covers_them(tmp_path: Path) -> None:
    repo, me, peer, _ = _legacy_repo(tmp_path)
    hub = init_repo(tmp_path / "hub.git", bare=True)
    git(tmp_path / "old", "push", "-q", hub.path, "refs/namespaces/*:refs/namespaces/*")  # the old layout
    peer_copy = tmp_path / "peer"
    git(tmp_path, "clone", "-q", "--mirror", hub.path, str(peer_copy))
    peer_store = jobs.Jobs.open(str(peer_copy), signer=peer)
    report = peer_store.sync(hub.path)  # migrates the peer, pushes its index, deletes its old refs
    assert report.ok, report
    hub_refs = git(tmp_path / "hub.git", "for-each-ref", "--format=%(refname)").split()
    assert not [n for n in hub_refs if f"{peer.nid}/refs/cobs/" in n]
    assert cob.index_ref(peer.nid) in hub_refs

    before = _states(tmp_path / "old")
    mine = jobs.Jobs.open(repo.path, signer=me)
    assert mine.sync(hub.path).ok
    names = _refs(tmp_path / "old")
    assert not [n for n in names if "/refs/cobs/" in n], names  # ours migrated, the peer's superseded
    assert _states(tmp_path / "old") == before


def test_own_writes_keep_the_index_current_and_outside_moves_are_read_by_difference(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "a", commits=1)
    a, b = cob.Signer.generate(), cob.Signer.generate()
    store = jobs.Jobs.open(repo.path, signer=a)
    jobs_ = [store.create(head(repo), f"job{i}") for i in range(20)]
    assert len(store.find_by_commit(head(repo))) == 20
    cache = store.store.cache
    assert cache is not None
    refreshes = cache.refreshes
    jobs_[3].finish(jobs_[3].run("https://ci.example/a"), "succeeded")
    assert len(store.find_by_commit(head(repo))) == 20
    assert cache.refreshes == refreshes  # our own write updated the index directly

    other = init_repo(tmp_path / "b", commits=0)
    everything = ("refs/namespaces/*:refs/namespaces/*", "main:refs/heads/from-a")
    git(tmp_path / "b", "fetch", "-q", str(tmp_path / "a"), *everything)
    theirs = jobs.Jobs.open(other.path, signer=b).get_mut(jobs_[5].id)
    assert theirs is not None
    theirs.finish(theirs.run("https://ci.example/b"), "failed")
    # plain git brings b's index back: the next query notices, and sees b's run
    git(tmp_path / "a", "fetch", "-q", str(tmp_path / "b"), "refs/namespaces/*:refs/namespaces/*")
    found = {j.name: j for j in store.find_by_commit(head(repo))}
    assert cache.refreshes == refreshes + 1
    assert set(found["job5"].runs_of(b.nid)) and found["job3"].runs_of(a.nid)


@settings(max_examples=200, deadline=None)
@given(
    names=st.lists(
        st.sampled_from(
            [
                "refs/heads/",
                "refs/namespaces/",
                "refs/namespacez",
                "refs/namespace",
                "refs/tags/",
                "refs/n",
                "",
            ]
        ).flatmap(lambda p: st.builds(lambda n: p + n, st.text("abz09/", min_size=0, max_size=4))),
        max_size=30,
    ),
    peeled=st.lists(st.booleans(), min_size=30, max_size=30),
)
def test_packed_refs_namespace_section_is_found_by_bisection(names: list[str], peeled: list[bool]) -> None:
    names = sorted({n for n in names if n})
    lines = [b"# pack-refs with: peeled fully-peeled sorted \n"]
    for i, name in enumerate(names):
        lines.append(b"a" * 40 + b" " + name.encode() + b"\n")
        if peeled[i % 30]:
            lines.append(b"^" + b"b" * 40 + b"\n")
    section = _namespace_section(b"".join(lines))
    got = [line[41:].decode() for line in section.split(b"\n") if line and line[:1] not in b"#^"]
    assert got == [n for n in names if n.startswith("refs/namespaces/")]


def test_many_branches_and_tags_do_not_slow_reading_the_index(tmp_path: Path) -> None:
    """Only packed-refs' namespace section is parsed: 5,000 packed tags are never read."""
    repo = init_repo(tmp_path / "r")
    signer = cob.Signer.generate()
    jobs.Jobs.open(repo.path, signer=signer).create(head(repo), "ci")
    lines = "".join(f"create refs/tags/t{i:05d} {head(repo)}\n" for i in range(5000))
    subprocess.run(["git", "update-ref", "--stdin"], cwd=tmp_path / "r", input=lines, text=True, check=True)
    git(tmp_path / "r", "pack-refs", "--all")
    reader = RefReader(pygit2.Repository(repo.path))
    assert list(reader.index_tips()) == [signer.nid]
    assert len(reader._packed_refs()) == 1  # the index ref alone, not 5,001 refs


def test_a_rebuilt_index_does_not_check_the_same_signature_twice(tmp_path: Path, monkeypatch: object) -> None:
    """Rebuilding the index (``git jobs index --rebuild``, a new version's rules) folds every
    job again, but a signature this repository checked once is not checked again."""
    import pytest

    import cob.change

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    repo = init_repo(tmp_path / "r", commits=1)
    signer = cob.Signer.generate()
    store = jobs.Jobs.open(repo.path, signer=signer)
    for name in ("a", "b", "c"):
        job = store.create(head(repo), name)
        job.finish(job.run("https://ci.example/x"), "succeeded")
    checked: list[str] = []
    real = cob.change.signed_by

    def counting(commit: pygit2.Commit) -> str:
        checked.append(str(commit.id))
        return real(commit)

    monkeypatch.setattr(cob.change, "signed_by", counting)
    fresh = cob.Store(repo.path, cache=False)  # no index: every change is checked
    assert len(list(fresh.load_many(jobs.JOB_TYPE, fresh.list(jobs.JOB_TYPE)))) == 3
    assert len(checked) == 9  # release, run, finish of three jobs
    checked.clear()
    reopened = cob.Store(repo.path)
    assert reopened.rebuild_cache(jobs.JOB_TYPE) == 3
    assert checked == []  # all nine were checked (and recorded) when they were written or folded
    assert {j.name for j in jobs.Jobs.open(repo.path).find_by_commit(head(repo))} == {"a", "b", "c"}


def _clone_node(tmp_path: Path, hub: str, name: str, signer: cob.Signer) -> jobs.Jobs:
    git(tmp_path, "clone", "-q", hub, str(tmp_path / name))
    return jobs.Jobs.open(str(tmp_path / name), signer)


def _hub(tmp_path: Path) -> tuple[str, list[str]]:
    origin = init_repo(tmp_path / "origin", commits=2)
    git(tmp_path, "clone", "-q", "--bare", origin.workdir, str(tmp_path / "hub.git"))
    return str(tmp_path / "hub.git"), git(tmp_path / "origin", "rev-list", "HEAD").split()


def test_a_node_reinstalled_that_writes_before_it_syncs_merges_its_own_index(tmp_path: Path) -> None:
    """Same key, fresh clone, a write before the first sync: the remote's copy of this node's
    index is merged into the new one, so both the old and the new results are published."""
    hub, commits = _hub(tmp_path)
    key = cob.Signer.generate()
    first = _clone_node(tmp_path, hub, "first", key)
    old = first.create(commits[0])
    old.finish(old.run("https://ci.example/1"), "succeeded")
    assert first.sync(hub).ok
    again = _clone_node(tmp_path, hub, "again", key)  # reinstalled: no index of its own yet
    new = again.create(commits[1])
    new.run("https://ci.example/2")
    report = again.sync(hub)
    assert report.ok and [u.ref for u in report.pushed] == [cob.index_ref(key.nid)], report.summary()
    observer = _clone_node(tmp_path, hub, "observer", cob.Signer.generate())
    assert observer.sync(hub).ok
    assert observer.get(old.id) is not None and observer.get(new.id) is not None
    assert again.get(old.id) is not None and first.sync(hub).ok  # the first copy fast-forwards


def test_a_push_never_deletes_old_refs_its_index_does_not_hold(tmp_path: Path) -> None:
    """The node's history from before the index is only in per-object refs on the hub; the
    same node on a fresh clone takes them back (fetch), migrates them, and only then are they
    deleted on the hub, once its index there holds them."""
    hub, commits = _hub(tmp_path)
    key = cob.Signer.generate()
    old = _clone_node(tmp_path, hub, "old", key)
    job = old.create(commits[1])
    job.finish(job.run("https://ci.example/old"), "succeeded")
    legacy = cob.object_ref(key.nid, jobs.TYPENAME, job.id)
    git(tmp_path / "old", "update-ref", legacy, job.tips[key.nid])
    git(tmp_path / "old", "push", "-q", hub, f"{legacy}:{legacy}")  # as the old layout published it

    fresh = _clone_node(tmp_path, hub, "fresh", key)
    fresh.create(commits[0])
    assert fresh.sync(hub).ok
    hub_refs = git(Path(hub), "for-each-ref", "--format=%(refname)", "refs/namespaces/").split()
    assert hub_refs == [cob.index_ref(key.nid)]
    reader = jobs.Jobs.open(hub)
    found = reader.get(job.id)
    assert found is not None
    assert [r.reason for r in found.runs_of(key.nid).values()] == [jobs.Reason.SUCCEEDED]


@pytest.mark.slow
def test_entries_moved_over_a_long_history_cost_a_bounded_walk(tmp_path: Path, monkeypatch: object) -> None:
    """A signed index that moves many entries over many new commits: checking that each moved
    forward shares one walk budget; beyond it the index is refused as `limit`, not walked."""
    import pytest

    import cob.sync.checks

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(cob.sync.checks, "MAX_ANCESTRY_WALK", 100)
    hub, commits = _hub(tmp_path)
    mallory, bob = cob.Signer.generate(), cob.Signer.generate()
    m = _clone_node(tmp_path, hub, "m", mallory)
    b = _clone_node(tmp_path, hub, "b", bob)
    made = [m.create(commits[0], f"j{i}") for i in range(10)]
    assert m.sync(hub).ok and b.sync(hub).ok
    for job in made[:2]:  # an honest write: two entries move one change each
        job.run("https://ci.example/x")
    assert m.sync(hub).ok and b.sync(hub).ok
    codec = Codec(jobs.JOB_TYPE)
    tips = {job.id: job.tips[mallory.nid] for job in m.all()}
    updates: dict[tuple[str, str], str | None] = {}
    for job_id, tip in tips.items():  # every entry moves over 30 new changes
        for i in range(30):
            run = f"0189{i:04x}-0000-7000-8000-{int(job_id[:8], 16):012x}"
            op = jobs.StartRun(run, "https://x.example/")
            tip = write_change(m.repo, codec, mallory, mallory.nid, [op], [tip])
        updates[(jobs.TYPENAME, job_id)] = tip
    old = sigrefs.read_tip(m.repo, mallory.nid)
    new = sigrefs.write_commit(m.repo, mallory, mallory.nid, old, updates)
    m.repo.references[cob.index_ref(mallory.nid)].set_target(new)
    assert m.sync(hub).ok
    report = b.sync(hub)
    limit = cob.sync.RefusalKind.LIMIT
    assert [(r.ref, r.kind) for r in report.refused] == [(cob.index_ref(mallory.nid), limit)]
    assert sigrefs.read_tip(b.repo, mallory.nid) == old  # left as it was


def test_type_names_that_extend_each_other_are_in_git_order(tmp_path: Path) -> None:
    """git sorts a tree as if its name ended in "/": `a-b/` before `a/`. An index with two
    such types is well formed, and fsck agrees."""
    repo = init_repo(tmp_path / "r")
    signer = cob.Signer.generate()
    tip = head(repo)
    tips = {("dev.gitjobs.job", tip): tip, ("dev.gitjobs.job-log", tip): tip, ("dev.gitjobs.job.x", tip): tip}
    index = sigrefs.write_commit(repo, signer, signer.nid, None, tips)
    assert sigrefs.malformed(repo, None, sigrefs.tree_of(repo, index)) is None
    assert [t for t, _, _ in sigrefs.walk_entries(repo, sigrefs.tree_of(repo, index))] == [
        "dev.gitjobs.job-log",
        "dev.gitjobs.job.x",
        "dev.gitjobs.job",
    ]
    git(tmp_path / "r", "fsck", "--strict", "--no-dangling")


def test_a_hub_cannot_pass_one_of_our_changes_off_as_our_index(tmp_path: Path) -> None:
    """The same key signs changes and indexes: a hub that points our index ref at one of our
    changes gets a refusal, and we neither merge it nor sign anything on top of it."""
    hub, commits = _hub(tmp_path)
    key = cob.Signer.generate()
    node = _clone_node(tmp_path, hub, "node", key)
    job = node.create(commits[0])
    job.finish(job.run("https://ci.example/1"), "succeeded")
    assert node.sync(hub).ok
    ours = sigrefs.read_tip(node.repo, key.nid)
    git(Path(hub), "update-ref", cob.index_ref(key.nid), job.tips[key.nid])
    observer = _clone_node(tmp_path, hub, "observer", cob.Signer.generate())
    report = observer.sync(hub)  # a peer that never had our index: not an index, refused
    assert [(r.kind, "not an index commit" in r.reason) for r in report.refused] == [
        (cob.sync.RefusalKind.BAD_TIP, True)
    ]
    other = init_repo(tmp_path / "fresh", commits=0)
    sigrefs_ref = cob.index_ref(key.nid)
    git(tmp_path / "fresh", "fetch", "-q", hub, f"{sigrefs_ref}:{sigrefs_ref}")  # plain git takes it
    assert jobs.Jobs.open(other.path).get(job.id) is None  # and reads no index from a change
    node.sync(hub)  # our index descends from it: nothing merged or signed, the hub is repaired
    assert sigrefs.read_tip(node.repo, key.nid) == ours
    assert git(Path(hub), "rev-parse", sigrefs_ref).strip() == ours


def test_a_merged_index_is_not_merged_again_when_a_hub_replays_our_old_chain(tmp_path: Path) -> None:
    hub, commits = _hub(tmp_path)
    key = cob.Signer.generate()
    first = _clone_node(tmp_path, hub, "first", key)
    first.create(commits[0])
    assert first.sync(hub).ok
    again = _clone_node(tmp_path, hub, "again", key)
    again.create(commits[1])
    before_merge = sigrefs.read_tip(again.repo, key.nid)
    assert before_merge is not None and again.sync(hub).ok  # merged, pushed
    merged = sigrefs.read_tip(again.repo, key.nid)
    git(Path(hub), "update-ref", cob.index_ref(key.nid), before_merge)  # the hub replays it
    report = again.sync(hub)
    assert sigrefs.read_tip(again.repo, key.nid) == merged and report.ok, report.summary()


def test_our_index_published_from_here_is_not_merged_with_a_chain_not_built_on_it(tmp_path: Path) -> None:
    """Two live copies of one key: once this copy's index was published, a diverged one on the
    remote that does not build on it is reported, never merged (peers that took ours would
    refuse the merged chain), and the sync says our results are not published."""
    hub, commits = _hub(tmp_path)
    key = cob.Signer.generate()
    one = _clone_node(tmp_path, hub, "one", key)
    one.create(commits[0])
    assert one.sync(hub).ok  # published from here
    two = _clone_node(tmp_path, hub, "two", key)
    other_hub = str(tmp_path / "other.git")
    git(tmp_path, "init", "-q", "--bare", other_hub)
    two.create(commits[1])
    assert two.sync(other_hub).ok  # published elsewhere: a chain of its own
    git(tmp_path / "two", "push", "-q", "-f", hub, f"{cob.index_ref(key.nid)}:{cob.index_ref(key.nid)}")
    ours = sigrefs.read_tip(one.repo, key.nid)
    report = one.sync(hub)
    own = [r for r in report.refused if r.kind is cob.sync.RefusalKind.OWN_NAMESPACE]
    assert len(own) == 1 and "give the other a key of its own" in own[0].reason
    assert report.publication is Publication.UNPUBLISHED
    assert sigrefs.read_tip(one.repo, key.nid) == ours  # reported, not merged


def test_a_hub_cannot_make_us_sign_an_old_style_ref_it_made_up(tmp_path: Path) -> None:
    hub, commits = _hub(tmp_path)
    key = cob.Signer.generate()
    node = _clone_node(tmp_path, hub, "node", key)
    job = node.create(commits[0])
    job.run("https://ci.example/1")
    assert node.sync(hub).ok
    fake = cob.object_ref(key.nid, jobs.TYPENAME, "ab" * 20)  # our change, under another id
    git(Path(hub), "update-ref", fake, job.tips[key.nid])
    report = node.sync(hub)
    assert [(r.ref, r.kind) for r in report.refused] == [(fake, cob.sync.RefusalKind.BAD_TIP)]
    tree = sigrefs.tree_of(node.repo, sigrefs.read_tip(node.repo, key.nid))
    assert sigrefs.lookup(node.repo, tree, jobs.TYPENAME, "ab" * 20) is None
