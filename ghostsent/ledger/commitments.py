"""Commitments: publish one hash now, prove later that an identifier existed then (docs/ledger.md).

Each identifier has a random salt. Its commitment is sha256(salt || canonical JSON of id, owner, ghost
text, word-list sha256, created_at), and the root is sha256 over the sorted per-identifier commitments.
Publishing the root proves later, by revealing one identifier and its salt, that it existed then,
without disclosing the others. (A Merkle tree with inclusion proofs would replace `commitment_root`
here; the per-identifier commitment stays.)
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ghostsent.errors import LedgerError
from ghostsent.ledger.records import SALT_RE, Identifier

COMMIT_SCHEME = "ghostsent-commit-v1"


def canonical_json(ident: Identifier) -> str:
    """The exact bytes (UTF-8) a commitment covers: sorted keys, no spaces, non-ASCII kept."""
    obj = {"created_at": ident.created_at, "ghost": ident.text, "id": ident.id, "owner": ident.owner,
           "wordlist_sha256": ident.wordlist_sha256}
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def identifier_commitment(ident: Identifier) -> str:
    """sha256(salt bytes || canonical JSON bytes), hex."""
    if not SALT_RE.match(ident.salt):
        raise LedgerError(f"identifier {ident.id}: no valid commitment salt")
    return hashlib.sha256(bytes.fromhex(ident.salt) + canonical_json(ident).encode("utf-8")).hexdigest()


def commitment_root(commitments: "list[str]") -> str:
    """sha256 over the per-identifier commitments (32 raw bytes each) in sorted hex order."""
    return hashlib.sha256(b"".join(bytes.fromhex(c) for c in sorted(commitments))).hexdigest()


def reveal(ident: Identifier) -> dict[str, Any]:
    """What a third party needs to recompute one identifier's commitment (and check it is in a root)."""
    return {"scheme": COMMIT_SCHEME, "id": ident.id, "salt": ident.salt,
            "canonical_json": canonical_json(ident), "commitment": identifier_commitment(ident)}


@dataclass(frozen=True)
class Commitment:
    """The root over a ledger's identifiers and each one's commitment, sorted by id. Only ids and
    commitments: the published list reveals nothing else (owner and time are inside, hidden by the salt)."""

    root: str
    items: tuple[tuple[str, str], ...]     # (identifier id, commitment)
    scheme: str = COMMIT_SCHEME

    def to_dict(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "root": self.root, "count": len(self.items),
                "identifiers": [{"id": i, "commitment": c} for i, c in self.items]}


def ledger_commitment(ledger: Any) -> Commitment:
    """The commitment over every identifier of `ledger` (any LedgerStore)."""
    items = tuple((i.id, identifier_commitment(i)) for i in sorted(ledger.identifiers(), key=lambda i: i.id))
    return Commitment(commitment_root([c for _, c in items]), items)
