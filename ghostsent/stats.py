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
from statistics import NormalDist
from typing import Any, Sequence

import numpy as np

_NORMAL = NormalDist()


def _scipy_stats() -> Any:
    """scipy.stats, imported where a function needs it (the detect extra; the light core never does)."""
    from ghostsent.extras import require

    require("detect", "scipy", what="this statistic")
    from scipy import stats

    return stats


def norm_ppf(p: float) -> float:
    """Phi^-1(p) for 0 < p < 1 (the standard library's, accurate in the far tails)."""
    return _NORMAL.inv_cdf(p)


def norm_cdf(z: float) -> float:
    """Phi(z), accurate in the lower tail (erfc, not 1 - erf)."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def binom_tail(matches: int, k: int, p: float) -> float:
    """P(Binomial(k, p) >= matches), exact: a sum of the (few) terms from `matches` to k. The probe's k is
    a handful of words, so this is cheap, and it keeps scipy out of the light core (check, card)."""
    if matches <= 0:
        return 1.0
    if matches > k:
        return 0.0
    q = 1.0 - p
    return min(1.0, math.fsum(math.comb(k, j) * p ** j * q ** (k - j) for j in range(matches, k + 1)))


def probe_p_value(matches: int, k: int, vocab_size: int, places: int = 1) -> float:
    """p-value of one last-k probe: union bound over the `places` a reply was searched at."""
    return min(1.0, max(1, places) * binom_tail(matches, k, 1.0 / vocab_size))


def poisson_binomial_tail(probs: Sequence[float], hits: int) -> float:
    """P(sum of independent Bernoulli(probs[i]) >= hits), exact (a dynamic programme over the count)."""
    if hits <= 0:
        return 1.0
    if hits > len(probs):
        return 0.0
    dist = [1.0] + [0.0] * len(probs)        # dist[c] = P(count == c) after the trials so far
    for q in probs:
        q = min(1.0, max(0.0, float(q)))
        for c in range(len(dist) - 1, 0, -1):
            dist[c] = dist[c] * (1 - q) + dist[c - 1] * q
        dist[0] *= 1 - q
    return min(1.0, math.fsum(dist[hits:]))


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
    exposure: float    # Secret-Sharer exposure in bits: log2(N+1) - log2(rank), at most log2(N+1)
    non_finite_nulls: int = 0   # NaN/inf null scores, each counted as beating the ghost
    ghost_finite: bool = True   # a non-finite ghost score gives rank N+1, p = 1


def rank_test(score: float, null_scores: Sequence[float]) -> RankResult:
    """Empirical rank test where LOWER scores are better (e.g. NLL).

    Under H0 the ghost and the N nulls are exchangeable, so its rank among the N+1 is uniform on
    1..N+1 (ties broken against the ghost); P(rank <= r) <= r/(N+1). A non-finite score (NaN from fp16,
    an API glitch) must never help the ghost: a non-finite null counts as beating it, and a non-finite
    ghost gets the worst rank.
    """
    nulls = np.asarray(null_scores, dtype=float)
    n = len(nulls)
    bad = ~np.isfinite(nulls)
    finite = bool(np.isfinite(score))
    rank = n + 1 if not finite else 1 + int(np.sum(bad | (nulls <= score)))
    return RankResult(rank=rank, n_nulls=n, p_value=rank / (n + 1),
                      exposure=math.log2(n + 1) - math.log2(rank), non_finite_nulls=int(bad.sum()),
                      ghost_finite=finite)


@dataclass
class TailExtrapolation:
    """A skew-normal fitted to the null scores, read beyond the smallest exact p. A MODEL EXTRAPOLATION:
    never used for a verdict, shown with one significant digit, and only when the fit survives a check."""

    p_value: float | None   # None when the fit is rejected or there are too few nulls
    fits: bool
    ks_p: float             # Kolmogorov-Smirnov p of the fitted model against the nulls
    tail_ratio: float       # fitted / empirical probability below the lowest 1% (at least 5) of the nulls
    note: str


MIN_FIT_NULLS = 100
MAX_TAIL_RATIO = 2.0


@dataclass
class TailFit:
    """A skew-normal fitted to one null set, with its goodness-of-fit check (fit once, read per ghost)."""

    params: tuple[float, float, float] | None   # (shape, loc, scale), None when the fit is rejected
    ks_p: float
    tail_ratio: float
    note: str

    def extrapolate(self, score: float) -> TailExtrapolation:
        if self.params is None or not np.isfinite(score):
            return TailExtrapolation(None, False, self.ks_p, self.tail_ratio, self.note)
        p = float(_scipy_stats().skewnorm.cdf(score, *self.params))
        return TailExtrapolation(float(f"{p:.0e}"), True, self.ks_p, self.tail_ratio, self.note)


def fit_tail(null_scores: Sequence[float]) -> TailFit:
    """Fit a skew-normal to the null scores and check it where it matters, the lower tail.

    A null with a heavier tail than the skew-normal makes the extrapolated p too small by orders of
    magnitude, so the fit must pass a KS test (p >= 0.01) and predict the empirical lowest-1% (at least
    5 nulls) within a factor of 2; otherwise no value is given.
    """
    nulls = np.sort(np.asarray(null_scores, dtype=float))
    nulls = nulls[np.isfinite(nulls)]
    if len(nulls) < MIN_FIT_NULLS or np.std(nulls) == 0:
        return TailFit(None, float("nan"), float("nan"), f"needs at least {MIN_FIT_NULLS} finite, varying null scores")
    st = _scipy_stats()
    params = tuple(float(x) for x in st.skewnorm.fit(nulls))
    ks_p = float(st.kstest(nulls, "skewnorm", args=params).pvalue)
    k = max(5, len(nulls) // 100)
    ratio = float(st.skewnorm.cdf(nulls[k - 1], *params)) / (k / len(nulls))
    if ks_p < 0.01 or not (1 / MAX_TAIL_RATIO <= ratio <= MAX_TAIL_RATIO):
        return TailFit(None, ks_p, ratio, f"skew-normal fit rejected (KS p = {ks_p:.2g}, lowest-tail ratio {ratio:.2g})")
    return TailFit(params, ks_p, ratio, "model extrapolation (skew-normal fit)")


def tail_extrapolation(score: float, null_scores: Sequence[float]) -> TailExtrapolation:
    """Skew-normal lower-tail probability of `score` under a checked fit to the nulls (see fit_tail)."""
    return fit_tail(null_scores).extrapolate(score)


def approx_exposure(p: float | None) -> float:
    return float("nan") if p is None or not p > 0 else -math.log2(p)


# --- the rank-sum test, exact per stratum ---------------------------------------------------------------

MAX_EXACT_WORK = 200_000_000  # min(m, N) x truncated length: about a second of numpy; beyond it, Chernoff


@dataclass
class RankSumResult:
    statistic: float   # B: member-null pairs where the member is strictly better (ties count for the null)
    z: float           # Phi^-1(p), for reading: negative = members better than nulls
    p_value: float
    method: str        # "exact" or "chernoff bound"
    n_members: int
    n_nulls: int
    non_finite: int = 0


def rank_sum_test(member_scores: Sequence[float], null_scores: Sequence[float], *,
                  max_exact_work: int = MAX_EXACT_WORK) -> RankSumResult:
    """One-sided Wilcoxon rank-sum (Mann-Whitney) test that member scores are LOWER than null scores.

    Valid for any ties: B counts only strict member-beats-null pairs, so B is at most the count under
    any tie-breaking, and P(U >= B) under the exact no-ties null distribution (the Gaussian binomial
    coefficient, docs/statistics.md section 3) bounds the p-value. Non-finite member scores count as
    worst, non-finite nulls as best. Exact when feasible; otherwise a Chernoff bound on the same tail.
    """
    x = np.asarray(member_scores, dtype=float)
    y = np.asarray(null_scores, dtype=float)
    if len(x) == 0 or len(y) == 0:
        raise ValueError("rank-sum test needs at least one member and one null score")
    bad = int((~np.isfinite(x)).sum() + (~np.isfinite(y)).sum())
    x = np.where(np.isfinite(x), x, np.inf)
    y = np.sort(np.where(np.isfinite(y), y, -np.inf))
    m, n = len(x), len(y)
    b = int(np.sum(n - np.searchsorted(y, x, side="right")))
    p, method = _mwu_upper_tail(b, m, n, max_exact_work)
    z = norm_ppf(p) if p < 1 else math.inf
    return RankSumResult(float(b), z, p, method, m, n, bad)


def _mwu_upper_tail(b: int, m: int, n: int, max_work: int) -> tuple[float, str]:
    """P(U >= b) for the Mann-Whitney U of m vs n under H0 without ties (U symmetric on 0..mn)."""
    if b <= 0:
        return 1.0, "exact"
    t = m * n - b  # P(U >= b) = P(U <= mn - b) by symmetry
    small, upper = (t, False) if t < b else (b - 1, True)  # sum the short side of the distribution
    if min(m, n) * (small + 1) <= max_work:
        log_cdf = _mwu_log_cdf(small, m, n)
        p = -math.expm1(log_cdf) if upper else math.exp(log_cdf)
        return float(min(1.0, max(p, 1e-300))), "exact"
    return _mwu_chernoff(b, m, n), "chernoff bound"


def _mwu_log_cdf(t: int, m: int, n: int) -> float:
    """log P(U <= t): coefficients 0..t of the Gaussian binomial [m+n choose m]_q over C(m+n, m).

    Built as prod_{i=1..k} (1 - q^{l+i}) / (1 - q^i) with k = min(m, n), l = max(m, n): after step i the
    array is [l+i choose i]_q (positive), truncated to degree t, rescaled to stay in floating range.
    """
    k, l = min(m, n), max(m, n)
    c = np.zeros(t + 1)
    c[0] = 1.0
    log_scale = 0.0
    for i in range(1, k + 1):
        c = _divide_one_minus_q_power(c, i)
        a = l + i
        if a <= t:
            c[a:] -= c[:-a].copy()
        top = c.max()
        c /= top
        log_scale += math.log(top)
    total = math.lgamma(m + n + 1) - math.lgamma(m + 1) - math.lgamma(n + 1)
    return min(0.0, math.log(c.sum()) + log_scale - total)


def _divide_one_minus_q_power(c: np.ndarray, i: int) -> np.ndarray:
    """c / (1 - q^i) truncated: a running sum along each residue class mod i."""
    size = len(c)
    pad = (-size) % i
    grid = np.concatenate([c, np.zeros(pad)]).reshape(-1, i)
    return np.cumsum(grid, axis=0).reshape(-1)[:size]


def _mwu_chernoff(b: int, m: int, n: int) -> float:
    """min_s E[exp(sU)] exp(-sb), with the exact moment generating function of U (s > 0)."""
    _scipy_stats()
    from scipy.optimize import minimize_scalar

    total = math.lgamma(m + n + 1) - math.lgamma(m + 1) - math.lgamma(n + 1)
    i = np.arange(1, min(m, n) + 1, dtype=float)
    big = max(m, n)

    def log_bound(s: float) -> float:
        hi, lo = s * (big + i), s * i
        # log((e^hi - 1) / (e^lo - 1)), stably
        terms = hi - lo + np.log(-np.expm1(-hi)) - np.log(-np.expm1(-lo))
        return float(terms.sum() - total - s * b)

    mean = m * n / 2
    if b <= mean:
        return 1.0
    res = minimize_scalar(log_bound, bounds=(1e-9, 50.0), method="bounded", options={"xatol": 1e-10})
    return float(min(1.0, math.exp(min(0.0, res.fun))))


def fisher_combine(p_values: Sequence[float]) -> float:
    """Fisher's method: P(chi-square(2n) >= -2 sum ln p_i) for n p-values, in closed form.

    With P = prod p_i the tail is P * sum_{k<n} (-ln P)^k / k! (the chi-square(2n) survival function).
    Valid for independent super-uniform p-values (each P(p <= x) <= x), and also for sequentially
    super-uniform ones (P(p_j <= x | p_1..p_{j-1}) <= x), discrete or not: docs/statistics.md, section 3.
    A p of 1 adds nothing (ln 1 = 0) instead of cancelling the others' evidence.
    """
    n = len(p_values)
    if n == 0:
        return 1.0
    ps = np.clip(np.asarray(p_values, dtype=float), 1e-300, 1.0)
    half = -float(np.sum(np.log(ps)))          # -ln P = chi-square statistic / 2
    if half <= 0:
        return 1.0
    # log of each term k*ln(half) - ln k! - half, summed stably (P can be far below 1e-300).
    logs = [k * math.log(half) - math.lgamma(k + 1) - half for k in range(n)]
    top = max(logs)
    return float(min(1.0, math.exp(top) * math.fsum(math.exp(v - top) for v in logs)))


def _log_poisson_cdf(k: int, x: float) -> float:
    """log P(Poisson(x) <= k - 1) = log Q(k, x), the regularised upper incomplete gamma, stable for
    huge x (a log-sum of e^-x x^s / s!, s < k); 0 when x <= 0 (every Gamma(k) sum exceeds it)."""
    if x <= 0:
        return 0.0
    logs = [s * math.log(x) - math.lgamma(s + 1) - x for s in range(k)]
    top = max(logs)
    return min(0.0, top + math.log(math.fsum(math.exp(v - top) for v in logs)))


def truncated_product(p_values: Sequence[float], tau: float) -> float:
    """Zaykin et al. (2002)'s truncated product: W = prod of the p_i <= tau (1 when none), p = P(W <= w).

    For L iid uniforms, K = #{p_i <= tau} ~ Binomial(L, tau) and, given K = k, the kept p_i / tau are iid
    uniform, so -ln W + k ln tau is Gamma(k, 1): P(W <= w) = sum_{k>=1} C(L,k) tau^k (1-tau)^(L-k)
    Q(k, k ln tau - ln w) in closed form (docs/statistics.md, section 2b). Monotone non-decreasing in each
    p_i, hence valid for sequentially super-uniform p-values as well. Unlike Fisher's product it ignores
    the many p_i = 1 of a top-N test (words not visible) instead of diluting the few small ones.
    """
    if not 0 < tau < 1:
        raise ValueError("tau must be in (0, 1)")
    ps = np.clip(np.asarray(p_values, dtype=float), 1e-300, 1.0)
    kept = ps[ps <= tau]
    if not len(kept):
        return 1.0
    n, log_w = len(ps), float(np.sum(np.log(kept)))
    logs = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(tau)
            + ((n - k) * math.log1p(-tau) if k < n else 0.0) + _log_poisson_cdf(k, k * math.log(tau) - log_w)
            for k in range(1, n + 1)]
    top = max(logs)
    return float(min(1.0, math.exp(top) * math.fsum(math.exp(v - top) for v in logs)))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (the study's detection rates; small n, rates at
    0 or 1 included, where the normal interval collapses to a point)."""
    if n <= 0:
        return 0.0, 1.0
    z = norm_ppf(0.5 + confidence / 2)
    phat = successes / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    lo, hi = centre - half, centre + half
    return (0.0 if successes == 0 else max(0.0, lo)), (1.0 if successes == n else min(1.0, hi))


# --- one identifier tested many times -------------------------------------------------------------------

def history_weight(test_number: int) -> float:
    """The share of alpha the identifier's `test_number`-th test (1-based) may spend: 1/(j(j+1)).

    These add up to 1 over any number of tests, so however often an identifier is re-tested (and
    whenever the user stops), P(any of its tests is falsely significant) <= alpha (a union bound).
    """
    if test_number < 1:
        raise ValueError("test numbers start at 1")
    return 1.0 / (test_number * (test_number + 1))


def history_p(p_value: float, test_number: int) -> float:
    """The p-value of the identifier's `test_number`-th test, corrected for every test it may ever have."""
    return min(1.0, p_value / history_weight(test_number))


def ks_uniform(p_values: Sequence[float]) -> float:
    """KS test p-value of H: the p-values are Uniform(0,1). Used for calibration checks."""
    return float(_scipy_stats().kstest(np.asarray(p_values, dtype=float), "uniform").pvalue)


def format_p(p: float) -> str:
    if p != p:  # nan
        return "n/a"
    if p >= 0.001:
        return f"{p:.3f}"
    return f"{p:.2e}"  # three digits, so 1/1001 = 9.99e-04 does not read as 1e-03
