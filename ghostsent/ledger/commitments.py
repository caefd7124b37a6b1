"""Commitments: publish one hash now, prove later that an identifier existed then (docs/ledger.md).

Each identifier has a random salt. Its commitment is sha256(salt || canonical JSON of id, owner, ghost
text, word-list sha256, created_at), and the root is sha256 over the sorted per-identifier commitments.
Publishing the root proves later, by revealing one identifier and its salt, that it existed then,
without disclosing the others.

Two roots over the same commitments, named by scheme:
- `ghostsent-merkle-v1` (merkle.py, the one `ghostsent commit` publishes since the Merkle tree): one
  identifier's inclusion proof is O(log n) hashes (`ghostsent commit --proof ID`);
- `ghostsent-commit-v1` (the flat root, published before): sha256 over all sorted commitments; proving
  one needs the whole list. Still computed and still verified, so roots published earlier stay checkable.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ghostsent.errors import InputError, LedgerError
from ghostsent.ledger.merkle import MERKLE_SCHEME, MerkleProof, ProofStep, merkle_proof, merkle_root, proof_problem
from ghostsent.ledger.records import SALT_RE, SHA_RE, Identifier

COMMIT_SCHEME = "ghostsent-commit-v1"   # the flat root
SCHEMES = (MERKLE_SCHEME, COMMIT_SCHEME)


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
    """The roots over a ledger's identifiers and each one's commitment, sorted by id. Only ids and
    commitments: the published list reveals nothing else (owner and time are inside, hidden by the salt)."""

    root: str                              # the Merkle root (MERKLE_SCHEME)
    flat_root: str                         # the flat root (COMMIT_SCHEME), as published before
    items: tuple[tuple[str, str], ...]     # (identifier id, commitment)
    scheme: str = MERKLE_SCHEME

    def to_dict(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "root": self.root, "count": len(self.items),
                "flat_scheme": COMMIT_SCHEME, "flat_root": self.flat_root,
                "identifiers": [{"id": i, "commitment": c} for i, c in self.items]}


def ledger_commitment(ledger: Any) -> Commitment:
    """The commitment over every identifier of `ledger` (any LedgerStore)."""
    items = tuple((i.id, identifier_commitment(i)) for i in sorted(ledger.identifiers(), key=lambda i: i.id))
    commitments = [c for _, c in items]
    return Commitment(merkle_root(commitments), commitment_root(commitments), items)


def ledger_proof(ledger: Any, identifier: str, with_reveal: bool = False) -> dict[str, Any]:
    """One identifier's Merkle inclusion proof against the ledger's current root (JSON-ready). With
    `with_reveal` it also carries the salt and canonical JSON, so the proof shows the ghost sentence
    itself existed (this discloses the passphrase to whoever gets the proof)."""
    ident = ledger.get(identifier)
    commitments = [identifier_commitment(i) for i in ledger.identifiers()]
    proof = {"id": ident.id, **merkle_proof(commitments, identifier_commitment(ident)).to_dict()}
    if with_reveal:
        proof |= {"salt": ident.salt, "canonical_json": canonical_json(ident)}
    return proof


@dataclass(frozen=True)
class ProofCheck:
    """The verdict on one proof: `ok` with the commitment shown under the root, or the reason it fails."""

    ok: bool
    scheme: str
    commitment: str
    root: str
    reason: str | None = None
    ghost: str | None = None        # the revealed ghost sentence, when the proof carried the reveal

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "scheme": self.scheme, "commitment": self.commitment, "root": self.root,
                "reason": self.reason, "ghost": self.ghost}


def verify_proof(proof: Any, root: str, commitment: str | None = None, source: str = "proof") -> ProofCheck:
    """Check a proof against a published root: a `commit --proof` document (Merkle), or for a flat root
    published before the Merkle tree, the `commit --json` output kept from then plus the commitment.
    InputError (naming `source` and the field) for a malformed document; a proof that does not hold is
    ok=False with the reason."""
    if not isinstance(proof, dict):
        raise InputError(f"{source}: expected a JSON object")
    scheme = proof.get("scheme")
    if scheme not in SCHEMES:
        raise InputError(f"{source}: field scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    root = _hex(root, "root", "the published root")
    ghost, mine = _revealed(proof, source)
    claimed = commitment if commitment is not None else proof.get("commitment", mine)
    if claimed is None:
        raise InputError(f"{source}: no commitment to check: the proof names none and carries no reveal",
                         hint="commitment")
    claimed = _hex(claimed, "commitment", source)
    if mine is not None and mine != claimed:
        return ProofCheck(False, scheme, claimed, root, "the salt and canonical JSON hash to a different commitment")
    if scheme == MERKLE_SCHEME:
        reason = proof_problem(_merkle(proof, claimed, source), root)
    else:
        reason = _flat_problem(proof, claimed, root, source)
    return ProofCheck(reason is None, scheme, claimed, root, reason, ghost if reason is None else None)


def _hex(value: Any, name: str, source: str) -> str:
    if not isinstance(value, str) or not SHA_RE.match(value.lower()):
        raise InputError(f"{source}: {name} must be 64 hex digits")
    return value.lower()


def _revealed(proof: dict, source: str) -> tuple[str | None, str | None]:
    """(ghost, commitment) recomputed from a reveal carried in the proof, or (None, None)."""
    if "salt" not in proof and "canonical_json" not in proof:
        return None, None
    salt, canonical = proof.get("salt"), proof.get("canonical_json")
    if not isinstance(salt, str) or not SALT_RE.match(salt) or not isinstance(canonical, str):
        raise InputError(f"{source}: salt must be 32 hex digits and canonical_json a string")
    try:
        ghost = json.loads(canonical).get("ghost")
    except (json.JSONDecodeError, AttributeError):
        raise InputError(f"{source}: canonical_json is not a JSON object") from None
    return ghost, hashlib.sha256(bytes.fromhex(salt) + canonical.encode("utf-8")).hexdigest()


def _merkle(proof: dict, commitment: str, source: str) -> MerkleProof:
    index, count, path = proof.get("index"), proof.get("count"), proof.get("path")
    if type(index) is not int or type(count) is not int or not isinstance(path, list):
        raise InputError(f"{source}: index and count must be integers and path a list")
    steps = []
    for n, step in enumerate(path):
        if not isinstance(step, dict) or step.get("side") not in ("left", "right"):
            raise InputError(f"{source}: path[{n}].side must be \"left\" or \"right\"")
        steps.append(ProofStep(step["side"], _hex(step.get("hash"), f"path[{n}].hash", source)))
    return MerkleProof(commitment, index, count, tuple(steps), "")


def _flat_problem(proof: dict, commitment: str, root: str, source: str) -> str | None:
    items = proof.get("identifiers")
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise InputError(f"{source}: a {COMMIT_SCHEME} proof is the published list of every commitment: field "
                         f"identifiers must be a list")
    listed = [_hex(x.get("commitment"), f"identifiers[{n}].commitment", source) for n, x in enumerate(items)]
    if commitment not in listed:
        return "the commitment is not in the list"
    got = commitment_root(listed)
    return None if got == root else f"the list hashes to {got}, not {root}"
