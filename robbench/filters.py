"""Observation normalisation and reward scaling (ppo.md, "Environment wrappers").

Both keep running statistics with Welford's algorithm, generalised to batches with Chan et al.'s
parallel update, so N vectorised envs update the statistics with one call per step. The result is
the same (up to float rounding) as feeding the observations one by one, which tests/test_filters.py
checks against numpy.
"""

from __future__ import annotations

import numpy as np

OBS_CLIP = 10.0
REWARD_CLIP = 10.0
STD_EPS = 1e-8


class RunningMeanStd:
    """Running mean and sample variance of vectors (Welford / Chan, float64)."""

    def __init__(self, shape: tuple[int, ...]):
        self.n = 0
        self.mean = np.zeros(shape, dtype=np.float64)
        self.m2 = np.zeros(shape, dtype=np.float64)  # sum of squared deviations

    def update(self, batch: np.ndarray) -> None:
        """Add a batch of samples, shape (k, *shape)."""
        batch = np.asarray(batch, dtype=np.float64).reshape((-1,) + self.mean.shape)
        k = batch.shape[0]
        if k == 0:
            return
        b_mean = batch.mean(axis=0)
        b_m2 = ((batch - b_mean) ** 2).sum(axis=0)
        total = self.n + k
        delta = b_mean - self.mean
        self.mean = self.mean + delta * (k / total)
        self.m2 = self.m2 + b_m2 + delta**2 * (self.n * k / total)
        self.n = total

    @property
    def var(self) -> np.ndarray:
        """Sample variance (n − 1), as the reference RunningStat; 1 until two samples were seen."""
        if self.n < 2:
            return np.ones_like(self.mean)
        return self.m2 / (self.n - 1)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var)

    def state(self) -> dict[str, np.ndarray]:
        return {"n": np.array(self.n, dtype=np.int64), "mean": self.mean.copy(), "m2": self.m2.copy()}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> RunningMeanStd:
        rms = cls(tuple(np.asarray(state["mean"]).shape))
        rms.n = int(np.asarray(state["n"]))
        rms.mean = np.asarray(state["mean"], dtype=np.float64).copy()
        rms.m2 = np.asarray(state["m2"], dtype=np.float64).copy()
        return rms


class ObsFilter:
    """`clip((o − mean)/(std + 1e-8), −10, 10)` with running statistics of clean observations.

    Training updates it with every clean observation (reset observations included); evaluation and
    attacker training use it frozen (protocol.md). Attack perturbations are applied *after* this
    filter and are not clipped back to ±10.
    """

    def __init__(self, obs_dim: int):
        self.stats = RunningMeanStd((obs_dim,))
        self.frozen = False

    def __call__(self, obs: np.ndarray, update: bool = True) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        if update and not self.frozen:
            self.stats.update(obs)
        return self.normalize(obs)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        return np.clip((obs - self.stats.mean) / (self.stats.std + STD_EPS), -OBS_CLIP, OBS_CLIP)


class RewardScaler:
    """Divide rewards by the running std of the discounted return (no centring), clip to ±10.

    One discounted-return accumulator per env, reset at episode start (ppo.md). Reported returns are
    always the raw environment rewards; this only shapes what PPO learns from.
    """

    def __init__(self, num_envs: int, gamma: float):
        self.gamma = gamma
        self.ret = np.zeros(num_envs, dtype=np.float64)
        self.stats = RunningMeanStd(())

    def __call__(self, rewards: np.ndarray) -> np.ndarray:
        self.ret = self.gamma * self.ret + rewards
        self.stats.update(self.ret)
        return np.clip(rewards / (self.stats.std + STD_EPS), -REWARD_CLIP, REWARD_CLIP)

    def reset(self, index: int) -> None:
        self.ret[index] = 0.0
