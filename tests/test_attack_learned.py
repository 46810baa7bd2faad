"""The learned adversaries `sa_rl`, `pa_ad` and `pa_ad_pgd` (spec/attacks.md "SA-RL", "PA-AD").

What must hold: every perturbation stays in B_ε(s) (random, trained and huge-gradient victims, states
on the clip boundary, saturated adversaries); the adversary env runs the victim once per step on the
whole batch and pays the adversary −(victim's raw reward); training raises the adversary's return;
fits are deterministic given the seed; fitted adversaries are stored and reused, `--no-fit` without
one is a one-line error; scan members are separate cells; PA-AD's actor moves μ along d.
Smoke budgets and one torch thread keep the file well under a minute and a half.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from robbench.attacks._adversary_env import ADVERSARY_LRS, AdversaryEnv, reference_grid
from robbench.attacks.pa_ad import PAADAttack, direction_objective, fgsm_actor, pgd_actor
from robbench.attacks.sa_rl import SARLAttack
from robbench.cli import app
from robbench.envs import EnvBatch, get_env_spec
from robbench.errors import RobbenchError
from robbench.evaluate import evaluate_attack, evaluate_cell
from robbench.filters import ObsFilter
from robbench.policy import Agent, GaussianPolicy, ValueNet
from robbench.registry import get_attack
from robbench.store import ResultsStore
from robbench.threat import Victim, check_in_ball

torch.set_num_threads(1)

EPS = 0.075  # Hopper's protocol ε
OBS_DIM, ACT_DIM = 11, 3
LEARNED = ("sa_rl", "pa_ad", "pa_ad_pgd")
SMOKE_AGENT = "hopper/ppo/smoke/0"


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def identity_filter(dim: int = OBS_DIM) -> ObsFilter:
    f = ObsFilter(dim)  # no statistics: mean 0, std 1, so s = clip(o, ±10)
    f.frozen = True
    return f


def hopper_shaped_victim(seed: int, weight_scale: float = 1.0) -> Victim:
    """A fixed random Hopper-shaped victim whose μ is as sensitive to s as a trained one's (action head
    gain 1 instead of 0.01); `weight_scale` multiplies every weight (1000: ~1e6-scale input gradients)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        policy, value = GaussianPolicy(OBS_DIM, ACT_DIM), ValueNet(OBS_DIM)
    with torch.no_grad():
        policy.mean_net[-1].weight.mul_(100.0)
        for layer in policy.mean_net:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.mul_(weight_scale)
    return Victim(Agent(policy, value, identity_filter(), {"env": "hopper", "agent_id": f"test/random/{seed}"}))


def block_victim(gain: float = 30.0) -> Victim:
    """μ(x) = W x, W block-diagonal: a_0, a_1, a_2 = gain × the sums of coordinates 0-3, 4-7, 8-10."""
    policy = GaussianPolicy(OBS_DIM, ACT_DIM, hidden=())
    with torch.no_grad():
        policy.mean_net[0].weight.zero_()
        for k, (lo, hi) in enumerate([(0, 4), (4, 8), (8, 11)]):
            policy.mean_net[0].weight[k, lo:hi] = gain
    return Victim(Agent(policy, ValueNet(OBS_DIM), identity_filter(), {"env": "hopper", "agent_id": "test/linear"}))


class ContextBandit:
    """N copies of a 10-step contextual bandit with Hopper's shapes (the `EnvBatch` interface).

    o ~ N(0, 0.1²)^11 every step, reward = a_0. Against `linear_victim` the best adversary shifts
    every coordinate of ŝ by −ε (a_0 drops by 10·11·ε ≈ 8.3 per step, ≈ 83 per episode), a lesson a
    PPO adversary learns in a few iterations — unlike against a random Hopper victim, which falls
    within tens of steps whatever the adversary does.
    """

    horizon = 10

    def __init__(self, num_envs: int):
        self.spec = get_env_spec("hopper")
        self.obs_dim, self.act_dim = OBS_DIM, ACT_DIM
        self.rng = np.random.default_rng(0)
        self.t = np.zeros(num_envs, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.t)

    def reset_one(self, i: int, seed: int | None = None) -> np.ndarray:
        self.t[i] = 0
        return self.rng.normal(0.0, 0.1, OBS_DIM)

    def step(self, actions: np.ndarray):
        self.t += 1
        obs = self.rng.normal(0.0, 0.1, (len(self.t), OBS_DIM))
        return obs, actions[:, 0].copy(), np.zeros(len(self.t), dtype=bool), self.t >= self.horizon

    def close(self) -> None:
        pass


class SpyEnvs:
    """A real Hopper `EnvBatch` that records the actions it receives and what it returns."""

    def __init__(self, num_envs: int):
        self.inner = EnvBatch("hopper", num_envs)
        self.spec, self.obs_dim, self.act_dim = self.inner.spec, self.inner.obs_dim, self.inner.act_dim
        self.actions, self.raw_rewards, self.raw_obs = [], [], []

    def __len__(self) -> int:
        return len(self.inner)

    def reset_one(self, i, seed=None):
        return self.inner.reset_one(i, seed)

    def step(self, actions):
        self.actions.append(np.array(actions))
        obs, rewards, terminated, truncated = self.inner.step(actions)
        self.raw_rewards.append(rewards.copy())
        self.raw_obs.append(obs.copy())
        return obs, rewards, terminated, truncated

    def close(self):
        self.inner.close()


def count_forwards(victim: Victim) -> list[int]:
    """Batch sizes of every victim policy forward from now on."""
    sizes: list[int] = []
    victim.policy.register_forward_hook(lambda module, inputs, output: sizes.append(inputs[0].shape[0]))
    return sizes


def fitted(name: str, victim: Victim, seed: int = 0, **params) -> SARLAttack:
    attack = get_attack(name)(EPS, preset="smoke", seed=seed, **params)
    attack.fit(victim, gen(seed), envs=ContextBandit(attack.NUM_ENVS))
    return attack


def saturated_adversary(name: str, victim: Victim) -> SARLAttack:
    """An attack whose adversary outputs ±1e4: load_state_dict of hand-made weights (no training)."""
    attack = get_attack(name)(EPS, preset="smoke")
    out_dim = attack.action_dim(victim)
    policy = GaussianPolicy(OBS_DIM, out_dim)
    with torch.no_grad():
        policy.mean_net[-1].weight.mul_(1e6)
    tensors = {f"policy.{k}": v for k, v in policy.state_dict().items()}
    tensors.update({"obs_filter.n": torch.tensor(0), "obs_filter.mean": torch.zeros(OBS_DIM, dtype=torch.float64),
                    "obs_filter.m2": torch.zeros(OBS_DIM, dtype=torch.float64)})
    attack.load_state_dict(tensors)
    return attack


# ----------------------------------------------------------------------------------- the ε-ball
@pytest.mark.parametrize("name", LEARNED)
@pytest.mark.parametrize("victim_kind", ["random", "huge", "trained"])
def test_perturbations_stay_in_the_ball(name, victim_kind, smoke_agent):
    victim = {
        "random": lambda: hopper_shaped_victim(0),
        "huge": lambda: hopper_shaped_victim(1, weight_scale=1000.0),
        "trained": lambda: Victim(smoke_agent),
    }[victim_kind]()
    inner = 10.0 * torch.sign(torch.randn(64, OBS_DIM, generator=gen(2)))  # on the filter's clip boundary
    states = torch.cat([torch.randn(64, OBS_DIM, generator=gen(1)), inner])
    attack = saturated_adversary(name, victim)
    for g in range(3):
        perturbed = attack.perturb(victim, states, gen(g))
        assert check_in_ball(perturbed, states, EPS, name) <= EPS + 1e-6
        assert (perturbed - states).abs().max() > 0  # it does perturb (a saturated victim may stop PGD early)
        if name == "sa_rl":  # a saturated residual adversary reaches the ball's surface
            assert (perturbed - states).abs().max() == pytest.approx(EPS, rel=1e-4)
    # the actions the adversary takes while training: huge, tiny, zero, mixed
    for actions in (torch.full((128, 64), 1e6)[:, : attack.action_dim(victim)],
                    torch.randn(128, attack.action_dim(victim), generator=gen(5)) * 1e-8,
                    torch.zeros(128, attack.action_dim(victim))):
        perturbed = attack.perturber(victim, gen(0))(states, actions)
        check_in_ball(perturbed, states, EPS, name)


def test_a_fitted_adversary_stays_in_the_ball_during_training_and_evaluation():
    for name in LEARNED:
        attack = fitted(name, block_victim())
        states = torch.randn(32, OBS_DIM, generator=gen(4))
        check_in_ball(attack.perturb(block_victim(), states, gen(0)), states, EPS, name)
        assert attack.state_dict()["obs_filter.n"] > 0  # its own filter learnt from training inputs


# ----------------------------------------------------------------------------- the adversary env
def test_adversary_env_batches_the_victim_and_negates_its_raw_rewards():
    n = 4
    victim = hopper_shaped_victim(0)
    spy = SpyEnvs(n)
    attack = SARLAttack(EPS, preset="smoke")
    env = AdversaryEnv(victim, EPS, OBS_DIM, attack.perturber(victim, gen(0)), n, gen(0), envs=spy)
    clean = np.stack([env.reset_one(i, seed=i) for i in range(n)])
    sizes = count_forwards(victim)
    for t in range(20):
        delta = torch.randn(n, OBS_DIM, generator=gen(10 + t)).numpy().astype(np.float64) * 2.0
        before = len(sizes)
        obs, rewards, terminated, truncated = env.step(delta)
        assert sizes[before:] == [n]  # one victim forward per step, the whole batch at once
        # the victim acted deterministically on ŝ = s + ε·clip(δ, −1, 1)
        s = torch.from_numpy(clean).float()
        expected = victim.mean(s + EPS * torch.from_numpy(delta).float().clamp(-1, 1)).detach()
        np.testing.assert_allclose(spy.actions[-1], expected.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(rewards, -spy.raw_rewards[-1])  # reward = −(raw victim reward)
        np.testing.assert_array_equal(obs, victim.agent.normalize(spy.raw_obs[-1]))  # clean normalised s'
        clean = obs.copy()
        for i in np.flatnonzero(terminated | truncated):
            clean[i] = env.reset_one(i)
    assert env.victim_forwards == 20


def test_pa_ad_env_samples_the_victim_and_batches_the_actor():
    n = 4
    victim = hopper_shaped_victim(0)
    env = AdversaryEnv(victim, EPS, ACT_DIM, PAADAttack(EPS).perturber(victim, gen(0)), n, gen(1),
                       stochastic_victim=True, envs=SpyEnvs(n))
    for i in range(n):
        env.reset_one(i, seed=i)
    sizes = count_forwards(victim)
    for t in range(10):
        env.step(torch.randn(n, ACT_DIM, generator=gen(t)).numpy().astype(np.float64))
    # the actor's μ(s) and μ(s + n) as one 2N forward, the victim's action as one N forward
    assert sizes == [2 * n, n] * 10


def test_pa_ad_env_victim_acts_with_its_own_sigma():
    """A victim with constant μ = 0 and σ = (0.1, 1, 3): the actions the env takes are μ + σ·z."""
    n = 8
    victim = hopper_shaped_victim(0)
    with torch.no_grad():
        victim.policy.mean_net[-1].weight.zero_()
        victim.policy.log_std.copy_(torch.tensor([0.1, 1.0, 3.0]).log())
    spy = SpyEnvs(n)
    env = AdversaryEnv(victim, EPS, ACT_DIM, PAADAttack(EPS).perturber(victim, gen(0)), n, gen(1),
                       stochastic_victim=True, envs=spy)
    for i in range(n):
        env.reset_one(i, seed=i)
    for t in range(40):
        _, _, terminated, truncated = env.step(np.ones((n, ACT_DIM)))
        for i in np.flatnonzero(terminated | truncated):
            env.reset_one(i)
    acts = np.concatenate(spy.actions)
    np.testing.assert_allclose(acts.std(axis=0), [0.1, 1.0, 3.0], rtol=0.2)
    np.testing.assert_allclose(acts.mean(axis=0), 0.0, atol=0.5)


# ------------------------------------------------------------------------------------ training
@pytest.mark.parametrize("name, member", [("sa_rl", 1), ("pa_ad", 0)])
def test_training_raises_the_adversary_return(name, member):
    attack = get_attack(name)(EPS, preset="quick", member=member, train_steps=6 * 2048)
    stats = attack.fit(block_victim(), gen(0), envs=ContextBandit(attack.NUM_ENVS))
    curve = stats["adversary_return_per_iteration"]
    assert len(curve) == 6 and stats["steps"] == 6 * 2048
    # the untrained adversary barely moves a_0 (the best one lowers the victim's return by 90);
    # measured with these seeds: sa_rl 1.8 → 37, pa_ad 2.1 → 46 (noise of one iteration's mean ≈ 1)
    assert abs(curve[0]) < 10
    assert np.mean(curve[-2:]) > curve[0] + 20, curve
    # the deterministic adversary at evaluation keeps what training learnt
    victim = block_victim()
    states = torch.randn(256, OBS_DIM, generator=gen(7)) * 0.1
    with torch.no_grad():
        shift = victim.mean(attack.perturb(victim, states, gen(0)))[:, 0] - victim.mean(states)[:, 0]
    assert shift.mean() < -2.0, shift.mean()


def test_fits_are_deterministic_given_the_seed(smoke_agent):
    victim = Victim(smoke_agent)
    a, b = (SARLAttack(EPS, preset="smoke", seed=0) for _ in range(2))
    for attack in (a, b):
        attack.fit(victim, gen(0))  # real Hopper, 2 iterations
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    # PA-AD draws actor noise and victim action noise too; another seed gives another director
    x, y, z = (fitted("pa_ad", block_victim(), seed=s) for s in (3, 3, 4))
    for k, v in x.state_dict().items():
        assert torch.equal(v, y.state_dict()[k]), k
    assert not torch.equal(x.state_dict()["policy.mean_net.4.weight"], z.state_dict()["policy.mean_net.4.weight"])


# -------------------------------------------------------------------------------- the actor
@pytest.mark.parametrize("actor", [fgsm_actor, pgd_actor])
def test_pa_ad_actor_moves_the_victim_along_the_direction(actor):
    victim = hopper_shaped_victim(0)
    states = torch.randn(512, OBS_DIM, generator=gen(1))
    directions = torch.randn(512, ACT_DIM, generator=gen(2))
    perturbed = actor(victim, states, directions, EPS, gen(3))
    check_in_ball(perturbed, states, EPS, "pa_ad")
    with torch.no_grad():
        delta = victim.mean(perturbed) - victim.mean(states)
        cos = torch.nn.functional.cosine_similarity(delta, directions, dim=-1)
        assert cos.mean() > 0.3, cos.mean()
        # the reference's sign (ŝ = s − ε·sign(∇)) moves μ away from d
        if actor is fgsm_actor:
            away = 2 * states - perturbed
            cos_away = torch.nn.functional.cosine_similarity(victim.mean(away) - victim.mean(states), directions, -1)
            assert cos_away.mean() < -0.3
        # a random corner of the ball does neither
        corner = states + EPS * torch.sign(torch.randn(states.shape, generator=gen(4)))
        cos_rand = torch.nn.functional.cosine_similarity(victim.mean(corner) - victim.mean(states), directions, -1)
        assert abs(cos_rand.mean()) < 0.1
    assert direction_objective(delta, directions).shape == (512,)


# ------------------------------------------------------------------------ artifacts and scans
@pytest.fixture(scope="module")
def own_home(smoke_home, tmp_path_factory):
    """A private copy of the shared smoke home: the cells and artifacts written here stay here."""
    home = tmp_path_factory.mktemp("learned") / "home"
    shutil.copytree(smoke_home, home)
    return home


@pytest.fixture()
def store(own_home):
    with ResultsStore(own_home) as s:
        yield s


def test_artifact_is_saved_then_reused_without_fitting(store, monkeypatch):
    params = {"preset": "smoke", "seed": 5}
    key, first = evaluate_cell(store, SMOKE_AGENT, "sa_rl", episodes=2, attack_params=params)
    assert first is not None and first.info["fit"]["fit_stats"]["iterations"] == 2
    assert list((store.home / "attacks" / "sa_rl").rglob("*.safetensors"))

    def no_fit(self, *args, **kwargs):
        raise AssertionError("fit called although an artifact is stored")

    monkeypatch.setattr(SARLAttack, "fit", no_fit)
    key2, again = evaluate_cell(store, SMOKE_AGENT, "sa_rl", episodes=2, attack_params=params, force=True)
    assert key2 == key
    np.testing.assert_array_equal(again.returns, first.returns)  # the same adversary, reloaded


def test_no_fit_without_artifact_is_one_line(own_home):
    result = CliRunner().invoke(app, ["evaluate", "--home", str(own_home), "--agents", SMOKE_AGENT,
                                      "--attacks", "pa_ad", "--no-fit", "--episodes", "1"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: attack 'pa_ad' is not fitted for agent '{SMOKE_AGENT}'; run without --no-fit "
                      "to train it"]
    assert "Traceback" not in result.output


def test_scan_members_are_separate_cells(store):
    results = evaluate_attack(store, SMOKE_AGENT, "sa_rl", episodes=1,
                              attack_params={"preset": "quick", "train_steps": 2048})
    assert len(results) == len(SARLAttack.PRESETS["quick"].members) == 3
    cells = {c["cell_key"]: c for c in store.cells() if c["attack"] == "sa_rl"}
    configs = [cells[key]["attack_config"] for key, _ in results]
    assert [c["member"] for c in configs] == [0, 1, 2]
    assert all(c["grid_size"] == 3 and c["preset"] == "quick" and c["train_steps"] == 2048 for c in configs)
    assert len({(c["anneal_lr"], c["clip"], c["policy_lr_level"], c["value_lr_level"]) for c in configs}) == 3


# ------------------------------------------------------------------------------ configuration
def test_config_records_the_budget_and_the_member():
    assert SARLAttack(EPS).config()["preset"] == PAADAttack(EPS).config()["preset"] == "quick"  # as `rs`
    cfg = SARLAttack(EPS, preset="paper", member=215).config()
    assert cfg["grid_size"] == cfg["reference_grid_size"] == len(reference_grid()) == 216
    assert cfg["train_steps"] == cfg["paper_steps"] == 488 * 2048
    assert {"anneal_lr", "clip", "entropy_coef", "policy_lr_level", "value_lr_level", "seed"} <= set(cfg)
    assert SARLAttack.scan_members({"preset": "paper"})[-1] == {"member": 215}
    pa = PAADAttack(EPS, preset="quick").config()
    assert pa["paper_steps"] == 976 * 2048 and pa["train_steps"] == 49 * 2048 and pa["actor"] == "fgsm"
    assert get_attack("pa_ad_pgd")(EPS).config()["actor"] == "pgd"
    assert SARLAttack(EPS, preset="quick").iterations_for("ant") == round(49 * 2441 / 488)
    assert set(ADVERSARY_LRS) == {"hopper", "walker2d", "halfcheetah", "ant", "humanoid"}


@pytest.mark.parametrize("params, message", [
    ({"preset": "huge"}, "unknown sa_rl preset 'huge'; valid choices: medium, paper, quick, smoke"),
    ({"preset": "smoke", "member": 3}, "member must be an integer in 0..0"),
    ({"train_steps": -1}, "train_steps must be a positive integer"),
    ({"paper_steps": 5}, "paper_steps is fixed"),
    ({"lr": 1}, "has no parameter 'lr'"),
])
def test_bad_parameters_are_one_sentence(params, message):
    with pytest.raises(RobbenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SARLAttack(EPS, **params)


def test_unfitted_attack_refuses_to_perturb():
    with pytest.raises(RobbenchError, match="not fitted"):
        SARLAttack(EPS).perturb(hopper_shaped_victim(0), torch.zeros(1, OBS_DIM), gen())
