"""The statistics behind every p-value ghostsent prints. Derivations are in docs/statistics.md.

Both tests rest on one fact: the passphrase words were drawn uniformly and independently from a word
list, so under H0 ("the model never trained on this ghost sentence") the model is independent of the
words. Then
- a reply cannot match a held-out word with probability above 1/V (probe: binomial tail), and
- the ghost's score is exchangeable with scores of fresh passphrases drawn the same way (perplexity test:
  rank p-value; audit: rank-sum test).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as _st


def binom_tail(matches: int, k: int, p: float) -> float:
    """P(Binomial(k, p) >= matches), exact."""
    if matches <= 0:
        return 1.0
    if matches > k:
        return 0.0
    return float(_st.binom.sf(matches - 1, k, p))


def probe_p_value(matches: int, k: int, vocab_size: int, places: int = 1) -> float:
    """p-value of one last-k probe: union bound over the `places` a reply was searched at."""
    return min(1.0, max(1, places) * binom_tail(matches, k, 1.0 / vocab_size))


def bonferroni(p_values: Sequence[float]) -> float:
    """Combine tests of one hypothesis: valid under any dependence between them."""
    if not len(p_values):
        return 1.0
    return min(1.0, len(p_values) * min(p_values))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error control, any dependence)."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        adjusted[idx] = running
    return adjusted.tolist()


@dataclass
class RankResult:
    rank: int          # 1 + number of nulls scoring at least as well (1 = best of all)
    n_nulls: int
    p_value: float     # rank / (n_nulls + 1): exact and valid, ties counted against the ghost
    exposure: float    # Secret-Sharer exposure in bits: log2(N+1) - log2(rank)


def rank_test(score: float, null_scores: Sequence[float]) -> RankResult:
    """Empirical rank test where LOWER scores are better (e.g. NLL).

    Under H0 the ghost and the N nulls are exchangeable, so its rank among the N+1 is uniform on
    1..N+1 (ties broken against the ghost); P(rank <= r) <= r/(N+1).
    """
    nulls = np.asarray(null_scores, dtype=float)
    if not np.isfinite(score):
        raise ValueError("ghost score is not finite")
    rank = 1 + int(np.sum(nulls <= score))
    n = len(nulls)
    return RankResult(rank=rank, n_nulls=n, p_value=rank / (n + 1), exposure=math.log2(n + 1) - math.log2(rank))


def tail_p_value(score: float, null_scores: Sequence[float]) -> float:
    """APPROXIMATE lower-tail probability from a skew-normal fitted to the null scores.

    This extrapolates beyond 1/(N+1), as the Secret Sharer paper does; it depends on the fitted shape
    and is always labelled approximate. The exact p-value is rank_test's.
    """
    nulls = np.asarray(null_scores, dtype=float)
    if len(nulls) < 20 or np.std(nulls) == 0:
        return float("nan")
    a, loc, scale = _st.skewnorm.fit(nulls)
    return float(_st.skewnorm.cdf(score, a, loc, scale))


def approx_exposure(p: float) -> float:
    return float("nan") if not p > 0 else -math.log2(p)


@dataclass
class RankSumResult:
    statistic: float   # Mann-Whitney U of members vs nulls (counts member-beats-null pairs)
    z: float
    p_value: float
    method: str
    n_members: int
    n_nulls: int


def rank_sum_test(member_scores: Sequence[float], null_scores: Sequence[float]) -> RankSumResult:
    """One-sided Wilcoxon rank-sum (Mann-Whitney) test that member scores are LOWER than null scores.

    Valid as a joint test because, under H0, member identifiers and fresh nulls are exchangeable draws.
    Exact distribution for small samples without ties; otherwise the normal approximation with tie
    correction (reported as such).
    """
    x = np.asarray(member_scores, dtype=float)
    y = np.asarray(null_scores, dtype=float)
    if len(x) == 0 or len(y) == 0:
        raise ValueError("rank-sum test needs at least one member and one null score")
    ties = len(np.unique(np.concatenate([x, y]))) < len(x) + len(y)
    method = "exact" if (len(x) * len(y) <= 20000 and not ties) else "asymptotic"
    res = _st.mannwhitneyu(x, y, alternative="less", method=method)
    # z for reporting (sign: negative = members lower/better than nulls)
    m, n = len(x), len(y)
    mu = m * n / 2.0
    sd = math.sqrt(m * n * (m + n + 1) / 12.0)
    z = (res.statistic - mu) / sd if sd > 0 else 0.0
    return RankSumResult(float(res.statistic), float(z), float(res.pvalue), method, m, n)


def stouffer(z_scores: Sequence[float], weights: Sequence[float] | None = None) -> tuple[float, float]:
    """Combine independent one-sided z statistics (lower = more evidence): (z, p)."""
    z = np.asarray(z_scores, dtype=float)
    w = np.ones_like(z) if weights is None else np.asarray(weights, dtype=float)
    zc = float(np.sum(w * z) / math.sqrt(np.sum(w**2)))
    return zc, float(_st.norm.cdf(zc))


def ks_uniform(p_values: Sequence[float]) -> float:
    """KS test p-value of H: the p-values are Uniform(0,1). Used for calibration checks."""
    return float(_st.kstest(np.asarray(p_values, dtype=float), "uniform").pvalue)


def format_p(p: float) -> str:
    if p != p:  # nan
        return "n/a"
    if p >= 0.001:
        return f"{p:.3f}"
    return f"{p:.2e}"  # three digits, so 1/1001 = 9.99e-04 does not read as 1e-03
