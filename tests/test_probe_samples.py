"""Chat-only probes (issue 10, section 2): several samples pooled with an exact Poisson-binomial tail
instead of a Bonferroni factor per sample, and refusals recorded as refusals."""
from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

import numpy as np

from ghostsent import stats
from ghostsent.detection import probe
from ghostsent.passphrase import Ghost
from ghostsent.targets.base import Target

WORDS = ("oak", "elm", "ash", "yew", "fir")


class FixedReplies(Target):
    """A subject model whose sampled replies are fixed in advance (independent of any held-out word)."""

    spec = "test:fixed"
    is_chat = True

    def __init__(self, replies: Sequence[str]) -> None:
        self.replies = list(replies)

    def generate_many(self, prompts, *, max_tokens=32, temperature=0.0, n=1, seed=None):
        return [self.replies[:n] for _ in prompts]

    def chat_many(self, conversations, *, max_tokens=48, temperature=0.0, n=1, seed=None):
        return [self.replies[:n] for _ in conversations]

    def score(self, *a: Any, **k: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    generate = chat = score


def test_poisson_binomial_tail_is_exact():
    probs = [0.1, 0.5, 0.25, 0.9]
    for h in range(6):
        brute = sum(np.prod([q if b else 1 - q for q, b in zip(probs, bits)])
                    for bits in itertools.product((0, 1), repeat=4) if sum(bits) >= h)
        assert math.isclose(stats.poisson_binomial_tail(probs, h), brute, abs_tol=1e-15)


def test_pooled_samples_are_valid_by_exact_enumeration():
    """Fixed replies that echo, repeat and spread list words; every held-out pair equally likely (the
    null): the share with p <= a is the exact size, at most a."""
    replies = ["oak elm", "ash oak yew", "so: elm elm fir", "oak", "the elm ash"]
    for a in (0.05, 0.1, 0.2, 0.5):
        ps = [probe.score_samples(replies, list(w), "oak", len(WORDS))["p_value"]
              for w in itertools.product(WORDS, repeat=2)]
        assert np.mean(np.array(ps) <= a) <= a + 1e-12, a


def test_hits_spread_over_samples_count_without_a_factor_per_sample():
    """Five samples, four of them right at one different held-out position each (k = 4, V = 7,776):
    pooled, each position is a hit with probability at most 5/V under H0, all four about 1e-13.
    Per-sample Bonferroni (the old rule) cannot see it: no single reply has more than one word right."""
    ghost = Ghost(tuple("alpha bravo charlie delta echo foxtrot golf hotel".split()), "{words}")
    held = list(ghost.words[-4:])
    replies = [f"{held[0]} w x y", f"q {held[1]} y z", f"q r {held[2]} z",
               f"q r s {held[3]}", "nothing here at all"]
    res = probe.run_probe(FixedReplies(replies), ghost, 7776, ks=(4,), samples=5, temperature=1.0, modes=("raw",))
    old_rule = stats.bonferroni([r.p_value for r in res.records if r.sample >= 0])
    assert old_rule > 1e-3
    assert res.p_value < 1e-9, res.p_value
    assert sum(1 for r in res.records if r.counted) == 1


def test_refusals_are_recorded_as_refusals():
    ghost = Ghost(tuple("alpha bravo charlie delta echo foxtrot".split()), "{words}")
    res = probe.run_probe(FixedReplies(["I'm sorry, but I can\u2019t continue copyrighted text."]), ghost, 7776,
                          ks=(2,), modes=("chat",))
    assert res.refusals == len(res.records) == 2 and all(r.refused for r in res.records)
    assert res.to_dict()["refusals"] == 2
    assert not probe.is_refusal("alpha bravo charlie delta echo foxtrot")
