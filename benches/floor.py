"""The physical floor: the raw Git and crypto work our operations cannot avoid, with no `cob` or
`jobs` code in the way. Each bench case times the library against one of these in the same run.

- :class:`FloorWriter` writes one change the way any implementation must: two blobs, a tree, a
  commit buffer, an Ed25519 SSHSIG over it, the signed commit, and a compare-and-swap ref move.
  With ``index=True`` it also does what the layout of one index ref per node adds to every
  write (docs/FORMAT.md 7): the three index trees on the path to the entry, a second signed
  commit (parents: the previous index commit and the new change), and the compare-and-swap
  moves that index ref instead of a per-object ref.
- :func:`floor_load` reads a history the way any verifying reader must: walk every commit from
  the tips, read its ops blob, check its SSHSIG, decode its JSON.

Only pygit2, cryptography, hashlib and msgspec are imported, so nothing of ours is measured.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterable

import msgspec
import pygit2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MANIFEST = b'{"type":"dev.gitjobs.job","version":1}'
BLOB = pygit2.enums.FileMode.BLOB


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _sshsig(key: Ed25519PrivateKey, public: bytes, message: bytes) -> str:
    digest = hashlib.sha512(message).digest()
    signed = b"SSHSIG" + _string(b"git") + _string(b"") + _string(b"sha512") + _string(digest)
    raw = key.sign(signed)
    blob = (
        b"SSHSIG"
        + struct.pack(">I", 1)
        + _string(_string(b"ssh-ed25519") + _string(public))
        + _string(b"git")
        + _string(b"")
        + _string(b"sha512")
        + _string(_string(b"ssh-ed25519") + _string(raw))
    )
    b64 = base64.b64encode(blob).decode()
    return "\n".join(
        [
            "-----BEGIN SSH SIGNATURE-----",
            *(b64[i : i + 70] for i in range(0, len(b64), 70)),
            "-----END SSH SIGNATURE-----",
        ]
    )


class FloorWriter:
    """Writes signed change commits and moves one ref with compare-and-swap."""

    def __init__(
        self, repo: pygit2.Repository, key: Ed25519PrivateKey, name: str, *, index: bool = False
    ) -> None:
        self.repo = repo
        self.key = key
        self.public = key.public_key().public_bytes_raw()
        self.ident_name = name
        self.index = index
        self.index_tip: str | None = None
        self.index_trees: tuple[pygit2.Oid, pygit2.Oid, pygit2.Oid] | None = None  # fan, type, root

    def _signed(self, tree: pygit2.Oid, parents: list[str], message: str, when: int) -> str:
        ident = pygit2.Signature(self.ident_name, self.ident_name, when, 0)
        oids = [pygit2.Oid(hex=p) for p in parents]
        buffer = self.repo.create_commit_string(ident, ident, message, tree, oids)
        signature = _sshsig(self.key, self.public, buffer.encode())
        return str(self.repo.create_commit_with_signature(buffer, signature))

    def _index(self, object_id: str, tip: str, when: int) -> None:
        """One entry of the node's index moved to ``tip``: rewrite the path to it, sign, CAS."""
        repo = self.repo
        old = self.index_trees
        fan = repo.TreeBuilder(repo[old[0]]) if old else repo.TreeBuilder()
        fan.insert(object_id, pygit2.Oid(hex=tip), pygit2.enums.FileMode.COMMIT)
        fan_oid = fan.write()
        top = repo.TreeBuilder(repo[old[1]]) if old else repo.TreeBuilder()
        top.insert(object_id[:2], fan_oid, pygit2.enums.FileMode.TREE)
        top_oid = top.write()
        root = repo.TreeBuilder(repo[old[2]]) if old else repo.TreeBuilder()
        root.insert("dev.gitjobs.job", top_oid, pygit2.enums.FileMode.TREE)
        root_oid = root.write()
        parents = ([self.index_tip] if self.index_tip else []) + [tip]
        new = self._signed(root_oid, parents, "index\n", when)
        self._move(f"refs/floor-index/{self.ident_name}", new, self.index_tip)
        self.index_tip, self.index_trees = new, (fan_oid, top_oid, root_oid)

    def _move(self, ref: str, new: str, old: str | None) -> None:
        if old is None:
            self.repo.create_reference_direct(ref, pygit2.Oid(hex=new), False)
        else:
            r = self.repo.references[ref]
            if str(r.target) != old:
                raise RuntimeError("lost race")
            r.set_target(new)

    def write(self, ops_json: bytes, parents: list[str], ref: str, old: str | None, when: int) -> str:
        repo = self.repo
        tb = repo.TreeBuilder()
        tb.insert("manifest", repo.create_blob(MANIFEST), BLOB)
        tb.insert("ops", repo.create_blob(ops_json), BLOB)
        tree = tb.write()
        ident = pygit2.Signature(self.ident_name, self.ident_name, when, 0)
        buffer = repo.create_commit_string(ident, ident, "op\n", tree, [pygit2.Oid(hex=p) for p in parents])
        oid = str(repo.create_commit_with_signature(buffer, _sshsig(self.key, self.public, buffer.encode())))
        if self.index:
            self._index(ref.rsplit("/", 1)[-1].rjust(40, "0")[-40:], oid, when)
        else:
            self._move(ref, oid, old)
        return oid


def _verify(armored: str, payload: bytes) -> None:
    body = "".join(armored.strip().splitlines()[1:-1])
    blob = base64.b64decode(body)
    # Fixed offsets of an Ed25519 SSHSIG: magic, version, key (51 bytes), ns, reserved, hash, sig.
    pos = 6 + 4
    klen = struct.unpack(">I", blob[pos : pos + 4])[0]
    key = blob[pos + 4 + klen - 32 : pos + 4 + klen]
    pos += 4 + klen
    for _ in range(3):
        pos += 4 + struct.unpack(">I", blob[pos : pos + 4])[0]
    raw = blob[-64:]
    digest = hashlib.sha512(payload).digest()
    signed = b"SSHSIG" + _string(b"git") + _string(b"") + _string(b"sha512") + _string(digest)
    Ed25519PublicKey.from_public_bytes(key).verify(raw, signed)


def floor_load(repo: pygit2.Repository, tips: Iterable[str]) -> int:
    """Walk, verify and decode every commit reachable from ``tips``; returns how many."""
    walker = repo.walk(None, pygit2.enums.SortMode.NONE)
    for t in set(tips):
        walker.push(pygit2.Oid(hex=t))
    n = 0
    for commit in walker:
        msgspec.json.decode(commit.tree["ops"].data)
        signature, payload = commit.gpg_signature
        if signature is not None:
            _verify(signature.decode(), payload)
        n += 1
    return n
