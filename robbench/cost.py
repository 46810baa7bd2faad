"""Rough cost estimates of jobs, so that progress bars weight a 5-minute adversary fit above a 10-second
evaluation and their ETA covers the fits, not only the count of jobs.

The estimate is in seconds of one core on the reference machine (benchmarks/README.md); only the
ratios between jobs matter to the bar (rich's ETA extrapolates the observed rate of estimated
seconds completed), so a machine twice as slow still gets an honest ETA. Figures are from the
measured budgets in reports/*/REPRODUCE.md and benchmarks/README.md:

- PPO training: ~300 µs per environment step (a 2M-step paper agent: ~10 min);
- a PPO-trained adversary (SA-RL, PA-AD): ~300 µs per step of its budget;
- a robust-Sarsa Q network: ~650 µs per step of its rollouts (TD and bound updates);
- `targeted`'s screening: an evaluation of (candidates × screen episodes) episodes; `ars_director`:
  that screening, one evaluation batch of (2·directions + 1) × episodes per search step, and the check;
- an evaluation: per batched step, ~60 µs per live episode for MuJoCo plus ~0.5 ms per gradient
  step of the attack (one forward/backward through the batch), episodes × max steps in all.
"""

from __future__ import annotations

from typing import Any

STEP_S = {"train": 300e-6, "adversary": 300e-6, "sarsa": 650e-6}
ENV_STEP_S = 60e-6
GRADIENT_STEP_S = 0.5e-3
DEFAULT_S = 30.0


def _gradient_steps(attack: Any) -> int:
    steps = getattr(attack, "steps", 0)
    restarts = getattr(attack, "restarts", 1)
    return int(steps) * int(restarts) if isinstance(steps, int) else 0


def evaluation_seconds(episodes: int, max_steps: int, gradient_steps: int) -> float:
    return max_steps * (episodes * ENV_STEP_S + gradient_steps * GRADIENT_STEP_S)


def estimate_seconds(kind: str, spec) -> float:
    """Estimated one-core seconds of a job (`Job.kind`, and `Job.typed` or its dict form `Job.spec`);
    DEFAULT_S when unknown."""
    try:
        from robbench.specs import AttackSpec, EvaluateSpec, FitSpec, TrainSpec, as_spec

        spec = as_spec(kind, spec)
        if isinstance(spec, TrainSpec):
            from robbench.train import build_config

            cfg, _ = build_config(spec.method, spec.env, spec.seed, spec.preset, spec.steps, spec.num_envs,
                                  spec.params)
            return cfg.iterations * cfg.steps_per_iteration * STEP_S["train"]
        if not isinstance(spec, AttackSpec):
            return DEFAULT_S
        from robbench.registry import get_attack
        from robbench.threat import LearnedAttack

        name = spec.attack
        attack = get_attack(name)(spec.eps or 0.1, **spec.params)
        if isinstance(spec, FitSpec) and isinstance(attack, LearnedAttack):
            cfg = attack.fit_config()
            if name in ("targeted", "ars_director"):
                from robbench.attacks.targeted import TargetedAttack, candidate_targets

                # the candidate count of a 6-dimensional action space (Walker2d, HalfCheetah): the
                # spec names no env's action size; Hopper's 16 candidates make this an over-estimate
                screen = attack if name == "targeted" else TargetedAttack(attack.eps)
                n = len(candidate_targets(6, screen.params["max_corners"], screen.params["seed"])[1])
                seconds = evaluation_seconds(n * screen.params["screen_episodes"], 1000, _gradient_steps(screen))
                if name == "ars_director":  # then one batch of candidates per search step, and the check
                    p = attack.params
                    batch = (2 * p["directions"] + 1) * p["episodes"]
                    seconds += (p["iterations"] * evaluation_seconds(batch, 1000, p["actor_steps"])
                                + evaluation_seconds((2 + p["finalists"]) * p["check_episodes"], 1000, p["actor_steps"]))
                return seconds
            rate = STEP_S["sarsa"] if name == "rs" else STEP_S["adversary"]
            return float(cfg.get("train_steps", 100_000)) * rate
        if isinstance(spec, EvaluateSpec):
            return evaluation_seconds(spec.episodes, 1000, _gradient_steps(attack))
    except Exception:  # an estimate must never stop a run; the job itself reports bad input
        return DEFAULT_S
    return DEFAULT_S
