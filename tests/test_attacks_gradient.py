"""The gradient attacks `critic` and `mad` (spec/attacks.md), checked with `none` and `random`.

Every attack must stay inside B_ε(s) whatever the victim (random, trained, huge weights, saturated
units) and wherever s is (|s| = 10, the filter's clip boundary); `critic` must lower the victim's
value, `mad` must move its action more than uniform noise does; both are batched, deterministic
given the generator, leave the victim untouched, and record their step settings in the cell key.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from typer.testing import CliRunner

from robbench.cli import app
from robbench.errors import RobbenchError
from robbench.filters import ObsFilter
from robbench.policy import Agent, GaussianPolicy, ValueNet
from robbench.registry import get_attack
from robbench.store import ResultsStore, cell_key
from robbench.threat import Victim, check_in_ball

EPS = 0.075  # Hopper's protocol ε
OBS_DIM, ACT_DIM = 11, 3
ALL_ATTACKS = ("none", "random", "critic", "mad")
GRADIENT_ATTACKS = ("critic", "mad")

torch.set_num_threads(1)


def hopper_shaped_agent(seed: int, weight_scale: float = 1.0, first_bias: float = 0.0) -> Agent:
    """A fixed random Hopper-shaped agent. The action head gets gain 1 instead of the init's 0.01, so
    μ is as sensitive to s as a trained policy's; `weight_scale` multiplies every weight and
    `first_bias` fills the first hidden layer's bias (a large one saturates every tanh unit)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        policy, value = GaussianPolicy(OBS_DIM, ACT_DIM), ValueNet(OBS_DIM)
    with torch.no_grad():
        policy.mean_net[-1].weight.mul_(100.0)
        policy.log_std.copy_(torch.tensor([-1.0, 0.0, 0.5]))  # unequal σ: σ̃ matters
        for net in (policy.mean_net, value.net):
            for layer in net:
                if isinstance(layer, torch.nn.Linear):
                    layer.weight.mul_(weight_scale)
            net[0].bias.fill_(first_bias)
    obs_filter = ObsFilter(OBS_DIM)
    obs_filter.frozen = True
    return Agent(policy, value, obs_filter, {"env": "hopper", "agent_id": f"test/random/{seed}"})


def input_gradient(agent: Agent, states: torch.Tensor) -> torch.Tensor:
    x = states.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(agent.policy(x).sum() + agent.value(x).sum(), x)
    return grad


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def normal_states(n: int = 256, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, OBS_DIM, generator=gen(seed))


def boundary_states(n: int = 256, seed: int = 2) -> torch.Tensor:
    """States on the clip boundary |s| = 10 (the ball reaches past it; ŝ is not clipped back)."""
    return 10.0 * torch.sign(torch.randn(n, OBS_DIM, generator=gen(seed)))


@pytest.fixture(scope="module")
def random_agent():
    return hopper_shaped_agent(0)


@pytest.fixture(scope="module")
def huge_agent():
    agent = hopper_shaped_agent(1, weight_scale=1000.0)
    assert input_gradient(agent, normal_states()).abs().max() > 1e6  # really 1e6-scale gradients
    return agent


@pytest.fixture(scope="module")
def saturated_agent():
    agent = hopper_shaped_agent(2, first_bias=1e4)
    assert (input_gradient(agent, normal_states()) == 0).all()  # every tanh unit saturated
    return agent


def action_deviation(agent: Agent, perturbed: torch.Tensor, clean: torch.Tensor,
                     weights: str = "unit") -> torch.Tensor:
    """MAD's objective Σ_i ((μ_i(ŝ) − μ_i(s))/σ̃_i)², computed independently here: σ̃ ≡ 1 (weights
    "unit", MAD's default) or σ̃ = σ/mean(σ) (weights "learned")."""
    std = agent.policy.std.detach()
    scale = std / std.mean() if weights == "learned" else torch.ones_like(std)
    with torch.no_grad():
        return (((agent.act(perturbed) - agent.act(clean)) / scale) ** 2).sum(-1)


# ------------------------------------------------------------------------------------------- the ball
@pytest.mark.parametrize("attack", ALL_ATTACKS)
@pytest.mark.parametrize("victim_kind", ["random", "huge", "saturated", "smoke"])
@pytest.mark.parametrize("where", ["normal", "boundary"])
def test_every_attack_stays_in_the_ball(attack, victim_kind, where, request):
    agent = request.getfixturevalue(f"{victim_kind}_agent")
    states = normal_states() if where == "normal" else boundary_states()
    out = get_attack(attack)(EPS).perturb(Victim(agent), states, gen())
    assert out.shape == states.shape and out.dtype == states.dtype and not out.requires_grad
    dist = check_in_ball(out, states, EPS, attack)  # raises on NaN or an escape
    if attack != "none":
        assert dist > 0  # it does perturb (a saturated victim's zero gradient leaves critic at its start)


@pytest.mark.parametrize("attack", GRADIENT_ATTACKS)
def test_steps_larger_than_the_ball_are_projected(attack, huge_agent):
    states = boundary_states(64)
    out = get_attack(attack)(EPS, steps=3, step_size=1.0).perturb(Victim(huge_agent), states, gen())
    check_in_ball(out, states, EPS, attack)


@pytest.mark.parametrize("attack", GRADIENT_ATTACKS)
def test_attacks_survive_a_full_evaluation_of_an_extreme_victim(attack, huge_agent):
    """The evaluator checks the ball on every step of real Hopper states."""
    from robbench.evaluate import Protocol, evaluate

    protocol = Protocol.for_env("hopper", episodes=2)
    result = evaluate(huge_agent, get_attack(attack)(protocol.eps), protocol)
    assert 0 < result.max_perturbation <= EPS + 1e-6


# ------------------------------------------------------------------------------------- effectiveness
@pytest.mark.parametrize("victim_kind", ["random", "smoke"])
def test_critic_lowers_the_value(victim_kind, request):
    agent = request.getfixturevalue(f"{victim_kind}_agent")
    states = normal_states()
    attacked = get_attack("critic")(EPS).perturb(Victim(agent), states, gen())
    noisy = get_attack("random")(EPS).perturb(Victim(agent), states, gen())
    with torch.no_grad():
        clean_v, attacked_v, noisy_v = agent.value(states), agent.value(attacked), agent.value(noisy)
    drop = clean_v - attacked_v
    assert drop.mean() > 0
    assert (drop > 0).float().mean() >= 0.9
    assert drop.mean() > 5 * (clean_v - noisy_v).abs().mean()  # far more than noise of the same ε


@pytest.mark.parametrize("weights, gain, share", [("unit", 2.0, 0.75), ("learned", 3.0, 0.9)])
def test_mad_raises_the_action_deviation(weights, gain, share, random_agent):
    """Each form raises its own objective well above uniform noise's. σ̃ ≡ 1 leaves the objective (and its
    gradient) smaller against the SGLD noise, so its margin over noise is smaller than σ̃ = σ/mean(σ)'s
    on this victim (whose small-σ action the learned weights magnify)."""
    states = normal_states()
    mad = get_attack("mad")(EPS, weights=weights).perturb(Victim(random_agent), states, gen())
    noisy = get_attack("random")(EPS).perturb(Victim(random_agent), states, gen())
    mad_dev = action_deviation(random_agent, mad, states, weights)
    noise_dev = action_deviation(random_agent, noisy, states, weights)
    assert (mad_dev > 0).all()  # the clean point has deviation 0
    assert mad_dev.mean() > gain * noise_dev.mean()
    assert (mad_dev > noise_dev).float().mean() >= share


def test_mad_on_a_nearly_flat_policy_still_moves_the_action(smoke_agent):
    """A 2-iteration agent keeps the init's 0.01-gain head: ∇ of the objective (~1e-5) is far below
    the SGLD noise √(2·step)/(i+2) ≈ 0.06, so the search is a random walk (reference behaviour, see
    attacks/mad.py). It must still stay useful: deviation > 0 everywhere, at the ball's scale."""
    states = normal_states()
    mad = get_attack("mad")(EPS).perturb(Victim(smoke_agent), states, gen())
    assert (action_deviation(smoke_agent, mad, states) > 0).all()


def test_mad_uses_the_normalised_std_only_with_learned_weights(random_agent):
    """With weights "learned" (σ̃ = σ/mean(σ)) the search favours the action with the smallest σ; with
    the default σ̃ ≡ 1 it does not."""
    states = normal_states()
    victim = Victim(random_agent)
    small, large = int(victim.std.argmin()), int(victim.std.argmax())
    plain_noise = get_attack("random")(EPS).perturb(victim, states, gen())
    with torch.no_grad():
        noise_moved = (random_agent.act(plain_noise) - random_agent.act(states)).abs()

    def gain(**params):
        mad = get_attack("mad")(EPS, **params).perturb(victim, states, gen())
        with torch.no_grad():
            moved = (random_agent.act(mad) - random_agent.act(states)).abs()
        return moved.mean(0) / noise_moved.mean(0)

    learned, unit = gain(weights="learned"), gain()
    assert learned[small] > learned[large]
    assert unit[small] < unit[large]  # σ plays no part: the small-σ action is not favoured
    assert torch.equal(get_attack("mad")(EPS).perturb(victim, states, gen()),
                       get_attack("mad")(EPS, weights="unit").perturb(victim, states, gen()))


def test_mad_rejects_unknown_weights():
    with pytest.raises(RobbenchError, match="weights must be 'unit' or 'learned'"):
        get_attack("mad")(EPS, weights="sigma")


# ---------------------------------------------------------------------------------- batching, purity
@pytest.mark.parametrize("attack, net, calls", [("critic", "value", 10), ("mad", "policy", 11)])
def test_one_batched_forward_per_inner_step(attack, net, calls, random_agent):
    """K inner steps = K forward passes over the whole batch (MAD: +1 for the fixed μ(s))."""
    seen: list[int] = []
    module = getattr(random_agent, net)
    hook = module.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    try:
        get_attack(attack)(EPS).perturb(Victim(random_agent), normal_states(64), gen())
    finally:
        hook.remove()
    assert seen == [64] * calls


@pytest.mark.parametrize("attack", GRADIENT_ATTACKS)
def test_the_victim_is_left_untouched(attack, random_agent):
    before = {k: v.clone() for k, v in {**random_agent.policy.state_dict(), **random_agent.value.state_dict()}.items()}
    params = [*random_agent.policy.parameters(), *random_agent.value.parameters()]
    flags = [p.requires_grad for p in params]
    states = normal_states(32)
    states_copy = states.clone()
    get_attack(attack)(EPS).perturb(Victim(random_agent), states, gen())
    assert all(p.grad is None for p in params)
    assert [p.requires_grad for p in params] == flags
    after = {**random_agent.policy.state_dict(), **random_agent.value.state_dict()}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(states, states_copy) and not states.requires_grad


@pytest.mark.parametrize("attack", GRADIENT_ATTACKS)
def test_gradient_attacks_work_when_called_under_no_grad(attack, random_agent):
    states = normal_states(64)
    free = get_attack(attack)(EPS).perturb(Victim(random_agent), states, gen())
    with torch.no_grad():
        inside = get_attack(attack)(EPS).perturb(Victim(random_agent), states, gen())
    assert torch.equal(free, inside)


@pytest.mark.parametrize("attack", ALL_ATTACKS)
def test_attacks_are_deterministic_given_the_generator(attack, random_agent):
    """Same generator seed, same output, whatever the global RNG; another seed, another output."""
    states = normal_states(64)
    a = get_attack(attack)(EPS)
    torch.manual_seed(123)
    first = a.perturb(Victim(random_agent), states, gen(7))
    torch.manual_seed(456)
    second = a.perturb(Victim(random_agent), states, gen(7))
    assert torch.equal(first, second)
    if attack != "none":
        assert not torch.equal(first, a.perturb(Victim(random_agent), states, gen(8)))


# ------------------------------------------------------------------------------------------ settings
@pytest.mark.parametrize("attack", GRADIENT_ATTACKS)
def test_step_settings_are_recorded_and_keyed(attack):
    cls = get_attack(attack)
    extra = {"weights": "unit"} if attack == "mad" else {}  # mad's σ̃ ≡ 1 by default
    assert cls.default_params() == {"steps": 10, "step_size": None, **extra}
    assert cls(EPS).config() == {"eps": EPS, "steps": 10, "step_size": pytest.approx(EPS / 10), **extra}
    assert cls(EPS, steps=5).config()["step_size"] == pytest.approx(EPS / 5)
    assert cls(EPS, step_size=0.01).config() == {"eps": EPS, "steps": 10, "step_size": 0.01, **extra}

    def key(**params):
        return cell_key("hopper/ppo/x/0", "sha", attack, cls(EPS, **params).config(), {"eps": EPS})

    assert len({key(), key(steps=5), key(step_size=0.01), key(steps=5, step_size=0.01)}) == 4
    assert key() == key(step_size=EPS / 10)  # the default is ε/K: the same attack, the same cell
    if attack == "mad":  # the weights are part of the attack: another cell
        assert key(weights="learned") != key() == key(weights="unit")


@pytest.mark.parametrize("attack", GRADIENT_ATTACKS)
def test_the_step_settings_are_honoured(attack, random_agent):
    """Few small steps cannot reach the ball's edge: start (≤ step) + K steps."""
    states = normal_states(64)
    out = get_attack(attack)(EPS, steps=2, step_size=0.01).perturb(Victim(random_agent), states, gen())
    dist = (out - states).abs().max()
    assert 0.01 < dist <= 0.03 + 1e-6


@pytest.mark.parametrize(
    "params, message",
    [
        ({"steps": 0}, "steps must be an integer ≥ 1, got 0"),
        ({"steps": 2.5}, "steps must be an integer ≥ 1, got 2.5"),
        ({"steps": True}, "steps must be an integer ≥ 1"),
        ({"step_size": -0.1}, "step_size must be a finite number ≥ 0 or null, got -0.1"),
        ({"step_size": "big"}, "step_size must be a finite number ≥ 0 or null"),
        ({"alpha": 1}, "has no parameter 'alpha'; valid: step_size, steps"),
    ],
)
@pytest.mark.parametrize("attack", GRADIENT_ATTACKS)
def test_bad_settings_are_one_clear_error(attack, params, message):
    with pytest.raises(RobbenchError, match=message.replace("(", r"\(")):
        get_attack(attack)(EPS, **params)


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_evaluates_and_lists_the_gradient_attacks(smoke_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(smoke_home, home)
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "--home", str(home), "--attacks", "critic,mad", "--episodes", "3"])
    assert result.exit_code == 0, result.output
    with ResultsStore(home) as store:
        cells = {c["attack"]: c for c in store.cells()}
    assert set(cells) == {"critic", "mad"}
    for cell in cells.values():
        assert cell["episodes"] == 3 and cell["attack_config"]["steps"] == 10
        assert cell["attack_config"]["step_size"] == pytest.approx(EPS / 10)
        assert 0 < cell["info"]["max_perturbation"] <= EPS + 1e-6
    report = runner.invoke(app, ["report", "--home", str(home)])
    assert report.exit_code == 0 and "critic" in report.output and "mad" in report.output
    listing = runner.invoke(app, ["list", "attacks"])
    assert listing.exit_code == 0
    for name in ALL_ATTACKS:
        assert name in listing.output
