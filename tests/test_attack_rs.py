"""The robust Sarsa attack `rs` (spec/attacks.md, "Robust Sarsa (RS)").

Checked here: ŝ stays in B_ε(s) for random, trained and huge-gradient victims; the attack lowers
Q(s, μ(ŝ)) below the clean Q(s, μ(s)) of a fitted Q; TD targets pair each sample with the next one
of its own trajectory and stop at termination; the robustness term's bounds hold at points of the
(s, a) ball; a fit is a function of its seed; the fitted Q is stored once and reused; `--no-fit`
without an artifact is a one-line error; every member of a scan is its own cell; the config says
which budget it ran. Fits are smoke-sized (one rollout of 2048 steps).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from robbench.attacks import rs
from robbench.cli import app
from robbench.errors import RobbenchError
from robbench.evaluate import evaluate_attack, evaluate_cell
from robbench.filters import ObsFilter
from robbench.lirpa_compat import bounded_module, mixed_ibp_crown_ibp
from robbench.policy import Agent, GaussianPolicy, ValueNet
from robbench.registry import get_attack
from robbench.store import ResultsStore
from robbench.threat import Victim, check_in_ball

torch.set_num_threads(1)

EPS = 0.075  # Hopper's protocol ε
OBS_DIM, ACT_DIM = 11, 3
SMOKE_ID = "hopper/ppo/smoke/0"


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def hopper_shaped_agent(seed: int, weight_scale: float = 1.0) -> Agent:
    """A random Hopper-shaped agent whose action head is as sensitive as a trained one's (gain 1);
    `weight_scale` multiplies every weight (1000: input gradients of order 1e6 and beyond)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        policy, value = GaussianPolicy(OBS_DIM, ACT_DIM), ValueNet(OBS_DIM)
    with torch.no_grad():
        policy.mean_net[-1].weight.mul_(100.0)
        for layer in policy.mean_net:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.mul_(weight_scale)
    obs_filter = ObsFilter(OBS_DIM)
    obs_filter.frozen = True
    return Agent(policy, value, obs_filter, {"env": "hopper", "agent_id": f"test/random/{seed}"})


def random_q_attack(seed: int = 0, weight_scale: float = 1.0, **params) -> rs.RobustSarsaAttack:
    """An `rs` attack holding an untrained (random) Q network, loaded through the public state dict."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        q = rs.q_network(OBS_DIM + ACT_DIM)
    attack = get_attack("rs")(EPS, preset="smoke", **params)
    attack.load_state_dict({f"q.{k}": v * weight_scale if k.endswith("weight") else v
                            for k, v in q.state_dict().items()})
    return attack


@pytest.fixture(scope="module")
def fitted(smoke_home):
    """(victim, attack) with a Q fitted on the smoke agent (one rollout, seed 0)."""
    with ResultsStore(smoke_home) as store:
        agent = store.load_agent(SMOKE_ID)
    attack = get_attack("rs")(EPS, preset="smoke")
    stats = attack.fit(Victim(agent), gen(0))
    assert stats["rollouts"] == 1 and len(stats["history"]) == 1
    return Victim(agent), attack


@pytest.fixture()
def home(smoke_home, tmp_path):
    """A private copy of the smoke home (these tests write cells and artifacts)."""
    path = tmp_path / "home"
    shutil.copytree(smoke_home, path)
    return path


def q_value(attack: rs.RobustSarsaAttack, victim: Victim, clean: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """Q(s, μ(ŝ)): the clean state with the action the victim takes at ŝ."""
    with torch.no_grad():
        return attack.q(torch.cat([clean, victim.mean(at)], dim=-1)).squeeze(-1)


# ------------------------------------------------------------------------------------------- the ball
@pytest.mark.parametrize("victim_kind", ["random", "huge", "trained"])
@pytest.mark.parametrize("q_scale", [1.0, 1000.0])
def test_stays_in_the_ball(victim_kind, q_scale, smoke_agent):
    agent = {"random": lambda: hopper_shaped_agent(0), "huge": lambda: hopper_shaped_agent(1, weight_scale=1000.0),
             "trained": lambda: smoke_agent}[victim_kind]()
    attack = random_q_attack(weight_scale=q_scale)
    normal = torch.randn(128, OBS_DIM, generator=gen(1))
    boundary = 10.0 * torch.sign(torch.randn(128, OBS_DIM, generator=gen(2)))  # the filter's clip edge
    for states in (normal, boundary):
        out = attack.perturb(Victim(agent), states, gen())
        assert out.shape == states.shape and not out.requires_grad
        assert check_in_ball(out, states, EPS, "rs") > 0  # raises on NaN or an escape; and it moves


def test_steps_larger_than_the_ball_are_projected():
    attack = random_q_attack(steps=3, step_size=1.0)
    states = torch.randn(64, OBS_DIM, generator=gen(3))
    out = attack.perturb(Victim(hopper_shaped_agent(1, weight_scale=1000.0)), states, gen())
    check_in_ball(out, states, EPS, "rs")


def test_an_unfitted_attack_refuses_to_perturb():
    with pytest.raises(RobbenchError, match="fit"):
        get_attack("rs")(EPS).perturb(Victim(hopper_shaped_agent(0)), torch.zeros(2, OBS_DIM), gen())


# ------------------------------------------------------------------------------------- effectiveness
def test_the_attack_lowers_q_on_a_fitted_q(fitted):
    victim, attack = fitted
    states = torch.randn(256, OBS_DIM, generator=gen(4)).clamp(-3, 3)
    perturbed = attack.perturb(victim, states, gen())
    clean_q, attacked_q = q_value(attack, victim, states, states), q_value(attack, victim, states, perturbed)
    assert attacked_q.mean() < clean_q.mean()
    assert (attacked_q < clean_q).float().mean() > 0.9
    # and a random point of the ball does far less: the descent is what lowers Q
    noise = states + (torch.rand(states.shape, generator=gen(5)) * 2 - 1) * EPS
    assert (clean_q - attacked_q).mean() > 3 * (clean_q - q_value(attack, victim, states, noise)).abs().mean()


def test_the_victim_and_the_q_are_left_untouched(fitted):
    victim, attack = fitted
    before = [p.detach().clone() for p in (*victim.policy.parameters(), *attack.q.parameters())]
    attack.perturb(victim, torch.randn(8, OBS_DIM, generator=gen(6)), gen())
    after = list((*victim.policy.parameters(), *attack.q.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert all(p.grad is None for p in after)


# --------------------------------------------------------------------------------------- TD targets
def test_td_targets_use_the_next_sample_of_the_same_trajectory():
    """Two envs, 4 steps: env 0 terminates at t = 1, env 1 is truncated at t = 2. Q reads the first
    input feature, so each target shows exactly which successor it used."""
    T, N = 4, 2
    obs = torch.arange(T * N, dtype=torch.float32).reshape(T, N, 1) + 1.0  # s = 1 … 8, all distinct
    actions = -obs  # a_t = −s_t
    rewards = np.full((T, N), 0.5)
    terminated = np.zeros((T, N), dtype=bool)
    truncated = np.zeros((T, N), dtype=bool)
    terminated[1, 0] = True
    truncated[2, 1] = True
    final_inputs = torch.zeros(T, N, 2)
    final_inputs[2, 1] = torch.tensor([100.0, -100.0])  # final observation of the truncated episode
    tail = torch.tensor([[50.0, -50.0], [60.0, -60.0]])  # where the next rollout starts
    batch = rs.sarsa_transitions(obs, actions, rewards, terminated, truncated, final_inputs, tail)

    first_feature = torch.nn.Linear(2, 1, bias=False)
    first_feature.weight.data = torch.tensor([[1.0, 0.0]])
    gamma = 0.9
    targets = rs.td_targets(first_feature, batch, torch.arange(T * N), gamma).reshape(T, N)
    s = obs[..., 0]
    expected = torch.tensor([
        [0.5 + gamma * s[1, 0], 0.5 + gamma * s[1, 1]],
        [0.5, 0.5 + gamma * s[2, 1]],  # env 0 terminated: no bootstrap
        [0.5 + gamma * s[3, 0], 0.5 + gamma * 100.0],  # env 1 truncated: the final observation
        [0.5 + gamma * 50.0, 0.5 + gamma * 60.0],  # rollout end: the next rollout's first sample
    ])
    torch.testing.assert_close(targets, expected)
    # the pairs are whole (s, a) inputs, and shuffling rows keeps each row's successor
    torch.testing.assert_close(batch.next_inputs.reshape(T, N, 2)[0, 0], torch.tensor([s[1, 0], -s[1, 0]]))
    perm = torch.randperm(T * N, generator=gen())
    torch.testing.assert_close(rs.td_targets(first_feature, batch, perm, gamma), targets.reshape(-1)[perm])


class CountingEnvs:
    """A deterministic stand-in for EnvBatch: obs = (0.01·k,) after k steps of an episode; the
    episodes of env i end after 3 + i steps: terminated (envs 0 and 2) or truncated (env 1)."""

    obs_dim, act_dim = 1, 1

    def __init__(self, n: int):
        self.n, self.k = n, np.zeros(n, dtype=int)

    def __len__(self) -> int:
        return self.n

    def reset_one(self, i: int, seed: int | None = None) -> np.ndarray:
        self.k[i] = 0
        return np.array([0.0])

    def step(self, actions: np.ndarray):
        self.k += 1
        end = self.k >= 3 + np.arange(self.n)
        terminated = end & (np.arange(self.n) != 1)
        truncated = end & (np.arange(self.n) == 1)
        return 0.01 * self.k[:, None].astype(float), np.ones(self.n), terminated, truncated


def test_collected_rollouts_pair_consecutive_samples():
    policy = GaussianPolicy(1, 1)
    obs_filter = ObsFilter(1)
    obs_filter.frozen = True  # mean 0, std 1: normalised states equal raw ones
    victim = Victim(Agent(policy, ValueNet(1), obs_filter, {"env": "hopper", "agent_id": "test/count"}))
    data = rs.VictimRollouts(victim, CountingEnvs(3), gen(), gamma=0.99, reset_seed=0)
    first, second = data.collect(3 * 8), data.collect(3 * 8)
    for batch in (first, second):
        x, nxt = batch.inputs.reshape(8, 3, 2), batch.next_inputs.reshape(8, 3, 2)
        done = batch.not_done.reshape(8, 3) == 0
        for t in range(7):
            for i in range(3):
                k = round(float(x[t, i, 0]) / 0.01)  # steps taken in this episode
                if k == 2 + i and i == 1:  # truncated here: successor is the final observation, not a reset
                    assert torch.isclose(nxt[t, i, 0], torch.tensor(0.04)) and not done[t, i]
                elif k == 2 + i:  # terminated here
                    assert done[t, i]
                else:
                    assert torch.equal(nxt[t, i], x[t + 1, i]) and not done[t, i]  # same s and same drawn a
    # the last sample of a rollout bootstraps from the first sample of the next one
    torch.testing.assert_close(first.next_inputs.reshape(8, 3, 2)[-1, 0], second.inputs.reshape(8, 3, 2)[0, 0])
    assert len(data.episode_returns) > 0


# ---------------------------------------------------------------------------------- robustness term
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_the_bounds_contain_q_on_the_ball(beta, fitted):
    _, attack = fitted
    q = rs.q_network(OBS_DIM + ACT_DIM)  # a trainable copy of the fitted Q
    q.load_state_dict({k[2:]: v for k, v in attack.state_dict().items()})
    bmodel = bounded_module(q, torch.zeros(1, OBS_DIM + ACT_DIM))
    x = torch.randn(32, OBS_DIM + ACT_DIM, generator=gen(7))
    radius = 0.2
    lb, ub = mixed_ibp_crown_ibp(bmodel, x, radius, beta)
    assert (lb <= ub).all() and (ub - lb > 0).all()
    g = gen(8)
    for _ in range(20):
        for points in (x + (torch.rand(x.shape, generator=g) * 2 - 1) * radius,
                       x + radius * torch.sign(torch.randn(x.shape, generator=g))):  # corners
            with torch.no_grad():
                v = q(points)
            assert (v >= lb - 1e-5).all() and (v <= ub + 1e-5).all()
    center = q(x).squeeze(-1)
    term = rs.robustness_term(bmodel, center, x, radius, beta)
    expected = torch.max(ub.squeeze(-1) - center, center - lb.squeeze(-1)).pow(2).mean()
    torch.testing.assert_close(term, expected)
    term.backward()  # differentiable into the Q parameters (it is a training loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in q.parameters())


def test_schedules():
    assert rs.robust_ramp(0.0) == 0.0 and rs.robust_ramp(1 / 3) == 0.0
    assert rs.robust_ramp(0.5) == pytest.approx(0.5) and rs.robust_ramp(2 / 3) == pytest.approx(1.0)
    assert rs.robust_ramp(0.9) == 1.0
    assert rs.lr_factor(0.0) == 1.0 and rs.lr_factor(2 / 3) == pytest.approx(1.0)
    assert rs.lr_factor(5 / 6) == pytest.approx(0.5) and rs.lr_factor(1.0) == 0.0


# ------------------------------------------------------------------------------------------ fitting
def test_the_fit_is_a_function_of_the_seed(fitted, smoke_agent):
    _, reference = fitted  # seed 0
    again, other = get_attack("rs")(EPS, preset="smoke"), get_attack("rs")(EPS, preset="smoke")
    again.fit(Victim(smoke_agent), gen(0))
    other.fit(Victim(smoke_agent), gen(1))
    ref = reference.state_dict()
    assert ref.keys() == again.state_dict().keys()
    assert all(torch.equal(ref[k], again.state_dict()[k]) for k in ref)
    assert not all(torch.equal(ref[k], other.state_dict()[k]) for k in ref)


def test_the_fitted_q_is_stored_and_reused(home, monkeypatch):
    calls = []
    original = rs.RobustSarsaAttack.fit

    def spy(self, *args, **kwargs):
        calls.append(self.fit_config())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(rs.RobustSarsaAttack, "fit", spy)
    params = {"preset": "smoke"}
    with ResultsStore(home) as store:
        _, first = evaluate_cell(store, SMOKE_ID, "rs", episodes=2, attack_params=params)
        assert len(calls) == 1 and first is not None
        artifacts = list((home / "attacks" / "rs").rglob("*.safetensors"))
        assert len(artifacts) == 1
        _, second = evaluate_cell(store, SMOKE_ID, "rs", episodes=2, attack_params=params, force=True)
        _, other_eps = evaluate_cell(store, SMOKE_ID, "rs", eps=0.05, episodes=2, attack_params=params)
        assert len(calls) == 1  # both loaded the stored Q: neither the attack's ε nor --force refits
        np.testing.assert_allclose(second.returns, first.returns)  # the stored Q is the fitted one
        cell = next(c for c in store.cells() if c["attack"] == "rs" and c["eps"] == EPS)
        assert cell["info"]["fit"]["fit_stats"]["rollouts"] == 1


def test_no_fit_without_an_artifact_is_one_line(home):
    result = CliRunner().invoke(app, ["evaluate", "--home", str(home), "--agents", SMOKE_ID, "--attacks", "rs",
                                      "--episodes", "2", "--no-fit"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert "Traceback" not in result.output
    assert lines[-1].startswith("error:") and "not fitted" in lines[-1] and "--no-fit" in lines[-1]
    assert not (home / "attacks" / "rs").exists()  # nothing was fitted


def test_scan_members_are_separate_cells(home, monkeypatch):
    """The quick preset's 2 × 2 grid: four Q networks, four artifacts, four cells under one name.
    (The fit itself is replaced by a random Q: this is about the bookkeeping, fits are tested above.)"""
    fits = []

    def random_fit(self, victim, gen, progress=None, resume=None):
        fits.append((self.eps_sarsa, self.reg))
        self.load_state_dict(random_q_attack(seed=len(fits)).state_dict())
        return {"rollouts": self.rollouts}

    monkeypatch.setattr(rs.RobustSarsaAttack, "fit", random_fit)
    with ResultsStore(home) as store:
        results = evaluate_attack(store, SMOKE_ID, "rs", episodes=1, attack_params={"preset": "quick"})
        cells = [c for c in store.cells() if c["attack"] == "rs"]
    assert len(results) == len(cells) == 4 and len({key for key, _ in results}) == 4
    grid = set(rs.PRESETS["quick"].grid)
    assert set(fits) == grid and len(fits) == 4  # one Q network per member
    assert len(list((home / "attacks" / "rs").rglob("*.safetensors"))) == 4
    configs = [c["attack_config"] for c in cells]
    assert {(c["eps_sarsa"], c["reg"]) for c in configs} == grid
    assert sorted(c["member"] for c in configs) == [0, 1, 2, 3]
    for c in configs:
        assert c["preset"] == "quick" and c["grid_size"] == 4 and c["paper_grid_size"] == 30
        assert c["rollouts"] == rs.PRESETS["quick"].rollouts and c["paper_steps"] == 30 * 2048
        assert c["train_steps"] == c["rollouts"] * 2048


# ----------------------------------------------------------------------------------- configuration
def test_presets_and_budget_are_recorded():
    members = rs.RobustSarsaAttack.scan_members({"preset": "paper"})
    assert len(members) == 30
    configs = [get_attack("rs")(EPS, preset="paper", **m).config() for m in members]
    assert {(c["eps_sarsa"], c["reg"]) for c in configs} == {
        (e, r) for e in (0.02, 0.05, 0.1, 0.15, 0.2, 0.3) for r in (0.1, 0.3, 1.0, 3.0, 10.0)}
    assert all(c["rollouts"] == 30 and c["train_steps"] == c["paper_steps"] == 61440 for c in configs)
    smoke = get_attack("rs")(EPS, preset="smoke").config()
    assert smoke["grid_size"] == 1 and smoke["rollouts"] == 1 and smoke["train_steps"] == 2048
    default = get_attack("rs")(EPS)
    assert default.config()["preset"] == rs.DEFAULT_PRESET
    assert len(rs.RobustSarsaAttack.scan_members({})) == len(rs.PRESETS[rs.DEFAULT_PRESET].grid)
    # one explicit network: a single member; inside the grid it is the very same cell as the scan's
    assert rs.RobustSarsaAttack.scan_members({"eps_sarsa": 0.1, "reg": 1.0}) == [{}]
    explicit = get_attack("rs")(EPS, preset="paper", eps_sarsa=0.1, reg=1.0).config()
    assert explicit == configs[[(c["eps_sarsa"], c["reg"]) for c in configs].index((0.1, 1.0))]
    # the attack's ε and steps do not change the Q network (its artifact key)
    assert get_attack("rs")(0.05, steps=5).fit_config() == default.fit_config()


@pytest.mark.parametrize("params, message", [
    ({"preset": "huge"}, "unknown rs preset 'huge'"),
    ({"eps_sarsa": 0.1}, "give both eps_sarsa and reg"),
    ({"member": 0, "eps_sarsa": 0.1, "reg": 1.0}, "give either member or"),
    ({"preset": "quick", "member": 4}, "member must be an integer in 0…3"),
    ({"reg": -1.0, "eps_sarsa": 0.1}, "reg must be a finite number ≥ 0"),
    ({"train_steps": 0}, "train_steps must be an integer ≥ 1"),
    ({"num_envs": 3}, "num_envs must divide 2048"),
    ({"paper_steps": 5}, "paper_steps is fixed"),
    ({"steps": 0}, "steps must be an integer ≥ 1"),
    ({"sarsa": 1}, "has no parameter 'sarsa'"),
])
def test_bad_settings_are_one_clear_error(params, message):
    with pytest.raises(RobbenchError, match=message.replace("(", r"\(")):
        get_attack("rs")(EPS, **params)
