"""`pa_ad` and `pa_ad_pgd` — policy adversarial actor director (Sun et al. 2022; spec/attacks.md "PA-AD").

The *director* is a PPO agent (Gaussian MLP obs → act_dim, 64-64 tanh, std 1 at init, its own
value net) trained with robbench's PPO core on `AdversaryEnv` with reward −(victim's reward). Its
action d is a direction in the victim's *action* space (sampled while training, its mean at
evaluation). The *actor* turns d into a state perturbation that moves the victim's mean action μ
along d:

- `pa_ad` (FGSM actor, the paper's): draw n ~ U[−ε/10, ε/10]^d_obs, let Δ = μ(s + n) − μ(s), take
  g = ∇_n [cos(Δ, d) + ‖Δ‖₂] and set ŝ = s + ε·sign(g) — a corner of the ball; n itself is not
  added (reference `perturb_obs_fgsm`, noise scale ε / attack_steps with attack_steps = 10).
- `pa_ad_pgd` (a stronger actor, robbench's option): K = 10 projected sign-gradient ascent steps of
  size ε/K on the same objective, from s + U[−ε/K, ε/K] (the shared `sign_gradient_ascent`).

Both actors are batched: μ(s) and μ(s + n) are one victim forward of 2N rows, then one backward.
Each director is trained with the actor it is evaluated with (separate artifacts per attack id).

Reference facts (umd-huang-lab/paad_adv_rl, code_mujoco): mode `adv_pa_ppo`, the director's
action sampled in training and its mean at evaluation (`paadvpolicy`), the victim's action sampled
(`policy_model.sample`) while the director trains, evaluation with `--deterministic`, the README's
grid-searched director for Ant: adv lr 3e-5, value lr 3e-5, entropy 0, clip 0.4; the env configs'
train_steps (976 iterations; ant 4882) and value clipping.

Deliberate departures, all recorded:
- Sign of the actor step. The reference minimises −mean(cos(Δ, d) + ‖Δ‖₂) and then *adds*
  ε·sign(∇ of that loss), which pushes μ *away* from d; a director trained that way simply learns
  the negated direction. robbench ascends the objective, pushing μ *along* d as the paper
  describes (the actor crafts the state perturbation that realises the policy change the director asks for).
- The paper preset's grid: the reference publishes only Ant's best director. robbench scans the
  same 216-point grid as SA-RL (ATLA's, with the env's learning-rate ladder, which contains that
  Ant point: levels 0/0, clip 0.4, entropy 0) at PA-AD's 976-iteration budget.
- The director's input passes through its own running observation filter (the PPO core's, frozen
  and saved with it); the reference feeds the victim-normalised state as is.
- A coordinate whose gradient is exactly 0 (or not finite) is left unperturbed (sign 0), as
  `torch.sign` does in the reference.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from robbench.attacks._adversary_env import Member, PPOAdversaryAttack, Preset, Perturber, reference_grid
from robbench.envs import get_env_spec
from robbench.pgd import sign_gradient_ascent
from robbench.registry import register_attack
from robbench.threat import Victim, project_to_ball

ACTOR_STEPS = 10
"""The reference's attack_steps: the FGSM noise scale is ε/10; the PGD actor takes 10 steps of ε/10."""

PA_AD_PRESETS: dict[str, Preset] = {
    "paper": Preset(976, reference_grid(), "ATLA's 216-point grid, 976 iterations ≈ 2M steps each (ant 4882)"),
    "medium": Preset(
        98,
        (
            Member(False, 0.4, 0.0, 2, 2),
            Member(False, 0.2, 0.0, 1, 1),
            Member(True, 0.4, 0.0, 2, 2),
            Member(True, 0.4, 0.0, 0, 0),
        ),
        "4 grid points, 98 iterations ≈ 200k steps each (a tenth of the paper budget)",
    ),
    "quick": Preset(
        49,
        (
            Member(False, 0.4, 0.0, 2, 2),
            Member(False, 0.2, 0.0, 1, 1),
            Member(True, 0.4, 0.0, 0, 0),  # the reference's Ant director (lr 3e-5 on Ant)
        ),
        "3 grid points, 49 iterations ≈ 100k steps each: a demo, not the protocol",
    ),
    "smoke": Preset(2, (Member(False, 0.4, 0.0, 2, 2),), "1 grid point, 2 iterations: checks that it runs"),
}


def direction_objective(delta: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Per-state cos(Δ, d) + ‖Δ‖₂: reward Δ = μ(ŝ) − μ(s) pointing along d and being large."""
    return F.cosine_similarity(delta, directions, dim=-1, eps=1e-8) + delta.norm(dim=-1)


def fgsm_actor(
    victim: Victim, states: torch.Tensor, directions: torch.Tensor, eps: float, gen: torch.Generator
) -> torch.Tensor:
    """One FGSM step that moves μ along `directions`: ŝ = s + ε·sign(∇_n [cos(Δ, d) + ‖Δ‖₂])."""
    states = states.detach()
    n = states.shape[0]
    noise = (torch.rand(states.shape, generator=gen) * 2.0 - 1.0) * (eps / ACTOR_STEPS)
    noisy = (states + noise).requires_grad_(True)
    with torch.enable_grad():
        means = victim.mean(torch.cat([states, noisy]))  # μ(s) and μ(s + n) in one batched forward
        delta = means[n:] - means[:n].detach()
        (grad,) = torch.autograd.grad(direction_objective(delta, directions.detach()).sum(), noisy)
    step = torch.sign(torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0))
    return project_to_ball(states + eps * step, states, eps)


def pgd_actor(
    victim: Victim, states: torch.Tensor, directions: torch.Tensor, eps: float, gen: torch.Generator,
    steps: int = ACTOR_STEPS,
) -> torch.Tensor:
    """K projected sign-gradient steps of size ε/K on cos(Δ, d) + ‖Δ‖₂ from s + U[−ε/K, ε/K]."""
    states, directions = states.detach(), directions.detach()
    with torch.no_grad():
        clean_mean = victim.mean(states)

    def objective(x: torch.Tensor) -> torch.Tensor:
        return direction_objective(victim.mean(x) - clean_mean, directions)

    return sign_gradient_ascent(objective, states, eps, gen, steps=steps, step_size=eps / steps, start="uniform")


@register_attack("pa_ad")
class PAADAttack(PPOAdversaryAttack):
    description = "learned PPO director d in action space + FGSM actor moving μ along d; min over a grid"

    PAPER_ITERATIONS: ClassVar[int] = 976
    PAPER_ITERATIONS_LONG: ClassVar[int] = 4882
    PRESETS: ClassVar[dict[str, Preset]] = PA_AD_PRESETS
    STOCHASTIC_VICTIM: ClassVar[bool] = True

    def actor_config(self) -> dict[str, Any]:
        return {"actor": "fgsm", "actor_noise": self.eps / ACTOR_STEPS}

    def action_dim(self, victim: Victim) -> int:
        return victim.policy.mean_net[-1].out_features

    def value_clip(self, env: str) -> bool:
        return get_env_spec(env).value_clip  # the reference configs keep the env's PPO setting

    def perturber(self, victim: Victim, gen: torch.Generator) -> Perturber:
        eps = self.eps
        return lambda states, directions: fgsm_actor(victim, states, directions, eps, gen)


@register_attack("pa_ad_pgd")
class PAADPGDAttack(PAADAttack):
    description = "PA-AD with a 10-step PGD actor (stronger, slower); director trained with that actor"

    def actor_config(self) -> dict[str, Any]:
        return {"actor": "pgd", "actor_steps": ACTOR_STEPS, "actor_step_size": self.eps / ACTOR_STEPS}

    def perturber(self, victim: Victim, gen: torch.Generator) -> Perturber:
        eps = self.eps
        return lambda states, directions: pgd_actor(victim, states, directions, eps, gen)
