"""Fetch and push cob namespaces over plain Git remotes, fast-forward only.

Git is the transport: any remote name or URL the git CLI understands (path, ``file://``,
``git://``, ``ssh://``, ``https://``). libgit2's transports are weaker than git's (ssh config,
credential helpers, protocol v2), so this module runs the git CLI for the wire and does every
ref decision itself, in-process:

* **Fetch** lists the remote's cob refs (``git ls-remote``), downloads only the tips this
  repository lacks into a private *staging* area (``refs/git-jobs-staging/<tag>/…``, so nothing
  real can be clobbered by git), then decides ref by ref: create or fast-forward, or leave the
  local ref as it is and report a :class:`Refusal` (remote behind, diverged, not a commit, tip not
  signed by the namespace's node). Local refs move only by compare-and-swap; nothing is ever
  force-updated. Staging refs are deleted afterwards.
* **Push** sends the node's own namespace only, never forced; git's own rejections
  (non-fast-forward, hooks) come back as refusals.

Checking the tip's signature at fetch time matters: if a forged tip were taken into a
namespace, that node's real next change would no longer be a fast-forward and its updates would
be refused forever. Everything *below* a valid tip is still only data: the evaluation verifies
every change and rejects (and reports) bad ones.

Every git subprocess runs with ``GIT_TERMINAL_PROMPT=0``, no stdin, in its own session (so ssh
has no terminal to prompt on) and with a timeout that kills its whole process group: a sync
never hangs on a prompt. A failure to talk to the remote is a :class:`TransportError` with one
clear line; nothing local has changed at that point except objects, and the next sync completes.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pygit2

from . import sshsig
from .change import MALFORMED_ERRORS
from .errors import SignatureError, TransportError
from .identity import nid_from_public_key
from .refs import NAMESPACES, compare_and_swap, is_oid, parse_ref

STAGING = "refs/git-jobs-staging/"
DEFAULT_TIMEOUT = 600.0  # seconds, per git subprocess
FETCH = "fetch"
PUSH = "push"


@dataclass(frozen=True, slots=True)
class RefUpdate:
    """A ref that moved: ``old`` is None when it was created."""

    ref: str
    old: str | None
    new: str

    def to_json(self) -> dict[str, object]:
        parsed = parse_ref(self.ref)
        nid, typename, object_id = parsed if parsed else (None, None, None)
        return {
            "ref": self.ref,
            "nid": nid,
            "type": typename,
            "object": object_id,
            "old": self.old,
            "new": self.new,
        }


@dataclass(frozen=True, slots=True)
class Refusal:
    """A ref left as it is, and why.

    ``side`` is ``"fetch"`` (a peer's ref we did not take) or ``"push"`` (a ref the remote did
    not take). ``kind`` is a stable short code: ``behind``, ``diverged``, ``not-a-commit``,
    ``bad-tip`` (tip not validly signed by the namespace's node), ``own-namespace`` (the remote
    has changes of ours we do not have and cannot verify), ``non-fast-forward``, ``rejected``
    (by the remote, e.g. a hook). ``local`` / ``remote`` are the two oids when known.
    """

    ref: str
    reason: str
    side: str
    kind: str
    local: str | None = None
    remote: str | None = None

    def __str__(self) -> str:
        return f"{self.side}: {self.ref}: {self.reason}"

    def to_json(self) -> dict[str, object]:
        return {
            "ref": self.ref,
            "side": self.side,
            "kind": self.kind,
            "reason": self.reason,
            "local": self.local,
            "remote": self.remote,
        }


@dataclass(slots=True)
class FetchResult:
    updated: list[RefUpdate] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    remote_refs: dict[str, str] = field(default_factory=dict)  # every cob ref the remote had
    skipped: int = 0  # remote refs outside the namespaces asked for (left untouched)


@dataclass(slots=True)
class PushResult:
    pushed: list[RefUpdate] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


# -- running git -----------------------------------------------------------------------------
def git_env() -> dict[str, str]:
    """The environment for git subprocesses: no prompts, parseable messages."""
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GCM_INTERACTIVE"] = "never"
    env["LC_ALL"] = "C"
    env["LANGUAGE"] = "C"
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_NAMESPACE", "GIT_INDEX_FILE"):
        env.pop(name, None)
    return env


def _first_error(stderr: str) -> str:
    """The most telling line of git's stderr, as one line.

    That is its first ``fatal:`` (else ``error:``) line, joined with a continuation line when it
    ends in a colon (``unable to connect to HOST:`` / ``errno=…``) and preceded by the line a
    transport printed before it (ssh's ``connect to host … refused``).
    """
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for prefix in ("fatal:", "error:"):
        for i, ln in enumerate(lines):
            if not ln.startswith(prefix):
                continue
            text = ln[len(prefix) :].strip()
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if text.endswith(":") and nxt and not nxt.startswith(("fatal:", "error:", "hint:")):
                text = f"{text} {nxt}"
            before = [b for b in lines[:i] if not b.startswith(("hint:", "warning:", "remote:"))]
            if before:
                text = f"{before[-1]} ({text})"
            return text
    return lines[-1] if lines else "git exited with an error"


def run_git(
    gitdir: str,
    args: Sequence[str],
    *,
    stdin: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run git on ``gitdir``; on timeout kill its whole process group (ssh, remote helpers)."""
    cmd = ["git", "--git-dir", gitdir, *args]
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=git_env(),
            start_new_session=True,
        )
    except OSError as e:
        raise TransportError(f"cannot run git: {e}") from None
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise TransportError(f"git {args[0]} timed out after {timeout:g} s") from None
    except BaseException:
        _kill_group(proc)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def _gitdir(repo: pygit2.Repository) -> str:
    return str(repo.path).rstrip("/")


def describe(remote: str) -> str:
    """A remote for messages, without any password in a URL."""
    return re.sub(r"://[^/@]*@", "://", remote)


# -- listing ---------------------------------------------------------------------------------
def ls_remote(
    repo: pygit2.Repository,
    remote: str,
    typenames: Collection[str] | None = None,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> dict[str, str]:
    """{ref: oid} of the remote's cob refs (of ``typenames``, or of every type)."""
    _check_remote(remote)
    res = run_git(_gitdir(repo), ["ls-remote", "--refs", remote, NAMESPACES + "*"], timeout=timeout)
    if res.returncode != 0:
        raise TransportError(f"cannot list {describe(remote)}: {_first_error(res.stderr)}")
    out: dict[str, str] = {}
    for line in res.stdout.splitlines():
        oid, _, name = line.partition("\t")
        parsed = parse_ref(name)
        if parsed is None or not is_oid(oid):
            continue
        if typenames is not None and parsed[1] not in typenames:
            continue
        out[name] = oid
    return out


def _check_remote(remote: str) -> None:
    if not remote or remote.startswith("-") or "\n" in remote or "\0" in remote:
        raise TransportError(f"not a remote name or URL: {remote!r}")


# -- fetch -----------------------------------------------------------------------------------
def check_tip(repo: pygit2.Repository, nid: str, object_id: str, oid: str) -> str | None:
    """Why ``oid`` may not be the tip of ``nid``'s ref for ``object_id``, or None.

    The tip must be a commit signed (SSHSIG) by the namespace's own key and authored as it —
    or the object's root itself (an unsigned content-addressed root is verified on load).
    A malformed commit (libgit2 cannot parse it, unknown ``encoding``) is a reason too.
    """
    try:
        return _check_tip(repo, nid, object_id, oid)
    except MALFORMED_ERRORS as e:
        return f"the tip is malformed ({type(e).__name__}: {e})"[:300]


def _check_tip(repo: pygit2.Repository, nid: str, object_id: str, oid: str) -> str | None:
    try:
        obj = repo[oid]
    except (KeyError, ValueError):
        return "the tip object is missing"
    if not isinstance(obj, pygit2.Commit):
        return f"the tip is not a commit but a {obj.type_str}"
    signature, payload = obj.gpg_signature
    if oid == object_id and not obj.parent_ids:
        return None  # the root: verified (signature or re-derivation) by every load
    if signature is None:
        return "the tip is not signed"
    try:
        signer = nid_from_public_key(sshsig.verify(signature, payload))
    except SignatureError as e:
        return f"the tip's signature is bad: {e}"
    if signer != nid:
        return f"the tip is signed by {signer}, not by the namespace's node"
    if obj.author.name != nid or obj.committer.name != nid:
        return (
            f"the tip is authored as {obj.author.name!r} and committed as {obj.committer.name!r},"
            " not by the namespace's node"
        )
    return None


def _is_ancestor(repo: pygit2.Repository, ancestor: str, of: str) -> bool:
    try:
        return bool(repo.descendant_of(pygit2.Oid(hex=of), pygit2.Oid(hex=ancestor)))
    except (pygit2.GitError, KeyError, ValueError):
        return False


def _local_target(repo: pygit2.Repository, name: str) -> str | None:
    try:
        ref = repo.references.get(name)
    except (pygit2.GitError, ValueError):
        return None
    if ref is None or ref.type != pygit2.enums.ReferenceType.DIRECT:
        return None
    return str(ref.target)


def _has_commit(repo: pygit2.Repository, oid: str) -> bool:
    try:
        return oid in repo
    except (ValueError, pygit2.GitError):
        return False


def fetch(
    repo: pygit2.Repository,
    remote: str,
    *,
    own_nid: str | None = None,
    typenames: Collection[str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    namespaces: Collection[str] | None = None,
) -> FetchResult:
    """Take the remote's cob refs as fast-forwards; report the refs left as they are.

    ``own_nid``'s namespace is special: a peer never rewrites it; a tip that is ours (signed by
    our key) and a fast-forward is taken, so a node reinstalled from a hub gets its history back.
    ``namespaces``: take only the refs of these NIDs (and our own); the others are neither
    downloaded nor applied, only counted in ``skipped`` (a follow policy, as Radicle's scopes).
    """
    gitdir = _gitdir(repo)
    remote_refs: dict[str, str] = {}
    staged: dict[str, str] = {}
    staging_names: list[str] = []
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    staging_prefix = f"{STAGING}{tag}/"
    _clean_stale_staging(repo, timeout)
    try:
        for attempt in range(3):
            remote_refs = ls_remote(repo, remote, typenames, timeout=timeout)
            followed = _followed(remote_refs, namespaces, own_nid)
            wanted = {
                name: oid
                for name, oid in followed.items()
                if _local_target(repo, name) != oid and not _has_commit(repo, oid)
            }
            if not wanted:
                break
            staging_names = [staging_prefix + n[len(NAMESPACES) :] for n in sorted(wanted)]
            lines = [f"+{n}:{s}\n" for n, s in zip(sorted(wanted), staging_names, strict=True)]
            res = run_git(
                gitdir,
                [
                    "fetch",
                    # Only our refspecs: --refmap= stops git from also moving refs through the
                    # remote's configured fetch refspecs (which may map refs/namespaces/*
                    # directly, bypassing every check below); no prune, tags or submodules.
                    "--refmap=",
                    "--no-prune",
                    "--no-tags",
                    "--no-recurse-submodules",
                    "--no-write-fetch-head",
                    "--no-auto-maintenance",
                    "--quiet",
                    "--stdin",
                    remote,
                ],
                stdin="".join(lines),
                timeout=timeout,
            )
            if res.returncode == 0:
                for name in wanted:
                    target = _local_target(repo, staging_prefix + name[len(NAMESPACES) :])
                    if target is not None:
                        staged[name] = target
                break
            message = _first_error(res.stderr)
            if "couldn't find remote ref" in message and attempt < 2:
                continue  # a ref vanished between listing and fetching: list again
            raise TransportError(f"cannot fetch from {describe(remote)}: {message}")
        followed = _followed(remote_refs, namespaces, own_nid)
        result = FetchResult(remote_refs=dict(remote_refs), skipped=len(remote_refs) - len(followed))
        for name in sorted(followed):
            _apply(repo, name, staged.get(name, followed[name]), own_nid, result)
        return result
    finally:
        _delete_staging(repo, staging_prefix, staging_names)


def _followed(
    refs: Mapping[str, str], namespaces: Collection[str] | None, own_nid: str | None
) -> dict[str, str]:
    """The refs of ``namespaces`` (and of ``own_nid``); every ref when ``namespaces`` is None."""
    if namespaces is None:
        return dict(refs)
    keep = {*namespaces, *([own_nid] if own_nid else [])}
    return {n: o for n, o in refs.items() if (p := parse_ref(n)) is not None and p[0] in keep}


def _apply(repo: pygit2.Repository, name: str, new: str, own_nid: str | None, result: FetchResult) -> None:
    parsed = parse_ref(name)
    assert parsed is not None
    nid, _, object_id = parsed
    for _ in range(20):  # only repeats when another process moved the ref meanwhile
        old = _local_target(repo, name)
        if old == new:
            return
        if not _has_commit(repo, new):
            result.refused.append(
                Refusal(name, "the remote's tip was not received", FETCH, "missing", old, new)
            )
            return
        if old is not None and _is_ancestor(repo, new, old):
            if nid != own_nid:  # our own namespace being behind is what push is for
                result.refused.append(
                    Refusal(
                        name,
                        "the remote is behind this repository (would move the ref backwards)",
                        FETCH,
                        "behind",
                        old,
                        new,
                    )
                )
            return
        problem = check_tip(repo, nid, object_id, new)
        if problem is not None:
            kind = "not-a-commit" if "not a commit" in problem else "bad-tip"
            result.refused.append(Refusal(name, problem, FETCH, kind, old, new))
            return
        if old is not None and not _is_ancestor(repo, old, new):
            kind, why = "diverged", "the remote's history diverged (would rewrite history)"
            if nid == own_nid:
                kind, why = "own-namespace", "the remote's copy of this node's ref diverged"
            result.refused.append(Refusal(name, why, FETCH, kind, old, new))
            return
        if compare_and_swap(repo, name, new, old, "git-jobs: sync fetch"):
            result.updated.append(RefUpdate(name, old, new))
            return
    result.refused.append(Refusal(name, "the local ref kept moving", FETCH, "busy", None, new))


def _delete_staging(repo: pygit2.Repository, prefix: str, staged_names: Iterable[str]) -> None:
    for name in staged_names:
        try:
            if repo.references.get(name) is not None:
                repo.references.delete(name)
        except (KeyError, pygit2.GitError, ValueError):
            pass
    # empty directories left behind by loose refs
    root = os.path.join(_gitdir(repo), prefix.rstrip("/"))
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.join(_gitdir(repo), STAGING.rstrip("/")))


def _clean_stale_staging(repo: pygit2.Repository, timeout: float | None) -> None:
    """Delete staging refs left by a sync whose process died (kill -9, power loss)."""
    gitdir = _gitdir(repo)
    packed = os.path.join(gitdir, "packed-refs")
    loose = os.path.join(gitdir, STAGING.rstrip("/"))
    if not os.path.isdir(loose):
        try:
            with open(packed, "rb") as f:
                if STAGING.encode() not in f.read():
                    return
        except FileNotFoundError:
            return
    res = run_git(gitdir, ["for-each-ref", "--format=%(refname)", STAGING], timeout=timeout)
    stale = []
    for name in res.stdout.split():
        tag = name[len(STAGING) :].split("/", 1)[0]
        pid_text = tag.split("-", 1)[0]
        if pid_text.isdigit() and _alive(int(pid_text)):
            continue
        stale.append(name)
    if stale:
        commands = "".join(f"delete {name}\n" for name in stale)
        run_git(gitdir, ["update-ref", "--stdin"], stdin=commands, timeout=timeout)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- push ------------------------------------------------------------------------------------
def own_refs(repo: pygit2.Repository, nid: str, typenames: Collection[str]) -> dict[str, str]:
    """{ref: oid} of this node's refs of ``typenames``."""
    from .refs import RefReader

    reader = RefReader(repo)
    out: dict[str, str] = {}
    for typename in typenames:
        for ref in reader.refs_of_type(typename):
            if ref.nid == nid:
                out[ref.name] = ref.target
    return out


def push_refspecs(nid: str, typenames: Collection[str] | None) -> list[str]:
    """The non-forced refspecs that push ``nid``'s namespace (per type, or every cob)."""
    if typenames is None:
        prefix = f"{NAMESPACES}{nid}/refs/cobs/*"
        return [f"{prefix}:{prefix}"]
    return [f"{NAMESPACES}{nid}/refs/cobs/{t}/*:{NAMESPACES}{nid}/refs/cobs/{t}/*" for t in sorted(typenames)]


_PORCELAIN = re.compile(r"^(?P<flag>[ +\-*=!])\t(?P<src>[^:\t]*):(?P<dst>[^\t]+)\t(?P<summary>.*)$")


def push(
    repo: pygit2.Repository,
    remote: str,
    nid: str,
    *,
    typenames: Collection[str],
    remote_refs: Mapping[str, str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> PushResult:
    """Push ``nid``'s refs of ``typenames``, never forced; report what the remote refused.

    ``remote_refs`` (the remote's cob refs, as listed by a fetch just before) lets a push with
    nothing new skip the connection entirely.
    """
    _check_remote(remote)
    result = PushResult()
    mine = own_refs(repo, nid, typenames)
    if not mine:
        return result
    if remote_refs is not None and all(remote_refs.get(n) == o for n, o in mine.items()):
        return result
    res = run_git(
        _gitdir(repo),
        ["push", "--porcelain", "--no-verify", remote, *push_refspecs(nid, typenames)],
        timeout=timeout,
    )
    seen = False
    for line in res.stdout.splitlines():
        m = _PORCELAIN.match(line)
        if m is None:
            continue
        seen = True
        flag, src, dst, summary = m["flag"], m["src"], m["dst"], m["summary"]
        local = mine.get(src) or _local_target(repo, src)
        old = remote_refs.get(dst) if remote_refs is not None else None
        if flag == "=":
            continue
        if flag == "!":
            why = re.sub(r"^\[[^\]]*\]\s*", "", summary).strip("() ") or summary
            kind = "non-fast-forward" if ("fast-forward" in why or "fetch first" in why) else "rejected"
            reason = f"the remote refused it ({why})"
            if kind == "non-fast-forward":
                reason += "; the remote has changes this node lacks: fetch, then sync again"
            result.refused.append(Refusal(dst, reason, PUSH, kind, local, old))
            continue
        if local is None:
            continue
        if flag == "*":
            result.pushed.append(RefUpdate(dst, None, local))
        else:
            if old is None and ".." in summary:
                old = _expand(repo, summary.split("..", 1)[0].strip())
            result.pushed.append(RefUpdate(dst, old, local))
    if res.returncode != 0 and not (seen and result.refused):
        # git exits 1 when it refused refs (reported above); anything else is the transport.
        raise TransportError(f"cannot push to {describe(remote)}: {_first_error(res.stderr)}")
    return result


def _expand(repo: pygit2.Repository, short: str) -> str | None:
    if is_oid(short):
        return short
    try:
        return str(repo.revparse_single(short).id)
    except (KeyError, ValueError, pygit2.GitError):
        return None
