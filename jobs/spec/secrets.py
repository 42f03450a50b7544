"""A job's ``secrets = ["PYPI_TOKEN"]``: the names of node secrets it asks for.

Only names: values live in the node's config (:mod:`jobs.node.secrets`), and the node decides
which jobs get them. The names are recorded in the run's finish, so they are bounded here.
"""

from __future__ import annotations

import re

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_SECRETS = 16
MAX_NAMES = 200  # the names of one job, comma-separated: they fit the finish's env value


def check_names(value: object) -> str | None:
    """Why a job's ``secrets`` list is invalid, or None."""
    if (
        not isinstance(value, list)
        or len(value) > MAX_SECRETS
        or not all(isinstance(n, str) and NAME.match(n) for n in value)
    ):
        return f"must be a list of at most {MAX_SECRETS} names of A-Z a-z 0-9 _, like ['PYPI_TOKEN']"
    if len(",".join(str(n) for n in value)) > MAX_NAMES:
        return f"names {MAX_NAMES} characters at most in all (they are recorded in the finish)"
    return None
