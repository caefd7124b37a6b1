"""Where a ghost sentence may go: sentence boundaries outside protected regions.

A ghost must never break a document. So it only goes where a sentence ends or a prose paragraph
starts, and never inside anything with syntax of its own: code (fenced, indented, inline), YAML/TOML
front matter, HTML tags, comments and raw-text elements, Markdown tables, headings, link syntax, URLs,
e-mail addresses and math blocks. The rules are deliberately conservative: a missed boundary only means
one candidate fewer, a wrong one corrupts a document. Everything here is offline regex/line work (no
model downloads, unlike a trained Punkt tokenizer); the abbreviation list stands in for Punkt's training.

Two kinds of boundary exist, and each says which separator the ghost needs so that no character of the
original changes:

* ``after``: right after a sentence's terminal punctuation (plus closing quotes/brackets), where
  whitespace or the end of the text follows. The ghost goes in as ``" " + ghost``.
* ``before``: at the first character of a prose paragraph (start of text or after a blank line). The
  ghost goes in as ``ghost + " "``.

A ghost without terminal punctuation (template "none") gets a full stop appended.
"""
from __future__ import annotations

import bisect
import random
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

# Terminal punctuation: a run of [.!?] or one ellipsis character, closing quotes/brackets, then
# whitespace or the end. Written as (one of the four)(more [.!?] only if the first was one of them) so
# the pattern starts with a character class, which the regex engine scans for quickly; it matches
# exactly what (?:[.!?]+|\u2026)... matches.
_TERMINAL = re.compile(r"[.!?\u2026](?:(?<=[.!?])[.!?]+)?[\"')\]}\u201d\u2019\u00bb]*(?=\s|$)")
_TOKEN_BEFORE = re.compile(r"[^\s(\[{\"'\u201c\u2018\u00ab]*$")
_DOTTED_ABBREV = re.compile(r"^(?:[A-Za-z]{1,3}\.)+[A-Za-z]{1,3}$")
_ORDERED_MARKER = re.compile(r"^\s{0,3}\d{1,9}[.)]$")

_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}(?:\s|$)")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(?:=+|-+)\s*$")
_TABLE_DELIM = re.compile(r"^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)+\|?\s*$|^\s*\|\s*:?-+:?\s*\|?\s*$")
_LINK_REFDEF = re.compile(r"^ {0,3}\[[^\]\n]+\]:")

# Inline regions. Each has a one-character gate and substring triggers that every match contains (for
# the case-insensitive www./mailto: patterns, triggers in the lower-cased text, where every case variant
# the pattern accepts lands): a single-character `in` is a memchr, multi-character ones and the regexes
# run only past the gate. Most texts have no '<', '@' or ':' at all, and skipping those patterns is what
# keeps tag-jsonl near raw JSON speed. Entries: (gate, triggers, triggers_in_lower_case, pattern).
# A pattern with a `close` group may run to the end of the text unclosed; such a region then ends past
# the text (see _UNCLOSED), so even the very end of the text is inside it.
_INLINE: tuple[tuple[str, tuple[str, ...], bool, re.Pattern], ...] = (
    ("<", ("<!--",), False, re.compile(r"<!--[\s\S]*?(?:(?P<close>-->)|\Z)")),           # HTML comment
    ("<", (), False, re.compile(r"<(pre|script|style|code|textarea|math|svg)\b[\s\S]*?(?:(?P<close></\1\s*>)|\Z)",
                                re.I)),
    ("<", (), False, re.compile(r"<[A-Za-z/!?][^<>]*>")),                     # tags, <http://..> autolinks
    ("$", ("$$",), False, re.compile(r"\$\$[\s\S]*?(?:(?P<close>\$\$)|\Z)")),         # display math
    ("]", ("](",), False, re.compile(r"!?\[[^\[\]\n]*\]\([^()\n]*(?:\([^()\n]*\)[^()\n]*)*\)")),  # [text](url)
    ("]", ("][",), False, re.compile(r"!?\[[^\[\]\n]*\]\[[^\[\]\n]*\]")),         # [text][ref]
    (":", ("://",), False, re.compile(r"(?:https?|ftp|file)://\S+", re.I)),            # URLs
    (".", ("www.",), True, re.compile(r"\bwww\.\S+", re.I)),
    (":", ("to:",), True, re.compile(r"\bmailto:\S+", re.I)),  # 'i' also matches dotless/dotted I
    ("@", (), False, re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),                 # e-mail addresses
)
_BACKTICKS = re.compile(r"`+")
# An unclosed fence, comment, raw-text element or math block runs to the end of the text and one past
# it: spans are half-open and a ghost at offset len(text) would otherwise sit inside the region.
_UNCLOSED = 1


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


# Every block rule needs one of these (a superset test, so skipping the line scan when none is present
# never drops a span): front matter starts the text with ---/+++ (after BOMs), fences need ` or ~,
# indented code a tab or four spaces at a line start, headings '#', link definitions ']:', tables '|',
# and a setext underline is a later line starting (after <= 3 spaces) with '=' or '-'.
_SETEXT_TRIGGER = re.compile(r"\n {0,3}[=-]")


def _may_have_blocks(text: str) -> bool:
    """False only when no block rule can apply (single-character tests first: they are memchr-fast)."""
    if "`" in text or "~" in text or "\t" in text or "#" in text or "|" in text:
        return True
    if text.startswith(("---", "+++", "\ufeff", "    ")):
        return True
    if "]" in text and "]:" in text:
        return True
    return "\n" in text and ("\n    " in text or _SETEXT_TRIGGER.search(text) is not None)


def protected_spans(text: str) -> list[tuple[int, int]]:
    """Sorted, merged [start, end) spans of `text` that a ghost must never go inside.

    Plain prose (most of a corpus) has none of the trigger characters, and then no regex or line loop
    runs at all: that is what keeps tag-jsonl close to raw JSON speed."""
    spans = _block_spans(text) if _may_have_blocks(text) else []
    if "`" in text:
        spans.extend(_code_spans(text))
    low = None
    for gate, triggers, in_lower, pattern in _INLINE:
        if gate not in text:
            continue
        if triggers:
            if in_lower:
                if low is None:
                    low = text.lower()
                hay = low
            else:
                hay = text
            if not any(t in hay for t in triggers):
                continue
        if "close" in pattern.groupindex:
            past = len(text) + _UNCLOSED
            spans.extend((m.start(), m.end() if m.group("close") is not None else past)
                         for m in pattern.finditer(text))
        else:
            spans.extend((m.start(), m.end()) for m in pattern.finditer(text))
    if not spans:
        return spans
    return _merge(spans)


def _block_spans(text: str) -> list[tuple[int, int]]:
    """Front matter, fenced and indented code, headings, link definitions, table and setext blocks."""
    lines = _lines(text)
    spans: list[tuple[int, int]] = []
    fm = _front_matter(lines)
    if fm:
        spans.append((0, lines[fm - 1][1]))
    i = fm
    n = len(lines)
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
            spans.append((start, lines[last][1] if j < n else len(text) + _UNCLOSED))
            i = last + 1
            continue
        if _is_blank(line):
            i += 1
            continue
        # Indented code (and anything indented 4+ columns: list continuations are only skipped too).
        if line.startswith("\t") or line.startswith("    ") or _ATX_HEADING.match(line):
            spans.append((start, end))
        elif _LINK_REFDEF.match(line):
            spans.append((start, end))
        elif line.lstrip().startswith("|"):
            spans.append((start, end))
        i += 1
    # Tables: any block of consecutive non-blank lines that contains a delimiter row. Setext headings:
    # a block whose later line is all "=" or "-" is heading text up to that line.
    block_start = None
    for k, (_start, _end, line) in enumerate(lines + [(len(text), len(text), "")]):
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
    return spans


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


_CLOSERS = "\"')]}\u201d\u2019\u00bb"
_TERMINAL_CHARS = frozenset(".!?\u2026" + _CLOSERS)
_NON_SPACE = re.compile(r"\S")
_LIST_START = re.compile(r"\d{1,9}[.)](?:\s|$)")
_BLANK_AFTER_NL = re.compile(r"\n[^\S\n]*(?=\n)")  # '\n' + a whitespace-only line (its '\n' not taken)
_FIRST_BLANK = re.compile(r"[^\S\n]*\n")  # the text's first line, when it is whitespace-only
_PARA_OPENERS = "\"'\u201c\u2018\u00ab"


def _is_sentence_end(text: str, m: re.Match) -> bool:
    """Filter a terminal-punctuation match: abbreviations, initials, list markers, lower-case follow."""
    return _ends_sentence(text, m.start(), m.end(), m.group())


def _ends_sentence(text: str, s: int, k: int, punct: str) -> bool:
    # What follows: lower case after the break means the sentence did not end ("approx. three").
    if k < len(text):
        c = text[k]
        if c.isspace():
            c = text[k + 1:k + 2]
            if c.isspace():
                nxt = _NON_SPACE.search(text, k + 2)
                c = nxt.group() if nxt else ""
        if c.islower():
            return False
    if punct == "." or punct.rstrip(_CLOSERS) == ".":
        lo = s - 40 if s > 40 else 0
        # The token before the period: the common case (a word after a space) without a regex.
        j = text.rfind(" ", lo, s)
        token = text[j + 1:s] if j >= 0 else ""
        if not token.isalnum():
            token = _TOKEN_BEFORE.search(text, lo, s).group(0)
            if not token:
                return False
        bare = token.lower().lstrip("*_~")
        if bare in ABBREVIATIONS:
            return False
        if len(bare) == 1 and bare.isalpha():
            return False  # an initial: "J. Smith"
        if "." in token and _DOTTED_ABBREV.match(token):
            return False  # "e.g.", "U.S.", "Ph.D."
        if token.isdecimal():  # only digits can be an ordered-list marker
            line_start = text.rfind("\n", 0, s) + 1
            if _ORDERED_MARKER.match(text[line_start:s + 1]):
                return False  # "1. item"
    return True


def _paragraph_starts(text: str, first: int) -> list[int]:
    """Offsets >= `first` where a prose paragraph starts: the first non-blank line of the text or after a
    blank line, beginning (after <= 3 spaces) with a letter, digit or opening quote, not a list marker.
    Only blank lines near or after `first` are looked at, found by a regex with a literal '\\n' prefix
    (fast to search for) rather than a loop over every line."""
    line_starts = [0] if first <= 3 else []
    m = _FIRST_BLANK.match(text)
    if m:
        line_starts.append(m.end())
    if "\n" in text:
        pos = max(0, text.rfind("\n", 0, max(0, first - 4)))
        line_starts.extend(m.end() + 1 for m in _BLANK_AFTER_NL.finditer(text, pos))
    out = []
    n = len(text)
    for p in line_starts:
        if p >= n:
            continue
        nl = text.find("\n", p)
        line = text[p:nl if nl >= 0 else n].rstrip("\r")
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if indent <= 3 and stripped and (stripped[0].isalnum() or stripped[0] in _PARA_OPENERS) \
                and not _LIST_START.match(stripped) and p + indent >= first:
            out.append(p + indent)
    return out


def sentence_boundaries(text: str, spans: list[tuple[int, int]] | None = None, start: int = 0) -> list[Boundary]:
    """All places a ghost may go at offsets >= `start`, in text order; empty when there is none.

    `start` lets the latter-half and end strategies skip scanning the first half (tag-jsonl speed); the
    result is exactly the full scan's boundaries at offsets >= `start`."""
    return [Boundary(o, k) for o, k in boundary_offsets(text, spans, start)]


def boundary_offsets(text: str, spans: list[tuple[int, int]] | None = None,
                     start: int = 0) -> list[tuple[int, str]]:
    """sentence_boundaries as sorted (offset, kind) tuples."""
    if spans is None:
        spans = protected_spans(text)
    return [(c[0], c[1]) for c in _candidates(text, start) if _valid(text, c, spans)]


def pick_boundary(text: str, spans: list[tuple[int, int]], start: int, last: bool,
                  rng: random.Random) -> tuple[int, str] | None:
    """One boundary at offset >= `start` as (offset, kind): the last one, or (last=False) one chosen
    uniformly at random; None when there is none.

    Candidates are checked lazily, only when drawn: draw one uniformly from the unchecked candidates,
    keep it if it is a boundary, else drop it and draw again. Whatever was dropped before, every
    remaining boundary is equally likely at each draw, so the result is uniform over the boundaries,
    at the cost of about one check instead of one per sentence (the tag-jsonl hot path)."""
    first = max(0, start)
    pool: list = _paragraph_starts(text, first)  # ints: paragraph starts ("before", already filtered)
    pos = max(0, first - 8)
    while pos > 0 and text[pos - 1] in _TERMINAL_CHARS:
        pos -= 1
    for m in _TERMINAL.finditer(text, pos):  # match objects: "after" candidates, not yet filtered
        if m.end() >= first:
            pool.append(m)
    if last:
        keyed = sorted(((c, "before", c) if type(c) is int else (c.end(), "after", c) for c in pool),
                       key=lambda t: (t[0], t[1]))
        for off, kind, c in reversed(keyed):
            if (kind == "before" or _ends_sentence(text, c.start(), off, c.group())) and \
                    (not spans or _allowed_at(off, kind, spans)):
                return off, kind
        return None
    while pool:
        i = rng.randrange(len(pool)) if len(pool) > 1 else 0
        c = pool[i]
        if type(c) is int:
            if not spans or _allowed_at(c, "before", spans):
                return c, "before"
        else:
            off = c.end()
            if _ends_sentence(text, c.start(), off, c.group()) and (not spans or _allowed_at(off, "after", spans)):
                return off, "after"
        pool[i] = pool[-1]
        pool.pop()
    return None


def _candidates(text: str, start: int) -> list[tuple[int, str, int, str]]:
    """Possible boundaries at offsets >= `start`, sorted: paragraph starts (final) as (offset, "before",
    -1, "") and terminal punctuation (not yet filtered) as (offset, "after", match start, match)."""
    first = max(0, start)
    cands = [(o, "before", -1, "") for o in _paragraph_starts(text, first)]
    # Start the punctuation scan just before `first`, backed up over any run of terminal characters so
    # that every match is the same as in a scan from the start of the text.
    pos = max(0, first - 8)
    while pos > 0 and text[pos - 1] in _TERMINAL_CHARS:
        pos -= 1
    for m in _TERMINAL.finditer(text, pos):
        e = m.end()
        if e >= first:
            cands.append((e, "after", m.start(), m.group()))
    if cands and cands[0][1] == "before":
        cands.sort()  # the "after" ones are in order already; paragraph starts interleave with them
    return cands


def _valid(text: str, c: tuple[int, str, int, str], spans: list[tuple[int, int]]) -> bool:
    if c[1] == "after" and not _ends_sentence(text, c[2], c[0], c[3]):
        return False
    return not spans or _allowed_at(c[0], c[1], spans)


def _allowed(b: Boundary, spans: list[tuple[int, int]]) -> bool:
    """Outside every span. A "before" ghost attaches to what follows, so a span's start is off limits."""
    return _allowed_at(b.offset, b.kind, spans)


def _allowed_at(p: int, kind: str, spans: list[tuple[int, int]]) -> bool:
    i = bisect.bisect_right(spans, (p, float("inf"))) - 1
    if i >= 0:
        s, e = spans[i]
        if s < p < e or (kind == "before" and s == p):
            return False
    return True


def line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset (lines split on '\\n')."""
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col
