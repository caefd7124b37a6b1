"""Where in a text a ghost survives data pipelines best: the ranking behind the default placement.

Rules and reasons are in docs/insertion.md ("Surviving data pipelines"). In short, a boundary ranks by
(1) whether C4's line rules keep its line with the ghost in it (the line ends in terminal punctuation and
holds no "javascript" or cookie/terms phrase), then (2) its tier: MID_LINE (more of the writer's text
follows on the line) before LINE_END (the ghost ends the line) before PARAGRAPH_START. The ghost never
forms a line or paragraph of its own, which line/paragraph dedup would keep only once.
"""
from __future__ import annotations

import bisect
import random
import re
import secrets
from dataclasses import dataclass

from ghostsent.sentences import _TERMINAL, _TERMINAL_CHARS, Boundary, _allowed_at, _candidates, _ends_sentence, _valid, \
    boundary_offsets
from ghostsent.survive.screen import C4_ELLIPSIS, C4_END_PUNCTUATION, C4_LINE_PHRASES

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
    # the gates spelt out: a generator over _C4_GATES costs more than the four substring searches
    return ("javascript" in low or "cookie" in low or "terms of use" in low or "privacy policy" in low) and \
        any(p in low for p in C4_LINE_PHRASES)


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
    return _best(text, boundaries, GhostFacts.of(ghost_text))


@dataclass(frozen=True)
class GhostFacts:
    """What ranking needs to know about a ghost, computed once per ghost."""

    ends_ok: dict  # kind -> does the inserted span end a line in a way C4 keeps
    phrase: bool   # does the ghost itself contain a C4 line phrase

    @classmethod
    def of(cls, ghost_text: str) -> "GhostFacts":
        ins = {k: Boundary(0, k).inserted(ghost_text) for k in ("after", "before")}
        return cls({k: _c4_terminal(v) for k, v in ins.items()}, _c4_phrase(ghost_text))


def _ranks(text: str, boundaries: "list[tuple[int, str]]", g: GhostFacts) -> list[tuple[int, int]]:
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


def _best(text: str, boundaries: "list[tuple[int, str]]", g: GhostFacts) -> "list[tuple[int, str]]":
    ranks = _ranks(text, boundaries, g)
    best = min(ranks)
    return [b for b, r in zip(boundaries, ranks) if r == best]


def latter_half(text: str, spans: list, rng: random.Random | None, g: "GhostFacts") -> tuple[int, str] | None:
    """Default placement: uniform over the best-ranked boundaries of the second half; without any in
    the second half, the last best-ranked boundary of the whole text; None when there is no boundary.

    Candidates are ranked first (cheap: per line) and checked lazily, best rank first: draw one
    uniformly from the unchecked candidates of that rank, keep it if it is a boundary, else drop it and
    draw again (as sentences.pick_boundary does). The first rank holding a boundary is the best rank
    among the boundaries, and each of its boundaries is equally likely, at about one check instead of
    one per sentence (tag-jsonl's hot path)."""
    chooser = rng if rng is not None else secrets.SystemRandom()
    if len(text) >= 7 and "\n" not in text:  # one line, no paragraph start in the half: the fast path
        got = _one_line_half(text, spans, chooser, g)
        return got if got is not None else _whole_text_best(text, spans, g)
    return _general_half(text, spans, chooser, g)


def _general_half(text: str, spans: list, chooser: random.Random, g: "GhostFacts") -> tuple[int, str] | None:
    """latter_half for any text: candidates grouped by `_ranks`, drawn lazily best rank first."""
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
    return _whole_text_best(text, spans, g)


def _whole_text_best(text: str, spans: list, g: "GhostFacts") -> tuple[int, str] | None:
    """No boundary in the second half: the last best-ranked boundary of the whole text (None if none)."""
    whole = boundary_offsets(text, spans)
    return _best(text, whole, g)[-1] if whole else None


def _one_line_half(text: str, spans: list, chooser: random.Random, g: "GhostFacts") -> tuple[int, str] | None:
    """_general_half's pools and draws for a text without a newline, of length >= 7 (most records), with
    its per-line work done once: then the half (from (len + 1) // 2 > 3) has no paragraph start, every
    candidate is terminal punctuation on the one line, and `_ranks` gives just two ranks: MID_LINE for
    those before the line's last non-space character, LINE_END (a suffix) for the rest. The pools hold the
    same candidates in the same order and are drawn from identically (tests/test_sentences_fast.py checks
    this against _general_half on random texts); None when no candidate of the half is a boundary."""
    first = (len(text) + 1) // 2
    pos = max(0, first - 8)
    while pos > 0 and text[pos - 1] in _TERMINAL_CHARS:
        pos -= 1
    found = list(_TERMINAL.finditer(text, pos))
    j = 0
    while j < len(found) and found[j].end() < first:  # the scan starts a little before the half
        j += 1
    if j == len(found):
        return None
    if j:
        del found[:j]
    last = len(text.rstrip())
    k = len(found)
    while k and found[k - 1].end() >= last:
        k -= 1
    ok = not g.phrase and not _c4_phrase(text)
    mid_rank = (0 if ok and _c4_terminal(text) else 1, MID_LINE)
    end_rank = (0 if ok and g.ends_ok["after"] else 1, LINE_END)
    mid, end = found[:k], found[k:]
    for pool in ((mid, end) if mid_rank < end_rank else (end, mid)):
        while pool:
            i = chooser.randrange(len(pool)) if len(pool) > 1 else 0
            m = pool[i]
            off = m.end()
            if _ends_sentence(text, m.start(), off, m.group()) and (not spans or _allowed_at(off, "after", spans)):
                return off, "after"
            pool[i] = pool[-1]
            pool.pop()
    return None
