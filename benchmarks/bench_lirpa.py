"""Bound computation time of auto-LiRPA (through robbench.lirpa_compat) per 1000 states (run by hand).

The policy shape robbench certifies (11-64-64-3 tanh MLP, the SA-PPO / robbench Hopper policy),
1000 random states, ε = 0.075, no gradients: one warm-up call on 10 states, then the mean over
`--reps` calls (CROWN: half as many) for IBP, CROWN-IBP and CROWN. One torch thread by default
(what certify runs with; small tensors only add thread contention). This measurement used to be
printed by tests/test_lirpa_compat.py; tests never time anything.

    python benchmarks/bench_lirpa.py [--reps 5] [--states 1000] [--threads 1] [--json PATH]

Prints one line per method and writes the JSON (default benchmarks/results/lirpa.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

OBS, ACT = 11, 3


def tanh_mlp(sizes: list[int], seed: int) -> nn.Sequential:
    """The test suite's "small" model: uniform(±1/√fan_in) weights from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        with torch.no_grad():
            bound = 1.0 / np.sqrt(a)
            lin.weight.copy_((torch.rand(b, a, generator=g) * 2 - 1) * bound)
            lin.bias.copy_((torch.rand(b, generator=g) * 2 - 1) * bound)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--states", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "lirpa.json"))
    args = ap.parse_args()

    from robbench import lirpa_compat as lc

    torch.set_num_threads(args.threads)
    model = tanh_mlp([OBS, 64, 64, ACT], seed=0)
    bm = lc.bounded_module(model, torch.zeros(1, OBS))
    x = torch.randn(args.states, OBS, generator=torch.Generator().manual_seed(2))
    per_1000 = {}
    for method in lc.METHODS:
        lc.bounds(bm, x[:10], 0.075, method)  # warm-up
        reps = max(1, args.reps if method != "crown" else args.reps // 2)
        with torch.no_grad():
            start = time.perf_counter()
            for _ in range(reps):
                lc.bounds(bm, x, 0.075, method)
            dt = (time.perf_counter() - start) / reps
        per_1000[method] = dt * 1000 / args.states
        print(f"{method}: {per_1000[method] * 1e3:.1f} ms / 1000 states ({reps} reps)")
    out = {"model": "11-64-64-3 tanh MLP", "states": args.states, "eps": 0.075, "threads": args.threads,
           "torch": torch.__version__, "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores",
           "seconds_per_1000_states": per_1000}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
