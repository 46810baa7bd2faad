"""What the state-adversarial PPO trainers share: settings, inner solvers and the robust surrogate.

Used by `sappo`, `arppo(-noguide)` and `barppo(-noguide)` (spec/trainers.md). Every trainer is the PPO
core plus one `extra_loss`; the inner problems below run on the minibatch being updated, with the
policy being updated, inside every one of the 320 minibatch steps of an iteration, and are solved
by the shared batched solver `robbench.pgd.sign_gradient_ascent` (one batched op per inner step).

Speed: the inner objectives are functions f(μ(x)) of the policy mean only. `MeanNet.objective`
hands the solver such an f with a hand-written gradient ∇ₓf = Jμ(x)ᵀ·∂f/∂μ (one forward through the
MLP rewritten on sigmoid units, one vector-Jacobian product by transposed matmuls, the last layer
folded into the objective's head), instead of building and walking an autograd graph through the
network at each of the 10 inner steps: 1.5× faster per inner solve. Same gradient up to float
rounding (tests/test_trainers_sgld.py checks it against autograd).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from robbench.envs import get_env_spec
from robbench.errors import RobbenchError
from robbench.pgd import sign_gradient_ascent
from robbench.policy import LOG_2PI, GaussianPolicy, gaussian_log_prob
from robbench.ppo import Minibatch, Objective, PPOCore

INNER_STEPS = 10
"""K: inner steps of size ε_t/K (ppo.md "Robust-training schedule"; paper App. F.3)."""
SGLD_TEMPERATURE = 1e-5
"""Temperature of the SGLD inner solver (SA-PPO's `get_state_kl_bound_sgld`; paper App. F.3)."""


# ------------------------------------------------------------------------------------ settings
class StateAdversarialObjective(Objective):
    """Base of the trainers here: κ (when the method has one) and the inner-solver settings.

    Parameters (all recorded in the checkpoint's `config.trainer`): `kappa` (weight κ of the robust
    term; absent for the "-noguide" ablations, which optimise the robust term alone),
    `inner_steps` (K) and `step_scale` (inner step = step_scale·ε_t/K; paper App. G.5 ablates
    both).
    """

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


# ------------------------------------------------------------------ inner objectives of μ(x)
class Head(Protocol):
    """A per-sample inner objective f(μ(x)) that owns the mean network's last layer."""

    back: torch.Tensor
    """(A, H): ∂f/∂s_{L−1} = u · back, with u from `__call__`."""

    def __call__(self, last_hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """s_{L−1} (B, H) ↦ (f (B,), u (B, A))."""


class MeanNet:
    """The policy mean network as the inner solvers see it: current weights, fixed, on sigmoid units.

    tanh(z) = 2σ(2z) − 1 and σ costs a fifth of tanh on CPU, so with h_k = 2s_k − 1 the tanh MLP
    μ = W_L·h_{L−1} + b_L, h_k = tanh(W_k·h_{k−1} + b_k), h_0 = x is rewritten once per minibatch as
    s_k = σ(A_k·s_{k−1} + c_k), μ = A_L·s_{L−1} + c_L with
    A_1 = 2W_1, c_1 = 2b_1;  A_k = 4W_k, c_k = 2(b_k − W_k·1);  A_L = 2W_L, c_L = b_L − W_L·1
    (same function up to float rounding).
    """

    def __init__(self, policy: GaussianPolicy | nn.Sequential):
        network = policy.mean_net if isinstance(policy, GaussianPolicy) else policy
        mods = list(network) if isinstance(network, nn.Sequential) else []
        if not mods or len(mods) % 2 == 0 or not all(
            isinstance(m, nn.Linear if i % 2 == 0 else nn.Tanh) for i, m in enumerate(mods)
        ):
            raise TypeError("the robust inner solvers expect the Linear-Tanh-…-Linear mean network of "
                            "robbench.policy.mlp")
        linears = [(m.weight.detach(), m.bias.detach()) for m in mods[::2]]
        self.hidden: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (A_kᵀ view, c_k, A_k)
        for k, (w, b) in enumerate(linears[:-1]):
            a = 2.0 * w if k == 0 else 4.0 * w
            c = 2.0 * b if k == 0 else 2.0 * (b - w.sum(1))
            self.hidden.append((a.t(), c, a))
        w, b = linears[-1]
        self.out_weight = w if len(linears) == 1 else 2.0 * w
        self.out_bias = b if len(linears) == 1 else b - w.sum(1)

    def last_hidden(self, x: torch.Tensor) -> torch.Tensor:
        for weight_t, bias, _ in self.hidden:
            x = torch.addmm(bias, x, weight_t).sigmoid_()
        return x

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.out_bias, self.last_hidden(x), self.out_weight.t())

    def objective(self, head: Head) -> Callable[[torch.Tensor], torch.Tensor]:
        """x ↦ f(μ(x)), differentiable (its backward is the hand-written one below)."""
        return lambda x: _InnerObjective.apply(x, self, head)

    def gradient(self, head: Head) -> Callable[[torch.Tensor], torch.Tensor]:
        """x ↦ ∇ₓ Σ f(μ(x)) computed by hand, for `sign_gradient_ascent(gradient=...)`: no autograd
        round trip per inner step."""

        direction = getattr(head, "direction", None)  # u alone, when the head can skip f

        def grad(x: torch.Tensor) -> torch.Tensor:
            acts = self.hidden_activations(x)
            u = head(acts[-1])[1] if direction is None else direction(acts[-1])
            return self.backward_to_input(u @ head.back, acts)

        return grad

    def hidden_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        acts = []
        for weight_t, bias, _ in self.hidden:
            x = torch.addmm(bias, x, weight_t).sigmoid_()
            acts.append(x)
        return acts

    def backward_to_input(self, v: torch.Tensor, acts: list[torch.Tensor]) -> torch.Tensor:
        """∂f/∂s_{L−1} = v ↦ ∂f/∂x: ∂f/∂u_k = ∂f/∂s_k ⊙ s_k(1 − s_k), ∂f/∂s_{k−1} = ∂f/∂u_k · A_k."""
        for (_, _, weight), s in zip(reversed(self.hidden), reversed(acts)):
            v = torch.ops.aten.sigmoid_backward(v, s) @ weight
        return v


class _InnerObjective(torch.autograd.Function):
    """f(μ(x)) with ∇ₓ by hand: ∂f/∂u_k = ∂f/∂s_k ⊙ s_k(1 − s_k), ∂f/∂s_{k−1} = ∂f/∂u_k · A_k.

    No autograd graph through the network: one forward, one vector-Jacobian product of transposed
    matmuls. The head gives f and u with ∂f/∂s_{L−1} = u · head.back.
    """

    @staticmethod
    def forward(ctx, x, net, head):
        acts = net.hidden_activations(x)
        value, u = head(acts[-1])
        ctx.net, ctx.acts, ctx.u, ctx.back = net, acts, u, head.back
        return value

    @staticmethod
    def backward(ctx, grad_value):
        v = (grad_value.unsqueeze(-1) * ctx.u) @ ctx.back
        return ctx.net.backward_to_input(v, ctx.acts), None, None


class DivergenceHead:
    """R(x) = Σ_i ((μ_i(x) − μ_i(s))/σ_i)² = 2·KL(π(·|s) ‖ π(·|x)) for a state-independent σ.

    With d = μ(x) − μ(s) = A_L·s_{L−1} + (c_L − μ(s)): ∂R/∂s_{L−1} = d · 2diag(σ⁻²)·A_L.
    """

    def __init__(self, net: MeanNet, clean_mean: torch.Tensor, inv_var: torch.Tensor):
        self.offset = net.out_bias - clean_mean
        self.weight_t = net.out_weight.t()
        self.inv_var = inv_var
        self.back = (2.0 * inv_var).unsqueeze(-1) * net.out_weight

    def __call__(self, last_hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.direction(last_hidden)
        return (d * d) @ self.inv_var, d

    def direction(self, last_hidden: torch.Tensor) -> torch.Tensor:
        """u = d alone (the solver's gradient does not need R itself)."""
        return torch.addmm(self.offset, last_hidden, self.weight_t)


class OutputHead:
    """f(x) = the network's own scalar output (e.g. a Q network): ∂f/∂s_{L−1} = A_L."""

    def __init__(self, net: MeanNet):
        self.back = net.out_weight  # (1, H)

    def direction(self, last_hidden: torch.Tensor) -> torch.Tensor:
        return last_hidden.new_ones(last_hidden.shape[0], 1)


class SurrogateHead:
    """g(π_θ(a|x)/π_old(a|s), Â) = min(r·Â, clip(r, 1±c)·Â) per sample.

    With z = a − μ(x): log r = −½ Σ z²/σ² − Σ log σ − (d/2)·log 2π − log π_old(a|s), and
    ∂g/∂μ = r·Â·[r·Â is the min]·z/σ² (at a tie, r inside the clip range, autograd's min/clamp
    give the same r·Â; where the clipped branch is strictly smaller r is outside the range and
    the gradient is 0), so ∂g/∂s_{L−1} = (r·Â·[…]·z) · diag(σ⁻²)·A_L.
    """

    def __init__(self, net: MeanNet, mb: Minibatch, log_std: torch.Tensor, clip: float):
        inv_var = torch.exp(-2.0 * log_std)
        self.offset = mb.actions - net.out_bias
        self.neg_weight_t = -net.out_weight.t()
        self.inv_var = inv_var
        self.log_ratio_offset = -(log_std.sum() + 0.5 * log_std.numel() * LOG_2PI) - mb.log_probs
        self.advantages, self.low, self.high = mb.advantages, 1.0 - clip, 1.0 + clip
        self.back = inv_var.unsqueeze(-1) * net.out_weight
        # For `direction`: r·Â is the min of the two branches iff log r ≤ log(1 + c) where Â ≥ 0,
        # log r ≥ log(1 − c) where Â < 0; written as one comparison `side·log r ≤ side·bound`.
        positive = mb.advantages >= 0
        self.side = torch.where(positive, 1.0, -1.0)
        self.side_bound = torch.where(positive, math.log(1.0 + clip), -math.log(1.0 - clip))

    def __call__(self, last_hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.addmm(self.offset, last_hidden, self.neg_weight_t)
        ratio = torch.exp(torch.addmv(self.log_ratio_offset, z * z, self.inv_var, alpha=-0.5))
        unclipped = ratio * self.advantages
        value = torch.minimum(unclipped, ratio.clamp(self.low, self.high) * self.advantages)
        return value, (unclipped * (unclipped <= value)).unsqueeze(-1) * z

    def direction(self, last_hidden: torch.Tensor) -> torch.Tensor:
        """u up to a positive per-sample factor (r > 0): Â·[r·Â is the min]·z.

        The solver uses only the sign of each sample's gradient, which is linear in that sample's
        u, so dropping r leaves ŝ unchanged and saves the exp, clamp and min of `__call__`.
        """
        z = torch.addmm(self.offset, last_hidden, self.neg_weight_t)
        log_ratio = torch.addmv(self.log_ratio_offset, z * z, self.inv_var, alpha=-0.5)
        active = (log_ratio * self.side) <= self.side_bound
        return (self.advantages * active).unsqueeze(-1) * z


# ----------------------------------------------------------------------------- inner solvers
@torch.no_grad()
def clean_mean(core: PPOCore, obs: torch.Tensor) -> torch.Tensor:
    """μ(s), held fixed (detached) wherever it is a target."""
    return core.policy(obs)


def sgld_max_divergence(core: PPOCore, obs: torch.Tensor, eps: float, steps: int, step_size: float,
                        mean: torch.Tensor | None = None) -> torch.Tensor:
    """SA-PPO's SGLD solver: ŝ ≈ argmax over B_ε(s) of R(ŝ) = Σ((μ(ŝ) − μ(s))/σ)² (σ detached).

    Random corner start at distance one step; K noisy sign-gradient ascent steps, the Gaussian
    noise of std √(2·step·β⁻¹)/(i + 2) added to the gradient of the batch-*mean* R before the sign
    (reference `get_state_kl_bound_sgld`). The shared solver differentiates the batch *sum*, so
    the noise std is multiplied by the batch size B to keep the reference's noise-to-gradient
    ratio. Argmax R = argmax KL, so BAR-PPO uses this solver unchanged. `mean`: μ(s) if the
    caller already has it.
    """
    if eps == 0.0:
        return obs
    net = MeanNet(core.policy)
    if mean is None:
        mean = net.mean(obs)
    head = DivergenceHead(net, mean, torch.exp(-2.0 * core.policy.log_std.detach()))
    base = obs.shape[0] * math.sqrt(2.0 * step_size * SGLD_TEMPERATURE)
    return sign_gradient_ascent(
        net.objective(head), obs, eps, core.gen, steps=steps, step_size=step_size, start="corner",
        noise=lambda i: base / (i + 2), maximize=True, gradient=net.gradient(head),
    )


def sa_regulariser(core: PPOCore, obs: torch.Tensor, eps: float, steps: int, step_size: float,
                   mean: torch.Tensor | None = None, perturbed_mean: torch.Tensor | None = None) -> torch.Tensor:
    """SA-PPO's R = mean_batch Σ_i ((μ_i(ŝ) − μ_i(s))/σ_i)² at the SGLD ŝ (`sgld_max_divergence`).

    μ(s) is detached, σ is not (reference `robust_ppo_detach_stdev: False`), ŝ is a constant.
    Used by `sappo` (weight κ) and `wocar` (weight κ_KL). `mean`: μ(s) if the caller has it;
    `perturbed_mean`: μ(ŝ) (with graph) if the caller already found ŝ (`sa_perturbed_states`) and
    evaluated it (the core's `mb.perturbed_mean`).
    """
    target = clean_mean(core, obs) if mean is None else mean.detach()
    if perturbed_mean is None:
        perturbed_mean = core.policy(sgld_max_divergence(core, obs, eps, steps, step_size, target))
    return ((perturbed_mean - target) / core.policy.std).pow(2).sum(-1).mean()


def sa_perturbed_states(core: PPOCore, obs: torch.Tensor, eps: float, steps: int,
                        step_size: float) -> torch.Tensor | None:
    """The SGLD ŝ of `sa_regulariser`, for `Objective.perturbed_states` (None at ε = 0: nothing to
    merge). The solver's μ(s) is computed by its own sigmoid-form forward (`MeanNet.mean`; equal to
    the core's μ(s) up to float rounding)."""
    return None if eps == 0.0 else sgld_max_divergence(core, obs, eps, steps, step_size)


def pgd_min_surrogate(core: PPOCore, mb: Minibatch, eps: float, steps: int, step_size: float) -> torch.Tensor:
    """AR-PPO's inner problem: ŝ ≈ argmin over B_ε(s) of g(π_θ(a|ŝ)/π_old(a|s), Â).

    K projected sign-gradient descent steps from a random start s + U[−step, step]^d.
    """
    if eps == 0.0:
        return mb.obs
    net = MeanNet(core.policy)
    head = SurrogateHead(net, mb, core.policy.log_std.detach(), core.cfg.clip)
    return sign_gradient_ascent(
        net.objective(head), mb.obs, eps, core.gen, steps=steps, step_size=step_size, start="uniform",
        maximize=False, gradient=net.gradient(head),
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
