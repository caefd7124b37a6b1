"""The JSONL splice (ghostsent.jsonsplice) against json.loads, on generated hand-formatted JSON lines:
odd whitespace, every escape style, surrogate-pair escapes, raw astral characters, huge and
upper-case-exponent numbers, duplicate keys, nested objects and a leading BOM."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ghostsent.jsonsplice import field_span, splice
from ghostsent.tagging import _MISSING, _get_field

WS = st.sampled_from(["", " ", "  ", "\t", "\r\n "])
NUMBERS = st.sampled_from(["0", "-0.0", "1e400", "-1E400", "1E5", "2.50", "-12", "3.0e-2", "1e-400"])
PLAIN = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\'), min_size=1,
                max_size=6)
ESCAPES = st.sampled_from(['\\"', "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t", "\\u00e9", "\\u00E9",
                           "\\ud83d\\ude00", "\\uD83D\\uDE00", "\\u0000", "\\u2028", "\U0001F600", "\u00e9"])
KEYS = st.sampled_from(["text", "owner", "meta", "t", "a.b", "a", "b", "x\\u0079", "te\\u0078t"])


def string_lit():
    return st.lists(st.one_of(PLAIN, ESCAPES), max_size=8).map(lambda parts: '"' + "".join(parts) + '"')


def value(depth: int):
    scalars = st.one_of(string_lit(), NUMBERS, st.sampled_from(["true", "false", "null"]))
    if depth == 0:
        return scalars
    return st.one_of(scalars, scalars, obj(depth - 1), arr(depth - 1))


def arr(depth: int):
    return st.tuples(WS, st.lists(st.tuples(value(depth), WS), max_size=3)).map(
        lambda t: "[" + t[0] + ",".join(v + w for v, w in t[1]) + "]")


def obj(depth: int):
    member = st.tuples(WS, st.one_of(KEYS.map(lambda k: f'"{k}"'), string_lit()), WS, WS, value(depth), WS)
    return st.lists(member, max_size=5).map(
        lambda ms: "{" + ",".join(f"{a}{k}{b}:{c}{v}{d}" for a, k, b, c, v, d in ms) + "}")


def one_insertion(old: str, new: str, piece: str) -> bool:
    """`new` is `old` with exactly `piece` inserted somewhere (nothing else changed)."""
    return any(new == old[:i] + piece + old[i:] for i in range(len(old) + 1))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=obj(2), bom=st.booleans(), name=st.sampled_from(["text", "meta.t", "a.b", "xy", "meta.text", "a"]),
       data=st.data(), ascii_only=st.booleans())
def test_splice_changes_only_the_field_json_loads_reads(line, bom, name, data, ascii_only):
    line = ("\ufeff" if bom else "") + line
    parsed = json.loads(line.lstrip("\ufeff"))
    want = _get_field(parsed, name) if isinstance(parsed, dict) else _MISSING
    if not isinstance(want, str):
        assert field_span(line, name) is None
        assert splice(line, name, 0, "G", ascii_only) is None
        return
    offset = data.draw(st.integers(0, len(want)))
    inserted = data.draw(st.sampled_from([" Ghost sentence.", " G\u00e9\U0001F600 \"q\" \\ /.", "\n"]))
    new = splice(line, name, offset, inserted, ascii_only)
    got = json.loads(new.lstrip("\ufeff"))
    assert _get_field(got, name) == want[:offset] + inserted + want[offset:]
    piece = json.dumps(inserted, ensure_ascii=ascii_only)[1:-1]
    assert one_insertion(line, new, piece)  # every other character, BOM included, is where it was
