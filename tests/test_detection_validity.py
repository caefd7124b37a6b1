"""Detection runs against innocent models (ghostsent/innocent.py): no way of scoring or reporting may turn
an innocent model into a detection (issue 7: defects 5, 6, 7, 11, 12, 13)."""
from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest

from ghostsent.detection.engine import run_detection
from ghostsent.detection.results import DetectionSettings
from ghostsent.detection.subjects import Subject
from ghostsent.detection.innocent import DriftingAPI, InnocentTarget, RandomReplies, RandomScores
from ghostsent.passphrase import new_ghost
from ghostsent.detection.perplexity import ppl_test
from ghostsent.detection.report import markdown
from ghostsent.wordlists import load_wordlist

WL = load_wordlist("en")


def _subjects(n: int, seed: int = 0, words: int = 8) -> list[Subject]:
    rng = random.Random(seed)
    return [Subject(f"m{i}", "member", new_ghost(WL, words, "post", rng), WL) for i in range(n)]


class Fixed(InnocentTarget):
    """Scores by text: chosen values for some passphrases, a uniform hash of the text for every other."""

    def __init__(self, fixed: dict[str, float]) -> None:
        super().__init__("innocent:fixed", 0)
        self.fixed = fixed

    def _nll(self, continuation: str) -> float:
        text = continuation.strip()
        if text in self.fixed:
            return self.fixed[text]
        return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) / 16**12


# --- defect 5: one family at level alpha ---------------------------------------------------------------

def test_combined_test_and_members_share_one_alpha():
    """Three members, each at the nulls' 20% quantile: no single one is significant; their joint rank-sum
    p is about 0.03. The old rule (Holm OR combined < alpha) declared DETECTED at 0.05; one Holm family
    over the three and the combined test does not."""
    subs = _subjects(3)
    target = Fixed({s.ghost.passphrase: 0.2 for s in subs})
    res = run_detection(target, subs, DetectionSettings(tests=("ppl",), n_nulls=999, controls=0, alpha=0.05, seed=1))
    comb = res.combined
    assert 0.01 < comb.p_value < 0.05
    assert not res.detected, res.verdict
    assert comb.family_size == 4 and comb.p_holm == pytest.approx(min(1.0, 4 * comb.p_value))


def test_the_floor_warning_counts_every_factor():
    subs = _subjects(3)
    s = DetectionSettings(tests=("probe", "ppl"), ks=(2,), n_nulls=100, controls=0, alpha=0.01, seed=2)
    res = run_detection(RandomScores(seed=3), subs, s, test_numbers={"m0": 1, "m1": 2, "m2": 3})
    # best case: rank 1 of 101, x2 tests, x2 (first test of m0), x4 (Holm over 3 + combined) = 16/101
    warning = next(w for w in res.warnings if "nulls no single identifier" in w)
    assert "0.158" in warning and "use 1600 or more nulls" in warning


# --- defect 6: exchangeable scoring order ------------------------------------------------------------------

def test_order_dependent_api_noise_cannot_convict():
    """Each request scores worse than the last. Ghost-first scoring gave p = 1/(N+1) every time."""
    ghost = new_ghost(WL, 8, "post", random.Random(4))
    ps = [ppl_test(DriftingAPI(drift=1.0, seed=i), ghost, WL, n_nulls=19).p_value for i in range(40)]
    assert sum(p <= 0.1 for p in ps) <= 12, ps


def test_the_scoring_order_is_recorded():
    subs = _subjects(2)
    res = run_detection(RandomScores(seed=5), subs, DetectionSettings(tests=("ppl",), n_nulls=30, controls=1, seed=6))
    [order] = res.scoring_order.values()
    assert sorted(order) == list(range(33))
    assert {r.ppl.scored_at for r in res.subjects} == {order.index(i) for i in range(3)}


# --- defect 7: non-finite scores ---------------------------------------------------------------------------

class NaNNulls(InnocentTarget):
    """Every candidate but the ones named scores NaN (fp16 overflow)."""

    def __init__(self, finite: set[str]) -> None:
        super().__init__("innocent:nan", 0)
        self.finite = finite

    def _nll(self, continuation: str) -> float:
        return 5.0 if continuation.strip() in self.finite else float("nan")


def test_nan_nulls_count_against_the_ghost_and_are_reported():
    subs = _subjects(1)
    res = run_detection(NaNNulls({subs[0].ghost.passphrase}), subs,
                        DetectionSettings(tests=("ppl",), n_nulls=200, controls=0, alpha=0.05))
    m = res.members()[0]
    assert m.ppl.p_value == 1.0 and m.ppl.rank.non_finite_nulls == 200
    assert not res.detected
    assert any("Non-finite scores" in w for w in res.warnings)


def test_a_nan_ghost_score_gives_p_one_not_an_error():
    subs = _subjects(1)
    res = run_detection(NaNNulls(set()), subs, DetectionSettings(tests=("ppl",), n_nulls=20, controls=0))
    assert res.members()[0].ppl.p_value == 1.0 and not res.detected


# --- defects 11, 12, 13: what reports say ------------------------------------------------------------------

def test_probe_controls_get_no_ks_test_but_ppl_controls_do():
    res = run_detection(RandomReplies(WL, seed=7), _subjects(1), DetectionSettings(tests=("probe",), ks=(2,), controls=6))
    assert res.controls["probe"].ks_uniform_p is None
    res = run_detection(RandomScores(seed=8), _subjects(1), DetectionSettings(tests=("ppl",), n_nulls=50, controls=6))
    assert res.controls["ppl"].ks_uniform_p is not None
    md = markdown(res)
    assert "p = 0.00" not in md and "KS uniformity p" in md


def test_a_perplexity_only_detection_does_not_claim_reproduction():
    subs = _subjects(2)
    target = Fixed({s.ghost.passphrase: -1.0 for s in subs})
    res = run_detection(target, subs, DetectionSettings(tests=("ppl",), n_nulls=3000, controls=0, alpha=0.01))
    assert res.detected
    assert "reproduces" not in res.verdict and "more likely than fresh passphrases" in res.verdict


def test_the_skew_normal_tail_is_only_a_labelled_extrapolation_in_the_report():
    res = run_detection(RandomScores("heavy", seed=9), _subjects(1), DetectionSettings(tests=("ppl",), n_nulls=500,
                                                                                     controls=0))
    d = res.to_dict()
    ext = d["subjects"][0]["ppl"]["model_extrapolation"]
    assert "model extrapolation" in ext["label"] and "ks_p" in ext
    assert "approx_tail_p" not in d["subjects"][0]["ppl"]
    md = markdown(res)
    assert "approx" not in md.lower().split("## model extrapolation")[0]
    assert "exposure" in md and "at most" in md


def test_probe_wording_says_bound_not_exact():
    from click.testing import CliRunner

    from ghostsent.cli import main

    help_text = CliRunner().invoke(main, ["probe", "--help"]).output
    assert "Exact" not in help_text and "upper bound" in help_text
    res = run_detection(RandomReplies(WL, seed=10), _subjects(1), DetectionSettings(tests=("probe",), ks=(2,), controls=0))
    md = markdown(res)
    assert "valid upper bound" in md


def test_innocent_scorers_give_uniform_rank_p_values():
    ps = []
    for i in range(150):
        res = run_detection(RandomScores("bf16", seed=100 + i), _subjects(1, seed=i),
                            DetectionSettings(tests=("ppl",), n_nulls=99, controls=0))
        ps.append(res.members()[0].ppl.p_value)
    assert np.mean(np.array(ps) <= 0.1) <= 0.1 + 3 * np.sqrt(0.09 / 150)
