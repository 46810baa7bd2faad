"""Hand-written gradients for the robust trainers' inner loops: opt-in, each tested equal to autograd.

Every trainer in `agents/` reads against autograd: its inner objective is a plain function of the
live policy (or Q network) and `robbench.pgd.sign_gradient_ascent` differentiates it. This module
holds the hand-written alternatives a trainer may plug into two explicit hooks, and nothing else
depends on them:

- `sign_gradient_ascent(gradient=...)`: `divergence_gradient` (SA-PPO's and BAR-PPO's SGLD ŝ),
  `surrogate_gradient` (AR-PPO's PGD ŝ), `q_action_gradient` (WocaR's a* search through Q_w).
- WocaR's Q step: `td_step_gradients` writes the TD loss's parameter gradients into `.grad` in
  place of `loss.backward()`.

A trainer uses them when its `fast_path` attribute is true; benchmarks/bench_fast_paths.py measures
what each buys and benchmarks/README.md records it (only those that pay are switched on by default);
tests/test_fast_paths.py checks each against autograd on the same function.

Why they are faster: the inner objectives are functions f(μ(x)) of the network output only, so
∇ₓf = Jμ(x)ᵀ·∂f/∂μ is one forward through the MLP rewritten on sigmoid units (`SigmoidMLP`) and one
vector-Jacobian product by transposed matmuls, the last layer folded into the objective's head,
instead of building and walking an autograd graph through the network at each of the 10 (or 50)
inner steps. Same gradient up to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

from robbench.policy import LOG_2PI, GaussianPolicy, linear_tanh_layers

if TYPE_CHECKING:
    from robbench.ppo import Minibatch

Gradient = Callable[[torch.Tensor], torch.Tensor]
"""x ↦ ∇ₓ Σ f(x), the `gradient=` hook of `robbench.pgd.sign_gradient_ascent`."""


# ------------------------------------------------------------------------- the MLP on sigmoid units
class SigmoidMLP:
    """A Linear-Tanh-…-Linear network as the inner solvers see it: current weights, fixed, on sigmoid units.

    tanh(z) = 2σ(2z) − 1 and σ costs a fifth of tanh on CPU, so with h_k = 2s_k − 1 the tanh MLP
    μ = W_L·h_{L−1} + b_L, h_k = tanh(W_k·h_{k−1} + b_k), h_0 = x is rewritten once per minibatch as
    s_k = σ(A_k·s_{k−1} + c_k), μ = A_L·s_{L−1} + c_L with
    A_1 = 2W_1, c_1 = 2b_1;  A_k = 4W_k, c_k = 2(b_k − W_k·1);  A_L = 2W_L, c_L = b_L − W_L·1
    (same function up to float rounding).
    """

    def __init__(self, network: GaussianPolicy | nn.Sequential):
        network = network.mean_net if isinstance(network, GaussianPolicy) else network
        linears = [(m.weight.detach(), m.bias.detach()) for m in linear_tanh_layers(network)]
        self.hidden: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (A_kᵀ view, c_k, A_k)
        for k, (w, b) in enumerate(linears[:-1]):
            a = 2.0 * w if k == 0 else 4.0 * w
            c = 2.0 * b if k == 0 else 2.0 * (b - w.sum(1))
            self.hidden.append((a.t(), c, a))
        w, b = linears[-1]
        self.out_weight = w if len(linears) == 1 else 2.0 * w
        self.out_bias = b if len(linears) == 1 else b - w.sum(1)

    def hidden_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        acts = []
        for weight_t, bias, _ in self.hidden:
            x = torch.addmm(bias, x, weight_t).sigmoid_()
            acts.append(x)
        return acts

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output (μ(x) for a policy)."""
        last = self.hidden_activations(x)[-1] if self.hidden else x
        return torch.addmm(self.out_bias, last, self.out_weight.t())

    def backward_to_input(self, v: torch.Tensor, acts: list[torch.Tensor]) -> torch.Tensor:
        """∂f/∂s_{L−1} = v ↦ ∂f/∂x: ∂f/∂u_k = ∂f/∂s_k ⊙ s_k(1 − s_k), ∂f/∂s_{k−1} = ∂f/∂u_k · A_k."""
        for (_, _, weight), s in zip(reversed(self.hidden), reversed(acts)):
            v = torch.ops.aten.sigmoid_backward(v, s) @ weight
        return v

    def gradient(self, head: Head) -> Gradient:
        """x ↦ ∇ₓ Σ f(x) for the head's f, computed by hand (up to the head's positive per-sample
        factor, see `SurrogateHead.direction`): no autograd round trip per inner step."""

        def grad(x: torch.Tensor) -> torch.Tensor:
            acts = self.hidden_activations(x)
            return self.backward_to_input(head.direction(acts[-1]) @ head.back, acts)

        return grad


# -------------------------------------------------------------------------- heads: f of the output
class Head(Protocol):
    """A per-sample inner objective f(μ(x)) that owns the network's last layer."""

    back: torch.Tensor
    """(A, H): ∂f/∂s_{L−1} = u · back, with u from `direction`."""

    def direction(self, last_hidden: torch.Tensor) -> torch.Tensor:
        """s_{L−1} (B, H) ↦ u (B, A), up to a positive per-sample factor."""


class DivergenceHead:
    """R(x) = Σ_i ((μ_i(x) − μ_i(s))/σ_i)² = 2·KL(π(·|s) ‖ π(·|x)) for a state-independent σ.

    With d = μ(x) − μ(s) = A_L·s_{L−1} + (c_L − μ(s)): ∂R/∂s_{L−1} = d · 2diag(σ⁻²)·A_L.
    """

    def __init__(self, net: SigmoidMLP, clean_mean: torch.Tensor, inv_var: torch.Tensor):
        self.offset = net.out_bias - clean_mean
        self.weight_t = net.out_weight.t()
        self.back = (2.0 * inv_var).unsqueeze(-1) * net.out_weight

    def direction(self, last_hidden: torch.Tensor) -> torch.Tensor:
        """u = d (exactly: no factor dropped)."""
        return torch.addmm(self.offset, last_hidden, self.weight_t)


class OutputHead:
    """f(x) = the network's own scalar output (e.g. a Q network): ∂f/∂s_{L−1} = A_L."""

    def __init__(self, net: SigmoidMLP):
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

    def __init__(self, net: SigmoidMLP, mb: Minibatch, log_std: torch.Tensor, clip: float):
        inv_var = torch.exp(-2.0 * log_std)
        self.offset = mb.actions - net.out_bias
        self.neg_weight_t = -net.out_weight.t()
        self.inv_var = inv_var
        self.log_ratio_offset = -(log_std.sum() + 0.5 * log_std.numel() * LOG_2PI) - mb.log_probs
        self.advantages = mb.advantages
        self.back = inv_var.unsqueeze(-1) * net.out_weight
        # r·Â is the min of the two branches iff log r ≤ log(1 + c) where Â ≥ 0, log r ≥ log(1 − c)
        # where Â < 0; written as one comparison `side·log r ≤ side·bound`.
        positive = mb.advantages >= 0
        self.side = torch.where(positive, 1.0, -1.0)
        self.side_bound = torch.where(positive, math.log(1.0 + clip), -math.log(1.0 - clip))

    def direction(self, last_hidden: torch.Tensor) -> torch.Tensor:
        """u up to a positive per-sample factor (r > 0): Â·[r·Â is the min]·z.

        The solver uses only the sign of each sample's gradient, which is linear in that sample's
        u, so dropping r leaves ŝ unchanged and saves the exp, clamp and min of the surrogate.
        """
        z = torch.addmm(self.offset, last_hidden, self.neg_weight_t)
        log_ratio = torch.addmv(self.log_ratio_offset, z * z, self.inv_var, alpha=-0.5)
        active = (log_ratio * self.side) <= self.side_bound
        return (self.advantages * active).unsqueeze(-1) * z


# ------------------------------------------------------------------- the hooks the trainers plug in
def divergence_gradient(policy: GaussianPolicy, obs: torch.Tensor, inv_var: torch.Tensor,
                        clean_mean: torch.Tensor | None = None) -> Gradient:
    """∇ₓ Σ R(x), R = Σ_i (μ_i(x) − μ_i(s))²·inv_var_i (`agents/_robust.py: sgld_max_divergence`).

    `clean_mean`: μ(s) if the caller has it, else this path's own sigmoid-form forward (equal to
    the policy's μ(s) up to float rounding)."""
    net = SigmoidMLP(policy)
    if clean_mean is None:
        clean_mean = net.mean(obs)
    return net.gradient(DivergenceHead(net, clean_mean, inv_var))


def surrogate_gradient(policy: GaussianPolicy, mb: Minibatch, clip: float) -> Gradient:
    """∇ₓ Σ g(π_θ(a|x)/π_old(a|s), Â) per sample up to a positive factor r (same sign, so the same
    sign-gradient step; `agents/_robust.py: pgd_min_surrogate`). σ is detached."""
    net = SigmoidMLP(policy)
    return net.gradient(SurrogateHead(net, mb, policy.log_std.detach(), clip))


def q_action_gradient(q_net: nn.Sequential, next_obs: torch.Tensor) -> Gradient:
    """a ↦ ∇_a Σ Q(s', a) for a Q network on concat(s', a) (`agents/wocar.py: worst_action`): the
    gradient with respect to the whole input, action columns kept."""
    net = SigmoidMLP(q_net)
    full_gradient = net.gradient(OutputHead(net))
    obs_dim = next_obs.shape[-1]

    def grad(actions: torch.Tensor) -> torch.Tensor:
        return full_gradient(torch.cat([next_obs, actions], -1))[:, obs_dim:]

    return grad


def _tanh_forward(layers: list[nn.Linear], x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The tanh MLP's output, and every layer's input (x, h_1, …, h_{L−1})."""
    inputs = [x]
    for i, layer in enumerate(layers):
        x = torch.addmm(layer.bias, x, layer.weight.t())
        if i < len(layers) - 1:
            x = torch.tanh(x)
            inputs.append(x)
    return x, inputs


@torch.no_grad()
def td_step_gradients(q_net: nn.Sequential, q_target: nn.Sequential, sa: torch.Tensor, next_sa: torch.Tensor,
                      rewards: torch.Tensor, not_done: torch.Tensor, gamma: float) -> torch.Tensor:
    """WocaR's Q step loss mean((Q_w(s, a) − y)²), y = r̃ + γ(1 − done)·Q_target(s', a*), with the
    gradients of Q_w's parameters written into their `.grad` by hand (backprop through the tanh MLP:
    ∂/∂W_k = δ_kᵀ·h_{k−1}, δ_{k−1} = (δ_k·W_k) ⊙ (1 − h_{k−1}²)); `agents/wocar.py: td_loss` is the
    autograd form. Same maths, without building a graph 320 times per iteration."""
    q_layers = linear_tanh_layers(q_net)
    q_next, _ = _tanh_forward(linear_tanh_layers(q_target), next_sa)
    target = rewards + gamma * not_done * q_next.squeeze(-1)
    q, inputs = _tanh_forward(q_layers, sa)
    diff = q.squeeze(-1) - target
    delta = (diff * (2.0 / diff.shape[0])).unsqueeze(-1)
    for i in range(len(q_layers) - 1, -1, -1):
        layer, h = q_layers[i], inputs[i]
        layer.weight.grad = delta.t() @ h
        layer.bias.grad = delta.sum(0)
        if i > 0:
            delta = (delta @ layer.weight) * (1.0 - h * h)
    return diff.pow(2).mean()
