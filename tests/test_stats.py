"""Tests for robbench.stats against scipy directly and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from robbench import stats

RNG = np.random.default_rng(12345)
A = RNG.normal(1000.0, 150.0, size=50)  # per-episode returns of agent a
B = RNG.normal(930.0, 300.0, size=40)  # agent b: lower mean, larger spread


# ------------------------------------------------------------------------------------------
# Welch / Mann-Whitney
# ------------------------------------------------------------------------------------------


def test_welch_matches_scipy():
    res = stats.welch_t_test(A, B)
    ref = scipy.stats.ttest_ind(A, B, equal_var=False)
    assert res.test == "welch_t"
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert res.pvalue == pytest.approx(ref.pvalue, rel=1e-12)
    assert res.df == pytest.approx(ref.df, rel=1e-12)
    assert res.mean_a == pytest.approx(A.mean()) and res.mean_b == pytest.approx(B.mean())
    assert (res.n_a, res.n_b) == (50, 40)
    # it is Welch, not Student: the equal-variance p-value differs on these samples
    student = scipy.stats.ttest_ind(A, B, equal_var=True)
    assert abs(res.pvalue - student.pvalue) > 1e-4
    one_sided = stats.welch_t_test(A, B, alternative="greater")
    assert one_sided.pvalue == pytest.approx(res.pvalue / 2, rel=1e-9)


def test_cohens_d_and_hedges_g_hand_example():
    a, b = [1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0]
    # means 2.5 and 4.5, both variances 5/3 -> pooled SD sqrt(5/3)
    d = -2.0 / math.sqrt(5.0 / 3.0)
    assert stats.cohens_d(a, b) == pytest.approx(d)
    # J(6) = Γ(3) / (√3 Γ(2.5)) = 2 / (√3 · 1.329340388) = 0.868599...
    j = math.gamma(3) / (math.sqrt(3) * math.gamma(2.5))
    assert j == pytest.approx(1 - 3 / (4 * 6 - 1), abs=2e-3)  # the usual approximation
    assert stats.hedges_g(a, b) == pytest.approx(j * d)
    res = stats.welch_t_test(a, b)
    assert res.effect_size_name == "hedges_g"
    assert res.effect_size == pytest.approx(j * d) and res.cohens_d == pytest.approx(d)
    assert stats.cohens_d([5, 5, 5], [5, 5]) == 0.0
    assert stats.cohens_d([6, 6, 6], [5, 5]) == math.inf


def test_mann_whitney_matches_scipy_and_rank_biserial():
    res = stats.mann_whitney_u(A, B)
    ref = scipy.stats.mannwhitneyu(A, B, alternative="two-sided")
    assert res.statistic == pytest.approx(ref.statistic)
    assert res.pvalue == pytest.approx(ref.pvalue, rel=1e-12)
    assert res.effect_size_name == "rank_biserial"
    # r = 2U/(n_a n_b) - 1 = P(A>B) - P(A<B), by brute force over all pairs
    gt = (A[:, None] > B[None, :]).mean()
    lt = (A[:, None] < B[None, :]).mean()
    assert res.effect_size == pytest.approx(gt - lt)
    assert stats.rank_biserial(A, B) == pytest.approx(gt - lt)
    # hand example with a tie: a=[1,2,3], b=[2,4]: pairs a>b: (3>2)=1, ties (2=2)=1 -> U=1.5
    small = stats.mann_whitney_u([1, 2, 3], [2, 4])
    assert small.statistic == 1.5
    assert small.effect_size == pytest.approx(2 * 1.5 / 6 - 1)
    assert stats.mann_whitney_u([10, 11, 12], [1, 2, 3]).effect_size == 1.0


def test_tests_reject_bad_input():
    with pytest.raises(ValueError):
        stats.welch_t_test([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        stats.mann_whitney_u([1.0, float("nan")], [1.0, 2.0])


# ------------------------------------------------------------------------------------------
# Holm-Bonferroni
# ------------------------------------------------------------------------------------------


def test_holm_hand_example():
    res = stats.holm_bonferroni([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(res.adjusted, [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    assert res.reject.tolist() == [True, False, False, True]
    res = stats.holm_bonferroni([0.01, 0.04, 0.03, 0.005], alpha=0.07)
    assert res.reject.tolist() == [True, True, True, True]


def _holm_bruteforce(p, alpha):
    """Holm's procedure as usually stated: reject sorted hypotheses while p_(k) <= alpha/(m-k+1)."""
    m = len(p)
    order = np.argsort(p, kind="stable")
    reject = np.zeros(m, bool)
    for k, i in enumerate(order):
        if p[i] <= alpha / (m - k):
            reject[i] = True
        else:
            break
    return reject


def test_holm_properties_random():
    rng = np.random.default_rng(0)
    for _ in range(200):
        m = int(rng.integers(1, 12))
        p = rng.uniform(0, 0.2, size=m) ** 2
        if m > 2:
            p[1] = p[0]  # ties
        res = stats.holm_bonferroni(p, alpha=0.05)
        adj = res.adjusted
        assert np.all(adj <= 1.0) and np.all(adj >= p - 1e-15)
        order = np.argsort(p, kind="stable")
        assert np.all(np.diff(adj[order]) >= -1e-15), "adjusted p-values not monotone"
        assert np.array_equal(res.reject, _holm_bruteforce(p, 0.05))
    assert stats.holm_bonferroni([0.5, 0.9, 0.7]).adjusted.max() == 1.0  # capped
    assert stats.holm_bonferroni([]).adjusted.size == 0
    with pytest.raises(ValueError):
        stats.holm_bonferroni([0.1, 1.2])


# ------------------------------------------------------------------------------------------
# bootstrap CI
# ------------------------------------------------------------------------------------------


def test_bootstrap_ci_contains_estimate_and_is_seeded():
    x = A[:30]
    ci = stats.bootstrap_ci(x, seed=7, n_resamples=2000)
    assert ci.estimate == pytest.approx(x.mean())
    assert ci.low < ci.estimate < ci.high
    assert ci.estimate in ci
    again = stats.bootstrap_ci(x, seed=7, n_resamples=2000)
    assert (again.low, again.high) == (ci.low, ci.high)
    other = stats.bootstrap_ci(x, seed=8, n_resamples=2000)
    assert (other.low, other.high) != (ci.low, ci.high)
    # same as scipy.stats.bootstrap with the same generator
    ref = scipy.stats.bootstrap((x,), np.mean, n_resamples=2000, confidence_level=0.95,
                                method="BCa", rng=np.random.default_rng(7))
    assert ci.low == pytest.approx(ref.confidence_interval.low)
    assert ci.high == pytest.approx(ref.confidence_interval.high)
    # roughly the normal-theory interval for a mean
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert ci.high - ci.low == pytest.approx(2 * half, rel=0.2)


def test_bootstrap_ci_options():
    x = A[:25]
    gen = np.random.default_rng(3)
    ci90 = stats.bootstrap_ci(x, confidence=0.90, n_resamples=1500, seed=gen, method="percentile")
    ci99 = stats.bootstrap_ci(x, confidence=0.99, n_resamples=1500, seed=3, method="percentile")
    assert ci99.low < ci90.low and ci90.high < ci99.high
    med = stats.bootstrap_ci(x, statistic=lambda s: float(np.median(s)), n_resamples=500, seed=1,
                             method="percentile")
    assert med.estimate == pytest.approx(np.median(x)) and med.low <= med.estimate <= med.high
    const = stats.bootstrap_ci([3.0, 3.0, 3.0], seed=0)
    assert (const.low, const.estimate, const.high) == (3.0, 3.0, 3.0)
    with pytest.raises(TypeError):
        stats.bootstrap_ci(x, seed=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        stats.bootstrap_ci(x, confidence=95)


def test_no_global_random_state_used():
    np.random.seed(0)
    state = np.random.get_state()[1].copy()
    stats.bootstrap_ci(A[:20], seed=1, n_resamples=500)
    stats.iqm_ci({"t": A[:10]}, seed=1, n_resamples=200)
    stats.probability_of_improvement({"t": A[:10]}, {"t": B[:10]}, seed=1, n_resamples=200)
    assert np.array_equal(np.random.get_state()[1], state)


# ------------------------------------------------------------------------------------------
# median agent
# ------------------------------------------------------------------------------------------


def test_median_agent_odd_and_even():
    odd = {0: 900.0, 1: 150.0, 2: 1200.0, 3: 600.0, 4: 300.0}
    assert stats.median_agent(odd) == 3  # sorted 150, 300, 600, 900, 1200 -> 600
    even = {10: 40.0, 11: 10.0, 12: 30.0, 13: 20.0}
    assert stats.median_agent(even) == 13  # sorted 10, 20 | 30, 40 -> lower median 20
    assert stats.median_agent({"only": -5.0}) == "only"
    assert stats.median_agent({"a": 1.0, "b": 2.0}) == "a"


def test_median_agent_ties_and_errors():
    # ties broken by ascending seed: ranking (5:1), (1:2), (3:2), (4:2), (2:3) -> index 2 is seed 3
    assert stats.median_agent({4: 2.0, 3: 2.0, 1: 2.0, 2: 3.0, 5: 1.0}) == 3
    # independent of insertion order
    assert stats.median_agent({1: 2.0, 5: 1.0, 2: 3.0, 3: 2.0, 4: 2.0}) == 3
    with pytest.raises(ValueError):
        stats.median_agent({})
    with pytest.raises(ValueError):
        stats.median_agent({0: float("nan"), 1: 1.0})


def test_median_agent_matches_numpy_median_for_odd_n():
    rng = np.random.default_rng(1)
    for n in (3, 5, 15, 17, 21):
        vals = rng.normal(size=n)
        seed = stats.median_agent(dict(enumerate(vals)))
        assert vals[seed] == np.median(vals)


# ------------------------------------------------------------------------------------------
# rliable aggregates
# ------------------------------------------------------------------------------------------


def test_iqm_hand_examples():
    # 8 values: cut 2 from each end -> mean(3, 4, 5, 6) = 4.5 (the outlier 1000 is trimmed)
    assert stats.iqm([1, 2, 3, 4, 5, 6, 7, 1000]) == pytest.approx(4.5)
    # 10 values: cut int(2.5) = 2 each end -> mean(3..8) = 5.5
    assert stats.iqm(np.arange(1, 11)) == pytest.approx(5.5)
    # over tasks: flattened [1..4] + [10..13] -> cut 2 each end -> mean(3, 4, 10, 11) = 7
    assert stats.iqm({"hopper": [1, 2, 3, 4], "walker": [10, 11, 12, 13]}) == pytest.approx(7.0)
    x = RNG.normal(size=(7, 3))
    assert stats.iqm(x) == pytest.approx(scipy.stats.trim_mean(x.ravel(), 0.25))


def test_iqm_ci_stratified_bootstrap():
    rng = np.random.default_rng(5)
    scores = {"hopper": rng.normal(3000, 400, 15), "walker": rng.normal(4000, 500, 17),
              "cheetah": rng.normal(5000, 600, 15)}
    ci = stats.iqm_ci(scores, n_resamples=2000, seed=0)
    assert ci.estimate == pytest.approx(stats.iqm(scores))
    assert ci.low < ci.estimate < ci.high
    again = stats.iqm_ci(scores, n_resamples=2000, seed=0)
    assert (again.low, again.high) == (ci.low, ci.high)
    other = stats.iqm_ci(scores, n_resamples=2000, seed=1)
    assert (other.low, other.high) != (ci.low, ci.high)
    # stratification: every replicate keeps each task's seed count, so with a constant score
    # per task the IQM never changes and the CI collapses to the point
    const = {"a": np.full(4, 1.0), "b": np.full(4, 2.0), "c": np.full(4, 3.0)}
    cci = stats.iqm_ci(const, n_resamples=300, seed=0)
    assert cci.low == cci.high == cci.estimate == pytest.approx(2.0)
    # unstratified resampling of the pooled 12 scores would vary; check that it would
    pooled = np.concatenate(list(const.values()))
    idx = np.random.default_rng(0).integers(0, 12, size=(300, 12))
    assert np.ptp(scipy.stats.trim_mean(pooled[idx], 0.25, axis=1)) > 0


def test_probability_of_improvement():
    x = {"hopper": [10.0, 11.0, 12.0], "walker": [5.0, 6.0]}
    y = {"hopper": [1.0, 2.0], "walker": [0.0, 1.0, 2.0]}
    poi = stats.probability_of_improvement(x, y, n_resamples=500, seed=0)
    assert poi.estimate == 1.0 and poi.low == 1.0 and poi.high == 1.0
    assert stats.probability_of_improvement(y, x, n_resamples=200, seed=0).estimate == 0.0
    same = stats.probability_of_improvement(x, x, n_resamples=500, seed=0)
    assert same.estimate == 0.5
    assert same.low < 0.5 < same.high
    # hand example: task1 x=[1,3], y=[2] -> (0 + 1)/2 = 0.5; task2 x=[2], y=[2,1] -> (0.5 + 1)/2
    # = 0.75; average 0.625
    hand = stats.probability_of_improvement({1: [1, 3], 2: [2]}, {1: [2], 2: [2, 1]},
                                            n_resamples=100, seed=0)
    assert hand.estimate == pytest.approx(0.625)
    # equals the normalised Mann-Whitney U per task (rliable's definition)
    rng = np.random.default_rng(9)
    xs = {t: rng.normal(0.3, 1, 10).round(1) for t in "abc"}
    ys = {t: rng.normal(0.0, 1, 12).round(1) for t in "abc"}
    ref = np.mean([scipy.stats.mannwhitneyu(xs[t], ys[t]).statistic / (10 * 12) for t in "abc"])
    res = stats.probability_of_improvement(xs, ys, n_resamples=1000, seed=4)
    assert res.estimate == pytest.approx(ref)
    assert res.low < res.estimate < res.high
    again = stats.probability_of_improvement(xs, ys, n_resamples=1000, seed=4)
    assert (again.low, again.high) == (res.low, res.high)
    assert stats.probability_of_improvement(xs, ys, n_resamples=1000, seed=5).low != res.low
    with pytest.raises(ValueError, match="same tasks"):
        stats.probability_of_improvement({"a": [1.0]}, {"b": [1.0]})
