"""JSON: one RobustBench-style record per (board, agent), raw per-episode returns included, each with
its board's analysis (comparisons, seed aggregate) as `analyse` computed it; then the published rows
and the ranking against the paper's as records of their own."""

from __future__ import annotations

import json
from typing import Any

from robbench import stats
from robbench.envs import get_env_spec
from robbench.report.analysis import analyse
from robbench.report.model import FLAG_TEXT, Board, _member_order, board_rows, cell_flags
from robbench.report.paper import OURS_LABEL, PaperRanking

def ranking_json(pr: PaperRanking, b: Board) -> dict[str, Any]:
    return {
        "source": "ranking vs published", "rank": None, "env": b.env, "eps": b.eps,
        "methods": [{"method": x.method, "paper_method": x.display, "paper_worst": x.paper_worst,
                     "paper_worst_attack": x.paper_attack, "paper_rank": x.paper_rank,
                     "our_seeds": x.aggregate.seeds, "our_median_agent": x.aggregate.median.agent_id,
                     "our_worst": x.our_worst, "our_worst_attack": x.aggregate.median.worst[1],
                     "our_iqm_worst": _ci_json(x.aggregate.worst_iqm), "our_rank": x.our_rank} for x in pr.rows],
        "claims": [{"top": c.top.method, "other": c.other.method, "paper_gap": c.paper_gap, "our_gap": c.our_gap,
                    "our_iqm_gap": c.iqm_gap, "unit": "training seed",
                    "seeds": [len(c.top.aggregate.entries), len(c.other.aggregate.entries)],
                    "welch": _test_json(c.welch, c.welch_holm), "mann_whitney": _test_json(c.mwu, c.mwu_holm),
                    "verdict": c.verdict} for c in pr.claims],
        "pairs_agree": pr.pairs_agree, "pairs_total": pr.pairs_total,
        "kendall_tau": pr.kendall_tau, "kendall_p": pr.kendall_p,
    }


def _ci_json(ci: stats.ConfidenceInterval | None) -> dict | None:
    return None if ci is None else {"estimate": ci.estimate, "low": ci.low, "high": ci.high,
                                    "confidence": ci.confidence, "method": ci.method}


def _test_json(t: stats.PairTest | None, holm: float | None) -> dict | None:
    if t is None:
        return None
    return {"statistic": t.statistic, "pvalue": t.pvalue, "pvalue_holm": holm, "effect_size": t.effect_size,
            "effect_size_name": t.effect_size_name}


def _cell_json(c: dict[str, Any]) -> dict[str, Any]:
    """One attack of a record: the cell that set its result (the minimum over its scan members) and,
    for a scan, every member with its own config and returns."""
    out = {"mean": c["mean"], "std": c["std"], "min": c["min"], "max": c["max"], "episodes": c["episodes"],
           "config": c["attack_config"], "member": c["info"].get("member"), "returns": c["returns"],
           "code_version": c["info"].get("code_version"),
           "flags": [{"code": code, "detail": d} for code, d in cell_flags(c)]}
    members = c.get("scan_members", [c])
    if len(members) > 1:
        out["scan_members"] = [{"config": m["attack_config"], "member": m["info"].get("member"), "mean": m["mean"],
                                "std": m["std"], "episodes": m["episodes"], "returns": m["returns"]}
                               for m in sorted(members, key=_member_order)]
    return out


def to_json(boards: list[Board]) -> str:
    """One record per (board, agent), RobustBench-style, raw per-episode returns included.

    Each record also carries its trust flags, certificate, its comparisons against the board's top
    entry (when it is its method's representative) and its method's seed aggregate. Published
    rows (compare_paper) are extra records with `source` = PAPER_LABEL and `rank` null.
    """
    records = []
    for b in boards:
        analysis = analyse(b)
        sig = analysis.significance
        aggs = {(a.method, a.preset): a for a in analysis.aggregates}
        for row, e in zip(board_rows(b), b.entries):
            agg = aggs.get(e.group)
            records.append({
                "source": OURS_LABEL,
                "env": b.env, "gym_id": get_env_spec(b.env).gym_id, "eps": b.eps, "protocol": b.protocol,
                "protocol_departures": b.departures, **row,
                "flags": [{"code": code, "text": FLAG_TEXT[code], "attacks": attacks} for code, attacks in e.flags()],
                "certificate": None if e.certificate is None else {
                    k: e.certificate[k] for k in ("method", "eps", "states", "threshold", "mean_dev", "max_dev",
                                                  "mean_sum_u2_sigma2", "max_sum_u2_sigma2", "frac_below",
                                                  "seconds_per_1000") if k in e.certificate},
                "attacks": {a: _cell_json(c) for a, c in e.cells.items()},
                "extra_attacks": {a: _cell_json(c) for a, c in e.extra_cells.items()},  # best known only
                "significance_vs_top": None if sig is None else {
                    "top_agent": sig.top.agent_id,
                    "comparisons": [{
                        "quantity": c.quantity, "attack": c.attack, "top_attack": c.top_attack,
                        "selection": c.selection, "mean_ci": _ci_json(c.ci), "top_mean_ci": _ci_json(c.top_ci),
                        "welch": _test_json(c.welch, c.welch_holm), "mann_whitney": _test_json(c.mwu, c.mwu_holm),
                    } for c in sig.comparisons if c.entry is e],
                },
                "method_aggregate": None if agg is None else {
                    "seeds": agg.seeds, "median_agent": agg.median.agent_id, "median_seed": agg.median.seed,
                    "iqm_worst": _ci_json(agg.worst_iqm), "iqm_natural": _ci_json(agg.natural_iqm),
                    "probability_of_improvement_vs_best": _ci_json(agg.p_improvement),
                    "best_method": None if agg.best_group is None else list(agg.best_group),
                },
            })
        for r in b.published or []:
            records.append({**r.to_record(), "gym_id": r.env + " (gym v2)"})
        pr = analysis.paper_ranking
        if pr:
            records.append(ranking_json(pr, b))
    return json.dumps(records, indent=2, sort_keys=False) + "\n"


