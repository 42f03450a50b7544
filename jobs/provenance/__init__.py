"""Provenance (issue 28): in-toto / SLSA attestations of a node's runs, and offline evidence bundles.

- :mod:`.dsse`: the DSSE envelope (PAE, Ed25519 signatures whose ``keyid`` is the NID).
- :mod:`.attest`: the in-toto Statement v1 with a SLSA Provenance v1 predicate a node signs
  when it finishes a run that kept outputs, embedded in its signed ``finish`` change; export
  and offline verification.
- :mod:`.bundle`: a standard ``git bundle`` holding everything the gate of one commit needs,
  and its verification in a scratch repository (docs/PROVENANCE.md).
"""

from __future__ import annotations

# The embed of a ``finish`` change that carries the run's DSSE envelope (FORMAT.md 11.5).
ATTESTATION_EMBED = "attestation.dsse.json"
