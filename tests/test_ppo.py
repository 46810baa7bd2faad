
import pytest
import torch

from robbench.errors import RobbenchError
from robbench.ppo import Objective, PPOConfig, PPOCore


class _Probe(Objective):
    """Records what the core hands to the extension point; adds a small penalty on μ."""

    def __init__(self):
        super().__init__(weight=0.1)
        self.calls, self.eps_seen, self.batches = 0, [], 0

    def prepare_batch(self, core, batch):
        self.batches += 1
        assert batch.obs.shape == (2048, 11) and batch.advantages.shape == (2048,)

    def extra_loss(self, core, mb):
        self.calls += 1
        self.eps_seen.append(core.eps_now)
        assert mb.obs.shape == (64, 11)
        assert abs(float(mb.advantages.mean())) < 1e-5  # normalised per minibatch
        return 0.1 * core.policy(mb.obs).pow(2).mean()


def test_extension_point_is_called_every_minibatch_with_the_eps_ramp():
    cfg = PPOConfig.for_env("hopper", preset="smoke", num_envs=4)
    probe = _Probe()
    core = PPOCore(cfg, probe)
    core.train()
    assert probe.batches == 2 and probe.calls == 2 * 10 * 32
    eps = probe.eps_seen
    assert eps[0] == 0.0 and all(b >= a for a, b in zip(eps, eps[1:]))
    ramp_steps = 0.75 * 2 * 320
    assert eps[100] == pytest.approx(0.075 * 100 / ramp_steps)
    assert eps[-1] == pytest.approx(0.075)
    assert core.steps_done == 4096


def test_noguide_weight_zero_drops_the_clean_surrogate():
    class Zero(Objective):
        surrogate_weight = 0.0

    cfg = PPOConfig.for_env("hopper", preset="smoke", num_envs=8, seed=1)
    core = PPOCore(cfg, Zero())
    before = [p.detach().clone() for p in core.policy.parameters()]
    core.train()
    after = list(core.policy.parameters())
    # entropy coefficient is 0 and no term was added: the policy gets no gradient at all
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_same_seed_same_agent_any_run():
    def weights(seed):
        core = PPOCore(PPOConfig.for_env("hopper", preset="smoke", seed=seed))
        core.train()
        return torch.cat([p.detach().flatten() for p in core.policy.parameters()])

    assert torch.equal(weights(3), weights(3))
    assert not torch.equal(weights(3), weights(4))


def test_config_records_budget_and_validates():
    cfg = PPOConfig.for_env("halfcheetah")
    assert cfg.iterations == 976 and cfg.initial_std == 0.5 and cfg.value_clip and cfg.eps == 0.15
    assert cfg.budget == "paper" and cfg.total_steps == 976 * 2048
    assert PPOConfig.for_env("hopper", steps=10_000).budget == "steps10240"
    assert PPOConfig.for_env("ant").iterations == 4882
    with pytest.raises(RobbenchError):
        PPOConfig.for_env("hopper", num_envs=0)
    with pytest.raises(RobbenchError, match="ε must be"):
        PPOConfig.for_env("hopper", eps=-1.0)


def test_initial_policy_matches_the_spec():
    core = PPOCore(PPOConfig.for_env("halfcheetah", preset="smoke", num_envs=1))
    assert torch.allclose(core.policy.std, torch.full((6,), 0.5))
    head = core.policy.mean_net[-1].weight
    assert head.abs().max() < 0.05  # gain 0.01 head
    assert all(float(m.bias.detach().abs().max()) == 0 for m in core.policy.mean_net if hasattr(m, "bias"))


@pytest.mark.slow
def test_quick_preset_learns_to_hop():
    core = PPOCore(PPOConfig.for_env("hopper", preset="quick"))
    stats = core.train()
    assert stats["mean_return"] > 500


def test_config_is_frozen_and_the_core_leaves_the_callers_config_alone():
    """PPOConfig is frozen; the core runs its trainer's PPO settings on a copy (`with_objective`)."""
    import dataclasses

    from robbench.train import build_config

    cfg = PPOConfig.for_env("halfcheetah", preset="smoke", num_envs=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.policy_lr = 1.0
    _, objective = build_config("radial", "halfcheetah", preset="smoke", num_envs=1)
    core = PPOCore(cfg, objective)
    try:
        assert core.cfg.policy_lr == 1e-4 and core.cfg.anneal_lr is False  # HalfCheetah's RADIAL settings
        assert cfg.policy_lr == 3e-4 and cfg.anneal_lr is True  # the caller's config, unchanged
        assert core.resume is None  # no snapshot place unless one is passed
    finally:
        core.envs.close()
