"""What the bound-based trainers (`sappo-convex`, `radial`, `wocar`) share. Not a trainer itself.

- `PolicyMeanBounds`: bounds of the policy mean μ over the ε-ball; training uses the plain-torch
  `robbench.fastbounds` path, validated against one auto-LiRPA `BoundedModule` built once per trainer
  (tracing costs ~0.1 s; rebuilding it per minibatch would dominate training). auto-LiRPA wraps the
  module without copying it: the BoundedModule's parameters *are* `core.policy.mean_net`'s, so the
  bounds follow every optimizer step and their gradients land in the policy (tested).
- `ramp_fraction`: how far the core's ε ramp has gone (0 → 1), for schedules that move "alongside ε".
  The `sappo` trainer computes the same quantity; the two should be merged when both exist.
- `check_ppo`: validates per-trainer PPO settings (HalfCheetah's reference configs of SA-PPO
  convex and RADIAL use other learning rates: `EnvSpec.trainers.bound_trainer_ppo`), returned by
  `Objective.ppo_overrides`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from robbench.errors import RobbenchError
from robbench.fastbounds import FastMLPBounds, TanhTable
from robbench.lirpa_compat import bounded_module, bounds, mixed_ibp_crown_ibp
from robbench.policy import GaussianPolicy

#: PPO settings a trainer may change after the core is built: each is read afresh every iteration
#: (learning rates and annealing by `PPOCore._set_lr`, the entropy coefficient by `update`).
OVERRIDABLE_PPO = {"policy_lr": float, "value_lr": float, "entropy_coef": float, "anneal_lr": bool}


class PolicyMeanBounds:
    """Certified bounds of μ(ŝ) over B_ε(s) for every row of a batch.

    `ibp` and `mixed` (used in training) run the plain-torch `robbench.fastbounds.FastMLPBounds`
    on the live policy (same bounds and gradients as auto-LiRPA up to float rounding, several times
    faster; tests/test_fast_paths.py); it takes auto-LiRPA's tanh tangent tables from the shared
    BoundedModule, which stays available as the reference (`reference_ibp`, `reference_mixed`).
    """

    def __init__(self, policy: GaussianPolicy):
        obs_dim = policy.mean_net[0].in_features
        self.mean_net = policy.mean_net
        self.bmodel = bounded_module(policy.mean_net, torch.zeros(1, obs_dim))
        self.fast = FastMLPBounds(policy.mean_net, TanhTable.from_bounded_module(self.bmodel))

    def ibp(self, obs: torch.Tensor, eps: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Interval bound propagation: [μ_lo, μ_hi], differentiable in the policy parameters."""
        return self.fast.ibp(obs, eps)

    def mixed(self, obs: torch.Tensor, eps: float, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """β·IBP + (1 − β)·CROWN-IBP (both sound, so the mix is sound); β = 1 costs one IBP pass."""
        return self.fast.mixed(obs, eps, beta)

    def reference_ibp(self, obs: torch.Tensor, eps: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`ibp` computed by auto-LiRPA (the slow reference path)."""
        return bounds(self.bmodel, obs, eps, "ibp")

    def reference_mixed(self, obs: torch.Tensor, eps: float, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """`mixed` computed by auto-LiRPA (the slow reference path)."""
        return mixed_ibp_crown_ibp(self.bmodel, obs, eps, beta)


def ramp_fraction(core: Any) -> float:
    """Fraction of the core's ε ramp completed: ε_t / ε (1 when the target ε is 0)."""
    return core.eps_now / core.cfg.eps if core.cfg.eps > 0 else 1.0


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
