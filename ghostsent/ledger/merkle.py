"""A Merkle tree over identifier commitments: one published root, an O(log n) inclusion proof per identifier.

Pure functions over hex strings and sha256 only (no ledger), so the rules a third party must follow are
all here and in docs/ledger.md ("Checking a Merkle proof"):

- leaves are the per-identifier commitments (commitments.py), sorted by their hex form (duplicates
  refused: every commitment carries a random salt, so a duplicate means a broken ledger);
- leaf hash  = sha256(0x00 || commitment bytes), node hash = sha256(0x01 || left || right): the prefixes
  keep a leaf from ever passing for an inner node (second-preimage resistance);
- odd-node rule: a level with an odd number of nodes carries its last node up unchanged (it is NOT
  paired with itself, which would let two different leaf lists share a root);
- the root of no leaves is sha256 of the empty string.

A proof lists, from the leaf up, each sibling hash and the side it sits on. Levels where the node is
carried up add no step, so a proof has at most ceil(log2 n) steps.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

MERKLE_SCHEME = "ghostsent-merkle-v1"
_LEAF, _NODE = b"\x00", b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").hexdigest()


def leaf_hash(commitment: str) -> bytes:
    return hashlib.sha256(_LEAF + bytes.fromhex(commitment)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def _sorted_leaves(commitments: Sequence[str]) -> list[str]:
    leaves = sorted(c.lower() for c in commitments)
    for a, b in zip(leaves, leaves[1:]):
        if a == b:
            raise ValueError(f"commitment {a} appears twice")
    return leaves


def _levels(leaves: list[str]) -> list[list[bytes]]:
    """Every level of the tree, leaves first, root last."""
    level = [leaf_hash(c) for c in leaves]
    levels = [level]
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])  # the odd node is carried up unchanged
        levels.append(nxt)
        level = nxt
    return levels


def merkle_root(commitments: Sequence[str]) -> str:
    """The root over these commitments (any order; sorted here), hex."""
    leaves = _sorted_leaves(commitments)
    return _levels(leaves)[-1][0].hex() if leaves else EMPTY_ROOT


@dataclass(frozen=True)
class ProofStep:
    side: str      # "left" or "right": where the sibling sits
    hash: str      # the sibling's hash, hex


@dataclass(frozen=True)
class MerkleProof:
    """That `commitment` is leaf `index` of `count` under `root`."""

    commitment: str
    index: int
    count: int
    path: tuple[ProofStep, ...]
    root: str
    scheme: str = MERKLE_SCHEME

    def to_dict(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "commitment": self.commitment, "index": self.index, "count": self.count,
                "path": [{"side": s.side, "hash": s.hash} for s in self.path], "root": self.root}


def _shape(index: int, count: int) -> list[tuple[str, int, int]]:
    """(sibling side, level, sibling index) per step for leaf `index` of `count`, from the odd-node rule
    alone. A level where the node is carried up has no sibling and adds no step."""
    steps, level = [], 0
    while count > 1:
        if index % 2:
            steps.append(("left", level, index - 1))
        elif index + 1 < count:
            steps.append(("right", level, index + 1))
        index, count, level = index // 2, (count + 1) // 2, level + 1
    return steps


def merkle_proof(commitments: Sequence[str], commitment: str) -> MerkleProof:
    """The inclusion proof of `commitment` among `commitments`; ValueError if it is not one of them."""
    leaves = _sorted_leaves(commitments)
    target = commitment.lower()
    try:
        index = leaves.index(target)
    except ValueError:
        raise ValueError(f"commitment {commitment} is not in the tree") from None
    levels = _levels(leaves)
    path = [ProofStep(side, levels[lv][sib].hex()) for side, lv, sib in _shape(index, len(leaves))]
    return MerkleProof(target, index, len(leaves), tuple(path), levels[-1][0].hex())


def root_from_path(commitment: str, path: Sequence[ProofStep]) -> str:
    """The root a proof leads to: what docs/ledger.md tells a verifier to compute by hand."""
    h = leaf_hash(commitment)
    for step in path:
        sib = bytes.fromhex(step.hash)
        h = node_hash(sib, h) if step.side == "left" else node_hash(h, sib)
    return h.hex()


def proof_problem(proof: MerkleProof, root: str) -> str | None:
    """Why the proof does not show `commitment` under `root`, or None if it does. The sides must also
    be the ones leaf `index` of `count` has, so a proof cannot claim a position the tree never had."""
    if not 0 <= proof.index < proof.count:
        return f"index {proof.index} is outside a tree of {proof.count} leaves"
    if [s.side for s in proof.path] != [step[0] for step in _shape(proof.index, proof.count)]:
        return f"the path does not have the shape of leaf {proof.index} of {proof.count}"
    got = root_from_path(proof.commitment, proof.path)
    if got != root.lower():
        return f"the proof leads to root {got}, not {root.lower()}"
    return None
