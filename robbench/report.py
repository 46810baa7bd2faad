"""Leaderboards generated from the results store (results as data, boards derived from them).

One board per (env, ε, protocol); one row per agent: method, seed, training budget, natural
mean ± std, each attack's mean ± std, worst (and which attack set it), worst-case robustness
(protocol.md). Rows are ranked by worst-case return. Markdown for reading; CSV and JSON carry the
same numbers plus every per-episode return.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

from robbench.envs import get_env_spec
from robbench.evaluate import Protocol
from robbench.store import ResultsStore

FORMATS = ("markdown", "csv", "json")
NATURAL = "none"


@dataclass
class Entry:
    """One agent on one board."""

    agent_id: str
    method: str
    seed: int
    preset: str
    steps: int
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)  # attack -> cell (+ "returns")

    @property
    def natural(self) -> float | None:
        cell = self.cells.get(NATURAL)
        return cell["mean"] if cell else None

    @property
    def worst(self) -> tuple[float, str] | None:
        """Minimum over the attacks evaluated (the natural return is not an attack)."""
        attacked = [(c["mean"], a) for a, c in self.cells.items() if a != NATURAL]
        return min(attacked) if attacked else None

    @property
    def robustness(self) -> float | None:
        worst, nat = self.worst, self.natural
        if worst is None or nat is None or nat == 0:
            return None
        return (worst[0] - nat) / abs(nat)

    def budget(self) -> str:
        return f"{self.preset} ({_steps(self.steps)} steps)"


@dataclass
class Board:
    env: str
    eps: float
    protocol: dict[str, Any]
    departures: list[str]
    attacks: list[str]
    entries: list[Entry]

    @property
    def title(self) -> str:
        spec = get_env_spec(self.env)
        label = "standard protocol" if not self.departures else "NON-STANDARD: " + "; ".join(self.departures)
        return f"{spec.gym_id} — ε = {self.eps:g} — {label}"


def _steps(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def build_boards(store: ResultsStore) -> list[Board]:
    agents = {a.agent_id: a for a in store.agents()}
    groups: dict[tuple, dict[str, Entry]] = {}
    protocols: dict[tuple, dict] = {}
    for cell in store.cells():
        agent = agents.get(cell["agent_id"])
        if agent is None or cell["agent_sha256"] != agent.sha256:
            continue  # results of a checkpoint since retrained: not shown
        proto = cell["protocol"]
        key = (cell["env"], proto["eps"], proto["episodes"], proto["base_seed"], proto["deterministic"])
        protocols[key] = proto
        entries = groups.setdefault(key, {})
        entry = entries.setdefault(
            agent.agent_id, Entry(agent.agent_id, agent.method, agent.seed, agent.preset, agent.steps)
        )
        cell = dict(cell)
        cell["returns"] = [e["ret"] for e in store.episodes(cell["cell_key"])]
        entry.cells[cell["attack"]] = cell
    boards = []
    for key in sorted(groups):
        env, eps = key[0], key[1]
        entries = list(groups[key].values())
        attacks = sorted({a for e in entries for a in e.cells}, key=lambda a: (a != NATURAL, a))
        entries.sort(key=_rank_key)
        proto = protocols[key]
        departures = Protocol(**proto).departures(env)
        boards.append(Board(env, eps, proto, departures, attacks, entries))
    return boards


def _rank_key(e: Entry) -> tuple:
    worst = e.worst
    nat = e.natural
    return (-(worst[0] if worst else -math.inf), -(nat if nat is not None else -math.inf), e.agent_id)


def _fmt(cell: dict | None) -> str:
    return "—" if cell is None else f"{cell['mean']:.0f} ± {cell['std']:.0f}"


def board_rows(board: Board) -> list[dict[str, Any]]:
    """Flat rows (one per agent) with the board's numbers; shared by every output format."""
    rows = []
    for rank, e in enumerate(board.entries, 1):
        worst = e.worst
        row: dict[str, Any] = {
            "rank": rank, "agent": e.agent_id, "method": e.method, "seed": e.seed, "preset": e.preset,
            "train_steps": e.steps,
        }
        for a in board.attacks:
            c = e.cells.get(a)
            row[f"{a}_mean"] = c["mean"] if c else None
            row[f"{a}_std"] = c["std"] if c else None
        row["worst_mean"] = worst[0] if worst else None
        row["worst_attack"] = worst[1] if worst else None
        row["worst_case_robustness"] = e.robustness
        rows.append(row)
    return rows


def to_markdown(boards: list[Board]) -> str:
    if not boards:
        return "_No results yet: run `robbench train` and `robbench evaluate` first._\n"
    out = []
    for b in boards:
        header = ["#", "agent", "method", "seed", "budget"] + [
            "natural" if a == NATURAL else a for a in b.attacks
        ] + ["worst", "worst-case robustness"]
        out.append(f"### {b.title}\n")
        out.append(f"{b.protocol['episodes']} episodes per cell, deterministic actions, seeds "
                   f"{b.protocol['base_seed']}…{b.protocol['base_seed'] + b.protocol['episodes'] - 1}; "
                   f"ranked by worst-case return.\n")
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join(["---"] * len(header)) + "|")
        for rank, e in enumerate(b.entries, 1):
            worst = e.worst
            rob = e.robustness
            cells = [str(rank), f"`{e.agent_id}`", e.method, str(e.seed), e.budget()]
            cells += [_fmt(e.cells.get(a)) for a in b.attacks]
            cells.append(f"{worst[0]:.0f} ({worst[1]})" if worst else "—")
            cells.append(f"{rob:+.3f}" if rob is not None else "—")
            out.append("| " + " | ".join(cells) + " |")
        notes = sorted({_attack_note(c) for e in b.entries for a, c in e.cells.items() if a != NATURAL} - {""})
        if notes:
            out.append("\nAttack settings: " + "; ".join(notes) + ".")
        spec = get_env_spec(b.env)
        if spec.note:
            out.append(f"\nNote: {spec.note}.")
        out.append("")
    return "\n".join(out) + "\n"


def _attack_note(cell: dict) -> str:
    cfg = {k: v for k, v in cell["attack_config"].items() if k != "eps"}
    if not cfg:
        return ""
    return f"{cell['attack']}: " + ", ".join(f"{k}={v}" for k, v in sorted(cfg.items()))


def to_csv(boards: list[Board]) -> str:
    buf = io.StringIO()
    rows = []
    for b in boards:
        for row, e in zip(board_rows(b), b.entries):
            flat = {"env": b.env, "eps": b.eps, "protocol": "standard" if not b.departures else "; ".join(b.departures)}
            flat.update(row)
            for a in b.attacks:
                c = e.cells.get(a)
                flat[f"{a}_returns"] = " ".join(f"{r:.6f}" for r in c["returns"]) if c else ""
            rows.append(flat)
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_json(boards: list[Board]) -> str:
    """One record per (board, agent), RobustBench-style, raw per-episode returns included."""
    records = []
    for b in boards:
        for row, e in zip(board_rows(b), b.entries):
            records.append({
                "env": b.env, "gym_id": get_env_spec(b.env).gym_id, "eps": b.eps, "protocol": b.protocol,
                "protocol_departures": b.departures, **row,
                "attacks": {
                    a: {"mean": c["mean"], "std": c["std"], "min": c["min"], "max": c["max"],
                        "episodes": c["episodes"], "config": c["attack_config"], "returns": c["returns"],
                        "code_version": c["info"].get("code_version")}
                    for a, c in e.cells.items()
                },
            })
    return json.dumps(records, indent=2, sort_keys=False) + "\n"


def render(store: ResultsStore, fmt: str) -> str:
    boards = build_boards(store)
    return {"markdown": to_markdown, "csv": to_csv, "json": to_json}[fmt](boards)
