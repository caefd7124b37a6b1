"""Membership-inference baselines and the metrics that compare them with the ghost-sentence tests.

The scores use the token log-probabilities a target already gives (`targets.base.Scored`) for the
same identifiers the detection code tests, so every method sees exactly the same evidence.

Convention: **higher score = more likely a member** (seen in training). Loss-like quantities, where
lower means "seen", are negated, so all scores feed `roc_auc` and `tpr_at_fpr` the same way.

* `loss_score`     -mean NLL of the text (Yeom et al. 2018; the LOSS attack).
* `zlib_score`     -mean NLL / zlib-compressed length of the text in bytes (Carlini et al. 2021:
                   "ratio of log-perplexity and zlib entropy", as their code and the Min-K%
                   reference code compute it): text that is simply predictable
                   (repetitive, boilerplate) compresses well too, so the ratio discounts it.
* `min_k_score`    mean of the lowest k fraction of token log-probs (Shi et al. 2024, Min-K% Prob):
                   a non-member has a few very unlikely tokens; a member has few outliers.
* `min_k_pp_score` the same over (log p - mu) / sigma per position (Zhang et al. 2024, Min-K%++),
                   where mu/sigma are the mean/std of log p(z) under the model's own next-token
                   distribution: a token is judged against what the model expected at that point.

numpy only.
"""
from __future__ import annotations

import math
import zlib
from typing import Sequence

import numpy as np

from ghostsent.errors import InputError
from ghostsent.targets.base import Scored


def _logprobs(s: Scored) -> np.ndarray:
    lp = np.asarray(s.logprobs, dtype=np.float64)
    if lp.ndim != 1 or lp.size == 0:
        raise InputError("baseline score: the Scored item has no token log-probabilities")
    return lp


def _lowest_k_mean(values: np.ndarray, k: float) -> float:
    if not 0.0 < k <= 1.0:
        raise InputError(f"k must be in (0, 1], got {k}")
    n = max(1, math.ceil(k * values.size))  # at least one token, rounding up (as the Min-K% code does)
    return float(np.mean(np.sort(values)[:n]))


def loss_score(s: Scored) -> float:
    """-mean NLL (nats/token) of the text."""
    return float(np.mean(_logprobs(s)))


def zlib_score(s: Scored, text: str) -> float:
    """-(mean NLL in nats/token) / (zlib-compressed length of `text` in bytes)."""
    lp = _logprobs(s)
    z = len(zlib.compress(text.encode("utf-8")))
    return float(np.mean(lp)) / z


def min_k_score(s: Scored, k: float = 0.2) -> float:
    """Mean log-prob of the lowest k fraction of tokens (higher = fewer surprises = member)."""
    return _lowest_k_mean(_logprobs(s), k)


def min_k_pp_score(s: Scored, k: float = 0.2) -> float:
    """Mean of the lowest k fraction of (log p - mu) / sigma. Needs `full_stats=True` scores."""
    lp = _logprobs(s)
    if s.mu is None or s.sigma is None:
        raise InputError("min_k_pp_score needs mu/sigma: score with full_stats=True on a local model")
    mu, sigma = np.asarray(s.mu, dtype=np.float64), np.asarray(s.sigma, dtype=np.float64)
    if mu.shape != lp.shape or sigma.shape != lp.shape:
        raise InputError(f"min_k_pp_score: mu/sigma shape {mu.shape}/{sigma.shape} != logprobs {lp.shape}")
    z = (lp - mu) / np.maximum(sigma, 1e-12)  # sigma is 0 only for a one-hot distribution
    return _lowest_k_mean(z, k)


# --- metrics ----------------------------------------------------------------------------------------

def _two(member: Sequence[float], nonmember: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(member, dtype=np.float64).ravel()
    n = np.asarray(nonmember, dtype=np.float64).ravel()
    if m.size == 0 or n.size == 0:
        raise InputError("ROC metrics need at least one member and one non-member score")
    if np.isnan(m).any() or np.isnan(n).any():
        raise InputError("ROC metrics got a NaN score")
    return m, n


def roc_auc(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> float:
    """P(member score > non-member score) + 0.5 P(tie): the Mann-Whitney U statistic / (m n).

    Computed from mid-ranks of the pooled scores, so ties count one half, exactly.
    """
    m, n = _two(member_scores, nonmember_scores)
    pooled = np.concatenate([m, n])
    order = np.argsort(pooled, kind="mergesort")
    ranks = np.empty(pooled.size, dtype=np.float64)
    sorted_vals = pooled[order]
    # mid-ranks: every run of equal values gets the mean of its 1-based positions
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], sorted_vals.size]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + 1 + e) / 2.0
    u = ranks[: m.size].sum() - m.size * (m.size + 1) / 2.0
    return float(u / (m.size * n.size))


def roc_curve(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) for the rule "member if score >= threshold", one point per distinct
    score from the highest down, starting at (0, 0) with threshold +inf and ending at (1, 1)."""
    m, n = _two(member_scores, nonmember_scores)
    thresholds = np.unique(np.concatenate([m, n]))[::-1]
    ms, ns = np.sort(m), np.sort(n)
    tpr = (m.size - np.searchsorted(ms, thresholds, side="left")) / m.size
    fpr = (n.size - np.searchsorted(ns, thresholds, side="left")) / n.size
    return np.r_[0.0, fpr], np.r_[0.0, tpr], np.r_[np.inf, thresholds]


def tpr_at_fpr(member_scores: Sequence[float], nonmember_scores: Sequence[float], fpr: float = 0.01) -> float:
    """Highest true-positive rate among thresholds whose false-positive rate is <= `fpr`.

    With fewer than 1/fpr non-members the only threshold that qualifies may be "flag nothing"
    (tpr 0 unless members beat every non-member), which is the honest answer at that sample size.
    """
    if not 0.0 <= fpr <= 1.0:
        raise InputError(f"fpr must be in [0, 1], got {fpr}")
    f, t, _ = roc_curve(member_scores, nonmember_scores)
    return float(t[f <= fpr + 1e-12].max())
