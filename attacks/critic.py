"""`critic` — drive the victim's own state value down (spec/attacks.md; Pattanaik et al. 2018 style).

Reference (SA-PPO `apply_attack`, ATTACK_METHOD "critic"): start at s + U[−step, step]^d, then K
steps of ŝ ← Π(ŝ − step·sign(∇V(ŝ))) with the PPO value network V, step = ε/K unless given.
Departure: the reference leaves the random start unprojected (harmless, step ≤ ε by default); here
every iterate, the start included, is projected onto B_ε(s), so any `step_size` is safe.
"""

from __future__ import annotations

import torch

from robbench.pgd import sign_gradient_ascent
from robbench.registry import register_attack
from robbench.threat import IterativeAttack, Victim


@register_attack("critic")
class CriticAttack(IterativeAttack):
    needs_critic = True
    description = "K steps of ŝ ← Π(ŝ − step·sign(∇V(ŝ))) from s + U[−step, step]: lower the agent's own V"

    def perturb(self, victim: Victim, states: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return sign_gradient_ascent(
            victim.value, states, self.eps, gen, steps=self.steps, step_size=self.step_size,
            start="uniform", maximize=False,
        )

