"""What isolating a job costs per run: the checkout of its own and the sandbox.

Baseline: what the node did before — ``git worktree add --detach`` of the commit, ``sh -c true``
in it, ``git worktree remove``. Ours: a new repository with the commit fetched ``--depth 1``
(:func:`jobs.node.checkout.make_checkout`), ``sh -c true`` in it without a sandbox (``none``)
and under bubblewrap (``bwrap``, when it works here), then the scratch directory removed.
Repositories of 100 and 5,000 files; medians of interleaved repeats, so load hits both alike.

    .venv/bin/python benches/isolation.py [--repeats 9] [--files 100,5000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pygit2

from jobs.node.checkout import make_checkout, remove_tree
from jobs.node.isolation import Isolation, IsolationError, Scratch


def _repo(base: Path, files: int) -> tuple[pygit2.Repository, str]:
    path = base / f"repo-{files}"
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    for i in range(files):
        d = path / f"d{i % 50}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}.txt").write_text(f"file {i}\n" * 20)
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "c"], cwd=path, check=True
    )
    repo = pygit2.Repository(str(path))
    return repo, str(repo.head.target)


def _worktree(repo: pygit2.Repository, sha: str, base: Path) -> None:
    dest = base / "wt"
    subprocess.run(
        ["git", "--git-dir", repo.path, "worktree", "add", "-q", "--detach", str(dest), sha],
        check=True,
        capture_output=True,
    )
    subprocess.run(["sh", "-c", "true"], cwd=dest, check=True)
    subprocess.run(["git", "--git-dir", repo.path, "worktree", "remove", "--force", str(dest)], check=True)


def _ours(repo: pygit2.Repository, sha: str, base: Path, isolation: Isolation) -> None:
    scratch = Scratch(Path(tempfile.mkdtemp(dir=base)))
    try:
        make_checkout(repo, sha, scratch.src)
        scratch.make()
        env = isolation.environment(scratch, {})
        argv = isolation.command(["sh", "-c", "true"], scratch, scratch.src)
        subprocess.run(argv, cwd=scratch.src, env=env, check=True)
    finally:
        remove_tree(scratch.root)


def _time(fn: Callable[[], None]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def _measure(
    repo: pygit2.Repository, sha: str, base: Path, modes: list[tuple[str, Isolation]], repeats: int
) -> dict[str, float]:
    """Median milliseconds per run for the baseline and each mode, interleaved."""
    times: dict[str, list[float]] = {"worktree": [], **{m: [] for m, _ in modes}}
    for _ in range(repeats):
        times["worktree"].append(_time(lambda: _worktree(repo, sha, base)))
        for name, iso in modes:
            times[name].append(_time(lambda iso=iso: _ours(repo, sha, base, iso)))  # type: ignore[misc]
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--files", default="100,5000")
    args = ap.parse_args()
    bwrap = Isolation(mode="bwrap")
    try:
        bwrap.check()
        modes = [("none", Isolation()), ("bwrap", bwrap)]
    except IsolationError as e:
        print(f"(bwrap rows skipped: {e})")
        modes = [("none", Isolation())]
    print("| files | baseline: worktree | ours: none | ratio | ours: bwrap | ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="gj-bench-iso-") as tmp:
        base = Path(tmp)
        for files in (int(n) for n in args.files.split(",")):
            repo, sha = _repo(base, files)
            med = _measure(repo, sha, base, modes, args.repeats)
            cells = [f"{med['worktree']:.0f} ms"]
            for name in ("none", "bwrap"):
                if name in med:
                    cells += [f"{med[name]:.0f} ms", f"{med[name] / med['worktree']:.2f}x"]
                else:
                    cells += ["—", "—"]
            print(f"| {files} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
