"""Environment registry: the protocol's environments, their ε, their paper budgets and every other
per-env setting (the reference PPO's and the robust trainers', `TrainerDefaults`).

Values come from docs/protocol.md and docs/ppo.md (the SA_PPO/ATLA reference configs). ε lives in
the *normalised* observation space (docs/protocol.md, "Environments and threat model").
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import gymnasium as gym
import numpy as np

from robbench.errors import RobbenchError, unknown


@dataclass(frozen=True)
class TrainerDefaults:
    """The robust trainers' per-env reference values (docs/trainers.md): what `Objective.defaults(env)`
    returns for each trainer on this env, overridable from the CLI. Each trainer's docstring cites the
    paper table or reference config a value comes from; Humanoid, absent from most reference configs,
    takes the values its trainer's docstring names (mostly Ant's: same budget and learning rates)."""

    sappo_kappa: float
    """κ of `sappo` (SA-PPO with SGLD; spec "sappo"); Humanoid, not in the spec: Ant's 0.003."""
    sappo_convex_kappa: float
    """κ of `sappo-convex` (trainers.md: 0.1, 0.1, 0.1, 0.003). Humanoid is not in the spec's list:
    0.01 is the SA_PPO reference config_humanoid_robust_ppo_convex.json value."""
    barppo_kappa: float
    """κ of `barppo` (paper Table 8), also `arppo`'s default; Humanoid: Ant's 1.0 (our choice)."""
    wocar_kappa: float
    """κ_KL of `wocar` (the SA-PPO regulariser's weight). Humanoid is not in the WocaR configs: it
    takes Ant's values here and in the other `wocar_` fields (same budget and learning rates)."""
    wocar_q_weight: float
    """Final weight of `wocar`'s worst-case Q term."""
    wocar_q_weight_schedule: str
    """How that weight ramps: "linear", or "cubic" (Walker2d's reference config)."""
    wocar_q_lr: float
    """Learning rate of `wocar`'s worst-case Q network."""
    radial_eps_schedule: str
    """Shape of `radial`'s ε ramp: "smooth" (Hopper's reference config) or "expo"."""
    wocar_ppo: tuple[tuple[str, float | bool], ...] = ()
    """PPO settings WocaR's reference config changes on this env (HalfCheetah's
    config_halfcheetah_robust_q_ppo_sgld.json: policy lr 1e-4, value lr 1e-3, entropy 1e-4)."""
    bound_trainer_ppo: tuple[tuple[str, float | bool], ...] = ()
    """PPO settings the reference configs of `sappo-convex` and `radial` change on this env, as
    (setting, value) pairs (HalfCheetah's: other learning rates, an entropy bonus, no annealing)."""


@dataclass(frozen=True)
class EnvSpec:
    """One benchmark environment and the hyperparameters the reference PPO uses on it.

    Every per-env setting of the harness lives here (the PPO core's, the protocol's and, in
    `trainers`, the robust trainers'), so adding an env is adding one entry to `ENVS`."""

    key: str
    gym_id: str
    eps: float
    """Protocol ℓ∞ radius in normalised-observation space."""
    iterations: int
    """Paper training budget in PPO iterations of 2048 transitions."""
    policy_lr: float
    value_lr: float
    value_clip: bool
    initial_std: float
    entropy_coef: float = 0.0
    max_episode_steps: int = 1000
    note: str = ""
    trainers: TrainerDefaults = field(kw_only=True)
    """The robust trainers' defaults on this env."""

    @property
    def paper_steps(self) -> int:
        return self.iterations * 2048

    def to_dict(self) -> dict:
        return asdict(self)


#: HalfCheetah's reference settings for SA-PPO (convex) and RADIAL-PPO (trainers.md).
_HALFCHEETAH_BOUND_PPO = (("policy_lr", 1e-4), ("value_lr", 1e-3), ("entropy_coef", 1e-4), ("anneal_lr", False))

ENVS: dict[str, EnvSpec] = {
    spec.key: spec
    for spec in [
        EnvSpec(
            "hopper", "Hopper-v5", 0.075, 976, 3e-4, 2.5e-4, False, 1.0,
            trainers=TrainerDefaults(
                sappo_kappa=1.0, sappo_convex_kappa=0.1, barppo_kappa=0.3, wocar_kappa=0.1, wocar_q_weight=0.8,
                wocar_q_weight_schedule="linear", wocar_q_lr=4e-4, radial_eps_schedule="smooth",
            ),
        ),
        EnvSpec(
            "walker2d", "Walker2d-v5", 0.05, 976, 4e-4, 3e-4, True, 1.0,
            trainers=TrainerDefaults(
                sappo_kappa=0.1, sappo_convex_kappa=0.1, barppo_kappa=0.3, wocar_kappa=0.1, wocar_q_weight=0.8,
                wocar_q_weight_schedule="cubic", wocar_q_lr=4e-4, radial_eps_schedule="expo",
            ),
        ),
        EnvSpec(
            "halfcheetah", "HalfCheetah-v5", 0.15, 976, 3e-4, 1e-4, True, 0.5,
            trainers=TrainerDefaults(
                sappo_kappa=0.1, sappo_convex_kappa=0.1, barppo_kappa=0.3, wocar_kappa=0.1, wocar_q_weight=0.5,
                wocar_q_weight_schedule="linear", wocar_q_lr=4e-4, radial_eps_schedule="expo",
                wocar_ppo=_HALFCHEETAH_BOUND_PPO[:3],  # the same three; WocaR anneals its lr
                bound_trainer_ppo=_HALFCHEETAH_BOUND_PPO,
            ),
        ),
        EnvSpec(
            "ant", "Ant-v5", 0.15, 4882, 5e-5, 1e-5, True, 1.0,
            note="Ant-v5 observations exclude contact forces by default (v2 included them)",
            trainers=TrainerDefaults(
                sappo_kappa=0.003, sappo_convex_kappa=0.003, barppo_kappa=1.0, wocar_kappa=0.003, wocar_q_weight=0.8,
                wocar_q_weight_schedule="linear", wocar_q_lr=3e-5, radial_eps_schedule="expo",
            ),
        ),
        EnvSpec(
            "humanoid", "Humanoid-v5", 0.075, 4882, 5e-5, 1e-5, True, 1.0,
            note="extension beyond the paper's main tables (Appendix G.3)",
            trainers=TrainerDefaults(
                sappo_kappa=0.003, sappo_convex_kappa=0.01, barppo_kappa=1.0, wocar_kappa=0.003, wocar_q_weight=0.8,
                wocar_q_weight_schedule="linear", wocar_q_lr=3e-5, radial_eps_schedule="expo",
            ),
        ),
    ]
}


def get_env_spec(key: str) -> EnvSpec:
    """Look up an environment by registry key, with a one-line error for unknown keys."""
    try:
        return ENVS[key]
    except KeyError:
        raise unknown("env", key, ENVS) from None


_KNOWN_MUJOCO_DEPRECATION = "compiler attribute 'settotalmass' is deprecated"
"""MuJoCo >= 3.4 says this once per model compile of gymnasium's HalfCheetah (and Ant) XML, which
sets the total mass at compile time; the masses it compiles are unchanged, so the text is noise
that would bury a grid's progress bar under one line per env created."""


def _mujoco_warning(message: str) -> None:
    if _KNOWN_MUJOCO_DEPRECATION not in message:
        warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)


def install_mujoco_warning_filter() -> None:
    """Route MuJoCo's C-level warnings through Python's `warnings` (so they can be filtered like any
    other), dropping only the one known deprecation above. Idempotent; a no-op without mujoco."""
    try:
        import mujoco
    except ImportError:  # pragma: no cover - mujoco is a dependency
        return
    if mujoco.get_mju_user_warning() is not _mujoco_warning:
        mujoco.set_mju_user_warning(_mujoco_warning)


def make_env(key: str) -> gym.Env:
    """Create one gymnasium environment (with its 1000-step TimeLimit) for a registry key."""
    spec = get_env_spec(key)
    install_mujoco_warning_filter()
    try:
        return gym.make(spec.gym_id, max_episode_steps=spec.max_episode_steps)
    except Exception as exc:  # missing mujoco etc.
        raise RobbenchError(f"cannot create {spec.gym_id} for env {key!r}: {exc}") from exc


class EnvBatch:
    """N independent copies of one environment stepped together in this process.

    This is also the interface the PPO core trains on (`reset_one`, `step`, `obs_dim`, `act_dim`,
    `spec`, `close`): a learned attacker trains with the same core on an env object that wraps the
    victim (attacks/sa_rl.py). A plain loop over gymnasium envs: on 2 cores, sub-process vector envs cost more in IPC than
    they save (Hopper steps in ~90 µs). What makes rollouts fast is that the *policy* runs once per
    step on the whole (N, obs_dim) batch. Unlike gymnasium's vector envs there is no autoreset:
    the caller decides when and with which seed each env resets, which the evaluator needs for
    explicit per-episode seeds and the trainer needs for truncation bootstrapping.
    """

    def __init__(self, key: str, num_envs: int):
        if num_envs <= 0:
            raise RobbenchError(f"number of envs must be positive, got {num_envs}")
        self.spec = get_env_spec(key)
        self.envs = [make_env(key) for _ in range(num_envs)]
        self.obs_dim = int(np.prod(self.envs[0].observation_space.shape))
        self.act_dim = int(np.prod(self.envs[0].action_space.shape))

    def __len__(self) -> int:
        return len(self.envs)

    def reset_one(self, i: int, seed: int | None = None) -> np.ndarray:
        obs, _ = self.envs[i].reset(seed=seed)
        return check_obs(obs, self.spec.key)

    def step_one(self, i: int, action: np.ndarray):
        obs, reward, terminated, truncated, _ = self.envs[i].step(action)
        return check_obs(obs, self.spec.key), float(reward), bool(terminated), bool(truncated)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step every env once: (next obs (N, d), rewards, terminated, truncated). No autoreset."""
        n = len(self.envs)
        obs = np.empty((n, self.obs_dim))
        rewards = np.empty(n)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        for i in range(n):
            obs[i], rewards[i], terminated[i], truncated[i] = self.step_one(i, actions[i])
        return obs, rewards, terminated, truncated

    def get_state(self) -> list[dict]:
        """Exact state of every copy (physics, RNG, time limit), for mid-run snapshots."""
        from robbench.resume import gym_env_state

        return [gym_env_state(env) for env in self.envs]

    def set_state(self, state: list[dict]) -> None:
        from robbench.resume import set_gym_env_state

        if len(state) != len(self.envs):
            raise RobbenchError(f"snapshot holds {len(state)} envs, this batch has {len(self.envs)}")
        for env, s in zip(self.envs, state):
            set_gym_env_state(env, s)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def check_obs(obs: np.ndarray, key: str) -> np.ndarray:
    """Reject NaN/inf observations with a clear error instead of training on garbage."""
    obs = np.asarray(obs, dtype=np.float64)
    finite = np.isfinite(obs)
    if not finite.all():  # one short line, even for a 348-dimensional Humanoid observation
        bad = np.flatnonzero(~finite.reshape(-1))
        raise RobbenchError(f"env {key!r} returned a non-finite observation ({len(bad)} of {obs.size} entries "
                            f"NaN or inf, first at index {bad[0]}: {obs.reshape(-1)[bad[0]]})")
    return obs
