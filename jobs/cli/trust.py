"""`git jobs trust add|remove|list` and `git jobs policy`: whose runs count, here.

Local trust is one person's (or one node's) addition to the repository's policy, kept in git
config (``jobs.trust``), never in the ledger. ``trust list`` shows the whole picture: the
policy ref and its trusted nodes, then the local ones.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import cob

from ..policy import Policy, accept_policy, load_policy
from ..text import safe
from ..trust import trust_add, trust_remove
from .common import Style, add_command, add_json, command, open_repo, print_json
from .errors import EXIT_OK


def describe_policy(policy: Policy) -> str:
    """One line saying where trust comes from (printed once by `status` and `trust list`)."""
    if policy.everyone:
        where = f" at {policy.source}" if policy.source else ""
        return f"no policy{where}: every node counts"
    parts = []
    if policy.source is not None:
        parts.append(f"policy {policy.source}: {len(policy.nodes)} trusted node(s), quorum {policy.quorum}")
        if policy.required is not None:
            parts.append(f"required {', '.join(safe(n) for n in policy.required)}")
    else:
        parts.append("no repository policy")
    if policy.local:
        parts.append(f"{len(policy.local)} trusted locally")
    return "; ".join(parts)


def _add(args: argparse.Namespace) -> int:
    repo = open_repo()
    new = trust_add(repo, args.nid, args.name)
    nid = cob.normalize_nid(args.nid.strip())  # valid: trust_add checked it
    if args.json:
        print_json({"nid": nid, "name": load_policy(repo).local.get(nid) or None, "new": new})
    else:
        label = f" as {safe(args.name)}" if args.name else ""
        print(f"{'trusted' if new else 'updated'} {nid}{label}", file=sys.stderr)
    return EXIT_OK


def _remove(args: argparse.Namespace) -> int:
    repo = open_repo()
    removed = trust_remove(repo, args.nid)
    if args.json:
        print_json({"nid": cob.normalize_nid(args.nid.strip()), "removed": removed})
    elif removed:
        print(f"no longer trusted here: {safe(args.nid)}", file=sys.stderr)
    else:
        print(f"not trusted in this repository's config: {safe(args.nid)}", file=sys.stderr)
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    repo = open_repo()
    policy = load_policy(repo)
    from ..profile import profiles
    from ..store import Jobs

    known = profiles(Jobs.open(repo), policy.trusted)  # what each says it can run (signed)
    if args.json:
        print_json({**policy.to_json(), "profiles": {nid: p.to_json() for nid, p in known.items()}})
        return EXIT_OK
    style = Style()
    print(describe_policy(policy))
    for nid, name in policy.trusted.items():
        where = "local" if nid in policy.local else "policy"
        found = known.get(nid)
        labels = f"labels {', '.join(sorted(found.labels)) or '-'}" if found else "no labels published"
        print(f"  {nid}  {style(safe(name) or '-', 'cyan')}  ({where})  {style(labels, 'dim')}")
    return EXIT_OK


def _accept(args: argparse.Namespace) -> int:
    policy = accept_policy(open_repo())
    if args.json:
        print_json(policy.to_json())
    elif policy.everyone:
        print(
            "accepted: no policy at the policy ref (every node counts; nothing is remembered)",
            file=sys.stderr,
        )
    else:
        print(f"accepted {describe_policy(policy)}", file=sys.stderr)
    return EXIT_OK


def register(sub: Any) -> None:
    p = command(
        sub,
        "trust",
        "  git jobs trust list\n"
        "  git jobs trust add z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK --name alice-linux\n"
        "  git jobs trust remove z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK\n"
        "  git jobs trust list --json | jq -r '.trusted[].nid'\n",
        _list,
        "The repository's policy is the [policy] table of .git-jobs.toml at the policy ref (the\n"
        "remote's default branch as fetched, else the local default branch; `git config\n"
        "jobs.policyRef` to choose), never the commit under test. Local trust adds nodes for\n"
        "you only, in git config (jobs.trust), never in the ledger. See docs/TRUST.md.",
    )
    add_json(p)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    a = add_command(
        actions,
        "add",
        "Trust a node locally (NID or did:key:), with a name.",
        "  git jobs trust add z6Mk… --name alice-linux\n",
        _add,
    )
    a.add_argument("nid", metavar="NID")
    a.add_argument("--name", metavar="NAME", help="A human name shown instead of the NID.")
    add_json(a)
    r = add_command(
        actions, "remove", "Stop trusting a node locally.", "  git jobs trust remove z6Mk…\n", _remove
    )
    r.add_argument("nid", metavar="NID")
    add_json(r)
    acc = add_command(
        actions,
        "accept-policy",
        "Take the policy ref as it is now, even if it moved back or lost its [policy].",
        "  git jobs trust accept-policy\n",
        _accept,
        "Once this clone has seen a policy, a policy ref that is gone, has no [policy] or is not\n"
        "a fast-forward of the last policy seen is refused (exit 2). Run this when a person\n"
        "meant it: the policy ref's tip becomes the last policy seen (see docs/TRUST.md).",
    )
    add_json(acc)
    lst = add_command(
        actions,
        "list",
        "Show the policy in force and every trusted node.",
        "  git jobs trust list --json\n",
        _list,
    )
    add_json(lst)
