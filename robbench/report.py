"""Leaderboards generated from the results store (results as data, boards derived from them).

One board per (env, ε, protocol); one row per agent: method, seed, training budget, natural
mean ± std, each attack's mean ± std, worst (and which attack set it), worst-case robustness
(protocol.md), the certified action deviation when `robbench certify` has stored one, and trust
flags. Rows are ranked by worst-case return. Under every board:

- a **significance view**: each method's agent (the median agent by worst-case return when the
  method has several seeds) against the top-ranked entry, on the per-episode returns of each
  one's worst-case attack and on natural returns — Welch's t and Mann-Whitney U, each
  Holm-adjusted across the comparisons of that table, Hedges' g and the rank-biserial
  correlation, 95 % BCa bootstrap CIs of the means (protocol.md, "Aggregation across training
  seeds");
- a **seed aggregate** per method: the median agent by worst-case return (and which seed it is),
  IQM of worst-case and natural returns over seeds with a stratified bootstrap CI, and the
  probability of improvement over the method with the best worst-case IQM;
- with ``compare_paper``, the published rows of the BARPO paper (Tables 1-4) in a separate block
  labelled "published (gym v2, 17-seed median)", never ranked with ours, followed by **our ranking
  against the paper's**: per method both report, the published worst case and rank beside our
  median agent's, the lead of the paper's headline method (the best of its Table 2) over each
  other one (published vs ours, Welch's t, Holm-adjusted) and Kendall's τ between the rankings.

Formats: markdown (reading), csv (flat rows + every per-episode return), json (one RobustBench-style
record per entry, raw returns included), latex (tabular fragments to ``\\input``), html (one
self-contained page: inline CSS and inline base64 PNG plots drawn with matplotlib's Agg canvas).

Trust flags (the way RobustBench marks unreliable evaluations). A result is flagged, per cell, when

- ``stochastic``: its protocol has ``deterministic: false`` (actions sampled, not the mean μ);
- ``few-episodes``: it has fewer than 50 episodes;
- ``under-budget``: a learned attack was trained below the paper budget. **Convention for learned
  attacks**: record the attacker's training budget in the cell's ``attack_config`` (or, failing
  that, its ``info``) as ``train_steps`` (env steps the attacker actually trained) together with
  ``paper_steps`` (the paper budget for that attack and env, spec/attacks.md); the cell is flagged
  when ``train_steps < paper_steps``. A ``budget`` key holding a preset name is also read: any
  value other than ``"paper"`` is flagged; a ``budget`` dict with ``train_steps``/``paper_steps``
  is read like the flat keys;
- ``action-unmoved``: the attack never moved the action. **Convention for attacks**: record in the
  cell's ``info`` ``max_action_change`` = max over every attacked step and action dimension of
  ``|μ_i(ŝ) − μ_i(s)|`` (a float, action units); exactly 0 is flagged. Optionally also
  ``mean_action_change`` = mean over steps of ``max_i |μ_i(ŝ) − μ_i(s)|``; both feed the
  "certified vs empirical action deviation" plot;

and, per row,

- ``random-worst``: the worst case is set by ``random`` noise alone (no stronger attack was run,
  or every stronger attack was weaker than noise);
- ``missing-attacks``: the row lacks attacks that other rows of the same board were evaluated under,
  so its worst case is a minimum over fewer attacks and its rank is not comparable.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import sqlite3
import unicodedata
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from robbench import stats
from robbench.envs import get_env_spec
from robbench.errors import RobbenchError
from robbench.evaluate import DEFAULT_EPISODES, Protocol
from robbench.store import ResultsStore

FORMATS = ("markdown", "csv", "json", "latex", "html")
NATURAL = "none"
RANDOM = "random"
MIN_EPISODES = DEFAULT_EPISODES
PAPER_LABEL = "published (gym v2, 17-seed median)"
OURS_LABEL = "robbench"
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0
"""Every bootstrap in a report uses this seed: the same store gives the same report."""
CERT_PREFERENCE = ("crown", "crown-ibp", "ibp")
"""Tightest bound first: a board shows the tightest certificate stored for an agent."""

FLAG_LABELS = {
    "stochastic": "stochastic eval",
    "few-episodes": f"<{MIN_EPISODES} episodes",
    "under-budget": "attack under budget",
    "action-unmoved": "action never moved",
    "random-worst": "worst only by random",
    "missing-attacks": "incomplete suite, unranked",
    "no-critic": "no critic: critic attacks n/a",
    "not-converged": "not converged",
    "best-known-lower": "best known lower",
}
FLAG_TEXT = {
    "stochastic": "stochastic evaluation: actions were sampled, not the deterministic mean μ(ŝ)",
    "few-episodes": f"fewer than {MIN_EPISODES} episodes per cell",
    "under-budget": "a learned attack trained below the paper budget (attack_config train_steps < "
                    "paper_steps, or budget ≠ \"paper\")",
    "action-unmoved": "an attack that never moved the action (info max_action_change = 0)",
    "random-worst": "worst case set only by random noise: no stronger attack lowered it",
    "no-critic": "the agent has no value network (an imported agent): the attacks that need one (critic, "
                 "apgd_critic) were not run, and its worst case is over the other members",
    "missing-attacks": "not evaluated under every cell of the board's standard attack suite: its worst case "
                       "is a minimum over fewer attacks, so it is listed below the ranked rows, unranked",
    "not-converged": "the last doubling of the suite's scan budget (members tried per learned or screened "
                     "attack) lowered the worst case by more than 5 %: a larger budget would likely lower it more",
    "best-known-lower": "an attack outside the standard suite (or with other settings) recorded a mean return "
                        "more than 5 % below the suite's worst case: see the best-known column",
}
CONVERGENCE_TOLERANCE = 0.05
"""A row is flagged not converged when doubling the scan budget lowered its worst case by more than this."""


# ------------------------------------------------------------------------------------ entries
@dataclass
class Entry:
    """One agent on one board."""

    agent_id: str
    method: str
    seed: int
    preset: str
    steps: int
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)  # attack -> cell (+ "returns")
    sha256: str = ""
    certificate: dict[str, Any] | None = None
    board_attacks: list[str] = field(default_factory=list)  # every attack some entry of the board has
    extra_cells: dict[str, dict[str, Any]] = field(default_factory=dict)  # non-suite cells: best known only
    missing: list[str] = field(default_factory=list)  # suite members without all their cells
    not_applicable: list[str] = field(default_factory=list)  # attacks needing a critic the agent lacks
    rank: int | None = None  # None: not evaluated under the full suite, listed unranked

    @property
    def natural(self) -> float | None:
        cell = self.cells.get(NATURAL)
        return cell["mean"] if cell else None

    @property
    def worst(self) -> tuple[float, str] | None:
        """Minimum over the suite's cells *and* the natural return (the attacker may choose not to
        perturb, so worst ≤ natural): (mean, attack) with attack "none" when nothing beat natural."""
        cells = [(c["mean"], a) for a, c in self.cells.items()]
        return min(cells) if cells else None

    @property
    def worst_member(self) -> str:
        """`attack` or `attack: member` (e.g. the chosen target) of the cell that set the worst case."""
        worst = self.worst
        if worst is None:
            return ""
        label = self.cells[worst[1]]["info"].get("member")
        return f"{_attack_name(worst[1])}: {label}" if label else _attack_name(worst[1])

    @property
    def best_known(self) -> tuple[float, str] | None:
        """The lowest mean return ever recorded for this agent at the board's protocol, under any
        attack (suite or not, any settings), natural included (RobustBench's external column)."""
        cells = [(c["mean"], a) for a, c in self.cells.items()]
        cells += [(c["mean"], f"{a} (outside the suite)") for a, c in self.extra_cells.items()]
        return min(cells) if cells else None

    def budget_curve(self) -> list[tuple[float, float]]:
        """Worst case as a function of the scan budget: (fraction f, worst case when every scan attack
        — a learned attack's grid, `targeted`'s ranked targets — keeps only its first ⌈f·M⌉ of M
        members, in member order). f = 1 is the board's worst case."""
        out = []
        for frac in (0.25, 0.5, 1.0):
            vals = []
            for c in self.cells.values():
                members = sorted(c.get("scan_members", [c]), key=_member_order)
                keep = max(1, math.ceil(frac * len(members)))
                vals.append(min(m["mean"] for m in members[:keep]))
            if vals:
                out.append((frac, min(vals)))
        return out

    @property
    def converged(self) -> bool | None:
        curve = dict(self.budget_curve())
        if 1.0 not in curve or 0.5 not in curve:
            return None
        half, full = curve[0.5], curve[1.0]
        return not full < half - CONVERGENCE_TOLERANCE * abs(half)

    @property
    def robustness(self) -> float | None:
        worst, nat = self.worst, self.natural
        if worst is None or nat is None or nat == 0:
            return None
        return (worst[0] - nat) / abs(nat)

    @property
    def group(self) -> tuple[str, str]:
        """Seeds of one method at one budget preset are aggregated together."""
        return (self.method, self.preset)

    def budget(self) -> str:
        return f"{self.preset} ({_steps(self.steps)} steps)"

    def cell_flags(self, attack: str) -> list[tuple[str, str]]:
        cell = self.cells.get(attack)
        return cell_flags(cell) if cell else []

    def flags(self) -> list[tuple[str, list[str]]]:
        """Row flags: (code, attacks concerned — empty when every cell or the row itself)."""
        by_code: dict[str, list[str]] = {}
        for a in self.cells:
            for code, _ in self.cell_flags(a):
                by_code.setdefault(code, []).append(a)
        out = []
        for code in FLAG_LABELS:
            if code == "random-worst":
                worst = self.worst
                if worst and worst[1] == RANDOM:
                    out.append((code, []))
            elif code == "missing-attacks":
                if self.missing:
                    out.append((code, self.missing))
            elif code == "no-critic":
                if self.not_applicable:
                    out.append((code, self.not_applicable))
            elif code == "not-converged":
                if self.converged is False:
                    out.append((code, []))
            elif code == "best-known-lower":
                worst, best = self.worst, self.best_known
                if worst and best and best[0] < worst[0] - CONVERGENCE_TOLERANCE * abs(worst[0]):
                    out.append((code, []))
            elif code in by_code:
                attacks = by_code[code]
                out.append((code, [] if len(attacks) == len(self.cells) else attacks))
        return out

    def empirical_action_change(self, key: str = "max_action_change") -> float | None:
        """Largest action change any attack on this agent recorded in its cell info (convention)."""
        vals = [c["info"].get(key) for a, c in self.cells.items() if a != NATURAL]
        vals = [float(v) for v in vals if _is_number(v)]
        return max(vals) if vals else None


def _member_order(cell: dict[str, Any]) -> tuple:
    cfg = cell.get("attack_config", {})
    return (cfg.get("member", cfg.get("rank", cfg.get("search_seed", 0))), cell.get("cell_key", ""))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _under_budget(source: dict[str, Any]) -> str | None | bool:
    """The training-budget convention for learned attacks; False when `source` records none."""
    ts, ps = source.get("train_steps"), source.get("paper_steps")
    if _is_number(ts) and _is_number(ps):
        return f"{_steps(int(ts))} of {_steps(int(ps))} paper steps" if ts < ps else None
    budget = source.get("budget")
    if isinstance(budget, str):
        return f"budget {budget!r}" if budget != "paper" else None
    if isinstance(budget, dict):
        return _under_budget(budget)
    return False


def cell_flags(cell: dict[str, Any]) -> list[tuple[str, str]]:
    """Trust flags of one cell: (code, detail) pairs; see the module docstring for the rules."""
    out = []
    if cell["protocol"].get("deterministic", True) is False:
        out.append(("stochastic", "sampled actions"))
    if cell["episodes"] < MIN_EPISODES:
        out.append(("few-episodes", f"{cell['episodes']} episodes"))
    if cell["attack"] != NATURAL:
        verdict = _under_budget(cell["attack_config"])
        if verdict is False:
            verdict = _under_budget(cell["info"])
        if verdict:
            out.append(("under-budget", str(verdict)))
        change = cell["info"].get("max_action_change")
        if _is_number(change) and change <= 0.0:
            out.append(("action-unmoved", "max_action_change = 0"))
    return out


# ------------------------------------------------------------------------------------- boards
@dataclass
class Board:
    env: str
    eps: float
    protocol: dict[str, Any]
    departures: list[str]
    attacks: list[str]
    entries: list[Entry]
    published: list[PaperRow] | None = None  # set by compare_paper; never part of `entries`
    published_note: str = ""
    suite: str = ""  # the standard suite's id (version + fingerprint) the board is ranked by

    @property
    def ranked(self) -> list[Entry]:
        """The rows evaluated under the full suite, in rank order (the only ones compared)."""
        return [e for e in self.entries if e.rank is not None]

    @property
    def title(self) -> str:
        spec = get_env_spec(self.env)
        suite = self.suite if self.suite != AD_HOC else "ad-hoc attacks (not the standard suite)"
        return f"{spec.gym_id} — ε = {self.eps:g} — {self.protocol_label} — {suite}"

    @property
    def protocol_label(self) -> str:
        return "standard protocol" if not self.departures else "NON-STANDARD: " + "; ".join(self.departures)

    @property
    def subtitle(self) -> str:
        p = self.protocol
        mode = "deterministic actions" if p.get("deterministic", True) else "STOCHASTIC actions"
        return (f"{p['episodes']} episodes per cell, {mode}, seeds {p['base_seed']}…"
                f"{p['base_seed'] + p['episodes'] - 1}; ranked by worst-case return over "
                + (f"the {self.suite} attack suite" if self.suite != AD_HOC else
                   "the attacks evaluated (no row has the full standard suite: not comparable with standard "
                   "boards)")
                + " and the natural return; rows without every attack are listed unranked.")


def _steps(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def load_certificates(store: ResultsStore) -> list[dict[str, Any]]:
    """The store's certificates when it has that table (older stores do not): else []."""
    fn = getattr(store, "certificates", None)
    if not callable(fn):
        return []
    try:
        return list(fn())
    except sqlite3.Error:
        return []


def pick_certificate(certs: Sequence[dict[str, Any]], agent_id: str, sha256: str, eps: float) -> dict | None:
    """The tightest method stored for this checkpoint at this ε (crown, then crown-ibp, then ibp);
    among rows of one method, the one over the most states."""
    rows = [c for c in certs if c["agent_id"] == agent_id and c["agent_sha256"] == sha256
            and abs(float(c["eps"]) - eps) <= 1e-9 and c["method"] in CERT_PREFERENCE]
    if not rows:
        return None
    return min(rows, key=lambda c: (CERT_PREFERENCE.index(c["method"]), -int(c["states"]), float(c["threshold"])))


AD_HOC = "ad hoc"
"""The suite label of a board on which no row has the full standard suite (see build_boards)."""


def _add_member(target: dict[str, dict[str, Any]], cell: dict[str, Any]) -> None:
    """A scan (robust Sarsa's Q grid, SA-RL's adversary grid, `targeted`'s ranks, ...) stores one
    cell per member under one attack name; the attack's result is the minimum over them."""
    previous = target.get(cell["attack"])
    members = [cell] + (previous["scan_members"] if previous is not None else [])
    target[cell["attack"]] = dict(min(members, key=lambda c: c["mean"]), scan_members=members)


def build_boards(store: ResultsStore) -> list[Board]:
    """One board per (env, protocol). A board on which at least one row was evaluated under every cell
    of a standard suite is a **standard board**, ranked by the newest released suite (robbench.suite)
    that some row has in full — the current one once any row has it, an older version until then, its
    id in the title: only that suite's cells enter the worst case, rows with the full suite are ranked,
    the others are listed below them unranked, and every other cell (other attacks or settings) counts
    only towards "best known". A board on which no row has any full suite (a quick look, the demo) is
    an **ad-hoc board**, labelled so: every cell counts and rows that lack an attack some other row has
    are unranked."""
    from robbench.store import canonical_json
    from robbench.suite import released

    member_configs: dict[tuple[str, str, float], set[str]] = {}

    def in_suite(suite, cell) -> bool:
        key = (suite.id, cell["attack"], float(cell["protocol"]["eps"]))
        if cell["attack"] not in suite.attacks:
            return False
        if key not in member_configs:
            member_configs[key] = suite.member_configs(*key[1:])
        return canonical_json(cell["attack_config"]) in member_configs[key]

    agents = {a.agent_id: a for a in store.agents()}
    critic_less = {aid for aid, a in agents.items() if a.meta.get("has_critic") is False}
    certs = load_certificates(store)
    groups: dict[tuple, dict[str, tuple[Entry, list[dict]]]] = {}
    protocols: dict[tuple, dict] = {}
    for cell in store.cells():
        agent = agents.get(cell["agent_id"])
        if agent is None or cell["agent_sha256"] != agent.sha256:
            continue  # results of a checkpoint since retrained: not shown
        proto = cell["protocol"]
        key = (cell["env"], proto["eps"], proto["episodes"], proto["base_seed"], proto["deterministic"])
        protocols[key] = proto
        entry, raw = groups.setdefault(key, {}).setdefault(agent.agent_id, (
            Entry(agent.agent_id, agent.method, agent.seed, agent.preset, agent.steps, sha256=agent.sha256), []))
        raw.append(dict(cell, returns=[e["ret"] for e in store.episodes(cell["cell_key"])]))
    from robbench.registry import get_attack

    def not_applicable(entry: Entry, names) -> list[str]:
        """Members an agent without a critic cannot be attacked by (they are skipped, never run on zeros)."""
        return [a for a in names if entry.agent_id in critic_less and get_attack(a).needs_critic]

    boards = []
    for key in sorted(groups):
        env, eps = key[0], key[1]
        pairs = list(groups[key].values())
        standard = False
        for suite in released():  # newest first
            counts = suite.cell_counts(eps)
            suite_configs = [{a: {canonical_json(c["attack_config"]) for c in raw
                                  if c["attack"] == a and in_suite(suite, c)} for a in suite.attacks}
                             for _, raw in pairs]
            if any(all(len(have[a]) >= counts[a] or a in not_applicable(e, [a]) for a in suite.attacks)
                   for (e, _), have in zip(pairs, suite_configs)):
                standard = True
                break
        if not standard:
            from robbench.suite import get_suite

            suite = get_suite()
        for (e, raw), have in zip(pairs, suite_configs):
            for cell in raw:
                _add_member(e.cells if (not standard or in_suite(suite, cell)) else e.extra_cells, cell)
            e.certificate = pick_certificate(certs, e.agent_id, e.sha256, eps)
            if standard:
                e.not_applicable = not_applicable(e, suite.attacks)
                e.missing = [a for a in suite.attacks if len(have[a]) < counts[a] and a not in e.not_applicable]
        entries = [e for e, _ in pairs]
        if standard:
            attacks = [a for a in suite.attacks if any(a in e.cells for e in entries)]  # the suite's order
        else:
            present = {a for e in entries for a in e.cells}
            order = {a: i for i, a in enumerate(suite.attacks)}
            attacks = sorted(present, key=lambda a: (order.get(a, len(order)), a))
            for e in entries:
                e.not_applicable = not_applicable(e, attacks)
                e.missing = [a for a in attacks if a not in e.cells and a not in e.not_applicable]
        for e in entries:
            e.board_attacks = attacks
        entries.sort(key=lambda e: (bool(e.missing), _rank_key(e)))
        for rank, e in enumerate((e for e in entries if not e.missing), 1):
            e.rank = rank
        proto = protocols[key]
        departures = Protocol(**proto).departures(env)
        boards.append(Board(env, eps, proto, departures, attacks, entries, suite=suite.id if standard else AD_HOC))
    return boards


def _rank_key(e: Entry) -> tuple:
    worst = e.worst
    nat = e.natural
    return (-(worst[0] if worst else -math.inf), -(nat if nat is not None else -math.inf), e.agent_id)


def _fmt(cell: dict | None) -> str:
    return "—" if cell is None else f"{cell['mean']:.0f} ± {cell['std']:.0f}"


def _fmt_cert(cert: dict | None) -> str:
    if cert is None:
        return "—"
    return f"{cert['mean_dev']:.3g} / {cert['max_dev']:.3g} ({cert['method']})"


def _fmt_flags(e: Entry) -> str:
    parts = []
    for code, attacks in e.flags():
        parts.append(FLAG_LABELS[code] + (f" ({', '.join(_attack_name(a) for a in attacks)})" if attacks else ""))
    return "⚠ " + "; ".join(parts) if parts else ""


def _attack_name(a: str) -> str:
    return "natural" if a == NATURAL else a


def board_rows(board: Board) -> list[dict[str, Any]]:
    """Flat rows (one per agent) with the board's numbers; shared by every output format."""
    rows = []
    for e in board.entries:
        worst = e.worst
        row: dict[str, Any] = {
            "rank": e.rank, "suite": board.suite, "complete": not e.missing, "missing_attacks": e.missing,
            "not_applicable_attacks": e.not_applicable, "agent": e.agent_id, "method": e.method, "seed": e.seed, "preset": e.preset,
            "train_steps": e.steps,
        }
        for a in board.attacks:
            c = e.cells.get(a)
            row[f"{a}_mean"] = c["mean"] if c else None
            row[f"{a}_std"] = c["std"] if c else None
        row["worst_mean"] = worst[0] if worst else None
        row["worst_attack"] = worst[1] if worst else None
        row["worst_member"] = e.worst_member or None
        row["worst_case_robustness"] = e.robustness
        best = e.best_known
        row["best_known_mean"] = best[0] if best else None
        row["best_known_attack"] = best[1] if best else None
        row["converged"] = e.converged
        row["worst_by_budget"] = [{"budget_fraction": f, "worst_mean": w} for f, w in e.budget_curve()]
        cert = e.certificate
        row["certified_method"] = cert["method"] if cert else None
        row["certified_mean_dev"] = cert["mean_dev"] if cert else None
        row["certified_max_dev"] = cert["max_dev"] if cert else None
        row["flags"] = [code for code, _ in e.flags()]
        rows.append(row)
    return rows


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


def representatives(board: Board) -> dict[tuple[str, str], tuple[Entry, str]]:
    """Per (method, preset): its only agent, or its median agent by worst-case return."""
    groups: dict[tuple[str, str], list[Entry]] = {}
    for e in board.ranked:
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


def significance(board: Board) -> Significance | None:
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
    for g, (rep, selection) in sorted(representatives(board).items(), key=lambda kv: _rank_key(kv[1][0])):
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


def seed_aggregates(board: Board) -> list[SeedAggregate]:
    """Per (method, preset): median agent, IQM with stratified bootstrap CIs over seeds (rliable)."""
    reps = representatives(board)
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


PAPER_CSV = Path(__file__).parent / "data" / "paper_results.csv"
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


def paper_ranking(board: Board) -> PaperRanking | None:
    """Compare our method ranking with the published one (None without published rows or overlap)."""
    if not board.published:
        return None
    by_method: dict[str, list[SeedAggregate]] = {}
    for agg in seed_aggregates(board):
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


def _published_intro(b: Board) -> str:
    return ("BARPO paper (ICLR 2026) Tables 1-4: median agents over 17 seeds on gym "
            f"`*-v2` / MuJoCo 1.5, while ours run on gymnasium `{get_env_spec(b.env).gym_id}` — expect "
            "differences. Shown for reference only, never ranked with ours.")


# ----------------------------------------------------------------------------------- helpers
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


def _attack_note(cell: dict) -> str:
    cfg = {k: v for k, v in cell["attack_config"].items() if k != "eps"}
    if not cfg:
        return ""
    note = f"{cell['attack']}: " + ", ".join(f"{k}={v}" for k, v in sorted(cfg.items()))
    n = len(cell.get("scan_members", [cell]))
    return note + (f" (the minimum over {n} evaluated scan members)" if n > 1 else "")


def _group_label(g: tuple[str, str]) -> str:
    return f"{g[0]} ({g[1]})"


def _board_notes(b: Board) -> list[str]:
    notes = sorted({_attack_note(c) for e in b.entries for a, c in e.cells.items() if a != NATURAL} - {""})
    out = []
    if notes:
        out.append("Attack settings:\n" + "\n".join(f"- {n}" for n in notes))
    spec = get_env_spec(b.env)
    if spec.note:
        out.append(f"Note: {spec.note}.")
    training = training_notes(b)
    if training:
        out.append("Training departures from the reference code (docs/departures.md): " + "; ".join(training) + ".")
    return out


def training_notes(b: Board) -> list[str]:
    """The `board_notes` of every trainer with an agent on the board, for the board's env or all envs."""
    from robbench.registry import trainers

    known = trainers()
    notes: list[str] = []
    for method in sorted({e.method for e in b.entries}):
        cls = known.get(method)
        for key in (b.env, "*"):
            note = getattr(cls, "board_notes", {}).get(key) if cls is not None else None
            if note and note not in notes:
                notes.append(note)
    return notes


def _flag_legend(b: Board) -> list[str]:
    codes = [c for c in FLAG_LABELS if any(c == code for e in b.entries for code, _ in e.flags())]
    return [f"{FLAG_LABELS[c]} — {FLAG_TEXT[c]}" for c in codes]


def _cell_text(e: Entry, a: str) -> str:
    if a in e.not_applicable and a not in e.cells:
        return "n/a (no critic)"
    text = _fmt(e.cells.get(a))
    return text + " ⚠" if e.cell_flags(a) else text


SIG_INTRO = ("Agent against agent (not method against method: that comparison uses training seeds as the unit, "
             "in the paper-ranking section): each method's agent (its median agent by worst-case return when it "
             "has several seeds) against the top-ranked entry, on per-episode returns of those two agents: worst case = each agent's own worst-case attack. "
             "p-values Holm-adjusted across the comparisons of this table, separately for Welch's t and "
             "Mann-Whitney U; effect sizes Hedges' g and rank-biserial r (> 0: this agent higher); "
             "means with 95 % BCa bootstrap CIs.")
AGG_INTRO = ("Per method and budget preset, over training seeds: the median agent by worst-case return "
             "(the papers' selection rule), interquartile mean (IQM) of worst-case and natural returns with "
             "95 % stratified bootstrap CIs (rliable), and the probability that a seed of this method beats "
             "a seed of the best method on worst-case return.")


# ---------------------------------------------------------------------------------- markdown
def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return out


COLUMNS_NOTE = ("Columns: each attack's mean ± std over the episodes (a scan: its lowest member); **worst** = the "
                "lowest of the natural return and every suite cell, with the member that set it; **worst-case "
                "robustness** = (worst − natural) / natural, between −1 and 0, closer to 0 is more robust; "
                "**best known** = the lowest mean ever recorded for the agent at this protocol under any attack, "
                "in the suite or not; **certified action dev.** = the auto-LiRPA bound on max_i |μ_i(ŝ) − μ_i(s)| "
                "over the ball, mean / max over sampled states.")


def board_header(b: Board) -> list[str]:
    return (["#", "agent", "method", "seed", "budget"] + [_attack_name(a) for a in b.attacks]
            + ["worst", "worst-case robustness", "best known", "certified action dev. mean / max", "flags"])


def _rank_text(e: Entry) -> str:
    return str(e.rank) if e.rank is not None else "—"


def _worst_text(e: Entry) -> str:
    worst = e.worst
    return f"{worst[0]:.0f} ({e.worst_member})" if worst else "—"


def _best_known_text(e: Entry) -> str:
    best, worst = e.best_known, e.worst
    if best is None:
        return "—"
    if worst is not None and best[0] >= worst[0]:
        return "= worst"
    return f"{best[0]:.0f} ({_attack_name(best[1])})"


def board_cells(b: Board) -> list[list[str]]:
    rows = []
    for e in b.entries:
        rob = e.robustness
        cells = [_rank_text(e), f"`{e.agent_id}`", e.method, str(e.seed), e.budget()]
        cells += [_cell_text(e, a) for a in b.attacks]
        cells.append(_worst_text(e))
        cells.append(f"{rob:+.3f}" if rob is not None else "—")
        cells.append(_best_known_text(e))
        cells.append(_fmt_cert(e.certificate))
        cells.append(_fmt_flags(e))
        rows.append(cells)
    return rows


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


def to_markdown(boards: list[Board]) -> str:
    if not boards:
        return "_No results yet: run `robbench train` and `robbench evaluate` first._\n"
    out = []
    for b in boards:
        out.append(f"### {b.title}\n")
        out.append(b.subtitle + "\n")
        out.append(COLUMNS_NOTE + "\n")
        out += _md_table(board_header(b), board_cells(b))
        legend = _flag_legend(b)
        if legend:
            out.append("\n⚠ marks results that cannot be fully trusted: " + "; ".join(legend) + ".")
        for note in _board_notes(b):
            out.append("\n" + note)
        if b.published is not None:
            out.append(f"\n#### {PAPER_LABEL} — not ranked\n")
            out.append(_published_intro(b) + "\n")
            if b.published:
                out += _md_table(published_header(), published_cells(b))
            else:
                out.append(f"_{b.published_note}._")
            pr = paper_ranking(b)
            if pr:
                out.append("\n#### Our ranking against the paper's\n")
                out.append(RANKING_INTRO + "\n")
                out += _md_table(ranking_header(), ranking_cells(pr))
                out.append("")
                out += _md_table(claims_header(), claims_cells(pr))
                out.append("\n" + ranking_summary(pr))
        sig = significance(b)
        out.append(f"\n#### Significance against the top entry{f' `{sig.top.agent_id}`' if sig else ''}\n")
        out.append(SIG_INTRO + "\n")
        if sig and sig.comparisons:
            out += _md_table(significance_header(), significance_cells(sig))
        else:
            out.append("_Only one method on this board: nothing to compare._")
        aggs = seed_aggregates(b)
        out.append("\n#### Across training seeds\n")
        out.append(AGG_INTRO + "\n")
        out += _md_table(aggregate_header(), aggregate_cells(aggs))
        out.append("")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------- csv
def to_csv(boards: list[Board]) -> str:
    buf = io.StringIO()
    rows = []
    for b in boards:
        proto = "standard" if not b.departures else "; ".join(b.departures)
        for row, e in zip(board_rows(b), b.entries):
            flat = {"source": OURS_LABEL, "env": b.env, "eps": b.eps, "protocol": proto}
            flat.update(row)
            flat["flags"] = " ".join(row["flags"])
            flat["missing_attacks"] = " ".join(row["missing_attacks"])  # lists are space-separated, like flags
            flat["not_applicable_attacks"] = " ".join(row["not_applicable_attacks"])
            flat["worst_by_budget"] = " ".join(f"{p['budget_fraction']:g}:{p['worst_mean']:.6f}"
                                               for p in row["worst_by_budget"])
            for a in b.attacks:
                c = e.cells.get(a)
                flat[f"{a}_returns"] = " ".join(f"{r:.6f}" for r in c["returns"]) if c else ""
            rows.append(flat)
        for r in b.published or []:
            rows.append({**r.to_record(), "rank": "", "protocol": "paper (gym v2)"})
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


# -------------------------------------------------------------------------------------- json
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
        sig = significance(b)
        aggs = {(a.method, a.preset): a for a in seed_aggregates(b)}
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
        pr = paper_ranking(b)
        if pr:
            records.append(ranking_json(pr, b))
    return json.dumps(records, indent=2, sort_keys=False) + "\n"


# ------------------------------------------------------------------------------------- latex
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_UNICODE = {"±": "$\\pm$", "—": "---", "–": "--", "ε": "$\\epsilon$", "⚠": "$^\\dagger$",
                  "≥": "$\\geq$", "≤": "$\\leq$", "≠": "$\\neq$", "μ": "$\\mu$", "σ": "$\\sigma$",
                  "Σ": "$\\Sigma$", "ŝ": "$\\hat{s}$", "·": "$\\cdot$", "×": "$\\times$", "−": "-", "…": "\\ldots{}",
                  "<": "$<$", ">": "$>$", "`": ""}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and spell out the Unicode the boards use; the result is pure ASCII
    (any other non-ASCII character is transliterated or dropped), so pdflatex needs no inputenc."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    for k, v in _LATEX_UNICODE.items():
        out = out.replace(k, v)
    if not out.isascii():
        out = unicodedata.normalize("NFKD", out).encode("ascii", "ignore").decode("ascii")
    return out


def _latex_table(caption: str, header: list[str], rows: list[list[str]], align: str) -> list[str]:
    out = ["\\begin{table}[ht]", "\\centering", "\\scriptsize", f"\\caption{{{latex_escape(caption)}}}",
           f"\\begin{{tabular}}{{{align}}}", "\\hline",
           " & ".join(latex_escape(h) for h in header) + " \\\\", "\\hline"]
    out += [" & ".join(latex_escape(c) for c in r) + " \\\\" for r in rows]
    out += ["\\hline", "\\end{tabular}", "\\end{table}", ""]
    return out


def to_latex(boards: list[Board]) -> str:
    """Plain `tabular` fragments (no package needed): \\input them into a document."""
    out = ["% robbench leaderboards. Plain LaTeX tabulars, no packages needed; $^\\dagger$ marks flagged results.", ""]
    if not boards:
        return "\n".join(out + ["% No results yet."]) + "\n"
    for b in boards:
        n_att = len(b.attacks)
        out += _latex_table(f"{b.title}. {b.subtitle}", board_header(b), board_cells(b),
                            "rllrl" + "r" * n_att + "rrrll")  # worst, robustness, best known, cert, flags
        legend = _flag_legend(b)
        if legend:
            out += ["% flags: " + latex_escape("; ".join(legend)), ""]
        if b.published:
            out += _latex_table(f"{PAPER_LABEL}, {get_env_spec(b.env).gym_id} (gym v2 in the paper), "
                                f"ε = {b.eps:g}. Not ranked with ours.", published_header(), published_cells(b),
                                "lll" + "r" * (len(PAPER_ATTACKS) + 3))
        sig = significance(b)
        if sig and sig.comparisons:
            out += _latex_table(f"Significance against the top entry {sig.top.agent_id}, {b.env}, ε = {b.eps:g}. "
                                "Holm-adjusted p-values.", significance_header(), significance_cells(sig),
                                "lllll" + "r" * 5)
        out += _latex_table(f"Across training seeds, {b.env}, ε = {b.eps:g}.", aggregate_header(),
                            aggregate_cells(seed_aggregates(b)), "lllrlll")
    return "\n".join(out) + "\n"


# -------------------------------------------------------------------------------------- html
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1400px;color:#222;
padding:0 1em;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.3em;border-bottom:2px solid #ddd;padding-bottom:.2em;
margin-top:2.2em}h3{font-size:1.05em;margin-top:1.6em}
.sub{color:#555;font-size:.92em}.note{color:#555;font-size:.88em;margin:.4em 0}
table{border-collapse:collapse;font-size:.84em;margin:.6em 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}
th{white-space:normal;vertical-align:bottom;min-width:3em}.scroll{overflow-x:auto;max-width:100%}
th{background:#f3f4f6;position:sticky;top:0}
td.l,th.l{text-align:left}tr:nth-child(even) td{background:#fafafa}
td.flag{background:#fff4d6 !important}td.flags{color:#8a5300;text-align:left;white-space:normal;min-width:10em;
max-width:22em}
td.worst{font-weight:600}
table.published td{color:#555;font-style:italic;background:#f6f7fb}
.badge{display:inline-block;background:#e8eaf6;color:#303f9f;border-radius:3px;padding:1px 6px;font-size:.8em}
.warn{background:#fff4d6;border-left:4px solid #e0a800;padding:.4em .8em;font-size:.88em}
.plots{display:flex;flex-wrap:wrap;gap:1em}.plots figure{margin:0}figcaption{font-size:.82em;color:#555;
max-width:560px}
img{max-width:100%;height:auto;border:1px solid #eee}
nav a{margin-right:1em}
"""


def _color_map(names: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"] if len(names) <= 10 else colormaps["tab20"]
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def _method_colors(b: Board) -> dict[str, Any]:
    """One colour per method for every plot of a board (ours in rank order, then published-only ids)."""
    names = [e.method for e in b.entries] + [r.method_id for r in b.published or []]
    return _color_map(list(dict.fromkeys(names)))


def _png(fig) -> str:
    """Render a matplotlib Figure with the Agg canvas (no pyplot, no global backend) to base64 PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), layout="constrained")


def performance_profiles(b: Board) -> dict[str, tuple[list[float], list[float]]]:
    """Per method (ranked rows, all presets): the fraction of its training seeds whose worst case is
    ≥ τ, as a step function (rliable's performance profile, seeds as the unit): (τ, fraction) knots."""
    out = {}
    for agg in seed_aggregates(b):
        label = _group_label((agg.method, agg.preset))
        worsts = sorted(e.worst[0] for e in agg.entries)
        n = len(worsts)
        taus, fracs = [min(0.0, worsts[0])], [1.0]
        for i, w in enumerate(worsts):
            taus.append(w)
            fracs.append((n - i - 1) / n)  # strictly above w from here on (ties step once each)
        out[label] = (taus, fracs)
    return out


def plot_performance_profile(b: Board) -> str | None:
    """Fraction of each method's seeds with worst case ≥ τ against τ (one step per seed)."""
    profiles = performance_profiles(b)
    if not profiles:
        return None
    fig = _figure(8.4, 4.0)
    ax = fig.add_subplot()
    colors = _color_map(list(profiles))
    top = max(t[-1] for t, _ in profiles.values())
    for label, (taus, fracs) in profiles.items():
        ax.step(taus + [top * 1.05], fracs + [fracs[-1]], where="post", color=colors[label], linewidth=1.6,
                label=f"{label} ({len(taus) - 1} seeds)")
    ax.set_xlabel("τ (worst-case return)")
    ax.set_ylabel("fraction of seeds with worst case ≥ τ")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)  # beside, not over
    return _png(fig)


def plot_natural_vs_worst(b: Board) -> str | None:
    """The paper's Figure 5 view: natural (x) vs worst-case (y) return per agent, y = x line."""
    pts = [e for e in b.entries if e.natural is not None and e.worst is not None]
    if not pts:
        return None
    fig = _figure(7.6 if b.published else 6.4, 4.6)
    ax = fig.add_subplot()
    methods = list(dict.fromkeys(e.method for e in pts))
    colors = _method_colors(b)
    xs, ys = [], []
    for m in methods:
        es = [e for e in pts if e.method == m]
        x = [e.natural for e in es]
        y = [e.worst[0] for e in es]
        ax.errorbar(x, y, xerr=[e.cells[NATURAL]["std"] for e in es], yerr=[e.cells[e.worst[1]]["std"] for e in es],
                    fmt="o", color=colors[m], ecolor=colors[m], elinewidth=0.8, alpha=0.9, capsize=2,
                    label=f"{m} (ours)")
        xs += x
        ys += y
        if len(pts) <= 20:
            for e in es:
                ax.annotate(f"s{e.seed}", (e.natural, e.worst[0]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
    for r in b.published or []:
        ax.scatter([r.natural[0]], [r.worst[0]], marker="D", s=36, facecolors="none",
                   edgecolors=[colors[r.method_id]], linewidths=1.3, label=f"{r.display} (published)")
        xs.append(r.natural[0])
        ys.append(r.worst[0])
    lo, hi = min(xs + ys + [0.0]), max(xs + ys)
    pad = 0.06 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], ls="--", color="#999", lw=1, label="y = x (no loss)")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    ax.set_xlabel("natural return (mean ± std)")
    ax.set_ylabel("worst-case return (mean ± std)")
    ax.set_title(f"{get_env_spec(b.env).gym_id}, ε = {b.eps:g}: natural vs worst case", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: (not labels[i].endswith("(ours)"), "published" in labels[i]))
    legend = ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=7, loc="upper left",
                       bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                       title="filled: ours\nhollow: " + PAPER_LABEL.replace(", ", ",\n") if b.published else None,
                       title_fontsize=7)
    legend.set_frame_on(False)
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_per_attack(b: Board) -> tuple[str, str] | None:
    """Box plots of per-episode returns per attack; one box per agent (per method's representative
    when the board has more than 8 agents)."""
    shown = b.entries
    note = "one box per agent"
    if len(shown) > 8:
        reps = representatives(b)
        shown = [e for e, _ in sorted(reps.values(), key=lambda t: _rank_key(t[0]))]
        note = "one box per method (its median agent by worst case)"
    if not shown:
        return None
    fig = _figure(max(6.2, 1.1 * len(b.attacks) * max(1, len(shown)) * 0.35 + 2), 4.2)
    ax = fig.add_subplot()
    colors = _method_colors(b)
    width = 0.8 / len(shown)
    seen: set[str] = set()
    minor_pos: list[float] = []
    minor_lab: list[str] = []
    for j, e in enumerate(shown):
        data, pos = [], []
        for i, a in enumerate(b.attacks):
            c = e.cells.get(a)
            if c and c["returns"]:
                data.append(c["returns"])
                pos.append(i - 0.4 + width * (j + 0.5))
        if not data:
            continue
        minor_pos += pos
        minor_lab += [f"s{e.seed}"] * len(pos)
        bp = ax.boxplot(data, positions=pos, widths=width * 0.85, patch_artist=True, manage_ticks=False,
                        flierprops={"markersize": 2.5, "alpha": 0.6})
        for patch in bp["boxes"]:
            patch.set_facecolor(colors[e.method])
            patch.set_alpha(0.65)
        for med in bp["medians"]:
            med.set_color("black")
        if e.method not in seen:
            seen.add(e.method)
            ax.plot([], [], "s", color=colors[e.method], alpha=0.65, label=e.method)
    ax.set_xticks(range(len(b.attacks)), [_attack_name(a) for a in b.attacks])
    if len(minor_pos) <= 60:  # label each box with its agent's seed; the colour gives the method
        ax.set_xticks(minor_pos, minor_lab, minor=True, fontsize=6, color="#555")
        ax.tick_params(axis="x", which="major", pad=12, length=0)
    ax.set_xlim(-0.6, len(b.attacks) - 0.4)
    ax.set_ylabel("episode return")
    ax.set_title(f"{get_env_spec(b.env).gym_id}, ε = {b.eps:g}: per-episode returns per attack", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig), note


def plot_certified_vs_empirical(b: Board) -> str | None:
    """Certified bound on max_i |Δμ_i| (x) vs the largest change an attack produced (y), per agent."""
    es = [e for e in b.entries if e.certificate is not None]
    if not es:
        return None
    fig = _figure(6.2, 4.6)
    ax = fig.add_subplot()
    colors = _method_colors(b)
    have_emp = False
    labels: dict[tuple[float, float], list[Entry]] = {}
    top = 0.0
    for e in es:
        cert = e.certificate
        emp = e.empirical_action_change("max_action_change")
        emp_mean = e.empirical_action_change("mean_action_change")
        c = colors[e.method]
        if emp is not None:
            have_emp = True
            ax.scatter([cert["max_dev"]], [emp], color=c, marker="^", s=40)
            top = max(top, emp)
        if emp_mean is not None:
            have_emp = True
            ax.scatter([cert["mean_dev"]], [emp_mean], color=c, marker="o", s=30)
            top = max(top, emp_mean)
        if emp is None and emp_mean is None:
            ax.axvline(cert["max_dev"], color=c, lw=1, alpha=0.7)
        labels.setdefault((cert["max_dev"], emp or 0.0), []).append(e)
        top = max(top, cert["max_dev"])
    for xy, group in labels.items():  # one label per point, however many agents share it
        by_method: dict[str, list[str]] = {}
        for e in group:
            by_method.setdefault(f"{e.method} ({e.certificate['method']})", []).append(f"s{e.seed}")
        text = "; ".join(f"{m.split(' ')[0]} {','.join(seeds)} {m.split(' ')[1]}" for m, seeds in by_method.items())
        ax.annotate(text, xy, fontsize=7, xytext=(3, 3), textcoords="offset points")
    top = top * 1.1 or 1.0
    ax.plot([0, top], [0, top], ls="--", color="#999", lw=1, label="y = x (bound met exactly)")
    ax.scatter([], [], marker="^", color="#555", label="max over states: certified vs attacks")
    ax.scatter([], [], marker="o", color="#555", label="mean over states (when recorded)")
    if not have_emp:
        ax.plot([], [], color="#555", label="certified max (no attack recorded max_action_change)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("certified max_i |μ_i(ŝ) − μ_i(s)| over the ε-ball")
    ax.set_ylabel("empirical action change under attack")
    ax.set_title(f"{get_env_spec(b.env).gym_id}, ε = {b.eps:g}: certified vs empirical action deviation",
                 fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    return _png(fig)


def _h(text: Any) -> str:
    return html.escape(str(text))


def _html_table(header: list[str], rows: list[list[str]], cls: str = "", left: int = 1,
                cell_class: Callable[[int, int], str] | None = None, raw: bool = False,
                left_last: bool = False) -> str:
    """`left` first columns (and the last, with `left_last`) are left-aligned; `raw` cells are HTML."""
    def is_left(j: int) -> bool:
        return j < left or (left_last and j == len(header) - 1)

    out = [f'<div class="scroll"><table class="{cls}"><thead><tr>']
    out += [f'<th class="{"l" if is_left(j) else ""}">{_h(h)}</th>' for j, h in enumerate(header)]
    out.append("</tr></thead><tbody>")
    for i, r in enumerate(rows):
        out.append("<tr>")
        for j, c in enumerate(r):
            classes = ["l"] if is_left(j) else []
            if cell_class:
                classes.append(cell_class(i, j))
            text = c if raw else _h(c.replace("`", ""))
            out.append(f'<td class="{" ".join(x for x in classes if x)}">{text}</td>')
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _html_board(b: Board) -> str:
    header = board_header(b)
    first_attack = 5
    n_att = len(b.attacks)
    rows = []
    for e in b.entries:
        rob = e.robustness
        cells = [_rank_text(e), f"<code>{_h(e.agent_id)}</code>", _h(e.method), str(e.seed), _h(e.budget())]
        for a in b.attacks:
            flags = e.cell_flags(a)
            tip = "; ".join(f"{FLAG_LABELS[c]}: {d}" for c, d in flags)
            text = _h(_fmt(e.cells.get(a))) + (f' <span title="{_h(tip)}">⚠</span>' if flags else "")
            cells.append(text)
        cells.append(_h(_worst_text(e)))
        cells.append(f"{rob:+.3f}" if rob is not None else "—")
        cells.append(_h(_best_known_text(e)))
        cells.append(_h(_fmt_cert(e.certificate)))
        cells.append(_h(_fmt_flags(e)))
        rows.append(cells)

    def cell_class(i: int, j: int) -> str:
        e = b.entries[i]
        if first_attack <= j < first_attack + n_att and e.cell_flags(b.attacks[j - first_attack]):
            return "flag"
        if j == first_attack + n_att:
            return "worst"
        if j == len(header) - 1:
            return "flags"
        return ""

    return _html_table(header, rows, "board", left=3, cell_class=cell_class, raw=True, left_last=True)


def to_html(boards: list[Board]) -> str:
    """One self-contained page: boards as tables, plots as inline base64 PNGs, inline CSS."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>robbench leaderboards</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>robbench leaderboards</h1>",
             '<p class="sub">One board per (environment, ε, protocol); rows ranked by worst-case return '
             "(the minimum over attacks of the mean return over episodes). Worst-case robustness = "
             "(worst − natural) / natural. Certified action deviation: mean / max over sampled states of "
             "the certified bound on max<sub>i</sub> |μ<sub>i</sub>(ŝ) − μ<sub>i</sub>(s)| "
             "(tightest of CROWN, CROWN-IBP, IBP stored).</p>"]
    if not boards:
        parts.append("<p><em>No results yet: run <code>robbench train</code> and <code>robbench evaluate</code> "
                     "first.</em></p></body></html>")
        return "\n".join(parts) + "\n"
    parts.append("<nav>" + "".join(f'<a href="#board{i}">{_h(b.title)}</a>' for i, b in enumerate(boards)) + "</nav>")
    for i, b in enumerate(boards):
        parts.append(f'<h2 id="board{i}">{_h(b.title)}</h2>')
        parts.append(f'<p class="sub">{_h(b.subtitle)}</p>')
        parts.append(f'<p class="sub">{_h(COLUMNS_NOTE.replace("**", ""))}</p>')
        if b.departures:
            parts.append('<p class="warn">This board departs from the standard protocol: '
                         f'{_h("; ".join(b.departures))}.</p>')
        parts.append(_html_board(b))
        legend = _flag_legend(b)
        if legend:
            parts.append('<p class="warn">⚠ marks results that cannot be fully trusted:<br>'
                         + "<br>".join(_h(x) for x in legend) + "</p>")
        for note in _board_notes(b):
            head, *items = note.split("\n- ")
            parts.append(f'<p class="note">{_h(head)}</p>' if not items else
                         f'<div class="note">{_h(head)}<ul>' + "".join(f"<li>{_h(i)}</li>" for i in items)
                         + "</ul></div>")
        if b.published is not None:
            parts.append(f'<h3><span class="badge">{_h(PAPER_LABEL)}</span> — not ranked</h3>')
            parts.append(f'<p class="note">{_h(_published_intro(b).replace("`", ""))}</p>')
            if b.published:
                parts.append(_html_table(published_header(), published_cells(b), "published", left=3))
            else:
                parts.append(f'<p class="note"><em>{_h(b.published_note)}.</em></p>')
            pr = paper_ranking(b)
            if pr:
                parts.append("<h3>Our ranking against the paper's</h3>")
                parts.append(f'<p class="note">{_h(RANKING_INTRO)}</p>')
                parts.append(_html_table(ranking_header(), ranking_cells(pr), left=1))
                parts.append(_html_table(claims_header(), claims_cells(pr), left=1, left_last=True))
                parts.append(f'<p class="note">{_h(ranking_summary(pr))}</p>')

        parts.append("<h3>Plots</h3><div class=\"plots\">")
        profile = plot_performance_profile(b)
        if profile:
            parts.append(f'<figure><img alt="performance profile over training seeds" '
                         f'src="data:image/png;base64,{profile}"><figcaption>Performance profile over training '
                         "seeds: for each method, the fraction of its seeds whose worst case is at least τ "
                         "(ranked rows only). A curve above another at every τ dominates it; crossing curves "
                         "are not ordered by these seeds.</figcaption></figure>")
        fig5 = plot_natural_vs_worst(b)
        if fig5:
            parts.append(f'<figure><img alt="natural vs worst-case return" src="data:image/png;base64,{fig5}">'
                         "<figcaption>Natural vs worst-case return per agent (the paper's Figure 5 view). "
                         "Points far below the dashed y = x line lose much of their return under attack."
                         + (" Hollow diamonds: " + _h(PAPER_LABEL) + ", for reference." if b.published else "")
                         + "</figcaption></figure>")
        else:
            parts.append('<p class="note">No agent has both a natural and an attacked cell: no Figure-5 view.</p>')
        per_attack = plot_per_attack(b)
        if per_attack:
            parts.append(f'<figure><img alt="per-attack returns" src="data:image/png;base64,{per_attack[0]}">'
                         f"<figcaption>Per-episode returns under each attack ({_h(per_attack[1])}, in rank order, "
                         "labelled by seed; colour = method); box = quartiles, line = median, whiskers 1.5 IQR."
                         "</figcaption></figure>")
        cert_plot = plot_certified_vs_empirical(b)
        if cert_plot:
            parts.append(f'<figure><img alt="certified vs empirical action deviation" '
                         f'src="data:image/png;base64,{cert_plot}"><figcaption>Certified bound on the '
                         "action deviation vs the largest deviation any attack recorded (info "
                         "max_action_change). A sound bound keeps every point on or below y = x at the "
                         "certified states; attacks visit other states, so read it as a comparison of "
                         "magnitudes.</figcaption></figure>")
        else:
            parts.append('<p class="note">Certified vs empirical action deviation: no certificates for the agents '
                         "of this board (run <code>robbench certify</code>).</p>")
        parts.append("</div>")

        sig = significance(b)
        top_id = f" <code>{_h(sig.top.agent_id)}</code>" if sig else ""
        parts.append(f"<h3>Significance against the top entry{top_id}</h3>")
        parts.append(f'<p class="note">{_h(SIG_INTRO)}</p>')
        if sig and sig.comparisons:
            parts.append(_html_table(significance_header(), significance_cells(sig), left=4))
        else:
            parts.append('<p class="note"><em>Only one method on this board: nothing to compare.</em></p>')
        parts.append("<h3>Across training seeds</h3>")
        parts.append(f'<p class="note">{_h(AGG_INTRO)}</p>')
        parts.append(_html_table(aggregate_header(), aggregate_cells(seed_aggregates(b)), left=3))
    parts.append('<p class="note">Generated by robbench from the results store; raw per-episode returns: '
                 "<code>robbench report --format json</code>.</p></body></html>")
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------ render
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
