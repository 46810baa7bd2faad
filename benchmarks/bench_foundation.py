"""Foundation benchmarks (run by hand, not in the test suite).

(a) PPO training throughput: robbench's PPO core vs Stable-Baselines3 PPO (MlpPolicy, n_steps 2048,
    batch 64, 10 epochs, one torch thread) on Hopper-v5, same number of env steps, same process.
(b) Natural evaluation of 50 Hopper episodes (one batch) vs raw random-action stepping of the same
    50 envs for the same number of steps.

    python benchmarks/bench_foundation.py [--iterations 10] [--agent PATH] [--json OUT]

Prints the figures and ratios; copy them into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def bench_ours(iterations: int, num_envs: int) -> float:
    from robbench.ppo import PPOConfig, PPOCore

    core = PPOCore(PPOConfig.for_env("hopper", steps=iterations * 2048, num_envs=num_envs, seed=0))
    start = time.perf_counter()
    core.train()
    return core.steps_done / (time.perf_counter() - start)


def bench_sb3(iterations: int) -> float:
    import gymnasium as gym
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    model = PPO("MlpPolicy", gym.make("Hopper-v5"), n_steps=2048, batch_size=64, n_epochs=10, seed=0,
                device="cpu", verbose=0)
    start = time.perf_counter()
    model.learn(total_timesteps=iterations * 2048)
    return iterations * 2048 / (time.perf_counter() - start)


def bench_eval(agent_path: str | None) -> tuple[float, float, int]:
    from robbench.checkpoint import load_agent_file
    from robbench.envs import EnvBatch
    from robbench.evaluate import Protocol, evaluate
    from robbench.registry import get_attack

    if agent_path:
        agent = load_agent_file(agent_path)
    else:  # an untrained agent falls fast; a trained one is the realistic case
        from robbench.ppo import PPOConfig, PPOCore

        agent = PPOCore(PPOConfig.for_env("hopper", preset="smoke")).agent(
            {"agent_id": "bench", "env": "hopper"})
    p = Protocol.for_env("hopper")
    res = evaluate(agent, get_attack("none")(p.eps), p)
    eval_sps = res.env_steps / res.wall_s

    envs = EnvBatch("hopper", p.episodes)
    rng = np.random.default_rng(0)
    for i in range(p.episodes):
        envs.reset_one(i, seed=p.base_seed + i)
    steps, start = 0, time.perf_counter()
    while steps < res.env_steps:
        acts = rng.uniform(-1, 1, size=(p.episodes, envs.act_dim))
        for i in range(p.episodes):
            _, _, te, tr = envs.step_one(i, acts[i])
            if te or tr:
                envs.reset_one(i)
        steps += p.episodes
    raw_sps = steps / (time.perf_counter() - start)
    return eval_sps, raw_sps, res.env_steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--num-envs", type=int, default=8)
    ap.add_argument("--agent", default=None, help="checkpoint for the evaluation benchmark")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ours = bench_ours(args.iterations, args.num_envs)
    sb3 = bench_sb3(args.iterations)
    eval_sps, raw_sps, eval_steps = bench_eval(args.agent)
    from robbench.provenance import machine_summary

    out = {
        "machine": machine_summary(), "steps": args.iterations * 2048, "num_envs": args.num_envs,
        "ppo_steps_per_s": round(ours, 1), "sb3_steps_per_s": round(sb3, 1), "ppo_vs_sb3": round(ours / sb3, 2),
        "eval_steps": eval_steps, "eval_steps_per_s": round(eval_sps, 1), "raw_steps_per_s": round(raw_sps, 1),
        "eval_vs_raw": round(eval_sps / raw_sps, 3),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
