"""`git jobs init`, `whoami`, `allowed-signers`: the node's key and the keys of its peers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import cob

from .. import identity
from .common import add_json, command, open_jobs, print_json
from .errors import EXIT_OK


def _repo_or_none() -> Any:
    """Key resolution reads `git config`; outside a repository only the global config counts."""
    try:
        return cob.open_repository(".")
    except cob.RepositoryError:
        return None


def _init(args: argparse.Namespace) -> int:
    repo = _repo_or_none()
    source = identity.resolve_key_path(repo, getattr(args, "key", None))
    if source is not None and source.path.exists():
        signer = cob.Signer.from_file(source.path, source.origin)
        created = False
    else:
        # Nothing resolves, or an explicitly named key file does not exist yet: make it there.
        path = source.path if source is not None else identity.default_key_path()
        signer = cob.Signer.generate()
        signer.save(path)
        signer = cob.Signer.from_file(path, source.origin if source else "default")
        created = True
    assert signer.source is not None
    if args.json:
        print_json(
            {
                "nid": signer.nid,
                "key": str(signer.source.path),
                "origin": signer.source.origin,
                "created": created,
            }
        )
    else:
        verb = "created" if created else "using existing"
        print(f"{verb} key {signer.source.path} ({signer.source.origin})", file=sys.stderr)
        print(signer.nid)
    return EXIT_OK


def _whoami(args: argparse.Namespace) -> int:
    signer = identity.load_signer(_repo_or_none(), getattr(args, "key", None))
    assert signer.source is not None
    info = {
        "nid": signer.nid,
        "did": f"did:key:{signer.nid}",
        "key": str(signer.source.path),
        "origin": signer.source.origin,
        "allowed_signers": signer.allowed_signers_line,
    }
    if args.json:
        print_json(info)
    elif args.nid_only:
        print(info["nid"])
    else:
        print(f"nid              {info['nid']}")
        print(f"key              {info['key']} ({info['origin']})")
        print(f"allowed-signers  {info['allowed_signers']}")
    return EXIT_OK


def allowed_signers_text(args: argparse.Namespace) -> str:
    """Every NID seen in this repository (and this node's own), one allowed-signers line each."""
    store = open_jobs(args)
    text = store.allowed_signers()
    own = store.signer.allowed_signers_line if store.signer else None
    if own and own not in text.splitlines():
        text += own + "\n"
    return text


def _allowed_signers(args: argparse.Namespace) -> int:
    text = allowed_signers_text(args)
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if args.output:
        path = Path(args.output)
        try:
            path.write_text("".join(line + "\n" for line in lines))
        except OSError as e:
            raise cob.RepositoryError(f"cannot write {path}: {e.strerror or e}") from None
        print(f"wrote {len(lines)} signers to {path}", file=sys.stderr)
    if args.json:
        print_json([{"nid": line.split()[0], "line": line} for line in lines])
    elif not args.output:
        sys.stdout.write("".join(line + "\n" for line in lines))
    return EXIT_OK


def register(sub: Any) -> None:
    p = command(
        sub,
        "init",
        "  git jobs init                         # writes ~/.config/git-jobs/key\n"
        "  git jobs --key ci/node.key init       # make (or reuse) a key at a chosen path\n"
        "  GIT_JOBS_KEY=~/.ssh/id_ed25519 git jobs init   # reuse an existing ssh key\n",
        _init,
    )
    add_json(p)
    p = command(
        sub,
        "whoami",
        "  git jobs whoami\n"
        "  NS=refs/namespaces/$(git jobs whoami --nid)/refs   # for plain git refspecs\n"
        "  git jobs whoami --json | jq -r .nid\n",
        _whoami,
    )
    p.add_argument("--nid", dest="nid_only", action="store_true", help="Print only the NID.")
    add_json(p)
    p = command(
        sub,
        "allowed-signers",
        "  git jobs allowed-signers -o signers.txt\n"
        "  git -c gpg.ssh.allowedSignersFile=signers.txt log --show-signature \\\n"
        "      refs/namespaces/z6Mk.../refs/sigrefs   # this node's index and its changes\n"
        "  git jobs verify                       # what git-jobs itself checks (no file needed)\n"
        "\n"
        "warning: do NOT set this file as gpg.ssh.allowedSignersFile in a repository's (or your\n"
        "global) git config. It lists every node seen, including strangers with throwaway keys;\n"
        "git would then report their signatures on *code* commits as good, e.g. for\n"
        "`git merge --verify-signatures` or `git log --show-signature` on your branches.\n"
        "Pass it with `git -c gpg.ssh.allowedSignersFile=FILE …` for one command only.\n",
        _allowed_signers,
    )
    p.add_argument("-o", "--output", metavar="FILE", help="Write the file instead of stdout.")
    add_json(p)
