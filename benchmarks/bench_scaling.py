"""Scaling of a fixed grid over executor workers: wall time of `robbench run` with 1, 2, ... workers.

    python benchmarks/bench_scaling.py --workers 1,2            # this machine
    python benchmarks/bench_scaling.py --workers 1,4,8,16 --tag h200-16cpu

Each run starts from an empty results home, so every job runs. The script checks that every run
stored the same results (per-episode returns, checkpoint tensors) whatever the worker count, writes
benchmarks/results/scaling_<tag>.json, and redraws benchmarks/results/scaling.png from all such files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from robbench.store import ResultsStore, canonical_json

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def digest(home: Path) -> tuple[str, int]:
    """Hash of every per-episode return and length (ordered by agent, attack config, episode)."""
    with ResultsStore(home, readonly=True) as store:
        rows = [[c["agent_id"], c["attack"], canonical_json(c["attack_config"]), e["idx"], e["ret"], e["length"]]
                for c in store.cells() for e in store.episodes(c["cell_key"])]
    rows.sort()  # whole rows: cells that differ only in protocol still come in one order
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16], len(rows)


def run(grid: Path, workers: int, backend: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        start = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "robbench.cli", "run", str(grid), "--workers", str(workers),
                              "--backend", backend, "--home", str(home)], capture_output=True, text=True)
        wall = time.perf_counter() - start
        if res.returncode != 0:
            raise SystemExit(f"run with {workers} workers failed:\n{res.stderr[-3000:]}")
        d, episodes = digest(home)
        with ResultsStore(home, readonly=True) as store:
            jobs = len(store.jobs(status="done"))
    return {"workers": workers, "wall_s": round(wall, 2), "jobs": jobs, "episodes": episodes, "digest": d}


def plot() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for path in sorted(RESULTS.glob("scaling_*.json")):
        data = json.loads(path.read_text())
        w = [r["workers"] for r in data["runs"]]
        t = [r["wall_s"] for r in data["runs"]]
        base = t[w.index(1)] if 1 in w else t[0] * w[0]
        label = f"{data['tag']} ({data['cores']} cores, {data['backend']})"
        ax1.plot(w, t, "o-", label=label)
        ax2.plot(w, [base / x for x in t], "o-", label=label)
    top = max([1] + [r["workers"] for p in RESULTS.glob("scaling_*.json") for r in json.loads(p.read_text())["runs"]])
    ax2.plot([1, top], [1, top], "k:", label="linear")
    ax1.set(xlabel="workers", ylabel="wall time of the grid (s)", title="benchmarks/grids/scaling.toml")
    ax2.set(xlabel="workers", ylabel="speed-up over 1 worker", title="speed-up")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "scaling.png", dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", default=str(HERE / "grids" / "scaling.toml"))
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--backend", default="local")
    ap.add_argument("--tag", default=platform.node() or "local")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/scaling_<tag>.json)")
    args = ap.parse_args()
    runs = []
    for w in (int(x) for x in args.workers.split(",")):
        r = run(Path(args.grid), w, args.backend)
        runs.append(r)
        print(json.dumps(r), flush=True)
    if len({r["digest"] for r in runs}) != 1:
        raise SystemExit(f"results differ between worker counts: {runs}")
    base = next((r["wall_s"] for r in runs if r["workers"] == 1), None)
    for r in runs:
        if base:
            r["speedup"] = round(base / r["wall_s"], 2)
            r["efficiency"] = round(base / r["wall_s"] / r["workers"], 2)
    import torch

    data = {"tag": args.tag, "backend": args.backend, "cores": os.cpu_count(), "grid": Path(args.grid).name,
            "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
            "torch": torch.__version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "runs": runs}
    out = Path(args.out) if args.out else RESULTS / f"scaling_{args.tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {out}")
    if out.parent == RESULTS:
        plot()


if __name__ == "__main__":
    main()
