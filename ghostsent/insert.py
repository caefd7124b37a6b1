"""Put a ghost sentence into a text without changing any other character.

The guarantee callers (and the ledger) rely on: for `new, off = insert(text, ghost)` with
`span = len(new) - len(text)`, `new[:off] == text[:off]` and `new[off + span:] == text[off:]`; the
inserted span is the ghost (plus a full stop if it has no terminal punctuation) and one space on the
side that needs it. The ghost goes only at a sentence
boundary outside protected regions (see ghostsent.sentences), so Markdown, code and links survive.

Why the latter half by default: a ghost near the start of a document is the first thing a data
pipeline's deduplication or quality filter sees, and the end of a document is often truncated. A
random boundary in the second half is a reasonable middle that is still hard to strip by position.

Within the half, placement prefers what survives filters and deduplication (docs/insertion.md,
"Surviving data pipelines"): first a line that C4's line rules keep with the ghost in it (it ends in
terminal punctuation), then a boundary between two of the writer's sentences on the same line, then the
end of a line's last sentence, and a paragraph start only when there is nothing else. The ghost never
forms a line or paragraph of its own, which line/paragraph dedup would keep only once.
"""
from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from typing import Callable

from ghostsent.errors import InputError
from ghostsent.placement import GhostFacts, latter_half
from ghostsent.sentences import Boundary, line_col, pick_boundary, protected_spans, sentence_boundaries

POSITIONS = ("latter-half", "start", "end", "random")
DEFAULT_POSITION = "latter-half"


class NoBoundaryError(InputError):
    """The text has no sentence boundary outside protected regions (or is empty)."""


@dataclass(frozen=True)
class Placement:
    """Where a ghost goes: `offset` of the inserted span, and the span itself (ghost + separator)."""

    offset: int
    inserted: str
    boundary: Boundary

    def apply(self, text: str) -> str:
        return text[: self.offset] + self.inserted + text[self.offset :]


def check_ghost_text(ghost_text: str) -> None:
    if not ghost_text or not ghost_text.strip():
        raise InputError("ghost sentence is empty")
    if "\n" in ghost_text or "\r" in ghost_text:
        raise InputError("ghost sentence must be a single line")


def choose_boundary(
    boundaries: list[Boundary], text_length: int, position: str, rng: random.Random | None = None
) -> Boundary:
    """Pick one boundary by strategy. `latter-half` falls back to the last boundary if none lies in the
    second half (a one-sentence text still gets its ghost)."""
    if position not in POSITIONS:
        raise InputError(f"unknown position {position!r} (choose from {', '.join(POSITIONS)})")
    if not boundaries:
        raise NoBoundaryError("no sentence boundary outside protected regions")
    chooser = rng if rng is not None else secrets.SystemRandom()
    if position == "start":
        return boundaries[0]
    if position == "end":
        return boundaries[-1]
    if position == "random":
        return boundaries[chooser.randrange(len(boundaries))]
    half = [b for b in boundaries if b.offset >= text_length / 2]
    if not half:
        return boundaries[-1]
    return half[chooser.randrange(len(half))]


def _latter_half(text: str, spans: list, rng: random.Random | None, facts: GhostFacts) -> tuple[int, str]:
    got = latter_half(text, spans, rng, facts)  # ranked for pipeline survival: ghostsent/placement.py
    if got is None:
        raise NoBoundaryError("no sentence boundary outside protected regions")
    return got


def plan(text: str, ghost_text: str, position: str = DEFAULT_POSITION,
         rng: random.Random | None = None) -> Placement:
    """Where `ghost_text` would go in `text`, without inserting it (what --dry-run shows)."""
    check_ghost_text(ghost_text)
    if position not in POSITIONS:
        raise InputError(f"unknown position {position!r} (choose from {', '.join(POSITIONS)})")
    spans = protected_spans(text)
    if position == "latter-half":
        b = Boundary(*_latter_half(text, spans, rng, GhostFacts.of(ghost_text)))
        return Placement(b.offset, b.inserted(ghost_text), b)
    if position == "end":
        # Scan only the second half first; the whole text only when it has no boundary there.
        chooser = rng if rng is not None else secrets.SystemRandom()
        got = pick_boundary(text, spans, (len(text) + 1) // 2, True, chooser)
        if got is not None:
            b = Boundary(*got)
            return Placement(b.offset, b.inserted(ghost_text), b)
    b = choose_boundary(sentence_boundaries(text, spans), len(text), position, rng)
    return Placement(b.offset, b.inserted(ghost_text), b)


def placer(ghost_text: str, position: str = DEFAULT_POSITION) -> Callable[[str, random.Random], tuple[int, str]]:
    """plan() for many texts and one ghost (tag-jsonl's hot path): returns place(text, rng) ->
    (offset, inserted span), the same placement plan() makes with that rng, without building a
    Placement; raises NoBoundaryError like plan(). The ghost and position are checked once, here."""
    check_ghost_text(ghost_text)
    if position not in POSITIONS:
        raise InputError(f"unknown position {position!r} (choose from {', '.join(POSITIONS)})")
    spans_of = protected_spans
    inserted = {"after": Boundary(0, "after").inserted(ghost_text), "before": Boundary(0, "before").inserted(ghost_text)}
    last = position == "end"
    facts = GhostFacts.of(ghost_text)

    if position not in ("latter-half", "end"):
        def place_other(text: str, rng: random.Random) -> tuple[int, str]:
            p = plan(text, ghost_text, position, rng)
            return p.offset, p.inserted
        return place_other

    def place(text: str, rng: random.Random) -> tuple[int, str]:
        spans = spans_of(text)
        if not last:
            off, kind = _latter_half(text, spans, rng, facts)
            return off, inserted[kind]
        got = pick_boundary(text, spans, (len(text) + 1) // 2, last, rng)
        if got is None:  # nothing in the second half: plan's whole-text fallback
            p = plan(text, ghost_text, position, rng)
            return p.offset, p.inserted
        return got[0], inserted[got[1]]

    return place


def insert(text: str, ghost_text: str, position: str = DEFAULT_POSITION,
           rng: random.Random | None = None) -> tuple[str, int]:
    """Insert `ghost_text` at a sentence boundary; return (new_text, offset of the inserted span).

    `rng` (a random.Random) makes the choice reproducible; by default it comes from `secrets`, so the
    position cannot be predicted from the document. Raises NoBoundaryError (an InputError) when there
    is nowhere safe to put it.
    """
    p = plan(text, ghost_text, position, rng)
    return p.apply(text), p.offset


def snippet(text: str, offset: int, inserted: str, width: int = 30) -> str:
    """One-line preview: a little context either side with the inserted span in [[...]]."""
    before = text[max(0, offset - width): offset]
    after = text[offset: offset + width]
    show = lambda s: s.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")  # noqa: E731
    return f"...{show(before)}[[{show(inserted)}]]{show(after)}..."


@dataclass(frozen=True)
class Where:
    """Where an inserted span went, for people: offset, 1-based line and column, and a preview."""

    offset: int
    line: int
    col: int
    snippet: str


def where(text: str, offset: int, inserted: str) -> Where:
    line, col = line_col(text, offset)
    return Where(offset, line, col, snippet(text, offset, inserted))
