"""What the state-adversarial PPO trainers share: settings, inner solvers and the robust surrogate.

Used by `sappo`, `arppo(-noguide)` and `barppo(-noguide)` (spec/trainers.md). Every trainer is the PPO
core plus one `extra_loss`; the inner problems below run on the minibatch being updated, with the
policy being updated, inside every one of the 320 minibatch steps of an iteration, and are solved
by the shared batched solver `robbench.pgd.sign_gradient_ascent` (one batched op per inner step).

Speed: every inner objective here is a plain autograd function of the policy. A trainer whose
`fast_path` is true (`Objective.fast_path`) passes `fast=True`, and the solver then takes its gradient
from `robbench.fastpath` (hand-written through the policy mean on sigmoid units; same gradient up to
float rounding, tests/test_fast_paths.py; what it buys: benchmarks/README.md).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any, ClassVar

import torch

from robbench import fastpath
from robbench.envs import get_env_spec
from robbench.errors import RobbenchError
from robbench.pgd import sign_gradient_ascent
from robbench.policy import gaussian_log_prob
from robbench.ppo import Minibatch, Objective, PPOCore

INNER_STEPS = 10
"""K: inner steps of size ε_t/K (ppo.md "Robust-training schedule"; paper App. F.3)."""
SGLD_TEMPERATURE = 1e-5
"""Langevin temperature of the SGLD inner solver (SA-PPO's `get_state_kl_bound_sgld`, reference
"beta = 1e-5": negligible noise; paper App. F.3)."""


# ------------------------------------------------------------------------------------ settings
class StateAdversarialObjective(Objective):
    """Base of the trainers here: κ (when the method has one) and the inner-solver settings.

    Parameters (all recorded in the checkpoint's `config.trainer`): `kappa` (weight κ of the robust
    term; absent for the "-noguide" ablations, which optimise the robust term alone),
    `inner_steps` (K) and `step_scale` (inner step = step_scale·ε_t/K; paper App. G.5 ablates
    both).
    """

    fast_path = True  # the inner solvers' gradients from robbench.fastpath (benchmarks/README.md)

    KAPPA: ClassVar[str | None] = None
    """The field of `EnvSpec.trainers` (robbench/envs.py) holding this method's κ per env; None
    for methods without κ."""

    def __init__(self, **params: Any):
        super().__init__(**params)
        # weight of the robust term: κ, or 1 for the "-noguide" ablations (the robust term alone)
        self.robust_weight = 1.0 if self.KAPPA is None else _number(self.method, params, "kappa", minimum=0.0)
        self.inner_steps = int(_number(self.method, params, "inner_steps", minimum=1.0, integer=True))
        self.step_scale = _number(self.method, params, "step_scale", minimum=0.0, strict=True)

    @classmethod
    def defaults(cls, env: str) -> dict[str, Any]:
        spec = get_env_spec(env)  # one-line error for an unknown env
        kappa = {} if cls.KAPPA is None else {"kappa": getattr(spec.trainers, cls.KAPPA)}
        return {**kappa, "inner_steps": INNER_STEPS, "step_scale": 1.0}

    def step_size(self, eps: float) -> float:
        return self.step_scale * eps / self.inner_steps


def _number(method: str, params: dict[str, Any], key: str, minimum: float, strict: bool = False,
            integer: bool = False) -> float:
    if key not in params:
        raise RobbenchError(f"method {method!r} needs the setting {key!r}")
    value = params[key]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > minimum if strict else value >= minimum) and (not integer or float(value).is_integer())
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = f"> {minimum:g}" if strict else f"≥ {minimum:g}"
        raise RobbenchError(f"{method} setting {key} must be {kind} {bound}, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------- inner solvers
@torch.no_grad()
def clean_mean(core: PPOCore, obs: torch.Tensor) -> torch.Tensor:
    """μ(s), held fixed (detached) wherever it is a target."""
    return core.policy(obs)


def sgld_max_divergence(core: PPOCore, obs: torch.Tensor, eps: float, steps: int, step_size: float,
                        mean: torch.Tensor | None = None, fast: bool = False) -> torch.Tensor:
    """SA-PPO's SGLD solver: ŝ ≈ argmax over B_ε(s) of R(ŝ) = Σ((μ(ŝ) − μ(s))/σ)² (σ detached).

    Random corner start at distance one step; K noisy sign-gradient ascent steps, the Gaussian
    noise of std √(2·step·β⁻¹)/(i + 2) added to the gradient of the batch-*mean* R before the sign
    (reference `get_state_kl_bound_sgld`). The shared solver differentiates the batch *sum*, so
    the noise std is multiplied by the batch size B to keep the reference's noise-to-gradient
    ratio. Argmax R = argmax KL, so BAR-PPO uses this solver unchanged. `mean`: μ(s) if the
    caller already has it. `fast`: ∇R by `robbench.fastpath.divergence_gradient` (which, without
    `mean`, takes μ(s) from its own forward) instead of autograd.
    """
    if eps == 0.0:
        return obs
    inv_var = torch.exp(-2.0 * core.policy.log_std.detach())
    gradient = fastpath.divergence_gradient(core.policy, obs, inv_var, mean) if fast else None
    if gradient is None and mean is None:  # (the fast gradient never calls `divergence`)
        mean = clean_mean(core, obs)

    def divergence(x: torch.Tensor) -> torch.Tensor:
        return ((core.policy(x) - mean).pow(2) * inv_var).sum(-1)

    base = obs.shape[0] * math.sqrt(2.0 * step_size * SGLD_TEMPERATURE)
    return sign_gradient_ascent(
        divergence, obs, eps, core.gen, steps=steps, step_size=step_size, start="corner",
        noise=lambda i: base / (i + 2), maximize=True, gradient=gradient,
    )


def sa_regulariser(core: PPOCore, obs: torch.Tensor, eps: float, steps: int, step_size: float,
                   mean: torch.Tensor | None = None, perturbed_mean: torch.Tensor | None = None,
                   fast: bool = False) -> torch.Tensor:
    """SA-PPO's R = mean_batch Σ_i ((μ_i(ŝ) − μ_i(s))/σ_i)² at the SGLD ŝ (`sgld_max_divergence`).

    μ(s) is detached, σ is not (reference `robust_ppo_detach_stdev: False`), ŝ is a constant.
    Used by `sappo` (weight κ) and `wocar` (weight κ_KL). `mean`: μ(s) if the caller has it;
    `perturbed_mean`: μ(ŝ) (with graph) if the caller already found ŝ (`sa_perturbed_states`) and
    evaluated it (the core's `mb.perturbed_mean`); `fast`: as for `sgld_max_divergence`.
    """
    target = clean_mean(core, obs) if mean is None else mean.detach()
    if perturbed_mean is None:
        perturbed_mean = core.policy(sgld_max_divergence(core, obs, eps, steps, step_size, target, fast))
    return ((perturbed_mean - target) / core.policy.std).pow(2).sum(-1).mean()


def sa_perturbed_states(core: PPOCore, obs: torch.Tensor, eps: float, steps: int,
                        step_size: float, fast: bool = False) -> torch.Tensor | None:
    """The SGLD ŝ of `sa_regulariser`, for `Objective.perturbed_states` (None at ε = 0: nothing to
    merge). μ(s) is the solver's own: the policy's forward, or with `fast` the fast path's
    sigmoid-form one (equal to the core's μ(s) up to float rounding)."""
    return None if eps == 0.0 else sgld_max_divergence(core, obs, eps, steps, step_size, fast=fast)


def pgd_min_surrogate(core: PPOCore, mb: Minibatch, eps: float, steps: int, step_size: float,
                      fast: bool = False, start: str = "uniform") -> torch.Tensor:
    """AR-PPO's inner problem: ŝ ≈ argmin over B_ε(s) of g(π_θ(a|ŝ)/π_old(a|s), Â) (σ detached).

    K projected sign-gradient descent steps from a random start: `start` "uniform" draws it within
    one step, s + U[−step, step]^d; "ball" anywhere in the ball, s + U[−ε, ε]^d (the reference CAR
    solver's). `fast`: the gradient's sign by `robbench.fastpath.surrogate_gradient` instead of autograd.
    """
    if eps == 0.0:
        return mb.obs
    log_std = core.policy.log_std.detach()

    def surrogate(x: torch.Tensor) -> torch.Tensor:
        return core.surrogate(gaussian_log_prob(core.policy(x), log_std, mb.actions), mb)

    gradient = fastpath.surrogate_gradient(core.policy, mb, core.cfg.clip) if fast else None
    return sign_gradient_ascent(
        surrogate, mb.obs, eps, core.gen, steps=steps, step_size=step_size, start=start,
        maximize=False, gradient=gradient,
    )


# ---------------------------------------------------------------------------- outer objective
def robust_surrogate_loss(core: PPOCore, mb: Minibatch, perturbed: torch.Tensor | None,
                          perturbed_mean: torch.Tensor | None = None) -> torch.Tensor:
    """L_ar / L_bar (paper Alg. 2 line 9 / Alg. 3 line 9) = mean(−c_ent·H − g(π_θ(a|ŝ)/π_old(a|s), Â)).

    ŝ is a constant (no second-order terms); H is the usual entropy bonus (state-independent σ).
    `perturbed_mean`: μ(ŝ) if the caller has it (then `perturbed` is not used).
    """
    if perturbed_mean is None:
        perturbed_mean = core.policy(perturbed)
    log_probs = gaussian_log_prob(perturbed_mean, core.policy.log_std, mb.actions)
    loss = -core.surrogate(log_probs, mb).mean()
    if core.cfg.entropy_coef:  # 0 in every reference config: skip the ops
        loss = loss - core.cfg.entropy_coef * core.policy.entropy()
    return loss


class SurrogateAdversaryObjective(StateAdversarialObjective):
    """Loss = w_s·(−g(r(s), Â)) − c_ent·H [the core] + w·L(ŝ), L = `robust_surrogate_loss`.

    With guidance (w_s = 1): w = κ. Without ("-noguide", w_s = 0): w = 1, the robust term alone.
    Subclasses say how ŝ is found (`adversarial_states`).
    """

    @abstractmethod
    def adversarial_states(self, core: PPOCore, mb: Minibatch, eps: float) -> torch.Tensor:
        """ŝ ∈ B_ε(s) for the minibatch (the trainer's inner problem)."""

    def perturbed_states(self, core: PPOCore, mb: Minibatch) -> torch.Tensor:
        """ŝ found before the core's forward, so μ(s) and μ(ŝ) share one forward."""
        return self.adversarial_states(core, mb, core.eps_now)

    def extra_loss(self, core: PPOCore, mb: Minibatch) -> torch.Tensor:
        if mb.perturbed_mean is not None:  # the core evaluated our `perturbed_states`
            return self.robust_weight * robust_surrogate_loss(core, mb, None, mb.perturbed_mean)
        perturbed = self.adversarial_states(core, mb, core.eps_now)
        return self.robust_weight * robust_surrogate_loss(core, mb, perturbed)
