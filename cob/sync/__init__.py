"""Fetch and push cob namespaces over plain Git remotes, fast-forward only.

Git is the transport: any remote name or URL the git CLI understands (path, ``file://``,
``git://``, ``ssh://``, ``https://``). libgit2's transports are weaker than git's (ssh config,
credential helpers, protocol v2), so this module runs the git CLI for the wire and does every
ref decision itself, in-process:

* **Fetch** lists the remote's index refs, one per node (``git ls-remote``; :mod:`cob.sigrefs`),
  refuses at once the refs that cannot be taken whatever they point at (a namespace that is
  not a NID, a tip already here that its node did not sign, new refs or namespaces beyond
  :class:`Limits`), downloads the tips this repository lacks into a *quarantine* (a scratch
  repository borrowing this one's objects), then decides ref by ref: create or fast-forward,
  or leave the local ref as it is and report a :class:`Refusal` (remote behind, diverged, not a
  commit, tip not signed by the namespace's node, an index that names what it does not reach,
  moves an entry back, or is malformed). These checks read only what is new. Only the objects
  of accepted tips leave the quarantine. Local refs move only by compare-and-swap; nothing is
  ever force-updated.
* **A hub on a local path** is read in place (:mod:`cob.sync.localhub`): listed without
  ``ls-remote``, its objects borrowed by the quarantine instead of fetched, when nothing could
  make git's answer differ; otherwise git runs as for any remote.
* **Push** sends the node's own namespace only (its index ref), never forced; git's own
  rejections (non-fast-forward, hooks) come back as refusals.
* **Ref families** (:mod:`cob.family`, e.g. run-log buckets) ride along in the same listing,
  fetch and push, under the same rules; their pruned leaves are not fetched, and our own are
  deleted on the remote — with our per-object refs of the layout before the index, once
  migrated, the only deletions a push ever makes.

Checking the tip's signature at fetch time matters: if a forged tip were taken into a
namespace, that node's real next change would no longer be a fast-forward and its updates would
be refused forever. Everything *below* a valid tip is still only data: the evaluation verifies
every change and rejects (and reports) bad ones.

Running git (timeouts, idle stop, process groups, environment, stderr) is :mod:`cob.gitrun`;
its names are re-exported here. A failure to talk to the remote is a :class:`TransportError`
with one clear line; nothing local has changed at that point, and the next sync completes.
"""

from __future__ import annotations

from ..gitrun import (
    DEFAULT_IDLE,
    DEFAULT_TIMEOUT,
    QUIET_FETCH,
    deadline,
    describe,
    first_error,
    git_env,
    run_git,
)
from .checks import MAX_ANCESTRY_WALK, check_tip, index_problem, ref_problem, tip_problem
from .fetching import fetch
from .limits import (
    MAX_NEW_ENTRIES,
    MAX_NEW_FAMILY_REFS,
    MAX_NEW_NAMESPACES,
    MAX_NEW_REFS,
    MAX_UNTRUSTED_CHAIN,
    MAX_UNTRUSTED_ENTRIES,
    Limits,
)
from .listing import ls_remote
from .pushing import own_refs, push, push_refspecs
from .results import FETCH, PUSH, REMEMBERED_KINDS, FetchResult, PushResult, RefUpdate, Refusal, RefusalKind

__all__ = [  # the runner's names stay importable from here (cob.gitrun owns them)
    "DEFAULT_IDLE",
    "DEFAULT_TIMEOUT",
    "FETCH",
    "MAX_ANCESTRY_WALK",
    "MAX_NEW_ENTRIES",
    "MAX_NEW_FAMILY_REFS",
    "MAX_NEW_NAMESPACES",
    "MAX_NEW_REFS",
    "MAX_UNTRUSTED_CHAIN",
    "MAX_UNTRUSTED_ENTRIES",
    "PUSH",
    "QUIET_FETCH",
    "REMEMBERED_KINDS",
    "FetchResult",
    "Limits",
    "PushResult",
    "RefUpdate",
    "Refusal",
    "RefusalKind",
    "check_tip",
    "deadline",
    "describe",
    "fetch",
    "first_error",
    "git_env",
    "index_problem",
    "ls_remote",
    "own_refs",
    "push",
    "push_refspecs",
    "ref_problem",
    "run_git",
    "tip_problem",
]
