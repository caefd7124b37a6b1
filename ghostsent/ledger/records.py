"""What a ledger holds, as typed records: identifiers, insertions, runs, tests and disclosures.

Every backend (ghostsent/ledger/sqlite.py today) stores and returns these; nothing here touches a file.
The formats fixed here (ids, salts, times) are checked on import too (ghostsent/ledger/transfer.py).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from ghostsent.passphrase import Ghost
from ghostsent.wordlists import normalise

ID_RE = re.compile(r"^gs-[0-9a-f]{10}$")
SALT_RE = re.compile(r"^[0-9a-f]{32}$")
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
DRAWN_RE = re.compile(r"^(?:secrets|rng|seed:-?\d+)$")
# ghostsent.insert.POSITIONS, plus "recovered": a record rebuilt for a file a killed run had already
# written (see tagging/files.py, FileTagger.recovery). A test checks the list against POSITIONS.
STRATEGIES = ("latter-half", "start", "end", "random", "recovered")
ROLES = ("member", "control")
_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})$")


def utcnow() -> str:
    """ISO-8601 UTC with a Z, to the microsecond so the creation order is kept."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(value: str) -> datetime | None:
    """An ISO-8601 time with a zone ("...Z" or "+01:00"), as an aware datetime; None if it is not one.
    Times are compared parsed, never as strings, so no odd spelling can sort as "newest"."""
    if not isinstance(value, str) or not _TIME_RE.match(value):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def passphrase_key(words: "tuple[str, ...] | list[str]") -> str:
    """The form passphrases are compared in for uniqueness (each word NFKC+casefolded)."""
    return " ".join(normalise(w) for w in words)


@dataclass(frozen=True)
class Identifier:
    id: str                 # "gs-" + 10 random lowercase hex digits
    owner: str
    ghost: Ghost
    wordlist_name: str
    wordlist_sha256: str
    created_at: str         # ISO-8601 UTC
    drawn: str              # "secrets", "seed:<int>" or "rng" (a caller's seeded generator)
    # The commitment salt (hex). Not part of equality: two records of the same draw are the same identifier.
    salt: str = field(default="", repr=False, compare=False)

    @property
    def text(self) -> str:
        return self.ghost.text

    @property
    def words(self) -> tuple[str, ...]:
        return self.ghost.words

    @property
    def n_words(self) -> int:
        return len(self.ghost.words)

    @property
    def passphrase(self) -> str:
        return self.ghost.passphrase

    def to_dict(self, reveal: bool = False) -> dict[str, Any]:
        d = {
            "id": self.id, "owner": self.owner, "text": self.text, "words": list(self.words),
            "template": self.ghost.template, "wordlist_name": self.wordlist_name,
            "wordlist_sha256": self.wordlist_sha256, "n_words": self.n_words,
            "created_at": self.created_at, "drawn": self.drawn,
        }
        if reveal:
            d["salt"] = self.salt
        return d


@dataclass(frozen=True)
class Insertion:
    id: int
    identifier_id: str
    document: str
    sha256_before: str
    sha256_after: str
    offset: int
    strategy: str
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunRecord:
    """One prompt/reply/score of a stored run. `identifier_id` is None for a control passphrase."""

    identifier_id: str | None
    role: str                  # "member" or "control"
    test: str                  # "probe", "ppl", ...
    prompt: str | None
    reply: str | None
    score: float | None
    p_value: float | None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TestRecord:
    """One test of an identifier (taken before it ran; p_value None = never finished, counts as 1)."""

    __test__ = False  # not a pytest test class

    id: int
    identifier_id: str
    number: int
    kind: str
    model: str
    started_at: str
    finished_at: str | None
    stored: bool
    run_id: int | None
    p_value: float | None
    p_history: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DisclosureRecord:
    """Which passphrase words (0-based indices) were shown to which endpoint, and through what."""

    id: int
    identifier_id: str
    test_id: int | None
    endpoint: str
    via: str                   # probe, ppl or card
    words: list[int]
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
