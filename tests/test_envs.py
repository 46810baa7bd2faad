"""The env registry is the one place per-env settings live (robbench/envs.py)."""

from __future__ import annotations

import dataclasses

import pytest

from robbench import envs
from robbench.errors import RobbenchError
from robbench.ppo import PPOConfig
from robbench.registry import trainers


def test_every_trainer_has_defaults_on_every_env():
    for name, cls in trainers().items():
        for key in envs.ENVS:
            defaults = cls.defaults(key)
            assert isinstance(defaults, dict), name
            if "kappa" in defaults:
                assert defaults["kappa"] > 0, (name, key)


@pytest.mark.parametrize("method", sorted(trainers()))
def test_an_unknown_env_is_one_line_naming_it_and_the_valid_ones(method):
    with pytest.raises(RobbenchError) as info:
        trainers()[method].defaults("hoper")
    text = str(info.value)
    assert "\n" not in text and "'hoper'" in text
    assert all(key in text for key in envs.ENVS)


def test_a_new_env_is_one_registry_entry(monkeypatch):
    """An env added to ENVS alone gets the PPO settings and every trainer's defaults from its spec."""
    hopper = envs.ENVS["hopper"]
    spec = dataclasses.replace(hopper, key="hopper-alt", eps=0.05, policy_lr=1e-4, trainers=dataclasses.replace(
        hopper.trainers, sappo_kappa=0.5, wocar_q_weight_schedule="cubic",
        bound_trainer_ppo=(("policy_lr", 2e-5),)))
    monkeypatch.setitem(envs.ENVS, "hopper-alt", spec)
    cfg = PPOConfig.for_env("hopper-alt", preset="smoke")
    assert (cfg.eps, cfg.policy_lr) == (0.05, 1e-4)
    table = trainers()
    assert table["sappo"].defaults("hopper-alt")["kappa"] == 0.5
    assert table["wocar"].defaults("hopper-alt")["q_weight_schedule"] == "cubic"
    assert table["radial"].defaults("hopper-alt")["ppo"] == {"policy_lr": 2e-5}
    assert table["sappo-convex"].defaults("hopper-alt")["ppo"] == {"policy_lr": 2e-5}


def test_reference_values_per_env():
    """Spot checks of the table against docs/trainers.md (values moved here from the trainers)."""
    t = {key: spec.trainers for key, spec in envs.ENVS.items()}
    assert [t[k].sappo_kappa for k in ("hopper", "walker2d", "halfcheetah", "ant")] == [1.0, 0.1, 0.1, 0.003]
    assert [t[k].barppo_kappa for k in ("hopper", "ant", "humanoid")] == [0.3, 1.0, 1.0]
    assert t["walker2d"].wocar_q_weight_schedule == "cubic" and t["halfcheetah"].wocar_q_weight == 0.5
    assert t["hopper"].radial_eps_schedule == "smooth" and t["walker2d"].radial_eps_schedule == "expo"
    assert dict(t["halfcheetah"].bound_trainer_ppo) == {"policy_lr": 1e-4, "value_lr": 1e-3, "entropy_coef": 1e-4,
                                                       "anneal_lr": False}
    assert t["humanoid"].sappo_convex_kappa == 0.01 and t["ant"].wocar_q_lr == 3e-5


def test_mujoco_warnings_reach_python_except_the_known_settotalmass_deprecation(capfd):
    import warnings

    import mujoco

    from robbench.envs import _mujoco_warning, make_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = make_env("halfcheetah")  # its XML sets settotalmass: MuJoCo >= 3.4 warns at compile
        env.reset(seed=0)
        env.close()
        assert mujoco.get_mju_user_warning() is _mujoco_warning
        _mujoco_warning("Nan, Inf or huge value in QACC at DOF 0")
    assert "settotalmass" not in capfd.readouterr().err
    assert [str(w.message) for w in caught if "MuJoCo" in str(w.message)] == [
        "MuJoCo: Nan, Inf or huge value in QACC at DOF 0"]
