"""The per-board analysis, computed once per board and read by every renderer and plot.

Under every board:

- a **significance view**: each method's agent (the median agent by worst-case return when the
  method has several seeds) against the top-ranked entry, on the per-episode returns of each
  one's worst-case attack and on natural returns — Welch's t and Mann-Whitney U, each
  Holm-adjusted across the comparisons of that table, Hedges' g and the rank-biserial
  correlation, 95 % BCa bootstrap CIs of the means (protocol.md, "Aggregation across training
  seeds");
- a **seed aggregate** per method: the median agent by worst-case return (and which seed it is),
  IQM of worst-case and natural returns over seeds with a stratified bootstrap CI, and the
  probability of improvement over the method with the best worst-case IQM;
- a **performance profile** per method over its training seeds;
- with published rows attached, **our ranking against the paper's** (robbench.report.paper).

The bootstraps and tests are the slow part of a report and one board's numbers must be the same in
every format, so `analyse` runs each of them once per board into a `BoardAnalysis`; the outline,
the renderers and the plots only read it. The public functions (`significance`, `seed_aggregates`,
...) stay callable on their own for tests and scripts.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from robbench import stats
from robbench.report.model import NATURAL, Board, Entry, _group_label, _rank_key

if TYPE_CHECKING:
    from robbench.report.paper import PaperRanking

CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0
"""Every bootstrap in a report uses this seed: the same store gives the same report."""

Representatives = dict[tuple[str, str], tuple[Entry, str]]


# ---------------------------------------------------------------------------- significance
@dataclass
class Comparison:
    """One method's agent against the board's top entry on one quantity (worst case or natural)."""

    group: tuple[str, str]
    entry: Entry
    selection: str
    quantity: str  # "worst case" or "natural"
    attack: str
    top_attack: str
    returns: list[float]
    top_returns: list[float]
    ci: stats.ConfidenceInterval
    top_ci: stats.ConfidenceInterval
    welch: stats.PairTest | None
    mwu: stats.PairTest | None
    welch_holm: float | None = None
    mwu_holm: float | None = None


@dataclass
class Significance:
    top: Entry
    comparisons: list[Comparison]
    family_size: dict[str, int]


def representatives(board: Board, entries: Sequence[Entry] | None = None) -> Representatives:
    """Per (method, preset): its only agent, or its median agent by worst-case return, among the ranked
    rows (the ones compared) unless `entries` says otherwise (a plot of every row)."""
    groups: dict[tuple[str, str], list[Entry]] = {}
    for e in board.ranked if entries is None else entries:
        if e.worst is not None:
            groups.setdefault(e.group, []).append(e)
    out = {}
    for g, entries in groups.items():
        if len(entries) == 1:
            out[g] = (entries[0], "only agent")
            continue
        seed = stats.median_agent({e.seed: e.worst[0] for e in entries})
        chosen = next(e for e in entries if e.seed == seed)
        out[g] = (chosen, f"median of {len(entries)} seeds: seed {seed}")
    return out


def _safe(fn: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn()
        except ValueError:
            return None


def mean_ci(returns: Sequence[float]) -> stats.ConfidenceInterval:
    """95 % BCa bootstrap CI of the mean (percentile when BCa degenerates on tiny samples)."""
    ci = _safe(lambda: stats.bootstrap_ci(returns, confidence=CONFIDENCE, seed=BOOTSTRAP_SEED))
    if ci is None or not (math.isfinite(ci.low) and math.isfinite(ci.high)):
        ci = _safe(lambda: stats.bootstrap_ci(returns, confidence=CONFIDENCE, seed=BOOTSTRAP_SEED,
                                              method="percentile"))
    if ci is None:
        m = float(np.mean(returns))
        ci = stats.ConfidenceInterval(m, m, m, CONFIDENCE, "none")
    return ci


def significance(board: Board, reps: Representatives | None = None) -> Significance | None:
    """Each method's agent vs the top-ranked entry; Holm across this table's comparisons, per test.

    Worst case: the per-episode returns of each agent's own worst-case attack (the quantity the
    board ranks by). Natural: the no-attack returns. Comparisons whose test is undefined (fewer
    than 2 episodes, or two constant samples) show no p-value and stay out of the Holm family.
    """
    ranked = [e for e in board.ranked if e.worst is not None]
    if not ranked:
        return None
    top = ranked[0]
    ci_cache: dict[tuple[str, str], stats.ConfidenceInterval] = {}

    def ci_of(e: Entry, attack: str) -> stats.ConfidenceInterval:
        key = (e.agent_id, attack)
        if key not in ci_cache:
            ci_cache[key] = mean_ci(e.cells[attack]["returns"])
        return ci_cache[key]

    comps: list[Comparison] = []
    for g, (rep, selection) in sorted((representatives(board) if reps is None else reps).items(), key=lambda kv: _rank_key(kv[1][0])):
        if rep is top:
            continue
        pairs = [("worst case", rep.worst[1], top.worst[1])]
        if NATURAL in rep.cells and NATURAL in top.cells:
            pairs.append(("natural", NATURAL, NATURAL))
        for quantity, attack, top_attack in pairs:
            a, b = rep.cells[attack]["returns"], top.cells[top_attack]["returns"]
            if not a or not b:
                continue
            welch = _safe(lambda: stats.welch_t_test(a, b))
            mwu = _safe(lambda: stats.mann_whitney_u(a, b))
            comps.append(Comparison(g, rep, selection, quantity, attack, top_attack, list(a), list(b),
                                    ci_of(rep, attack), ci_of(top, top_attack),
                                    welch if welch and math.isfinite(welch.pvalue) else None,
                                    mwu if mwu and math.isfinite(mwu.pvalue) else None))
    sizes = {}
    for test in ("welch", "mwu"):
        tested = [c for c in comps if getattr(c, test) is not None]
        sizes[test] = len(tested)
        if tested:
            adj = stats.holm_bonferroni([getattr(c, test).pvalue for c in tested]).adjusted
            for c, p in zip(tested, adj):
                setattr(c, f"{test}_holm", float(p))
    return Significance(top, comps, sizes)


# --------------------------------------------------------------------------- seed aggregates
@dataclass
class SeedAggregate:
    method: str
    preset: str
    entries: list[Entry]
    median: Entry
    worst_iqm: stats.ConfidenceInterval
    natural_iqm: stats.ConfidenceInterval | None
    p_improvement: stats.ConfidenceInterval | None = None  # P(this > best method), worst case
    best_group: tuple[str, str] | None = None

    @property
    def seeds(self) -> list[int]:
        return sorted(e.seed for e in self.entries)


def seed_aggregates(board: Board, reps: Representatives | None = None) -> list[SeedAggregate]:
    """Per (method, preset): median agent, IQM with stratified bootstrap CIs over seeds (rliable)."""
    reps = representatives(board) if reps is None else reps
    groups: dict[tuple[str, str], list[Entry]] = {}
    for e in board.ranked:
        if e.worst is not None:
            groups.setdefault(e.group, []).append(e)
    out = []
    for g, entries in groups.items():
        worst = {board.env: [e.worst[0] for e in entries]}
        nats = [e.natural for e in entries if e.natural is not None]
        out.append(SeedAggregate(
            g[0], g[1], entries, reps[g][0],
            stats.iqm_ci(worst, confidence=CONFIDENCE, seed=BOOTSTRAP_SEED),
            stats.iqm_ci({board.env: nats}, confidence=CONFIDENCE, seed=BOOTSTRAP_SEED) if nats else None,
        ))
    out.sort(key=lambda a: (-a.worst_iqm.estimate, a.method, a.preset))
    if out:
        best = out[0]
        for agg in out[1:]:
            agg.best_group = (best.method, best.preset)
            if len(agg.entries) >= 2 and len(best.entries) >= 2:
                agg.p_improvement = stats.probability_of_improvement(
                    {board.env: [e.worst[0] for e in agg.entries]},
                    {board.env: [e.worst[0] for e in best.entries]},
                    confidence=CONFIDENCE, seed=BOOTSTRAP_SEED)
    return out


def performance_profiles(b: Board, aggregates: list[SeedAggregate] | None = None
                         ) -> dict[str, tuple[list[float], list[float]]]:
    """Per method (ranked rows, all presets): the fraction of its training seeds whose worst case is
    ≥ τ, as a step function (rliable's performance profile, seeds as the unit): (τ, fraction) knots."""
    out = {}
    for agg in seed_aggregates(b) if aggregates is None else aggregates:
        label = _group_label((agg.method, agg.preset))
        worsts = sorted(e.worst[0] for e in agg.entries)
        n = len(worsts)
        taus, fracs = [min(0.0, worsts[0])], [1.0]
        for i, w in enumerate(worsts):
            taus.append(w)
            fracs.append((n - i - 1) / n)  # strictly above w from here on (ties step once each)
        out[label] = (taus, fracs)
    return out




# ------------------------------------------------------------------------------ once per board
@dataclass
class BoardAnalysis:
    """Everything a board's views show beyond the board itself, computed by `analyse`."""

    board: Board
    representatives: Representatives
    significance: Significance | None
    aggregates: list[SeedAggregate]
    profiles: dict[str, tuple[list[float], list[float]]]
    paper_ranking: PaperRanking | None


def analyse(board: Board) -> BoardAnalysis:
    """Run every bootstrap and test of one board once (the representatives feed the significance view
    and the seed aggregates, which feed the performance profiles and the paper ranking)."""
    from robbench.report.paper import paper_ranking  # the paper comparison builds on the aggregates

    reps = representatives(board)
    aggregates = seed_aggregates(board, reps)
    return BoardAnalysis(board, reps, significance(board, reps), aggregates,
                         performance_profiles(board, aggregates), paper_ranking(board, aggregates))
