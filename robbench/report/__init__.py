"""Leaderboards generated from the results store (results as data, boards derived from them).

The package, one concern a module:

- `model`: the board model (`Entry`, `Board`, `build_boards`), cell bookkeeping, trust flags and the
  one attack order every view uses;
- `analysis`: the per-board analysis (significance view, seed aggregates, performance profiles, the
  paper ranking) computed once per board by `analyse`;
- `paper`: the BARPO paper's published rows and our ranking against the paper's;
- `tables`: the words and numbers of every table and note; `outline`: the ordered sections of a
  document, the one outline every format renders;
- `render_markdown`, `render_html` (a Jinja2 template in templates/), `render_latex`, `render_json`,
  `render_csv`: thin renderers; `plots`: the PNGs of the HTML page.

Formats: markdown (reading), csv (flat rows + every per-episode return), json (one RobustBench-style
record per entry, raw returns included), latex (tabular fragments to ``\\input``), html (one
self-contained page: inline CSS and inline base64 PNG plots drawn with matplotlib's Agg canvas).
CONTRIBUTING.md, "Add a report format", says how to add one.

Every name other modules imported from the former single module is re-exported here, so
``from robbench.report import build_boards`` and ``report.to_markdown(...)`` keep working.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from robbench.errors import RobbenchError
from robbench.report.analysis import (
    BOOTSTRAP_SEED, CONFIDENCE, BoardAnalysis, Comparison, SeedAggregate, Significance, analyse, mean_ci,
    performance_profiles, representatives, seed_aggregates, significance,
)
from robbench.report.model import (
    AD_HOC, CERT_PREFERENCE, CONVERGENCE_TOLERANCE, FLAG_LABELS, FLAG_TEXT, MIN_EPISODES, NATURAL, RANDOM, Board,
    Entry, attack_order, board_rows, build_boards, cell_flags, load_certificates, pick_certificate,
)
from robbench.report.outline import Document, outline
from robbench.report.paper import (
    MAIN_TABLE, OURS_LABEL, PAPER_ATTACKS, PAPER_CSV, PAPER_LABEL, PAPER_METHODS, RANKING_INTRO, Claim,
    PaperRanking, PaperRow, RankingRow, attach_published, load_paper_results, paper_ranking, seed_worsts,
)
from robbench.report.plots import (
    plot_certified_vs_empirical, plot_natural_vs_worst, plot_per_attack, plot_performance_profile,
)
from robbench.report.render_csv import to_csv
from robbench.report.render_html import to_html
from robbench.report.render_json import ranking_json, to_json
from robbench.report.render_latex import latex_escape, to_latex
from robbench.report.render_markdown import to_markdown
from robbench.report.tables import (
    AGG_INTRO, COLUMNS_NOTE, RANKING_COLUMNS, SIG_INTRO, aggregate_cells, aggregate_header, board_cells, board_header, claims_cells,
    claims_header, published_cells, published_header, ranking_cells, ranking_header, ranking_summary,
    significance_cells, significance_header, training_notes,
)
from robbench.store import ResultsStore

FORMATS = ("markdown", "csv", "json", "latex", "html")
RENDERERS: dict[str, Callable[[list[Board]], str]] = {
    "markdown": to_markdown, "csv": to_csv, "json": to_json, "latex": to_latex, "html": to_html,
}
EXTENSIONS = {"markdown": "md", "csv": "csv", "json": "json", "latex": "tex", "html": "html"}


def render(store: ResultsStore, fmt: str, compare_paper: bool = False, paper_csv: str | Path | None = None) -> str:
    """The leaderboards of `store` in `fmt`; with `compare_paper`, published rows from `paper_csv`."""
    if fmt not in RENDERERS:
        from robbench.errors import unknown

        raise unknown("format", fmt, FORMATS)
    boards = build_boards(store)
    if compare_paper:
        if paper_csv is None:
            raise RobbenchError("--compare-paper needs the published results CSV (pass --paper-csv PATH)")
        attach_published(boards, load_paper_results(paper_csv))
    return RENDERERS[fmt](boards)


__all__ = [
    "AD_HOC", "AGG_INTRO", "BOOTSTRAP_SEED", "CERT_PREFERENCE", "COLUMNS_NOTE", "CONFIDENCE", "CONVERGENCE_TOLERANCE",
    "EXTENSIONS", "FLAG_LABELS", "FLAG_TEXT", "FORMATS", "MAIN_TABLE", "MIN_EPISODES", "NATURAL", "OURS_LABEL",
    "PAPER_ATTACKS", "PAPER_CSV", "PAPER_LABEL", "PAPER_METHODS", "RANDOM", "RANKING_COLUMNS", "RANKING_INTRO", "RENDERERS",
    "SIG_INTRO", "Board", "BoardAnalysis", "Claim", "Comparison", "Document", "Entry", "PaperRanking", "PaperRow",
    "RankingRow", "SeedAggregate", "Significance", "aggregate_cells", "aggregate_header", "analyse",
    "attach_published", "attack_order", "board_cells", "board_header", "board_rows", "build_boards", "cell_flags",
    "claims_cells", "claims_header", "latex_escape", "load_certificates", "load_paper_results", "mean_ci",
    "outline", "paper_ranking", "performance_profiles", "pick_certificate", "plot_certified_vs_empirical",
    "plot_natural_vs_worst", "plot_per_attack", "plot_performance_profile", "published_cells", "published_header",
    "ranking_cells", "ranking_header", "ranking_json", "ranking_summary", "render", "representatives",
    "seed_aggregates", "seed_worsts", "significance", "significance_cells", "significance_header", "to_csv",
    "to_html", "to_json", "to_latex", "to_markdown", "training_notes",
]
