"""`sappo-convex` — SA-PPO with the convex-relaxation regulariser (Zhang et al. 2020; trainers.md)."""

from __future__ import annotations

from typing import Any

import torch

from robbench.agents._bounds import (
    PolicyMeanBounds, check_number, check_ppo, ramp_fraction,
)
from robbench.envs import get_env_spec
from robbench.errors import RobbenchError
from robbench.ppo import Minibatch, Objective, PPOCore
from robbench.registry import register_trainer

def convex_kl_bound(
    bounds: PolicyMeanBounds, policy: torch.nn.Module, obs: torch.Tensor, eps: float, beta: float,
    mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample Σ_i u_i²/σ_i², u = max(|lb − μ(s)|, |ub − μ(s)|) with [lb, ub] ⊇ μ(B_ε(s)).

    [lb, ub] = β·IBP + (1 − β)·CROWN-IBP. u bounds |μ(ŝ) − μ(s)| for every ŝ in the ball, so the
    result upper-bounds SA-PPO's SGLD quantity ((μ(ŝ) − μ(s))/σ)² (= 2·KL for a fixed σ) at any ŝ.
    Neither μ(s) nor σ is detached (the reference's convex path), so gradients reach every policy
    parameter through the bounds, μ(s) and σ.
    """
    mean = policy(obs) if mean is None else mean  # `mean`: μ(s) with its graph, if the caller has it
    lb, ub = bounds.mixed(obs, eps, beta)
    u = torch.maximum((lb - mean).abs(), (ub - mean).abs())
    return (u / policy.std).pow(2).sum(-1)


@register_trainer("sappo-convex")
class SAPPOConvex(Objective):
    """SA-PPO, convex relaxation: κ·certified bound on the policy's change over the ε-ball (auto-LiRPA).

    Loss = −g(r, Â) − c_ent·H + κ·R, R = mean_batch Σ_i u_i²/σ_i² with u = max(|lb − μ(s)|, |ub − μ(s)|)
    and [lb, ub] the bounds of μ over B_{ε_t}(s) from auto-LiRPA: β_t·IBP + (1 − β_t)·CROWN-IBP, β_t
    ramping 0 → 1 alongside ε_t (so training ends on pure IBP), gradients flowing through the bounds
    (trainers.md, "sappo-convex"; Zhang et al. 2020; reference SA_PPO `get_state_kl_bound`).

    Settings: `kappa` (κ per env: 0.1, 0.1, 0.1, 0.003 for hopper, walker2d, halfcheetah, ant;
    humanoid 0.01 from the reference's humanoid config), `beta_start`/`beta_end` (the β ramp, 0 → 1),
    `ppo` (PPO settings changed for this trainer: HalfCheetah uses the reference's policy lr 1e-4,
    value lr 1e-3, entropy 1e-4 and no lr annealing).

    Faithful to the reference: μ(s) and σ are not detached in R; ε_t and β_t advance every
    minibatch. Robbench specifics: one BoundedModule sharing the policy's parameters is built once;
    at ε_t = 0 the term is skipped (R is exactly 0 there).
    """

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.kappa = check_number("kappa", params.get("kappa", 0.1))
        self.beta_start = check_number("beta_start", params.get("beta_start", 0.0))
        self.beta_end = check_number("beta_end", params.get("beta_end", 1.0))
        for name, beta in (("beta_start", self.beta_start), ("beta_end", self.beta_end)):
            if beta > 1.0:
                raise RobbenchError(f"setting {name!r} must lie in [0, 1], got {beta:g}")
        self.ppo = check_ppo(params.get("ppo", {}))

    @classmethod
    def defaults(cls, env: str) -> dict[str, Any]:
        spec = get_env_spec(env).trainers  # one-line error for an unknown env
        return {
            "kappa": spec.sappo_convex_kappa,
            "beta_start": 0.0,
            "beta_end": 1.0,
            "ppo": dict(spec.bound_trainer_ppo),
        }

    def ppo_overrides(self) -> dict[str, Any]:
        return dict(self.ppo)

    def setup(self, core: PPOCore) -> None:
        self.bounds = PolicyMeanBounds(core.policy)

    def beta(self, core: PPOCore) -> float:
        """β_t: linear from beta_start to beta_end over the ε ramp."""
        beta = self.beta_start + (self.beta_end - self.beta_start) * ramp_fraction(core)
        return min(1.0, max(0.0, beta))

    def extra_loss(self, core: PPOCore, mb: Minibatch) -> torch.Tensor | None:
        eps = core.eps_now
        if eps == 0.0 or self.kappa == 0.0:
            return None
        return self.kappa * convex_kl_bound(self.bounds, core.policy, mb.obs, eps, self.beta(core), mb.mean).mean()
