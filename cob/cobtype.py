"""How a type plugs into `cob`: its name, its op structs, and its fold.

A type is a small class (an application's, e.g. a job type). `cob` reads, verifies and orders changes;
the type only says whether a change is acceptable (:meth:`CobType.validate`, raising
:class:`Reject`) and how it changes the state (:meth:`CobType.apply`, which must not fail).
Splitting the two keeps the fold atomic per change without copying the state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from .evaluate import Evaluation


@dataclass(frozen=True, slots=True)
class Change:
    """A verified change. ``author`` is the signer's NID, or None for a content-addressed root."""

    oid: str
    parents: tuple[str, ...]
    author: str | None
    timestamp: int
    ops: tuple[Any, ...]
    message: str = ""
    version: int = 1
    embeds: Mapping[str, str] = field(default_factory=dict)  # name -> blob oid

    @property
    def key(self) -> tuple[int, str]:
        """The tie-break among changes ready at once: (commit time, oid)."""
        return (self.timestamp, self.oid)


S = TypeVar("S")


class Reject(Exception):
    """Raised by a type to refuse a change. The message is the reason that gets reported."""


class EvalContext(Protocol):
    """What a type may ask about the DAG while validating a change."""

    def is_ancestor(self, ancestor: str, of: str) -> bool:
        """True when change ``ancestor`` is ``of`` or one of its ancestors."""
        ...


class CobType(ABC, Generic[S]):
    """A collaborative object type.

    Class attributes a type sets:

    - ``typename``: reverse-DNS name, e.g. ``"org.example.issue"``; also the ref path segment.
    - ``version``: the manifest version this code writes; ``versions`` those it reads.
    - ``op_type``: a msgspec type (usually a ``Union`` of structs tagged by ``"type"``).
    - ``content_addressed_root``: the root is unsigned, with a fixed identity and time, so its
      oid depends only on its ops (every node creating it gets the same object id).
    - ``root_author``: the name in that fixed identity (part of every object id of the type:
      never change it once objects exist).
    - ``commutative``: ops commute and are idempotent, so a cached state plus only the new
      changes equals a full fold. The cache only folds incrementally for such types.
    - ``rules``: a number to bump whenever ``validate``/``apply`` change meaning, so that
      states the cache folded under the old rules are folded again.
    """

    typename: ClassVar[str]
    version: ClassVar[int] = 1
    versions: ClassVar[frozenset[int]] = frozenset({1})
    op_type: ClassVar[Any]
    content_addressed_root: ClassVar[bool] = False
    root_author: ClassVar[str] = "cob"
    commutative: ClassVar[bool] = False
    # Bump when validate/apply change meaning: cached folds made under older rules are redone.
    rules: ClassVar[int] = 1

    @abstractmethod
    def initial(self, root: Change) -> S:
        """The state after the root change; raise :class:`Reject` if the root is invalid."""

    @abstractmethod
    def validate(self, state: S, change: Change, ctx: EvalContext) -> None:
        """Raise :class:`Reject` if ``change`` may not apply to ``state``. Must not mutate.

        For a commutative type the answer may depend only on the change and its ancestors
        (ask ``ctx.is_ancestor``), never on concurrent changes folded earlier.
        """

    @abstractmethod
    def apply(self, state: S, change: Change) -> None:
        """Fold a validated change into ``state`` (in place). Must not raise."""

    def summary(self, ops: Sequence[Any]) -> str:
        """The one-line commit message of a change carrying ``ops`` (deterministic)."""
        return f"{self.typename}: {len(ops)} op(s)"

    def index_keys(self, root: Change) -> Iterable[tuple[str, str]]:
        """(key, value) pairs the cache indexes this object under, e.g. ("commit", sha)."""
        return ()

    # State (de)serialisation for the cache; the default suits msgspec-encodable states.
    state_type: ClassVar[Any] = None
    # The msgspec type of :meth:`listing`'s rows; None: the type offers no listing rows.
    listing_type: ClassVar[Any] = None

    def listing(self, ev: Evaluation[S]) -> Any:
        """A small row standing for a valid evaluation in a listing (:meth:`cob.Store.listing`),
        of ``listing_type``. It is stored beside the state and read without decoding the state:
        a listing of many objects then reads a few fields each, not every object's whole
        history (at 100k entries the states alone were ~2 M Python objects). It must be a
        function of the evaluation only (it is kept by the evaluation's tips)."""
        return None
