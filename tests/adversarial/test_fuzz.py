"""Fuzzing every decoder of peer data: any input gives a result or a typed rejection.

Peers control every byte of what we fetch: commit objects, trees, the manifest and ops blobs,
the SSHSIG in ``gpgsig``, ref names, node ids, each node's signed index (``cob.sigrefs``: its
commits, parents and tree of gitlinks); ``.git-jobs.toml`` is fuzzed in ``tests/spec``. Each decoder here
is fed arbitrary and near-valid input by hypothesis; the only outcomes allowed are a value or the
decoder's typed rejection (``InvalidChangeError``, ``SignatureError``, ``InvalidNidError``,
``None`` for a ref that is not ours, a malformed index entry left out, a fetch refusal,
``DefinitionError``) — never another exception — and the big-input tests bound time and memory.
Inputs that once found a bug live in ``tests/corpus/`` and are replayed by
:func:`test_corpus_replays`.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec
import pygit2
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import cob
from cob import sigrefs, sshsig
from cob.change import Change, Codec, InvalidChangeError, read_change
from cob.evaluate import evaluate
from cob.refs import object_ref, parse_ref
from cob.sigrefs import index_ref, parse_index_ref
from jobs import JOB_TYPE, TYPENAME, Request

CORPUS = Path(__file__).parents[1] / "corpus"
COMMIT = pygit2.enums.ObjectType.COMMIT
TREE = pygit2.enums.ObjectType.TREE
BLOB = pygit2.enums.ObjectType.BLOB
FAST = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))

ALICE = cob.Signer.generate()
MALLORY = cob.Signer.generate()
CODEC = Codec(JOB_TYPE)
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


# -- node ids ------------------------------------------------------------------------------
nid_like = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=B58, max_size=60).map(lambda t: "z" + t),
    st.text(alphabet=B58, max_size=60).map(lambda t: "did:key:z" + t),
    st.binary(min_size=0, max_size=40).map(lambda b: cob.identity.b58encode(b)).map(lambda t: "z" + t),
)


@FAST
@given(nid_like)
def test_nid_decoder_returns_a_key_or_invalid_nid(text: str) -> None:
    try:
        key = cob.public_key_from_nid(text)
    except cob.InvalidNidError:
        assert not cob.is_nid(text)
        return
    assert len(key) == 32
    assert cob.normalize_nid(text) == cob.nid_from_public_key(key)


@FAST
@given(st.binary(min_size=32, max_size=32))
def test_nid_round_trips(key: bytes) -> None:
    nid = cob.nid_from_public_key(key)
    assert cob.public_key_from_nid(nid) == key and cob.is_nid(nid)
    assert cob.public_key_from_nid("did:key:" + nid) == key


def test_nid_decoder_is_bounded_on_huge_input() -> None:
    for text in ("z" + "2" * 1_000_000, "did:key:z" + "z" * 1_000_000, "\0" * 1_000_000):
        start = time.perf_counter()
        with pytest.raises(cob.InvalidNidError):
            cob.public_key_from_nid(text)
        assert time.perf_counter() - start < 0.5  # quadratic decoding would take minutes


@FAST
@given(st.one_of(st.integers(), st.none(), st.binary(), st.lists(st.text())))
def test_nid_decoder_rejects_non_strings(value: Any) -> None:
    with pytest.raises(cob.InvalidNidError):
        cob.public_key_from_nid(value)


# -- ref names -----------------------------------------------------------------------------
segment = st.one_of(
    st.text(max_size=50),
    st.sampled_from(["refs", "cobs", "sigrefs", TYPENAME, ALICE.nid, "..", "", "a" * 40, "0" * 64]),
    st.binary(min_size=20, max_size=32).map(bytes.hex),
)
ref_names = st.one_of(
    st.text(max_size=300), st.lists(segment, max_size=8).map("/".join).map(lambda t: "refs/namespaces/" + t)
)


@FAST
@given(ref_names)
def test_index_ref_parser_returns_a_nid_or_none(name: str) -> None:
    """The name of a node's index ref (``ls-remote`` of a hub lists any names)."""
    nid = parse_index_ref(name)
    if nid is None:
        return
    assert nid and "/" not in nid
    assert index_ref(nid) == name
    assert parse_ref(name) is None  # never also read as a per-object ref


@FAST
@given(st.one_of(st.sampled_from([ALICE.nid, MALLORY.nid]), st.text(alphabet=B58, min_size=1, max_size=60)))
def test_index_ref_parser_round_trips(nid: str) -> None:
    assert parse_index_ref(index_ref(nid)) == nid
    assert parse_index_ref(index_ref(nid) + "/x") is None
    assert parse_index_ref(object_ref(nid, TYPENAME, "a" * 40)) is None


# Per-object refs (the layout before the index) are still listed on hubs and read until migrated.


@FAST
@given(ref_names)
def test_ref_parser_returns_a_cob_ref_or_none(name: str) -> None:
    parsed = parse_ref(name)
    if parsed is None:
        return
    nid, typename, object_id = parsed
    assert cob.refs.is_oid(object_id)
    assert "/" not in nid and "/" not in typename
    assert object_ref(nid, typename, object_id) == name


@FAST
@given(st.binary(min_size=20, max_size=20).map(bytes.hex))
def test_ref_parser_round_trips(object_id: str) -> None:
    assert parse_ref(object_ref(ALICE.nid, TYPENAME, object_id)) == (ALICE.nid, TYPENAME, object_id)


# -- SSHSIG ------------------------------------------------------------------------------
def _armor(blob: bytes) -> str:
    b64 = base64.b64encode(blob).decode()
    return "\n".join([sshsig.BEGIN, *(b64[i : i + 70] for i in range(0, len(b64), 70)), sshsig.END])


def _unarmor(armored: str) -> bytes:
    return base64.b64decode("".join(armored.splitlines()[1:-1]))


VALID_SIG = sshsig.sign(ALICE, b"message")
VALID_BLOB = _unarmor(VALID_SIG)


@st.composite
def mutated_blob(draw: st.DrawFn) -> bytes:
    """A valid SSHSIG blob with bytes flipped, cut, inserted or a length field rewritten."""
    data = bytearray(VALID_BLOB)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "length"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[pos : pos + draw(st.integers(1, 40))]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=20))
        elif kind == "length" and len(data) >= pos + 4:
            data[pos : pos + 4] = struct.pack(">I", draw(st.sampled_from([0, 1, 2**31, 2**32 - 1])))
    return bytes(data)


sig_inputs = st.one_of(
    st.binary(max_size=600),
    st.text(max_size=600),
    st.binary(max_size=400).map(_armor),
    mutated_blob().map(_armor),
)


@FAST
@given(sig_inputs)
def test_sshsig_parse_returns_fields_or_signature_error(armored: str | bytes) -> None:
    try:
        key, namespace, hash_alg, raw = sshsig.parse(armored)
    except cob.SignatureError:
        return
    assert len(key) == 32 and len(raw) == 64
    assert isinstance(namespace, bytes) and isinstance(hash_alg, bytes)


@FAST
@given(sig_inputs, st.binary(max_size=100))
def test_sshsig_verify_never_accepts_a_forgery(armored: str | bytes, message: bytes) -> None:
    try:
        key = sshsig.verify(armored, message)
    except cob.SignatureError:
        return
    # Only Alice ever signed anything, and only b"message": any acceptance must be hers.
    assert key == ALICE.public_key and message == b"message"


def test_sshsig_decoder_is_bounded_on_huge_input() -> None:
    huge = sshsig.BEGIN + "\n" + "A" * 50_000_000 + "\n" + sshsig.END
    tracemalloc.start()
    with pytest.raises(cob.SignatureError, match="too large"):
        sshsig.parse(huge)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20  # refused from its length: the 50 MB are never decoded


# -- manifests and ops blobs ---------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
op_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["request", "run", "finish", "other", ""])},
    optional={
        "run_id": st.one_of(st.text(max_size=40), st.integers()),
        "log": st.one_of(st.text(max_size=40), st.none()),
        "reason": st.text(max_size=12),
        "commit": st.text(max_size=64),
        "name": st.text(max_size=20),
        "extra": json_values,
    },
)
ops_blobs = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(op_like, max_size=5).map(lambda v: json.dumps(v).encode()),
)


@FAST
@given(ops_blobs)
def test_ops_decoder_returns_ops_or_invalid_change(data: bytes) -> None:
    try:
        ops = CODEC.decode_ops(data)
    except InvalidChangeError:
        return
    assert ops and all(isinstance(op, JOB_TYPE.op_type) for op in ops)


@FAST
@given(st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())))
def test_manifest_decoder_returns_a_version_or_invalid_change(data: bytes) -> None:
    try:
        version = CODEC.manifest_version(data)
    except InvalidChangeError:
        return
    assert version in JOB_TYPE.versions


def test_ops_decoder_is_bounded_on_huge_input() -> None:
    big = b"[" + b'{"type":"run","run_id":"x","log":"y"},' * 200_000 + b"]"
    start = time.perf_counter()
    with pytest.raises(InvalidChangeError, match="limit"):
        CODEC.decode_ops(big)
    assert time.perf_counter() - start < 0.5  # quadratic decoding would take minutes
    deep = b"[" * 100_000 + b"]" * 100_000  # nesting: msgspec must not blow the C stack
    with pytest.raises(InvalidChangeError):
        CODEC.decode_ops(deep)


# -- change commits on arbitrary objects -----------------------------------------------------
class World:
    """A bare repository with a few real objects to point fuzzed objects at."""

    def __init__(self, path: Path) -> None:
        self.repo = pygit2.init_repository(str(path), bare=True)
        r = self.repo
        self.manifest = str(r.create_blob(CODEC.manifest))
        self.ops = str(
            r.create_blob(
                b'[{"log":"https://x/1","run_id":"0190a000-0000-7000-8000-000000000000","type":"run"}]'
            )
        )
        self.empty_tree = str(r.odb.write(TREE, b""))
        self.job = cob.Store(r, ALICE, cache=False).create(JOB_TYPE, [Request("a" * 40, "ci")]).object_id
        self.garbage = str(r.odb.write(COMMIT, b"not a commit"))
        # Alice's honest index: its empty root, then the commit naming the job (what create wrote).
        self.index = sigrefs.read_tip(r, ALICE.nid)
        assert self.index is not None
        self.index_root = str(r[self.index].parent_ids[0])
        # Corpus commits name this tree (its oid is fixed by the two blobs above).
        self.good_tree = self.w(
            TREE, tree_bytes([(b"100644", b"manifest", self.manifest), (b"100644", b"ops", self.ops)])
        )

    def w(self, kind: pygit2.enums.ObjectType, data: bytes) -> str:
        return str(self.repo.odb.write(kind, data))


def tree_bytes(entries: list[tuple[bytes, bytes, str]]) -> bytes:
    return b"".join(m + b" " + n + b"\0" + bytes.fromhex(o) for m, n, o in entries)


OFTEN = st.sampled_from([True, True, True, True, False])  # shrinks and leans towards True


@st.composite
def fuzzed_commit(draw: st.DrawFn, world: World) -> str:
    """Write a commit whose every field is chosen (or corrupted) by hypothesis."""
    any_oid = st.one_of(
        st.sampled_from([world.manifest, world.ops, world.empty_tree, world.job, world.garbage]),
        st.binary(min_size=20, max_size=20).map(bytes.hex),
    )
    mode = st.sampled_from([b"100644", b"100755", b"40000", b"160000", b"120000", b"644", b"x"])
    name = st.one_of(st.sampled_from([b"manifest", b"ops", b"embeds"]), st.binary(min_size=1, max_size=9))
    ops_blob = st.one_of(st.just(world.ops), ops_blobs.map(lambda d: world.w(BLOB, d)))
    entries = st.lists(st.tuples(mode, name, st.one_of(any_oid, ops_blob)), max_size=4)
    good = [(b"100644", b"manifest", world.manifest), (b"100644", b"ops", draw(ops_blob))]
    # Mostly near-valid, so that most examples get past the first checks to the later ones.
    tree_entries = good if draw(OFTEN) else draw(entries)
    tree_entries = sorted(tree_entries, key=lambda e: e[1]) if draw(OFTEN) else tree_entries
    tree = world.w(TREE, tree_bytes(tree_entries)) if draw(OFTEN) else draw(any_oid)
    parents = (
        draw(st.lists(st.sampled_from([world.job]), max_size=1))
        if draw(st.integers(0, 3))
        else draw(st.lists(any_oid, max_size=3))
    )
    nid = draw(st.sampled_from([ALICE.nid] * 4 + [MALLORY.nid, "git-jobs", "", "\udcff"]))
    time_field = (
        "1700000000"
        if draw(OFTEN)
        else draw(
            st.one_of(
                st.integers(-(2**63), 2**64).map(str),
                st.sampled_from(["0", "253402300799", "253402300800", "-1", "99999999999999999999", "x"]),
            )
        )
    )
    tz = "+0000" if draw(OFTEN) else draw(st.sampled_from(["-1200", "+9999", "zzzz", ""]))
    ident = (
        nid.encode("utf-8", "surrogateescape")
        + b" <"
        + nid.encode("utf-8", "surrogateescape")
        + b"> "
        + time_field.encode()
        + b" "
        + tz.encode()
    )
    header = b"tree " + tree.encode() + b"\n"
    header += b"".join(b"parent " + p.encode() + b"\n" for p in parents)
    header += b"author " + ident + b"\ncommitter " + ident + b"\n"
    if not draw(OFTEN):
        header += b"encoding " + draw(st.sampled_from([b"ISO-8859-1", b"bogus", b"UTF-8"])) + b"\n"
    message = draw(st.binary(max_size=40)) + b"\n"
    payload = header + b"\n" + message
    sig_kind = draw(st.sampled_from(["alice"] * 4 + ["none", "mallory", "garbage", "mutated"]))
    if sig_kind == "none":
        data = payload
    else:
        if sig_kind == "alice":
            sig = sshsig.sign(ALICE, payload)
        elif sig_kind == "mallory":
            sig = sshsig.sign(MALLORY, payload)
        elif sig_kind == "mutated":
            sig = _armor(draw(mutated_blob()))
        else:
            sig = draw(st.text(min_size=1, max_size=80).filter(lambda t: "\n\n" not in t))
        body = sig.encode("utf-8", "surrogateescape").replace(b"\n", b"\n ")
        data = header + b"gpgsig " + body + b"\n\n" + message
    return world.w(COMMIT, data)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("fuzz") / "world.git")


@SLOW
@given(data=st.data())
def test_read_change_returns_a_verified_change_or_invalid_change(world: World, data: st.DataObject) -> None:
    oid = data.draw(fuzzed_commit(world))
    for is_root in (False, True):
        try:
            change = read_change(world.repo, CODEC, oid, is_root=is_root)
        except InvalidChangeError as e:
            assert str(e)
            continue
        assert isinstance(change, Change) and change.oid == oid
        if change.author is not None:
            # Accepted means: signed by that very key, and the author/committer say so.
            assert change.author in (ALICE.nid, MALLORY.nid)
            commit = world.repo[oid]
            assert commit.author.name == change.author
            assert cob.sshsig.verify(commit.gpg_signature[0], commit.gpg_signature[1]) == (
                cob.public_key_from_nid(change.author)
            )


@SLOW
@given(data=st.data())
@pytest.mark.slow
def test_a_load_of_fuzzed_tips_never_raises(world: World, data: st.DataObject) -> None:
    tips = {f"n{i}": data.draw(fuzzed_commit(world)) for i in range(data.draw(st.integers(1, 3)))}
    object_id = data.draw(st.sampled_from([world.job, *tips.values()]))
    ev = evaluate(world.repo, CODEC, object_id, tips)
    assert set(ev.accepted).isdisjoint(ev.rejected)
    for change in ev.changes:
        assert change.oid in ev.accepted


# -- index commits (cob.sigrefs) -------------------------------------------------------------
# What git's fetch delivers: objects a tree names under a blob or tree mode are there (git
# checks connectivity), names are not empty. Gitlinks are never followed: any oid. Modes git
# takes and libgit2 cannot parse (777777: fsck only warns, badFilemode) are delivered too.
ODD_MODE = st.sampled_from([b"777777", b"100664", b"644"])
NAME = st.binary(min_size=1, max_size=12).filter(lambda b: b"\0" not in b)


@st.composite
def fuzzed_index_tree(draw: st.DrawFn, world: World) -> str:
    """A tree shaped like an index (``<typename>/<xx>/<id>`` -> gitlink) with any part
    malformed: modes, names, fan-out prefixes, entry targets, order and duplicates."""
    present = st.sampled_from(
        [world.manifest, world.ops, world.empty_tree, world.job, world.garbage, world.good_tree]
    )
    any_oid = st.one_of(present, st.binary(min_size=20, max_size=20).map(bytes.hex))
    job = world.job.encode()
    leaf_name = st.one_of(
        st.just(job),
        st.binary(min_size=20, max_size=20).map(lambda b: b.hex().encode()),
        st.sampled_from([b"..", b"x", job.upper(), job[:39], job + b"0"]),
        NAME,
    )
    leaf = st.one_of(
        st.tuples(st.just(b"160000"), leaf_name, any_oid),
        st.tuples(st.one_of(st.sampled_from([b"100644", b"40000", b"120000"]), ODD_MODE), leaf_name, present),
    )
    fan = st.lists(leaf, max_size=3).map(lambda es: world.w(TREE, tree_bytes(sorted(es, key=lambda e: e[1]))))
    fan_name = st.one_of(st.just(job[:2]), st.sampled_from([b"00", b"zz", b"0", b"A1"]), NAME)
    fan_entry = st.one_of(
        st.tuples(st.just(b"40000"), fan_name, fan),
        st.tuples(st.just(b"160000"), fan_name, any_oid),
        st.tuples(st.one_of(st.just(b"100644"), ODD_MODE), fan_name, present),
    )
    top = st.lists(fan_entry, max_size=3).map(
        lambda es: world.w(TREE, tree_bytes(sorted(es, key=lambda e: e[1])))
    )
    type_name = st.one_of(st.just(TYPENAME.encode()), st.sampled_from([b"Bad", b"a/b", b"x" * 200]), NAME)
    root = st.lists(
        st.one_of(
            st.tuples(st.just(b"40000"), type_name, top),
            st.tuples(st.just(b"160000"), type_name, any_oid),
            st.tuples(st.one_of(st.just(b"100644"), ODD_MODE), type_name, present),
        ),
        max_size=3,
    )
    entries = draw(root)
    ordered = sorted(entries, key=lambda e: e[1]) if draw(OFTEN) else entries
    return world.w(TREE, tree_bytes(ordered))


def _commit_of(world: World, tree: str) -> str:
    ident = f"{ALICE.nid} <{ALICE.nid}> 1700000000 +0000"
    return world.w(COMMIT, f"tree {tree}\nauthor {ident}\ncommitter {ident}\n\nindex\n".encode())


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_index_trees_give_well_formed_entries_or_none(world: World, data: st.DataObject) -> None:
    """Reading a peer's index tree never raises, and yields only well-formed entries."""
    a = sigrefs.tree_of(world.repo, _commit_of(world, data.draw(fuzzed_index_tree(world))))
    b = sigrefs.tree_of(world.repo, _commit_of(world, data.draw(fuzzed_index_tree(world))))
    found = list(sigrefs.walk_entries(world.repo, a))
    for typename, object_id, tip in found:
        assert sigrefs.is_typename(typename) and cob.refs.is_oid(object_id) and cob.refs.is_oid(tip)
        assert sigrefs.lookup(world.repo, a, typename, object_id) == tip
    job_tip = sigrefs.lookup(world.repo, a, TYPENAME, world.job)
    assert job_tip is None or (TYPENAME, world.job, job_tip) in found
    changed = sigrefs.diff_all(world.repo, a, b)
    after = {(t, o): tip for t, o, tip in sigrefs.walk_entries(world.repo, b)}
    before = {(t, o): tip for t, o, tip in found}
    assert changed == {k: after.get(k) for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


@st.composite
def fuzzed_index_commit(draw: st.DrawFn, world: World) -> str:
    """An index commit in Alice's namespace with a chosen (or fuzzed) tree, parents, author and
    signature, as a hub may serve it."""
    honest_tree = st.builds(
        lambda tip: sigrefs._write_tree(
            world.repo, world.repo[world.index].tree, {(TYPENAME, world.job): tip}
        ),
        st.sampled_from([world.job, world.garbage, world.manifest]),
    )
    tree = str(
        draw(
            st.one_of(
                honest_tree, fuzzed_index_tree(world), st.sampled_from([world.empty_tree, world.good_tree])
            )
        )
    )
    parent_pool = [world.index, world.index_root, world.job, world.garbage, world.manifest, world.good_tree]
    first = draw(st.lists(st.sampled_from(parent_pool), max_size=1))
    more = draw(
        st.lists(
            st.one_of(st.sampled_from(parent_pool), st.binary(min_size=20, max_size=20).map(bytes.hex)),
            max_size=3,
        )
    )
    nid = draw(st.sampled_from([ALICE.nid] * 3 + [MALLORY.nid, ""]))
    ident = f"{nid} <{nid}> 1700000000 +0000".encode()
    payload = b"tree " + tree.encode() + b"\n"
    payload += b"".join(b"parent " + p.encode() + b"\n" for p in first + more)
    payload += b"author " + ident + b"\ncommitter " + ident + b"\n"
    if not draw(OFTEN):
        payload += b"encoding bogus\n"
    payload += b"\n" + sigrefs.MESSAGE.encode()
    sig_kind = draw(st.sampled_from(["alice"] * 4 + ["none", "mallory", "mutated"]))
    if sig_kind == "none":
        return world.w(COMMIT, payload)
    sig = {
        "alice": lambda: sshsig.sign(ALICE, payload),
        "mallory": lambda: sshsig.sign(MALLORY, payload),
        "mutated": lambda: _armor(draw(mutated_blob())),
    }[sig_kind]()
    head, _, message = payload.partition(b"\n\n")
    return world.w(COMMIT, head + b"\ngpgsig " + sig.encode().replace(b"\n", b"\n ") + b"\n\n" + message)


@SLOW
@given(data=st.data())
@pytest.mark.slow
def test_the_fetch_index_check_returns_a_refusal_or_none(world: World, data: st.DataObject) -> None:
    """``cob.sync.ref_problem`` decides whether a peer's index tip may be taken: a refusal, or
    None only for a commit signed by the namespace's node that fast-forwards the local index
    and reaches (as a parent) every tip it changes."""
    sync = pytest.importorskip("cob.sync")
    new = data.draw(fuzzed_index_commit(world))
    old = data.draw(st.sampled_from([None, world.index_root, world.index]))
    problem = sync.ref_problem(world.repo, index_ref(ALICE.nid), ALICE.nid, "", old, new)
    event(f"refused: {problem[0]}" if problem is not None else "taken")
    if problem is not None:
        kind, why = problem
        assert isinstance(kind, sync.RefusalKind) and why
        return
    commit = world.repo[new]
    assert isinstance(commit, pygit2.Commit)
    assert cob.sshsig.verify(*commit.gpg_signature) == ALICE.public_key
    assert commit.author.name == commit.committer.name == ALICE.nid
    chain = sigrefs.first_parents(world.repo, new, old, 1000)
    assert chain is not None
    named = {str(p) for c in chain for p in c.parent_ids[1:]}
    changed = sigrefs.diff_all(world.repo, sigrefs.tree_of(world.repo, old), sigrefs.tree_of(world.repo, new))
    assert all(tip is None or tip in named for tip in changed.values())


# -- the corpus ----------------------------------------------------------------------------
def _corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.glob("*") if p.suffix not in (".md", ".toml"))


@pytest.mark.parametrize("path", _corpus_files(), ids=lambda p: p.name)
def test_corpus_replays(world: World, path: Path) -> None:
    """Each input that once raised an untyped exception (or read a 100 MB blob) stays fixed.

    ``*.commit``: raw commit object bytes, read as a change and loaded as a tip.
    ``*.tree``: raw tree object bytes, wrapped in an otherwise valid signed commit.
    ``*.sshsig``: an armored signature. ``*.ops``: an ops blob. ``*.nid``: a node id.
    """
    data = path.read_bytes()
    kind = path.suffix
    if kind == ".commit":
        oid = world.w(COMMIT, data)
        for is_root in (False, True):
            with pytest.raises(InvalidChangeError):
                read_change(world.repo, CODEC, oid, is_root=is_root)
        ev = evaluate(world.repo, CODEC, world.job, {"x": oid, "y": world.job})
        assert oid in ev.rejected
        sync = pytest.importorskip("cob.sync")
        assert isinstance(sync.check_tip(world.repo, ALICE.nid, world.job, oid), str)
    elif kind == ".tree":
        tree = world.w(TREE, data)
        when = 1_700_000_000
        ident = f"{ALICE.nid} <{ALICE.nid}> {when} +0000".encode()
        payload = b"tree " + tree.encode() + b"\nparent " + world.job.encode() + b"\nauthor "
        payload += ident + b"\ncommitter " + ident + b"\n\nfuzz\n"
        body = sshsig.sign(ALICE, payload).encode().replace(b"\n", b"\n ")
        raw = payload.replace(b"\n\nfuzz", b"\ngpgsig " + body + b"\n\nfuzz")
        oid = world.w(COMMIT, raw)
        with pytest.raises(InvalidChangeError):
            read_change(world.repo, CODEC, oid, is_root=False)
    elif kind == ".sshsig":
        with pytest.raises(cob.SignatureError):
            sshsig.verify(data, b"message")
    elif kind == ".ops":
        with pytest.raises(InvalidChangeError):
            CODEC.decode_ops(data)
    elif kind == ".nid":
        with pytest.raises(cob.InvalidNidError):
            cob.public_key_from_nid(data.decode("utf-8", "surrogateescape"))
    else:
        pytest.fail(f"unknown corpus kind {path.name}")


@pytest.mark.parametrize(
    "path", [p for p in _corpus_files() if p.suffix in (".commit", ".tree")], ids=lambda p: p.name
)
def test_corpus_replays_as_index(world: World, path: Path) -> None:
    """The same inputs where a node's index takes them: ``*.commit`` as the tip of Alice's
    index ref (refused at fetch, on her index or as a new one), ``*.tree`` as an index's tree
    (read without raising, malformed entries left out)."""
    sync = pytest.importorskip("cob.sync")
    data = path.read_bytes()
    if path.suffix == ".commit":
        oid = world.w(COMMIT, data)
        for old in (None, world.index):
            problem = sync.ref_problem(world.repo, index_ref(ALICE.nid), ALICE.nid, "", old, oid)
            assert problem is not None and problem[0] is sync.RefusalKind.BAD_TIP
        return
    index_tree = sigrefs.tree_of(world.repo, _commit_of(world, world.w(TREE, data)))
    for typename, object_id, tip in sigrefs.walk_entries(world.repo, index_tree):
        assert sigrefs.is_typename(typename) and cob.refs.is_oid(object_id) and cob.refs.is_oid(tip)
    sigrefs.diff_all(world.repo, index_tree, world.repo[world.index].tree)
    assert sigrefs.lookup(world.repo, index_tree, TYPENAME, world.job) is None


def test_corpus_is_not_empty() -> None:
    assert len(_corpus_files()) >= 5


def test_msgspec_decode_error_types_are_what_codec_catches() -> None:
    # If msgspec ever grows a new error for bad input, the codec must still reject, not raise.
    for bad in (b"\xff", b"[1", b"{}", b"[{}]", b'[{"type":"run"}]', b"[]"):
        with pytest.raises(InvalidChangeError):
            CODEC.decode_ops(bad)
    assert issubclass(msgspec.ValidationError, msgspec.DecodeError)


@SLOW
@given(data=st.data())
def test_the_fetch_tip_check_returns_a_reason_or_none(world: World, data: st.DataObject) -> None:
    """``cob.sync.check_tip`` decides, at fetch time, whether a peer's tip may be taken."""
    sync = pytest.importorskip("cob.sync")
    oid = data.draw(fuzzed_commit(world))
    nid = data.draw(st.sampled_from([ALICE.nid, MALLORY.nid]))
    problem = sync.check_tip(world.repo, nid, world.job, oid)
    assert problem is None or isinstance(problem, str)
    if problem is None:
        commit = world.repo[oid]
        assert commit.author.name == nid
