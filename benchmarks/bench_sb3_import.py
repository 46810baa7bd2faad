"""An outside agent end to end: train Stable-Baselines3 PPO on Hopper-v5 (VecNormalize), import it,
and check that robbench's evaluation of it returns what SB3's own policy returns on the same seeds.

    python benchmarks/bench_sb3_import.py --steps 50000 --episodes 10 [--suite] [--json OUT]

1. SB3 PPO (MlpPolicy, its defaults, seed 0) learns `--steps` steps on Hopper-v5 behind
   VecNormalize; the model zip and the VecNormalize pickle are saved as a user would save them.
2. SB3's side, twice: SB3's own `evaluate_policy` (deterministic, on the VecNormalize env with its
   statistics frozen, each env behind a wrapper that resets episode i with seed 1,000,000 + i, the
   protocol's seeds, and behind SB3's Monitor for the raw returns), and a plain loop stepping
   `model.predict(vecnormalize.normalize_obs(obs), deterministic=True)` on the same seeds — SB3 clips
   that action to the box, as `evaluate_policy` does.
3. robbench's side: `robbench import` of the two files, then `robbench evaluate --attacks none` on
   the same episodes (with `--suite`: the whole standard suite, 50 episodes, slow).
The per-episode returns of the two sides are compared; they agree to float precision when the import
reproduces SB3's normalisation (√(var + ε)), observation clip and action clip exactly.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BASE_SEED = 1_000_000


def sb3_returns(model, vec, episodes: int) -> list[float]:
    import gymnasium as gym

    env = gym.make("Hopper-v5")
    out = []
    for i in range(episodes):
        obs, _ = env.reset(seed=BASE_SEED + i)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(vec.normalize_obs(obs[None]), deterministic=True)
            obs, r, term, trunc, _ = env.step(action[0])
            total += float(r)
            done = term or trunc
        out.append(total)
    env.close()
    return out


def evaluate_policy_returns(model, vec_path: Path, episodes: int) -> list[float]:
    """SB3's `evaluate_policy` itself, on the protocol's episode seeds."""
    import gymnasium as gym
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    class ProtocolSeeds(gym.Wrapper):
        """Reset number i (the vec env's first reset and each auto-reset) uses seed BASE_SEED + i."""

        def __init__(self, env):
            super().__init__(env)
            self.resets = 0

        def reset(self, *, seed=None, options=None):
            seed, self.resets = BASE_SEED + self.resets, self.resets + 1
            return self.env.reset(seed=seed, options=options)

    vec = VecNormalize.load(str(vec_path), DummyVecEnv([lambda: Monitor(ProtocolSeeds(gym.make("Hopper-v5")))]))
    vec.training, vec.norm_reward = False, False
    returns, _ = evaluate_policy(model, vec, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True)
    vec.close()
    return [float(r) for r in returns]


def robbench(*args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "robbench.cli", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"robbench {' '.join(args)} failed:\n{res.stdout}{res.stderr}")
    return res.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50_000)
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--suite", action="store_true", help="also run the whole standard suite on the agent")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import gymnasium as gym
    import stable_baselines3
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from robbench.store import ResultsStore

    work = Path(tempfile.mkdtemp(prefix="robbench-sb3-"))
    t0 = time.perf_counter()
    vec = VecNormalize(DummyVecEnv([lambda: gym.make("Hopper-v5")]))
    model = PPO("MlpPolicy", vec, seed=0, verbose=0, device="cpu")
    model.learn(args.steps)
    train_s = time.perf_counter() - t0
    model.save(work / "ppo_hopper.zip")
    vec.save(str(work / "vecnormalize.pkl"))
    vec.training = False
    theirs = sb3_returns(model, vec, args.episodes)
    official = evaluate_policy_returns(model, work / "vecnormalize.pkl", args.episodes)
    home = work / "home"
    aid = robbench("import", str(work / "ppo_hopper.zip"), "--env", "hopper", "--vecnormalize",
                   str(work / "vecnormalize.pkl"), "--home", str(home)).strip().splitlines()[-1]
    robbench("evaluate", "--agents", aid, "--attacks", "none", "--episodes", str(args.episodes), "--workers", "1",
             "--home", str(home))
    with ResultsStore(home, readonly=True) as store:
        cell = next(c for c in store.cells() if c["attack"] == "none")
        ours = [e["ret"] for e in store.episodes(cell["cell_key"])]
    diff = float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs))))
    diff_official = float(np.max(np.abs(np.asarray(ours) - np.asarray(official))))
    result = {"sb3_version": stable_baselines3.__version__, "steps": args.steps, "train_s": round(train_s, 1),
              "agent_id": aid, "episodes": args.episodes, "sb3_evaluate_policy_mean": float(np.mean(official)),
              "sb3_mean": float(np.mean(theirs)), "robbench_mean": float(np.mean(ours)),
              "max_abs_episode_diff_evaluate_policy": diff_official, "max_abs_episode_diff": diff,
              "sb3_evaluate_policy_returns": official, "sb3_returns": theirs, "robbench_returns": ours}
    if args.suite:
        t1 = time.perf_counter()
        robbench("evaluate", "--agents", aid, "--attacks", "standard", "--workers", "1", "--home", str(home))
        rows = json.loads(robbench("report", "--home", str(home), "--format", "json"))
        row = next(r for r in rows if r.get("agent") == aid and r.get("complete"))
        result.update(suite=row["suite"], natural_50=row["none_mean"], worst=row["worst_mean"],
                      worst_member=row["worst_member"], suite_s=round(time.perf_counter() - t1, 1))
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
