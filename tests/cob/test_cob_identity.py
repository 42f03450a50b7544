"""Identity: node ids, OpenSSH key files, the key resolution order, and SSHSIG interop.

A node's identity is one `ssh-keygen -t ed25519` key; its NID is Radicle's did:key form. These
tests hold the library to OpenSSH itself: keys written by ssh-keygen load, keys we write are
read by ssh-keygen, and signatures verify both ways with `ssh-keygen -Y`.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from pathlib import Path

import pygit2
import pytest

import cob
import jobs.identity
from cob import sshsig
from cob.identity import b58encode
from tests.conftest import git

# The did:key test vector (W3C did:key spec, Ed25519 example).
SPEC_NID = "z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"


def keygen(path: Path, *args: str) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-f", str(path), "-C", "test", *args],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return path


def ed25519_key(path: Path) -> Path:
    return keygen(path, "-t", "ed25519", "-N", "")


def pub_key_bytes(pub_line: str) -> bytes:
    """The raw 32-byte key of an ``ssh-ed25519 AAAA…`` line, parsed independently of cob."""
    wire = base64.b64decode(pub_line.split()[1])
    assert wire[:4] == b"\0\0\0\x0bssh-ed25519"[:4]
    assert wire[4:15] == b"ssh-ed25519"
    assert wire[15:19] == b"\0\0\0\x20"
    return wire[19:51]


# -- NIDs -----------------------------------------------------------------------------------


def test_nid_round_trip(signer: cob.Signer) -> None:
    nid = signer.nid
    assert nid.startswith("z6Mk") and len(nid) == 48
    assert cob.public_key_from_nid(nid) == signer.public_key
    assert cob.public_key_from_nid("did:key:" + nid) == signer.public_key
    assert cob.normalize_nid("did:key:" + nid) == nid
    assert cob.nid_from_public_key(signer.public_key) == nid
    assert cob.is_nid(nid) and not cob.is_nid("did:key:" + nid)


def test_nid_spec_vector() -> None:
    key = cob.public_key_from_nid("did:key:" + SPEC_NID)
    assert len(key) == 32
    assert cob.nid_from_public_key(key) == SPEC_NID
    # independently: z + base58btc(0xed 0x01 || key)
    assert "z" + b58encode(b"\xed\x01" + key) == SPEC_NID


def test_nid_matches_ssh_keygen_public_key(tmp_path: Path) -> None:
    key = ed25519_key(tmp_path / "id")
    signer = cob.Signer.from_file(key)
    pub_line = (tmp_path / "id.pub").read_text()
    assert signer.public_key == pub_key_bytes(pub_line)
    assert cob.ssh_public_key_line(signer.nid) == " ".join(pub_line.split()[:2])


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "z",
        "z6Mk",
        SPEC_NID[:-1],  # one character short: wrong length
        SPEC_NID + "1",  # one too many
        SPEC_NID[1:],  # no multibase 'z'
        "did:key:",
        "did:key:did:key:" + SPEC_NID,
        "z0OIl" + SPEC_NID[5:],  # not base58
        "zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",  # secp256k1 did:key, not Ed25519
        "z" + b58encode(b"\xed\x01" + b"\x01" * 33),  # 33-byte key
        "z" + "2" * 200,  # absurdly long
        " " + SPEC_NID,
    ],
)
def test_bad_nids(bad: str) -> None:
    with pytest.raises(cob.InvalidNidError):
        cob.public_key_from_nid(bad)
    with pytest.raises(cob.InvalidNidError):
        cob.normalize_nid(bad)
    with pytest.raises(cob.InvalidNidError):
        cob.allowed_signers_line(bad)
    assert not cob.is_nid(bad)


@pytest.mark.parametrize("bad", [None, b"z6Mk", 42])
def test_non_string_nid(bad: object) -> None:
    with pytest.raises(cob.InvalidNidError):
        cob.public_key_from_nid(bad)  # type: ignore[arg-type]


def test_allowed_signers_line(signer: cob.Signer) -> None:
    line = cob.allowed_signers_line("did:key:" + signer.nid)
    assert line == f'{signer.nid} namespaces="git" {cob.ssh_public_key_line(signer.nid)}'
    assert signer.allowed_signers_line == line


# -- key files ------------------------------------------------------------------------------


def test_save_mode_0600_and_round_trip(tmp_path: Path, signer: cob.Signer) -> None:
    path = signer.save(tmp_path / "deep" / "dir" / "key")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = cob.Signer.from_file(path)
    assert again.nid == signer.nid and again.public_key == signer.public_key
    assert again.path == path
    pub = Path(str(path) + ".pub").read_text()
    assert pub.split()[:2] == cob.ssh_public_key_line(signer.nid).split()
    # OpenSSH reads what we wrote
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(path)], check=True, capture_output=True, text=True
    ).stdout
    assert derived.split()[:2] == pub.split()[:2]


def test_save_never_replaces_another_key_unless_asked(tmp_path: Path, signer: cob.Signer) -> None:
    path = tmp_path / "key"
    other = cob.Signer.generate()
    other.save(path)
    with pytest.raises(cob.KeyFileError, match="already exists"):
        signer.save(path)
    assert cob.Signer.from_file(path).nid == other.nid  # untouched
    other.save(path)  # the same key again: a no-op
    path.chmod(0o644)
    signer.save(path, overwrite=True)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert cob.Signer.from_file(path).nid == signer.nid


def test_save_to_unwritable_place(tmp_path: Path, signer: cob.Signer) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(cob.KeyFileError, match=str(blocker)):
        signer.save(blocker / "key")


def test_ssh_keygen_ed25519_key_loads(tmp_path: Path) -> None:
    key = ed25519_key(tmp_path / "id_ed25519")
    signer = cob.Signer.from_file(str(key))
    assert cob.is_nid(signer.nid)
    assert signer.path == key


def test_missing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    with pytest.raises(cob.KeyFileError, match=str(path)):
        cob.Signer.from_file(path)


def test_directory_as_key_file(tmp_path: Path) -> None:
    with pytest.raises(cob.KeyFileError, match=str(tmp_path)):
        cob.Signer.from_file(tmp_path)


@pytest.mark.parametrize("kind", [["-t", "rsa", "-b", "2048"], ["-t", "ecdsa"]])
def test_non_ed25519_key_file(tmp_path: Path, kind: list[str]) -> None:
    key = keygen(tmp_path / "other", *kind, "-N", "")
    with pytest.raises(cob.KeyFileError, match=str(key)) as e:
        cob.Signer.from_file(key)
    assert "ed25519" in str(e.value)


def test_encrypted_key_file(tmp_path: Path) -> None:
    key = keygen(tmp_path / "locked", "-t", "ed25519", "-N", "correct horse")
    with pytest.raises(cob.KeyFileError, match=str(key)) as e:
        cob.Signer.from_file(key)
    assert "encrypted" in str(e.value)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"garbage\n",
        os.urandom(300),
        b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    ],
)
def test_garbage_key_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage"
    path.write_bytes(content)
    with pytest.raises(cob.KeyFileError, match=str(path)):
        cob.Signer.from_file(path)


def test_public_key_given_as_private(tmp_path: Path) -> None:
    ed25519_key(tmp_path / "id")
    with pytest.raises(cob.KeyFileError, match=r"id\.pub"):
        cob.Signer.from_file(tmp_path / "id.pub")


# -- resolution order -----------------------------------------------------------------------


class Ladder:
    """One distinct key per rung of the resolution order, all configured at once."""

    def __init__(self, tmp: Path, repo: pygit2.Repository, monkeypatch: pytest.MonkeyPatch):
        self.repo = repo
        self.monkeypatch = monkeypatch
        self.argument = cob.Signer.generate().save(tmp / "arg")
        self.env = cob.Signer.generate().save(tmp / "env")
        self.jobs_key = cob.Signer.generate().save(tmp / "jobs_key")
        self.signing = ed25519_key(tmp / "signing")
        self.default = cob.Signer.generate().save(jobs.identity.default_key_path())
        monkeypatch.setenv("GIT_JOBS_KEY", str(self.env))
        repo.config["jobs.key"] = str(self.jobs_key)
        repo.config["user.signingKey"] = str(self.signing)

    @staticmethod
    def nid(path: Path) -> str:
        return cob.Signer.from_file(path).nid


def test_resolution_order_each_step(
    tmp_path: Path, repo: pygit2.Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    ladder = Ladder(tmp_path, repo, monkeypatch)

    def loaded() -> tuple[str, str]:
        s = jobs.identity.load_signer(repo)
        assert s.source is not None
        return s.nid, s.source.origin

    # 1. an explicit argument beats everything
    s = jobs.identity.load_signer(repo, ladder.argument)
    assert s.nid == ladder.nid(ladder.argument) and s.source and s.source.origin == "argument"
    # 2. GIT_JOBS_KEY
    assert loaded() == (ladder.nid(ladder.env), "GIT_JOBS_KEY")
    monkeypatch.delenv("GIT_JOBS_KEY")
    # 3. git config jobs.key
    assert loaded() == (ladder.nid(ladder.jobs_key), "jobs.key")
    del repo.config["jobs.key"]
    # 4. git config user.signingKey, an ed25519 key file
    assert loaded() == (ladder.nid(ladder.signing), "user.signingKey")
    # ... also when it names the .pub beside the private key (what git users often set)
    repo.config["user.signingKey"] = str(ladder.signing) + ".pub"
    assert loaded() == (ladder.nid(ladder.signing), "user.signingKey")
    del repo.config["user.signingKey"]
    # 5. ~/.config/git-jobs/key
    assert loaded() == (ladder.nid(ladder.default), "default")
    assert ladder.default == Path(os.environ["HOME"]) / ".config" / "git-jobs" / "key"
    ladder.default.unlink()
    with pytest.raises(cob.NoKeyError):
        jobs.identity.load_signer(repo)


def test_resolution_reads_repo_path_and_global_config(
    tmp_path: Path, repo: pygit2.Repository, isolated_home: Path
) -> None:
    key = cob.Signer.generate().save(tmp_path / "k")
    git(isolated_home, "config", "--global", "jobs.key", str(key))
    assert jobs.identity.load_signer().nid == cob.Signer.from_file(key).nid  # no repo: global config
    assert jobs.identity.load_signer(repo.workdir).nid == cob.Signer.from_file(key).nid
    local = cob.Signer.generate().save(tmp_path / "local")
    git(repo.workdir, "config", "jobs.key", str(local))
    assert jobs.identity.load_signer(repo.workdir).nid == cob.Signer.from_file(local).nid


@pytest.mark.parametrize("kind", ["rsa", "inline", "missing"])
def test_signing_key_skipped_unless_ed25519_file(tmp_path: Path, repo: pygit2.Repository, kind: str) -> None:
    default = cob.Signer.generate().save(jobs.identity.default_key_path())
    if kind == "rsa":
        value = str(keygen(tmp_path / "rsa", "-t", "rsa", "-b", "2048", "-N", ""))
    elif kind == "inline":
        value = "key::" + cob.ssh_public_key_line(cob.Signer.generate().nid)
    else:
        value = str(tmp_path / "absent")
    repo.config["user.signingKey"] = value
    s = jobs.identity.load_signer(repo)
    assert s.nid == cob.Signer.from_file(default).nid
    assert s.source is not None and s.source.origin == "default"


@pytest.mark.parametrize("how", ["argument", "env", "jobs.key"])
def test_explicit_missing_key_is_an_error_naming_it(
    tmp_path: Path, repo: pygit2.Repository, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    cob.Signer.generate().save(jobs.identity.default_key_path())  # must NOT be fallen back to
    missing = tmp_path / "missing-key"
    if how == "env":
        monkeypatch.setenv("GIT_JOBS_KEY", str(missing))
    elif how == "jobs.key":
        repo.config["jobs.key"] = str(missing)
    with pytest.raises(cob.KeyFileError, match=str(missing)):
        jobs.identity.load_signer(repo, missing if how == "argument" else None)


def test_no_key_at_all(repo: pygit2.Repository) -> None:
    with pytest.raises(cob.NoKeyError) as e:
        jobs.identity.load_signer(repo)
    assert "GIT_JOBS_KEY" in str(e.value)
    assert isinstance(e.value, cob.KeyFileError) and isinstance(e.value, cob.CobError)


# -- SSHSIG interop ---------------------------------------------------------------------------


def test_our_signature_verifies_with_ssh_keygen(tmp_path: Path, signer: cob.Signer) -> None:
    message = b"tree 123\nauthor someone\n\nhello\n"
    (tmp_path / "msg").write_bytes(message)
    (tmp_path / "msg.sig").write_text(sshsig.sign(signer, message) + "\n")
    (tmp_path / "allowed").write_text(signer.allowed_signers_line + "\n")
    args = [
        "ssh-keygen",
        "-Y",
        "verify",
        "-f",
        str(tmp_path / "allowed"),
        "-I",
        signer.nid,
        "-n",
        "git",
        "-s",
        str(tmp_path / "msg.sig"),
    ]
    ok = subprocess.run(args, input=message, capture_output=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(args, input=message + b"x", capture_output=True, timeout=60)
    assert bad.returncode != 0


def test_ssh_keygen_signature_verifies_with_us_and_is_byte_identical(
    tmp_path: Path, signer: cob.Signer
) -> None:
    key = signer.save(tmp_path / "key")
    message = b"some commit buffer\n"
    (tmp_path / "msg").write_bytes(message)
    subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", "git", str(tmp_path / "msg")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    written = (tmp_path / "msg.sig").read_text()
    # git stores ssh-keygen's output in the gpgsig header without its final newline
    theirs = written.removesuffix("\n")
    assert sshsig.verify(theirs, message) == signer.public_key
    # Ed25519 is deterministic: our armored signature is byte-for-byte OpenSSH's
    assert sshsig.sign(signer, message) + "\n" == written
    with pytest.raises(cob.SignatureError):
        sshsig.verify(theirs, message + b"x")
    with pytest.raises(cob.SignatureError, match="namespace"):
        sshsig.verify(theirs, message, namespace=b"file")


def test_ssh_keygen_other_namespace_rejected(tmp_path: Path, signer: cob.Signer) -> None:
    key = signer.save(tmp_path / "key")
    (tmp_path / "msg").write_bytes(b"m")
    subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", "file", str(tmp_path / "msg")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    with pytest.raises(cob.SignatureError, match="namespace"):
        sshsig.verify((tmp_path / "msg.sig").read_text().removesuffix("\n"), b"m")


def test_ssh_keygen_rsa_signature_rejected(tmp_path: Path) -> None:
    key = keygen(tmp_path / "rsa", "-t", "rsa", "-b", "2048", "-N", "")
    (tmp_path / "msg").write_bytes(b"m")
    subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", "git", str(tmp_path / "msg")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    with pytest.raises(cob.SignatureError, match="ed25519"):
        sshsig.verify((tmp_path / "msg.sig").read_text().removesuffix("\n"), b"m")


@pytest.mark.parametrize(
    "armored",
    [
        "",
        "garbage",
        "-----BEGIN SSH SIGNATURE-----\n!!!\n-----END SSH SIGNATURE-----",
        "-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----",
        "x" * 10_000,
    ],
)
def test_malformed_signatures(armored: str) -> None:
    with pytest.raises(cob.SignatureError):
        sshsig.verify(armored, b"m")
