"""The fast paths (trigger pre-checks, second-half scan, regex paragraph starts, lazy checks) keep every rule.

Oracle: tests/sentences_reference.py, the rules before the speed work, run on texts dense in every
trigger character so that both the skipped and the scanned branches are exercised."""
from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ghostsent.insert import NoBoundaryError, placer, plan
from ghostsent.sentences import protected_spans, sentence_boundaries

_spec = importlib.util.spec_from_file_location("sentences_reference",
                                               Path(__file__).with_name("sentences_reference.py"))
ref = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("sentences_reference", ref)  # dataclasses look their module up
_spec.loader.exec_module(ref)

# No single 'w'/'W' or upper-case "MAILTO": the reference missed "Www." and "MAILTO:" (its triggers were
# case-sensitive while the patterns are not), which the new code fixes.
TOKENS = ["alpha", "Beta", "Dr.", "e.g.", "U.S.", "3.14", "1.", "12)", "x", "I", "etc.", "approx.",
          " ", " ", " ", "  ", "    ", "\t", "\n", "\n", "\n\n", "\r\n", "\n \n", "\u3000", "\u2028",
          ".", ".", "!", "?", "...", "\u2026", '"', "'", ")", "(", "]", "[", "}", "\u201d", "\u201c", "\u00ab",
          "`", "```", "~~~", "<", ">", "<b>", "<!--", "-->", "<pre>", "</pre>", "|", "|---|---|", "#", "## ",
          "---", "+++", "===", "-", "=", "]:", "](", "][", "://", "http://a.b/c.", "www.", "mailto:",
          "@", "a@b.co", "$$", "*", "_", "\ufeff", "?!?!?!?!?!.", "........."]


def texts():
    return st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)


def key(bs):
    return [(b.offset, b.kind) for b in bs]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts(), frac=st.floats(0, 1))
def test_same_spans_and_boundaries_as_the_reference(text, frac):
    spans = protected_spans(text)
    assert spans == ref.protected_spans(text)
    full = ref.sentence_boundaries(text)
    assert key(sentence_boundaries(text)) == key(full)
    for start in {(len(text) + 1) // 2, int(len(text) * frac), len(text)}:
        assert key(sentence_boundaries(text, spans, start)) == [k for k in key(full) if k[0] >= start]


@settings(max_examples=300, deadline=None)
@given(text=texts(), seed=st.integers(0, 2**32), position=st.sampled_from(["latter-half", "end"]))
def test_latter_half_and_end_pick_a_boundary_of_the_half(text, seed, position):
    full = ref.sentence_boundaries(text)
    if not full:
        return
    half = [b.offset for b in full if b.offset >= len(text) / 2]
    got = plan(text, "g h", position, random.Random(seed)).offset
    if not half and position == "end":
        assert got == full[-1].offset
    elif not half:  # latter-half: the last of the best-ranked boundaries (docs/insertion.md)
        from ghostsent.placement import best_tier
        assert got == best_tier(text, [(b.offset, b.kind) for b in full], "g h")[-1][0]
    elif position == "end":
        assert got == half[-1]
    else:
        assert got in half


def test_latter_half_is_uniform_over_the_half_despite_lazy_checks():
    # Second half: five boundaries and three candidates that are not ("Dr.", "e.g.", "approx.").
    text = ("Alpha beta gamma delta. Epsilon zeta eta theta. Iota kappa lambda mu. Nu xi omicron pi rho. "
            "Sigma tau Dr. Who upsilon. Phi chi e.g. Psi omega. Ab cd approx. Five ef. Gh ij kl.")
    half = [b.offset for b in ref.sentence_boundaries(text) if b.offset >= len(text) / 2]
    assert len(half) == 5
    # Placement prefers boundaries with more text after them on the line (docs/insertion.md): the last
    # boundary (the end of the text) is never chosen while the four mid-line ones exist.
    mid = half[:-1]
    rng = random.Random(1)
    n = 6000
    counts = {o: 0 for o in half}
    for _ in range(n):
        counts[plan(text, "g h", "latter-half", rng).offset] += 1
    assert counts[half[-1]] == 0
    for o in mid:
        assert abs(counts[o] - n / 4) < 0.04 * n, counts  # ~8 standard deviations


def test_case_variants_of_www_and_mailto_are_protected():
    for t in ["See Www.ex.org/a. B here.", "Mail MAILTO:a.b. C here.", "See wWW.ex.org/a. B here.",
              "\u0130 then WWW.ex.org/a. B here."]:
        s, e = protected_spans(t)[0]
        assert t[s:e].lower().startswith(("www.", "mailto:"))


@settings(max_examples=300, deadline=None)
@given(text=texts(), seed=st.integers(0, 2**32), position=st.sampled_from(["latter-half", "end", "start", "random"]))
def test_placer_places_like_plan(text, seed, position):
    """tag-jsonl's placer(ghost, position)(text, rng) is plan() without the Placement object."""
    place = placer("g h", position)
    try:
        p = plan(text, "g h", position, random.Random(seed))
    except NoBoundaryError:
        with pytest.raises(NoBoundaryError):
            place(text, random.Random(seed))
        return
    assert place(text, random.Random(seed)) == (p.offset, p.inserted)


ONE_LINE_TOKENS = [t for t in TOKENS if "\n" not in t] + ["javascript", "cookie policy", "terms of use", "Word."]
GHOSTS = ["river garden quantum", "river garden quantum.", "enable javascript please", "ends with ellipsis..."]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(words=st.lists(st.sampled_from(ONE_LINE_TOKENS), max_size=60), newline=st.booleans(),
       ghost=st.sampled_from(GHOSTS), seed=st.integers(0, 2**32))
def test_one_line_fast_path_draws_like_the_general_ranking(words, newline, ghost, seed):
    """latter_half's one-line path (no newline, length >= 7) returns exactly what the general ranked
    draw returns with the same random source: the same candidates, pools, order and draws."""
    from ghostsent.placement import GhostFacts, _general_half, _whole_text_best, latter_half

    text = "".join(words) + ("\n" if newline else "")
    spans, g = protected_spans(text), GhostFacts.of(ghost)
    expected = _general_half(text, spans, random.Random(seed), g)
    assert latter_half(text, spans, random.Random(seed), g) == expected
    if expected is None:
        assert _whole_text_best(text, spans, g) is None
