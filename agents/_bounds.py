"""What the bound-based trainers (`sappo-convex`, `radial`, `wocar`) share. Not a trainer itself.

- `PolicyMeanBounds`: one auto-LiRPA `BoundedModule` of the policy mean μ, built once per trainer
  (tracing costs ~0.1 s; rebuilding it per minibatch would dominate training). auto-LiRPA wraps the
  module without copying it: the BoundedModule's parameters *are* `core.policy.mean_net`'s, so the
  bounds follow every optimizer step and their gradients land in the policy (tested).
- `ramp_fraction`: how far the core's ε ramp has gone (0 → 1), for schedules that move "alongside ε".
- `sgld_kl_regulariser`: the SA-PPO SGLD regulariser R (trainers.md, sappo), used by `wocar`.
  The `sappo` trainer computes the same quantity; the two should be merged when both exist.
- `apply_ppo_overrides`: per-trainer PPO settings (HalfCheetah's reference configs of SA-PPO
  convex and RADIAL use other learning rates), applied in `Objective.setup`; see its docstring.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from robbench.errors import RobbenchError
from robbench.lirpa_compat import bounded_module, bounds, mixed_ibp_crown_ibp
from robbench.pgd import sign_gradient_ascent
from robbench.policy import GaussianPolicy

#: HalfCheetah's reference settings for SA-PPO (convex) and RADIAL-PPO (trainers.md).
HALFCHEETAH_PPO = {"policy_lr": 1e-4, "value_lr": 1e-3, "entropy_coef": 1e-4, "anneal_lr": False}

#: PPO settings a trainer may change after the core is built: each is read afresh every iteration
#: (learning rates and annealing by `PPOCore._set_lr`, the entropy coefficient by `update`).
OVERRIDABLE_PPO = {"policy_lr": float, "value_lr": float, "entropy_coef": float, "anneal_lr": bool}

#: Langevin temperature of SA-PPO's SGLD solver (reference: "beta = 1e-5"; negligible noise).
SGLD_TEMPERATURE = 1e-5


class PolicyMeanBounds:
    """Certified bounds of μ(ŝ) over B_ε(s) for every row of a batch, via one shared BoundedModule."""

    def __init__(self, policy: GaussianPolicy):
        obs_dim = policy.mean_net[0].in_features
        self.mean_net = policy.mean_net
        self.bmodel = bounded_module(policy.mean_net, torch.zeros(1, obs_dim))

    def ibp(self, obs: torch.Tensor, eps: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Interval bound propagation: [μ_lo, μ_hi], differentiable in the policy parameters."""
        return bounds(self.bmodel, obs, eps, "ibp")

    def mixed(self, obs: torch.Tensor, eps: float, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """β·IBP + (1 − β)·CROWN-IBP (both sound, so the mix is sound); β = 1 costs one IBP pass."""
        return mixed_ibp_crown_ibp(self.bmodel, obs, eps, beta)


def ramp_fraction(core: Any) -> float:
    """Fraction of the core's ε ramp completed: ε_t / ε (1 when the target ε is 0)."""
    return core.eps_now / core.cfg.eps if core.cfg.eps > 0 else 1.0


def sgld_kl_regulariser(
    policy: GaussianPolicy, obs: torch.Tensor, eps: float, gen: torch.Generator, steps: int = 10,
    clean_mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """SA-PPO's R = mean_batch Σ_i ((μ_i(ŝ) − μ_i(s))/σ_i)² with ŝ from SGLD (trainers.md, sappo).

    ŝ: `steps` sign-gradient ascent steps of size ε/steps on the same quantity (σ and μ(s) detached),
    from a random corner at distance one step, with Langevin noise of std √(2·step·1e-5)/(i+2) added
    to the gradient of the batch-*mean* quantity at step i (the reference's schedule), projected onto
    B_ε(s). The shared solver differentiates the batch *sum*, so the noise std is multiplied by the
    batch size to keep the reference's noise-to-gradient ratio. In R itself μ(s) is detached and σ
    is not (so R also pushes σ up), as in the reference (SA_PPO `get_state_kl_bound_sgld`).
    `clean_mean`: μ(s), if the caller has it already.
    """
    if eps <= 0:
        return obs.new_zeros(())
    if clean_mean is None:
        with torch.no_grad():
            clean_mean = policy(obs)
    clean_mean = clean_mean.detach()
    inv_std = torch.exp(-policy.log_std.detach())
    step = eps / steps

    def kl(x: torch.Tensor) -> torch.Tensor:
        return ((policy(x) - clean_mean) * inv_std).pow(2).sum(-1)

    noise_scale = obs.shape[0] * math.sqrt(2.0 * step * SGLD_TEMPERATURE)
    perturbed = sign_gradient_ascent(
        kl, obs, eps, gen, steps=steps, start="corner", noise=lambda i: noise_scale / (i + 2)
    )
    return ((policy(perturbed) - clean_mean) / policy.std).pow(2).sum(-1).mean()


def check_ppo(value: Any) -> dict[str, Any]:
    """The `ppo` setting: a JSON object of PPO settings from `OVERRIDABLE_PPO`; one-line error otherwise."""
    if not isinstance(value, dict):
        raise RobbenchError(f"setting 'ppo' must be a JSON object of PPO settings, got {value!r}")
    for key, item in value.items():
        kind = OVERRIDABLE_PPO.get(key)
        if kind is None:
            raise RobbenchError(
                f"setting 'ppo' cannot change {key!r}; valid keys: {', '.join(sorted(OVERRIDABLE_PPO))}"
            )
        if kind is bool and not isinstance(item, bool):
            raise RobbenchError(f"ppo.{key} must be true or false, got {item!r}")
        if kind is float and (isinstance(item, bool) or not isinstance(item, (int, float)) or item < 0):
            raise RobbenchError(f"ppo.{key} must be a number ≥ 0, got {item!r}")
    return {key: OVERRIDABLE_PPO[key](item) for key, item in value.items()}


def apply_ppo_overrides(core: Any, overrides: dict[str, Any]) -> None:
    """Set trainer-specific PPO settings (checked by `check_ppo`) on a freshly built core.

    Called from `Objective.setup`. The core has no hook for a trainer to change PPO settings before
    it is built, so they are written into `core.cfg`; they take effect from the first iteration (the
    core re-reads them every iteration) and are recorded in the checkpoint's `config`, which is
    written after training.
    """
    for key, value in overrides.items():
        setattr(core.cfg, key, value)


def check_number(name: str, value: Any, low: float = 0.0) -> float:
    """A trainer setting that must be a finite number ≥ `low`; one-line error otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < low:
        raise RobbenchError(f"setting {name!r} must be a finite number ≥ {low:g}, got {value!r}")
    return float(value)


def check_int(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise RobbenchError(f"setting {name!r} must be an integer ≥ {low}, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise RobbenchError(f"setting {name!r} must be one of {', '.join(choices)}, got {value!r}")
    return value
