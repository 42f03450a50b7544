"""`cob` is generic: no file of the installed package names the product built on it.

The product's names (files, refs, the key's environment variable and config paths, the root's
author, `git config jobs.*`, the `git jobs` command) are given to `cob` by `jobs` as one
`cob.layout.Layout` (`jobs/layout.py`) and by `jobs/identity.py`; `cob`'s own defaults are
`cob-…`. Every file of the package is read (sources, `py.typed`, data), except the bytecode
caches Python writes beside it, which hold the path they were compiled from (a checkout in a
directory named after the product is not the package naming it).
"""

from __future__ import annotations

import re
from pathlib import Path

import cob

# git-jobs, git_jobs, GIT_JOBS, gitjobs (dev.gitjobs.job), `git jobs` (the command), and
# `jobs.<name>`: a git config key (jobs.key, jobs.fsync) or a module of the product.
PRODUCT = re.compile(r"git[-_ ]?jobs|\bjobs\.[a-z_]", re.IGNORECASE)
ALLOWED: dict[str, set[str]] = {}  # none: nothing in cob has to name the product


def _product_names(package_dir: Path) -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(package_dir.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(package_dir).as_posix()
        text = path.read_bytes().decode("utf-8", "replace")
        for number, line in enumerate(text.splitlines(), 1):
            for match in PRODUCT.finditer(line):
                if match.group(0) not in ALLOWED.get(rel, set()):
                    found.append((rel, number, match.group(0)))
    return found


def test_the_installed_cob_names_no_product() -> None:
    package_dir = Path(cob.__file__).parent
    assert len(list(package_dir.rglob("*.py"))) > 20  # the package itself, not an empty dir
    assert _product_names(package_dir) == []


def test_the_check_finds_each_form_of_the_name(tmp_path: Path) -> None:
    pkg = tmp_path / "cob"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "a.py").write_text('FILE = "git-jobs-index"\nENV = "GIT_JOBS_KEY"\nT = "dev.gitjobs.job"\n')
    (pkg / "b.txt").write_text("run git jobs sync\ngit config jobs.key PATH\nknows nothing of jobs.\n")
    (pkg / "__pycache__" / "a.cpython.pyc").write_bytes(b"/home/me/git-jobs/cob/a.py")
    assert _product_names(pkg) == [
        ("a.py", 1, "git-jobs"),
        ("a.py", 2, "GIT_JOBS"),
        ("a.py", 3, "gitjobs"),
        ("b.txt", 1, "git jobs"),
        ("b.txt", 2, "jobs.k"),
    ]


def test_every_cob_exception_is_drawn_in_the_tree_of_cob_errors() -> None:
    """`cob/errors.py`'s docstring draws the exception tree once (as httpx does): every
    exception class of the package is in it, under its base."""
    import importlib
    import pkgutil

    import cob.errors

    doc = cob.errors.__doc__ or ""
    classes = set()
    for info in pkgutil.walk_packages(cob.__path__, "cob."):
        for value in vars(importlib.import_module(info.name)).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__.startswith("cob")
            ):
                classes.add(value)
    assert len(classes) >= 12
    drawn = {line.strip(" │├└─").split()[0] for line in doc.splitlines() if line.strip(" │├└─")}
    missing = sorted(
        c.__name__ for c in classes if c.__name__ not in drawn and f"cob.{c.__name__}" not in drawn
    )
    assert missing == []
    for cls in classes:  # each under its base: the base's line comes first
        base = cls.__mro__[1].__name__
        if base != "Exception":
            assert doc.index(base) < doc.index(cls.__name__), cls
