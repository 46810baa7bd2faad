"""`critic` — drive the victim's own state value down (spec/attacks.md; Pattanaik et al. 2018 style).

Reference (SA-PPO `apply_attack`, ATTACK_METHOD "critic"): start at s + U[−step, step]^d, then K
steps of ŝ ← Π(ŝ − step·sign(∇V(ŝ))) with the PPO value network V, step = ε/K unless given.
Departure: the reference leaves the random start unprojected (harmless, step ≤ ε by default); here
every iterate, the start included, is projected onto B_ε(s), so any `step_size` is safe.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from robbench.errors import RobbenchError
from robbench.pgd import sign_gradient_ascent
from robbench.registry import register_attack
from robbench.threat import Attack, Victim


@register_attack("critic")
class CriticAttack(Attack):
    description = "K steps of ŝ ← Π(ŝ − step·sign(∇V(ŝ))) from s + U[−step, step]: lower the agent's own V"

    def __init__(self, eps: float, **params: Any):
        super().__init__(eps, **params)
        self.steps, self.step_size = checked_steps(self.name, self.eps, self.params)

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"steps": 10, "step_size": None}  # None: ε / steps (the protocol default)

    def config(self) -> dict[str, Any]:
        """The step size is recorded resolved, so a default and an explicit ε/K share a cell."""
        return {"eps": self.eps, "steps": self.steps, "step_size": self.step_size}

    def perturb(self, victim: Victim, states: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return sign_gradient_ascent(
            victim.value, states, self.eps, gen, steps=self.steps, step_size=self.step_size,
            start="uniform", maximize=False,
        )


def checked_steps(attack: str, eps: float, params: dict[str, Any]) -> tuple[int, float]:
    """Validate `steps` (int ≥ 1) and `step_size` (None → ε/steps, else a finite number ≥ 0)."""
    steps, step_size = params["steps"], params["step_size"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise RobbenchError(f"attack {attack!r}: steps must be an integer ≥ 1, got {steps!r}")
    if step_size is None:
        return steps, eps / steps
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or not math.isfinite(step_size) \
            or step_size < 0:
        raise RobbenchError(f"attack {attack!r}: step_size must be a finite number ≥ 0 or null, got {step_size!r}")
    return steps, float(step_size)
