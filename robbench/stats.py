"""Statistics for comparing robust-RL agents and methods (protocol: "Aggregation", "Significance").

Everything is scipy/numpy underneath and reproducible: every random function takes an explicit
``seed`` (an int or a ``numpy.random.Generator``) and never touches global random state.

- Pairwise tests on per-episode returns of two agents (or per-seed means of two methods):
  :func:`welch_t_test` (with Cohen's d and Hedges' g) and :func:`mann_whitney_u` (with the
  rank-biserial correlation).
- :func:`holm_bonferroni`: step-down family-wise correction across the comparisons of one table.
- :func:`bootstrap_ci`: a one-sample bootstrap CI via ``scipy.stats.bootstrap``.
- :func:`median_agent`: the papers' selection rule (median agent by worst-case return).
- rliable aggregates (Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice"):
  :func:`iqm`, :func:`iqm_ci` and :func:`probability_of_improvement`, with stratified bootstrap CIs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, Union

import numpy as np
import scipy.stats
from scipy.special import gammaln

__all__ = [
    "PairTest",
    "ConfidenceInterval",
    "HolmResult",
    "welch_t_test",
    "mann_whitney_u",
    "cohens_d",
    "hedges_g",
    "rank_biserial",
    "bootstrap_ci",
    "holm_bonferroni",
    "median_agent",
    "iqm",
    "iqm_ci",
    "probability_of_improvement",
]

Seed = Union[int, np.random.Generator]
K = TypeVar("K", bound=Hashable)
ArrayLike = Union[Sequence[float], np.ndarray]


@dataclass(frozen=True)
class PairTest:
    """Result of a two-sample test of agent/method ``a`` against ``b``."""

    test: str  #: "welch_t" or "mann_whitney_u"
    statistic: float  #: Welch's t, or the Mann-Whitney U of sample ``a``
    pvalue: float
    effect_size: float  #: Hedges' g (Welch) or rank-biserial correlation (MWU); > 0: a larger
    effect_size_name: str  #: "hedges_g" or "rank_biserial"
    mean_a: float
    mean_b: float
    n_a: int
    n_b: int
    df: float | None = None  #: Welch-Satterthwaite degrees of freedom (Welch only)
    cohens_d: float | None = None  #: Cohen's d with pooled SD (Welch only)


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate with a two-sided confidence interval ``[low, high]``."""

    estimate: float
    low: float
    high: float
    confidence: float
    method: str

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class HolmResult:
    """Holm-Bonferroni adjusted p-values (input order) and rejections at ``alpha``."""

    adjusted: np.ndarray
    reject: np.ndarray
    alpha: float


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def _sample(x: ArrayLike, name: str, min_n: int = 1) -> np.ndarray:
    arr = np.asarray(x, dtype=float).ravel()
    if arr.size < min_n:
        raise ValueError(f"{name} needs at least {min_n} values, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _rng(seed: Seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return np.random.default_rng(int(seed))
    raise TypeError(f"seed must be an int or a numpy Generator, got {type(seed).__name__}")


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


# ------------------------------------------------------------------------------------------
# effect sizes and pairwise tests
# ------------------------------------------------------------------------------------------


def cohens_d(a: ArrayLike, b: ArrayLike) -> float:
    """Cohen's d = (mean_a - mean_b) / s_pooled, s_pooled² = ((n_a-1)s_a² + (n_b-1)s_b²)/(n_a+n_b-2).

    Cohen (1988), eq. 2.5.2 with the pooled sample SD (ddof=1). 0 if both samples are constant
    and equal, ±inf if constant and different.
    """
    x, y = _sample(a, "a", 2), _sample(b, "b", 2)
    na, nb = x.size, y.size
    pooled = ((na - 1) * x.var(ddof=1) + (nb - 1) * y.var(ddof=1)) / (na + nb - 2)
    diff = float(x.mean() - y.mean())
    if pooled <= 0.0:
        return 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
    return diff / math.sqrt(pooled)


def hedges_g(a: ArrayLike, b: ArrayLike) -> float:
    """Hedges' g = J(df)·d, the small-sample bias-corrected Cohen's d (Hedges 1981).

    J(df) = Γ(df/2) / (√(df/2) Γ((df-1)/2)) with df = n_a + n_b - 2 (exact form; ≈ 1 - 3/(4df-1)).
    """
    x, y = _sample(a, "a", 2), _sample(b, "b", 2)
    df = x.size + y.size - 2
    j = math.exp(gammaln(df / 2) - gammaln((df - 1) / 2)) / math.sqrt(df / 2)
    return j * cohens_d(x, y)


def rank_biserial(a: ArrayLike, b: ArrayLike) -> float:
    """Rank-biserial correlation r = 2·U_a/(n_a n_b) - 1 = P(A>B) - P(A<B) (Kerby 2014).

    U_a is the Mann-Whitney U of sample ``a`` (pairs with a > b, ties counting 1/2); r ∈ [-1, 1],
    positive when ``a`` tends to be larger.
    """
    x, y = _sample(a, "a"), _sample(b, "b")
    return 2.0 * _prob_greater(x, y) - 1.0


def welch_t_test(a: ArrayLike, b: ArrayLike, alternative: str = "two-sided") -> PairTest:
    """Welch's unequal-variance t-test of mean(a) vs mean(b) (Welch 1947).

    ``scipy.stats.ttest_ind(a, b, equal_var=False)``; effect size Hedges' g (Cohen's d also given).
    Use on per-episode returns of two agents, or on per-seed mean returns of two methods.
    """
    x, y = _sample(a, "a", 2), _sample(b, "b", 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        res = scipy.stats.ttest_ind(x, y, equal_var=False, alternative=alternative)
    return PairTest(
        test="welch_t",
        statistic=float(res.statistic),
        pvalue=float(res.pvalue),
        effect_size=hedges_g(x, y),
        effect_size_name="hedges_g",
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        n_a=int(x.size),
        n_b=int(y.size),
        df=float(res.df),
        cohens_d=cohens_d(x, y),
    )


def mann_whitney_u(a: ArrayLike, b: ArrayLike, alternative: str = "two-sided") -> PairTest:
    """Mann-Whitney U test (Mann & Whitney 1947) via ``scipy.stats.mannwhitneyu`` (method="auto",
    continuity correction), with the rank-biserial correlation as effect size.
    """
    x, y = _sample(a, "a"), _sample(b, "b")
    res = scipy.stats.mannwhitneyu(x, y, alternative=alternative)
    return PairTest(
        test="mann_whitney_u",
        statistic=float(res.statistic),
        pvalue=float(res.pvalue),
        effect_size=2.0 * float(res.statistic) / (x.size * y.size) - 1.0,
        effect_size_name="rank_biserial",
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        n_a=int(x.size),
        n_b=int(y.size),
    )


# ------------------------------------------------------------------------------------------
# multiple comparisons
# ------------------------------------------------------------------------------------------


def holm_bonferroni(pvalues: ArrayLike, alpha: float = 0.05) -> HolmResult:
    """Holm's step-down adjusted p-values (Holm 1979), returned in input order.

    With p sorted ascending, p̃_(i) = max_{j<=i} min(1, (m - j + 1)·p_(j)) (i, j 1-based), so the
    adjusted values are monotone in p and capped at 1; ``reject = p̃ <= alpha`` controls the
    family-wise error rate at ``alpha``. Equal p-values get equal adjusted values.
    """
    p = np.asarray(pvalues, dtype=float).ravel()
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must be finite and in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted_sorted = np.maximum.accumulate(scaled)
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return HolmResult(adjusted=adjusted, reject=adjusted <= alpha, alpha=alpha)


# ------------------------------------------------------------------------------------------
# bootstrap and agent selection
# ------------------------------------------------------------------------------------------


def bootstrap_ci(
    x: ArrayLike,
    statistic: Callable[..., Any] = np.mean,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: Seed = 0,
    method: str = "BCa",
) -> ConfidenceInterval:
    """Bootstrap confidence interval of ``statistic(x)`` via ``scipy.stats.bootstrap``.

    Efron & Tibshirani (1993); default the bias-corrected and accelerated (BCa) interval, or
    ``method="percentile"``/``"basic"``. ``statistic`` may take an ``axis`` keyword (vectorised,
    like ``np.mean``) or not. A constant sample gives the degenerate interval [x, x].
    Same ``seed`` → same interval.
    """
    _check_confidence(confidence)
    data = _sample(x, "x")
    estimate = float(statistic(data))
    if np.all(data == data[0]):
        return ConfidenceInterval(estimate, estimate, estimate, confidence, method)
    res = scipy.stats.bootstrap(
        (data,),
        statistic,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method=method,
        rng=_rng(seed),
    )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return ConfidenceInterval(estimate, low, high, confidence, method)


def median_agent(worst_case_returns: Mapping[K, float]) -> K:
    """Seed of the median agent ranked by worst-case return (SA-PPO and successors' rule).

    Agents are sorted by ascending worst-case return (ties broken by ascending seed, or by
    insertion order if seeds are not mutually comparable) and the agent at index (n-1)//2 is
    returned: the middle one for odd n, the *lower* median for even n, so it is always a real
    agent and never an average of two.
    """
    if len(worst_case_returns) == 0:
        raise ValueError("median_agent needs at least one agent")
    items = list(worst_case_returns.items())
    for seed, value in items:
        if not math.isfinite(float(value)):
            raise ValueError(f"worst-case return of seed {seed!r} is not finite: {value}")
    try:
        ranked = sorted(items, key=lambda kv: (float(kv[1]), kv[0]))
    except TypeError:  # seeds of mixed types: fall back to insertion order for ties
        ranked = sorted(items, key=lambda kv: float(kv[1]))
    return ranked[(len(ranked) - 1) // 2][0]


# ------------------------------------------------------------------------------------------
# rliable aggregates
# ------------------------------------------------------------------------------------------


def _flatten_scores(x: ArrayLike | Mapping[Any, ArrayLike]) -> np.ndarray:
    if isinstance(x, Mapping):
        if not x:
            raise ValueError("no tasks")
        return np.concatenate([_sample(v, f"task {k!r}") for k, v in x.items()])
    return _sample(x, "scores")


def iqm(x: ArrayLike | Mapping[Any, ArrayLike]) -> float:
    """Interquartile mean: ``scipy.stats.trim_mean(x, 0.25)`` over all runs of all tasks flattened.

    rliable's ``metrics.aggregate_iqm`` (Agarwal et al. 2021): the mean of the middle 50% of the
    scores, after cutting ⌊0.25·n⌋ scores from each end. ``x`` is an array of scores or a mapping
    task → per-seed scores.
    """
    return float(scipy.stats.trim_mean(_flatten_scores(x), 0.25, axis=None))


def _task_arrays(scores_per_task: Mapping[Any, ArrayLike], name: str) -> dict[Any, np.ndarray]:
    if not isinstance(scores_per_task, Mapping) or not scores_per_task:
        raise ValueError(f"{name} must be a non-empty mapping task -> per-seed scores")
    return {k: _sample(v, f"{name}[{k!r}]") for k, v in scores_per_task.items()}


def _percentile_ci(estimate: float, samples: np.ndarray, confidence: float,
                   method: str) -> ConfidenceInterval:
    lo_q, hi_q = (1 - confidence) / 2, 1 - (1 - confidence) / 2
    lo, hi = np.quantile(samples, [lo_q, hi_q])
    if method == "percentile":
        return ConfidenceInterval(estimate, float(lo), float(hi), confidence, method)
    if method == "basic":  # reverse percentile
        return ConfidenceInterval(estimate, float(2 * estimate - hi), float(2 * estimate - lo),
                                  confidence, method)
    raise ValueError(f"unknown method {method!r}; expected 'percentile' or 'basic'")


def _stratified_resample(arrays: Mapping[Any, np.ndarray], n_resamples: int,
                         rng: np.random.Generator) -> dict[Any, np.ndarray]:
    """Per task, ``n_resamples`` resamples of its seeds drawn with replacement: [R, n_task]."""
    out = {}
    for k, v in arrays.items():
        idx = rng.integers(0, v.size, size=(n_resamples, v.size))
        out[k] = v[idx]
    return out


def iqm_ci(
    scores_per_task: Mapping[Any, ArrayLike],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: Seed = 0,
    method: str = "percentile",
) -> ConfidenceInterval:
    """IQM over tasks and seeds with a stratified bootstrap CI (rliable ``StratifiedBootstrap``).

    Each bootstrap replicate resamples, independently within every task, as many seeds as that
    task has (with replacement) and recomputes the IQM of all scores; the CI is the percentile
    interval of the replicates (rliable's default; ``method="basic"`` for the reverse one).
    """
    _check_confidence(confidence)
    arrays = _task_arrays(scores_per_task, "scores_per_task")
    estimate = iqm(arrays)
    res = _stratified_resample(arrays, n_resamples, _rng(seed))
    flat = np.concatenate(list(res.values()), axis=1)
    reps = scipy.stats.trim_mean(flat, 0.25, axis=1)
    return _percentile_ci(estimate, reps, confidence, method)


def _prob_greater(x: np.ndarray, y: np.ndarray) -> float | np.ndarray:
    """P(X > Y) + ½ P(X = Y) for X, Y drawn from the samples on the last axis (batched)."""
    gt = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    eq = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return gt + 0.5 * eq


def probability_of_improvement(
    x_scores_per_task: Mapping[Any, ArrayLike],
    y_scores_per_task: Mapping[Any, ArrayLike],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: Seed = 0,
    method: str = "percentile",
) -> ConfidenceInterval:
    """Probability that method X improves on Y, P(X > Y) (rliable, Agarwal et al. 2021).

    Per task m: P(X_m > Y_m) = U_m / (N_x N_y) = mean over all seed pairs of 1[x > y] + ½ 1[x = y]
    (the normalised Mann-Whitney U); averaged uniformly over tasks. The CI resamples X's and Y's
    seeds independently within each task (rliable ``StratifiedIndependentBootstrap``); percentile
    interval. Both mappings must have the same tasks.
    """
    _check_confidence(confidence)
    xs = _task_arrays(x_scores_per_task, "x_scores_per_task")
    ys = _task_arrays(y_scores_per_task, "y_scores_per_task")
    if set(xs) != set(ys):
        raise ValueError(f"x and y must cover the same tasks: {sorted(map(repr, set(xs) ^ set(ys)))}")
    tasks = list(xs)
    estimate = float(np.mean([_prob_greater(xs[t], ys[t]) for t in tasks]))
    rng = _rng(seed)
    reps = np.zeros(n_resamples)
    for t in tasks:  # fixed task order, x then y: reproducible for a given seed
        xr = _stratified_resample({t: xs[t]}, n_resamples, rng)[t]
        yr = _stratified_resample({t: ys[t]}, n_resamples, rng)[t]
        reps += _prob_greater(xr, yr)
    reps /= len(tasks)
    return _percentile_ci(estimate, reps, confidence, method)
