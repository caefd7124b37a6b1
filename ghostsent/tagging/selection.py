"""Which of an owner's records get the owner's ghost, decided without coordination.

Every record has a key: its id field's value (JSON-encoded, so 7 and "7" differ) or, without an id
field, its position in the input ("n:<line or row number>"). One keyed hash per record,

    d = HMAC-SHA256(secret, owner + "\\0" + key)

decides both *whether* the record is chosen (its rank, the first 8 bytes of d as an integer) and *where*
in it the ghost goes (the rest of d seeds KeyedRandom). The secret is the ledger's selection secret
(ledger/keys.py), or one derived from --seed for tests. So any shard, in any order, on any re-run or
retried task, makes the same choice and the same bytes, and nobody without the secret can predict which
records carry a ghost or where.

The rules (TagPolicy.max_per_owner / .fraction):

* neither: every record is chosen.
* fraction F: a record is chosen when rank < F * 2^64 (one pass, no state: each owner gets ~F of
  their records, binomially, not exactly ceil(n*F) as the former every-1/F-th rule did).
* max_per_owner N (with or without F): the owner's N eligible records with the smallest rank among
  those the fraction admits. "Eligible" keeps the former rule: a record that already carries the ghost
  counts, one without a sentence boundary does not. This needs the whole input: a first pass finds
  each owner's threshold (the N-th smallest eligible rank), either with a bounded heap per owner
  (SmallestRanks: memory O(owners x N); the eligibility check runs only for records that enter a heap,
  about N(1 + ln(n/N)) per owner) or, for a seekable JSONL file, by walking each owner's records in rank
  order (jsonl.py); the tagging pass chooses rank <= threshold. Records sharing an id share a rank, so
  duplicates are chosen together (keep ids unique).
"""
from __future__ import annotations

import hashlib
import heapq
import json
import random
from dataclasses import dataclass, field
from typing import Any, Callable

RULE_VERSION = "keyed-hmac-sha256-v1"
_TWO64 = 1 << 64


def record_key(record_id: Any, position: int) -> str:
    """The key a record is selected by: its id value if the policy names an id field, else its position."""
    if record_id is None:
        return f"n:{position}"
    return "id:" + json.dumps(record_id, ensure_ascii=False, sort_keys=True)


class KeyedRandom:
    """The random source placement draws from: bits from a keyed digest (then SHA-256 of it, extended as
    needed), deterministic per record, unpredictable without the secret.

    Not a random.Random subclass, because making one runs the C constructor, which seeds a Mersenne
    Twister state we never use (about 2 us a record, a tenth of tagging one). It offers random.Random's
    API over getrandbits by borrowing Random's own pure-Python methods (they only call getrandbits,
    _randbelow and random), so every draw is what random.Random's code computes from these bits, as the
    former SystemRandom subclass did (tests/test_tagging.py compares the two draw by draw)."""

    __slots__ = ("_buf", "_pos", "_seed", "_n")

    def __init__(self, seed: bytes) -> None:
        self._buf, self._pos, self._seed, self._n = seed, 0, seed, 0

    _randbelow = random.Random._randbelow_with_getrandbits
    randint, choice, choices, shuffle, sample = (random.Random.randint, random.Random.choice,
                                                 random.Random.choices, random.Random.shuffle, random.Random.sample)
    uniform = random.Random.uniform

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        """random.Random.randrange, with its one-argument case (placement's only one) inlined: the
        same rejection sampling on getrandbits(n.bit_length()), so the same draws, at a third the cost."""
        if stop is None and step == 1 and type(start) is int and start > 0:
            k = start.bit_length()
            r = self.getrandbits(k)
            while r >= start:
                r = self.getrandbits(k)
            return r
        return random.Random.randrange(self, start, stop, step)  # type: ignore[arg-type]

    def getrandbits(self, k: int) -> int:
        if k < 0:
            raise ValueError("number of bits must be non-negative")
        n = (k + 7) // 8
        while self._pos + n > len(self._buf):
            self._n += 1
            self._buf = self._buf[self._pos:] + hashlib.sha256(self._seed + self._n.to_bytes(8, "big")).digest()
            self._pos = 0
        pos = self._pos
        self._pos = pos + n
        return int.from_bytes(self._buf[pos:pos + n], "big") >> (n * 8 - k)

    def random(self) -> float:
        return self.getrandbits(53) * (1.0 / (1 << 53))


@dataclass(frozen=True)
class SelectionKey:
    """The secret the keyed hash uses and its public id (SHA-256 prefix: safe to log and record)."""

    secret: bytes
    key_id: str

    @classmethod
    def of(cls, secret: bytes, label: str | None = None) -> "SelectionKey":
        return cls(secret, label or "sha256:" + hashlib.sha256(secret).hexdigest()[:16])

    @classmethod
    def from_seed(cls, seed: int) -> "SelectionKey":
        """A predictable key for tests and studies (--seed)."""
        return cls(hashlib.sha256(f"ghostsent-selection-seed:{seed}".encode()).digest(), f"seed:{seed}")

    def digest_fn(self) -> Callable[[str, str], bytes]:
        """digest(owner, key) -> the 32-byte HMAC-SHA256. RFC 2104 spelt out on two SHA-256 states keyed
        once (inner and outer pad), copied per record: about half the cost of copying an hmac object
        (and a third of hmac.digest's, which sets the key up again on every call)."""
        secret = self.secret if len(self.secret) <= 64 else hashlib.sha256(self.secret).digest()
        secret = secret.ljust(64, b"\0")
        inner = hashlib.sha256(bytes(b ^ 0x36 for b in secret))
        outer = hashlib.sha256(bytes(b ^ 0x5C for b in secret))

        def digest(owner: str, key: str) -> bytes:
            h = inner.copy()
            h.update(f"{owner}\x00{key}".encode("utf-8", "surrogatepass"))
            o = outer.copy()
            o.update(h.digest())
            return o.digest()

        return digest


def rank_of(d: bytes) -> int:
    return int.from_bytes(d[:8], "big")


def rng_of(d: bytes) -> KeyedRandom:
    return KeyedRandom(d[8:])


@dataclass
class Selection:
    """The rule for one job. `wants(owner, d)` is stateless given `thresholds` (set by the first pass
    when max_per_owner is used; an owner without one has no eligible record)."""

    key: SelectionKey
    max_per_owner: int | None = None
    fraction: float | None = None
    thresholds: dict[str, int] | None = None
    # digest -> (status, offset, inserted span, hash(text)) of the chosen records the first pass already
    # placed; tag_record reuses one only for the same text (records sharing an id share a digest)
    placed: dict[bytes, tuple[str, int, str, int]] = field(default_factory=dict)

    @property
    def needs_first_pass(self) -> bool:
        return bool(self.max_per_owner)  # None: no cap; 0: nothing is chosen, nothing to rank

    @property
    def cutoff(self) -> int:
        """Ranks below this pass the fraction (all of them without one)."""
        return _TWO64 if self.fraction is None else int(self.fraction * _TWO64)

    def admits(self, d: bytes) -> bool:
        """Whether the fraction lets this record compete (the first pass counts only these)."""
        return self.fraction is None or rank_of(d) < self.cutoff

    def wants(self, owner: str, d: bytes) -> bool:
        if self.max_per_owner is None:
            return self.admits(d)
        if self.max_per_owner == 0 or self.thresholds is None:
            return False
        t = self.thresholds.get(owner)
        return t is not None and rank_of(d) <= t and self.admits(d)

    def rule(self) -> dict:
        """What the ledger records about this rule (never the secret)."""
        return {"rule": RULE_VERSION, "key_id": self.key.key_id, "max_per_owner": self.max_per_owner,
                "fraction": self.fraction}


@dataclass
class SmallestRanks:
    """The first pass for max_per_owner: per owner, a max-heap (negated) of the N smallest eligible ranks.
    `offer` calls `evaluate()` only when the rank would enter the heap; a truthy result (the record's
    placement, core.eligible) is kept while the rank stays in the heap, so the tagging pass need not
    place the chosen records again (memory O(owners x N) small tuples)."""

    n: int
    heaps: dict[str, list[int]] = field(default_factory=dict)
    payload: dict[tuple[str, int], Any] = field(default_factory=dict)

    def would_enter(self, owner: str, rank: int) -> bool:
        h = self.heaps.get(owner)
        return self.n > 0 and (h is None or len(h) < self.n or rank < -h[0])

    def offer(self, owner: str, rank: int, evaluate: Callable[[], Any]) -> None:
        if not self.would_enter(owner, rank):
            return
        got = evaluate()
        if not got:
            return
        h = self.heaps.setdefault(owner, [])
        if len(h) < self.n:
            heapq.heappush(h, -rank)
        else:
            self.payload.pop((owner, -heapq.heapreplace(h, -rank)), None)
        self.payload[(owner, rank)] = got

    def merge(self, other: "SmallestRanks") -> None:
        """Combine another shard's heaps (the same N)."""
        for owner, h in other.heaps.items():
            for r in h:
                self.offer(owner, -r, lambda o=owner, r=r: other.payload.get((o, -r), True))

    def thresholds(self) -> dict[str, int]:
        """Each owner's largest chosen rank: records with rank <= it are the owner's N."""
        return {owner: -h[0] for owner, h in self.heaps.items() if h}

    def placed(self) -> dict[bytes, tuple[str, int, str, int]]:
        """digest -> (status, offset, inserted, hash of the text) for the chosen records whose payload is core.eligible's."""
        return {p[0]: p[1:] for p in self.payload.values() if isinstance(p, tuple)}
