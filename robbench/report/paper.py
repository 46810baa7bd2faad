"""The paper comparison: the BARPO paper's published rows and our ranking against the paper's.

With ``compare_paper``, the published rows of the BARPO paper (Tables 1-4) are attached to each
board of their env and ε, shown in a separate block labelled "published (gym v2, 17-seed median)",
never ranked with ours, followed by **our ranking against the paper's**: per method both report, the
published worst case and rank beside our median agent's, the lead of the paper's headline method
(the best of its Table 2) over each other one (published vs ours, Welch's t, Holm-adjusted) and
Kendall's τ between the rankings.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scipy import stats as scipy_stats

from robbench import stats
from robbench.errors import RobbenchError
from robbench.report.analysis import SeedAggregate, _safe, seed_aggregates
from robbench.report.model import Board

PAPER_LABEL = "published (gym v2, 17-seed median)"
OURS_LABEL = "robbench"


# ------------------------------------------------------------------------- published results
PAPER_ATTACKS = ("random", "critic", "mad", "rs", "sa_rl", "pa_ad")
PAPER_METHODS: tuple[tuple[str, str, str, str], ...] = (
    # (our method id, paper table, paper method column, display name). Tables 1 and 4 call vanilla
    # PPO "SPO" and Table 2 "PPO" (same numbers); Table 2's "BAR" is Tables 3-4's "BARPO". The
    # paper's "ARPO" (Tables 1, 4) optimises the robust term alone — our `arppo-noguide` — and its
    # "ARPO (w g)" (Table 3) adds SPO guidance — our `arppo` (spec/trainers.md).
    ("ppo", "table2", "PPO", "PPO (= SPO)"),
    ("sappo", "table2", "SA", "SA (SA-PPO)"),
    ("radial", "table2", "RADIAL", "RADIAL"),
    ("wocar", "table2", "WocaR", "WocaR"),
    ("barppo", "table2", "BAR", "BAR (= BARPO)"),
    ("arppo", "table3", "ARPO (w g)", "ARPO (w g)"),
    ("arppo-noguide", "table1", "ARPO", "ARPO"),
    ("barppo-noguide", "table4", "BARPO (w/o g)", "BARPO (w/o g)"),
)


@dataclass
class PaperRow:
    """One published (env, method) row of the paper's Tables 1-4: mean and std per column."""

    method_id: str
    display: str
    table: str
    env: str
    eps: float
    natural: tuple[float, float]
    attacks: dict[str, tuple[float, float]]
    worst: tuple[float, float]
    robustness: float

    @property
    def worst_attack(self) -> str:
        return min(self.attacks, key=lambda a: self.attacks[a][0])

    def to_record(self) -> dict[str, Any]:
        return {
            "source": PAPER_LABEL, "rank": None, "method": self.method_id, "paper_method": self.display,
            "paper_table": self.table, "env": self.env, "eps": self.eps,
            "natural_mean": self.natural[0], "natural_std": self.natural[1],
            **{f"{a}_mean": v[0] for a, v in self.attacks.items()},
            **{f"{a}_std": v[1] for a, v in self.attacks.items()},
            "worst_mean": self.worst[0], "worst_std": self.worst[1], "worst_attack": self.worst_attack,
            "worst_case_robustness": self.robustness,
        }


PAPER_CSV = Path(__file__).parent.parent / "data" / "paper_results.csv"
"""The BARPO paper's Tables 1-4 (one row per table, env and method), shipped with the package so
`--compare-paper` works from any install."""


def load_paper_results(path: str | Path) -> list[PaperRow]:
    """Read a published-results CSV (the format of robbench/data/paper_results.csv) into one row per
    (env, mapped method)."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            raw = list(csv.DictReader(f))
    except OSError as exc:
        raise RobbenchError(f"cannot read published results {str(path)!r}: {exc.strerror}") from None
    need = {"table", "env", "eps", "method", "natural_mean", "natural_std", "worst_mean", "worst_std",
            "worst_case_robustness"} | {f"{a}_{s}" for a in PAPER_ATTACKS for s in ("mean", "std")}
    if not raw or need - set(raw[0]):
        missing = ", ".join(sorted(need - set(raw[0]))) if raw else "every row"
        raise RobbenchError(f"published results {str(path)!r} lack the expected columns ({missing})")
    index = {(r["table"], r["env"], r["method"]): r for r in raw}
    envs = list(dict.fromkeys(r["env"] for r in raw))
    rows = []
    try:
        for env in envs:
            for method_id, table, name, display in PAPER_METHODS:
                r = index.get((table, env, name))
                if r is None:
                    continue
                num = lambda k: float(r[k])  # noqa: E731
                rows.append(PaperRow(
                    method_id, display, table, env, num("eps"), (num("natural_mean"), num("natural_std")),
                    {a: (num(f"{a}_mean"), num(f"{a}_std")) for a in PAPER_ATTACKS},
                    (num("worst_mean"), num("worst_std")), num("worst_case_robustness"),
                ))
    except ValueError as exc:
        raise RobbenchError(f"published results {str(path)!r} hold a non-number: {exc}") from None
    return rows


def attach_published(boards: list[Board], rows: list[PaperRow]) -> None:
    """Give each board the published rows of its env at its ε (a separate block, never ranked)."""
    for b in boards:
        same_env = [r for r in rows if r.env == b.env]
        b.published = [r for r in same_env if abs(r.eps - b.eps) <= 1e-9]
        if same_env and not b.published:
            b.published_note = f"published results for {b.env} are at ε = {same_env[0].eps:g}, not this board's ε"
        elif not same_env:
            b.published_note = f"the paper publishes no results for {b.env}"


# ------------------------------------------------------------------ our ranking vs the paper's
@dataclass
class RankingRow:
    """One method both we and the paper report: its published worst case beside our median agent's."""

    method: str
    display: str
    paper_worst: float
    paper_attack: str
    paper_table: str
    paper_rank: int
    aggregate: SeedAggregate
    our_rank: int = 0

    @property
    def our_worst(self) -> float:
        return self.aggregate.median.worst[0]


@dataclass
class Claim:
    """The paper's headline method against another: is the pair ordered on our board as in the paper?

    The unit is the training seed (issue "Compare methods at the right unit…"): Welch's t and the
    Mann-Whitney U test compare the two methods' *per-seed* worst cases, each Holm-adjusted across the
    pairs of one table. The order counts as established only when the seed-level Welch test separates
    the methods (Holm-adjusted p < 0.05); otherwise the verdict says "not significant"."""

    top: RankingRow
    other: RankingRow
    welch: stats.PairTest | None
    mwu: stats.PairTest | None = None
    welch_holm: float | None = None
    mwu_holm: float | None = None

    @property
    def paper_gap(self) -> float:
        return self.top.paper_worst - self.other.paper_worst

    @property
    def our_gap(self) -> float:
        return self.top.our_worst - self.other.our_worst

    @property
    def iqm_gap(self) -> float:
        return self.top.aggregate.worst_iqm.estimate - self.other.aggregate.worst_iqm.estimate

    @property
    def verdict(self) -> str:
        significant = self.welch_holm is not None and self.welch_holm < 0.05
        same = (self.our_gap > 0) == (self.paper_gap > 0)
        word = "as in the paper" if same else "reversed"
        return word if significant else f"{word} (not significant)"


def seed_worsts(agg: SeedAggregate) -> list[float]:
    """Each training seed's worst case: the unit of a method comparison."""
    return [e.worst[0] for e in agg.entries]


@dataclass
class PaperRanking:
    rows: list[RankingRow]
    claims: list[Claim]
    pairs_agree: int
    pairs_total: int
    kendall_tau: float | None
    kendall_p: float | None


MAIN_TABLE = "table2"
"""The paper's main comparison (BAR against PPO, SA, RADIAL, WocaR); its best method is the headline."""

RANKING_INTRO = ("Methods that both the paper and this board report, ranked by worst-case return: the paper's "
                 "median agent over 17 seeds (gym v2) against our median agent by worst-case return over our "
                 "seeds (the same selection rule). Then the paper's headline method (the best of its main "
                 "comparison, Table 2) against each other one: its published lead, our lead (median agents and "
                 "IQM over seeds), and Welch's t and the Mann-Whitney U test on the two methods' per-seed worst "
                 "cases — the training seed is the unit, not the episode — each Holm-adjusted across these "
                 "pairs. An order is called established only when the seed-level Welch test separates the "
                 "methods; with 3 seeds a side Mann-Whitney cannot go below p = 0.1.")


def paper_ranking(board: Board, aggregates: list[SeedAggregate] | None = None) -> PaperRanking | None:
    """Compare our method ranking with the published one (None without published rows or overlap).
    `aggregates`: the board's seed aggregates when already computed (robbench.report.analysis)."""
    if not board.published:
        return None
    by_method: dict[str, list[SeedAggregate]] = {}
    for agg in seed_aggregates(board) if aggregates is None else aggregates:
        by_method.setdefault(agg.method, []).append(agg)
    rows = []
    for r in board.published:
        aggs = by_method.get(r.method_id)
        if not aggs:
            continue
        agg = next((a for a in aggs if a.preset == "paper"), max(aggs, key=lambda a: len(a.entries)))
        rows.append(RankingRow(r.method_id, r.display, r.worst[0], r.worst_attack, r.table, 0, agg))
    if len(rows) < 2:
        return None
    rows.sort(key=lambda x: -x.paper_worst)
    for i, x in enumerate(rows):
        x.paper_rank = i + 1
    for i, x in enumerate(sorted(rows, key=lambda x: -x.our_worst)):
        x.our_rank = i + 1
    pairs = [(a, b) for i, a in enumerate(rows) for b in rows[i + 1:]]
    agree = sum((a.our_worst - b.our_worst > 0) == (a.paper_worst - b.paper_worst > 0) for a, b in pairs)
    tau = _safe(lambda: scipy_stats.kendalltau([x.paper_worst for x in rows], [x.our_worst for x in rows]))
    tau_v = None if tau is None or not math.isfinite(tau.statistic) else float(tau.statistic)
    tau_p = None if tau_v is None or not math.isfinite(tau.pvalue) else float(tau.pvalue)
    main = [x for x in rows if x.paper_table == MAIN_TABLE]
    top = (main or rows)[0]
    claims = []
    def finite(t: stats.PairTest | None) -> stats.PairTest | None:
        return t if t is not None and math.isfinite(t.pvalue) else None

    for other in (x for x in rows if x is not top):
        a, b = seed_worsts(top.aggregate), seed_worsts(other.aggregate)
        enough = len(a) >= 2 and len(b) >= 2
        claims.append(Claim(top, other, finite(_safe(lambda: stats.welch_t_test(a, b))) if enough else None,
                            finite(_safe(lambda: stats.mann_whitney_u(a, b))) if enough else None))
    for test in ("welch", "mwu"):
        tested = [c for c in claims if getattr(c, test) is not None]
        if tested:
            for c, p in zip(tested, stats.holm_bonferroni([getattr(c, test).pvalue for c in tested]).adjusted):
                setattr(c, f"{test}_holm", float(p))
    return PaperRanking(rows, claims, agree, len(pairs), tau_v, tau_p)


