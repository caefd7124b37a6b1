"""Sentence boundaries and protected regions: the rules that decide where a ghost may go."""
from __future__ import annotations

import pytest

from ghostsent.sentences import line_col, protected_spans, sentence_boundaries

pytestmark = pytest.mark.core  # runs on the light install (no extras)


def ends(text: str) -> set[int]:
    return {b.offset for b in sentence_boundaries(text) if b.kind == "after"}


def test_plain_sentences_and_paragraph_starts():
    t = "One two. Three four! Five six?\n\nSeven eight."
    bs = sentence_boundaries(t)
    assert [(b.offset, b.kind) for b in bs] == [
        (0, "before"), (8, "after"), (20, "after"), (30, "after"), (32, "before"), (len(t), "after")]


@pytest.mark.parametrize("text", [
    "Dr. Smith arrived.",
    "We met Mr. Jones and Mrs. Brown.",
    "Fruit, e.g. Apples, is good.",
    "That is, i.e. Nothing else.",
    "He moved to the U.S. Later he left.",
    "J. R. Tolkien wrote it.",
    "Pi is 3.14 roughly.",
    "See Fig. 3 for details.",
    "It costs approx. Five dollars.",
])
def test_non_boundaries_only_the_final_one(text):
    assert ends(text) == {len(text)}


def test_ellipsis_and_lower_case_continuation():
    t = "Wait... what is this. Well... Yes."
    assert sorted(ends(t)) == [t.index("this.") + 5, t.index("Well...") + 7, len(t)]


def test_quotes_and_brackets_after_period():
    t = 'He said "Stop." Then he left. (It was late.) Done.'
    offs = ends(t)
    assert t.index('"Stop."') + len('"Stop."') in offs
    assert t.index("(It was late.)") + len("(It was late.)") in offs
    assert t.index('Stop.') + len('Stop.') not in offs  # not between the period and the quote


def test_question_inside_quote_mid_sentence_is_not_a_boundary():
    t = 'She asked "why?" and smiled.'
    assert ends(t) == {len(t)}


def test_ordered_list_marker_is_not_a_sentence_end():
    t = "Steps:\n\n1. Open it.\n2. Close it."
    offs = ends(t)
    assert t.index("1.") + 2 not in offs and t.index("2.") + 2 not in offs
    assert t.index("Open it.") + len("Open it.") in offs


def test_year_ends_a_sentence():
    t = "It happened in 1999. Then it stopped."
    assert t.index("1999.") + 5 in ends(t)


@pytest.mark.parametrize("block", [
    "```\nCode. Here. Yes.\n```",
    "~~~python\nx = 1. Y\n~~~",
    "    indented. Code. Here.",
    "\tTabbed. Code.",
    "| a. B | c. D |\n|---|---|\n| e. F | g. H |",
    "Name. X | Age. Y\n--- | ---\nBob. Z | 3. Q",
    "# Heading. Two.",
    "Setext. Heading.\n=====",
    "<!-- a comment. Here. -->",
    "<!--\nMulti. Line.\n-->",
    "<pre>\nPre. Text. Here.\n</pre>",
    "$$\nx. Y. z\n$$",
    "[ref. A]: http://example.com/a. B",
])
def test_block_regions_have_no_boundary_inside(block):
    text = "Before it. Yes.\n\n" + block + "\n\nAfter it. Yes."
    start = text.index(block)
    end = start + len(block)
    for b in sentence_boundaries(text):
        assert not (start <= b.offset <= end), (block, b, text[b.offset - 10:b.offset + 5])


@pytest.mark.parametrize("inline", [
    "https://example.com/a.b?x=1.",
    "www.example.org/x.y.",
    "`code. Here`",
    "``co`de. Here``",
    "[link. Text](http://x.y/z. W)",
    "![alt. Text](img. X.png)",
    "[text. A][ref. B]",
    '<span title="a. B">',
    "<!-- c. D -->",
    "bob.smith@example.com",
])
def test_inline_regions_have_no_boundary_inside(inline):
    text = "Start here. " + inline + " Then more. End."
    start = text.index(inline)
    end = start + len(inline)
    for b in sentence_boundaries(text):
        assert not (start < b.offset < end), (inline, b)


def test_front_matter_yaml_and_toml():
    for fm in ("---\ntitle: A. B.\nx: Y. Z.\n---\n", "+++\ntitle = 'A. B.'\n+++\n"):
        text = fm + "\nBody one. Body two."
        assert protected_spans(text)[0] == (0, len(fm))
        assert all(b.offset >= len(fm) for b in sentence_boundaries(text))
        assert sentence_boundaries(text)[0].offset == len(fm) + 1  # the paragraph start of the body


def test_thematic_break_is_not_front_matter_in_the_middle():
    text = "Para one. Yes.\n\n---\n\nPara two. Yes."
    assert text.index("Para two. Yes.") + len("Para two.") in ends(text)


def test_unclosed_fence_protects_to_the_end():
    text = "Intro. Yes.\n\n```\ncode. X. Y.\nmore. Z."
    assert all(b.offset <= len("Intro. Yes.") for b in sentence_boundaries(text))


def test_crlf_lines():
    text = "One. Two.\r\n\r\n```\r\nCode. X.\r\n```\r\nThree."
    offs = ends(text)
    assert 4 in offs and 9 in offs
    assert text.index("Code. X.") + 5 not in offs


def test_url_swallowing_trailing_period_is_still_intact():
    text = "See https://example.com/a. Next one."
    for b in sentence_boundaries(text):
        assert not (text.index("https") < b.offset < text.index("https") + len("https://example.com/a."))


def test_empty_and_whitespace_texts_have_no_boundaries():
    assert sentence_boundaries("") == []
    assert sentence_boundaries("   \n\n  ") == []
    assert sentence_boundaries("```\nall. Code.\n```") == []


def test_line_col():
    assert line_col("ab\ncd", 0) == (1, 1)
    assert line_col("ab\ncd", 4) == (2, 2)
