"""`random` — uniform noise in the ball, fresh every step (spec/attacks.md)."""

import torch

from robbench.registry import register_attack
from robbench.threat import Attack, Victim, project_to_ball


@register_attack("random")
class RandomAttack(Attack):
    description = "ŝ = s + u, u ~ U[−ε, ε]^d, fresh every step"

    def perturb(self, victim: Victim, states: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        noise = (torch.rand(states.shape, generator=gen) * 2.0 - 1.0) * self.eps
        return project_to_ball(states + noise, states, self.eps)
