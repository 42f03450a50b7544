"""The one retry rule: after a node's last run of a job, will that node run it again?

Both the merge gate (:mod:`jobs.gate`: ``retrying`` is pending, anything else is final) and
the node's own plan (:func:`jobs.node.work.assess`: ``exhausted``) ask :func:`exhausted`, so
a status can never show ``retrying`` for a failure the node has given up on, nor the other
way round. It takes the definition's retry settings as plain values: this module imports
nothing of :mod:`jobs.node` (``status`` must not load the runner).
"""

from __future__ import annotations

from collections.abc import Collection

from .model import Reason

# Failed attempts: each uses up one of ``retry.max`` (the others — cancelled, a crash
# recovery's error — are interruptions, not attempts).
ATTEMPTS = frozenset({Reason.FAILED, Reason.TIMED_OUT, Reason.ERROR})


def exhausted(
    last: Reason | None, attempts: int, max_attempts: int, on: Collection[str], *, recovered: bool = False
) -> str | None:
    """Why the node will not run the job again, or None when it will (or has not failed).

    ``last``: how its latest run ended (None: running or never run); ``attempts``: its failed
    attempts that count; ``max_attempts``/``on``: the definition's ``retry.max`` and
    ``retry.on`` (reason values). ``recovered``: the latest run was ended by the node's own
    crash recovery (it is not an attempt, whatever ``retry.on`` says).
    """
    if last in ATTEMPTS and last is not None and last.value not in on and not recovered:
        return f"the last run ended {last.value}, which retry.on does not retry"
    if attempts >= max_attempts:
        return f"{attempts} of {max_attempts} attempts failed (retry.max)"
    return None


def will_retry(last: Reason | None, attempts: int, max_attempts: int, on: Collection[str]) -> bool:
    """Did the latest run fail, and will its node try again (the gate's ``retrying``)?"""
    return last in ATTEMPTS and exhausted(last, attempts, max_attempts, on) is None


__all__ = ["ATTEMPTS", "exhausted", "will_retry"]
