"""`arppo` and `arppo-noguide` — AR-PPO, paper Algorithm 2 (spec/trainers.md, "arppo")."""

from __future__ import annotations

import torch

from typing import Any

from robbench.agents._bounds import check_choice
from robbench.agents._robust import SurrogateAdversaryObjective, pgd_min_surrogate
from robbench.agents.barppo import BARPPO_KAPPA
from robbench.ppo import Minibatch, PPOCore
from robbench.registry import register_trainer

PGD_STARTS = {"ball": "ball", "step": "uniform"}
"""`pgd_start` -> the shared solver's start: anywhere in the ball (the reference CAR solver's,
U[−ε_t, ε_t]) or within one step of s (U[−ε_t/K, ε_t/K], robbench before 2026-12)."""
LEGACY_PGD_START = "step"
"""What a recorded config without `pgd_start` was trained with (the setting did not exist yet)."""


@register_trainer("arppo")
class ARPPO(SurrogateAdversaryObjective):
    """AR-PPO: PPO + κ·(PPO surrogate at the surrogate-worst ŝ ∈ B_ε(s), found by PGD) (paper Alg. 2).

    Inner (Alg. 2 line 8): ŝ = argmin over B_{ε_t}(s) of g(π_θ(a|ŝ)/π_old(a|s), Â), the strongest
    adversary for the PPO objective: 10 projected sign-gradient *descent* steps of ε_t/10 from a
    random start (`pgd_min_surrogate`): `pgd_start` "ball" (default; the reference CAR solver's,
    s + U[−ε_t, ε_t]^d) or "step" (s + U[−ε_t/10, ε_t/10]^d, what agents trained before the setting
    existed used; their recorded configs lack it and are read as "step").
    Outer (lines 9-10): Loss = −g(r(s), Â) + κ·L_ar, L_ar = mean(−c_ent·H − g(π_θ(a|ŝ)/π_old(a|s), Â)),
    ŝ held fixed (no second-order terms).
    κ defaults to the BAR-PPO values (spec): 0.3 (hopper, walker2d, halfcheetah), 1.0 (ant, humanoid).

    Departures:
    - −(1/β)·H in L_ar read as the usual entropy bonus −c_ent·H (as for `barppo`); the core's own
      −c_ent·H is kept too, so at ε = 0 the loss is exactly (1 + κ)·(PPO loss).
    """

    STEP_START_NOTE = ("AR-PPO's inner PGD (`arppo`, `arppo-noguide`) started within one step (ε_t/10) of s "
                       "(`pgd_start=step`); the reference's CAR solver starts anywhere in the ball (U[−ε_t, ε_t])")

    KAPPA = BARPPO_KAPPA
    legacy_settings = {"pgd_start": LEGACY_PGD_START}

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.pgd_start = check_choice("pgd_start", params.get("pgd_start", LEGACY_PGD_START), tuple(PGD_STARTS))

    @classmethod
    def defaults(cls, env: str) -> dict[str, Any]:
        return {**super().defaults(env), "pgd_start": "ball"}

    @classmethod
    def departures(cls, env: str, config: dict[str, Any]) -> list[str]:
        if not config:  # no recorded training config (a submitted entry): nothing to say
            return []
        start = (config.get("trainer") or {}).get("pgd_start", LEGACY_PGD_START)
        return [cls.STEP_START_NOTE] if start == "step" else []

    def adversarial_states(self, core: PPOCore, mb: Minibatch, eps: float) -> torch.Tensor:
        return pgd_min_surrogate(core, mb, eps, self.inner_steps, self.step_size(eps), fast=self.fast_path,
                                 start=PGD_STARTS[self.pgd_start])


@register_trainer("arppo-noguide")
class ARPPONoGuide(ARPPO):
    """AR-PPO without SPO guidance ("ARPO", paper Tables 1, 4, 6): optimises L_ar alone.

    Same inner solver and L_ar as `arppo`; the clean surrogate is dropped (surrogate_weight = 0)
    and L_ar has weight 1, so there is no κ. The core's entropy bonus −c_ent·H stays.
    """

    KAPPA = None
    surrogate_weight = 0.0
