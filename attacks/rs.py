"""`rs` — robust Sarsa attack (spec/attacks.md, "Robust Sarsa (RS)"; SA-PPO paper, Zhang et al. 2020, Sec. 6).

Fit (once per victim and scan member, stored as an artifact):

1. Q(s, a): tanh MLP 64-64 on concat(s, a), orthogonal init; Adam (eps 1e-5) with the env's value lr.
2. Data: fresh on-policy rollouts of 2048 steps of the victim's *stochastic* policy a ~ N(μ(s), σ²)
   (its learned σ), its frozen observation filter, rewards scaled by a running `RewardScaler`.
3. Per rollout, 10 epochs × 32 shuffled minibatches of TD learning with a Huber loss on
   r_t + γ·(1 − terminated_t)·Q(s_{t+1}, a_{t+1}), where (s_{t+1}, a_{t+1}) is the *next sample of
   the same trajectory* (a semi-gradient target from the current Q, detached).
4. Robustness term reg · mean(max(ub − q, q − lb)²), [lb, ub] bounding Q over the ℓ∞ ball of radius
   ε_sarsa around (s, a) — state and action inputs — with β·IBP + (1 − β)·CROWN-IBP bounds
   (robbench.lirpa_compat). ε_sarsa and β ramp linearly from 0 over the middle third of the
   minibatch steps (the reference's 1/3 warm-up, 1/3 ramp, 1/3 final); the term is skipped while
   ε = 0. The learning rate is constant for 2/3 of the steps, then decays linearly to 0.

Attack: start at s + U[−step, step]^d, then K steps of ŝ ← Π(ŝ − step·sign(∇_ŝ Q(s, μ(ŝ)))): Q sees
the clean s and the action the victim takes at ŝ (reference `apply_attack`, ATTACK_METHOD "sarsa").
The attack's result is the minimum over a grid of Q networks (ε_sarsa × reg), each one scan member
and one cell (`scan_members`); budget presets shrink the grid and the rollouts and say so in the
config (preset, member, grid_size, rollouts, train_steps, paper_steps):

- `paper`: the 6 × 5 grid, 30 rollouts per Q (SA-PPO's protocol). ~1.1 s per rollout on one core
  (0.2 s of env steps, 0.9 s of TD + bound updates), so ~17 min of fitting per agent plus 30
  evaluations.
- `quick` (the default): a 2 × 2 sub-grid, 5 rollouts per Q: about a minute per agent, so that
  `robbench evaluate --attacks all` stays affordable on a laptop. Under budget, and recorded so.
- `smoke`: one Q, one rollout: seconds; for tests.

Deliberate departures from the reference code (SA_PPO `sarsa_steps`):

- TD pairs. The reference shuffles the rollout into minibatches and then pairs sample i of a
  minibatch with sample i + 1 *of the same shuffled minibatch* (`q[:-1]` vs `q[1:]`), i.e. with a
  random other transition, and drops the last sample of every minibatch. Here every sample carries
  its own successor (s_{t+1}, a_{t+1}) from the trajectory, so shuffling does not break the pairs.
- Episode ends. Termination stops the bootstrap; a time-limit truncation bootstraps from
  Q(final observation, a') with a' drawn from the policy there (the reference treats it as
  terminal; robbench's PPO core bootstraps there too). The last sample of a rollout bootstraps from
  the state and the already-drawn action that the next rollout starts with: no sample is dropped.
- Reward scaling starts fresh (checkpoints do not store the PPO reward scaler's statistics) and keeps
  running across the rollouts of one fit.
- Schedules advance per minibatch step instead of per rollout (same shape, smoother; with one
  rollout, as in the `smoke` preset, the ramp and the decay still happen).
- The attack's random start is projected onto the ball like every other iterate.
- Rollouts run over `num_envs` parallel env copies (2048 / num_envs steps each), as in the PPO core.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from robbench.envs import EnvBatch, get_env_spec
from robbench.errors import RobbenchError, unknown
from robbench.filters import RewardScaler
from robbench.lirpa_compat import bounded_module, mixed_ibp_crown_ibp
from robbench.pgd import sign_gradient_ascent
from robbench.policy import mlp
from robbench.registry import register_attack
from robbench.threat import IterativeAttack, LearnedAttack, Victim

STEPS_PER_ROLLOUT = 2048
EPOCHS = 10
MINIBATCHES = 32
HIDDEN = (64, 64)
ADAM_EPS = 1e-5
DEFAULT_GAMMA = 0.99  # the PPO discount of every reference config (read from the agent when recorded)

PAPER_EPS_SARSA = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3)
PAPER_REG = (0.1, 0.3, 1.0, 3.0, 10.0)
PAPER_ROLLOUTS = 30


@dataclass(frozen=True)
class Preset:
    """A training budget: the (ε_sarsa × reg) grid of Q networks and the rollouts each one trains on."""

    rollouts: int
    eps_sarsa: tuple[float, ...]
    reg: tuple[float, ...]

    @property
    def grid(self) -> list[tuple[float, float]]:
        return [(e, r) for e in self.eps_sarsa for r in self.reg]


PRESETS: dict[str, Preset] = {
    # The SA-PPO protocol: 30 Q networks × 30 rollouts (61k steps each): ~17 min of fitting per agent.
    "paper": Preset(PAPER_ROLLOUTS, PAPER_EPS_SARSA, PAPER_REG),
    # 2 × 2 of the paper grid, 5 rollouts each (1/6 of the budget): about a minute per agent.
    # Under-budget, and labelled so. It spans an order of magnitude on both axes at the low end,
    # where a 30-member, 5-rollout screen on a vanilla PPO Hopper found the strongest Q networks
    # (large ε_sarsa·reg over-smooths Q and weakens the attack on such victims).
    "quick": Preset(5, (0.02, 0.1), (0.1, 1.0)),
    # One Q network, one rollout: seconds; checks that everything runs.
    "smoke": Preset(1, (0.05,), (1.0,)),
}
DEFAULT_PRESET = "quick"
PAPER_STEPS = PAPER_ROLLOUTS * STEPS_PER_ROLLOUT


# ------------------------------------------------------------------------------------------ data
@dataclass
class Transitions:
    """One rollout as Sarsa samples: each row holds its own successor, so rows may be shuffled."""

    inputs: torch.Tensor  # concat(s_t, a_t), (n, obs_dim + act_dim)
    next_inputs: torch.Tensor  # concat(s_{t+1}, a_{t+1}): the next sample of the same trajectory
    rewards: torch.Tensor  # scaled r_t
    not_done: torch.Tensor  # 1 − terminated_t (truncation bootstraps)


def sarsa_transitions(
    obs: torch.Tensor, actions: torch.Tensor, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
    final_inputs: torch.Tensor, tail_inputs: torch.Tensor,
) -> Transitions:
    """Pair every step with the next step of its own trajectory (arrays are (time, env, ...)).

    `final_inputs[t, i]` is concat(final observation, action drawn there) where env i was truncated at
    step t; `tail_inputs[i]` is concat(s_T, a_T), the state and drawn action the next rollout of env i
    starts with. After a termination the successor is irrelevant (not_done = 0).
    """
    inputs = torch.cat([obs, actions], dim=-1)
    next_inputs = torch.cat([inputs[1:], tail_inputs[None]], dim=0)
    cut = torch.from_numpy(truncated & ~terminated)
    next_inputs[cut] = final_inputs[cut]
    width = inputs.shape[-1]
    return Transitions(
        inputs=inputs.reshape(-1, width),
        next_inputs=next_inputs.reshape(-1, width),
        rewards=torch.as_tensor(rewards, dtype=torch.float32).reshape(-1),
        not_done=torch.as_tensor(1.0 - terminated, dtype=torch.float32).reshape(-1),
    )


def td_targets(q_net: torch.nn.Module, batch: Transitions, idx: torch.Tensor, gamma: float) -> torch.Tensor:
    """r_t + γ·(1 − terminated_t)·Q(s_{t+1}, a_{t+1}) for the rows `idx`, with the current Q, detached."""
    with torch.no_grad():
        q_next = q_net(batch.next_inputs[idx]).squeeze(-1)
    return batch.rewards[idx] + gamma * batch.not_done[idx] * q_next


class VictimRollouts:
    """Fresh on-policy rollouts of the victim: a ~ N(μ(s), σ²) on its frozen filter, scaled rewards.

    Keeps the envs, the reward scaler and the pending (state, action) across rollouts, so consecutive
    rollouts continue the same trajectories (a_t is drawn when s_t is reached, as Sarsa needs).
    `envs` is anything with EnvBatch's `reset_one` / `step` / `obs_dim` / `act_dim` / `len`.
    """

    def __init__(self, victim: Victim, envs, gen: torch.Generator, gamma: float, reset_seed: int):
        self.victim, self.envs, self.gen = victim, envs, gen
        self.scaler = RewardScaler(len(envs), gamma)
        raw = np.stack([envs.reset_one(i, seed=reset_seed + i) for i in range(len(envs))])
        self.obs = self._normalize(raw)
        self.act = self._sample(self.obs)
        self._ret = np.zeros(len(envs))
        self.episode_returns: list[float] = []

    def _normalize(self, raw: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.victim.agent.normalize(raw)).float()

    @torch.no_grad()
    def _sample(self, states: torch.Tensor) -> torch.Tensor:
        mean = self.victim.mean(states)
        return mean + self.victim.std * torch.randn(mean.shape, generator=self.gen)

    @torch.no_grad()
    def collect(self, steps: int) -> Transitions:
        n = len(self.envs)
        horizon = steps // n
        d, a = self.obs.shape[1], self.act.shape[1]
        obs = torch.empty(horizon, n, d)
        actions = torch.empty(horizon, n, a)
        final_inputs = torch.zeros(horizon, n, d + a)
        rewards = np.empty((horizon, n))
        terminated = np.zeros((horizon, n), dtype=bool)
        truncated = np.zeros((horizon, n), dtype=bool)
        for t in range(horizon):
            obs[t], actions[t] = self.obs, self.act
            # the env gets the action under the agent's clipping convention; Q learns on the sampled one
            sent = self.victim.agent.clip_action(self.act)
            raw_next, raw_r, terminated[t], truncated[t] = self.envs.step(sent.numpy().astype(np.float64))
            rewards[t] = self.scaler(raw_r)
            self._ret += raw_r
            next_obs = self._normalize(raw_next)
            ended = np.flatnonzero(terminated[t] | truncated[t])
            if ended.size:
                cut = np.flatnonzero(truncated[t] & ~terminated[t])
                if cut.size:  # bootstrap from the final observation and an action drawn there
                    final = next_obs[cut]
                    final_inputs[t, cut] = torch.cat([final, self._sample(final)], dim=-1)
                for i in ended:
                    self.episode_returns.append(float(self._ret[i]))
                    self._ret[i] = 0.0
                    self.scaler.reset(i)
                    raw_next[i] = self.envs.reset_one(i)
                next_obs = self._normalize(raw_next)
            self.obs, self.act = next_obs, self._sample(next_obs)
        tail = torch.cat([self.obs, self.act], dim=-1)
        return sarsa_transitions(obs, actions, rewards, terminated, truncated, final_inputs, tail)


# ---------------------------------------------------------------------------------------- schedule
def robust_ramp(progress: float) -> float:
    """ε_sarsa and the IBP weight β: 0 for the first third, linear to 1 over the middle third."""
    return min(1.0, max(0.0, 3.0 * progress - 1.0))


def lr_factor(progress: float) -> float:
    """Constant for the first 2/3 of the steps, then linear decay to 0 (reached after the last step)."""
    return min(1.0, 3.0 * (1.0 - progress))


def robustness_term(bmodel, q: torch.Tensor, inputs: torch.Tensor, eps: float, beta: float) -> torch.Tensor:
    """mean(max(ub − q, q − lb)²) with [lb, ub] ⊇ Q over the ℓ∞ ball of radius `eps` around `inputs`."""
    lb, ub = mixed_ibp_crown_ibp(bmodel, inputs, eps, beta)
    lb, ub = lb.squeeze(-1), ub.squeeze(-1)
    return torch.max(ub - q, q - lb).pow(2).mean()


def q_network(in_dim: int) -> torch.nn.Sequential:
    return mlp(in_dim, 1, HIDDEN, out_gain=1.0)


# ------------------------------------------------------------------------------------------ attack
@register_attack("rs")
class RobustSarsaAttack(IterativeAttack, LearnedAttack):
    description = ("K steps of ŝ ← Π(ŝ − step·sign(∇Q(s, μ(ŝ)))) with a robust Sarsa Q of the victim; "
                   "minimum over an (ε_sarsa × reg) grid")

    def __init__(self, eps: float, **params: Any):
        super().__init__(eps, **params)  # IterativeAttack resolves and validates steps / step_size
        p = self.params
        self.preset_name = p["preset"]
        if self.preset_name not in PRESETS:
            raise unknown("rs preset", self.preset_name, PRESETS)
        preset = PRESETS[self.preset_name]
        self.seed = _int_param("seed", p["seed"], minimum=0)
        if p["paper_steps"] != PAPER_STEPS:
            raise RobbenchError(f"attack 'rs': paper_steps is fixed at {PAPER_STEPS}, got {p['paper_steps']!r}")
        if p["train_steps"] is None:
            self.rollouts = preset.rollouts
        else:
            self.rollouts = math.ceil(_int_param("train_steps", p["train_steps"], minimum=1) / STEPS_PER_ROLLOUT)
        self.num_envs = _int_param("num_envs", p["num_envs"], minimum=1)
        if STEPS_PER_ROLLOUT % self.num_envs:
            raise RobbenchError(f"attack 'rs': num_envs must divide {STEPS_PER_ROLLOUT}, got {self.num_envs}")
        self.member, self.grid_size, self.eps_sarsa, self.reg = _resolve_member(self.preset_name, p)
        self.q: torch.nn.Sequential | None = None

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {
            **IterativeAttack.default_params(),  # steps 10, step_size None → ε / steps
            "seed": 0,
            "preset": DEFAULT_PRESET,  # grid and rollouts; see PRESETS
            "train_steps": None,  # None: the preset's rollouts × 2048 (per Q network)
            "paper_steps": PAPER_STEPS,  # the SA-PPO budget per Q network (30 rollouts)
            "member": None,  # index into the preset's grid (set by scan_members); None: 0
            "eps_sarsa": None, "reg": None,  # both given: one Q network outside the scan
            "num_envs": 8,  # parallel env copies of the rollouts (2048 steps per rollout regardless)
        }

    @classmethod
    def preset_budgets(cls) -> dict[str, str]:
        return {name: f"{len(p.grid)} Q nets × {p.rollouts} rollouts ({p.rollouts * STEPS_PER_ROLLOUT // 1000}k steps each)"
                for name, p in PRESETS.items()}

    @classmethod
    def scan_members(cls, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every (ε_sarsa, reg) of the preset's grid, unless the caller picked one network."""
        if any(params.get(k) is not None for k in ("member", "eps_sarsa", "reg")):
            return [{}]
        preset = params.get("preset", DEFAULT_PRESET)
        if preset not in PRESETS:
            raise unknown("rs preset", preset, PRESETS)
        return [{"member": i} for i in range(len(PRESETS[preset].grid))]

    def config(self) -> dict[str, Any]:
        """Resolved settings; budget and grid recorded so a cheap preset is told from the paper's."""
        return {
            "eps": self.eps, "steps": self.steps, "step_size": self.step_size,
            "preset": self.preset_name, "member": self.member, "grid_size": self.grid_size,
            "paper_grid_size": len(PRESETS["paper"].grid), **self.fit_config(),
            "paper_steps": PAPER_STEPS,
        }

    def fit_config(self) -> dict[str, Any]:
        """What determines the Q network (the attack's ε, steps and grid position do not)."""
        return {
            "seed": self.seed, "eps_sarsa": self.eps_sarsa, "reg": self.reg, "rollouts": self.rollouts,
            "train_steps": self.rollouts * STEPS_PER_ROLLOUT, "num_envs": self.num_envs,
        }

    # ---------------------------------------------------------------------------------- fitting
    def fit(self, victim: Victim, gen: torch.Generator, progress=None, resume=None) -> dict[str, Any]:
        env = victim.agent.env
        spec = get_env_spec(env)
        gamma = float(victim.agent.meta.get("config", {}).get("gamma", DEFAULT_GAMMA))
        obs_dim, act_dim = victim.policy.mean_net[0].in_features, victim.std.shape[0]
        with torch.random.fork_rng():  # orthogonal_ draws from the global RNG: seed it from `gen`
            torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=gen)))
            q_net = q_network(obs_dim + act_dim)
        bmodel = bounded_module(q_net, torch.zeros(1, obs_dim + act_dim))  # once per Q network
        optimizer = torch.optim.Adam(q_net.parameters(), lr=spec.value_lr, eps=ADAM_EPS)
        huber = torch.nn.SmoothL1Loss()
        total = self.rollouts * EPOCHS * MINIBATCHES
        mb_size = STEPS_PER_ROLLOUT // MINIBATCHES
        envs = EnvBatch(env, self.num_envs)
        history: list[dict[str, float]] = []
        step = 0
        try:
            data = VictimRollouts(victim, envs, gen, gamma, reset_seed=self.seed * 100_003)
            for k in range(self.rollouts):
                t0 = time.perf_counter()
                batch = data.collect(STEPS_PER_ROLLOUT)
                t1 = time.perf_counter()
                sums = torch.zeros(3)  # td loss, robustness term, mean Q
                for _ in range(EPOCHS):
                    perm = torch.randperm(batch.inputs.shape[0], generator=gen)
                    for m in range(MINIBATCHES):
                        idx = perm[m * mb_size:(m + 1) * mb_size]
                        frac = step / total
                        ramp = robust_ramp(frac)
                        eps_now = self.eps_sarsa * ramp
                        for group in optimizer.param_groups:
                            group["lr"] = spec.value_lr * lr_factor(frac)
                        inputs = batch.inputs[idx]
                        q = q_net(inputs).squeeze(-1)
                        loss = huber(q, td_targets(q_net, batch, idx, gamma))
                        sums[0] += loss.detach()
                        if eps_now > 0 and self.reg > 0:
                            reg_term = self.reg * robustness_term(bmodel, q, inputs, eps_now, beta=ramp)
                            loss = loss + reg_term
                            sums[1] += reg_term.detach()
                        sums[2] += q.detach().mean()
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                        step += 1
                means = (sums / (EPOCHS * MINIBATCHES)).tolist()
                if not all(map(math.isfinite, means)):
                    raise RobbenchError(f"attack 'rs': Q training diverged in rollout {k + 1} (non-finite loss)")
                recent = data.episode_returns[-20:]
                history.append({
                    "rollout": k + 1, "td_loss": means[0], "reg_loss": means[1], "mean_q": means[2],
                    "eps_sarsa_now": eps_now, "ibp_weight": ramp,
                    "stochastic_return": float(np.mean(recent)) if recent else None,  # last ≤ 20 episodes
                    "collect_s": round(t1 - t0, 3), "update_s": round(time.perf_counter() - t1, 3),
                })
                if progress is not None:
                    h = history[-1]
                    progress(k + 1, self.rollouts,
                             f"Q ε {self.eps_sarsa:g} reg {self.reg:g} · td {h['td_loss']:.3g} · "
                             f"reg {h['reg_loss']:.3g} · {h['collect_s'] + h['update_s']:.1f} s/rollout")
        finally:
            envs.close()
        optimizer.zero_grad(set_to_none=True)
        self.q = q_net.requires_grad_(False)
        seconds = [h["collect_s"] + h["update_s"] for h in history]
        return {
            "rollouts": self.rollouts, "gamma": gamma, "lr": spec.value_lr, "episodes": len(data.episode_returns),
            "mean_s_per_rollout": round(float(np.mean(seconds)), 3), "history": history,
        }

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"q.{k}": v.detach().clone() for k, v in self._fitted().state_dict().items()}

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        try:
            q_net = q_network(tensors["q.0.weight"].shape[1])
            q_net.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("q.")})
        except (KeyError, RuntimeError) as exc:
            raise RobbenchError(f"attack 'rs': stored Q network does not load ({exc})") from None
        self.q = q_net.requires_grad_(False)

    def _fitted(self) -> torch.nn.Sequential:
        if self.q is None:
            raise RobbenchError("attack 'rs' has no Q network: fit it (or load its artifact) first")
        return self.q

    # ----------------------------------------------------------------------------------- attack
    def perturb(self, victim: Victim, states: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        q_net = self._fitted()

        def q_of_clean_state(x: torch.Tensor) -> torch.Tensor:
            return q_net(torch.cat([states, victim.mean(x)], dim=-1)).squeeze(-1)

        return sign_gradient_ascent(
            q_of_clean_state, states, self.eps, gen, steps=self.steps, step_size=self.step_size,
            start="uniform", maximize=False,
        )


def _resolve_member(preset: str, p: dict[str, Any]) -> tuple[int | None, int, float, float]:
    """(member index, grid size, ε_sarsa, reg): a member of the preset's grid, or one explicit network.

    An explicit (ε_sarsa, reg) that lies on the grid resolves to that member, so it shares the
    scan's cell and artifact; one off the grid is a scan of its own (member None, grid size 1).
    """
    grid = PRESETS[preset].grid
    eps_sarsa, reg, member = p["eps_sarsa"], p["reg"], p["member"]
    if (eps_sarsa is None) != (reg is None):
        raise RobbenchError("attack 'rs': give both eps_sarsa and reg (one Q network), or neither (the preset's grid)")
    if eps_sarsa is None:
        member = 0 if member is None else member
        if isinstance(member, bool) or not isinstance(member, int) or not 0 <= member < len(grid):
            raise RobbenchError(f"attack 'rs': member must be an integer in 0…{len(grid) - 1} for preset "
                                f"{preset!r}, got {member!r}")
        return (member, len(grid), *grid[member])
    if member is not None:
        raise RobbenchError("attack 'rs': give either member or (eps_sarsa, reg), not both")
    pair = (_nonneg("eps_sarsa", eps_sarsa), _nonneg("reg", reg))
    return (grid.index(pair), len(grid), *pair) if pair in grid else (None, 1, *pair)


def _int_param(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RobbenchError(f"attack 'rs': {name} must be an integer ≥ {minimum}, got {value!r}")
    return value


def _nonneg(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise RobbenchError(f"attack 'rs': {name} must be a finite number ≥ 0, got {value!r}")
    return float(value)
