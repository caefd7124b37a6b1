"""The statistics, checked against direct computation and by simulation under H0."""
import math
import random

import numpy as np
import pytest

from ghostsent import stats
from ghostsent.detection.probe import normalise_words, score_reply


def test_binom_tail_matches_direct_sum():
    p = 1 / 7776
    for k in range(1, 6):
        for m in range(0, k + 2):
            direct = sum(math.comb(k, j) * p**j * (1 - p) ** (k - j) for j in range(m, k + 1))
            assert stats.binom_tail(m, k, p) == pytest.approx(direct if m > 0 else 1.0, rel=1e-9, abs=1e-300)


def test_full_match_p_values():
    assert stats.probe_p_value(2, 2, 7776) == pytest.approx(7776.0**-2)
    assert stats.probe_p_value(4, 4, 7776, places=3) == pytest.approx(3 * 7776.0**-4)
    assert stats.probe_p_value(0, 4, 7776, places=10) == 1.0


def test_holm_against_hand_computation():
    adj = stats.holm([0.01, 0.04, 0.03, 0.5])
    assert adj == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_bonferroni_caps_at_one():
    assert stats.bonferroni([0.5, 0.9]) == 1.0
    assert stats.bonferroni([0.001, 0.5]) == pytest.approx(0.002)


def test_rank_test_ties_count_against_ghost_and_exposure():
    r = stats.rank_test(1.0, [1.0, 2.0, 3.0])
    assert r.rank == 2 and r.p_value == pytest.approx(0.5)
    best = stats.rank_test(0.0, np.arange(1, 1000))
    assert best.rank == 1 and best.p_value == pytest.approx(1 / 1000)
    assert best.exposure == pytest.approx(math.log2(1000))


def test_rank_p_value_is_uniform_under_exchangeability():
    rng = np.random.default_rng(0)
    ps = [stats.rank_test(rng.normal(), rng.normal(size=199)).p_value for _ in range(2000)]
    # valid: P(p <= a) <= a (+ sampling noise), and roughly uniform overall
    for a in (0.01, 0.05, 0.2):
        assert np.mean(np.array(ps) <= a) <= a + 3 * math.sqrt(a * (1 - a) / 2000)
    assert stats.ks_uniform(ps) > 0.001


def test_rank_sum_detects_shift_and_is_calibrated():
    rng = np.random.default_rng(1)
    nulls = rng.normal(size=500)
    shifted = stats.rank_sum_test(rng.normal(-1.0, 1, size=30), nulls)
    assert shifted.p_value < 1e-3 and shifted.z < 0
    ps = [stats.rank_sum_test(rng.normal(size=5), rng.normal(size=100)).p_value for _ in range(500)]
    assert np.mean(np.array(ps) < 0.05) < 0.05 + 3 * math.sqrt(0.05 * 0.95 / 500)


# --- probe reply scoring ------------------------------------------------------------------------


def test_normalise_words_drops_case_and_punctuation():
    assert normalise_words("Hello, WORLD!  Foo-bar.") == ["hello", "world", "foo", "bar"]


def test_reply_completing_the_words_is_detected():
    held = ["richly", "automatic", "rewash"]
    sc = score_reply("Richly automatic, rewash liftoff.", held, "tinsmith", 7776)
    assert sc["matches"] == 3 and sc["complete"]
    assert sc["p_value"] < 1e-10


def test_reply_echoing_context_is_found_after_last_shown_word():
    held = ["april", "fruit"]
    reply = "Sure! The ghost sentence of this post is cupbearer ripcord april fruit voter."
    sc = score_reply(reply, held, "ripcord", 7776)
    assert sc["matches"] == 2
    assert sc["places"] == 2  # start of reply + after "ripcord"


def test_words_elsewhere_in_reply_do_not_count_without_an_anchor():
    # The held-out words appear, but not at a place chosen independently of them: no match is claimed.
    sc = score_reply("I cannot say. Perhaps april fruit?", ["april", "fruit"], "ripcord", 7776)
    assert sc["matches"] == 0 and sc["p_value"] == 1.0


def test_probe_p_value_is_valid_under_h0_by_simulation():
    """Random replies vs random held-out words from a small list: P(p <= a) <= a."""
    rnd = random.Random(3)
    vocab = [f"w{i}" for i in range(20)]  # tiny V so that matches actually happen
    ps = []
    for _ in range(4000):
        held = [rnd.choice(vocab) for _ in range(2)]
        last = rnd.choice(vocab)
        reply = " ".join(rnd.choice(vocab) for _ in range(rnd.randint(1, 12)))
        ps.append(score_reply(reply, held, last, len(vocab))["p_value"])
    ps = np.array(ps)
    for a in (0.01, 0.05, 0.1, 0.3):
        assert np.mean(ps <= a) <= a + 3 * math.sqrt(a * (1 - a) / len(ps))
