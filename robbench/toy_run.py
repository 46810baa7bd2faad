"""`robbench toy`: the whole Appendix D analysis of robbench/toy.py over a grid of starts, its
tables (rich) and its figure (matplotlib's Agg canvas), kept apart from the exact arithmetic so
that robbench/toy.py reads as the paper's formulas alone."""

from __future__ import annotations

import os
import pathlib
import tempfile

import numpy as np

from robbench.toy import (CLASSES, PAPER_MDP, PARADIGMS, ToyMDP, beta_tilde, classify, connected_components,
                          diagonal_saddle, evaluate, paradigm_objective, robust_cut_point, robust_gap, robust_mask,
                          run_pga, stationarity, strongest_adversary)

__all__ = ["FIGURE_STARTS", "run_toy"]


def _limit_points(theta: np.ndarray, decimals: int = 2) -> list[tuple[tuple[float, float], int]]:
    pts, counts = np.unique(np.round(theta, decimals) + 0.0, axis=0, return_counts=True)
    order = np.argsort(-counts)
    return [((float(pts[i, 0]), float(pts[i, 1])), int(counts[i])) for i in order]


FIGURE_STARTS = np.array([[0.15, 0.35], [0.55, 0.05], [0.05, 0.6], [0.3, 0.95], [0.95, 0.55]])


def run_toy(grid: int = 21, out_dir: pathlib.Path | None = None, console=None, *, steps: int = 4000,
            lr: float = 0.01, mdp: ToyMDP = PAPER_MDP) -> dict:
    """Compute the whole Appendix D analysis, print it with rich, optionally write the figure.

    ``grid`` N: SPO/ARPO/BARPO are started from the N×N grid {0, 1/(N−1), …, 1}² (corners and
    diagonal included). Writes ``out_dir/"toy_landscape.png"`` atomically when ``out_dir`` is set.
    ``steps``/``lr``: constant-step projected gradient ascent settings for every paradigm.

    Returns a dict of every number printed: ``deterministic`` {(α, β): V, V_mu0, V_adv_mu0},
    ``ordering`` (by V(μ0)), ``ordering_componentwise``, ``V_star``, ``V_minus``, ``beta_tilde``
    (root for s1), ``beta_tilde_s2``, ``diagonal_saddle``, ``cut_point``, ``robust_components``
    (component counts of the 201² robust mask whole / minus a small ball at the cut point / minus
    one at (0.6, 0.3)), ``stationarity_at_00`` {paradigm: σ}, ``stationarity_at_saddle``,
    ``fosp_on_grid`` {paradigm: [(α, β)]}, ``prop31``, ``outcomes`` {paradigm: fractions per class,
    mean_natural, mean_adversarial, limit_points}, ``runs`` {paradigm: per-start arrays: starts,
    reached, spread, labels, natural, adversarial, sigma, gap, settled}, ``figure_paths``
    {paradigm: (5, steps + 1, 2)} and ``figure`` (the PNG path or None).
    """
    from rich.console import Console

    console = console if console is not None else Console()
    if grid < 2:
        raise ValueError("grid must be at least 2")

    # Deterministic policies and the ordering (32).
    det_pts = [(1.0, 1.0), (0.0, 1.0), (0.0, 0.0), (1.0, 0.0)]
    det_ev = evaluate(np.array(det_pts), mdp)
    _, _, det_adv = strongest_adversary(np.array(det_pts), mdp)
    deterministic = {p: {"V": det_ev.V[i].copy(), "V_mu0": float(det_ev.J[i]), "V_adv_mu0": float(det_adv[i])}
                     for i, p in enumerate(det_pts)}
    v_star = float(det_ev.J.max())
    v_minus = float(det_ev.J.min())
    ordered = [det_pts[i] for i in np.argsort(-det_ev.J)]
    componentwise = bool(np.all(np.diff(det_ev.V[np.argsort(-det_ev.J)], axis=0) <= 0.0))

    # Thresholds, robust region, cut point.
    bt = beta_tilde(mdp, 0)
    bt_s2 = beta_tilde(mdp, 1)
    t_saddle = diagonal_saddle(mdp)
    cut = robust_cut_point(mdp)
    n_fine = 201
    mask, t_fine = robust_mask(n_fine, mdp)
    h = t_fine[1] - t_fine[0]
    aa, bb = np.meshgrid(t_fine, t_fine, indexing="ij")

    def without_ball(c, radius=2.5 * h):
        return mask & (np.hypot(aa - c[0], bb - c[1]) > radius)

    components = {
        "whole": connected_components(mask),
        "without_cut_point": connected_components(without_ball(cut)),
        "without_(0.6,0.3)": connected_components(without_ball((0.6, 0.3))),
    }

    # Stationarity of (0, 0) (Prop. D.1 (2)) and Prop. 3.1.
    sigma00 = {p: float(stationarity(p, [0.0, 0.0], mdp)) for p in PARADIGMS}
    sigma_saddle = float(stationarity("ARPO", [t_saddle, t_saddle], mdp))
    # First-order stationary points of each objective on the fine grid (exact ties, no tolerance
    # on the box): "The FOSPs in ARPO are more than those in SPO" (Prop. D.1 (2)).
    fine = np.stack([aa, bb], axis=-1)
    fosp = {}
    for p in PARADIGMS:
        sig = stationarity(p, fine, mdp)
        fosp[p] = [(float(aa[i, j]), float(bb[i, j])) for i, j in np.argwhere(sig <= 1e-9)]
    v_s, v_a = deterministic[(1.0, 1.0)]["V_mu0"], deterministic[(0.0, 0.0)]["V_mu0"]
    prop31 = {"V_S": v_s, "V_A": v_a, "V_minus": v_minus, "lhs": v_a - v_minus, "rhs": 0.5 * (v_s - v_minus),
              "holds": bool(v_a - v_minus < 0.5 * (v_s - v_minus)),
              "pi_A_robust": bool(robust_gap([0.0, 0.0], mdp) <= 1e-12)}

    # Projected gradient ascent from the grid of starts.
    t = np.linspace(0.0, 1.0, grid)
    starts = np.stack(np.meshgrid(t, t, indexing="ij"), axis=-1).reshape(-1, 2)
    n_grid = len(starts)
    batch = np.concatenate([starts, FIGURE_STARTS])
    record = np.arange(n_grid, len(batch))
    outcomes, runs, paths = {}, {}, {}
    for p in PARADIGMS:
        res = run_pga(p, batch, steps=steps, lr=lr, record=record, mdp=mdp)
        reached, spread = res.tail_mean[:n_grid], res.tail_spread[:n_grid]
        labels, info = classify(p, reached, spread, mdp)
        outcomes[p] = {
            "fractions": {c: float(np.mean(labels == c)) for c in CLASSES},
            "mean_natural": float(info["natural"].mean()),
            "mean_adversarial": float(info["adversarial"].mean()),
            "limit_points": _limit_points(reached),
        }
        runs[p] = {"starts": starts, "reached": reached, "spread": spread, "labels": labels, **info}
        paths[p] = res.paths

    result = {
        "grid": grid, "steps": steps, "lr": lr,
        "deterministic": deterministic, "ordering": ordered, "ordering_componentwise": componentwise,
        "V_star": v_star, "V_minus": v_minus,
        "beta_tilde": bt, "beta_tilde_s2": bt_s2, "diagonal_saddle": t_saddle,
        "cut_point": cut, "robust_components": components,
        "stationarity_at_00": sigma00, "stationarity_at_saddle": sigma_saddle, "fosp_on_grid": fosp,
        "prop31": prop31,
        "outcomes": outcomes, "runs": runs, "figure_paths": paths, "figure": None,
    }
    _print_tables(console, result)
    if out_dir is not None:
        out_dir = pathlib.Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        result["figure"] = _write_figure(out_dir / "toy_landscape.png", result, mdp)
        console.print(f"figure written to {result['figure']}")
    return result


def _print_tables(console, res: dict) -> None:
    from rich.table import Table

    tab = Table(title="Deterministic policies (App. D, eq. 32)")
    for col in ("π_{α,β}", "V(s1)", "V(s2)", "V(μ0)", "V^{π∘ν*}(μ0)"):
        tab.add_column(col, justify="right")
    for p in res["ordering"]:
        d = res["deterministic"][p]
        tab.add_row(f"({p[0]:g}, {p[1]:g})", f"{d['V'][0]:.4f}", f"{d['V'][1]:.4f}", f"{d['V_mu0']:.4f}",
                    f"{d['V_adv_mu0']:.4f}")
    console.print(tab)

    tab = Table(title="Landscape facts (App. D, Prop. D.1)")
    tab.add_column("quantity")
    tab.add_column("value", justify="right")
    pr = res["prop31"]
    rows = [
        ("ordering V^{π11} ⪰ V^{π01} ⪰ V^{π00} ⪰ V^{π10} (both states)", str(res["ordering_componentwise"])),
        ("β̃ (root of f(β, s1))", f"{res['beta_tilde']:.12f}"),
        ("β̃ (root of f(β, s2))", f"{res['beta_tilde_s2']:.12f}"),
        ("robust region", "{α = β} ∪ {β ≤ min(α, β̃)}"),
        ("cut point (junction of the two parts)", f"({res['cut_point'][0]:.12f}, {res['cut_point'][1]:.12f})"),
        ("components: region / minus cut ball / minus (0.6,0.3) ball",
         " / ".join(str(v) for v in res["robust_components"].values())),
        ("diagonal saddle t⋄ = argmin V(t,t); ARPO σ there",
         f"{res['diagonal_saddle']:.6f}; {res['stationarity_at_saddle']:.1e}"),
        ("first-order stationary points on the 201² grid",
         "; ".join(f"{p}: " + " ".join(f"({a:g},{b:g})" for a, b in res["fosp_on_grid"][p]) for p in PARADIGMS)),
        ("σ at (0,0): SPO / ARPO / BARPO",
         " / ".join(f"{res['stationarity_at_00'][p]:.4g}" for p in PARADIGMS)),
        ("V*(μ0) / V⁻(μ0)", f"{res['V_star']:.4f} / {res['V_minus']:.4f}"),
        ("Prop 3.1: V^{π00}−V⁻ < ½(V^{π11}−V⁻)", f"{pr['lhs']:.4f} < {pr['rhs']:.4f}: {pr['holds']}"),
    ]
    for r in rows:
        tab.add_row(*r)
    console.print(tab)

    tab = Table(title=f"PGA outcomes from a {res['grid']}×{res['grid']} grid of starts "
                      f"({res['steps']} steps, lr {res['lr']:g}): fraction of starts per class")
    tab.add_column("paradigm")
    for c in CLASSES:
        tab.add_column(c, justify="right")
    tab.add_column("mean nat.", justify="right")
    tab.add_column("mean adv.", justify="right")
    tab.caption = "nat. = V^π(μ0), adv. = V^{π∘ν*(π)}(μ0), at the policy reached"
    for p in PARADIGMS:
        o = res["outcomes"][p]
        tab.add_row(p, *(f"{o['fractions'][c]:.3f}" for c in CLASSES), f"{o['mean_natural']:.4f}",
                    f"{o['mean_adversarial']:.4f}")
    console.print(tab)

    tab = Table(title="Limit points reached (tail means rounded to 2 decimals)")
    for col in ("paradigm", "(α, β)", "starts", "fraction"):
        tab.add_column(col, justify="right")
    for p in PARADIGMS:
        n = res["grid"] ** 2
        for (a, b), cnt in res["outcomes"][p]["limit_points"]:
            tab.add_row(p, f"({a:g}, {b:g})", str(cnt), f"{cnt / n:.3f}")
    console.print(tab)


_CLASS_STYLE = {"global optimum": ("o", "white"), "robust": ("s", "deepskyblue"), "sticky": ("X", "red"),
                "other": ("^", "orange")}


def _write_figure(path: pathlib.Path, res: dict, mdp: ToyMDP) -> pathlib.Path:
    """Natural-value heat map, Θ_Robust, one trajectory per start per paradigm (cf. the paper's Fig. 3)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = 201
    t = np.linspace(0.0, 1.0, n)
    grid = np.stack(np.meshgrid(t, t, indexing="ij"), axis=-1)
    nat = evaluate(grid, mdp).J
    mask, _ = robust_mask(n, mdp)
    objectives = {p: paradigm_objective(p, grid, mdp)[0] for p in PARADIGMS}

    fig = Figure(figsize=(16.5, 5.3), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3, sharey=True)
    colors = ["tab:purple", "tab:green", "tab:pink", "tab:olive", "tab:cyan"]
    im = None
    for ax, p in zip(axes, PARADIGMS):
        im = ax.imshow(nat.T, origin="lower", extent=(0, 1, 0, 1), cmap="viridis", aspect="equal")
        cs = ax.contour(t, t, objectives[p].T, levels=12, colors="k", linewidths=0.5, alpha=0.5)
        ax.clabel(cs, fontsize=6, fmt="%.2f")
        ax.contourf(t, t, mask.T.astype(float), levels=[0.5, 1.5], colors="none", hatches=["//"])
        ax.contour(t, t, mask.T.astype(float), levels=[0.5], colors="white", linewidths=1.2)
        diag = np.diag(mask)
        ax.plot(t[diag], t[diag], color="white", lw=2.0, label="robust region Θ_Robust (hatched + diagonal)")
        ax.plot(*res["cut_point"], marker="*", color="gold", ms=16, mec="k", ls="none", label="cut point (β̃, β̃)")
        run = res["runs"][p]
        for c, (marker, col) in _CLASS_STYLE.items():
            sel = run["labels"] == c
            if np.any(sel):
                ax.scatter(run["starts"][sel, 0], run["starts"][sel, 1], s=7, marker=marker, c=col,
                           edgecolors="k", linewidths=0.2, label=f"start → {c} ({np.mean(sel):.0%})", zorder=3)
        for k, traj in enumerate(res["figure_paths"][p]):
            ax.plot(traj[:, 0], traj[:, 1], color=colors[k % len(colors)], lw=1.8, zorder=4)
            ax.plot(*traj[0], marker="o", color=colors[k % len(colors)], mec="k", ms=6, zorder=5)
            ax.plot(*traj[-1], marker="D", color=colors[k % len(colors)], mec="k", ms=6, zorder=5)
        ax.set_title(f"{p}: contours of its objective, trajectories (○ start, ◇ end)", fontsize=10)
        ax.set_xlabel("α = π(a1|s1)")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=7.5, frameon=False)
    axes[0].set_ylabel("β = π(a1|s2)")
    fig.colorbar(im, ax=axes, shrink=0.85, label="natural value V^π(μ0)")
    fig.suptitle("Toy ISA-MDP (App. D): natural value, robust region and PGA outcomes per paradigm")

    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".toy_landscape.", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=110)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a figure is meant to be read
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
