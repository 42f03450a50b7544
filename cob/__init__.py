"""Signed collaborative objects over Git: generic, knows nothing of jobs.

An object is a DAG of signed change commits; each node names its tip of every object in one
signed index ref, ``refs/namespaces/<NID>/refs/sigrefs`` (:mod:`cob.sigrefs`). Loading verifies
every change and folds them in a deterministic order (see ``docs/FORMAT.md``).
"""

from .change import Change, InvalidChangeError
from .cobtype import CobType, EvalContext, Reject
from .errors import (
    CobError,
    ConflictError,
    InvalidNidError,
    InvalidOpsError,
    KeyFileError,
    NoKeyError,
    RepositoryError,
    SignatureError,
    TransportError,
    UnknownObjectError,
)
from .evaluate import Evaluation, Rejection, RejectKind, Verdict
from .identity import (
    allowed_signers_line,
    is_nid,
    nid_from_public_key,
    normalize_nid,
    public_key_from_nid,
    ssh_public_key_line,
)
from .layout import Layout
from .recovery import set_tip
from .refs import object_ref
from .repository import open_repository
from .signer import Signer
from .sigrefs import index_ref
from .store import Store

__all__ = [
    "Change",
    "CobError",
    "CobType",
    "ConflictError",
    "EvalContext",
    "Evaluation",
    "InvalidChangeError",
    "InvalidNidError",
    "InvalidOpsError",
    "KeyFileError",
    "Layout",
    "NoKeyError",
    "Reject",
    "RejectKind",
    "Rejection",
    "RepositoryError",
    "SignatureError",
    "Signer",
    "Store",
    "TransportError",
    "UnknownObjectError",
    "Verdict",
    "allowed_signers_line",
    "is_nid",
    "nid_from_public_key",
    "normalize_nid",
    "index_ref",
    "object_ref",
    "open_repository",
    "public_key_from_nid",
    "set_tip",
    "ssh_public_key_line",
]
