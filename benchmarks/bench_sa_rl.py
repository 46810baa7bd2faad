"""Learned-adversary training throughput (run by hand, not in the test suite).

SA-RL trains its adversary with the same PPO core as every trainer, on `AdversaryEnv` (the victim
folded into the env). The only extra work per step is the adversary-action → ŝ map, one batched
victim forward and the ball check, so its training should run at ≥ 0.8× plain PPO training on the
same env. PA-AD's FGSM director (one more victim forward + backward per step) is shown for scale.

    python benchmarks/bench_sa_rl.py [--iterations 10] [--repeats 2] [--agent PATH] [--json OUT]

Runs are interleaved (PPO, SA-RL, PA-AD, PPO, ...) so that load on a shared machine hits all
alike; each figure is the best of `--repeats`. Prints a markdown table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

DEFAULT_AGENT = "/work/runs/home/agents/hopper/ppo/paper/seed0.safetensors"


def timed(fn) -> tuple[float, float]:
    """(steps per wall second, steps per CPU second of this process) of `fn() -> steps`."""
    wall, cpu = time.perf_counter(), time.process_time()
    steps = fn()
    return steps / (time.perf_counter() - wall), steps / (time.process_time() - cpu)


def ppo_run(iterations: int, seed: int) -> int:
    from robbench.ppo import PPOConfig, PPOCore

    core = PPOCore(PPOConfig.for_env("hopper", steps=iterations * 2048, num_envs=8, seed=seed))
    core.train()
    return core.steps_done


def adversary_run(name: str, victim, iterations: int, seed: int) -> int:
    from robbench.envs import get_env_spec
    from robbench.registry import get_attack

    attack = get_attack(name)(get_env_spec("hopper").eps, preset="smoke", seed=seed, train_steps=iterations * 2048)
    return attack.fit(victim, torch.Generator().manual_seed(seed))["steps"]


def load_victim(path: str | None):
    from robbench.checkpoint import load_agent_file
    from robbench.ppo import PPOConfig, PPOCore
    from robbench.threat import Victim

    if path and Path(path).is_file():
        return Victim(load_agent_file(path)), path
    agent = PPOCore(PPOConfig.for_env("hopper", preset="smoke")).agent({"agent_id": "bench", "env": "hopper"})
    return Victim(agent), "untrained (smoke) PPO"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--agent", default=DEFAULT_AGENT, help="victim checkpoint (default: the paper Hopper PPO)")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "sa_rl.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    import mujoco

    victim, victim_name = load_victim(args.agent)
    from robbench.registry import attacks

    attacks()  # import every attack module before timing anything
    jobs = {
        "ppo": lambda seed: ppo_run(args.iterations, seed),
        "sa_rl": lambda seed: adversary_run("sa_rl", victim, args.iterations, seed),
        "pa_ad": lambda seed: adversary_run("pa_ad", victim, args.iterations, seed),
    }
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in jobs}
    for r in range(args.repeats):  # interleaved: PPO, SA-RL, PA-AD, PPO, ...
        for name, job in jobs.items():
            runs[name].append(timed(lambda: job(r)))
    wall = {k: max(w for w, _ in v) for k, v in runs.items()}
    cpu = {k: max(c for _, c in v) for k, v in runs.items()}
    machine = (f"{platform.node() or 'vm'} ({os.cpu_count()} cores, py{platform.python_version()}, "
               f"torch {torch.__version__} with 1 thread, mujoco {mujoco.__version__})")
    result = {
        "machine": machine, "victim": victim_name, "iterations": args.iterations, "steps": args.iterations * 2048,
        "num_envs": 8, "repeats": args.repeats, "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "runs": {k: [{"wall_steps_per_s": round(w, 1), "cpu_steps_per_s": round(c, 1)} for w, c in v]
                 for k, v in runs.items()},
        "wall_steps_per_s": {k: round(v, 1) for k, v in wall.items()},
        "cpu_steps_per_s": {k: round(v, 1) for k, v in cpu.items()},
        "sa_rl_vs_ppo_wall": round(wall["sa_rl"] / wall["ppo"], 3),
        "sa_rl_vs_ppo_cpu": round(cpu["sa_rl"] / cpu["ppo"], 3),
        "pa_ad_vs_ppo_wall": round(wall["pa_ad"] / wall["ppo"], 3),
        "pa_ad_vs_ppo_cpu": round(cpu["pa_ad"] / cpu["ppo"], 3),
        "target_sa_rl_vs_ppo": 0.8,
    }
    print(f"Hopper-v5, {args.iterations} iterations × 2048 steps, 8 envs, best of {args.repeats} interleaved runs; "
          f"victim: {victim_name}; load average {result['load_average_1min_at_end']}\n")
    print("| training | steps/s (wall) | vs PPO | steps per CPU-s | vs PPO | target |")
    print("|---|---|---|---|---|---|")
    rows = [("PPO (the core, plain Hopper)", "ppo", ""),
            ("SA-RL adversary (same core on AdversaryEnv)", "sa_rl", "≥ 0.80"),
            ("PA-AD director, FGSM actor", "pa_ad", "")]
    for label, k, target in rows:
        print(f"| {label} | {wall[k]:,.0f} | {wall[k] / wall['ppo']:.2f} | {cpu[k]:,.0f} | {cpu[k] / cpu['ppo']:.2f} "
              f"| {target} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
