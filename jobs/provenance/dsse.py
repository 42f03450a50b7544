"""DSSE envelopes (https://github.com/secure-systems-lab/dsse, protocol v1.0), Ed25519 only.

Written here rather than taken from ``securesystemslib`` (which has a DSSE ``Envelope``): the
whole protocol is the pre-authentication encoding and a JSON object, about forty lines, while
the library brings its own key and signer abstractions for what one ``cryptography`` call
does. The tests check our envelopes with ``securesystemslib``'s verifier when it is installed.

A signature is a raw Ed25519 signature over ``PAE(payloadType, payload)`` by a node's key; its
``keyid`` is the node's NID (``z6Mk…``), so the envelope names who signed without a key server.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import cob

from ..errors import JobsError

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
MAX_ENVELOPE_BYTES = 8 * 1024 * 1024  # what a reader parses (peer data)
MAX_SIGNATURES = 16


class EnvelopeError(JobsError):
    """An envelope that is not a DSSE envelope, or whose signature does not verify."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding: what a signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True, slots=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]  # (keyid, raw signature)

    def to_bytes(self) -> bytes:
        """The envelope as compact JSON with sorted keys, ending in a newline."""
        doc = {
            "payload": base64.b64encode(self.payload).decode(),
            "payloadType": self.payload_type,
            "signatures": [{"keyid": k, "sig": base64.b64encode(s).decode()} for k, s in self.signatures],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n"

    def signed_by(self, trusted: list[str]) -> str | None:
        """The first NID of ``trusted`` with a valid signature over the PAE, or None."""
        message = pae(self.payload_type, self.payload)
        for nid in trusted:
            key = Ed25519PublicKey.from_public_bytes(cob.public_key_from_nid(nid))
            for _, sig in self.signatures:  # the keyid is a hint: every signature is tried
                try:
                    key.verify(sig, message)
                except InvalidSignature:
                    continue
                return nid
        return None


def sign(signer: cob.Signer, payload: bytes, payload_type: str = INTOTO_PAYLOAD_TYPE) -> Envelope:
    return Envelope(payload_type, payload, ((signer.nid, signer.sign_raw(pae(payload_type, payload))),))


def _b64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise EnvelopeError(f"the envelope's {what} is not a string")
    try:  # DSSE readers accept standard and URL-safe base64
        alphabet = text.replace("-", "+").replace("_", "/")
        return base64.b64decode(alphabet + "=" * (-len(alphabet) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(f"the envelope's {what} is not base64") from None


def parse(data: bytes) -> Envelope:
    """An envelope from its JSON; :class:`EnvelopeError` saying what is wrong otherwise."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(f"the envelope is {len(data)} bytes (limit {MAX_ENVELOPE_BYTES})")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise EnvelopeError("not a DSSE envelope: not JSON") from None
    if not isinstance(doc, dict) or not {"payload", "payloadType", "signatures"} <= doc.keys():
        raise EnvelopeError("not a DSSE envelope: payload, payloadType and signatures are required")
    kind = doc["payloadType"]
    sigs = doc["signatures"]
    if not isinstance(kind, str) or not isinstance(sigs, list) or not 1 <= len(sigs) <= MAX_SIGNATURES:
        raise EnvelopeError(f"not a DSSE envelope: a payloadType and 1 to {MAX_SIGNATURES} signatures")
    out = []
    for s in sigs:
        if not isinstance(s, dict) or not isinstance(s.get("keyid", ""), str):
            raise EnvelopeError("not a DSSE envelope: a signature is not an object with a keyid")
        out.append((str(s.get("keyid", "")), _b64(s.get("sig"), "signature")))
    return Envelope(kind, _b64(doc["payload"], "payload"), tuple(out))
