"""The bound-based trainers: `sappo-convex`, `radial`, `wocar` (spec/trainers.md).

What is checked, through the trainers' own objects on a real PPO core:
- the bounds each trainer uses contain the policy's outputs at uniform points, corners and PGD
  extremes of the ε-ball, for the *current* policy (its weights changed after the trainer built
  its BoundedModule), and the quantities built on them bound what they claim to bound;
- ε = 0: RADIAL's objective is exactly PPO's, SA-PPO-convex's R is 0;
- gradients of the bound-based losses reach every policy parameter;
- WocaR: a* lowers Q_w against μ(s') and stays in the IBP box; the target update is Polyak with τ;
  w_t follows its schedule;
- `robbench train <method> hopper --preset smoke` works and records the trainer's settings.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import scipy.special
import torch
from typer.testing import CliRunner

from robbench.agents._robust import sa_regulariser
from robbench.agents.radial import _expo_ratio, radial_eps, radial_surrogate
from robbench.agents.sappo_convex import convex_kl_bound
from robbench.agents.wocar import worst_action
from robbench.cli import app
from robbench.errors import RobbenchError
from robbench.pgd import sign_gradient_ascent
from robbench.policy import gaussian_log_prob
from robbench.ppo import Batch, Minibatch, PPOCore
from robbench.store import ResultsStore
from robbench.train import build_config

EPS = 0.075  # hopper's protocol ε
TOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_core(method: str, env: str = "hopper", **params) -> PPOCore:
    cfg, objective = build_config(method, env, preset="smoke", num_envs=1, trainer_params=params)
    return PPOCore(cfg, objective)


@torch.no_grad()
def roughen(core: PPOCore, seed: int = 0) -> None:
    """Give the policy large random weights (strongly non-linear μ) *after* the trainer was set up."""
    g = torch.Generator().manual_seed(seed)
    for layer in core.policy.mean_net:
        if isinstance(layer, torch.nn.Linear):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 2.0 / math.sqrt(layer.in_features))
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g) * 0.5)
    core.policy.log_std.fill_(-0.5)


def make_minibatch(core: PPOCore, n: int = 64, seed: int = 1) -> Minibatch:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, core.envs.obs_dim, generator=g)
    with torch.no_grad():
        mean = core.policy(obs)
        actions = mean + core.policy.std * torch.randn(mean.shape, generator=g)
        # old log-probs off by up to ±0.4: ratios on both sides of the clip range
        old = gaussian_log_prob(mean, core.policy.log_std, actions) + 0.4 * (torch.rand(n, generator=g) * 2 - 1)
    adv = torch.randn(n, generator=g)
    return Minibatch(obs, actions, old, (adv - adv.mean()) / adv.std(), torch.zeros(n), torch.zeros(n),
                     torch.arange(n))


def ball_points(obs: torch.Tensor, eps: float, n: int, seed: int) -> torch.Tensor:
    """n uniform points and n corners of each row's ball: (B, 2n, d)."""
    g = torch.Generator().manual_seed(seed)
    b, d = obs.shape
    u = (torch.rand(b, n, d, generator=g) * 2 - 1) * eps
    c = (torch.randint(0, 2, (b, n, d), generator=g) * 2 - 1).float() * eps
    return obs[:, None, :] + torch.cat([u, c], 1)


def pgd_extremes(policy, obs: torch.Tensor, eps: float) -> torch.Tensor:
    """States of the ball found by PGD (shared solver) maximising and minimising each μ_j: (B, 2A, d)."""
    g = torch.Generator().manual_seed(5)
    act_dim = policy.log_std.shape[0]
    found = []
    for j in range(act_dim):
        for maximize in (True, False):
            found.append(sign_gradient_ascent(lambda x, j=j: policy(x)[:, j], obs, eps, g, steps=20,
                                              start="uniform", maximize=maximize))
    return torch.stack(found, 1)


def assert_inside(lo, hi, values, what):
    """values (B, K, A) inside [lo, hi] (B, A) up to float slack."""
    below = values < lo[:, None] - TOL - 1e-5 * lo[:, None].abs()
    above = values > hi[:, None] + TOL + 1e-5 * hi[:, None].abs()
    assert not bool(below.any() or above.any()), f"{what}: {int(below.sum() + above.sum())} outputs outside"


# ------------------------------------------------------------------------------ soundness
@pytest.mark.parametrize("method", ["sappo-convex", "radial", "wocar"])
def test_bounds_contain_the_current_policy_outputs(method):
    core = make_core(method)
    roughen(core)  # after setup: the trainer's BoundedModule must see these weights
    bounds = core.objective.bounds
    obs = make_minibatch(core, n=24).obs
    samples = ball_points(obs, EPS, 64, seed=2)
    extremes = pgd_extremes(core.policy, obs, EPS)
    assert float((extremes - obs[:, None]).abs().max()) <= EPS + 1e-6
    with torch.no_grad():
        at_samples = core.policy(samples)
        at_extremes = core.policy(extremes)
        boxes = {"ibp": bounds.ibp(obs, EPS)}
        if method == "sappo-convex":
            boxes.update({f"beta={b}": bounds.mixed(obs, EPS, b) for b in (0.0, 0.5, 1.0)})
    for name, (lo, hi) in boxes.items():
        assert bool((hi - lo > 1e-4).all()), f"{name}: degenerate box for ε > 0"
        assert_inside(lo, hi, at_samples, f"{method} {name} uniform+corners")
        assert_inside(lo, hi, at_extremes, f"{method} {name} PGD extremes")
    # PGD beats random sampling: the extremes are real ones
    assert bool((at_extremes.amax(1) >= at_samples.amax(1) - 1e-4).float().mean() > 0.9)


def test_convex_regulariser_bounds_the_sgld_divergence():
    core = make_core("sappo-convex")
    roughen(core)
    obs = make_minibatch(core, n=32).obs
    policy = core.policy
    with torch.no_grad():
        clean = policy(obs)
        inv_std = torch.exp(-policy.log_std)
    worst = sign_gradient_ascent(lambda x: ((policy(x) - clean) * inv_std).pow(2).sum(-1), obs, EPS,
                                 torch.Generator().manual_seed(0), steps=20, start="corner")
    with torch.no_grad():
        divergence = ((policy(worst) - clean) * inv_std).pow(2).sum(-1)
        for beta in (0.0, 0.5, 1.0):
            bound = convex_kl_bound(core.objective.bounds, policy, obs, EPS, beta)
            assert bool((bound >= divergence - 1e-5).all()), f"beta={beta}: R below a reachable divergence"
    assert float(divergence.mean()) > 1e-3  # the comparison is not vacuous
    # WocaR's SGLD regulariser (batch mean of the same divergence) lies between 0 and the bound
    sgld = sa_regulariser(core, obs, EPS, 10, EPS / 10)
    assert 0.5 * float(divergence.mean()) < float(sgld.detach()) <= float(bound.mean()) + 1e-5


def test_radial_likelihood_bounds_contain_the_perturbed_likelihood():
    core = make_core("radial")
    roughen(core)
    mb = make_minibatch(core, n=24)
    policy = core.policy
    lo, hi = core.objective.bounds.ibp(mb.obs, EPS)
    d_min = torch.clamp(torch.maximum(mb.actions - hi, lo - mb.actions), min=0.0)
    d_max = torch.maximum((hi - mb.actions).abs(), (lo - mb.actions).abs())
    zero = torch.zeros_like(mb.actions)
    with torch.no_grad():
        upper = gaussian_log_prob(zero, policy.log_std, d_min)
        lower = gaussian_log_prob(zero, policy.log_std, d_max)
        points = torch.cat([ball_points(mb.obs, EPS, 32, seed=3), pgd_extremes(policy, mb.obs, EPS)], 1)
        log_probs = gaussian_log_prob(policy(points), policy.log_std, mb.actions[:, None])
    assert bool((log_probs <= upper[:, None] + 1e-5).all() and (log_probs >= lower[:, None] - 1e-5).all())
    clean, adv = radial_surrogate(core, mb, core.objective.bounds, EPS)
    assert bool((adv <= clean + 1e-7).all()) and bool((adv < clean - 1e-4).any())


# ------------------------------------------------------------------------------- ε = 0
def test_at_eps_zero_radial_is_ppo_and_convex_r_is_zero():
    radial = make_core("radial")
    roughen(radial)
    mb = make_minibatch(radial)
    # the core's loss alone (clean surrogate, weight 1) and nothing added: exactly PPO
    assert radial.objective.eps(radial) == 0.0 and radial.objective.surrogate_weight == 1.0
    assert radial.objective.extra_loss(radial, mb) is None
    clean, adv = radial_surrogate(radial, mb, radial.objective.bounds, 0.0)  # through the bounds
    torch.testing.assert_close(adv, clean, atol=1e-6, rtol=0)
    # and once ε > 0 the core's −mean g plus the extra term is −mean(0.5·L_adv + 0.5·g)
    radial.minibatch_step = int(0.5 * radial.cfg.iterations * radial.cfg.epochs * radial.cfg.minibatches)
    eps = radial.objective.eps(radial)
    clean, adv = radial_surrogate(radial, mb, radial.objective.bounds, eps)
    total = -clean.mean() + radial.objective.extra_loss(radial, mb)
    torch.testing.assert_close(total, -(0.5 * adv + 0.5 * clean).mean())
    assert float(total.detach()) > float(-clean.mean().detach()) + 1e-4  # the bound term bites

    convex = make_core("sappo-convex")
    roughen(convex)
    assert convex.eps_now == 0.0 and convex.objective.extra_loss(convex, mb) is None
    for beta in (0.0, 0.5, 1.0):
        r = convex_kl_bound(convex.objective.bounds, convex.policy, mb.obs, 0.0, beta)
        assert float(r.detach().abs().max()) < 1e-9


# ------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("method", ["sappo-convex", "radial", "wocar"])
def test_gradients_of_the_robust_loss_reach_the_policy(method):
    core = make_core(method)
    roughen(core)
    # mid-run: ε_t > 0 (and RADIAL's own ramp started); β strictly inside (0, 1)
    core.minibatch_step = int(0.6 * core.cfg.iterations * core.cfg.epochs * core.cfg.minibatches)
    core.iteration = 1
    assert core.eps_now > 0
    mb = make_minibatch(core)
    if method == "radial":
        assert core.objective.eps(core) > 0
    if method == "sappo-convex":
        assert 0.0 < core.objective.beta(core) < 1.0
    if method == "wocar":
        core.objective._worst_q = torch.randn(mb.obs.shape[0], generator=torch.Generator().manual_seed(0))
    core.policy.zero_grad(set_to_none=True)
    core.objective.extra_loss(core, mb).backward()
    for name, p in core.policy.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        # the output bias cancels in u = max|bound − μ(s)| of SA-PPO-convex
        if not (method == "sappo-convex" and name == "mean_net.4.bias"):
            assert float(p.grad.abs().sum()) > 0, f"{method}: zero gradient for {name}"


def test_bounds_differentiate_into_the_policy_itself():
    """The BoundedModule shares core.policy's parameters: bound gradients land there, and one
    gradient step on R shrinks R."""
    core = make_core("sappo-convex")
    roughen(core)
    obs = make_minibatch(core).obs
    for lo, hi in (core.objective.bounds.ibp(obs, EPS), core.objective.bounds.mixed(obs, EPS, 0.5)):
        core.policy.zero_grad(set_to_none=True)
        (hi - lo).sum().backward()
        for name, p in core.policy.mean_net.named_parameters():
            assert p.grad is not None, f"no bound gradient reaches the policy's {name}"
            if name != "4.bias":  # the output bias cancels in hi − lo
                assert float(p.grad.abs().sum()) > 0, name
    core.policy.zero_grad(set_to_none=True)
    r0 = convex_kl_bound(core.objective.bounds, core.policy, obs, EPS, 0.5).mean()
    r0.backward()
    with torch.no_grad():
        for p in core.policy.parameters():
            p -= 1e-3 * p.grad
        r1 = convex_kl_bound(core.objective.bounds, core.policy, obs, EPS, 0.5).mean()
    assert float(r1) < float(r0.detach())


# ---------------------------------------------------------------------------------- WocaR
def test_worst_action_lowers_q_and_stays_in_the_ibp_box():
    core = make_core("wocar")
    roughen(core)
    q = core.objective.q
    next_obs = make_minibatch(core, n=128).obs
    with torch.no_grad():
        lo, hi = core.objective.bounds.ibp(next_obs, EPS)
        mean = core.policy(next_obs)
    a_star = worst_action(q, next_obs, lo, hi, torch.Generator().manual_seed(0), steps=50)
    assert bool((a_star >= lo - 1e-6).all() and (a_star <= hi + 1e-6).all())
    with torch.no_grad():
        q_star = q(torch.cat([next_obs, a_star], -1)).squeeze(-1)
        q_mean = q(torch.cat([next_obs, mean], -1)).squeeze(-1)
    assert bool((q_star <= q_mean + 1e-6).float().mean() >= 0.95)
    assert float((q_mean - q_star).mean()) > 1e-3
    # a degenerate box (ε = 0) gives back μ(s')
    lo0, hi0 = core.objective.bounds.ibp(next_obs, 0.0)
    torch.testing.assert_close(worst_action(q, next_obs, lo0, hi0, torch.Generator()), mean, atol=1e-5, rtol=0)


def test_q_target_update_is_polyak_with_tau():
    core = make_core("wocar", q_epochs=1, q_minibatches=1)
    objective = core.objective
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # let the online net differ from its target first
        for p in objective.q.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    n, d, a = 64, core.envs.obs_dim, core.envs.act_dim
    batch = Batch(
        obs=torch.randn(n, d, generator=g), actions=torch.randn(n, a, generator=g), log_probs=torch.zeros(n),
        advantages=torch.randn(n, generator=g), returns=torch.zeros(n), values=torch.zeros(n),
        rewards=torch.randn(n, generator=g), dones=(torch.rand(n, generator=g) < 0.1).float(),
        next_obs=torch.randn(n, d, generator=g),
    )
    before = [p.detach().clone() for p in objective.q_target.parameters()]
    online_before = [p.detach().clone() for p in objective.q.parameters()]
    objective.prepare_batch(core, batch)
    tau = objective.tau
    assert tau == 1e-3
    moved = 0.0
    for t0, t1, q0, q1 in zip(before, objective.q_target.parameters(), online_before, objective.q.parameters()):
        assert not torch.equal(q0, q1)  # one Adam step was taken
        torch.testing.assert_close(t1, (1 - tau) * t0 + tau * q1, atol=1e-7, rtol=0)
        moved = max(moved, float((t1 - t0).abs().max()))
    assert moved > 1e-5  # the target did move (and not all the way: that would be ~0.1)
    assert math.isfinite(objective.last_q_loss)
    # the policy's worst-case Q comes from the target network, for every sample of the batch
    with torch.no_grad():
        expected = objective.q_target(torch.cat([batch.obs, batch.actions], -1)).squeeze(-1)
    torch.testing.assert_close(objective._worst_q, expected)


def test_wocar_weight_schedules_and_plain_ppo_at_the_start():
    hopper = make_core("wocar", kappa=0.0)
    walker = make_core("wocar", env="walker2d")
    n = hopper.cfg.iterations
    hopper.iteration = walker.iteration = 1
    assert hopper.objective.weight(hopper) == pytest.approx(0.8 * 1 / n)
    assert walker.objective.weight(walker) == pytest.approx((0.8 * 1 / n) ** 3)
    assert walker.objective.kappa == 0.1 and walker.objective.schedule == "cubic"
    # w_0 = 0 and κ = 0: the policy loss is exactly PPO's
    hopper.iteration = 0
    roughen(hopper)
    mb = make_minibatch(hopper)
    hopper.objective._worst_q = torch.randn(64, generator=torch.Generator().manual_seed(0))
    log_probs = gaussian_log_prob(hopper.policy(mb.obs), hopper.policy.log_std, mb.actions)
    assert torch.equal(hopper.objective.extra_loss(hopper, mb), -hopper.surrogate(log_probs, mb).mean())


# ------------------------------------------------------------------------------ schedules
def test_radial_eps_schedule_scaled_to_the_run():
    for schedule in ("smooth", "expo", "linear"):
        values = [radial_eps(schedule, f / 1000, 0.15) for f in range(1001)]
        assert values[250] == 0.0 and values[750] == values[-1] == 0.15
        assert all(b >= a for a, b in zip(values, values[1:])), schedule
        assert max(abs(b - a) for a, b in zip(values, values[1:])) < 0.01  # no jumps
    for c in (0.5, 3.0, 2.5e8):  # exp(W(c)), W = Lambert W
        assert _expo_ratio(c) == pytest.approx(math.exp(scipy.special.lambertw(c).real), rel=1e-9)
    # the curved schedules start slower than the linear one
    assert radial_eps("expo", 0.3, 0.15) < radial_eps("smooth", 0.3, 0.15) < radial_eps("linear", 0.3, 0.15)
    core = make_core("radial")
    steps = core.cfg.iterations * core.cfg.epochs * core.cfg.minibatches
    core.minibatch_step = steps // 4
    assert core.objective.eps(core) == 0.0
    core.minibatch_step = 3 * steps // 4
    assert core.objective.eps(core) == pytest.approx(core.cfg.eps)
    assert core.objective.schedule == "smooth"  # hopper's reference schedule


def test_halfcheetah_reference_ppo_settings_and_bad_settings():
    for method in ("sappo-convex", "radial"):
        core = make_core(method, env="halfcheetah")
        cfg = core.cfg
        assert (cfg.policy_lr, cfg.value_lr, cfg.entropy_coef, cfg.anneal_lr) == (1e-4, 1e-3, 1e-4, False)
        core._set_lr()
        assert [g["lr"] for g in core.optimizer.param_groups] == [1e-4, 1e-3]
    hopper = make_core("sappo-convex")
    assert (hopper.cfg.policy_lr, hopper.cfg.anneal_lr) == (3e-4, True)
    with pytest.raises(RobbenchError, match="cannot change 'clip'"):
        build_config("radial", "hopper", trainer_params={"ppo": {"clip": 0.1}})  # before any training
    with pytest.raises(RobbenchError, match="astar_refresh"):
        build_config("wocar", "hopper", trainer_params={"astar_refresh": "never"})
    with pytest.raises(RobbenchError, match="kappa"):
        build_config("sappo-convex", "hopper", trainer_params={"kappa": -1})


# ------------------------------------------------------------------------------------ CLI
EXPECTED_SETTINGS = {
    "sappo-convex": {"kappa": 0.25, "beta_start": 0.0, "beta_end": 1.0, "ppo": {}},
    "radial": {"eps_schedule": "smooth", "eps_start": 0.25, "eps_end": 0.75, "ppo": {}},
    "wocar": {"kappa": 0.25, "q_weight": 0.8, "q_weight_schedule": "linear", "q_lr": 4e-4, "tau": 1e-3,
              "astar_steps": 50, "astar_refresh": "iteration"},
}


@pytest.mark.parametrize("method", list(EXPECTED_SETTINGS))
def test_smoke_training_through_the_cli_records_the_settings(method, tmp_path):
    kappa = ["--kappa", "0.25"] if "kappa" in EXPECTED_SETTINGS[method] else []
    args = ["train", method, "hopper", "--preset", "smoke", *kappa, "--home", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with ResultsStore(tmp_path) as store:
        agent = store.load_agent(f"hopper/{method}/smoke/0")
    assert agent.meta["method"] == method
    recorded = agent.meta["config"]["trainer"]
    for key, value in EXPECTED_SETTINGS[method].items():
        assert recorded[key] == value, key
    if method == "wocar":
        assert set(agent.extra_state) == {"worst_q", "worst_q_target"}
        assert agent.extra_state["worst_q"]["0.weight"].shape == (64, 11 + 3)


def test_radial_rawadv_uses_raw_advantages_in_the_bound_terms_only():
    """`radial-rawadv`: L_adv = min(g(r, Â), g(r_hi, A), g(r_lo, A)) with A the raw advantages."""
    from types import SimpleNamespace

    core = make_core("radial-rawadv")
    assert core.objective.bound_advantages == "raw" and make_core("radial").objective.bound_advantages == "normalized"
    roughen(core)
    mb = make_minibatch(core, n=32)
    raw = 0.05 * torch.randn(32, generator=torch.Generator().manual_seed(7))  # small, as scaled-reward GAE
    core.objective.prepare_batch(core, SimpleNamespace(advantages=raw))
    core.minibatch_step = int(0.5 * core.cfg.iterations * core.cfg.epochs * core.cfg.minibatches)
    eps = core.objective.eps(core)
    clean, adv = radial_surrogate(core, mb, core.objective.bounds, eps, raw[mb.index])
    lo, hi = core.objective.bounds.ibp(mb.obs, eps)
    zero = torch.zeros_like(mb.actions)
    d_min = torch.clamp(torch.maximum(mb.actions - hi, lo - mb.actions), min=0.0)
    d_max = torch.maximum((hi - mb.actions).abs(), (lo - mb.actions).abs())
    raw_mb = dataclasses.replace(mb, advantages=raw)
    by_hand = torch.minimum(clean, torch.minimum(
        core.surrogate(gaussian_log_prob(zero, core.policy.log_std, d_min), raw_mb),
        core.surrogate(gaussian_log_prob(zero, core.policy.log_std, d_max), raw_mb)))
    torch.testing.assert_close(adv, by_hand)
    total = -clean.mean() + core.objective.extra_loss(core, mb)
    torch.testing.assert_close(total, -(0.5 * adv + 0.5 * clean).mean())
