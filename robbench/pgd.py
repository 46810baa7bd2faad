"""Batched sign-gradient solvers over the ℓ∞ ball, shared by attacks and robust trainers.

One tensor op per inner step for the whole batch (never a loop over samples or envs). Used by:
the `critic`, `mad` and `rs` attacks, SA-PPO's SGLD inner maximisation, AR-PPO's PGD and BAR-PPO's
KL maximisation (spec/attacks.md, spec/trainers.md). The defaults are the protocol's: K = 10 steps
of size ε/K.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


Objective = Callable[[torch.Tensor], torch.Tensor]  # (batch, d) states -> (batch,) values


def sign_gradient_ascent(
    objective: Objective,
    clean: torch.Tensor,
    eps: float | torch.Tensor,
    gen: torch.Generator,
    steps: int = 10,
    step_size: float | torch.Tensor | None = None,
    start: str = "uniform",
    noise: Callable[[int], float] | None = None,
    maximize: bool = True,
    gradient: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """K projected sign-gradient steps on `objective` (summed over the batch) inside B_ε(clean).

    start: "clean" (ŝ₀ = s), "uniform" (ŝ₀ = s + U[−step, step]^d) or "corner" (ŝ₀ = s ± step, a
    random corner at distance one step). `noise(i)`, if given, is the std of Gaussian noise added
    to the gradient before the sign at step i (SGLD-style). `gradient(x)`, if given, returns
    ∇ₓ Σ objective(x) directly (a trainer's hand-written backward through its MLP), skipping
    autograd. The result is detached, inside the ball, and computed without touching the
    parameters' `.grad`.
    """
    clean = clean.detach()
    step = eps / steps if step_size is None else step_size
    if start == "clean":
        x = clean.clone()
    elif start == "uniform":
        x = clean + (torch.rand(clean.shape, generator=gen) * 2 - 1) * step
    elif start == "corner":
        x = clean + (torch.randint(0, 2, clean.shape, generator=gen) * 2 - 1).to(clean.dtype) * step
    else:
        raise ValueError(f"unknown start {start!r}")
    lo, hi = clean - eps, clean + eps  # Π is one clamp against precomputed bounds
    x = torch.clamp(x, lo, hi)  # a fresh tensor, updated in place below
    signed_step = step if maximize else -step
    # All K noise draws in one call (one op instead of K; same distribution, seeded by `gen`).
    noises = torch.randn((steps, *clean.shape), generator=gen) if noise is not None else None
    for i in range(steps):
        if gradient is not None:
            grad = gradient(x)  # a hand-written backward through a finite network: finite
        else:
            x.requires_grad_(True)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(objective(x).sum(), x)
            x = x.detach()
            grad = torch.nan_to_num(grad, nan=0.0)  # a NaN gradient must not turn ŝ into NaN
        if noises is not None:
            grad.add_(noises[i], alpha=noise(i))
        # x + step·sign(g), projected; in place (x is this solver's own tensor): the same values as
        # torch.clamp(x + signed_step * torch.sign(grad), lo, hi) without three temporaries
        if isinstance(signed_step, torch.Tensor):  # per-dimension steps (e.g. WocaR's action box)
            x = x.addcmul_(grad.sign_(), signed_step).clamp_(lo, hi)
        else:
            x = x.add_(grad.sign_(), alpha=signed_step).clamp_(lo, hi)
    return x.detach()
