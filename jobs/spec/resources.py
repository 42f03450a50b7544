"""``resources``: the names a job holds while it runs (``resources = ["gpu"]``).

The commit names what a job uses; only the node says how much there is of each
(:mod:`jobs.node.slots`), and publishes it in its profile (:mod:`jobs.profile`).
"""

from __future__ import annotations

import re

RESOURCE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
MAX_CAPACITY = 1024  # units of one resource a node declares
