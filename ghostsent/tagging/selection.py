"""Which of an owner's records get the owner's ghost.

Today's rule is sequential, in input order: an owner's n-th record is selected while the owner has fewer
than `max_per_owner` tagged records and fewer than ceil(n * fraction) of them (every 1/F-th record),
so a corpus gets the same selection on every run and a resumed run continues the counts from its
checkpoint. A record that already carries the ghost uses up a selection; one without a sentence
boundary does not.

This is the seam for selection without coordination (a keyed hash of secret, owner and record id, so
that any shard in any order picks the same records): such a rule implements the same two calls.
"""
from __future__ import annotations

import math

_EPS = 1e-9  # ceil(n * fraction) computed in floating point: 0.3 * 10 must count as 3, not 3.0000000000000004


class OwnerQuota:
    """Per-owner counts [records seen, records tagged] and the rule that reads them."""

    def __init__(self, max_per_owner: int | None = None, fraction: float | None = None,
                 counts: dict[str, list[int]] | None = None) -> None:
        self.max_per_owner, self.fraction = max_per_owner, fraction
        self.counts: dict[str, list[int]] = counts if counts is not None else {}

    def wants(self, owner: str) -> bool:
        """Count one more record of `owner` and say whether it should get the ghost."""
        st = self.counts.get(owner)
        if st is None:
            st = self.counts[owner] = [0, 0]
        st[0] += 1
        allowed = st[0] if self.max_per_owner is None else min(self.max_per_owner, st[0])
        if self.fraction is not None:
            allowed = min(allowed, math.ceil(st[0] * self.fraction - _EPS))
        return st[1] < allowed

    def took(self, owner: str) -> None:
        """The record `wants` just selected now carries the ghost."""
        self.counts[owner][1] += 1

    def state(self) -> dict[str, list[int]]:
        """The counts, for a checkpoint (a copy)."""
        return {k: list(v) for k, v in self.counts.items()}
