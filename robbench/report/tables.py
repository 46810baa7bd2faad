"""The words and numbers of every table and note of a board, written once for every format.

A table is a header and rows of `Cell`s. A cell's text uses two inline marks that every renderer
knows: `code` (an id to copy) and **bold**; its `detail` is the secondary part ("558" with detail
"ars_director: …" reads "558 (ars_director: …)" in markdown and LaTeX, a small grey note in HTML).
The outline (robbench.report.outline) decides which of these tables a document shows and in what
order; nothing here knows about a format.
"""

from __future__ import annotations

from dataclasses import dataclass

from robbench import stats
from robbench.envs import get_env_spec
from robbench.report.analysis import SeedAggregate, Significance
from robbench.report.model import (
    FLAG_LABELS, FLAG_TEXT, NATURAL, Board, Entry, _attack_name, _group_label,
)
from robbench.report.paper import PAPER_ATTACKS, PaperRanking


@dataclass(frozen=True)
class Cell:
    """One table cell. `key` is the number an interactive view sorts by (None: sorts last); `tip` and
    `chips` (label, explanation) carry what a page can show on hover and a text format leaves out."""

    text: str
    detail: str = ""
    tip: str = ""
    flagged: bool = False
    key: float | None = None
    chips: tuple[tuple[str, str], ...] = ()

    @property
    def plain(self) -> str:
        return f"{self.text} ({self.detail})" if self.detail else self.text


def cells(rows: list[list[str]]) -> list[list[Cell]]:
    """Rows of plain strings as cells (tables with nothing to sort by but their text)."""
    return [[Cell(c) for c in r] for r in rows]


# ----------------------------------------------------------------------------------- numbers
def _fmt(cell: dict | None) -> str:
    return "—" if cell is None else f"{cell['mean']:.0f} ± {cell['std']:.0f}"


def _fmt_flags(e: Entry) -> str:
    parts = []
    for code, attacks in e.flags():
        parts.append(FLAG_LABELS[code] + (f" ({', '.join(_attack_name(a) for a in attacks)})" if attacks else ""))
    return "⚠ " + "; ".join(parts) if parts else ""


def _p(p: float | None) -> str:
    if p is None:
        return "—"
    return "<1e-4" if p < 1e-4 else f"{p:.4f}"


def _ci(ci: stats.ConfidenceInterval | None, digits: int = 0) -> str:
    if ci is None:
        return "—"
    return f"{ci.estimate:.{digits}f} [{ci.low:.{digits}f}, {ci.high:.{digits}f}]"


def _es(t: stats.PairTest | None) -> str:
    return "—" if t is None else f"{t.effect_size:+.2f}"


def _cell_text(e: Entry, a: str) -> str:
    if a in e.not_applicable and a not in e.cells:
        return "n/a (no critic)"
    text = _fmt(e.cells.get(a))
    return text + " ⚠" if e.cell_flags(a) else text


def _rank_text(e: Entry) -> str:
    return str(e.rank) if e.rank is not None else "—"


def _best_known_text(e: Entry) -> str:
    best, worst = e.best_known, e.worst
    if best is None:
        return "—"
    if worst is not None and best[0] >= worst[0]:
        return "= worst"
    return f"{best[0]:.0f} ({_attack_name(best[1])})"


# ------------------------------------------------------------------------------------- notes
COLUMNS_HEAD = "Columns:"
COLUMNS_ITEMS = (
    "each attack: its mean ± std over the episodes (a scan: its lowest member);",
    "**worst**: the lowest of the natural return and every suite cell, with the member that set it;",
    "**worst-case robustness** = (worst − natural) / natural: the share of its natural return the agent loses "
    "to the strongest attack, from −1 (all of it) to 0 (none), so closer to 0 is more robust;",
    "**best known**: the lowest mean ever recorded for the agent at this protocol under any attack, in the suite "
    "or not;",
    "**certified action dev.**: the auto-LiRPA bound on max_i |μ_i(ŝ) − μ_i(s)| over the ball, mean / max over "
    "sampled states.",
)
COLUMNS_NOTE = COLUMNS_HEAD + " " + " ".join(COLUMNS_ITEMS)
"""The column legend as one paragraph (kept for callers that print it whole)."""

SIG_INTRO = ("Agent against agent (not method against method: that comparison uses training seeds as the unit, "
             "in the paper-ranking section): each method's agent (its median agent by worst-case return when it "
             "has several seeds) against the top-ranked entry, on per-episode returns of those two agents: worst "
             "case = each agent's own worst-case attack. "
             "p-values Holm-adjusted across the comparisons of this table, separately for Welch's t and "
             "Mann-Whitney U; effect sizes Hedges' g and rank-biserial r (> 0: this agent higher); "
             "means with 95 % BCa bootstrap CIs.")
AGG_INTRO = ("Per method and budget preset, over training seeds: the median agent by worst-case return "
             "(the papers' selection rule), interquartile mean (IQM) of worst-case and natural returns with "
             "95 % stratified bootstrap CIs (rliable), and the probability that a seed of this method beats "
             "a seed of the best method on worst-case return.")


def _published_intro(b: Board) -> str:
    return ("BARPO paper (ICLR 2026) Tables 1-4: median agents over 17 seeds on gym "
            f"`*-v2` / MuJoCo 1.5, while ours run on gymnasium `{get_env_spec(b.env).gym_id}` — expect "
            "differences. Shown for reference only, never ranked with ours.")


def _attack_note(cell: dict) -> str:
    cfg = {k: v for k, v in cell["attack_config"].items() if k != "eps"}
    if not cfg:
        return ""
    note = f"{cell['attack']}: " + ", ".join(f"{k}={v}" for k, v in sorted(cfg.items()))
    n = len(cell.get("scan_members", [cell]))
    return note + (f" (the minimum over {n} evaluated scan members)" if n > 1 else "")


def attack_settings(b: Board) -> list[str]:
    """One line per attack setting on the board, in the board's attack order (settings of one attack
    that differ between agents by their text)."""
    out: list[str] = []
    for a in b.attacks:
        if a == NATURAL:
            continue
        notes = sorted({_attack_note(e.cells[a]) for e in b.entries if a in e.cells} - {""})
        out += [n for n in notes if n not in out]
    return out


def env_note(b: Board) -> str:
    spec = get_env_spec(b.env)
    return f"Note: {spec.note}." if spec.note else ""


def training_notes(b: Board) -> list[str]:
    """The training departures (`Objective.departures`) the board's agents carry, read from each
    agent's recorded config; a note that holds for only some agents of a method says how many."""
    from robbench.registry import trainers

    known = trainers()
    carriers: dict[str, list[str]] = {}  # note -> the agents carrying it, in board order
    methods: dict[str, set[str]] = {}  # note -> the methods it was found in
    for e in sorted(b.entries, key=lambda e: (e.method, e.agent_id)):
        cls = known.get(e.method)
        for note in cls.departures(b.env, e.config) if cls is not None else ():
            carriers.setdefault(note, []).append(e.agent_id)
            methods.setdefault(note, set()).add(e.method)
    notes = []
    for note, agents in carriers.items():
        of = sum(e.method in methods[note] for e in b.entries)
        notes.append(note if len(agents) == of else f"{note} ({len(agents)} of {of} such agents: {', '.join(agents)})")
    return notes


def _flag_legend(b: Board) -> list[str]:
    codes = [c for c in FLAG_LABELS if any(c == code for e in b.entries for code, _ in e.flags())]
    return [f"{FLAG_LABELS[c]} (`{c}`) — {FLAG_TEXT[c]}" for c in codes]


# ------------------------------------------------------------------------------------ tables
RANKING_COLUMNS = ("#", "agent", "natural", "worst", "worst-case robustness", "best known",
                   "certified action dev. mean / max", "flags")
"""The columns that rank a board: a page keeps them in view while the per-attack columns scroll."""


BOARD_TRAILING = (2, 3, 4)
"""method, seed and budget: the agent id (`env/method/preset/seed`) says them already."""


def board_header(b: Board) -> list[str]:
    return (["#", "agent", "method", "seed", "budget"] + [_attack_name(a) for a in b.attacks]
            + ["worst", "worst-case robustness", "best known", "certified action dev. mean / max", "flags"])


def board_align(b: Board) -> str:
    return "rllrl" + "r" * len(b.attacks) + "rrrll"


def board_pinned(b: Board) -> tuple[int, ...]:
    """Indices of RANKING_COLUMNS in board_header (natural only when the board has it)."""
    header = board_header(b)
    return tuple(header.index(h) for h in RANKING_COLUMNS if h in header)


def _mean_key(cell: dict | None) -> float | None:
    return None if cell is None else float(cell["mean"])


def board_row(e: Entry, attacks: list[str]) -> list[Cell]:
    worst, best, rob, cert = e.worst, e.best_known, e.robustness, e.certificate
    row = [Cell(_rank_text(e), key=e.rank), Cell(f"`{e.agent_id}`"), Cell(e.method), Cell(str(e.seed), key=e.seed),
           Cell(e.budget(), key=e.steps)]
    for a in attacks:
        flags = e.cell_flags(a)
        row.append(Cell(_cell_text(e, a), tip="; ".join(f"{FLAG_LABELS[c]}: {d}" for c, d in flags),
                        flagged=bool(flags), key=_mean_key(e.cells.get(a))))
    row.append(Cell(f"{worst[0]:.0f}", detail=e.worst_member, key=worst[0]) if worst else Cell("—"))
    row.append(Cell(f"{rob:+.3f}" if rob is not None else "—", key=rob))
    if best is None or worst is None or best[0] >= worst[0]:
        row.append(Cell(_best_known_text(e), key=None if best is None else best[0]))
    else:
        row.append(Cell(f"{best[0]:.0f}", detail=_attack_name(best[1]), key=best[0]))
    row.append(Cell(f"{cert['mean_dev']:.3g} / {cert['max_dev']:.3g}", detail=cert["method"], key=cert["max_dev"])
               if cert else Cell("—"))
    # a page shows each flag as its short code (the legend and the CSV/JSON use the same codes), details on hover
    chips = tuple((code, FLAG_LABELS[code] + (f" ({', '.join(_attack_name(a) for a in attacks_of)})" if attacks_of
                                               else "") + ": " + FLAG_TEXT[code]) for code, attacks_of in e.flags())
    row.append(Cell(_fmt_flags(e), chips=chips, key=len(chips)))
    return row


def board_cells(b: Board) -> list[list[Cell]]:
    return [board_row(e, b.attacks) for e in b.entries]


def published_header() -> list[str]:
    return ["published method", "our id", "table", "natural", *PAPER_ATTACKS, "worst", "worst-case robustness"]


def published_cells(b: Board) -> list[list[str]]:
    return [[r.display, r.method_id, r.table, f"{r.natural[0]:.0f} ± {r.natural[1]:.0f}",
             *(f"{r.attacks[a][0]:.0f} ± {r.attacks[a][1]:.0f}" for a in PAPER_ATTACKS),
             f"{r.worst[0]:.0f} ({r.worst_attack})", f"{r.robustness:+.3f}"] for r in b.published or []]


def significance_header() -> list[str]:
    return ["method", "agent (selection)", "on", "attack (this / top)", "mean [95% CI]", "top mean [95% CI]",
            "Welch p (Holm)", "Hedges g", "Mann-Whitney p (Holm)", "rank-biserial r"]


def significance_cells(sig: Significance) -> list[list[str]]:
    return [[_group_label(c.group), f"`{c.entry.agent_id}` ({c.selection})", c.quantity,
             f"{_attack_name(c.attack)} / {_attack_name(c.top_attack)}", _ci(c.ci), _ci(c.top_ci),
             _p(c.welch_holm), _es(c.welch), _p(c.mwu_holm), _es(c.mwu)] for c in sig.comparisons]


def aggregate_header() -> list[str]:
    return ["method", "seeds", "median agent (seed)", "median's worst case", "IQM worst case [95% CI]",
            "IQM natural [95% CI]", "P(> best method) [95% CI]"]


def aggregate_cells(aggs: list[SeedAggregate]) -> list[list[str]]:
    rows = []
    for a in aggs:
        w = a.median.worst
        pi = "best" if a.best_group is None else (
            f"{a.p_improvement.estimate:.2f} [{a.p_improvement.low:.2f}, {a.p_improvement.high:.2f}]"
            if a.p_improvement else "— (needs ≥ 2 seeds each)")
        rows.append([_group_label((a.method, a.preset)), f"{len(a.entries)} ({', '.join(map(str, a.seeds))})",
                     f"`{a.median.agent_id}` (seed {a.median.seed})", f"{w[0]:.0f} ({w[1]})",
                     _ci(a.worst_iqm), _ci(a.natural_iqm), pi])
    return rows


def ranking_header() -> list[str]:
    return ["method", "paper worst case", "paper rank", "our seeds", "our median agent's worst case",
            "our IQM worst case [95% CI]", "our rank"]


def ranking_cells(pr: PaperRanking) -> list[list[str]]:
    return [[f"{x.display} (`{x.method}`)", f"{x.paper_worst:.0f} ({x.paper_attack})", str(x.paper_rank),
             str(len(x.aggregate.entries)),
             f"{x.our_worst:.0f} ({x.aggregate.median.worst[1]}; seed {x.aggregate.median.seed})",
             _ci(x.aggregate.worst_iqm), str(x.our_rank)] for x in pr.rows]


def claims_header() -> list[str]:
    return ["pair (worst case)", "paper: lead", "ours: lead (median agents)", "ours: lead (IQM)", "seeds",
            "Welch p, per-seed (Holm)", "Hedges g", "Mann-Whitney p, per-seed (Holm)", "order"]


def claims_cells(pr: PaperRanking) -> list[list[str]]:
    return [[f"{c.top.display} vs {c.other.display}", f"{c.paper_gap:+.0f}", f"{c.our_gap:+.0f}",
             f"{c.iqm_gap:+.0f}", f"{len(c.top.aggregate.entries)} vs {len(c.other.aggregate.entries)}",
             _p(c.welch_holm), _es(c.welch), _p(c.mwu_holm), c.verdict] for c in pr.claims]


def ranking_summary(pr: PaperRanking) -> str:
    tau = "undefined" if pr.kendall_tau is None else (
        f"{pr.kendall_tau:+.2f}" + ("" if pr.kendall_p is None else f" (p = {pr.kendall_p:.2f})"))
    held = sum(c.verdict.startswith("as in") for c in pr.claims)
    top = pr.claims[0].top.display if pr.claims else pr.rows[0].display
    return (f"Kendall's τ between the two rankings: {tau}; {pr.pairs_agree} of {pr.pairs_total} method pairs "
            f"ordered as in the paper; the paper's headline method, {top}, is ordered as in the paper against "
            f"{held} of the {len(pr.claims)} others.")
