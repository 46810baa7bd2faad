"""`none` — the natural (unattacked) return: ŝ = s."""

import torch

from robbench.registry import register_attack
from robbench.threat import Attack, Victim


@register_attack("none")
class NoAttack(Attack):
    description = "natural return, ŝ = s"

    def perturb(self, victim: Victim, states: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return states
