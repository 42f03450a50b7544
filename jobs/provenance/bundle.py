"""An offline evidence bundle: a standard ``git bundle`` holding what the gate of one commit
needs, verified and re-evaluated in a scratch repository (docs/PROVENANCE.md).

Refs in the bundle (each checked on reading; any other ref refuses the bundle):

- ``refs/git-jobs-evidence/commit``: the commit (its tree holds ``.git-jobs.toml``);
- ``refs/git-jobs-evidence/policy``: the policy ref's commit, when there is a policy ref;
- ``refs/namespaces/<NID>/refs/sigrefs``: every node's index (it reaches every change of the
  node, so the commit's jobs, their finishes and the attestations embedded in them);
- ``refs/namespaces/<NID>/refs/logs/<YYYY-MM>``: the log buckets holding the logs of the
  commit's runs;
- ``refs/git-jobs-evidence/manifest``: a commit whose tree holds ``manifest.json``, listing
  every other ref with its object id, the commit and the policy ref's name. The header of the
  bundle must list exactly these refs: git checks the pack (its checksum and every object's
  hash), the manifest checks the header, signatures check the nodes' refs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pygit2

import cob
from cob.change import InvalidChangeError, signed_by
from cob.sigrefs import index_ref, is_index_commit, parse_index_ref

from .. import logs
from ..errors import JobsError
from ..text import safe

if TYPE_CHECKING:
    from ..gate import GateStatus
    from ..store import Jobs

PREFIX = "refs/git-jobs-evidence/"
COMMIT_REF = PREFIX + "commit"
POLICY_REF = PREFIX + "policy"
MANIFEST_REF = PREFIX + "manifest"
MANIFEST_FILE = "manifest.json"
FORMAT = "git-jobs evidence bundle 1"
MAX_BUNDLE_BYTES = 4 * 1024 * 1024 * 1024
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
GIT_TIMEOUT = 600.0
_HEX = re.compile(r"^[0-9a-f]{4,64}$")


class BundleError(JobsError):
    """A bundle that cannot be made, or one refused on reading (damaged, tampered with)."""


def _git(cwd: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", LC_ALL="C")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY"):
        env.pop(name, None)
    try:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=GIT_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BundleError(f"git {args[0]}: {e}") from None


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return safe(lines[0][:300]) if lines else "(no message)"


# -- making ----------------------------------------------------------------------------------
@dataclass(slots=True)
class Made:
    commit: str
    policy: str | None
    nodes: list[str] = field(default_factory=list)
    buckets: list[str] = field(default_factory=list)
    size: int = 0


def create(store: Jobs, rev: str, out: Path) -> Made:
    """Write the evidence bundle of ``rev`` to ``out``."""
    from ..policy import policy_ref

    repo = store.repo
    commit = store.resolve_commit(rev)
    source = policy_ref(repo)
    refs: dict[str, str] = {COMMIT_REF: commit}
    if source is not None:
        refs[POLICY_REF] = source.commit
    made = Made(commit, source.ref if source is not None else None)
    for ref in repo.references.iterator():
        nid = parse_index_ref(ref.name)
        if nid is not None and cob.is_nid(nid):
            refs[ref.name] = str(ref.target)
            made.nodes.append(nid)
    for job in store.find_by_commit(commit):
        for nid, runs in job.runs().items():
            for run_id in runs:
                name = logs.bucket_ref(nid, logs.bucket_of(run_id))
                got = repo.references.get(name)
                if got is not None:
                    refs[name] = str(got.target)
    made.buckets = sorted(n for n in refs if logs.family().parse(n) is not None)
    manifest = {
        "format": FORMAT,
        "commit": commit,
        "policy": {"ref": source.ref, "commit": source.commit} if source is not None else None,
        "refs": dict(sorted(refs.items())),
    }
    with tempfile.TemporaryDirectory(prefix="git-jobs-bundle-") as tmp:
        scratch = pygit2.init_repository(tmp, bare=True)
        alternates = Path(tmp) / "objects" / "info" / "alternates"
        alternates.write_text(_objects_dir(repo) + "\n")
        blob = scratch.create_blob(json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n")
        tree = scratch.TreeBuilder()
        tree.insert(MANIFEST_FILE, blob, pygit2.enums.FileMode.BLOB)
        ident = pygit2.Signature("git-jobs", "git-jobs", 0, 0)
        top = scratch.create_commit(None, ident, ident, f"{FORMAT}\n", tree.write(), [])
        for name, oid in {**refs, MANIFEST_REF: str(top)}.items():
            scratch.references.create(name, oid, force=True)
        names = sorted({*refs, MANIFEST_REF})
        res = _git(tmp, "bundle", "create", "-q", str(out.absolute()), *names)
        if res.returncode != 0:
            raise BundleError(f"git bundle create: {_first_line(res.stderr)}")
    made.size = out.stat().st_size
    return made


def _objects_dir(repo: pygit2.Repository) -> str:
    """The object directory of ``repo``, also from a linked worktree (its ``commondir``)."""
    git_dir = Path(repo.path)
    try:
        common = (git_dir / "commondir").read_text().strip()
        git_dir = git_dir / common if common else git_dir
    except OSError:
        pass
    return os.path.abspath(git_dir / "objects")


# -- reading ---------------------------------------------------------------------------------
@dataclass(slots=True)
class Opened:
    """A verified bundle, unbundled into a scratch repository (valid inside :func:`opened`)."""

    store: Jobs
    commit: str
    policy: str | None
    nodes: list[str]
    buckets: list[str]


def _refused(path: Path, why: str) -> BundleError:
    return BundleError(f"refused {safe(str(path))}: {why}")


@contextmanager
def opened(path: Path) -> Iterator[Opened]:
    """Unbundle ``path`` into a scratch repository and check it; :class:`BundleError` with one
    line when it is not an intact evidence bundle."""
    from ..store import Jobs

    try:
        size = path.stat().st_size
    except OSError as e:
        raise BundleError(f"cannot read {safe(str(path))}: {e.strerror or e}") from None
    if not path.is_file() or size > MAX_BUNDLE_BYTES:
        raise _refused(path, f"not a file of at most {MAX_BUNDLE_BYTES} bytes")
    with tempfile.TemporaryDirectory(prefix="git-jobs-verify-") as tmp:
        git_dir = os.path.join(tmp, "evidence.git")
        pygit2.init_repository(git_dir, bare=True)
        bundle = str(path.absolute())
        res = _git(git_dir, "bundle", "verify", "-q", bundle)
        if res.returncode != 0:
            raise _refused(path, f"not an intact git bundle ({_first_line(res.stderr)})")
        heads = _git(git_dir, "bundle", "list-heads", bundle)
        if heads.returncode != 0:
            raise _refused(path, f"not an intact git bundle ({_first_line(heads.stderr)})")
        listed = _heads(path, heads.stdout)
        if _header(path) != listed:  # git reads some changed bytes leniently: hex case, v3
            raise _refused(path, "its header is not the one git bundle create writes (it was changed)")
        got = _git(
            git_dir, "-c", "fetch.fsckObjects=true", "fetch", "-q", "--no-tags", bundle, "refs/*:refs/*"
        )
        if got.returncode != 0:
            raise _refused(path, f"its objects do not unpack intact ({_first_line(got.stderr)})")
        repo = pygit2.Repository(git_dir)
        manifest = _manifest(path, repo, listed)
        commit, policy = _check_refs(path, repo, listed, manifest)
        if policy is not None:  # read the policy where the maker read it, by the same name
            repo.references.create(policy, listed[POLICY_REF], force=True)
            repo.config["jobs.policyRef"] = policy
        nodes = sorted(n for n in (parse_index_ref(r) for r in listed) if n)
        buckets = sorted(r for r in listed if logs.family().parse(r) is not None)
        yield Opened(Jobs(cob.Store(repo, None)), commit, policy, nodes, buckets)


_SIGNATURE = b"# v2 git bundle\n"
_HEAD_LINE = re.compile(rb"^([0-9a-f]{40}|[0-9a-f]{64}) (refs/[!-~]+)\n$")


def _header(path: Path) -> dict[str, str]:
    """The refs of the bundle's header, read strictly as ``git bundle create`` writes it: the
    v2 signature line, one ``<lowercase hex id> <ref>`` line per ref (no prerequisites), an
    empty line, then the pack."""
    out: dict[str, str] = {}
    read = 0
    with open(path, "rb") as fh:
        if fh.readline(len(_SIGNATURE) + 1) != _SIGNATURE:
            raise _refused(path, "it does not start as a v2 git bundle")
        while True:
            line = fh.readline(4096)
            read += len(line)
            if line == b"\n":
                break
            found = _HEAD_LINE.match(line)
            if found is None or read > MAX_MANIFEST_BYTES:
                raise _refused(path, "its list of refs is malformed (or has prerequisites)")
            name = found.group(2).decode()
            if name in out:
                raise _refused(path, "its list of refs is malformed")
            out[name] = found.group(1).decode()
        if fh.read(4) != b"PACK":
            raise _refused(path, "its pack does not follow its list of refs")
    return out


def _heads(path: Path, text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        oid, _, name = line.partition(" ")
        if not cob.refs.is_oid(oid) or not name or name in out:
            raise _refused(path, "its list of refs is malformed")
        out[name] = oid
    return out


def _manifest(path: Path, repo: pygit2.Repository, listed: dict[str, str]) -> dict[str, Any]:
    oid = listed.get(MANIFEST_REF)
    try:
        top = repo[oid] if oid else None
        if not isinstance(top, pygit2.Commit) or top.parent_ids or top.raw_message != f"{FORMAT}\n".encode():
            raise KeyError
        entry = top.tree[MANIFEST_FILE]
        _, size = repo.odb.read_header(entry.id)
        if size > MAX_MANIFEST_BYTES:
            raise KeyError
        doc = json.loads(repo.odb.read(entry.id)[1])
    except (KeyError, ValueError, TypeError, RecursionError, pygit2.GitError):
        raise _refused(path, "it is not a git-jobs evidence bundle (no readable manifest)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("refs"), dict):
        raise _refused(path, "its manifest is not a git-jobs evidence bundle manifest")
    return cast(dict[str, Any], doc)


def _check_refs(
    path: Path, repo: pygit2.Repository, listed: dict[str, str], manifest: dict[str, Any]
) -> tuple[str, str | None]:
    """(the commit, the policy ref's name or None) once every ref is what the manifest lists and
    every node's ref is signed by that node and has its family's shape."""
    refs = {k: v for k, v in listed.items() if k != MANIFEST_REF}
    if refs != manifest["refs"]:
        raise _refused(path, "its refs are not the ones its manifest lists (the header was changed)")
    commit = manifest.get("commit")
    if refs.get(COMMIT_REF) != commit or not isinstance(repo.get(str(commit)), pygit2.Commit):
        raise _refused(path, "it names no commit, or another one than its manifest")
    policy = manifest.get("policy")
    policy_name: str | None = None
    if policy is not None:
        ok = isinstance(policy, dict) and isinstance(policy.get("ref"), str)
        policy_name = str(policy["ref"]) if ok else None
        if policy_name is None or policy.get("commit") != refs.get(POLICY_REF) or not _safe_ref(policy_name):
            raise _refused(path, "its policy ref is not the one its manifest lists")
    elif POLICY_REF in refs:
        raise _refused(path, "its policy ref is not the one its manifest lists")
    for name, oid in refs.items():
        if name in (COMMIT_REF, POLICY_REF):
            continue
        problem = _node_ref_problem(repo, name, oid)
        if problem:
            raise _refused(path, f"{safe(name)}: {problem}")
    return str(commit), policy_name


def _safe_ref(name: str) -> bool:
    return (
        name.startswith("refs/")
        and not name.startswith((PREFIX, cob.refs.NAMESPACES))
        and pygit2.reference_is_valid_name(name)
    )


def _node_ref_problem(repo: pygit2.Repository, name: str, oid: str) -> str | None:
    nid = parse_index_ref(name)
    family = logs.family().parse(name)
    if family is not None:
        nid = family[0]
        problem = logs.bucket_problem(repo, name, oid)
        if problem:
            return problem
    elif nid is None or name != index_ref(nid):
        return "not a ref an evidence bundle holds"
    elif not is_index_commit(repo, oid):
        return "not an index commit"
    if not cob.is_nid(nid):
        return "not a node's namespace"
    commit = repo.get(oid)
    if not isinstance(commit, pygit2.Commit):
        return "not a commit"
    try:
        signer = signed_by(commit)
    except InvalidChangeError as e:
        return str(e)
    return None if signer == nid else f"signed by {signer}, not by the node whose namespace it is in"


def pick(opened: Opened, rev: str | None) -> str:
    """The bundle's commit, after checking that ``rev`` (a hex prefix, or None) names it."""
    if rev is None:
        return opened.commit
    text = rev.strip().lower()
    if not _HEX.match(text) or not opened.commit.startswith(text):
        raise BundleError(f"this bundle holds the evidence of commit {opened.commit}, not of {safe(rev)!r}")
    return opened.commit


def status(opened: Opened, commit: str) -> GateStatus:
    """The gate of ``commit`` under the bundled policy (local trust is one person's: not in it)."""
    from ..policy import load_policy

    return opened.store.status(commit, policy=load_policy(opened.store.repo, local=False))
