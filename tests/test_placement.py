"""Placement that survives deduplication (docs/insertion.md, "Surviving data pipelines"): the ghost never
forms a line or paragraph of its own, and the best tier present in the second half is used."""
from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from ghostsent.insert import insert, placer, plan
from ghostsent.placement import LINE_END, MID_LINE, PARAGRAPH_START, c4_keeps_line, rank, tier
from ghostsent.sentences import sentence_boundaries

GHOST = "quiet garden lantern morning"

word = st.sampled_from(["alpha", "beta", "gamma", "delta", "Omega", "river", "stone", "light"])
sentence = st.builds(lambda ws, p: " ".join(ws).capitalize() + p, st.lists(word, min_size=1, max_size=6),
                     st.sampled_from([".", "!", "?", "", ":", ";"]))
line = st.builds(" ".join, st.lists(sentence, min_size=1, max_size=4))
paragraph = st.builds("\n".join, st.lists(line, min_size=1, max_size=3))
document = st.builds(lambda ps, sep: sep.join(ps), st.lists(paragraph, min_size=1, max_size=5),
                     st.sampled_from(["\n\n", "\n\n\n", "\r\n\r\n"]))


def _line_of(text: str, start: int, end: int) -> str:
    a = text.rfind("\n", 0, start) + 1
    b = text.find("\n", end)
    return text[a:b if b >= 0 else len(text)]


@settings(max_examples=400, deadline=None)
@given(doc=document, seed=st.integers(0, 2**32))
def test_ghost_never_stands_alone_on_its_line_or_paragraph(doc, seed):
    try:
        p = plan(doc, GHOST, rng=random.Random(seed))
    except Exception:
        return  # no boundary: nothing inserted
    new = p.apply(doc)
    start = p.offset + p.inserted.index(GHOST)
    end = start + len(GHOST) + 1
    rest_of_line = _line_of(new, start, end).replace(GHOST + ".", "")
    assert rest_of_line.strip(), (doc, new)  # the writer's own text shares the line


@settings(max_examples=400, deadline=None)
@given(doc=document, seed=st.integers(0, 2**32))
def test_the_best_ranked_boundary_of_the_second_half_is_used(doc, seed):
    bs = sentence_boundaries(doc)
    half = [b for b in bs if b.offset >= (len(doc) + 1) // 2] or bs  # none there: the whole text
    if not half:
        return
    p = plan(doc, GHOST, rng=random.Random(seed))
    best = min(rank(doc, b.offset, b.kind, b.inserted(GHOST)) for b in half)
    assert rank(doc, p.offset, p.boundary.kind, p.inserted) == best
    new = p.apply(doc)
    if best[0] == 0:  # C4's line rules keep the ghost's line
        assert c4_keeps_line(_line_of(new, p.offset + 1, p.offset + len(p.inserted) - 1))
    if best[1] == MID_LINE:  # more of the writer's text follows on the ghost's line
        assert doc[p.offset:].split("\n", 1)[0].strip()
    # tag-jsonl's placer makes the same choice
    off, ins = placer(GHOST)(doc, random.Random(seed))
    assert (off, ins) == (p.offset, p.inserted)


def test_a_line_c4_would_delete_is_avoided():
    # second half: one mid-line boundary in a line ending with ":" (C4 deletes that line, ghost and all)
    # and one line end; the line end wins because the ghost's own full stop then ends the line.
    text = "Padding sentence number one here.\nPadding two. Mid here. And it ends with a colon:\nLast line."
    mid = text.index(" And it")
    assert tier(text, mid, "after") == MID_LINE and not c4_keeps_line("Mid here. g. And it ends with a colon:")
    offs = {insert(text, GHOST, rng=random.Random(s))[1] for s in range(30)}
    assert mid not in offs and offs <= {text.index("\nLast"), len(text)}


def test_tiers():
    text = "One here. Two here.\nThree here.\n\nFour here."
    kinds = {b.offset: tier(text, b.offset, b.kind) for b in sentence_boundaries(text)}
    assert kinds[text.index(" Two")] == MID_LINE
    assert kinds[text.index("\nThree")] == LINE_END
    assert kinds[text.index("Four")] == PARAGRAPH_START
    assert kinds[len(text)] == LINE_END


def test_mid_line_preferred_over_line_ends_and_paragraph_starts():
    # second half: a paragraph start, a line end, one mid-line boundary, the text end
    text = "Intro sentence number one here.\n\nFirst half padding text goes here now.\n\n" \
           "Para starts. Mid line here.\nEnd line."
    offs = {insert(text, GHOST, rng=random.Random(s))[1] for s in range(40)}
    assert offs == {text.index(" Mid line")}


def test_line_end_used_when_no_mid_line_boundary():
    text = "A first line of text.\nA second line of text.\nA third line of text.\nA fourth line."
    for s in range(20):
        new, off = insert(text, GHOST, rng=random.Random(s))
        assert off >= len(text) / 2 and (off == len(text) or text[off] == "\n")


phrase_word = st.sampled_from(["alpha", "beta", "javascript", "River", "stone"])
phrase_sentence = st.builds(lambda ws, p: " ".join(ws) + p, st.lists(phrase_word, min_size=1, max_size=4),
                            st.sampled_from([".", "!", "", ":", "...", '"']))
phrase_doc = st.builds(lambda ls: "\n".join(" ".join(x) for x in ls),
                       st.lists(st.lists(phrase_sentence, min_size=1, max_size=3), min_size=1, max_size=4))


@settings(max_examples=300, deadline=None)
@given(doc=phrase_doc)
def test_best_tier_ranks_like_rank(doc):
    """The per-line shortcut in best_tier gives the ranks `rank` defines on the full line."""
    from ghostsent.placement import best_tier

    bs = [(b.offset, b.kind) for b in sentence_boundaries(doc)]
    if not bs:
        return
    ranks = [rank(doc, o, k, _ins(k)) for o, k in bs]
    best = min(ranks)
    assert best_tier(doc, bs, GHOST) == [b for b, r in zip(bs, ranks) if r == best]


def _ins(kind: str) -> str:
    from ghostsent.sentences import Boundary

    return Boundary(0, kind).inserted(GHOST)
