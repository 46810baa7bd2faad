"""`sa_rl` — the learned optimal adversary of ATLA / SA-MDP (spec/attacks.md "SA-RL").

The adversary is a PPO agent (Gaussian MLP obs → obs_dim, 64-64 tanh, std 1 at init, its own value
net) trained with robbench's PPO core on `AdversaryEnv`: it sees the victim's clean normalised
state s, its action δ becomes ŝ = s + ε·clip(δ, −1, 1) (ATLA's `hardtanh(δ)·ε`, a residual), the
victim acts on ŝ, and its reward is −(victim's reward). At evaluation the adversary is
deterministic: its mean, through its own frozen observation filter. The attack's result is the
minimum over a hyperparameter scan; each member is its own cell.

Reference facts (huanzhang12/ATLA_robust_RL): the grid is configs/attack_ppo_<env>_scan.py —
anneal_lr {on, off} × adv_clip_eps {0.2, 0.4} × adv_entropy_coeff {0, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3}
× 3 adv_ppo_lr_adam × 3 adv_val_lr (per-env values in `ADVERSARY_LRS`), 488 iterations (ant 2441),
value clipping on.

Deliberate departures, all recorded:
- Deterministic victim while the adversary trains (the spec: "the victim acts deterministically on
  ŝ"). ATLA's `run_trajectories` samples the victim's action from its Gaussian while collecting
  adversary trajectories. robbench trains the adversary against the policy it is evaluated on
  (the deterministic mean, protocol.md); the spec's choice, kept.
- The adversary's input passes through its own running observation filter (the core does this for
  every env); ATLA feeds it the victim-normalised state as is. The filter is frozen and saved with
  the adversary, so evaluation sees exactly what training saw.
- HalfCheetah: the adversary starts at std 1 (the spec) where ATLA's halfcheetah scan sets 0.5.
- Time-limit truncation bootstraps (the PPO core's departure, ppo.md).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from robbench.attacks._adversary_env import Member, PPOAdversaryAttack, Preset, Perturber, reference_grid
from robbench.registry import register_attack
from robbench.threat import Victim, project_to_ball

SA_RL_PRESETS: dict[str, Preset] = {
    "paper": Preset(488, reference_grid(), "ATLA's 216-adversary grid, 488 iterations ≈ 1M steps each (ant 2441)"),
    "medium": Preset(
        98,
        (
            Member(False, 0.2, 0.0, 2, 2),
            Member(False, 0.4, 0.0, 1, 1),
            Member(True, 0.2, 0.0, 2, 1),
            Member(False, 0.2, 1e-4, 2, 2),
        ),
        "4 grid points, 98 iterations ≈ 200k steps each (a fifth of the paper budget)",
    ),
    "quick": Preset(
        49,
        (
            Member(False, 0.2, 0.0, 2, 2),
            Member(False, 0.4, 0.0, 1, 1),
            Member(True, 0.2, 0.0, 2, 1),
        ),
        "3 grid points, 49 iterations ≈ 100k steps each: a demo, not the protocol",
    ),
    "smoke": Preset(2, (Member(False, 0.2, 0.0, 2, 2),), "1 grid point, 2 iterations: checks that it runs"),
}


@register_attack("sa_rl")
class SARLAttack(PPOAdversaryAttack):
    description = "learned PPO adversary ŝ = s + ε·clip(δ, −1, 1), reward −(victim reward); min over a grid"

    PAPER_ITERATIONS: ClassVar[int] = 488
    PAPER_ITERATIONS_LONG: ClassVar[int] = 2441
    PRESETS: ClassVar[dict[str, Preset]] = SA_RL_PRESETS
    STOCHASTIC_VICTIM: ClassVar[bool] = False

    def action_dim(self, victim: Victim) -> int:
        return victim.policy.mean_net[0].in_features  # a residual on the state

    def perturber(self, victim: Victim, gen: torch.Generator) -> Perturber:
        eps = self.eps

        def residual(states: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
            # project_to_ball only guards float rounding: s + ε·clip(δ) is already in the ball.
            return project_to_ball(states + eps * delta.clamp(-1.0, 1.0), states, eps)

        return residual
