"""`mad` — maximal action difference (spec/attacks.md; SA-PPO paper, Zhang et al. 2020, Sec. 6).

Objective per state: Σ_i ((μ_i(ŝ) − μ_i(s)) / σ̃_i)², with μ(s) computed once and held fixed, and
σ̃ ≡ 1 (`weights = "unit"`, the default): the SA-PPO reference evaluates a *deterministic* victim, whose
σ̃ is all ones. `weights = "learned"` uses σ̃ = σ / mean(σ) from the agent's learned σ (robbench's
form before standard-v1; measurably weaker on agents with anisotropic σ such as SA-PPO, whose
small-σ dimensions it over-weights). Its gradient vanishes at ŝ = s, so the search starts at a random corner at distance
`step` (the reference draws sign(N(0, 1)) per coordinate) and takes K noisy sign-gradient ascent
steps, the noise √(2·step)/(i + 2)·N(0, 1) added to the gradient before the sign (SGLD with β = 1,
as SA-PPO's `apply_attack`, ATTACK_METHOD "action"). Step = ε/K unless given.
"""

from __future__ import annotations

import math

import torch

from robbench.errors import RobbenchError
from robbench.pgd import sign_gradient_ascent
from robbench.registry import register_attack
from robbench.threat import IterativeAttack, Victim


@register_attack("mad")
class MADAttack(IterativeAttack):
    description = "maximise Σ((μ(ŝ) − μ(s))/σ̃)² (σ̃ ≡ 1) by K noisy (SGLD) sign-gradient steps from a random corner"

    def __init__(self, eps: float, **params):
        super().__init__(eps, **params)
        if self.params["weights"] not in ("unit", "learned"):
            raise RobbenchError(f"attack 'mad': weights must be 'unit' or 'learned', got {self.params['weights']!r}")

    @classmethod
    def default_params(cls) -> dict:
        return {**super().default_params(), "weights": "unit"}

    def perturb(self, victim: Victim, states: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            clean_mean = victim.mean(states)
        inv_scale = normalised_inverse_std(victim) if self.params["weights"] == "learned" else 1.0

        def action_deviation(x: torch.Tensor) -> torch.Tensor:
            return ((victim.mean(x) - clean_mean) * inv_scale).pow(2).sum(-1)

        noise_scale = math.sqrt(2.0 * self.step_size)
        return sign_gradient_ascent(
            action_deviation, states, self.eps, gen, steps=self.steps, step_size=self.step_size,
            start="corner", noise=lambda i: noise_scale / (i + 2), maximize=True,
        )


def normalised_inverse_std(victim: Victim) -> torch.Tensor:
    """1 / σ̃ with σ̃ = σ / mean(σ) (the reference's "normalize stdev, avoid numerical issue")."""
    std = victim.std
    return std.mean() / std
