"""Unclosed protected regions cut off at every position: the region runs to the end of the text, so no
boundary and no placed ghost may fall after its start, whatever the cut and whatever the strategy."""
from __future__ import annotations

import random

import pytest

from ghostsent.insert import POSITIONS, NoBoundaryError, plan
from ghostsent.sentences import sentence_boundaries

INTRO = "Intro one here. Intro two here.\n\n"
BODY = "\nvar a = 1. Next one here. More here!\nLast line here. End of it.\n\nAfter a blank line. Yes."
OPENERS = ["```", "~~~~", "<!--", "<script>", "<SCRIPT type='x'>", "<style>", "<pre>", "<textarea>", "<math>",
           "<svg>", "<code>", "$$"]


@pytest.mark.parametrize("opener", OPENERS)
def test_no_boundary_after_an_unclosed_region_at_any_cut(opener):
    start = len(INTRO)
    full = INTRO + opener + BODY
    for cut in range(start + len(opener), len(full) + 1):
        for tail in ("", "\n"):
            text = full[:cut] + tail
            late = [b for b in sentence_boundaries(text) if b.offset > start]
            assert not late, (opener, cut, tail, late)
            for position in POSITIONS:
                try:
                    p = plan(text, "ghost words here", position, random.Random(cut))
                except NoBoundaryError:
                    continue
                assert p.offset <= start, (opener, cut, tail, position)
