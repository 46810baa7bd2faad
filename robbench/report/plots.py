"""The plots of a board, drawn with matplotlib's Agg canvas into base64 PNGs for the HTML page.

Every plot reads the board and its analysis (robbench.report.analysis), never the store, and is drawn
to be read at 100 % on a laptop screen: at most 12 inches wide at 100 dpi (a page shows it unscaled
from 1280 px up), text at 9 pt or more, and one style per method — a tab10 colour, with a hatch and
a marker that change every ten methods, so eleven methods never share a look.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from robbench.envs import get_env_spec
from robbench.report.analysis import BoardAnalysis, performance_profiles, representatives
from robbench.report.model import NATURAL, Board, Entry, _attack_name
from robbench.report.paper import PAPER_LABEL

FONT = 9
"""Points; at the 100 dpi of the PNGs a page shows unscaled."""
MAX_WIDTH = 12.0
"""Inches: 1200 px at 100 dpi, inside a 1280-px window."""
HATCHES = ("", "//", "..", "xx", "\\\\")
MARKERS = ("o", "s", "^", "D", "v")
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)))
LABELLED_EXTREMES = 3
"""The certified-vs-empirical scatter names this many points per extreme, not every point."""


@dataclass(frozen=True)
class Style:
    color: Any
    hatch: str
    marker: str
    linestyle: Any


def _styles(names: Sequence[str]) -> dict[str, Style]:
    """tab10 colours in turn; past ten names the hatch, marker and line style change too."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    out = {}
    for i, n in enumerate(names):
        k = (i // 10) % len(HATCHES)
        out[n] = Style(cmap(i % 10), HATCHES[k], MARKERS[k], LINESTYLES[k])
    return out


def _method_styles(b: Board) -> dict[str, Style]:
    """One style per method for every plot of a board (ours in rank order, then published-only ids)."""
    names = [e.method for e in b.entries] + [r.method_id for r in b.published or []]
    return _styles(list(dict.fromkeys(names)))


def _png(fig) -> str:
    """Render a matplotlib Figure with the Agg canvas (no pyplot, no global backend) to base64 PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(min(w, MAX_WIDTH), h), layout="constrained")


def _finish(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=FONT + 1)
    ax.set_xlabel(xlabel, fontsize=FONT)
    ax.set_ylabel(ylabel, fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    ax.grid(alpha=0.3)


def _title(b: Board, what: str) -> str:
    return f"{get_env_spec(b.env).gym_id}, ε = {b.eps:g}: {what}"


def plot_performance_profile(b: Board, analysis: BoardAnalysis | None = None) -> str | None:
    """Fraction of each method's seeds with worst case ≥ τ against τ (one step per seed)."""
    profiles = analysis.profiles if analysis is not None else performance_profiles(b)
    if not profiles:
        return None
    fig = _figure(8.4, 4.0)
    ax = fig.add_subplot()
    styles = _styles(list(profiles))
    top = max(t[-1] for t, _ in profiles.values())
    for label, (taus, fracs) in profiles.items():
        ax.step(taus + [top * 1.05], fracs + [fracs[-1]], where="post", color=styles[label].color,
                linestyle=styles[label].linestyle, linewidth=1.6, label=f"{label} ({len(taus) - 1} seeds)")
    _finish(ax, _title(b, "performance profile over training seeds"), "τ (worst-case return)",
            "fraction of seeds with worst case ≥ τ")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=FONT, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)  # beside, not over
    return _png(fig)


def plot_natural_vs_worst(b: Board) -> str | None:
    """The paper's Figure 5 view: natural (x) vs worst-case (y) return per agent, y = x line."""
    pts = [e for e in b.entries if e.natural is not None and e.worst is not None]
    if not pts:
        return None
    fig = _figure(8.4 if b.published else 7.2, 5.0)
    ax = fig.add_subplot()
    methods = list(dict.fromkeys(e.method for e in pts))
    styles = _method_styles(b)
    xs, ys = [], []
    for m in methods:
        es = [e for e in pts if e.method == m]
        x = [e.natural for e in es]
        y = [e.worst[0] for e in es]
        st = styles[m]
        ax.errorbar(x, y, xerr=[e.cells[NATURAL]["std"] for e in es], yerr=[e.cells[e.worst[1]]["std"] for e in es],
                    fmt=st.marker, color=st.color, ecolor=st.color, elinewidth=0.8, alpha=0.9, capsize=2,
                    label=f"{m} (ours)")
        xs += x
        ys += y
        if len(pts) <= 20:
            for e in es:
                ax.annotate(f"s{e.seed}", (e.natural, e.worst[0]), fontsize=FONT, xytext=(3, 3),
                            textcoords="offset points")
    for r in b.published or []:
        ax.scatter([r.natural[0]], [r.worst[0]], marker="D", s=40, facecolors="none",
                   edgecolors=[styles[r.method_id].color], linewidths=1.3, label=f"{r.display} (published)")
        xs.append(r.natural[0])
        ys.append(r.worst[0])
    lo, hi = min(xs + ys + [0.0]), max(xs + ys)
    pad = 0.06 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], ls="--", color="#999", lw=1, label="y = x (no loss)")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    _finish(ax, _title(b, "natural vs worst case"), "natural return (mean ± std)", "worst-case return (mean ± std)")
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: (not labels[i].endswith("(ours)"), "published" in labels[i]))
    legend = ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=FONT, loc="upper left",
                       bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                       title="filled: ours\nhollow: " + PAPER_LABEL.replace(", ", ",\n") if b.published else None,
                       title_fontsize=FONT)
    legend.set_frame_on(False)
    return _png(fig)


def per_attack_shown(b: Board, analysis: BoardAnalysis | None = None) -> tuple[list[Entry], str]:
    """The boxes of the per-attack plot: every agent, or each method's representative (its median agent
    by worst case, unranked rows included) when the board has more than 8 agents, in board order."""
    if len(b.entries) <= 8:
        return list(b.entries), "one box per agent"
    everyone = len(b.ranked) == len(b.entries)
    reps = analysis.representatives if analysis is not None and everyone else representatives(b, b.entries)
    order = {e.agent_id: i for i, e in enumerate(b.entries)}
    return ([e for e, _ in sorted(reps.values(), key=lambda t: order[t[0].agent_id])],
            "one box per method (its median agent by worst case)")


def plot_per_attack(b: Board, analysis: BoardAnalysis | None = None) -> tuple[str, str] | None:
    """Box plots of per-episode returns, one panel per attack (up to four panels a row, one y axis), one
    numbered box per agent or method in every panel; the legend maps numbers and styles to agents."""
    shown, note = per_attack_shown(b, analysis)
    attacks = [a for a in b.attacks if any(e.cells.get(a) and e.cells[a]["returns"] for e in shown)]
    if not shown or not attacks:
        return None
    ncols = min(4, len(attacks))
    nrows = math.ceil(len(attacks) / ncols)
    panel = max(2.4, 0.3 * len(shown) + 0.9)
    fig = _figure(ncols * panel + 0.4, 2.5 * nrows + 1.0)
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False)
    styles = _method_styles(b)
    per_agent = note == "one box per agent"
    for k, a in enumerate(attacks):
        ax = axes[k // ncols][k % ncols]
        boxes = [(j, e) for j, e in enumerate(shown) if e.cells.get(a) and e.cells[a]["returns"]]
        bp = ax.boxplot([e.cells[a]["returns"] for _, e in boxes], positions=[j for j, _ in boxes], widths=0.7,
                        patch_artist=True, manage_ticks=False, flierprops={"markersize": 2.5, "alpha": 0.6})
        for patch, (_, e) in zip(bp["boxes"], boxes):
            st = styles[e.method]
            patch.set_facecolor(st.color)
            patch.set_alpha(0.7)
            patch.set_hatch(st.hatch)
        for med in bp["medians"]:
            med.set_color("black")
        ax.set_xticks(range(len(shown)), [str(j + 1) for j in range(len(shown))])
        ax.set_xlim(-0.7, len(shown) - 0.3)
        _finish(ax, _attack_name(a), "", "episode return" if k % ncols == 0 else "")
        ax.grid(axis="x", visible=False)
    for k in range(len(attacks), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=styles[e.method].color, hatch=styles[e.method].hatch, alpha=0.7,
                     label=f"{j + 1} {e.agent_id if per_agent else e.method} (s{e.seed})")
               for j, e in enumerate(shown)]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(5, len(handles)), fontsize=FONT,
               frameon=False)
    fig.suptitle(_title(b, "per-episode returns per attack"), fontsize=FONT + 1)
    return _png(fig), note


def _extremes(points: list[tuple[float, float, Entry]]) -> set[int]:
    """Indices of the points worth a name: the largest certified bounds and the largest empirical changes
    (every point when there are few)."""
    if len(points) <= 2 * LABELLED_EXTREMES:
        return set(range(len(points)))
    by_x = sorted(range(len(points)), key=lambda i: -points[i][0])[:LABELLED_EXTREMES]
    by_y = sorted(range(len(points)), key=lambda i: -points[i][1])[:LABELLED_EXTREMES]
    return set(by_x) | set(by_y)


def plot_certified_vs_empirical(b: Board) -> str | None:
    """Certified bound on max_i |Δμ_i| (x) vs the largest change an attack produced (y), per agent;
    colour = method (legend), and only the extreme points carry a name, set apart so none overlap."""
    es = [e for e in b.entries if e.certificate is not None]
    if not es:
        return None
    fig = _figure(8.4, 5.0)
    ax = fig.add_subplot()
    styles = _method_styles(b)
    have_emp = False
    named: list[tuple[float, float, Entry]] = []
    top = 0.0
    seen: set[str] = set()
    for e in es:
        cert = e.certificate
        emp = e.empirical_action_change("max_action_change")
        emp_mean = e.empirical_action_change("mean_action_change")
        st = styles[e.method]
        label = None if e.method in seen else e.method
        seen.add(e.method)
        if emp is not None:
            have_emp = True
            ax.scatter([cert["max_dev"]], [emp], color=st.color, marker="^", s=40, label=label)
            named.append((cert["max_dev"], emp, e))
            top = max(top, emp)
        if emp_mean is not None:
            have_emp = True
            ax.scatter([cert["mean_dev"]], [emp_mean], color=st.color, marker="o", s=30,
                       label=label if emp is None else None)
            top = max(top, emp_mean)
        if emp is None and emp_mean is None:
            ax.axvline(cert["max_dev"], color=st.color, lw=1, alpha=0.7, label=label)
        top = max(top, cert["max_dev"])
    # names go up and to the left, one line apart: above y = x, where a sound bound leaves the plot empty
    for n, i in enumerate(sorted(_extremes(named), key=lambda i: named[i][0])):
        x, y, e = named[i]
        ax.annotate(f"{e.method} s{e.seed}", (x, y), fontsize=FONT, xytext=(-14, 14 + 13 * n),
                    textcoords="offset points", ha="right",
                    arrowprops={"arrowstyle": "-", "color": "#888", "lw": 0.6})
    top = top * 1.1 or 1.0
    ax.plot([0, top], [0, top], ls="--", color="#999", lw=1, label="y = x (bound met exactly)")
    ax.scatter([], [], marker="^", color="#555", label="max over states: certified vs attacks")
    ax.scatter([], [], marker="o", color="#555", label="mean over states (when recorded)")
    if not have_emp:
        ax.plot([], [], color="#555", label="certified max (no attack recorded max_action_change)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    _finish(ax, _title(b, "certified vs empirical action deviation"),
            "certified max_i |μ_i(ŝ) − μ_i(s)| over the ε-ball", "empirical action change under attack")
    ax.legend(fontsize=FONT, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return _png(fig)


@dataclass(frozen=True)
class Plot:
    """One image of the page: `png` is base64, `caption` plain text."""

    alt: str
    png: str
    caption: str


def figures(b: Board, analysis: BoardAnalysis) -> tuple[list[Plot], list[str]]:
    """The board's images, and a line for each plot that has nothing to draw (when a reader would miss it)."""
    per_attack = plot_per_attack(b, analysis)
    drawn = [  # (alt, png or None, caption, what to say without it)
        ("performance profile over training seeds", plot_performance_profile(b, analysis),
         "Performance profile over training seeds: for each method, the fraction of its seeds whose worst case is "
         "at least τ (ranked rows only). A curve above another at every τ dominates it; crossing curves are not "
         "ordered by these seeds.", ""),
        ("natural vs worst-case return", plot_natural_vs_worst(b),
         "Natural vs worst-case return per agent (the paper's Figure 5 view). Points far below the dashed y = x "
         "line lose much of their return under attack."
         + (f" Hollow diamonds: {PAPER_LABEL}, for reference." if b.published else ""),
         "No agent has both a natural and an attacked cell: no Figure-5 view."),
        ("per-attack returns", per_attack[0] if per_attack else None,
         f"Per-episode returns under each attack ({per_attack[1] if per_attack else ''}, numbered in board order; "
         "colour and hatch = method); box = quartiles, line = median, whiskers 1.5 IQR.", ""),
        ("certified vs empirical action deviation", plot_certified_vs_empirical(b),
         "Certified bound on the action deviation vs the largest deviation any attack recorded (info "
         "max_action_change); the largest bounds and changes are named. A sound bound keeps every point on or "
         "below y = x at the certified states; attacks visit other states, so read it as a comparison of "
         "magnitudes.",
         "Certified vs empirical action deviation: no certificates for the agents of this board "
         "(run `robbench certify`)."),
    ]
    return ([Plot(alt, png, caption) for alt, png, caption, _ in drawn if png],
            [without for _, png, _, without in drawn if not png and without])
