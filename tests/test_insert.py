"""insert(): the only change is the inserted span, which never lands inside a protected region."""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ghostsent.errors import InputError
from ghostsent.insert import NoBoundaryError, POSITIONS, insert, plan
from ghostsent.sentences import sentence_boundaries

GHOST = "quartz mellow banjo ripple"

WORDS = ["alpha", "beta", "gamma", "Dr.", "e.g.", "3.14", "U.S.", "etc.", "approx.", "data", "model", "x"]
TERMINALS = [".", "!", "?", "...", '."', ".)"]
INLINE = ["https://ex.com/a.b?q=1. x", "www.ex.org/p.q", "`co. De`", "[li. Nk](http://x.y/z.w)",
          '<span title="a. B">', "<!-- c. D -->", "bob.s@ex.com", "![im. G](p. q.png)"]
BLOCKS = ["```\nCode. Here. Yes.\n```", "~~~\nx. Y\n~~~", "    indented. Code. X.", "# Heading. Two.",
          "| a. B | c. D |\n|---|---|\n| e. F | g. H |", "<!--\nMulti. Line.\n-->", "<pre>\nP. Q.\n</pre>"]
FRONT = ["---\ntitle: A. B.\n---", "+++\nt = 'A. B.'\n+++"]


@st.composite
def markdownish(draw):
    """A Markdown-ish document plus the spans that must stay intact: (text, blocks, inlines)."""
    nl = draw(st.sampled_from(["\n", "\r\n"]))
    parts: list[str] = []
    blocks: list[tuple[int, int]] = []
    inlines: list[tuple[int, int]] = []
    pos = 0

    def add(s: str, kind: list | None = None) -> None:
        nonlocal pos
        s = s.replace("\n", nl)
        if kind is not None:
            kind.append((pos, pos + len(s)))
        parts.append(s)
        pos += len(s)

    if draw(st.booleans()):
        add(draw(st.sampled_from(FRONT)), blocks)
        add(nl + nl)
    for i in range(draw(st.integers(1, 5))):
        if i:
            add(nl + nl)
        if draw(st.integers(0, 2)) == 0:
            add(draw(st.sampled_from(BLOCKS)), blocks)
            continue
        for j in range(draw(st.integers(1, 4))):
            if j:
                add(draw(st.sampled_from([" ", " ", nl])))
            n = draw(st.integers(1, 6))
            for k in range(n):
                if k:
                    add(" ")
                if draw(st.integers(0, 5)) == 0:
                    add(draw(st.sampled_from(INLINE)), inlines)
                else:
                    w = draw(st.sampled_from(WORDS))
                    add(w.capitalize() if k == 0 and w.isalpha() else w)
            add(draw(st.sampled_from(TERMINALS)))
    return "".join(parts), blocks, inlines


def check_invariants(text: str, new: str, off: int) -> None:
    span = len(new) - len(text)
    assert span > 0
    assert new[:off] == text[:off]
    assert new[off + span:] == text[off:]
    inserted = new[off:off + span]
    assert GHOST in inserted and inserted.strip(" ") == GHOST + "."


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=markdownish(), position=st.sampled_from(POSITIONS), seed=st.integers(0, 2**32))
def test_insert_only_adds_the_span_and_never_inside_protected(doc, position, seed):
    text, blocks, inlines = doc
    try:
        new, off = insert(text, GHOST, position, random.Random(seed))
    except NoBoundaryError:
        assert not sentence_boundaries(text)
        return
    check_invariants(text, new, off)
    for s, e in blocks:
        assert not (s <= off < e), (text[s:e], off)
    for s, e in inlines:
        assert not (s < off < e), (text[s:e], off)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=300), seed=st.integers(0, 1000))
def test_insert_arbitrary_text_changes_nothing_else(text, seed):
    try:
        new, off = insert(text, GHOST, "random", random.Random(seed))
    except NoBoundaryError:
        return
    check_invariants(text, new, off)


TEXT = "First one here. Second one here. Third one here. Fourth one here. Fifth one here."


def test_start_and_end():
    new, off = insert(TEXT, GHOST, "start")
    assert off == 0 and new.startswith(GHOST + ". First")
    new, off = insert(TEXT, GHOST, "end")
    assert off == len(TEXT) and new.endswith("Fifth one here. " + GHOST + ".")


def test_latter_half_is_in_the_second_half_and_varies():
    offsets = {insert(TEXT, GHOST, rng=random.Random(s))[1] for s in range(50)}
    assert all(o >= len(TEXT) / 2 for o in offsets)
    assert len(offsets) >= 2


def test_latter_half_falls_back_to_the_last_boundary():
    text = "Short one. And a very long run-on that never ends and has no full stop whatsoever"
    new, off = insert(text, GHOST)
    assert off == text.index("one.") + 4


def test_random_reaches_every_boundary():
    all_offsets = {b.offset for b in sentence_boundaries(TEXT)}
    seen = {insert(TEXT, GHOST, "random", random.Random(s))[1] for s in range(200)}
    assert seen == all_offsets


def test_rng_makes_it_reproducible_and_default_uses_secrets():
    a = insert(TEXT, GHOST, "random", random.Random(7))
    assert a == insert(TEXT, GHOST, "random", random.Random(7))
    offsets = {insert(TEXT, GHOST, "random")[1] for _ in range(60)}
    assert len(offsets) > 1


def test_ghost_with_own_punctuation_gets_no_extra_period():
    new, off = insert(TEXT, "The ghost sentence of this post is a b c.", "end")
    assert new.endswith("here. The ghost sentence of this post is a b c.")


def test_no_boundary_and_bad_input():
    for text in ["", "   ", "```\ncode. only.\n```"]:
        with pytest.raises(NoBoundaryError):
            insert(text, GHOST)
    with pytest.raises(InputError):
        insert(TEXT, "two\nlines")
    with pytest.raises(InputError):
        insert(TEXT, "  ")
    with pytest.raises(InputError, match="unknown position"):
        insert(TEXT, GHOST, "middle")


def test_plan_reports_the_boundary_kind():
    p = plan(TEXT, GHOST, "start")
    assert p.boundary.kind == "before" and p.inserted == GHOST + ". "
    p = plan(TEXT, GHOST, "end")
    assert p.boundary.kind == "after" and p.inserted == " " + GHOST + "."
