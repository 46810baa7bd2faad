import numpy as np
import pytest
import torch

from robbench.errors import RobbenchError
from robbench.evaluate import Protocol, evaluate
from robbench.registry import get_attack
from robbench.threat import Attack


def test_same_inputs_give_same_returns(smoke_agent):
    p = Protocol.for_env("hopper", episodes=6)
    for name in ("none", "random"):
        a = evaluate(smoke_agent, get_attack(name)(p.eps), p)
        b = evaluate(smoke_agent, get_attack(name)(p.eps), p)
        np.testing.assert_array_equal(a.returns, b.returns)
        np.testing.assert_array_equal(a.lengths, b.lengths)
    assert list(a.seeds) == [p.base_seed + i for i in range(6)]


def test_batched_episode_equals_the_same_episode_run_alone(smoke_agent):
    """Episode i of a batch is the episode seeded base_seed + i, whatever else is in the batch.

    Not bit-identical: BLAS rounds a (5, d) and a (1, d) matmul differently in the last float32 bit,
    so returns agree to ~1e-7 relative here (a batch of the same size reproduces exactly).
    """
    p = Protocol.for_env("hopper", episodes=5)
    batch = evaluate(smoke_agent, get_attack("none")(p.eps), p)
    for i in (0, 3):
        alone = evaluate(smoke_agent, get_attack("none")(p.eps), Protocol.for_env("hopper", episodes=1,
                                                                                   base_seed=p.base_seed + i))
        assert alone.returns[0] == pytest.approx(batch.returns[i], rel=1e-5)
        assert alone.lengths[0] == batch.lengths[i]


def test_returns_are_raw_env_reward_sums(smoke_agent):
    """Replay episode 0 by hand with gymnasium and the agent's mean action."""
    import gymnasium as gym

    p = Protocol.for_env("hopper", episodes=1)
    res = evaluate(smoke_agent, get_attack("none")(p.eps), p)
    env = gym.make("Hopper-v5")
    obs, _ = env.reset(seed=p.base_seed)
    total, done = 0.0, False
    while not done:
        s = torch.from_numpy(smoke_agent.normalize(obs[None])).float()
        obs, r, term, trunc, _ = env.step(smoke_agent.act(s).numpy()[0].astype(np.float64))
        total += r
        done = term or trunc
    assert total == pytest.approx(res.returns[0], rel=1e-9)


class _Escaping(Attack):
    name = "escaping"

    def perturb(self, victim, states, gen):
        return states + 2 * self.eps


def test_evaluator_checks_the_ball_every_step(smoke_agent):
    p = Protocol.for_env("hopper", episodes=2)
    with pytest.raises(RobbenchError, match="left the ε-ball"):
        evaluate(smoke_agent, _Escaping(p.eps), p)


def test_nan_observation_is_a_clear_error(smoke_agent, monkeypatch):
    from robbench import envs

    real = envs.EnvBatch.step_one

    def poisoned(self, i, action):
        obs, r, te, tr = real(self, i, action)
        return envs.check_obs(obs * np.nan, "hopper"), r, te, tr

    monkeypatch.setattr(envs.EnvBatch, "step_one", poisoned)
    p = Protocol.for_env("hopper", episodes=2)
    with pytest.raises(RobbenchError, match="non-finite observation"):
        evaluate(smoke_agent, get_attack("none")(p.eps), p)
