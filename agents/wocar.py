"""`wocar` — WocaR-PPO (Liang et al. 2022; trainers.md, "wocar")."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch

from robbench import fastpath
from robbench.agents._robust import sa_perturbed_states, sa_regulariser
from robbench.agents._bounds import (
    PolicyMeanBounds, check_choice, check_int, check_number, check_ppo,
)
from robbench.envs import get_env_spec
from robbench.errors import RobbenchError
from robbench.pgd import sign_gradient_ascent
from robbench.policy import gaussian_log_prob, mlp
from robbench.ppo import Batch, Minibatch, Objective, PPOCore
from robbench.registry import register_trainer

Q_HIDDEN = (64, 64)
REFRESH = ("minibatch", "epoch", "iteration")


def worst_action(
    q_net: torch.nn.Module, next_obs: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
    gen: torch.Generator, steps: int = 50, fast: bool = False,
) -> torch.Tensor:
    """a* ≈ argmin over the box [lo, hi] of Q_w(s', a): `steps` projected sign-gradient descent steps.

    Step size (hi − lo)/steps per dimension (the reference's), from the centre of the box, with the
    shared solver `robbench.pgd.sign_gradient_ascent` (the box is the ℓ∞ "ball" of per-dimension
    radius (hi − lo)/2 around its centre). The result is detached and inside the box. `fast`: ∇_a Q
    by `robbench.fastpath.q_action_gradient` instead of autograd.
    """
    centre, radius = (hi + lo) / 2, (hi - lo) / 2
    if not bool((radius > 0).any()):
        return centre.detach()

    def q_value(actions: torch.Tensor) -> torch.Tensor:
        return q_net(torch.cat([next_obs, actions], -1)).squeeze(-1)

    return sign_gradient_ascent(
        q_value, centre, radius, gen, steps=steps, step_size=2 * radius / steps, start="clean", maximize=False,
        gradient=fastpath.q_action_gradient(q_net, next_obs) if fast else None,
    )


def td_loss(q_net: torch.nn.Module, q_target: torch.nn.Module, sa: torch.Tensor, next_sa: torch.Tensor,
            rewards: torch.Tensor, not_done: torch.Tensor, gamma: float) -> torch.Tensor:
    """One WocaR Q step's loss mean((Q_w(s, a) − y)²), y = r̃ + γ(1 − done)·Q_target(s', a*), the
    target held fixed (reference `worst_q_step`)."""
    with torch.no_grad():
        target = rewards + gamma * not_done * q_target(next_sa).squeeze(-1)
    return (q_net(sa).squeeze(-1) - target).pow(2).mean()


@register_trainer("wocar")
class WocaR(Objective):
    """WocaR-PPO: PPO on Â + w_t·(worst-case Q), a worst-case Q network over IBP action boxes, + SA-PPO R.

    Worst-case Q (Liang et al. 2022; reference WocaR-PPO `worst_q_step`, `worst_action_pgd`):
    Q_w(s, a), an MLP on concat(s, a) (64-64 tanh, orthogonal init like the value net) with a target
    copy, both saved in the checkpoint (`worst_q`, `worst_q_target`). Each iteration, before the
    policy update: `q_epochs` × `q_minibatches` Adam steps (lr `q_lr`, annealed like the PPO
    learning rates) on the current batch towards y = r̃ + γ(1 − done)·Q_target(s', a*), r̃ the scaled
    reward, done = terminated, Polyak τ = `tau` after every minibatch. a* minimises Q_w(s', ·) over
    the box [μ_lo(s'), μ_hi(s')] of actions the policy can output in B_{ε_t}(s'): `astar_steps`
    projected sign-gradient steps (`worst_action`).

    Policy: the clipped surrogate with Ã = Â + w_t·norm_mb(Q_target(s, a)) in place of Â (norm_mb:
    per-minibatch standardisation; reference `surrogate_adv_q`), plus κ·R, R the SA-PPO SGLD
    regulariser (`kappa` = κ_KL).
    w_t = `q_weight`·n/N ("linear"; Hopper 0.8, HalfCheetah 0.5, Ant 0.8) or (`q_weight`·n/N)³
    ("cubic"; Walker2d 0.8), capped at 1, n the iteration. κ_KL 0.1, 0.1, 0.1, 0.003; q_lr 4e-4
    (Ant 3e-5). Humanoid (not in the reference configs) takes Ant's values.

    Departures from the reference code, on purpose:
    - The action box is a sound auto-LiRPA IBP box of μ over B_{ε_t}(s') (ε_t the core's ramped ε);
      the reference computed it with a broken hand-written IBP at a fixed radius 0.01.
    - The box is computed once per iteration for the whole batch (the policy does not change while
      Q trains, so this is exact), and the a* search starts at the box centre (the reference started
      at μ(s'); 50 steps of (hi − lo)/50 reach every point of the box from either).
    - `astar_refresh` (default "iteration"): a* is searched once per iteration for the whole batch
      with the Q_w of the start of that iteration's Q training, and reused by its 10 × 32 Q steps;
      "epoch" re-searches once per Q epoch; "minibatch" searches in every Q minibatch with the
      current Q_w, as the reference does (~25 × the cost of "iteration": 320 searches of 50 steps).
    - MLP policies only (the reference's later LSTM configs crash).

    `ppo`: the PPO settings the reference config changes on the env (`EnvSpec.trainers.wocar_ppo`;
    HalfCheetah: policy lr 1e-4, value lr 1e-3, entropy 1e-4). Agents trained before the setting
    existed ran HalfCheetah at the env's PPO settings (3e-4, 1e-4, 0); boards showing them say so.
    """

    surrogate_weight = 0.0  # the surrogate with Ã replaces the clean one, in `extra_loss`
    fast_path = True  # a* search, Q steps and SGLD gradients from robbench.fastpath (benchmarks/README.md)

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.kappa = check_number("kappa", params.get("kappa", 0.1))
        self.q_weight = check_number("q_weight", params.get("q_weight", 0.8))
        self.schedule = check_choice("q_weight_schedule", params.get("q_weight_schedule", "linear"),
                                     ("linear", "cubic"))
        self.q_lr = check_number("q_lr", params.get("q_lr", 4e-4))
        self.q_epochs = check_int("q_epochs", params.get("q_epochs", 10))
        self.q_minibatches = check_int("q_minibatches", params.get("q_minibatches", 32))
        self.tau = check_number("tau", params.get("tau", 1e-3))
        self.astar_steps = check_int("astar_steps", params.get("astar_steps", 50))
        self.astar_refresh = check_choice("astar_refresh", params.get("astar_refresh", "iteration"), REFRESH)
        self.sgld_steps = check_int("sgld_steps", params.get("sgld_steps", 10))
        self.ppo = check_ppo(params.get("ppo", {}))
        if self.tau > 1.0:
            raise RobbenchError(f"setting 'tau' must lie in [0, 1], got {self.tau:g}")

    @classmethod
    def defaults(cls, env: str) -> dict[str, Any]:
        # Per-env reference values (trainers.md) from the env registry. Humanoid is not in the WocaR
        # configs: it takes Ant's values (same budget and learning rates).
        spec = get_env_spec(env).trainers  # one-line error for an unknown env
        return {
            "kappa": spec.wocar_kappa,
            "q_weight": spec.wocar_q_weight,
            "q_weight_schedule": spec.wocar_q_weight_schedule,
            "q_lr": spec.wocar_q_lr,
            "q_epochs": 10,
            "q_minibatches": 32,
            "tau": 1e-3,
            "astar_steps": 50,
            "astar_refresh": "iteration",
            "sgld_steps": 10,
            "ppo": dict(spec.wocar_ppo),
        }

    @classmethod
    def departures(cls, env: str, config: dict[str, Any]) -> list[str]:
        reference = dict(get_env_spec(env).trainers.wocar_ppo)
        if not config:  # no recorded training config (a submitted entry): nothing to say
            return []
        differ = {k: config.get(k) for k, v in reference.items() if config.get(k) != v}
        if not differ:
            return []
        ours = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in differ.items())
        theirs = ", ".join(f"{k} {reference[k]:g}" for k in differ)
        return [f"WocaR on {get_env_spec(env).gym_id} trained with {ours} where the reference config uses {theirs}"]

    def ppo_overrides(self) -> dict[str, Any]:
        return dict(self.ppo)

    # ---------------------------------------------------------------------------------- setup
    def setup(self, core: PPOCore) -> None:
        obs_dim, act_dim = core.envs.obs_dim, core.envs.act_dim
        # Initialise Q from the core's generator, leaving the global torch RNG as it was.
        seed = int(torch.randint(0, 2**62, (1,), generator=core.gen))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.q = mlp(obs_dim + act_dim, 1, Q_HIDDEN, out_gain=1.0)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.q_optimizer = torch.optim.Adam(self.q.parameters(), lr=self.q_lr, eps=core.cfg.adam_eps, fused=True)
        self.bounds = PolicyMeanBounds(core.policy)
        self._worst_q: torch.Tensor | None = None
        self.last_q_loss = float("nan")

    def extra_state(self) -> dict[str, dict[str, torch.Tensor]]:
        return {"worst_q": self.q.state_dict(), "worst_q_target": self.q_target.state_dict()}

    # ------------------------------------------------------------------------------ schedules
    def weight(self, core: PPOCore) -> float:
        """w_t of the worst-case Q term at the current iteration."""
        w = self.q_weight * core.iteration / core.cfg.iterations
        return min(1.0, w**3 if self.schedule == "cubic" else w)

    # ------------------------------------------------------------------------- Q on the batch
    def prepare_batch(self, core: PPOCore, batch: Batch) -> None:
        """Train Q_w on this batch (before the policy update), then cache Q_target(s, a)."""
        frac = 1.0 - core.iteration / core.cfg.iterations if core.cfg.anneal_lr else 1.0
        self.q_optimizer.param_groups[0]["lr"] = self.q_lr * frac
        with torch.no_grad():
            lo, hi = self.bounds.ibp(batch.next_obs, core.eps_now)
        size = batch.obs.shape[0]
        mb_size = size // self.q_minibatches
        state_actions = torch.cat([batch.obs, batch.actions], -1)
        not_done = 1.0 - batch.dones
        gamma = core.cfg.gamma
        next_state_actions = None  # (s', a*) for the whole batch, when a* is searched batch-wide
        losses = torch.zeros(())
        for epoch in range(self.q_epochs):
            if self.astar_refresh == "epoch" or (self.astar_refresh == "iteration" and epoch == 0):
                a_star = worst_action(self.q, batch.next_obs, lo, hi, core.gen, self.astar_steps, self.fast_path)
                next_state_actions = torch.cat([batch.next_obs, a_star], -1)
            perm = torch.randperm(size, generator=core.gen)
            # Shuffle once per epoch; the minibatches are then contiguous views (no gather per step).
            sa_epoch, rewards_epoch, not_done_epoch = state_actions[perm], batch.rewards[perm], not_done[perm]
            next_sa_epoch = next_state_actions[perm] if self.astar_refresh != "minibatch" else None
            for k in range(self.q_minibatches):
                rows = slice(k * mb_size, (k + 1) * mb_size)
                if self.astar_refresh == "minibatch":
                    idx = perm[rows]
                    s_next = batch.next_obs[idx]
                    a_next = worst_action(self.q, s_next, lo[idx], hi[idx], core.gen, self.astar_steps,
                                          self.fast_path)
                    next_sa = torch.cat([s_next, a_next], -1)
                else:
                    next_sa = next_sa_epoch[rows]
                args = (sa_epoch[rows], next_sa, rewards_epoch[rows], not_done_epoch[rows], gamma)
                if self.fast_path:  # the same gradients, written into .grad by hand
                    loss = fastpath.td_step_gradients(self.q, self.q_target, *args)
                else:
                    self.q_optimizer.zero_grad(set_to_none=True)
                    loss = td_loss(self.q, self.q_target, *args)
                    loss.backward()
                self.q_optimizer.step()
                self.polyak()
                losses += loss.detach()
        self.last_q_loss = float(losses) / (self.q_epochs * self.q_minibatches)
        with torch.no_grad():
            self._worst_q = self.q_target(state_actions).squeeze(-1)

    @torch.no_grad()
    def polyak(self) -> None:
        """Q_target ← (1 − τ)·Q_target + τ·Q_w."""
        torch._foreach_lerp_(list(self.q_target.parameters()), list(self.q.parameters()), self.tau)

    # -------------------------------------------------------------------------------- policy
    def perturbed_states(self, core: PPOCore, mb: Minibatch) -> torch.Tensor | None:
        """The SGLD ŝ of the κ·R term, found before the core's forward (one forward for μ(s), μ(ŝ))."""
        if self.kappa <= 0:
            return None
        eps = core.eps_now
        return sa_perturbed_states(core, mb.obs, eps, self.sgld_steps, eps / self.sgld_steps, fast=self.fast_path)

    def extra_loss(self, core: PPOCore, mb: Minibatch) -> torch.Tensor:
        worst_q = self._worst_q[mb.index]
        worst_q = (worst_q - worst_q.mean()) / (worst_q.std() + 1e-8)
        robust = dataclasses.replace(mb, advantages=mb.advantages + self.weight(core) * worst_q)
        mean = core.policy(mb.obs) if mb.mean is None else mb.mean  # the core's μ(s), reused
        loss = -core.surrogate(gaussian_log_prob(mean, core.policy.log_std, mb.actions), robust).mean()
        if self.kappa > 0:
            eps = core.eps_now
            regulariser = sa_regulariser(core, mb.obs, eps, self.sgld_steps, eps / self.sgld_steps, mean,
                                         mb.perturbed_mean, fast=self.fast_path)
            loss = loss + self.kappa * regulariser
        return loss
