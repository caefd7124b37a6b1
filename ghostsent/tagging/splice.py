"""Insert text into one string field of a JSON line without touching any other byte.

Re-serialising a parsed record changes data the writer never asked us to touch: `1e400` becomes
`Infinity` (not JSON), `1E5` becomes `100000.0`, duplicate keys collapse, a BOM disappears, escapes
change style. So tag-jsonl does not re-serialise. It finds the string literal that json.loads reads
for the field (the last of duplicate keys, as json.loads keeps the last), and inserts the escaped span
into that literal at the right character. Everything else stays byte-identical, including the rest of
the field's own escapes.

Most lines were written by a JSON library, so the literal json.dumps would write for the field's value
is looked for first; a check that the result reads back right decides. Otherwise the scanner does. It
only needs the structure: a regex yields string literals and the six structural
characters; numbers, literals and whitespace between them are skipped. It is run only on lines that
json.loads has accepted, so it need not diagnose bad JSON.
"""
from __future__ import annotations

import json
import re
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Callable

from ghostsent.names import has_surrogate

_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]', re.S)
# Inside a literal: an escaped surrogate pair (one character once decoded), any other escape (one
# character), or a run of plain characters (one each).
_PIECES = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4}|\\.|[^\\]+")
_SCALAR = -1  # a member whose value is a number, true, false or null


def dumps_str(value: str, ascii_only: bool) -> str:
    """json.dumps(value, ensure_ascii=ascii_only) for a str, without its per-call encoder set-up (the
    very functions JSONEncoder.encode calls for a str)."""
    return encode_basestring_ascii(value) if ascii_only else encode_basestring(value)


def _key(token: str) -> str:
    return json.loads(token) if "\\" in token else token[1:-1]


def _members(line: str) -> tuple[list[tuple[str, int, int]], dict[int, dict[str, int]]]:
    """Tokens as (text, start, end), and for each object (by the index of its '{' token) its members:
    key -> index of the value's first token (_SCALAR for a scalar), the last duplicate winning."""
    tokens = [(m.group(), m.start(), m.end()) for m in _TOKENS.finditer(line)]
    members: dict[int, dict[str, int]] = {}
    stack: list[list] = []  # [index of '{' or -1 for an array, current key, expecting a value]
    for i, (tok, _, _) in enumerate(tokens):
        top = stack[-1] if stack else None
        in_value = top is not None and top[0] >= 0 and top[2]
        c = tok[0]
        if c in "{[":
            if in_value:
                members[top[0]][top[1]] = i
                top[2] = False
            if c == "{":
                members[i] = {}
            stack.append([i if c == "{" else -1, None, False])
        elif c in "}]":
            stack.pop()
        elif c == ":":
            top[2] = True
            members[top[0]][top[1]] = _SCALAR
        elif c == ",":
            if top is not None and top[0] >= 0:
                top[2] = False
        elif top is not None and top[0] >= 0:  # a string: a key, or a value
            if in_value:
                members[top[0]][top[1]] = i
                top[2] = False
            else:
                top[1] = _key(tok)
    return tokens, members


def field_span(line: str, name: str) -> tuple[int, int] | None:
    """(start, end) in `line` of the string literal, quotes included, that json.loads(line) gives for
    field `name`: a top-level key, else a dotted path into nested objects ("meta.text"), the same
    lookup tag-jsonl's field getter makes. None when that value is not a string."""
    tokens, members = _members(line)
    if not tokens or tokens[0][0] != "{":
        return None
    top = members[0]
    if name in top or "." not in name:
        i = top.get(name, _SCALAR)
    else:
        i, obj = _SCALAR, top
        for part in name.split("."):
            if obj is None or part not in obj:
                return None
            i = obj[part]
            obj = members.get(i) if i >= 0 and tokens[i][0] == "{" else None
    if i < 0 or tokens[i][0][0] != '"':
        return None
    return tokens[i][1], tokens[i][2]


def raw_index(literal_body: str, offset: int) -> int:
    """Index into a string literal's body (between the quotes) where decoded character `offset` starts."""
    if "\\" not in literal_body:
        return offset
    count = 0
    for m in _PIECES.finditer(literal_body):
        piece = m.group()
        width = len(piece) if piece[0] != "\\" else 1
        if count + width > offset:
            return m.start() + (offset - count)  # only a plain run can be entered part-way
        count += width
    return len(literal_body)


def _unique_literal(line: str, value: str, ascii_only: bool) -> tuple[int, int] | None:
    """The span of the literal json.dumps writes for `value`, if it occurs exactly once in `line` and
    its opening quote is not an escaped one (inside another string a quote follows an odd number of
    backslashes). A guess: the caller's check decides whether it was the field's literal."""
    needle = dumps_str(value, ascii_only)
    at = line.find(needle)
    if at < 0 or line.find(needle, at + 1) >= 0:
        return None
    k = at
    while k > 0 and line[k - 1] == "\\":
        k -= 1
    return None if (at - k) % 2 else (at, at + len(needle))


def guess_is_proven(line: str, value: str, offset: int, inserted: str) -> bool:
    """Whether the fast path's guess (_unique_literal) is certainly the field's literal, so that its
    splice needs no read-back. Requires `line` to be exactly the text json.loads parsed.

    Why: with no backslash in the line no literal has an escape, and json.loads (strict) refuses raw
    control characters, so every literal is '"' + its value + '"'; that is also what json.dumps writes
    for the value, unless the value holds DEL (0x7f), which ensure_ascii escapes (then the needle holds
    a backslash and cannot be found; lines with DEL are still left to the read-back, conservatively). The field's own literal is therefore the needle, textually; the needle occurring once, the
    guess is that literal. Inserting the span's escaped form into that literal's body (no escapes:
    decoded offset = raw offset) changes only that value, to value[:offset] + inserted + value[offset:],
    provided the span's escapes decode back to it (no lone surrogates, which a \\uD8xx\\uDCxx pair would
    join). tests/test_splice.py checks the claim against json.loads on generated lines."""
    return 0 <= offset <= len(value) and "\\" not in line and "\x7f" not in line and not has_surrogate(inserted)


def _insert_at(line: str, span: tuple[int, int], offset: int, piece: str) -> str:
    start, end = span
    at = start + 1 + raw_index(line[start + 1:end - 1], offset)
    return line[:at] + piece + line[at:]


def splice(line: str, name: str, offset: int, inserted: str, ascii_only: bool, value: str,
           check: Callable[[str], bool], proven: bool = False) -> str | None:
    """`line` with `inserted` placed at decoded character `offset` of field `name`'s string (whose
    current value is `value`), escaped as json.dumps would (\\uXXXX for non-ASCII when `ascii_only`).

    `check(new_line)` must confirm that the field now reads as intended. Fast path: the literal
    json.dumps would write for `value`, when it occurs once (most lines were written by a JSON library).
    Otherwise, or if the check says no, the structural scan (field_span) decides. None when no splice
    passes the check: the caller copies the line unchanged as a bad record. `proven` (guess_is_proven
    said so) skips the check of a found guess; a scan result is always checked."""
    piece = dumps_str(inserted, ascii_only)[1:-1]
    guess = _unique_literal(line, value, ascii_only)
    if guess is not None:
        new = _insert_at(line, guess, offset, piece)
        if proven or check(new):
            return new
    span = field_span(line, name)
    if span is None:
        return None
    new = _insert_at(line, span, offset, piece)
    return new if check(new) else None
