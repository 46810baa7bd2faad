"""`apgd_mad` and `apgd_critic` — the untargeted white-box objectives at full strength.

Both run Auto-PGD in ℓ∞ (robbench.pgd.apgd_ascent; Croce & Hein 2020, the first member of
AutoAttack): step 2ε halved per state when progress stalls, momentum 0.75, a uniform start in the
ball, the best iterate kept, `steps` iterations per environment step (default 20, as `targeted`) and `restarts`
random restarts (default 1).

- `apgd_mad` maximises the action deviation ‖μ(ŝ) − μ(s)‖² with unit weights: the form the SA-PPO
  reference evaluates a deterministic victim with (σ̃ ≡ 1), without MAD's SGLD noise.
- `apgd_critic` minimises the agent's own state value V(ŝ) (the `critic` attack's objective). It
  needs a critic; an agent without one gets no cell for it (the evaluator says so).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch

from robbench.pgd import apgd_ascent
from robbench.registry import register_attack
from robbench.threat import Attack, Victim, resolve_steps


class APGDAttack(Attack):
    """An attack that maximises a per-state objective with APGD; owns `steps` and `restarts`."""

    def __init__(self, eps: float, **params: Any):
        super().__init__(eps, **params)
        self.steps, _ = resolve_steps(self.name, self.eps, {"steps": self.params["steps"], "step_size": None})
        self.restarts, _ = resolve_steps(self.name, self.eps, {"steps": self.params["restarts"], "step_size": None})

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"steps": 20, "restarts": 1}

    @abstractmethod
    def objective(self, victim: Victim, states: torch.Tensor):
        """The per-state objective APGD maximises, as a function of the perturbed states."""

    def perturb(self, victim: Victim, states: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return apgd_ascent(self.objective(victim, states), states, self.eps, gen, steps=self.steps,
                           restarts=self.restarts)


@register_attack("apgd_mad")
class APGDMADAttack(APGDAttack):
    description = "APGD (20 steps) maximising ‖μ(ŝ) − μ(s)‖² (unit weights, as the reference evaluates)"

    def objective(self, victim: Victim, states: torch.Tensor):
        with torch.no_grad():
            clean_mean = victim.mean(states)
        return lambda x: (victim.mean(x) - clean_mean).pow(2).sum(-1)


@register_attack("apgd_critic")
class APGDCriticAttack(APGDAttack):
    description = "APGD (20 steps) minimising the agent's own value V(ŝ)"
    needs_critic = True

    def objective(self, victim: Victim, states: torch.Tensor):
        return lambda x: -victim.value(x)
