"""The JSONL splice (ghostsent.tagging.splice) against json.loads, on generated hand-formatted JSON lines:
odd whitespace, every escape style, surrogate-pair escapes, raw astral characters, huge and
upper-case-exponent numbers, duplicate keys, nested objects and a leading BOM."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ghostsent.tagging.core import MISSING as _MISSING
from ghostsent.tagging.core import get_field as _get_field
from ghostsent.tagging.splice import _insert_at, field_span, splice

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
        return
    offset = data.draw(st.integers(0, len(want)))
    inserted = data.draw(st.sampled_from([" Ghost sentence.", " G\u00e9\U0001F600 \"q\" \\ /.", "\n"]))
    expected = want[:offset] + inserted + want[offset:]
    piece = json.dumps(inserted, ensure_ascii=ascii_only)[1:-1]

    def reads(new: str) -> bool:
        return _get_field(json.loads(new.lstrip("\ufeff")), name) == expected

    # The structural scan alone, checked against json.loads independently ...
    by_scan = _insert_at(line, field_span(line, name), offset, piece)
    assert reads(by_scan)
    assert one_insertion(line, by_scan, piece)  # every other character, BOM included, is where it was
    # ... and splice() as tag-jsonl calls it (fast path first, the scan when that does not read back).
    new = splice(line, name, offset, inserted, ascii_only, want, reads)
    assert new is not None and reads(new) and one_insertion(line, new, piece)


def test_fast_path_guess_that_is_another_literal_falls_back_to_the_scan():
    # The key "Hello." is the only literal json.dumps("Hello.") matches; the field itself is escaped.
    line = '{"Hello.": 1, "text": "Hell\\u006f."}'
    expected = "Hello. G."

    def reads(new: str) -> bool:
        try:
            return json.loads(new).get("text") == expected
        except ValueError:
            return False

    new = splice(line, "text", 6, " G.", True, "Hello.", reads)
    assert new == '{"Hello.": 1, "text": "Hell\\u006f. G."}'


@settings(max_examples=500, deadline=None)
@given(value=st.text(), ascii_only=st.booleans())
def test_dumps_str_is_json_dumps(value, ascii_only):
    """splice's literal encoder writes exactly what json.dumps writes for a str (lone surrogates too)."""
    from ghostsent.tagging.splice import dumps_str

    assert dumps_str(value, ascii_only) == json.dumps(value, ensure_ascii=ascii_only)


# Values that collide often (a key, another field or a nested value spelling the text field's value),
# with DEL, non-ASCII and the odd escape, so that a proven guess meets every way of being wrong.
POOL = st.sampled_from(["Hello.", "text", "a", "Hello. World.", "x\x7fy", "caf\u00e9.", "", "t",
                        "Hell\\u006f.", "Hello\\/."])


def plain_obj(depth: int):
    lit = POOL.map(lambda v: f'"{v}"')
    val = st.one_of(lit, lit, NUMBERS) if depth == 0 else st.one_of(lit, lit, plain_obj(depth - 1))
    member = st.tuples(WS, st.one_of(KEYS.map(lambda k: f'"{k}"'), lit), WS, val)
    return st.lists(member, max_size=6).map(lambda ms: "{" + ",".join(f"{a}{k}:{b}{v}" for a, k, b, v in ms) + "}")


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=plain_obj(2), name=st.sampled_from(["text", "t", "a", "a.b", "meta.t"]), data=st.data(),
       inserted=st.sampled_from([" Ghost sentence.", " G\u00e9\U0001F600 \"q\" \\ /.", "\n", "\x7f"]))
def test_a_proven_guess_always_reads_back(line, name, data, inserted):
    """Whenever guess_is_proven lets splice skip its read-back, json.loads of the result reads the new
    text in the field and nothing else changed: the read-back could not have failed."""
    from ghostsent.tagging.splice import guess_is_proven

    parsed = json.loads(line)
    want = _get_field(parsed, name)
    if not isinstance(want, str):
        return
    offset = data.draw(st.integers(0, len(want)))
    ascii_only = line.isascii()
    if not guess_is_proven(line, want, offset, inserted):
        return
    new = splice(line, name, offset, inserted, ascii_only, want, lambda _: False, proven=True)
    if new is None:  # no unique guess: the scan ran, and its (refusing) check was obeyed
        return
    expected = json.loads(line)
    node = expected
    parts = [name] if name in expected or "." not in name else name.split(".")
    for p in parts[:-1]:
        node = node[p]
    node[parts[-1]] = want[:offset] + inserted + want[offset:]
    assert json.loads(new) == expected
    assert one_insertion(line, new, json.dumps(inserted, ensure_ascii=ascii_only)[1:-1])


def test_guess_is_proven_refuses_escapes_del_and_surrogates():
    from ghostsent.tagging.splice import guess_is_proven

    assert guess_is_proven('{"text": "Hello."}', "Hello.", 6, " G.")
    assert not guess_is_proven('{"Hello.": 1, "text": "Hell\\u006f."}', "Hello.", 6, " G.")
    assert not guess_is_proven('{"text": "a\x7fb."}', "a\x7fb.", 4, " G.")
    assert not guess_is_proven('{"text": "Hello."}', "Hello.", 6, " G\ud83d.")
    assert not guess_is_proven('{"text": "Hello."}', "Hello.", 7, " G.")
