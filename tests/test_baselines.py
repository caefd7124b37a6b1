"""Membership-inference baselines and ROC metrics, against hand-computed values."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from ghostsent.study.baselines import loss_score, min_k_pp_score, min_k_score, roc_auc, roc_curve, tpr_at_fpr, zlib_score
from ghostsent.errors import InputError
from ghostsent.targets.base import Scored

LP = np.array([-0.5, -4.0, -1.0, -2.0, -0.1, -3.0, -0.2, -0.3, -0.4, -0.6])


def test_loss_and_zlib():
    s = Scored(tokens=list("abcdefghij"), logprobs=LP)
    assert loss_score(s) == pytest.approx(-1.21)
    text = "the quick brown fox"
    assert zlib_score(s, text) == pytest.approx(-1.21 / len(zlib.compress(text.encode())))
    # the same loss on a more compressible text is less evidence of membership (lower score)
    boiler = "aaaa " * 40
    assert len(zlib.compress(boiler.encode())) < len(zlib.compress(text.encode()))
    assert zlib_score(s, boiler) < zlib_score(s, text)


def test_min_k():
    s = Scored(tokens=list("abcdefghij"), logprobs=LP)
    assert min_k_score(s, k=0.2) == pytest.approx((-4.0 - 3.0) / 2)   # lowest 2 of 10
    assert min_k_score(s, k=0.25) == pytest.approx((-4.0 - 3.0 - 2.0) / 3)  # ceil(2.5) = 3
    assert min_k_score(s, k=1.0) == pytest.approx(-1.21)
    assert min_k_score(Scored(["a"], np.array([-2.0])), k=0.2) == -2.0  # at least one token


def test_min_k_pp():
    mu = np.full(10, -1.0)
    sigma = np.array([1, 2, 1, 1, 1, 1, 1, 1, 1, 0.5])
    s = Scored(list("abcdefghij"), LP, mu=mu, sigma=sigma)
    z = (LP - mu) / sigma  # [0.5, -1.5, 0, -1, 0.9, -2, 0.8, 0.7, 0.6, 0.8]
    assert min_k_pp_score(s, k=0.2) == pytest.approx((-2.0 - 1.5) / 2)
    assert min_k_pp_score(s, k=0.3) == pytest.approx(np.sort(z)[:3].mean())
    with pytest.raises(InputError, match="full_stats"):
        min_k_pp_score(Scored(list("ab"), np.array([-1.0, -2.0])))
    with pytest.raises(InputError, match="k must be"):
        min_k_score(s, k=0)


def test_member_scores_higher():
    member = Scored(list("abc"), np.array([-0.1, -0.2, -0.3]))
    other = Scored(list("abc"), np.array([-3.0, -2.0, -5.0]))
    for f in (loss_score, min_k_score):
        assert f(member) > f(other)
    assert zlib_score(member, "x y z") > zlib_score(other, "x y z")


def test_auc_hand_examples():
    assert roc_auc([3, 4, 5], [0, 1, 2]) == 1.0
    assert roc_auc([0, 1, 2], [3, 4, 5]) == 0.0
    assert roc_auc([1, 2, 3], [1, 2, 3]) == 0.5
    assert roc_auc([1, 1], [1, 1, 1]) == 0.5
    # pairs: (2 vs 1) win, (2 vs 2) tie, (2 vs 3) loss, (3 vs 1) win, (3 vs 2) win, (3 vs 3) tie -> 4/6
    assert roc_auc([2, 3], [1, 2, 3]) == pytest.approx(4 / 6)


def test_auc_matches_brute_force():
    rng = np.random.default_rng(0)
    m, n = rng.integers(0, 5, 40).astype(float), rng.integers(0, 5, 30).astype(float)  # many ties
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in m for b in n])
    assert roc_auc(m, n) == pytest.approx(brute)
    fpr, tpr, _ = roc_curve(m, n)
    assert np.trapezoid(tpr, fpr) == pytest.approx(brute)  # the curve integrates to the same AUC


def test_roc_curve_and_tpr_at_fpr():
    fpr, tpr, thr = roc_curve([0.9, 0.8, 0.3], [0.7, 0.2])
    assert list(thr) == [np.inf, 0.9, 0.8, 0.7, 0.3, 0.2]
    assert list(fpr) == [0, 0, 0, 0.5, 0.5, 1.0]
    assert list(tpr) == pytest.approx([0, 1 / 3, 2 / 3, 2 / 3, 1, 1])
    assert tpr_at_fpr([0.9, 0.8, 0.3], [0.7, 0.2], fpr=0.0) == pytest.approx(2 / 3)
    assert tpr_at_fpr([0.9, 0.8, 0.3], [0.7, 0.2], fpr=0.5) == 1.0
    # a tie between the best member and a non-member: no threshold at FPR 0 catches it
    assert tpr_at_fpr([1.0, 0.5], [1.0, 0.0], fpr=0.0) == 0.0
    with pytest.raises(InputError, match="at least one"):
        roc_auc([], [1.0])
    with pytest.raises(InputError, match="NaN"):
        roc_auc([np.nan], [1.0])
