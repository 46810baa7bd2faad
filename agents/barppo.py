"""`barppo` and `barppo-noguide` — BAR-PPO, paper Algorithm 3 (spec/trainers.md, "barppo")."""

from __future__ import annotations

import torch

from robbench.agents._robust import SurrogateAdversaryObjective, sgld_max_divergence
from robbench.ppo import Minibatch, PPOCore
from robbench.registry import register_trainer

BARPPO_KAPPA = "barppo_kappa"
"""κ per env: `EnvSpec.trainers.barppo_kappa` (paper Table 8 / spec). Humanoid (paper App. G.3
grid-searched {0.1, 0.3, 1.0} but does not say which won): the ant value, as humanoid shares ant's
4882-iteration, lr 5e-5 regime."""


@register_trainer("barppo")
class BARPPO(SurrogateAdversaryObjective):
    """BAR-PPO: PPO + κ·(PPO surrogate at the KL-worst ŝ ∈ B_ε(s), found by SGLD) (paper Alg. 3).

    Inner (Alg. 3 line 8): ŝ = argmax over B_{ε_t}(s) of KL(π_θ(·|s) ‖ π_θ(·|ŝ)), by SA-PPO's SGLD
    solver (`sgld_max_divergence`: 10 sign steps of ε_t/10 from a random corner, temperature 1e-5).
    Outer (lines 9-10): Loss = −g(r(s), Â) + κ·L_bar, L_bar = mean(−c_ent·H − g(π_θ(a|ŝ)/π_old(a|s), Â)),
    ŝ held fixed. κ: hopper/walker2d/halfcheetah 0.3, ant 1.0 (Table 8); humanoid 1.0 (our choice).

    Departures (spec "barppo"):
    - The paper's −(1/β)·H in L_bar is read as the usual entropy bonus −c_ent·H with the env's
      coefficient (0 in every reference config). The core's own PPO entropy bonus −c_ent·H is kept
      as well, so at ε = 0 the loss is exactly (1 + κ)·(PPO loss).
    - The inner maximises R = 2·KL with SA-PPO's solver unchanged (same argmax; the SGLD noise is
      calibrated on R, as in SA-PPO), σ detached inside the inner problem.
    - SGLD noise scaled by the minibatch size to match the reference's batch-mean gradient (see
      `sgld_max_divergence`).
    """

    KAPPA = BARPPO_KAPPA

    def adversarial_states(self, core: PPOCore, mb: Minibatch, eps: float) -> torch.Tensor:
        return sgld_max_divergence(core, mb.obs, eps, self.inner_steps, self.step_size(eps), fast=self.fast_path)


@register_trainer("barppo-noguide")
class BARPPONoGuide(BARPPO):
    """BAR-PPO without SPO guidance ("BARPO (w/o g)", paper Tables 4, 6): optimises L_bar alone.

    Same inner solver and L_bar as `barppo`; the clean surrogate −g(r(s), Â) is dropped
    (surrogate_weight = 0) and L_bar has weight 1, so there is no κ. The core's entropy bonus
    −c_ent·H stays (0 in every reference config).
    """

    KAPPA = None
    surrogate_weight = 0.0
