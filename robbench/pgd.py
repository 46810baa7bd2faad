"""Batched sign-gradient solvers over the ℓ∞ ball, shared by attacks and robust trainers.

One tensor op per inner step for the whole batch (never a loop over samples or envs). Used by:
the `critic`, `mad` and `rs` attacks, SA-PPO's SGLD inner maximisation, AR-PPO's PGD and BAR-PPO's
KL maximisation (spec/attacks.md, spec/trainers.md). The defaults are the protocol's: K = 10 steps
of size ε/K.
"""

from __future__ import annotations

import math
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

    start: "clean" (ŝ₀ = s), "uniform" (ŝ₀ = s + U[−step, step]^d), "ball" (ŝ₀ = s + U[−ε, ε]^d,
    anywhere in the ball) or "corner" (ŝ₀ = s ± step, a random corner at distance one step). `noise(i)`, if given, is the std of Gaussian noise added
    to the gradient before the sign at step i (SGLD-style). `gradient(x)`, if given, returns
    ∇ₓ Σ objective(x) directly, or any positive per-sample multiple of it (the same signs): the hook
    for the trainers' opt-in hand-written gradients (`robbench.fastpath`), skipping autograd. The result is detached, inside the ball, and computed without touching the
    parameters' `.grad`.
    """
    clean = clean.detach()
    step = eps / steps if step_size is None else step_size
    if start == "clean":
        x = clean.clone()
    elif start == "uniform":
        x = clean + (torch.rand(clean.shape, generator=gen) * 2 - 1) * step
    elif start == "ball":
        x = clean + (torch.rand(clean.shape, generator=gen) * 2 - 1) * eps
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


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations at which APGD may halve its step (Croce & Hein 2020, Sec. 3.2):
    p₀ = 0, p₁ = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06), times `steps`."""
    p = [0.0, 0.22]
    while p[-1] < 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({int(math.ceil(q * steps)) for q in p[1:] if 0 < math.ceil(q * steps) < steps})


def apgd_ascent(
    objective: Objective,
    clean: torch.Tensor,
    eps: float,
    gen: torch.Generator,
    steps: int = 50,
    restarts: int = 1,
    momentum: float = 0.75,
    rho: float = 0.75,
) -> torch.Tensor:
    """Auto-PGD in ℓ∞ (Croce & Hein 2020, Alg. 1): maximise `objective` per row inside B_ε(clean).

    Step size starts at 2ε and is halved per row at the checkpoints of `apgd_checkpoints` when
    fewer than `rho` of the steps since the last checkpoint improved that row, or when neither the
    step nor the best value changed since then; a halving restarts the row from its best point.
    Momentum 0.75 as in APGD. Each restart starts uniformly in the ball; the best point over every
    iterate of every restart is returned, so more restarts can never give a worse point. More steps
    are better on average but not per row: the checkpoints are fractions of `steps`, so a longer run
    follows another trajectory.
    The objective must be per row (row i depends only on input row i), as a policy or value net is.
    """
    clean = clean.detach()
    lo, hi = clean - eps, clean + eps
    n = clean.shape[0]
    view = (n,) + (1,) * (clean.dim() - 1)
    checkpoints = set(apgd_checkpoints(steps))
    best_x, best_f = clean.clone(), None

    def value_and_grad(x):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            f = objective(x)
            (g,) = torch.autograd.grad(f.sum(), x)
        return f.detach(), torch.nan_to_num(g, nan=0.0)

    for _ in range(restarts):
        x = torch.clamp(clean + (torch.rand(clean.shape, generator=gen) * 2 - 1) * eps, lo, hi)
        f, g = value_and_grad(x)
        if best_f is None:
            best_f = f.clone()
            best_x = x.clone()
        else:
            better = f > best_f
            best_f = torch.where(better, f, best_f)
            best_x = torch.where(better.view(view), x, best_x)
        run_best_f, run_best_x = f.clone(), x.clone()
        eta = torch.full(view, 2.0 * eps)
        prev_x = x.clone()
        improved = torch.zeros(n)
        last_ckpt, f_at_ckpt, eta_reduced = 0, run_best_f.clone(), torch.zeros(n, dtype=torch.bool)
        for k in range(steps):
            z = torch.clamp(x + eta * g.sign(), lo, hi)
            a = 1.0 if k == 0 else momentum
            new_x = torch.clamp(x + a * (z - x) + (1 - a) * (x - prev_x), lo, hi)
            prev_x, x = x, new_x
            f_new, g = value_and_grad(x)
            improved += (f_new > f).float()
            f = f_new
            better = f > run_best_f
            run_best_f = torch.where(better, f, run_best_f)
            run_best_x = torch.where(better.view(view), x, run_best_x)
            if k + 1 in checkpoints:
                span = k + 1 - last_ckpt
                stalled = (improved < rho * span) | (~eta_reduced & (run_best_f <= f_at_ckpt))
                eta = torch.where(stalled.view(view), eta / 2, eta)
                x = torch.where(stalled.view(view), run_best_x, x)
                if stalled.any():
                    f, g = value_and_grad(x)
                eta_reduced = stalled
                improved.zero_()
                last_ckpt, f_at_ckpt = k + 1, run_best_f.clone()
        better = run_best_f > best_f
        best_f = torch.where(better, run_best_f, best_f)
        best_x = torch.where(better.view(view), run_best_x, best_x)
    return best_x.detach()
