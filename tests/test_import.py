"""Bring your own agent (robbench/importers/): SB3, CleanRL and torch agents imported into a results
home, evaluated with their own conventions; hostile or wrong inputs are one line, and nothing runs."""

from __future__ import annotations

import glob
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

import robbench
from robbench.checkpoint import load_agent_file, read_tensors, save_agent
from robbench.cli import app
from robbench.errors import RobbenchError
from robbench.store import ResultsStore

runner = CliRunner()
OBS, ACT = 11, 3  # Hopper


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def imported_id(result) -> str:
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def sequential(widths, act=nn.Tanh, seed=0, out_bias=0.0):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), act()]
    seq = nn.Sequential(*layers[:-1])
    with torch.no_grad():
        seq[-1].bias.add_(out_bias)
    return seq


def sb3_state_dict(pi=(64, 64), vf=(64, 64), act=nn.Tanh, seed=0):
    """The policy.pth keys and shapes of an SB3 MlpPolicy (ActorCriticPolicy)."""
    policy, value = sequential([OBS, *pi, ACT], act, seed), sequential([OBS, *vf, 1], act, seed + 1)
    def hidden_layers(seq):  # all but the output Linear
        return {k: v for k, v in seq.state_dict().items() if int(k.split(".")[0]) < len(seq) - 1}

    sd = {f"mlp_extractor.policy_net.{k}": v for k, v in hidden_layers(policy).items()}
    sd.update({f"mlp_extractor.value_net.{k}": v for k, v in hidden_layers(value).items()})
    last = len(policy) - 1
    sd.update({"action_net.weight": policy[last].weight.detach(), "action_net.bias": policy[last].bias.detach(),
               "value_net.weight": value[last].weight.detach(), "value_net.bias": value[last].bias.detach(),
               "log_std": torch.full((ACT,), -0.5)})
    return sd, policy


def sb3_zip(path: Path, sd, policy_kwargs=None, **data) -> Path:
    """A zip laid out as stable-baselines3 saves one (data JSON + policy.pth state dict)."""
    buf = io.BytesIO()
    torch.save(sd, buf)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data", json.dumps({"policy_kwargs": {} if policy_kwargs is None else policy_kwargs,
                                       "use_sde": False, "num_timesteps": 2048, "gamma": 0.99, **data}))
        z.writestr("policy.pth", buf.getvalue())
        z.writestr("_stable_baselines3_version", "2.9.2")
    return path


def stats_npz(path: Path, seed=0, **extra) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mean, var = rng.normal(size=OBS), rng.uniform(0.1, 4.0, size=OBS)
    np.savez(path, mean=mean, var=var, **extra)
    return path, mean, var


def raw_observations(n=300, seed=0) -> np.ndarray:
    """Raw observations from a few random-action Hopper rollouts, plus far-off points (clipping)."""
    import gymnasium as gym

    env = gym.make("Hopper-v5")
    rng = np.random.default_rng(seed)
    out, (obs, _) = [], env.reset(seed=seed)
    while len(out) < n // 2:
        out.append(obs)
        obs, _, term, trunc, _ = env.step(rng.uniform(-1, 1, size=ACT))
        if term or trunc:
            obs, _ = env.reset()
    env.close()
    return np.concatenate([np.array(out), rng.normal(scale=5.0, size=(n - len(out), OBS))])


# ---------------------------------------------------------------------------------- SB3 (real)
def test_sb3_zip_and_vecnormalize_match_sb3_predict(tmp_path):
    """Actions of an imported SB3 PPO (tanh default, VecNormalize) equal SB3's own
    model.predict(normalize_obs(o), deterministic=True), clipping to the action box included."""
    pytest.importorskip("stable_baselines3")
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    venv = VecNormalize(DummyVecEnv([lambda: gym.make("Hopper-v5")]), clip_obs=5.0)
    model = PPO("MlpPolicy", venv, n_steps=128, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(256)  # a few hundred steps: non-trivial VecNormalize statistics
    with torch.no_grad():  # push some means past ±1, so the clip to the action box matters
        model.policy.action_net.bias.copy_(torch.tensor([1.5, -1.2, 0.0]))
    model.save(tmp_path / "ppo.zip")
    venv.save(str(tmp_path / "vecnormalize.pkl"))

    home = tmp_path / "home"
    aid = imported_id(cli("import", tmp_path / "ppo.zip", "--env", "hopper", "--vecnormalize",
                          tmp_path / "vecnormalize.pkl", "--home", home))
    assert aid == "hopper/ppo-sb3/external/0"  # "ppo" is a robbench trainer: the name says where it came from
    agent = robbench.load_agent(aid, home=str(home))
    assert agent.meta["activation"] == "tanh" and agent.meta["action_clip"] is True
    assert agent.meta["obs_norm"]["convention"] == "sb3" and agent.meta["obs_norm"]["clip_obs"] == 5.0

    loaded = PPO.load(tmp_path / "ppo.zip", device="cpu")
    vec = VecNormalize.load(str(tmp_path / "vecnormalize.pkl"), DummyVecEnv([lambda: gym.make("Hopper-v5")]))
    obs = raw_observations()
    assert np.array_equal(agent.normalize(obs).astype(np.float32), vec.normalize_obs(obs).astype(np.float32))
    expected, _ = loaded.predict(vec.normalize_obs(obs), deterministic=True)
    got = agent.predict(obs)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert (np.abs(got) == 1.0).any() and (np.abs(got) < 1.0).any()  # both clipped and free actions
    np.testing.assert_allclose(agent.predict(obs[0]), expected[0], rtol=0, atol=1e-6)


def test_relu_256_network_imports_evaluates_certifies_and_reports(tmp_path):
    """rl-zoo3's tuned MuJoCo PPO architecture (ReLU 256-256, recorded in policy_kwargs)."""
    pytest.importorskip("stable_baselines3")
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    venv = VecNormalize(DummyVecEnv([lambda: gym.make("Hopper-v5")]))
    kwargs = dict(log_std_init=-2, ortho_init=False, activation_fn=nn.ReLU, net_arch=dict(pi=[256, 256], vf=[256, 256]))
    PPO("MlpPolicy", venv, policy_kwargs=kwargs, seed=0, device="cpu").save(tmp_path / "zoo_ppo.zip")
    venv.save(str(tmp_path / "vecnormalize.pkl"))
    home = tmp_path / "home"
    aid = imported_id(cli("import", tmp_path / "zoo_ppo.zip", "--env", "hopper", "--vecnormalize",
                          tmp_path / "vecnormalize.pkl", "--name", "rlzoo-ppo", "--home", home))
    agent = robbench.load_agent(aid, home=str(home))
    assert agent.meta["activation"] == "relu" and agent.meta["hidden"] == [256, 256]
    assert [type(m) for m in agent.policy.mean_net] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]

    result = cli("evaluate", "--agents", aid, "--attacks", "random,mad", "--episodes", 2, "--workers", 1,
                 "--home", home)
    assert result.exit_code == 0, result.output
    with ResultsStore(home) as store:
        assert {c["attack"] for c in store.cells() if c["agent_id"] == aid} == {"random", "mad"}
    result = cli("certify", "--agents", aid, "--method", "ibp", "--states", 8, "--home", home)
    assert result.exit_code == 0, result.output
    with ResultsStore(home) as store:
        assert [c["method"] for c in store.certificates() if c["agent_id"] == aid] == ["ibp"]
    report = cli("report", "--format", "json", "--home", home)
    assert report.exit_code == 0 and aid in report.output


@pytest.mark.parametrize("algo", ["SAC", "TD3"])
def test_sb3_sac_and_td3_actors_match_sb3_predict_and_are_attacked_and_certified(tmp_path, algo):
    """The deterministic actor of an SB3 SAC / TD3 (ReLU by default, tanh-squashed onto the box, no V
    critic) imports with actions equal to SB3's predict(deterministic=True); attacks reach it
    through the squash, critic attacks are skipped, and auto-LiRPA certifies it."""
    sb3 = pytest.importorskip("stable_baselines3")
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    venv = VecNormalize(DummyVecEnv([lambda: gym.make("Hopper-v5")]), norm_reward=False)
    model = getattr(sb3, algo)("MlpPolicy", venv, learning_starts=64, batch_size=32, seed=0, device="cpu",
                               policy_kwargs=dict(net_arch=[48, 32]))
    model.learn(96)  # some gradient steps: weights and VecNormalize statistics away from their start
    model.save(tmp_path / f"{algo}.zip")
    venv.save(str(tmp_path / "vecnormalize.pkl"))
    home = tmp_path / "home"
    result = cli("import", tmp_path / f"{algo}.zip", "--env", "hopper", "--vecnormalize",
                 tmp_path / "vecnormalize.pkl", "--home", home)
    aid = imported_id(result)
    assert "tanh-squashed onto the action box" in result.output and "σ: 0.1" in result.output
    agent = robbench.load_agent(aid, home=str(home))
    assert agent.meta["squash"] == "tanh" and agent.meta["activation"] == "relu" and agent.meta["hidden"] == [48, 32]
    assert agent.meta["has_critic"] is False and "holds no state-independent σ" in agent.meta["sigma_source"]
    assert [type(m) for m in agent.policy.mean_net][-3:] == [nn.Linear, nn.Tanh, nn.Linear]

    loaded = getattr(sb3, algo).load(tmp_path / f"{algo}.zip", device="cpu")
    vec = VecNormalize.load(str(tmp_path / "vecnormalize.pkl"), DummyVecEnv([lambda: gym.make("Hopper-v5")]))
    obs = raw_observations()
    expected, _ = loaded.predict(vec.normalize_obs(obs), deterministic=True)
    np.testing.assert_allclose(agent.predict(obs), expected, rtol=0, atol=1e-5)

    result = cli("evaluate", "--agents", aid, "--attacks", "none,mad,critic", "--episodes", 2, "--workers", 1,
                 "--home", home)
    assert result.exit_code == 0, result.output
    assert "skipped: attack 'critic' needs a critic" in result.output
    with ResultsStore(home) as store:
        cells = {c["attack"]: c for c in store.cells() if c["agent_id"] == aid}
    assert set(cells) == {"none", "mad"}
    assert cells["mad"]["info"]["max_action_change"] > 0  # the gradient went through the tanh
    result = cli("certify", "--agents", aid, "--method", "crown", "--states", 8, "--home", home)
    assert result.exit_code == 0, result.output
    with ResultsStore(home) as store:
        (cert,) = [c for c in store.certificates() if c["agent_id"] == aid]
    assert 0 < cert["mean_dev"] <= cert["max_dev"] <= 2.0  # a squashed action moves at most the box width
    assert cert["soundness_checked_points"] > 0


def test_tanh_squash_maps_onto_a_box_other_than_the_unit_one(tmp_path):
    """`squash: tanh` in a torch spec: the action is low + (tanh(z) + 1)/2 · (high − low) on the env's
    own box (Humanoid's is ±0.4), and a saved agent loads back to the same function."""
    import gymnasium as gym

    env = gym.make("Humanoid-v5")
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    low, high = env.action_space.low.astype(np.float64), env.action_space.high.astype(np.float64)
    obs = np.stack([env.reset(seed=i)[0] for i in range(20)])
    env.close()
    seq = sequential([obs_dim, 16, act_dim], act=nn.Tanh, out_bias=2.0)  # saturate some dimensions
    tensors = {f"actor.{k}": v.detach().contiguous() for k, v in seq.state_dict().items()}
    save_file({**tensors, "log_std": torch.zeros(act_dim)}, tmp_path / "squashed.safetensors")
    (tmp_path / "squashed.json").write_text(json.dumps({"hidden": [16], "activation": "tanh", "squash": "tanh",
                                                          "action_clip": False}))
    home = tmp_path / "home"
    aid = imported_id(cli("import", tmp_path / "squashed.safetensors", "--env", "humanoid", "--raw-obs",
                          "--home", home))
    agent = robbench.load_agent(aid, home=str(home))
    with torch.no_grad():
        z = seq(torch.from_numpy(obs).float()).double().numpy()
    expected = low + (np.tanh(z) + 1) / 2 * (high - low)
    got = agent.predict(obs)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert got.max() > 0.39 and np.all(np.abs(got) <= 0.4 + 1e-6)  # saturated near the box edge, never past it
    save_agent(agent, tmp_path / "again.safetensors")
    np.testing.assert_allclose(load_agent_file(tmp_path / "again.safetensors").predict(obs), got, rtol=0, atol=0)
    agent.meta["squash"] = "sigmoid"  # a file claiming a squash robbench does not build
    save_agent(agent, tmp_path / "odd.safetensors")
    with pytest.raises(RobbenchError, match="metadata 'squash' must be one of none, tanh"):
        load_agent_file(tmp_path / "odd.safetensors")
    agent.meta["squash"] = "none"  # the box layer's tensors without the squash that explains them
    save_agent(agent, tmp_path / "stray.safetensors")
    with pytest.raises(RobbenchError, match=r"unexpected tensor 'policy\.mean_net\.4\.(weight|bias)'"):
        load_agent_file(tmp_path / "stray.safetensors")


class _CleanRLActor(nn.Module):
    """CleanRL's td3_continuous_action / sac_continuous_action Actor, as those scripts write it."""

    def __init__(self, sac: bool, low: np.ndarray, high: np.ndarray, obs_dim: int = OBS, act_dim: int = ACT):
        super().__init__()
        torch.manual_seed(3)
        self.sac = sac
        self.fc1, self.fc2 = nn.Linear(obs_dim, 32), nn.Linear(32, 24)
        self.head = nn.Linear(24, act_dim)
        with torch.no_grad():
            self.head.bias.add_(1.5)  # saturate some dimensions
        if sac:
            self.fc_logstd = nn.Linear(24, act_dim)
        self.register_buffer("action_scale", torch.tensor((high - low) / 2, dtype=torch.float32))
        self.register_buffer("action_bias", torch.tensor((high + low) / 2, dtype=torch.float32))

    def forward(self, x):
        x = torch.relu(self.fc2(torch.relu(self.fc1(x))))
        return torch.tanh(self.head(x)) * self.action_scale + self.action_bias

    def cleanrl_state_dict(self):
        sd = self.state_dict()
        return {k.replace("head.", "fc_mean." if self.sac else "fc_mu."): v for k, v in sd.items()}


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_cleanrl_td3_and_sac_actors_reproduce_their_forward(tmp_path, algo):
    """CleanRL's TD3 saves (actor, qf1, qf2) state dicts in one file; SAC's actor has fc_mean and a
    state-dependent fc_logstd. The imported deterministic action equals the script's forward, and an
    actor whose action_scale / action_bias are not the env's box is refused."""
    low, high = -np.ones(ACT), np.ones(ACT)
    actor = _CleanRLActor(algo == "sac", low, high)
    qf = {"fc1.weight": torch.zeros(8, OBS + ACT), "fc1.bias": torch.zeros(8)}
    saved = (actor.cleanrl_state_dict(), qf, qf) if algo == "td3" else actor.cleanrl_state_dict()
    torch.save(saved, tmp_path / f"{algo}.cleanrl_model")
    home = tmp_path / "home"
    result = cli("import", tmp_path / f"{algo}.cleanrl_model", "--env", "hopper", "--raw-obs", "--home", home)
    aid = imported_id(result)
    assert "F.relu" in result.output and "tanh-squashed" in result.output
    agent = robbench.load_agent(aid, home=str(home))
    assert agent.meta["squash"] == "tanh" and not agent.meta["has_critic"] and agent.meta["hidden"] == [32, 24]
    obs = raw_observations(80)
    with torch.no_grad():
        expected = actor(torch.from_numpy(obs).float()).numpy()
    assert (np.abs(expected) > 0.95).any()
    np.testing.assert_allclose(agent.predict(obs), expected, rtol=0, atol=1e-5)
    other = _CleanRLActor(algo == "sac", -2 * np.ones(ACT), 2 * np.ones(ACT))
    torch.save(other.cleanrl_state_dict(), tmp_path / "wide.cleanrl_model")
    one_line_error(cli("import", tmp_path / "wide.cleanrl_model", "--env", "hopper", "--raw-obs", "--home", home),
                   "not env 'hopper''s action box")


# ------------------------------------------------------------------------------ VecNormalize
class _System:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Eval:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (eval, (f"__import__('os').system({self.command!r})",))


@pytest.mark.parametrize("payload, refused", [(_System, "system"), (_Eval, "builtins.eval")])
def test_hostile_vecnormalize_pickle_is_refused_and_executes_nothing(tmp_path, monkeypatch, payload, refused):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "PWNED"
    evil = tmp_path / "vecnormalize.pkl"
    evil.write_bytes(pickle.dumps({"obs_rms": payload(f"touch {marker}"), "clip_obs": 10.0}))
    sd, _ = sb3_state_dict()
    model = sb3_zip(tmp_path / "m.zip", sd)
    line = one_line_error(cli("import", model, "--env", "hopper", "--vecnormalize", evil, "--home", tmp_path / "h"),
                          "VecNormalize file", refused, "nothing was executed")
    assert "os" in line or "posix" in line or "builtins" in line
    assert not marker.exists()
    with ResultsStore(tmp_path / "h") as store:
        assert store.agents() == []


def test_vecnormalize_reader_takes_exactly_the_statistics(tmp_path):
    """A real SB3-written file (its globals: VecNormalize, RunningMeanStd, gymnasium Box, numpy
    arrays / dtypes / scalars) gives mean, var, epsilon and clip_obs; norm_obs=False is raw."""
    pytest.importorskip("stable_baselines3")
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from robbench.importers import read_vecnormalize

    venv = VecNormalize(DummyVecEnv([lambda: gym.make("Hopper-v5")]), clip_obs=7.0, epsilon=1e-6)
    venv.reset()
    for _ in range(20):
        venv.step(np.zeros((1, ACT)))
    venv.save(str(tmp_path / "v.pkl"))
    stats = read_vecnormalize(tmp_path / "v.pkl")
    assert stats.convention == "sb3" and stats.epsilon == 1e-6 and stats.clip_obs == 7.0
    assert np.array_equal(stats.mean, venv.obs_rms.mean) and np.array_equal(stats.var, venv.obs_rms.var)
    VecNormalize(DummyVecEnv([lambda: gym.make("Hopper-v5")]), norm_obs=False).save(str(tmp_path / "raw.pkl"))
    assert read_vecnormalize(tmp_path / "raw.pkl").convention == "none"


# ------------------------------------------------------------------------------------ CleanRL
def test_cleanrl_state_dict_with_npz_stats_reproduces_cleanrl(tmp_path):
    """CleanRL's Agent (actor_mean.0/2/4, actor_logstd (1, act), critic.0/2/4), gymnasium's
    NormalizeObservation statistics and its clip to ±10, ClipAction: reproduced exactly."""
    actor, critic = sequential([OBS, 64, 64, ACT], seed=3, out_bias=1.0), sequential([OBS, 64, 64, 1], seed=4)
    sd = {**{f"actor_mean.{k}": v for k, v in actor.state_dict().items()},
          **{f"critic.{k}": v for k, v in critic.state_dict().items()}, "actor_logstd": torch.zeros(1, ACT)}
    torch.save(sd, tmp_path / "agent.cleanrl_model")
    stats, mean, var = stats_npz(tmp_path / "stats.npz")
    home = tmp_path / "home"
    aid = imported_id(cli("import", tmp_path / "agent.cleanrl_model", "--env", "hopper", "--obs-stats", stats,
                          "--home", home))
    assert aid == "hopper/agent/external/0"
    agent = robbench.load_agent(aid, home=str(home))
    assert agent.has_critic and agent.meta["obs_norm"] == {"convention": "sb3", "epsilon": 1e-8, "clip_obs": 10.0,
                                                             "source": "stats.npz"}
    obs = raw_observations()
    normalised = np.clip(np.float32((obs - mean) / np.sqrt(var + 1e-8)), -10, 10)  # NormalizeObservation + clip
    with torch.no_grad():
        expected = np.clip(actor(torch.from_numpy(normalised)).numpy(), -1.0, 1.0)  # ClipAction
    np.testing.assert_allclose(agent.predict(obs), expected, rtol=0, atol=1e-6)
    with torch.no_grad():
        states = torch.from_numpy(normalised)
        assert torch.allclose(agent.value(states), critic(states).squeeze(-1), atol=1e-6)


# -------------------------------------------------------------------------------------- torch
def torch_agent(tmp_path: Path, act=nn.ELU, critic=False, action_clip=False, out_bias=0.0, name="net"):
    actor = sequential([OBS, 32, 16, ACT], act, seed=5, out_bias=out_bias)
    tensors = {f"actor.{k}": v.contiguous() for k, v in actor.state_dict().items()}
    tensors["log_std"] = torch.full((ACT,), -1.0)
    if critic:
        tensors.update({f"critic.{k}": v for k, v in sequential([OBS, 8, 1], act, seed=6).state_dict().items()})
    save_file(tensors, str(tmp_path / f"{name}.safetensors"))
    spec = {"hidden": [32, 16], "activation": act.__name__.lower(), "squash": "none", "action_clip": action_clip}
    (tmp_path / f"{name}.json").write_text(json.dumps(spec))
    return tmp_path / f"{name}.safetensors", actor


def test_torch_safetensors_and_spec_round_trip(tmp_path):
    weights, actor = torch_agent(tmp_path, act=nn.ELU)
    home = tmp_path / "home"
    aid = imported_id(cli("import", weights, "--env", "hopper", "--format", "torch", "--raw-obs", "--home", home))
    agent = robbench.load_agent(aid, home=str(home))
    assert agent.meta["activation"] == "elu" and agent.meta["obs_norm"]["convention"] == "none"
    assert agent.meta["action_clip"] is False and agent.meta["has_critic"] is False
    obs = raw_observations(50)
    with torch.no_grad():
        expected = actor(torch.from_numpy(obs).float()).numpy()
    assert np.array_equal(agent.predict(obs), expected)  # raw observations, the mean unclipped
    with pytest.raises(RobbenchError, match="has no critic"):
        agent.value(torch.zeros(2, OBS))
    # ELU has no auto-LiRPA relaxation: the certify job says so in one line instead of a traceback
    result = cli("certify", "--agents", aid, "--method", "ibp", "--states", 8, "--home", home)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    failed = [line for line in result.output.splitlines() if line.startswith(f"✗ certify {aid}: ")]
    assert len(failed) == 1 and "do not support ELU" in failed[0], result.output


def test_critic_less_agent_skips_critic_attacks_with_a_notice(tmp_path):
    weights, _ = torch_agent(tmp_path, act=nn.Tanh, name="nocritic")
    home = tmp_path / "home"
    aid = imported_id(cli("import", weights, "--env", "hopper", "--format", "torch", "--raw-obs", "--home", home))
    result = cli("evaluate", "--agents", aid, "--attacks", "random,critic,apgd_critic", "--episodes", 2,
                 "--workers", 1, "--home", home)
    assert result.exit_code == 0, result.output
    for attack in ("critic", "apgd_critic"):
        notice = f"skipped: attack {attack!r} needs a critic (value network); agent {aid!r} has none"
        assert sum(line.strip() == notice for line in result.output.splitlines()) == 1, result.output
    with ResultsStore(home) as store:
        assert {c["attack"] for c in store.cells()} == {"random"}


def test_action_clip_convention_reaches_the_environment(tmp_path, monkeypatch):
    """The evaluator sends an imported agent's clipped action to MuJoCo, robbench's own mean unclipped."""
    from robbench.envs import EnvBatch
    from robbench.evaluate import Protocol, evaluate
    from robbench.registry import get_attack

    sent = []
    step_one = EnvBatch.step_one
    monkeypatch.setattr(EnvBatch, "step_one", lambda self, i, a: (sent.append(np.array(a)), step_one(self, i, a))[1])
    home = tmp_path / "home"
    ids = {}
    for clip in (True, False):
        weights, _ = torch_agent(tmp_path, act=nn.Tanh, action_clip=clip, out_bias=2.0, name=f"clip{clip}")
        ids[clip] = imported_id(cli("import", weights, "--env", "hopper", "--format", "torch", "--raw-obs",
                                    "--home", home))
    for clip, aid in ids.items():
        sent.clear()
        agent = robbench.load_agent(aid, home=str(home))
        protocol = Protocol.for_env("hopper", episodes=2)
        evaluate(agent, get_attack("random")(protocol.eps), protocol)
        actions = np.concatenate(sent)
        assert (np.abs(actions).max() <= 1.0) == clip
        assert (np.abs(actions) == 1.0).any() == clip


def test_second_import_gets_the_next_seed_and_the_same_files_are_not_duplicated(tmp_path):
    home = tmp_path / "home"
    first, _ = torch_agent(tmp_path, name="a")
    (tmp_path / "b").mkdir()
    second, _ = torch_agent(tmp_path / "b", act=nn.ReLU, name="a")
    args = ("--env", "hopper", "--format", "torch", "--raw-obs", "--name", "mine", "--home", home)
    assert imported_id(cli("import", first, *args)) == "hopper/mine/external/0"
    assert imported_id(cli("import", second, *args)) == "hopper/mine/external/1"
    again = cli("import", first, *args)
    assert imported_id(again) == "hopper/mine/external/0" and "already imported" in again.output
    with ResultsStore(home) as store:
        assert len(store.agents()) == 2


# ----------------------------------------------------------------------------- SB3 activation
def test_sb3_activation_is_read_from_data_or_required(tmp_path):
    home = tmp_path / "home"
    sd, policy = sb3_state_dict(pi=(256, 256), vf=(256, 256), act=nn.ReLU)
    readable = {":type:": "<class 'dict'>", ":serialized:": "gAWV...",
                "activation_fn": "<class 'torch.nn.modules.activation.ReLU'>",
                "net_arch": {"pi": [256, 256], "vf": [256, 256]}}
    aid = imported_id(cli("import", sb3_zip(tmp_path / "relu.zip", sd, readable), "--env", "hopper", "--raw-obs",
                          "--home", home))
    agent = robbench.load_agent(aid, home=str(home))
    assert agent.meta["activation"] == "relu" and agent.meta["value_hidden"] == [256, 256]
    obs = raw_observations(40)
    with torch.no_grad():
        expected = policy(torch.from_numpy(obs).float()).clamp(-1, 1).numpy()
    np.testing.assert_allclose(agent.predict(obs), expected, rtol=0, atol=1e-6)

    hidden = sb3_zip(tmp_path / "hidden.zip", sd, {":type:": "<class 'dict'>", ":serialized:": "gAWV..."})
    one_line_error(cli("import", hidden, "--env", "hopper", "--raw-obs", "--home", home),
                   "does not record its activation", "--activation tanh|relu|elu")
    aid = imported_id(cli("import", hidden, "--env", "hopper", "--raw-obs", "--activation", "relu", "--home", home))
    assert robbench.load_agent(aid, home=str(home)).meta["provenance"]["activation_source"] == "--activation"
    one_line_error(cli("import", tmp_path / "relu.zip", "--env", "hopper", "--raw-obs", "--activation", "tanh",
                       "--home", home), "records activation 'relu'", "--activation is 'tanh'")
    tanh_sd, _ = sb3_state_dict()
    aid = imported_id(cli("import", sb3_zip(tmp_path / "default.zip", tanh_sd), "--env", "hopper", "--raw-obs",
                          "--home", home))
    assert robbench.load_agent(aid, home=str(home)).meta["activation"] == "tanh"  # SB3's default, {} kwargs


def test_sb3_shared_layers_of_old_net_arch_feed_both_networks(tmp_path):
    """SB3 < 1.8's net_arch=[64, dict(pi=[32], vf=[16])]: mlp_extractor.shared_net.* before both heads."""
    shared, pi, vf = sequential([OBS, 64], seed=7), sequential([64, 32, ACT], seed=8), sequential([64, 16, 1], seed=9)
    sd = {"mlp_extractor.shared_net.0.weight": shared[0].weight, "mlp_extractor.shared_net.0.bias": shared[0].bias,
          "mlp_extractor.policy_net.0.weight": pi[0].weight, "mlp_extractor.policy_net.0.bias": pi[0].bias,
          "action_net.weight": pi[2].weight, "action_net.bias": pi[2].bias,
          "mlp_extractor.value_net.0.weight": vf[0].weight, "mlp_extractor.value_net.0.bias": vf[0].bias,
          "value_net.weight": vf[2].weight, "value_net.bias": vf[2].bias, "log_std": torch.zeros(ACT)}
    sd = {k: v.detach() for k, v in sd.items()}
    home = tmp_path / "home"
    aid = imported_id(cli("import", sb3_zip(tmp_path / "old.zip", sd), "--env", "hopper", "--raw-obs", "--home", home))
    agent = robbench.load_agent(aid, home=str(home))
    assert agent.meta["hidden"] == [64, 32] and agent.meta["value_hidden"] == [64, 16]
    x = torch.from_numpy(raw_observations(30)).float()
    with torch.no_grad():
        h = torch.tanh(shared(x))
        assert torch.allclose(agent.act(x), pi(h).clamp(-1, 1), atol=1e-6)
        assert torch.allclose(agent.value(x), vf(h).squeeze(-1), atol=1e-6)


# --------------------------------------------------------------------------------- bad inputs
def _bad_cases(tmp_path: Path) -> dict[str, tuple[list, tuple[str, ...]]]:
    sd, _ = sb3_state_dict()
    good = sb3_zip(tmp_path / "good.zip", sd)
    stats, _, _ = stats_npz(tmp_path / "stats.npz")
    short, _, _ = stats_npz(tmp_path / "short.npz")
    np.savez(short, mean=np.zeros(5), var=np.ones(5))
    gsde = {**sd, "log_std": torch.zeros(64, ACT)}
    sac = {"actor.latent_pi.0.weight": torch.zeros(64, OBS), "actor.latent_pi.0.bias": torch.zeros(64),
           "actor.mu.weight": torch.zeros(ACT, 64)}  # no actor.mu.bias
    dqn = {"q_net.q_net.0.weight": torch.zeros(64, OBS)}
    layernorm = {**sd, "mlp_extractor.policy_net.1.weight": torch.ones(64)}
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "not_a_zip.zip").write_bytes(b"garbage")
    weights, _ = torch_agent(tmp_path, name="t")
    (tmp_path / "sigmoid_squash.json").write_text(json.dumps({"hidden": [32, 16], "activation": "tanh",
                                                               "squash": "sigmoid", "action_clip": True}))
    return {
        "missing file": (["import", tmp_path / "nope.zip", "--env", "hopper", "--raw-obs"],
                         ("agent file", "nope.zip", "does not exist")),
        "missing --env": (["import", good, "--raw-obs"], ("--env is required",)),
        "unknown env": (["import", good, "--env", "hoper", "--raw-obs"], ("unknown env 'hoper'",)),
        "wrong env dims": (["import", good, "--env", "walker2d", "--raw-obs"],
                           ("11-dim observations to 3-dim actions", "env 'walker2d' has 17-dim", "wrong --env")),
        "stats of the wrong env": (["import", good, "--env", "hopper", "--obs-stats", short],
                                   ("statistics have 5 entries",)),
        "unknown format": (["import", good, "--env", "hopper", "--format", "tflite", "--raw-obs"],
                           ("unknown format 'tflite'; valid choices: cleanrl, onnx, rlzoo, sb3, torch",)),
        "format not from the name": (["import", tmp_path / "notes.txt", "--env", "hopper", "--raw-obs"],
                                     ("cannot tell the format", "--format")),
        "unknown activation": (["import", good, "--env", "hopper", "--raw-obs", "--activation", "gelu"],
                               ("unknown activation 'gelu'",)),
        "no observation normalisation": (["import", good, "--env", "hopper"],
                                         ("--vecnormalize", "--raw-obs")),
        "two normalisations": (["import", good, "--env", "hopper", "--obs-stats", stats, "--raw-obs"],
                               ("exclude each other",)),
        "not a zip": (["import", tmp_path / "not_a_zip.zip", "--env", "hopper", "--raw-obs"], ("is not a zip file",)),
        "gSDE": (["import", sb3_zip(tmp_path / "gsde.zip", gsde), "--env", "hopper", "--raw-obs"],
                 ("state-independent log σ",)),
        "SAC without its head": (["import", sb3_zip(tmp_path / "sac.zip", sac), "--env", "hopper", "--raw-obs"],
                                 ("SAC actor lacks actor.mu",)),
        "DQN": (["import", sb3_zip(tmp_path / "dqn.zip", dqn), "--env", "hopper", "--raw-obs"],
                ("DQN-family", "SAC")),
        "LayerNorm": (["import", sb3_zip(tmp_path / "ln.zip", layernorm), "--env", "hopper", "--raw-obs"],
                      ("not Linear layers",)),
        "sigmoid squashing": (["import", weights, "--env", "hopper", "--format", "torch", "--spec",
                               tmp_path / "sigmoid_squash.json", "--raw-obs"], ("squash 'sigmoid' is not supported",)),
        "name of a trainer": (["import", good, "--env", "hopper", "--raw-obs", "--name", "barppo"],
                              ("is a robbench trainer",)),
        "bad name": (["import", good, "--env", "hopper", "--raw-obs", "--name", "a/b"], ("--name 'a/b' must be",)),
        "obs stats not npz/json": (["import", good, "--env", "hopper", "--obs-stats", tmp_path / "notes.txt"],
                                   ("must end in .npz or .json",)),
    }


CASES = ["missing file", "missing --env", "unknown env", "wrong env dims", "stats of the wrong env", "unknown format",
         "format not from the name", "unknown activation", "no observation normalisation", "two normalisations",
         "not a zip", "gSDE", "SAC without its head", "DQN", "LayerNorm", "sigmoid squashing", "name of a trainer",
         "bad name",
         "obs stats not npz/json"]


@pytest.mark.parametrize("case", CASES)
def test_bad_import_input_is_one_line(tmp_path, case):
    args, needles = _bad_cases(tmp_path)[case]
    one_line_error(cli(*args, "--home", tmp_path / "home"), *needles)
    if (tmp_path / "home" / "results.sqlite").is_file():
        with ResultsStore(tmp_path / "home") as store:
            assert store.agents() == []


# ----------------------------------------------------------------- robbench's own checkpoints
def test_robbench_checkpoints_load_and_save_exactly_as_before(tmp_path):
    """Every zoo checkpoint re-saved after loading has the same tensors (payload hash) and metadata;
    its networks are Linear-Tanh, its actions the unclipped mean, its filter robbench's."""
    from robbench.filters import ObsFilter

    files = sorted(glob.glob(str(Path(robbench.__file__).parent / "zoo" / "*" / "*" / "*" / "*.safetensors")))
    assert files
    for path in files:
        agent = load_agent_file(path)
        assert not {"activation", "has_critic", "obs_norm", "action_clip", "value_hidden"} & set(agent.meta)
        assert all(isinstance(m, nn.Tanh) for m in agent.policy.mean_net[1::2])
        assert isinstance(agent.obs_filter, ObsFilter) and not agent.action_clip
        states = torch.randn(16, agent.meta["obs_dim"]) * 5
        assert torch.equal(agent.act(states), agent.policy(states))
        save_agent(agent, tmp_path / "again.safetensors")
        (t1, m1), (t2, m2) = read_tensors(path), read_tensors(tmp_path / "again.safetensors")
        assert m1 == m2 and set(t1) == set(t2) and all(torch.equal(t1[k], t2[k]) for k in t1)


def test_predict_of_a_robbench_agent_normalises_raw_observations(smoke_agent):
    obs = raw_observations(20)
    states = torch.from_numpy(smoke_agent.normalize(obs)).float()
    assert np.array_equal(smoke_agent.predict(obs), smoke_agent.policy(states).detach().numpy())
    assert smoke_agent.predict(obs[0]).shape == (ACT,)


# --------------------------------------------------------------------------------- Python API
def test_benchmark_api_imports_evaluates_and_reuses_cells(tmp_path):
    weights, _ = torch_agent(tmp_path, act=nn.Tanh, name="api")
    home = str(tmp_path / "home")
    result = robbench.benchmark(weights, env="hopper", attacks=["random"], home=home, episodes=2, raw_obs=True)
    assert result.agent_id == "hopper/api/external/0" and list(result.returns) == ["none", "random"]
    assert result.worst == min((v, a) for a, v in result.returns.items())
    assert result.natural == result.returns["none"]
    again = robbench.benchmark(result.agent_id, env="hopper", attacks="random,critic", home=home, episodes=2)
    assert again.returns == result.returns and again.skipped == ["critic"]  # cached cells; no critic to attack
    with ResultsStore(home) as store:
        assert len(store.agents()) == 1 and len(store.cells()) == 2


# ------------------------------------------------------------------------------------ rl-zoo3
def rlzoo_run(root: Path, config: dict, vecnormalize: bool = True) -> Path:
    """An rl-zoo3 run folder: ppo/Hopper-v3_1/{Hopper-v3.zip, Hopper-v3/config.yml, vecnormalize.pkl}."""
    import yaml
    from collections import OrderedDict

    run = root / "ppo" / "Hopper-v3_1"
    (run / "Hopper-v3").mkdir(parents=True)
    sd, policy = sb3_state_dict(pi=(256, 256), vf=(256, 256), act=nn.ReLU)
    sb3_zip(run / "Hopper-v3.zip", sd, {":type:": "<class 'dict'>", ":serialized:": "gAWV...",
                                        "activation_fn": "<class 'torch.nn.modules.activation.ReLU'>"})
    # rl-zoo3 dumps an OrderedDict: PyYAML writes it with a python/object/apply tag
    (run / "Hopper-v3" / "config.yml").write_text(yaml.dump(OrderedDict(sorted(config.items()))))
    if vecnormalize:
        pytest.importorskip("stable_baselines3")
        import gymnasium as gym
        from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

        VecNormalize(DummyVecEnv([lambda: gym.make("Hopper-v5")])).save(str(run / "Hopper-v3" / "vecnormalize.pkl"))
    return run


def test_rlzoo_run_folder_imports_with_its_config_and_vecnormalize(tmp_path):
    run = rlzoo_run(tmp_path, {"normalize": "dict(norm_obs=True, norm_reward=False)", "n_envs": 1,
                               "policy": "MlpPolicy", "policy_kwargs": "dict(activation_fn=nn.ReLU)"})
    home = tmp_path / "home"
    aid = imported_id(cli("import", run, "--env", "hopper", "--home", home))
    assert aid == "hopper/ppo-hopper-v3/external/0"
    agent = robbench.load_agent(aid, home=str(home))
    assert agent.meta["activation"] == "relu" and agent.meta["obs_norm"]["convention"] == "sb3"
    assert agent.meta["provenance"]["external"]["rlzoo_env_id"] == "Hopper-v3"
    one_line_error(cli("import", run, "--env", "walker2d", "--home", home), "trained on Hopper-v3", "Walker2d-v5")
    one_line_error(cli("import", run, "--env", "hopper", "--raw-obs", "--home", home), "brings its own")


def test_rlzoo_config_with_a_code_tag_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = rlzoo_run(tmp_path, {"normalize": False}, vecnormalize=False)
    (run / "Hopper-v3" / "config.yml").write_text("!!python/object/apply:os.system ['touch PWNED']\n")
    one_line_error(cli("import", run, "--env", "hopper", "--home", tmp_path / "home"), "cannot be read safely")
    assert not (tmp_path / "PWNED").exists()
    wrapper = "sb3_contrib.common.wrappers.TimeFeatureWrapper"
    (run / "Hopper-v3" / "config.yml").write_text(f"normalize: false\nenv_wrapper: {wrapper}\n")
    one_line_error(cli("import", run, "--env", "hopper", "--home", tmp_path / "home"), "env_wrapper", "not supported")
    (run / "Hopper-v3" / "config.yml").write_text("normalize: false\n")
    aid = imported_id(cli("import", run, "--env", "hopper", "--home", tmp_path / "home"))
    assert robbench.load_agent(aid, home=str(tmp_path / "home")).meta["obs_norm"]["convention"] == "none"
