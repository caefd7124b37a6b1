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

import bisect
import random
import re
import secrets
from dataclasses import dataclass
from typing import Callable

from ghostsent.errors import InputError
from ghostsent.survive.screen import C4_ELLIPSIS, C4_END_PUNCTUATION, C4_LINE_PHRASES
from ghostsent.sentences import (Boundary, _candidates, _valid, boundary_offsets, line_col, pick_boundary,
                                 protected_spans, sentence_boundaries)

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


MID_LINE, LINE_END, PARAGRAPH_START = 0, 1, 2  # placement tiers, best first


def tier(text: str, offset: int, kind: str) -> int:
    """How well a boundary hides a ghost from deduplication: MID_LINE when more of the writer's text
    follows on the same line (the ghost sits between two of their sentences), LINE_END after the last
    sentence of a line, PARAGRAPH_START at the start of a paragraph (the ghost opens it)."""
    if kind == "before":
        return PARAGRAPH_START
    nl = text.find("\n", offset)
    return MID_LINE if text[offset:nl if nl >= 0 else len(text)].strip() else LINE_END


_NEWLINE = re.compile("\n")
# Every C4 line phrase contains one of these (a superset test first: plain substring searches are fast,
# a case-insensitive alternation is not); the exact test runs only past it.
_C4_GATES = ("javascript", "cookie", "terms of use", "privacy policy")


def _c4_terminal(line: str) -> bool:
    end = line.rstrip()
    return end.lstrip().endswith(C4_END_PUNCTUATION) and not end.endswith(C4_ELLIPSIS)


def _c4_phrase(line: str) -> bool:
    low = line.lower()
    return any(g in low for g in _C4_GATES) and any(p in low for p in C4_LINE_PHRASES)


def c4_keeps_line(line: str) -> bool:
    """Would C4's line rules keep this line? It must end in terminal punctuation (not "...") and hold
    no "javascript" or cookie/terms phrase; otherwise the line, and a ghost in it, is deleted."""
    return _c4_terminal(line) and not _c4_phrase(line)


def rank(text: str, offset: int, kind: str, inserted: str) -> tuple[int, int]:
    """Sort key of a boundary, best first: a line C4 keeps (judged with the ghost in it), then tier."""
    start = text.rfind("\n", 0, offset) + 1
    nl = text.find("\n", offset)
    line = text[start:offset] + inserted + text[offset:nl if nl >= 0 else len(text)]
    return (0 if c4_keeps_line(line) else 1, tier(text, offset, kind))


def best_tier(text: str, boundaries: "list[tuple[int, str]]", ghost_text: str = "g") -> "list[tuple[int, str]]":
    """The boundaries of the best rank present (in text order). The ranks are `rank`'s, computed once per
    line instead of copying the line for every boundary (a long one-line record stays linear); the one
    difference: a C4 phrase formed across the ghost's edge and its neighbour is not looked for (the
    shipped lists cannot start or end one)."""
    return _best(text, boundaries, _GhostFacts.of(ghost_text))


@dataclass(frozen=True)
class _GhostFacts:
    """What ranking needs to know about a ghost, computed once per ghost."""

    ends_ok: dict  # kind -> does the inserted span end a line in a way C4 keeps
    phrase: bool   # does the ghost itself contain a C4 line phrase

    @classmethod
    def of(cls, ghost_text: str) -> "_GhostFacts":
        ins = {k: Boundary(0, k).inserted(ghost_text) for k in ("after", "before")}
        return cls({k: _c4_terminal(v) for k, v in ins.items()}, _c4_phrase(ghost_text))


def _ranks(text: str, boundaries: "list[tuple[int, str]]", g: _GhostFacts) -> list[tuple[int, int]]:
    lines: dict[int, tuple[bool, bool, int]] = {}
    ranks = []
    # line starts found once (bisect per boundary): rfind per boundary would rescan a long line each time
    starts = [0] + [m.end() for m in _NEWLINE.finditer(text)] if "\n" in text else [0]
    for o, k in boundaries:
        start = starts[bisect.bisect_right(starts, o) - 1] if len(starts) > 1 else 0
        if start not in lines:
            nl = text.find("\n", o)
            line = text[start:nl if nl >= 0 else len(text)]
            lines[start] = (_c4_terminal(line), _c4_phrase(line), start + len(line.rstrip()))
        terminal, phrase, last = lines[start]
        ends_line = o >= last  # nothing of the writer's text follows: the ghost ends the line
        if ends_line:
            terminal = g.ends_ok[k]
        ok = terminal and not phrase and not g.phrase
        ranks.append((0 if ok else 1, PARAGRAPH_START if k == "before" else LINE_END if ends_line else MID_LINE))
    return ranks


def _best(text: str, boundaries: "list[tuple[int, str]]", g: _GhostFacts) -> "list[tuple[int, str]]":
    ranks = _ranks(text, boundaries, g)
    best = min(ranks)
    return [b for b, r in zip(boundaries, ranks) if r == best]


def _latter_half(text: str, spans: list, rng: random.Random | None, g: "_GhostFacts") -> tuple[int, str]:
    """Default placement: uniform over the best-ranked boundaries of the second half; without any in
    the second half, the last best-ranked boundary of the whole text.

    Candidates are ranked first (cheap: per line) and checked lazily, best rank first: draw one
    uniformly from the unchecked candidates of that rank, keep it if it is a boundary, else drop it and
    draw again (as sentences.pick_boundary does). The first rank holding a boundary is the best rank
    among the boundaries, and each of its boundaries is equally likely, at about one check instead of
    one per sentence (tag-jsonl's hot path)."""
    chooser = rng if rng is not None else secrets.SystemRandom()
    cands = _candidates(text, (len(text) + 1) // 2)
    if cands:
        groups: dict[tuple[int, int], list] = {}
        for c, r in zip(cands, _ranks(text, [(c[0], c[1]) for c in cands], g)):
            groups.setdefault(r, []).append(c)
        for r in sorted(groups):
            pool = groups[r]
            while pool:
                i = chooser.randrange(len(pool)) if len(pool) > 1 else 0
                c = pool[i]
                if _valid(text, c, spans):
                    return c[0], c[1]
                pool[i] = pool[-1]
                pool.pop()
    whole = boundary_offsets(text, spans)
    if not whole:
        raise NoBoundaryError("no sentence boundary outside protected regions")
    return _best(text, whole, g)[-1]


def plan(text: str, ghost_text: str, position: str = DEFAULT_POSITION,
         rng: random.Random | None = None) -> Placement:
    """Where `ghost_text` would go in `text`, without inserting it (what --dry-run shows)."""
    check_ghost_text(ghost_text)
    if position not in POSITIONS:
        raise InputError(f"unknown position {position!r} (choose from {', '.join(POSITIONS)})")
    spans = protected_spans(text)
    if position == "latter-half":
        b = Boundary(*_latter_half(text, spans, rng, _GhostFacts.of(ghost_text)))
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
    facts = _GhostFacts.of(ghost_text)

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


def snippet(text: str, placement: Placement, width: int = 30) -> str:
    """One-line preview: a little context either side with the inserted span in [[...]]."""
    before = text[max(0, placement.offset - width): placement.offset]
    after = text[placement.offset: placement.offset + width]
    show = lambda s: s.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")  # noqa: E731
    return f"...{show(before)}[[{show(placement.inserted)}]]{show(after)}..."


def describe(text: str, placement: Placement) -> dict:
    line, col = line_col(text, placement.offset)
    return {"offset": placement.offset, "line": line, "col": col, "kind": placement.boundary.kind,
            "snippet": snippet(text, placement)}
