"""THE tagging rules, in one place: every front end (files, JSONL, and any later format, engine or
service) calls `tag_text` or `tag_record` and only handles its own bytes.

The rules: a text that already carries the ghost is left alone (idempotent); otherwise the ghost goes at
a sentence boundary outside protected regions (ghostsent.insert), or nowhere (no boundary); nothing else
of the text changes. For records (one JSON object per post): the owner field names who the ghost belongs
to (normalised as the ledger stores owners), the text field must be a string of valid Unicode, the
selection rule (selection.py: a keyed hash of owner and record id, so every shard agrees) picks which of
an owner's records get it and where in the text, and the id field (if used) names the document in the
ledger. A record that breaks a rule raises BadRecord with the reason.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, NamedTuple, Protocol

from ghostsent.errors import InputError
from ghostsent.insert import DEFAULT_POSITION, POSITIONS, NoBoundaryError, placer
from ghostsent.names import has_surrogate, normalise_owner
from ghostsent.tagging.selection import Selection, record_key, rng_of

TAGGED, ALREADY_TAGGED, NO_BOUNDARY, NOT_SELECTED = "tagged", "already-tagged", "no-boundary", "not-selected"
MISSING = object()  # a field a record does not have


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BadRecord(Exception):
    """A record the rules cannot tag (missing or mistyped field, invalid Unicode); the message says why.
    `read` is True when the record's owner and text were fine (it still counts as a record)."""

    def __init__(self, message: str, read: bool = False) -> None:
        super().__init__(message)
        self.read = read


@dataclass(frozen=True)
class TagPolicy:
    """How records are read and where ghosts go: the settings every front end shares."""

    text_field: str = "text"
    owner_field: str = "owner"
    id_field: str | None = None
    position: str = DEFAULT_POSITION
    max_per_owner: int | None = None
    fraction: float | None = None

    def validate(self) -> None:
        if self.position not in POSITIONS:
            raise InputError(f"unknown position {self.position!r} (choose from {', '.join(POSITIONS)})")
        if self.max_per_owner is not None and self.max_per_owner < 0:
            raise InputError("the most records per owner must be >= 0")
        if self.fraction is not None and not 0.0 <= self.fraction <= 1.0:
            raise InputError("the fraction of records must be between 0 and 1")
        if not self.text_field or not self.owner_field:
            raise InputError("the text and owner field names must not be empty")


@dataclass(frozen=True)
class OwnerGhost:
    """One identifier as tagging uses it: its id, its ghost text and a placer for many texts."""

    identifier_id: str
    text: str
    place: Callable[[str, random.Random], tuple[int, str]]

    @classmethod
    def of(cls, identifier: Any, position: str = DEFAULT_POSITION) -> "OwnerGhost":
        return cls(identifier.id, identifier.text, placer(identifier.text, position))


class TextTag(NamedTuple):
    """What tagging did to one text: its status and, when tagged, where the span went. (This and the
    other per-record results are NamedTuples, immutable like a frozen dataclass at a third of the cost
    to build: three are built for every record.)"""

    status: str                 # tagged | already-tagged | no-boundary | not-selected
    text: str
    offset: int = -1
    inserted: str = ""

    @property
    def new_text(self) -> str:
        return self.text[:self.offset] + self.inserted + self.text[self.offset:] if self.status == TAGGED else self.text

    def insertion(self, identifier_id: str, document: str, strategy: str,
                  new_text: str | None = None) -> tuple[str, str, str, str, int, str]:
        """The ledger row for this insertion, with the texts' UTF-8 hashes (a record's text field).
        `new_text`: self.new_text when the caller has built it already."""
        return (identifier_id, document, sha256_hex(self.text.encode("utf-8")),
                sha256_hex((self.new_text if new_text is None else new_text).encode("utf-8")), self.offset, strategy)


def tag_text(text: str, ghost: OwnerGhost, rng: random.Random) -> TextTag:
    """`text` with `ghost` at a sentence boundary, or why not (already there, no boundary)."""
    if ghost.text in text:
        return TextTag(ALREADY_TAGGED, text)
    try:
        offset, inserted = ghost.place(text, rng)
    except NoBoundaryError:
        return TextTag(NO_BOUNDARY, text)
    return TextTag(TAGGED, text, offset, inserted)


class Ghosts(Protocol):
    """Where a front end gets each owner's ghost (a ledger: the owner's identifier, created if new)."""

    def ghost_for(self, owner: str) -> OwnerGhost: ...


class RecordTag(NamedTuple):
    """What tagging did to one record: the text tag, whose ghost, and the record's id (if the policy
    names an id field)."""

    tag: TextTag
    owner: str
    ghost: OwnerGhost | None = None
    record_id: Any = None



def get_field(obj: dict, name: str) -> Any:
    """Top-level key `name`, else a dotted path into nested objects ("meta.author"); MISSING if absent."""
    v = obj.get(name, MISSING)
    if v is not MISSING or "." not in name:
        return v
    cur: Any = obj
    for part in name.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return MISSING
        cur = cur[part]
    return cur


def field_getter(name: str) -> Callable[[dict], Any]:
    """get_field for one name, without the dotted-path work when the name has no dot."""
    if "." in name:
        return lambda obj: get_field(obj, name)
    return lambda obj: obj.get(name, MISSING)


def _owner_value(value: Any, field: str) -> None:
    if value is MISSING or value is None:
        raise BadRecord(f"missing owner field {field!r}")
    if isinstance(value, (dict, list, bool)):
        raise BadRecord(f"owner field {field!r} is not a string or number")


@lru_cache(maxsize=1 << 20, typed=True)
def owner_name(value: Any, field: str) -> str:
    """A record's owner value as the ledger stores owners (BadRecord if it cannot be one). Cached: a
    corpus has few owners."""
    _owner_value(value, field)
    name = value if type(value) is str else str(value)
    if has_surrogate(name):
        raise BadRecord(f"owner field {field!r} contains a lone surrogate escape (not valid Unicode)")
    try:
        return normalise_owner(name, f"owner field {field!r}")
    except InputError as e:
        raise BadRecord(str(e)) from None


def record_text(record: dict, policy: TagPolicy, get_text: Callable[[dict], Any] | None = None) -> str:
    """The record's text field (BadRecord unless it is a string of valid Unicode)."""
    text = (get_text or field_getter(policy.text_field))(record)
    if type(text) is not str:
        raise BadRecord(f"missing text field {policy.text_field!r}" if text is MISSING
                        else f"text field {policy.text_field!r} is not a string")
    if has_surrogate(text):
        raise BadRecord(f"text field {policy.text_field!r} contains a lone surrogate escape (not valid Unicode)")
    return text


def record_id(record: dict, policy: TagPolicy) -> Any:
    """The record's id field value (BadRecord if missing or not a scalar); None without an id field."""
    if policy.id_field is None:
        return None
    rid = get_field(record, policy.id_field)
    if rid is MISSING or rid is None or isinstance(rid, (dict, list)):
        raise BadRecord(f"missing id field {policy.id_field!r}", read=True)
    if isinstance(rid, str) and has_surrogate(rid):
        raise BadRecord(f"id field {policy.id_field!r} contains a lone surrogate escape (not valid Unicode)",
                        read=True)
    return rid


@dataclass
class RecordRules:
    """A policy made ready for a stream of records: the selection rule (selection.py), its keyed hash
    and the field getters, built once per job (or once per Spark partition)."""

    policy: TagPolicy
    selection: Selection

    def __post_init__(self) -> None:
        self.digest = self.selection.key.digest_fn()
        self.get_owner = field_getter(self.policy.owner_field)
        self.get_text = field_getter(self.policy.text_field)

    def __reduce__(self) -> tuple:
        """Pickled as its policy and selection (for --workers processes); the getters are rebuilt."""
        return (RecordRules, (self.policy, self.selection))


class RankedRecord(NamedTuple):
    """A readable record's owner, text, id and keyed digest (what selection and placement use)."""

    owner: str
    text: str
    record_id: Any
    digest: bytes


def rank_record(record: Any, rules: RecordRules, position: int, keyed: bool = True) -> RankedRecord:
    """Read a record's owner, text and id and compute its keyed digest (b"" when not `keyed`); BadRecord
    if it cannot be tagged. `position` is its 1-based line or row number (its key when the policy has no
    id field)."""
    if type(record) is not dict:
        raise BadRecord(f"expected a JSON object, got {type(record).__name__}")
    policy = rules.policy
    raw_owner = rules.get_owner(record)
    _owner_value(raw_owner, policy.owner_field)
    text = record_text(record, policy, rules.get_text)
    owner = owner_name(raw_owner, policy.owner_field)
    rid = record_id(record, policy)
    return RankedRecord(owner, text, rid, rules.digest(owner, record_key(rid, position)) if keyed else b"")


def tag_record(record: Any, ghosts: Ghosts, rules: RecordRules, position: int) -> RecordTag:
    """Tag one record's text field with its owner's ghost if the selection rule picks it, at the place
    the record's keyed digest chooses (the same on every shard and re-run). Raises BadRecord for a
    record the rules cannot tag. Stateless: the front end writes the record and the insertion."""
    sel = rules.selection
    r = rank_record(record, rules, position, keyed=sel.max_per_owner != 0)  # a cap of 0 needs no hash
    if not sel.wants(r.owner, r.digest):
        return RecordTag(TextTag(NOT_SELECTED, r.text), r.owner, None, r.record_id)
    ghost = ghosts.ghost_for(r.owner)
    # placed by the first pass already, if that was this very text: records sharing an owner and id share
    # a digest, and a duplicate must not get another text's offset
    known = sel.placed.get(r.digest) if sel.placed else None
    if known is not None and known[3] == hash(r.text):
        tag = TextTag(known[0], r.text, known[1], known[2])
    else:
        tag = tag_text(r.text, ghost, rng_of(r.digest))
    return RecordTag(tag, r.owner, ghost, r.record_id)


def eligible(r: RankedRecord, ghosts: Ghosts) -> tuple[bytes, str, int, str, int] | None:
    """Whether a record would count as one of its owner's tagged records if chosen (selection.py): it
    carries the ghost already, or has a sentence boundary for it. Eligible: (digest, status, offset,
    inserted span, hash of the text), which the tagging pass reuses for the same text instead of placing
    the ghost again; else None."""
    t = tag_text(r.text, ghosts.ghost_for(r.owner), rng_of(r.digest))
    return None if t.status == NO_BOUNDARY else (r.digest, t.status, t.offset, t.inserted, hash(r.text))
