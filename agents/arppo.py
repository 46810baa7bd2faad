"""`arppo` and `arppo-noguide` — AR-PPO, paper Algorithm 2 (spec/trainers.md, "arppo")."""

from __future__ import annotations

import torch

from robbench.agents._robust import SurrogateAdversaryObjective, pgd_min_surrogate
from robbench.agents.barppo import BARPPO_KAPPA
from robbench.ppo import Minibatch, PPOCore
from robbench.registry import register_trainer


@register_trainer("arppo")
class ARPPO(SurrogateAdversaryObjective):
    """AR-PPO: PPO + κ·(PPO surrogate at the surrogate-worst ŝ ∈ B_ε(s), found by PGD) (paper Alg. 2).

    Inner (Alg. 2 line 8): ŝ = argmin over B_{ε_t}(s) of g(π_θ(a|ŝ)/π_old(a|s), Â), the strongest
    adversary for the PPO objective: 10 projected sign-gradient *descent* steps of ε_t/10 from
    s + U[−ε_t/10, ε_t/10]^d (`pgd_min_surrogate`). Outer (lines 9-10): Loss = −g(r(s), Â) + κ·L_ar,
    L_ar = mean(−c_ent·H − g(π_θ(a|ŝ)/π_old(a|s), Â)), ŝ held fixed (no second-order terms).
    κ defaults to the BAR-PPO values (spec): 0.3 (hopper, walker2d, halfcheetah), 1.0 (ant, humanoid).

    Departures:
    - −(1/β)·H in L_ar read as the usual entropy bonus −c_ent·H (as for `barppo`); the core's own
      −c_ent·H is kept too, so at ε = 0 the loss is exactly (1 + κ)·(PPO loss).
    - "A random start in the ball" is the shared solver's uniform start within one step of s.
    """

    board_notes = {"*": "AR-PPO's inner PGD (`arppo`, `arppo-noguide`) starts within one step (ε_t/10) of s; the "
                        "reference's CAR solver starts anywhere in the ball (U[−ε_t, ε_t])"}

    KAPPA = BARPPO_KAPPA

    def adversarial_states(self, core: PPOCore, mb: Minibatch, eps: float) -> torch.Tensor:
        return pgd_min_surrogate(core, mb, eps, self.inner_steps, self.step_size(eps), fast=self.fast_path)


@register_trainer("arppo-noguide")
class ARPPONoGuide(ARPPO):
    """AR-PPO without SPO guidance ("ARPO", paper Tables 1, 4, 6): optimises L_ar alone.

    Same inner solver and L_ar as `arppo`; the clean surrogate is dropped (surrogate_weight = 0)
    and L_ar has weight 1, so there is no κ. The core's entropy bonus −c_ent·H stays.
    """

    KAPPA = None
    surrogate_weight = 0.0
