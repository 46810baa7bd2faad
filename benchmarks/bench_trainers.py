"""Training throughput of every registered trainer relative to `ppo` (run by hand, not in the tests).

Each method trains Hopper with its default settings (`build_config`, so κ etc. are the env's) for
1 warm-up iteration + N timed iterations of 2048 steps, same seed, same number of envs, one torch
thread, in this one process. ε ramps over the first 75 % of those iterations, so the robust inner
problems run at ε_t > 0 for almost every timed minibatch. Methods are measured round-robin
(`--rounds`, best round kept), so a burst of load on a shared machine hits all methods alike.
Two clocks: wall time (the figure that matters on a quiet machine) and this process's CPU time
(envs are stepped in-process, so it covers everything; far less sensitive to other jobs on a
shared machine). Targets are judged on wall time.

    python benchmarks/bench_trainers.py [--iterations 5] [--rounds 2] [--methods a,b] [--json PATH]

Prints a markdown table (method, steps/s, ratio to ppo, target) and writes the JSON (default
benchmarks/results/trainers.json). Methods registered later are included automatically.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

TARGETS = {
    "ppo": 1.0, "barppo": 0.6, "barppo-noguide": 0.6, "arppo": 0.6, "arppo-noguide": 0.6, "sappo": 0.6,
    "wocar": 0.5, "radial": 0.4, "sappo-convex": 0.4,
}
"""Minimum steps/s relative to ppo (the "-noguide" ablations share their parent's target)."""


def steps_per_second(method: str, env: str, iterations: int, num_envs: int, seed: int) -> tuple[float, float]:
    """Training steps per wall second and per CPU second over `iterations` after one warm-up iteration."""
    from robbench.ppo import PPOCore
    from robbench.train import build_config

    cfg, objective = build_config(method, env, seed=seed, steps=(iterations + 1) * 2048, num_envs=num_envs)
    core = PPOCore(cfg, objective)
    wall: list[float] = []
    cpu: list[float] = []
    core.train(lambda i, stats: (wall.append(time.perf_counter()), cpu.append(time.process_time())))
    core.envs.close()
    steps = iterations * cfg.steps_per_iteration
    return steps / (wall[-1] - wall[0]), steps / (cpu[-1] - cpu[0])


def main() -> None:
    from robbench.provenance import machine_summary
    from robbench.registry import trainers

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--env", default="hopper")
    ap.add_argument("--num-envs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default=None, help="comma-separated subset (ppo is always included)")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "trainers.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    methods = list(trainers())
    if args.methods:
        wanted = set(args.methods.split(",")) | {"ppo"}
        methods = [m for m in methods if m in wanted]
    methods = ["ppo"] + [m for m in methods if m != "ppo"]
    best: dict[str, float] = {}
    best_cpu: dict[str, float] = {}
    for _ in range(args.rounds):
        for m in methods:
            sps, cpu_sps = steps_per_second(m, args.env, args.iterations, args.num_envs, args.seed)
            best[m] = max(best.get(m, 0.0), sps)
            best_cpu[m] = max(best_cpu.get(m, 0.0), cpu_sps)

    rows = []
    print("| method | steps/s | ratio to ppo | target | | steps/CPU-s | CPU ratio |")
    print("|---|---|---|---|---|---|---|")
    for m in methods:
        ratio, cpu_ratio = best[m] / best["ppo"], best_cpu[m] / best_cpu["ppo"]
        target = TARGETS.get(m)
        ok = "" if target is None else ("ok" if ratio >= target else "BELOW")
        print(f"| {m} | {best[m]:.0f} | {ratio:.2f} | {'' if target is None else f'≥ {target:g}×'} | {ok} "
              f"| {best_cpu[m]:.0f} | {cpu_ratio:.2f} |")
        rows.append({"method": m, "steps_per_s": round(best[m], 1), "ratio_to_ppo": round(ratio, 3),
                     "steps_per_cpu_s": round(best_cpu[m], 1), "cpu_ratio_to_ppo": round(cpu_ratio, 3),
                     "target": target, "meets_target": None if target is None else ratio >= target})
    out = {
        "machine": machine_summary(), "env": args.env, "iterations_timed": args.iterations,
        "warmup_iterations": 1, "steps_per_iteration": 2048, "num_envs": args.num_envs, "rounds": args.rounds,
        "torch_threads": 1, "results": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwritten {args.json}")


if __name__ == "__main__":
    main()
