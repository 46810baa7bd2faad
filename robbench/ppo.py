"""The PPO core shared by every trainer (docs/ppo.md), with one extension point.

Read top to bottom: `PPOConfig` (every hyperparameter, one docstring each), `Objective` (what a
robust trainer may change), then `PPOCore`: `collect()` → `compute_gae()` → `update()`.

A robust trainer is an `Objective` subclass in `agents/`. It never copies the rollout or the
update loop; it gets these hooks:

- `setup(core)`: build extra networks/optimisers once (e.g. WocaR's worst-case Q).
- `prepare_batch(core, batch)`: after each rollout and GAE, before the updates (e.g. train a Q
  network on the batch, or modify `batch.advantages`).
- `extra_loss(core, mb)`: a term added to the loss of every minibatch step; `core.eps_now` is the
  ramped ε_t and `core.surrogate(...)` the clipped objective g(r, Â), so SA-PPO, RADIAL, AR-PPO and
  BAR-PPO are each one function. `mb.mean` is the core's μ(s) (with graph), to reuse rather than
  recompute.
- `perturbed_states(core, mb)` (optional, speed only): the ŝ at which `extra_loss` needs μ(ŝ); the
  core computes μ(s) and μ(ŝ) in one forward and hands μ(ŝ) over as `mb.perturbed_mean`.
- `surrogate_weight`: weight of the clean PPO surrogate (0 for the "-noguide" ablations).
- `extra_state()`: tensors saved in the checkpoint beside the policy.

Deliberate departures from the reference code (all recorded in ppo.md or here):

- Time-limit truncation bootstraps with V(final observation) (the reference treated it as terminal).
- Every sample is in the value loss, each episode's final step included (its target is r_T at a
  termination, r_T + γ·V(s_{T+1}) at a truncation, both well defined here). The reference's
  `value_loss_gae` masks final steps out (`not_dones`): treating truncation as terminal, it had no
  return to regress a truncated step on. That is 1 sample in ~1000 on a full-length episode, more on
  Hopper/Walker2d episodes that fall early.
- Value and policy networks are updated in the *same* minibatch loop (one backward through the sum
  of the two losses, one Adam step each on disjoint parameters) instead of 10 value epochs followed
  by 10 policy epochs. The two networks share no parameters and the policy targets (advantages) are
  fixed before either update, so each network sees exactly the updates it would have seen (10
  epochs × 32 shuffled minibatches of 64); only the shuffling order is shared. It halves the
  number of backward passes and optimizer calls.
- Rollouts run over `num_envs` parallel copies (2048 / num_envs steps each); the total per iteration
  stays 2048 transitions, as the spec requires.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from robbench.envs import EnvBatch, get_env_spec
from robbench.errors import RobbenchError
from robbench.filters import ObsFilter, RewardScaler
from robbench.policy import Agent, GaussianPolicy, ValueNet, gaussian_log_prob

if TYPE_CHECKING:
    from robbench.resume import ResumePoint

PRESET_ITERATIONS: dict[str, int | None] = {
    "paper": None,  # the env's budget from the protocol table (976 or 4882 iterations)
    "quick": 60,  # ~123k steps: a couple of minutes on 2 cores; for demos, not for science
    "smoke": 2,  # seconds: checks that everything runs
}


@dataclass(frozen=True)
class PPOConfig:
    """Every hyperparameter of one training run. Build with `PPOConfig.for_env`.

    Frozen: a run's settings are fixed once built; a changed copy is `dataclasses.replace(cfg, ...)`
    (as `with_objective` does for a trainer's own PPO settings), so no caller's config changes
    under it."""

    env: str
    """Env registry key."""
    method: str = "ppo"
    """Trainer registry key (recorded; selects the Objective)."""
    seed: int = 0
    """Seeds torch, numpy and the envs' first resets."""
    preset: str = "paper"
    """Budget preset name: paper, quick or smoke (recorded in every output)."""
    iterations: int = 976
    """PPO iterations of `steps_per_iteration` transitions each."""
    steps_per_iteration: int = 2048
    """Transitions per iteration, summed over all envs (2048 in every reference config)."""
    num_envs: int = 8
    """Parallel env copies; a speed knob only (must divide steps_per_iteration)."""
    gamma: float = 0.99
    gae_lambda: float = 0.95
    policy_lr: float = 3e-4
    value_lr: float = 2.5e-4
    anneal_lr: bool = True
    """Both learning rates decay linearly to 0 over the run."""
    clip: float = 0.2
    """PPO ratio clip."""
    value_clip: bool = False
    """Clip V to ±value_clip_range around the old V in the value loss (per env, ppo.md)."""
    value_clip_range: float = 0.2
    epochs: int = 10
    minibatches: int = 32
    entropy_coef: float = 0.0
    initial_std: float = 1.0
    hidden: tuple[int, ...] = (64, 64)
    eps: float = 0.0
    """Target perturbation radius for robust trainers (the protocol ε of the env by default)."""
    eps_ramp_fraction: float = 0.75
    """ε ramps linearly from 0 over this fraction of the iterations, advancing every minibatch."""
    adam_eps: float = 1e-5
    threads: int = 1
    """torch intra-op threads; tiny MLPs are fastest on one."""
    trainer: dict[str, Any] = field(default_factory=dict)
    """The Objective's own hyperparameters (κ, schedules, ...), filled in by the trainer."""

    @classmethod
    def for_env(cls, env: str, preset: str = "paper", steps: int | None = None, **overrides) -> PPOConfig:
        """Reference hyperparameters for `env` at a budget preset; `steps` overrides the budget."""
        spec = get_env_spec(env)
        if preset not in PRESET_ITERATIONS:
            from robbench.errors import unknown

            raise unknown("preset", preset, PRESET_ITERATIONS)
        iterations = PRESET_ITERATIONS[preset] or spec.iterations
        spi = int(overrides.get("steps_per_iteration", 2048))
        if steps is not None:
            if steps <= 0:
                raise RobbenchError(f"--steps must be positive, got {steps}")
            iterations = max(1, math.ceil(steps / spi))
        cfg = cls(
            env=env, preset=preset, iterations=iterations, policy_lr=spec.policy_lr,
            value_lr=spec.value_lr, value_clip=spec.value_clip, initial_std=spec.initial_std,
            entropy_coef=spec.entropy_coef, eps=spec.eps,
        )
        for key in overrides:
            if not hasattr(cfg, key):
                raise RobbenchError(f"unknown PPO setting {key!r}")
        cfg = replace(cfg, **overrides)
        cfg.validate()
        return cfg

    def with_objective(self, objective: Objective) -> PPOConfig:
        """This config with the trainer's own PPO settings (`Objective.ppo_overrides`) applied and
        validated: the config the core runs and the checkpoint records."""
        cfg = replace(self, **objective.ppo_overrides())
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.num_envs <= 0 or self.steps_per_iteration % self.num_envs:
            raise RobbenchError(
                f"--num-envs must be a positive divisor of {self.steps_per_iteration}, got {self.num_envs}"
            )
        if self.steps_per_iteration % self.minibatches:
            raise RobbenchError("minibatches must divide steps_per_iteration")
        if self.eps < 0 or not math.isfinite(self.eps):
            raise RobbenchError(f"ε must be a finite number ≥ 0, got {self.eps}")
        if self.iterations <= 0:
            raise RobbenchError(f"iterations must be positive, got {self.iterations}")

    @property
    def total_steps(self) -> int:
        return self.iterations * self.steps_per_iteration

    @property
    def budget(self) -> str:
        """Budget tag used in agent ids: the preset name, or `steps<N>` when --steps overrode it."""
        default = PRESET_ITERATIONS[self.preset] or get_env_spec(self.env).iterations
        return self.preset if self.iterations == default else f"steps{self.total_steps}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


@dataclass
class Batch:
    """One iteration's rollout, flattened to (steps_per_iteration, ...) torch tensors."""

    obs: torch.Tensor  # clean normalised states s
    actions: torch.Tensor
    log_probs: torch.Tensor  # log π_old(a|s)
    advantages: torch.Tensor  # GAE, un-normalised (normalised per minibatch at use)
    returns: torch.Tensor  # value targets: old V + advantage
    values: torch.Tensor  # old V(s)
    rewards: torch.Tensor  # scaled rewards
    dones: torch.Tensor  # 1.0 where the episode terminated (not truncated) at this step
    next_obs: torch.Tensor  # normalised s_{t+1} (final observation before any reset)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Minibatch:
    obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    advantages: torch.Tensor  # normalised within the minibatch
    returns: torch.Tensor
    values: torch.Tensor
    index: torch.Tensor  # positions in the Batch, for objectives that keep per-sample extras
    mean: torch.Tensor | None = None
    """μ(s) of the policy being updated, with its autograd graph: set by `PPOCore.update` before
    `Objective.extra_loss`, so an objective reuses the core's forward instead of repeating it."""
    perturbed_mean: torch.Tensor | None = None
    """μ(ŝ) (with graph) at the states ŝ returned by `Objective.perturbed_states`, if any."""


class Objective:
    """What a trainer adds to the PPO core. The base class is plain PPO (SPO)."""

    method = "ppo"
    surrogate_weight: float = 1.0
    fast_path: bool = False
    """Whether the trainer plugs `robbench.fastpath`'s hand-written gradients into its inner loops
    instead of autograd: same values up to float rounding (tests/test_fast_paths.py), on by default
    only where benchmarks/README.md measured that it pays; not part of the recorded config."""
    board_notes: dict[str, str] = {}
    """Departures from the reference implementation that every board showing this trainer's agents
    states: env key (or "*" for every env) -> one sentence. docs/departures.md lists them all."""
    legacy_settings: dict[str, Any] = {}
    """Trainer settings added after agents were trained, with the value such an agent's recorded
    config means by leaving them out, where that is not today's default (`train.stale_settings`).
    A setting added with a default that keeps the old behaviour needs no entry."""

    def __init__(self, **params: Any):
        self.params = params

    @classmethod
    def defaults(cls, env: str) -> dict[str, Any]:
        """The trainer's default hyperparameters for `env` (κ etc.), overridable from the CLI; per-env
        values come from the env registry (`EnvSpec.trainers`), so an unknown env is one line."""
        get_env_spec(env)
        return {}

    @classmethod
    def departures(cls, env: str, config: dict[str, Any]) -> list[str]:
        """The departures from the reference that an agent trained on `env` with `config` (its
        checkpoint's recorded PPOConfig, `trainer` included; {} when none is recorded) carries:
        `board_notes` for the env and for every env. Trainers whose departure is a setting override
        this to look at the setting, so an agent trained the reference's way is not labelled with it."""
        return [note for key in (env, "*") if (note := cls.board_notes.get(key))]

    def config(self) -> dict[str, Any]:
        return dict(self.params)

    def ppo_overrides(self) -> dict[str, Any]:
        """PPO settings this trainer changes (e.g. a reference config's learning rates), applied to
        the run's PPOConfig before the core builds anything and recorded with it."""
        return {}

    def setup(self, core: PPOCore) -> None:
        pass

    def prepare_batch(self, core: PPOCore, batch: Batch) -> None:
        pass

    def perturbed_states(self, core: PPOCore, mb: Minibatch) -> torch.Tensor | None:
        """Optional: states ŝ (one per row of mb.obs, a constant) at which `extra_loss` needs μ(ŝ).

        Called before the core's policy forward; the core then evaluates μ on [s; ŝ] in one
        forward (cheaper than two on small batches) and sets `mb.perturbed_mean` = μ(ŝ) for
        `extra_loss`. Default None: nothing extra (and `extra_loss` must not rely on it being set)."""
        return None

    def extra_loss(self, core: PPOCore, mb: Minibatch) -> torch.Tensor | None:
        return None

    def extra_state(self) -> dict[str, dict[str, torch.Tensor]]:
        return {}


ProgressFn = Callable[[int, dict[str, float]], None]


class PPOCore:
    """Runs PPO (plus an Objective) on vectorised copies of one env and returns an `Agent`."""

    def __init__(self, cfg: PPOConfig, objective: Objective | None = None, envs: EnvBatch | None = None,
                 resume: ResumePoint | None = None):
        """`envs` defaults to `cfg.num_envs` copies of `cfg.env`; a learned attacker passes an env
        object with the same interface that wraps its victim. `resume`: where to keep mid-run
        snapshots (robbench/resume.py; None: no snapshots). The core runs `cfg.with_objective(objective)`
        (`self.cfg`); the caller's `cfg` is left as it was."""
        self.objective = objective or Objective()
        self.cfg = cfg = cfg.with_objective(self.objective)
        self.resume = resume
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.envs = envs if envs is not None else EnvBatch(cfg.env, cfg.num_envs)
        if len(self.envs) != cfg.num_envs:
            raise RobbenchError(f"got {len(self.envs)} envs for num_envs={cfg.num_envs}")
        d, a = self.envs.obs_dim, self.envs.act_dim
        self.policy = GaussianPolicy(d, a, cfg.hidden, cfg.initial_std)
        self.value = ValueNet(d, cfg.hidden)
        self.obs_filter = ObsFilter(d)
        self.reward_scaler = RewardScaler(cfg.num_envs, cfg.gamma)
        self.optimizer = torch.optim.Adam(
            [
                {"params": self.policy.parameters(), "lr": cfg.policy_lr},
                {"params": self.value.parameters(), "lr": cfg.value_lr},
            ],
            eps=cfg.adam_eps,
            fused=True,  # one kernel over all parameters: measurably faster for tiny MLPs on CPU
        )
        self.iteration = 0
        self.minibatch_step = 0
        self.steps_done = 0
        self.wall_s, self._started = 0.0, None
        self.recent_returns: list[float] = []
        self.return_curve: list[float] = []  # mean return of the episodes that ended in each iteration
        self._ep_return = np.zeros(cfg.num_envs)
        self._ep_length = np.zeros(cfg.num_envs, dtype=np.int64)
        raw = np.stack([self.envs.reset_one(i, seed=cfg.seed * 100_003 + i) for i in range(cfg.num_envs)])
        self._obs = self.obs_filter(raw)
        self.objective.setup(self)

    # ----------------------------------------------------------------------------------- schedule
    @property
    def eps_now(self) -> float:
        """ε_t: linear ramp from 0 over the first 75 % of all minibatch steps, then the target."""
        total = self.cfg.iterations * self.cfg.epochs * self.cfg.minibatches * self.cfg.eps_ramp_fraction
        return self.cfg.eps * min(1.0, self.minibatch_step / total) if total > 0 else self.cfg.eps

    @property
    def progress(self) -> float:
        """Fraction of the training run completed (for trainers' own schedules)."""
        return self.iteration / self.cfg.iterations

    # ----------------------------------------------------------------------------------- rollout
    @torch.no_grad()
    def collect(self) -> Batch:
        """Collect steps_per_iteration transitions with the stochastic policy over all envs."""
        cfg, n = self.cfg, self.cfg.num_envs
        horizon = cfg.steps_per_iteration // n
        d = self.envs.obs_dim
        obs = np.empty((horizon, n, d), dtype=np.float32)
        next_obs = np.empty((horizon, n, d), dtype=np.float32)
        actions = torch.empty((horizon, n, self.envs.act_dim))
        log_probs = torch.empty((horizon, n))
        rewards = np.empty((horizon, n))
        terminated = np.zeros((horizon, n), dtype=bool)
        truncated = np.zeros((horizon, n), dtype=bool)
        std = self.policy.std
        for t in range(horizon):
            obs[t] = self._obs
            state = torch.from_numpy(obs[t])
            mean = self.policy(state)
            act = mean + std * torch.randn(mean.shape, generator=self.gen)
            actions[t] = act
            log_probs[t] = gaussian_log_prob(mean, self.policy.log_std, act)
            raw_next, raw_r, terminated[t], truncated[t] = self.envs.step(act.numpy().astype(np.float64))
            rewards[t] = self.reward_scaler(raw_r)
            self._ep_return += raw_r
            self._ep_length += 1
            done = terminated[t] | truncated[t]
            # s_{t+1} as the policy would see it; terminal observations are normalised but, as they
            # are never acted on, not added to the filter statistics.
            next_obs[t] = self.obs_filter.normalize(raw_next)
            for i in np.flatnonzero(done):
                self.recent_returns.append(float(self._ep_return[i]))
                self._ep_return[i] = 0.0
                self._ep_length[i] = 0
                self.reward_scaler.reset(i)
                raw_next[i] = self.envs.reset_one(i)
            # The filter learns from every observation the policy will act on (resets included).
            self._obs = self.obs_filter(raw_next)
            live = ~done
            next_obs[t, live] = self._obs[live]
        self.steps_done += cfg.steps_per_iteration
        obs_t = torch.from_numpy(obs).reshape(-1, d)
        next_obs_t = torch.from_numpy(next_obs).reshape(-1, d)
        values = self.value(obs_t).reshape(horizon, n)
        # V(s_{t+1}) for every step at once: bootstraps at rollout end and at truncation.
        next_values = self.value(next_obs_t).reshape(horizon, n)
        adv = compute_gae(
            rewards, values.numpy(), next_values.numpy(), terminated, truncated, cfg.gamma, cfg.gae_lambda
        )
        adv_t = torch.from_numpy(adv).float().reshape(-1)
        values_t = values.reshape(-1)
        return Batch(
            obs=obs_t,
            actions=actions.reshape(-1, self.envs.act_dim),
            log_probs=log_probs.reshape(-1),
            advantages=adv_t,
            returns=values_t + adv_t,
            values=values_t,
            rewards=torch.from_numpy(rewards).float().reshape(-1),
            dones=torch.from_numpy(terminated).float().reshape(-1),
            next_obs=next_obs_t,
        )

    # ------------------------------------------------------------------------------------ update
    def surrogate(self, log_probs: torch.Tensor, mb: Minibatch) -> torch.Tensor:
        """Per-sample clipped objective g(r, Â) = min(r·Â, clip(r, 1±0.2)·Â), r = π(a|x)/π_old(a|s)."""
        ratio = torch.exp(log_probs - mb.log_probs)
        clipped = torch.clamp(ratio, 1.0 - self.cfg.clip, 1.0 + self.cfg.clip)
        return torch.min(ratio * mb.advantages, clipped * mb.advantages)

    def update(self, batch: Batch) -> dict[str, float]:
        """10 epochs × 32 minibatches of the clipped PPO loss (+ Objective term) and value loss."""
        cfg = self.cfg
        size = batch.obs.shape[0]
        mb_size = size // cfg.minibatches
        sums = torch.zeros(3)  # policy, value, extra losses (summed without a sync per step)
        for _ in range(cfg.epochs):
            perm = torch.randperm(size, generator=self.gen)
            for k in range(cfg.minibatches):
                idx = perm[k * mb_size : (k + 1) * mb_size]
                adv = batch.advantages[idx]
                mb = Minibatch(
                    obs=batch.obs[idx],
                    actions=batch.actions[idx],
                    log_probs=batch.log_probs[idx],
                    advantages=(adv - adv.mean()) / (adv.std() + 1e-8),
                    returns=batch.returns[idx],
                    values=batch.values[idx],
                    index=idx,
                )
                extra_states = self.objective.perturbed_states(self, mb)
                if extra_states is None:
                    mean = self.policy(mb.obs)
                else:  # μ(s) and μ(ŝ) in one forward
                    both = self.policy(torch.cat([mb.obs, extra_states]))
                    mean, mb.perturbed_mean = both[:mb_size], both[mb_size:]
                mb.mean = mean
                log_probs = gaussian_log_prob(mean, self.policy.log_std, mb.actions)
                policy_loss = -self.surrogate(log_probs, mb).mean()
                loss = self.objective.surrogate_weight * policy_loss - cfg.entropy_coef * self.policy.entropy()
                extra = self.objective.extra_loss(self, mb)
                if extra is not None:
                    loss = loss + extra
                    sums[2] += extra.detach()
                v = self.value(mb.obs)
                v_loss = (v - mb.returns).pow(2)
                if cfg.value_clip:
                    v_clipped = mb.values + torch.clamp(v - mb.values, -cfg.value_clip_range, cfg.value_clip_range)
                    v_loss = torch.max(v_loss, (v_clipped - mb.returns).pow(2))
                v_loss = v_loss.mean()
                self.optimizer.zero_grad(set_to_none=True)
                (loss + v_loss).backward()
                self.optimizer.step()
                self.minibatch_step += 1
                sums[0] += policy_loss.detach()
                sums[1] += v_loss.detach()
        means = (sums / (cfg.epochs * cfg.minibatches)).tolist()
        return dict(zip(("policy_loss", "value_loss", "extra_loss"), means))

    def _set_lr(self) -> None:
        frac = 1.0 - self.iteration / self.cfg.iterations if self.cfg.anneal_lr else 1.0
        self.optimizer.param_groups[0]["lr"] = self.cfg.policy_lr * frac
        self.optimizer.param_groups[1]["lr"] = self.cfg.value_lr * frac

    # ---------------------------------------------------------------------------------- snapshots
    def state(self) -> dict[str, Any]:
        """Everything the remaining iterations depend on (robbench/resume.py)."""
        from robbench.resume import object_state

        return {
            "iteration": self.iteration, "minibatch_step": self.minibatch_step, "steps_done": self.steps_done,
            "recent_returns": np.asarray(self.recent_returns, dtype=np.float64),
            "return_curve": np.asarray(self.return_curve, dtype=np.float64),
            "ep_return": self._ep_return, "ep_length": self._ep_length, "obs": self._obs,
            "policy": self.policy.state_dict(), "value": self.value.state_dict(),
            "adam": self.optimizer.state_dict()["state"], "gen": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(), "obs_filter": self.obs_filter.stats.state(),
            "reward_ret": self.reward_scaler.ret, "reward_stats": self.reward_scaler.stats.state(),
            "objective": object_state(self.objective), "envs": self.envs.get_state(),
            "wall_s": self.wall_s + (time.perf_counter() - self._started if self._started else 0.0),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        from robbench.filters import RunningMeanStd
        from robbench.resume import load_object_state, load_optimizer_state

        self.iteration = int(state["iteration"])
        self.minibatch_step = int(state["minibatch_step"])
        self.steps_done = int(state["steps_done"])
        self.recent_returns = [float(x) for x in state["recent_returns"]]
        self.return_curve = [float(x) for x in state["return_curve"]]
        self._ep_return = state["ep_return"].copy()
        self._ep_length = state["ep_length"].copy()
        self._obs = state["obs"].copy()
        self.policy.load_state_dict(state["policy"])
        self.value.load_state_dict(state["value"])
        load_optimizer_state(self.optimizer, state["adam"])
        self.gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        self.obs_filter.stats = RunningMeanStd.from_state(state["obs_filter"])
        self.reward_scaler.ret = state["reward_ret"].copy()
        self.reward_scaler.stats = RunningMeanStd.from_state(state["reward_stats"])
        load_object_state(self.objective, state["objective"])
        self.envs.set_state(state["envs"])
        self.wall_s = float(state["wall_s"])

    def train(self, progress: ProgressFn | None = None) -> dict[str, float]:
        """Run all iterations; `progress(iteration, stats)` is called after each one.

        With a resume point (the constructor's `resume`), a stored snapshot is restored first and a new
        one is written every `every_s` wall seconds, so a killed run continues where it stopped.
        """
        self.wall_s, self._started = 0.0, None
        if self.resume is not None:
            state = self.resume.load(like=self.state)
            if state is not None:
                self.load_state(state)
                self.resume.resumed_from = self.iteration
        self._started = start = time.perf_counter()
        steps_at_start, stats = self.steps_done, {}
        ended_before = len(self.recent_returns)
        while self.iteration < self.cfg.iterations:
            self._set_lr()
            batch = self.collect()
            self.objective.prepare_batch(self, batch)
            stats = self.update(batch)
            self.iteration += 1
            ended = self.recent_returns[ended_before:]
            ended_before = len(self.recent_returns)
            self.return_curve.append(float(np.mean(ended)) if ended else float("nan"))
            recent = self.recent_returns[-20:]
            stats.update(
                iteration=self.iteration,
                steps=self.steps_done,
                eps=self.eps_now,
                mean_return=float(np.mean(recent)) if recent else float("nan"),
                steps_per_s=(self.steps_done - steps_at_start) / (time.perf_counter() - start),
            )
            if not math.isfinite(stats["policy_loss"]) or not math.isfinite(stats["value_loss"]):
                raise RobbenchError(f"training diverged at iteration {self.iteration} (non-finite loss)")
            if self.resume is not None and self.resume.due() and self.iteration < self.cfg.iterations:
                self.resume.save(self.state())
            if progress is not None:
                progress(self.iteration, stats)
        self.wall_s += time.perf_counter() - start
        self._started = None
        return stats

    def agent(self, meta: dict[str, Any]) -> Agent:
        """Bundle the trained networks with a frozen copy of the observation filter."""
        frozen = ObsFilter(self.envs.obs_dim)
        frozen.stats = type(self.obs_filter.stats).from_state(self.obs_filter.stats.state())
        frozen.frozen = True
        meta = {
            **meta,
            "obs_dim": self.envs.obs_dim,
            "act_dim": self.envs.act_dim,
            "hidden": list(self.cfg.hidden),
        }
        return Agent(self.policy, self.value, frozen, meta, self.objective.extra_state())


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    lam: float,
) -> np.ndarray:
    """Generalised advantage estimation over (T, N) arrays, vectorised across envs.

    δ_t = r_t + γ·(1 − terminated_t)·V(s_{t+1}) − V(s_t), where V(s_{t+1}) is the value of the
    observation that followed step t (the final observation on truncation: bootstrap, not zero).
    A_t = δ_t + γλ·(1 − done_t)·A_{t+1}, with done = terminated or truncated (the trace stops at
    any episode boundary; the last step of the rollout bootstraps from V(s_T)).
    """
    horizon = rewards.shape[0]
    adv = np.zeros_like(rewards, dtype=np.float64)
    delta = rewards + gamma * (1.0 - terminated) * next_values - values
    cont = 1.0 - (terminated | truncated)
    last = np.zeros(rewards.shape[1:], dtype=np.float64)
    for t in range(horizon - 1, -1, -1):
        last = delta[t] + gamma * lam * cont[t] * last
        adv[t] = last
    return adv
