"""Validity of the p-values under H0, checked exactly (enumeration) where possible (issue 7: defects 7, 10, 11,
and the history correction of defect 2)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as st

from ghostsent import stats

# --- defect 7: non-finite scores ----------------------------------------------------------------------


def test_non_finite_nulls_count_against_the_ghost():
    r = stats.rank_test(1.0, [float("nan")] * 5 + [float("inf"), 2.0, 0.5])
    assert r.rank == 1 + 6 + 1 and r.non_finite_nulls == 6
    assert r.p_value == pytest.approx(8 / 9)


def test_a_non_finite_ghost_score_gives_p_one():
    for bad in (float("nan"), float("inf"), float("-inf")):
        r = stats.rank_test(bad, [1.0, 2.0, 3.0])
        assert r.p_value == 1.0 and r.rank == 4 and not r.ghost_finite


def test_non_finite_scores_in_the_rank_sum_count_against_the_members():
    nulls = np.arange(1.0, 101.0)
    clean = stats.rank_sum_test([0.0, 0.0], nulls)
    nan_member = stats.rank_sum_test([0.0, float("nan")], nulls)
    nan_nulls = stats.rank_sum_test([0.0, 0.0], np.concatenate([nulls, [float("nan")] * 20]))
    assert nan_member.p_value > clean.p_value * 10
    assert nan_nulls.statistic == clean.statistic  # a NaN null is never beaten
    assert nan_member.non_finite == 1 and nan_nulls.non_finite == 20


# --- defect 10: exact rank-sum per stratum, valid with ties, strata combined validly --------------------

def _conditional_rates(values, m, alphas):
    """P(p <= a) over every assignment of m members among the values: the exact conditional size."""
    vals = np.asarray(values, dtype=float)
    ps = []
    for sub in itertools.combinations(range(len(vals)), m):
        mask = np.zeros(len(vals), bool)
        mask[list(sub)] = True
        ps.append(stats.rank_sum_test(vals[mask], vals[~mask]).p_value)
    ps = np.array(ps)
    return {a: float(np.mean(ps <= a)) for a in alphas}


@pytest.mark.parametrize("values,m", [
    ([0, 0, 0] + [1] * 9, 2),            # the old normal approximation rejected 4.5x too often at 0.01
    ([0] * 5 + [1] * 8, 2),              # ... and 2.6x at 0.05
    ([0] * 7 + [1] * 12, 3),
    ([0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 5], 3),
    (list(range(14)), 4),                # no ties: exact size
])
def test_rank_sum_is_valid_for_every_pattern_of_ties(values, m):
    rates = _conditional_rates(values, m, (0.01, 0.05, 0.2))
    for a, rate in rates.items():
        assert rate <= a + 1e-12, (a, rate)


def test_rank_sum_without_ties_equals_scipy_exact():
    rng = np.random.default_rng(3)
    for m, n in ((1, 30), (3, 40), (7, 200), (12, 1000)):
        x, y = rng.normal(-0.5, 1, m), rng.normal(size=n)
        ours = stats.rank_sum_test(x, y)
        ref = st.mannwhitneyu(x, y, alternative="less", method="exact").pvalue
        assert ours.method == "exact" and ours.p_value == pytest.approx(ref, rel=1e-9)


def test_rank_sum_extreme_tail_is_exact():
    # 12 members better than all 1000 nulls: p = 1 / C(1012, 12)
    r = stats.rank_sum_test(np.zeros(12), np.arange(1.0, 1001.0))
    assert r.p_value == pytest.approx(1 / math.comb(1012, 12), rel=1e-9)


def test_chernoff_bound_is_above_the_exact_tail():
    rng = np.random.default_rng(4)
    for m, n, shift in ((5, 200, 0.5), (20, 300, 0.4), (40, 500, 0.1), (3, 50, 0.0)):
        x, y = rng.normal(-shift, 1, m), rng.normal(size=n)
        exact = stats.rank_sum_test(x, y)
        bound = stats.rank_sum_test(x, y, max_exact_work=0)
        assert bound.method == "chernoff bound"
        assert exact.p_value <= bound.p_value <= 1.0
        if exact.p_value < 1e-3:
            assert bound.p_value < 100 * exact.p_value  # a bound, but not a useless one


def test_stratified_combination_is_valid_with_ties():
    """Two independent strata with heavily tied scores: exact size of the combined test by enumeration."""
    s1, s2 = [0, 0, 0] + [1] * 6, [0] * 4 + [1] * 5
    ps1 = _all_ps(s1, 2)
    ps2 = _all_ps(s2, 1)
    for a in (0.01, 0.05, 0.2):
        rate = np.mean([stats.fisher_combine([p1, p2]) <= a for p1 in ps1 for p2 in ps2])
        assert rate <= a + 1e-12, (a, rate)


def _all_ps(values, m):
    vals = np.asarray(values, dtype=float)
    out = []
    for sub in itertools.combinations(range(len(vals)), m):
        mask = np.zeros(len(vals), bool)
        mask[list(sub)] = True
        out.append(stats.rank_sum_test(vals[mask], vals[~mask]).p_value)
    return out


def test_stratified_combination_is_uniform_for_continuous_scores():
    rng = np.random.default_rng(5)
    ps = []
    for _ in range(1500):
        parts = [stats.rank_sum_test(rng.normal(size=m), rng.normal(size=n)).p_value for m, n in ((1, 60), (3, 40))]
        ps.append(stats.fisher_combine(parts))
    ps = np.array(ps)
    for a in (0.01, 0.05):
        assert np.mean(ps <= a) <= a + 3 * math.sqrt(a * (1 - a) / len(ps))
    assert stats.ks_uniform(ps) > 0.001


def test_a_stratum_at_p_one_keeps_the_other_strata_evidence():
    """Review of issue 10: the weighted Stouffer returned p = 1 as soon as one stratum's p was 1
    (Phi^-1(1) = +inf), discarding every other stratum. Fisher's product takes log(1) = 0 gracefully."""
    assert stats.fisher_combine([1e-9, 1.0]) < 1e-6
    assert stats.fisher_combine([1.0, 1.0]) == 1.0
    rng = np.random.default_rng(9)
    strong = stats.rank_sum_test(rng.normal(-6, 0.1, 3), rng.normal(size=200))
    nothing = stats.rank_sum_test([50.0], rng.normal(size=200))   # worst possible member: p = 1
    assert nothing.p_value == 1.0
    from ghostsent.detection.pooled import pooled_rank_sum
    pooled = pooled_rank_sum({"a": rng.normal(-6, 0.1, 3).tolist(), "b": [50.0]},
                             {"a": rng.normal(size=200).tolist(), "b": rng.normal(size=200).tolist()})
    assert strong.p_value < 1e-5 and pooled.p_value < 1e-4, pooled


def test_fisher_combination_matches_the_chi_square_tail():
    """The closed form P * sum_{k<n} (-ln P)^k / k! is the chi-square(2n) survival at -2 ln P."""
    for ps in ([0.3], [0.01, 0.5], [1e-12, 0.2, 0.9, 0.04], [1e-200] * 5):
        t = -2 * sum(math.log(p) for p in ps)
        assert math.isclose(stats.fisher_combine(ps), st.chi2.sf(t, 2 * len(ps)), rel_tol=1e-9)


def test_fisher_combination_is_valid_for_discrete_super_uniform_p_values():
    """Exact size by enumeration: three independent discrete uniform p-values on {1/V, ..., 1}."""
    v = 7
    grid = [(i + 1) / v for i in range(v)]
    ps = [stats.fisher_combine([a, b, c]) for a in grid for b in grid for c in grid]
    for a in (0.01, 0.05, 0.2, 0.5):
        assert np.mean(np.array(ps) <= a) <= a + 1e-12, a


# --- defect 11: the skew-normal tail is a labelled model extrapolation with a fit check ---------------------

def test_extrapolation_is_refused_when_the_null_tail_is_heavier():
    rng = np.random.default_rng(6)
    nulls = st.t.rvs(df=1.5, size=1000, random_state=rng)
    ext = stats.tail_extrapolation(np.min(nulls) - 5, nulls)
    assert not ext.fits and ext.p_value is None and "fit" in ext.note


def test_extrapolation_of_a_normal_null_has_one_significant_digit():
    rng = np.random.default_rng(7)
    nulls = rng.normal(5.0, 1.0, size=2000)
    ext = stats.tail_extrapolation(1.0, nulls)
    assert ext.fits and ext.p_value == pytest.approx(3.2e-5, rel=1.0)
    assert float(f"{ext.p_value:.0e}") == ext.p_value


# --- defect 2: the history correction (alpha spending) ------------------------------------------------------

def test_history_weights_spend_at_most_alpha_over_any_number_of_tests():
    ws = [stats.history_weight(j) for j in range(1, 100001)]
    assert ws[0] == 0.5 and ws[1] == pytest.approx(1 / 6)
    assert sum(ws) < 1.0
    assert stats.history_p(0.01, 3) == pytest.approx(0.12)
    assert stats.history_p(0.2, 3) == 1.0


def test_wilson_interval_matches_textbook_values_and_covers():
    lo, hi = stats.wilson_interval(10, 10)
    assert math.isclose(lo, 0.7225, abs_tol=1e-4) and hi == 1.0        # the textbook value for 10/10
    lo, hi = stats.wilson_interval(0, 10)
    assert lo == 0.0 and math.isclose(hi, 0.2775, abs_tol=1e-4)
    rng = np.random.default_rng(11)
    for p, n in ((0.1, 10), (0.5, 20), (0.9, 40)):
        ks = rng.binomial(n, p, size=4000)
        cover = np.mean([stats.wilson_interval(int(k), n)[0] <= p <= stats.wilson_interval(int(k), n)[1] for k in ks])
        assert cover >= 0.92, (p, n, cover)


# --- issue 10: the truncated product for sparse top-N evidence ----------------------------------------------

@pytest.mark.parametrize("tau", [0.01, 0.05, 0.1])
def test_truncated_product_cdf_matches_monte_carlo(tau):
    """The closed form P(W <= w) against 400,000 simulated sets of L = 8 iid uniforms (4 sigma)."""
    rng = np.random.default_rng(11)
    u = rng.random((400_000, 8))
    w_sim = np.prod(np.where(u <= tau, u, 1.0), axis=1)
    for w in (tau * 0.9, tau ** 1.5, tau ** 2, tau ** 3, 1e-6):
        p = stats.truncated_product([w] + [1.0] * 7, tau)   # an observed W equal to w
        mc = float(np.mean(w_sim <= w))
        assert abs(p - mc) <= 4 * math.sqrt(p * (1 - p) / len(w_sim)) + 1e-6, (tau, w, p, mc)


def test_truncated_product_special_cases():
    assert stats.truncated_product([0.03], 0.05) == pytest.approx(0.03)     # one p: itself
    assert stats.truncated_product([0.2, 1.0, 0.5], 0.05) == 1.0           # nothing kept
    tiny = stats.truncated_product([1 / 7776] * 11, 0.05)
    assert 0 < tiny < 1e-25                                               # no underflow to 0
    with pytest.raises(ValueError):
        stats.truncated_product([0.1], 1.0)


def test_truncated_product_is_monotone_in_each_p():
    """Raising one p never lowers the combined p (including crossing tau: the p drops out of W)."""
    rng = np.random.default_rng(4)
    for _ in range(300):
        ps = rng.random(6) ** 3
        j = int(rng.integers(6))
        lo = stats.truncated_product(ps, 0.05)
        for up in (ps[j] * 1.5, 0.049, 0.051, 0.9, 1.0):
            if up >= ps[j]:
                assert stats.truncated_product(np.r_[ps[:j], up, ps[j + 1:]], 0.05) >= lo - 1e-15


@pytest.mark.parametrize("tau", [0.05, 0.1, 0.2])
def test_truncated_product_is_valid_for_discrete_super_uniform_p_values(tau):
    """Exact size by enumeration: three independent discrete uniform p-values on {1/V, ..., 1}, V = 11, and
    a super-uniform version (mass moved up to 1, as unmatched top-N words do)."""
    v = 11
    grid = [(i + 1) / v for i in range(v)]
    coarse = [2 / v] * 2 + [1.0] * (v - 2)      # P(p <= 2/V) = 2/V, else 1
    for g in (grid, coarse):
        ps = np.array([stats.truncated_product([a, b, c], tau) for a in g for b in g for c in g])
        for a in (0.005, 0.01, 0.05, 0.2, 0.5):
            assert np.mean(ps <= a) <= a + 1e-12, (tau, a)
