"""The boundary rules as they were before the speed work (commit 181cb72), kept as the oracle for
tests/test_sentences_fast.py: the fast paths in ghostsent.sentences must give the same results.

One deliberate change since (issue 8): an unclosed fence, HTML comment, raw-text element or $$ block
runs one past the end of the text (a `\\Z` anchor instead of `$`, end len(text) + 1), as in ghostsent.sentences."""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

# Lower-cased tokens that end in a period without ending a sentence. Single letters (initials) and
# dotted forms such as "e.g." / "U.S." are handled by rule, not listed.
ABBREVIATIONS = frozenset(
    """
    mr mrs ms mx dr prof sr jr st mt ft rev hon gen col lt sgt capt cmdr gov sen rep pres supt
    vs etc al cf ca approx appx est dept univ assn bros inc ltd co corp llc plc
    no nos vol vols p pp ch chap sec fig figs eq eqs ed eds trans repr ser art para
    jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thur thurs fri sat sun
    min max avg ref refs op viz resp incl excl misc dept esp
    """.split()
)

_TERMINAL = re.compile(r"(?:[.!?]+|\u2026)[\"')\]}\u201d\u2019\u00bb]*(?=\s|$)")
_TOKEN_BEFORE = re.compile(r"[^\s(\[{\"'\u201c\u2018\u00ab]*$")
_DOTTED_ABBREV = re.compile(r"^(?:[A-Za-z]{1,3}\.)+[A-Za-z]{1,3}$")
_ORDERED_MARKER = re.compile(r"^\s{0,3}\d{1,9}[.)]$")

_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}(?:\s|$)")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(?:=+|-+)\s*$")
_TABLE_DELIM = re.compile(r"^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)+\|?\s*$|^\s*\|\s*:?-+:?\s*\|?\s*$")
_LINK_REFDEF = re.compile(r"^ {0,3}\[[^\]\n]+\]:")

# Inline regions, each with a cheap substring trigger: most texts have no '<', '@' or '://' at all, and
# skipping those patterns is what keeps tag-jsonl near raw JSON speed.
_INLINE: tuple[tuple[tuple[str, ...], re.Pattern], ...] = (
    (("<!--",), re.compile(r"<!--[\s\S]*?(?:(?P<close>-->)|\Z)")),             # HTML comment
    (("<",), re.compile(r"<(pre|script|style|code|textarea|math|svg)\b[\s\S]*?(?:(?P<close></\1\s*>)|\Z)", re.I)),
    (("<",), re.compile(r"<[A-Za-z/!?][^<>]*>")),                               # tags, <http://..> autolinks
    (("$$",), re.compile(r"\$\$[\s\S]*?(?:(?P<close>\$\$)|\Z)")),              # display math
    (("](",), re.compile(r"!?\[[^\[\]\n]*\]\([^()\n]*(?:\([^()\n]*\)[^()\n]*)*\)")),  # [text](url)
    (("][",), re.compile(r"!?\[[^\[\]\n]*\]\[[^\[\]\n]*\]")),                # [text][ref]
    (("://",), re.compile(r"(?:https?|ftp|file)://\S+", re.I)),                  # URLs
    (("www.", "WWW."), re.compile(r"\bwww\.\S+", re.I)),
    (("mailto:",), re.compile(r"\bmailto:\S+", re.I)),
    (("@",), re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),                    # e-mail addresses
)
_BACKTICKS = re.compile(r"`+")


@dataclass(frozen=True)
class Boundary:
    """A place a ghost may go. `kind` is "after" (insert " "+ghost) or "before" (insert ghost+" ")."""

    offset: int
    kind: str

    def inserted(self, ghost_text: str) -> str:
        """The span that goes in: the ghost, a full stop if it has no terminal punctuation (so sentence
        splitters downstream keep it a sentence of its own), and one space on the open side."""
        if not ghost_text.rstrip().endswith((".", "!", "?", "\u2026", "\u3002")):
            ghost_text = ghost_text + "."
        return " " + ghost_text if self.kind == "after" else ghost_text + " "


def _lines(text: str) -> list[tuple[int, int, str]]:
    """(start, end_including_newline, content_without_line_ending) for every '\\n'-terminated line."""
    out = []
    pos = 0
    n = len(text)
    while pos < n:
        nl = text.find("\n", pos)
        end = n if nl < 0 else nl + 1
        content = text[pos:end].rstrip("\n").rstrip("\r")
        out.append((pos, end, content))
        pos = end
    return out


def _is_blank(line: str) -> bool:
    return not line.strip()


def _front_matter(lines: list[tuple[int, int, str]]) -> int:
    """Number of lines taken by YAML (---) or TOML (+++) front matter at the very start (0 if none)."""
    if not lines:
        return 0
    first = lines[0][2].lstrip("\ufeff").rstrip()
    if first not in ("---", "+++"):
        return 0
    closers = ("---", "...") if first == "---" else ("+++",)
    for i in range(1, len(lines)):
        if lines[i][2].rstrip() in closers:
            return i + 1
    # An unclosed "---" is a thematic break in Markdown, not front matter; an unclosed "+++" is odd
    # either way. Protecting only the first line is the conservative reading for both.
    return 1


def _code_spans(text: str) -> list[tuple[int, int]]:
    """Inline code: a run of N backticks up to the next run of exactly N (CommonMark rule)."""
    spans = []
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(text)]
    i = 0
    while i < len(runs):
        s, e = runs[i]
        width = e - s
        for j in range(i + 1, len(runs)):
            if runs[j][1] - runs[j][0] == width:
                spans.append((s, runs[j][1]))
                i = j
                break
        i += 1
    return spans


def protected_spans(text: str) -> list[tuple[int, int]]:
    """Sorted, merged [start, end) spans of `text` that a ghost must never go inside."""
    lines = _lines(text)
    spans: list[tuple[int, int]] = []
    fm = _front_matter(lines)
    if fm:
        spans.append((0, lines[fm - 1][1]))
    i = fm
    n = len(lines)
    prev_blank = True
    while i < n:
        start, end, line = lines[i]
        m = _FENCE_OPEN.match(line)
        if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
            fence = m.group(1)
            j = i + 1
            while j < n:
                close = lines[j][2].lstrip(" ")
                if len(lines[j][2]) - len(close) <= 3 and close.startswith(fence[0] * len(fence)) and \
                        not close.strip(fence[0]).strip():
                    break
                j += 1
            last = min(j, n - 1)
            spans.append((start, lines[last][1] if j < n else len(text) + 1))
            i = last + 1
            prev_blank = False
            continue
        if _is_blank(line):
            prev_blank = True
            i += 1
            continue
        # Indented code (and anything indented 4+ columns: list continuations are only skipped too).
        if line.startswith("\t") or line.startswith("    ") or _ATX_HEADING.match(line):
            spans.append((start, end))
        elif _LINK_REFDEF.match(line):
            spans.append((start, end))
        elif line.lstrip().startswith("|"):
            spans.append((start, end))
        prev_blank = False
        i += 1
    # Tables: any block of consecutive non-blank lines that contains a delimiter row. Setext headings:
    # a block whose later line is all "=" or "-" is heading text up to that line.
    block_start = None
    for k, (start, end, line) in enumerate(lines + [(len(text), len(text), "")]):
        if _is_blank(line):
            if block_start is not None:
                block = lines[block_start:k]
                if any("|" in b[2] and _TABLE_DELIM.match(b[2]) for b in block):
                    spans.append((block[0][0], block[-1][1]))
                for u in range(len(block) - 1, 0, -1):
                    if _SETEXT_UNDERLINE.match(block[u][2]):
                        spans.append((block[0][0], block[u][1]))
                        break
                block_start = None
        elif block_start is None:
            block_start = k
    if "`" in text:
        spans.extend(_code_spans(text))
    for triggers, pattern in _INLINE:
        if any(t in text for t in triggers):
            spans.extend((m.start(), m.end() if "close" not in pattern.groupindex or m.group("close") is not None
                          else len(text) + 1) for m in pattern.finditer(text))
    return _merge(spans)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    spans = sorted(s for s in spans if s[1] > s[0])
    out: list[tuple[int, int]] = []
    for s, e in spans:
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def _is_sentence_end(text: str, m: re.Match) -> bool:
    """Filter a terminal-punctuation match: abbreviations, initials, list markers, lower-case follow."""
    s = m.start()
    punct = m.group(0).rstrip("\"')]}\u201d\u2019\u00bb")
    # What follows: lower case after the break means the sentence did not end ("approx. three").
    k = m.end()
    n = len(text)
    while k < n and text[k].isspace():
        k += 1
    if k < n and text[k].islower():
        return False
    if punct == ".":
        token = _TOKEN_BEFORE.search(text, max(0, s - 40), s).group(0)
        if not token:
            return False
        bare = token.lower().lstrip("*_~")
        if bare in ABBREVIATIONS:
            return False
        if len(bare) == 1 and bare.isalpha():
            return False  # an initial: "J. Smith"
        if _DOTTED_ABBREV.match(token):
            return False  # "e.g.", "U.S.", "Ph.D."
        line_start = text.rfind("\n", 0, s) + 1
        if _ORDERED_MARKER.match(text[line_start:s + 1]):
            return False  # "1. item"
    return True


def sentence_boundaries(text: str, spans: list[tuple[int, int]] | None = None, start: int = 0) -> list[Boundary]:
    """All places a ghost may go at offsets >= `start`, in text order; empty when there is none.

    `start` lets the latter-half and end strategies skip scanning the first half (tag-jsonl speed)."""
    if spans is None:
        spans = protected_spans(text)
    cands: list[Boundary] = []
    # Paragraph starts: first line of a block, starting with a letter, digit or opening quote.
    prev_blank = True
    first = start
    for start, end, line in _lines(text):
        if _is_blank(line):
            prev_blank = True
            continue
        if prev_blank and end > first:
            stripped = line.lstrip(" ")
            if len(line) - len(stripped) <= 3 and stripped and (stripped[0].isalnum() or stripped[0] in "\"'\u201c\u2018\u00ab") \
                    and not re.match(r"\d{1,9}[.)](?:\s|$)", stripped):
                cands.append(Boundary(start + len(line) - len(stripped), "before"))
        prev_blank = False
    for m in _TERMINAL.finditer(text, max(0, first - 8)):
        if m.end() >= first and _is_sentence_end(text, m):
            cands.append(Boundary(m.end(), "after"))
    cands.sort(key=lambda b: (b.offset, b.kind))
    return [b for b in cands if b.offset >= first and _allowed(b, spans)]


def _allowed(b: Boundary, spans: list[tuple[int, int]]) -> bool:
    """Outside every span. A "before" ghost attaches to what follows, so a span's start is off limits."""
    p = b.offset
    i = bisect.bisect_right(spans, (p, float("inf"))) - 1
    if i >= 0:
        s, e = spans[i]
        if s < p < e or (b.kind == "before" and s == p):
            return False
    return True


def line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset (lines split on '\\n')."""
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col
