"""Attack-cost benchmark (run by hand, not in the test suite).

In one process: a natural evaluation of 50 Hopper episodes (one batch, protocol ε and seeds), then
the same agent under `random`, `critic` and `mad`. For each: wall time, env steps, wall per env step,
the time spent inside `Attack.perturb` (per call = per env step of the whole live batch, and per
attacked state), and the ratios to the natural evaluation. Target: MAD/natural wall ≤ 3×.

Attacked episodes can end earlier than natural ones, so besides the raw wall ratio the table shows
the ratio of wall time per env step, which compares equal amounts of work.

    python benchmarks/bench_attacks.py --agent PATH.safetensors [--episodes 50] [--json OUT]

Prints a markdown table and writes benchmarks/results/attacks.json (or --json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

ATTACKS = ("none", "random", "critic", "mad")
DEFAULT_JSON = Path(__file__).parent / "results" / "attacks.json"


class TimedAttack:
    """Wraps an attack to add up the wall time of its `perturb` calls (the evaluator is unchanged)."""

    def __init__(self, attack):
        self.attack, self.seconds, self.calls, self.states = attack, 0.0, 0, 0

    def __getattr__(self, name):
        return getattr(self.attack, name)

    def perturb(self, victim, states, gen):
        start = time.perf_counter()
        out = self.attack.perturb(victim, states, gen)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.states += states.shape[0]
        return out


def load(agent_path: str | None):
    from robbench.checkpoint import load_agent_file

    if agent_path:
        return load_agent_file(agent_path, expected_env="hopper"), agent_path
    from robbench.ppo import PPOConfig, PPOCore

    agent = PPOCore(PPOConfig.for_env("hopper", preset="smoke")).agent({"agent_id": "bench", "env": "hopper"})
    return agent, "untrained smoke agent (short episodes: not representative)"


def bench(agent, episodes: int) -> list[dict]:
    from robbench.evaluate import Protocol, evaluate
    from robbench.registry import get_attack

    protocol = Protocol.for_env("hopper", episodes=episodes)
    rows = []
    for name in ATTACKS:
        attack = TimedAttack(get_attack(name)(protocol.eps))
        res = evaluate(agent, attack, protocol)
        rows.append({
            "attack": name, "config": attack.config(), "mean_return": round(res.mean, 1),
            "std_return": round(res.std, 1), "env_steps": res.env_steps, "wall_s": round(res.wall_s, 3),
            "us_per_env_step": round(1e6 * res.wall_s / res.env_steps, 2),
            "perturb_calls": attack.calls, "perturb_s": round(attack.seconds, 3),
            "perturb_ms_per_call": round(1e3 * attack.seconds / max(attack.calls, 1), 3),
            "perturb_us_per_state": round(1e6 * attack.seconds / max(attack.states, 1), 2),
        })
    natural = rows[0]
    for row in rows:
        row["wall_vs_natural"] = round(row["wall_s"] / natural["wall_s"], 2)
        row["per_step_vs_natural"] = round(row["us_per_env_step"] / natural["us_per_env_step"], 2)
    return rows


def markdown(rows: list[dict]) -> str:
    head = ("| attack | return | env steps | wall s | wall / natural | µs per env step | per step / natural "
            "| perturb ms per call | perturb µs per state |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['attack']} | {r['mean_return']:.0f} ± {r['std_return']:.0f} | {r['env_steps']} | {r['wall_s']:.2f} "
            f"| {r['wall_vs_natural']:.2f}× | {r['us_per_env_step']:.1f} | {r['per_step_vs_natural']:.2f}× "
            f"| {r['perturb_ms_per_call']:.3f} | {r['perturb_us_per_state']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agent", default=None, help="Hopper checkpoint (.safetensors); default: an untrained agent")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--json", default=str(DEFAULT_JSON))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from robbench.provenance import machine_summary

    agent, source = load(args.agent)
    rows = bench(agent, args.episodes)
    mad = next(r for r in rows if r["attack"] == "mad")
    out = {
        "machine": machine_summary(), "agent": source, "episodes": args.episodes, "torch_threads": args.threads,
        "mad_vs_natural_wall": mad["wall_vs_natural"], "mad_vs_natural_per_step": mad["per_step_vs_natural"],
        "target_mad_vs_natural": 3.0, "rows": rows,
    }
    print(markdown(rows))
    print(f"\nMAD / natural: {mad['wall_vs_natural']:.2f}× wall, {mad['per_step_vs_natural']:.2f}× per env step "
          f"(target ≤ 3×); {out['machine']}")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
