"""What each hand-written fast path (robbench/fastpath.py) buys over autograd (run by hand, not in the tests).

Two levels, Hopper-sized networks (11-dim states, 3-dim actions, 64-64 tanh), one torch thread:

- one inner solve, `--reps` times: SA-PPO's / BAR-PPO's SGLD ŝ and AR-PPO's PGD ŝ on a 64-row
  minibatch (10 steps), WocaR's a* search on a 2048-row batch (50 steps), one WocaR Q step on 64
  rows (gradients + Adam step), each with `fast=True` and with autograd, interleaved so a burst of
  load on a shared machine hits both alike;
- one whole policy update (10 epochs × 32 minibatches, after `prepare_batch`) of `sappo`, `arppo`
  and `wocar` on one collected batch, `--updates` times per mode, `Objective.fast_path` on and off.

Reports the median wall time per repetition and the speed-up (autograd time / fast time).

    python benchmarks/bench_fast_paths.py [--reps 300] [--updates 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def interleaved(fast: Callable[[], object], slow: Callable[[], object], reps: int) -> tuple[float, float]:
    """Median wall seconds of `fast()` and `slow()`, alternating one call of each per repetition."""
    fast(), slow()  # warm-up
    times: dict[str, list[float]] = {"fast": [], "slow": []}
    for _ in range(reps):
        for name, fn in (("fast", fast), ("slow", slow)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["fast"]), statistics.median(times["slow"])


def inner_solves(reps: int) -> dict[str, tuple[float, float]]:
    from robbench import fastpath
    from robbench.agents import _robust
    from robbench.agents.wocar import td_loss, worst_action
    from robbench.policy import mlp
    from robbench.ppo import PPOCore
    from robbench.train import build_config

    cfg, objective = build_config("sappo", "hopper", seed=0, steps=2048, num_envs=1)
    core = PPOCore(cfg, objective)
    batch = core.collect()
    core.envs.close()
    idx = torch.arange(64)
    adv = batch.advantages[idx]
    mb = _robust.Minibatch(batch.obs[idx], batch.actions[idx], batch.log_probs[idx],
                           (adv - adv.mean()) / (adv.std() + 1e-8), batch.returns[idx], batch.values[idx], idx)
    eps = cfg.eps
    out = {
        "SGLD ŝ (sappo, barppo, wocar; 64 rows, 10 steps)": interleaved(
            lambda: _robust.sgld_max_divergence(core, mb.obs, eps, 10, eps / 10, fast=True),
            lambda: _robust.sgld_max_divergence(core, mb.obs, eps, 10, eps / 10, fast=False), reps),
        "PGD ŝ (arppo; 64 rows, 10 steps)": interleaved(
            lambda: _robust.pgd_min_surrogate(core, mb, eps, 10, eps / 10, fast=True),
            lambda: _robust.pgd_min_surrogate(core, mb, eps, 10, eps / 10, fast=False), reps),
    }
    torch.manual_seed(0)
    q, q_target = mlp(14, 1, (64, 64), out_gain=1.0), mlp(14, 1, (64, 64), out_gain=1.0).requires_grad_(False)
    next_obs = batch.next_obs
    lo = torch.randn(2048, 3) * 0.3 - 0.5
    hi = lo + 0.4
    gen = torch.Generator().manual_seed(0)
    out["a* search (wocar; 2048 rows, 50 steps)"] = interleaved(
        lambda: worst_action(q, next_obs, lo, hi, gen, 50, fast=True),
        lambda: worst_action(q, next_obs, lo, hi, gen, 50, fast=False), max(1, reps // 10))
    optimizer = torch.optim.Adam(q.parameters(), lr=1e-6, eps=1e-5, fused=True)
    sa, next_sa = torch.randn(64, 14), torch.randn(64, 14)
    rewards, not_done = torch.randn(64), torch.ones(64)

    def fast_step():
        fastpath.td_step_gradients(q, q_target, sa, next_sa, rewards, not_done, 0.99)
        optimizer.step()

    def slow_step():
        optimizer.zero_grad(set_to_none=True)
        td_loss(q, q_target, sa, next_sa, rewards, not_done, 0.99).backward()
        optimizer.step()

    out["Q step (wocar; 64 rows, gradients + Adam)"] = interleaved(fast_step, slow_step, reps)
    return out


def whole_updates(updates: int) -> dict[str, tuple[float, float]]:
    from robbench.ppo import PPOCore
    from robbench.train import build_config

    out = {}
    for method in ("sappo", "arppo", "wocar"):
        # 2 iterations: after one collect the core is half-way through the ε ramp (ε_t > 0)
        cfg, objective = build_config(method, "hopper", seed=0, steps=2 * 2048, num_envs=8)
        core = PPOCore(cfg, objective)
        batch = core.collect()
        core.envs.close()
        core.minibatch_step = int(0.5 * cfg.iterations * cfg.epochs * cfg.minibatches)

        def run(fast: bool) -> None:
            objective.fast_path = fast
            objective.prepare_batch(core, batch)
            core.update(batch)

        out[f"policy update, {method} (prepare_batch + 320 minibatch steps)"] = interleaved(
            lambda: run(True), lambda: run(False), updates)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--json", default="benchmarks/results/fast_paths.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {**inner_solves(args.reps), **whole_updates(args.updates)}
    print("| what | autograd (ms) | fast path (ms) | speed-up |")
    print("|---|---|---|---|")
    for name, (fast, slow) in results.items():
        print(f"| {name} | {slow * 1e3:.2f} | {fast * 1e3:.2f} | {slow / fast:.2f}× |")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({name: {"autograd_s": slow, "fast_s": fast, "speedup": slow / fast}
                                for name, (fast, slow) in results.items()}, indent=1))


if __name__ == "__main__":
    main()
