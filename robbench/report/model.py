"""The board model: results read from the store into boards (results as data, boards derived from them).

One board per (env, ε, protocol); one row (`Entry`) per agent: method, seed, training budget, natural
mean ± std, each attack's mean ± std, worst (and which attack set it), worst-case robustness
(protocol.md), the certified action deviation when `robbench certify` has stored one, and trust
flags. Rows are ranked by worst-case return. Every view of a board (robbench.report.analysis, the
outline and its renderers, the plots) reads this model and never the store.

Attack order: every view lists attacks in one order, the standard suite's (robbench.suite), with
attacks outside the suite after them by name (`attack_order`). The model applies it once, to the
board's columns and to each entry's cells, so no format sorts attacks on its own.

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

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from robbench.envs import get_env_spec
from robbench.evaluate import DEFAULT_EPISODES, Protocol
from robbench.store import ResultsStore

if TYPE_CHECKING:  # the paper comparison builds on this model, not the other way round
    from robbench.report.paper import PaperRow

NATURAL = "none"
RANDOM = "random"
MIN_EPISODES = DEFAULT_EPISODES
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
    "submitted": "submitted entry",
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
    "submitted": "a row read from a submitted entry file (robbench submit, report --entries): evaluated elsewhere, "
                 "its aggregates recomputed from the entry's per-episode returns, not re-run by this report",
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
    submitted: str | None = None  # the entry file a submitted row was read from (robbench.submit)
    config: dict[str, Any] = field(default_factory=dict)  # the checkpoint's recorded training config

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
            elif code == "submitted":
                if self.submitted:
                    out.append((code, []))
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
    return list(fn()) if callable(fn) else []


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
            Entry(agent.agent_id, agent.method, agent.seed, agent.preset, agent.steps, sha256=agent.sha256,
                  submitted=(agent.meta.get("submitted") or {}).get("file"),
                  config=agent.meta.get("config") or {}), []))
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
        for e in entries:  # the store lists cells by attack name: put them in the board's one order
            e.cells = {a: e.cells[a] for a in attack_order(e.cells, suite.attacks)}
            e.extra_cells = {a: e.extra_cells[a] for a in attack_order(e.extra_cells, suite.attacks)}
        if standard:
            attacks = [a for a in suite.attacks if any(a in e.cells for e in entries)]  # the suite's order
        else:
            attacks = attack_order({a for e in entries for a in e.cells}, suite.attacks)
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


def attack_order(names: Iterable[str], suite_attacks: Sequence[str]) -> list[str]:
    """The one attack order of every view: the suite's members in the suite's order (cheapest first),
    then attacks outside the suite by name, so a user's ad-hoc board reads like a published one."""
    order = {a: i for i, a in enumerate(suite_attacks)}
    return sorted(names, key=lambda a: (order.get(a, len(order)), a))


def _rank_key(e: Entry) -> tuple:
    worst = e.worst
    nat = e.natural
    return (-(worst[0] if worst else -math.inf), -(nat if nat is not None else -math.inf), e.agent_id)


def _group_label(g: tuple[str, str]) -> str:
    return f"{g[0]} ({g[1]})"


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


