"""SA-PPO (SGLD), AR-PPO and BAR-PPO (+ ablations): the robust losses, inner solvers and plumbing."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from robbench import fastpath
from robbench.agents import _robust
from robbench.agents.arppo import ARPPO
from robbench.agents.barppo import BARPPO
from robbench.agents.sappo import SAPPO
from robbench.cli import app
from robbench.errors import RobbenchError
from robbench.policy import gaussian_log_prob
from robbench.ppo import Minibatch, PPOCore
from robbench.registry import trainers
from robbench.store import ResultsStore
from robbench.train import build_config, train_agent

torch.set_num_threads(1)

METHODS = ("sappo", "arppo", "arppo-noguide", "barppo", "barppo-noguide")


def make_objective(method, **params):
    return build_config(method, "hopper", preset="smoke", trainer_params=params)[1]


@pytest.fixture(scope="module")
def setup():
    """A Hopper core with one collected batch, a policy whose mean depends strongly on s and that
    has moved away from π_old (so r ≠ 1), entropy coefficient 0.01 so the H terms are live."""
    cfg, _ = build_config("ppo", "hopper", preset="smoke", num_envs=4, seed=3, entropy_coef=0.01)
    core = PPOCore(cfg)
    batch = core.collect()
    core.envs.close()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        torch.nn.init.orthogonal_(core.policy.mean_net[-1].weight, gain=1.0, generator=g)
        for p in core.policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    idx = torch.randperm(batch.obs.shape[0], generator=g)[:64]
    adv = batch.advantages[idx]
    mb = Minibatch(batch.obs[idx], batch.actions[idx], batch.log_probs[idx], (adv - adv.mean()) / (adv.std() + 1e-8),
                   batch.returns[idx], batch.values[idx], idx)
    return core, mb


def at_eps(core, fraction):
    """Set the core's ramp so that ε_t = fraction · ε."""
    total = core.cfg.iterations * core.cfg.epochs * core.cfg.minibatches * core.cfg.eps_ramp_fraction
    core.minibatch_step = int(fraction * total)
    return core.eps_now


def ppo_terms(core, mb, states):
    """(−mean g(π(a|x)/π_old(a|s), Â), entropy bonus −c·H) at inputs `states`, by the formulas."""
    log_probs = gaussian_log_prob(core.policy(states), core.policy.log_std, mb.actions)
    return -core.surrogate(log_probs, mb).mean(), -core.cfg.entropy_coef * core.policy.entropy()


def divergence(core, clean, perturbed):
    """R = Σ_i ((μ_i(ŝ) − μ_i(s))/σ_i)² per sample (2·KL for a state-independent σ)."""
    with torch.no_grad():
        return ((core.policy(perturbed) - core.policy(clean)) / core.policy.std).pow(2).sum(-1)


def surrogate(core, mb, states):
    with torch.no_grad():
        return core.surrogate(gaussian_log_prob(core.policy(states), core.policy.log_std, mb.actions), mb)


# ------------------------------------------------------------------------------ registration
def test_registered_with_per_env_defaults_and_clear_errors():
    table = trainers()
    assert set(METHODS) <= set(table)
    for m in METHODS:
        assert (table[m].__doc__ or "").strip().splitlines()[0]
    kappas = {env: SAPPO.defaults(env)["kappa"] for env in ("hopper", "walker2d", "halfcheetah", "ant", "humanoid")}
    assert kappas == {"hopper": 1.0, "walker2d": 0.1, "halfcheetah": 0.1, "ant": 0.003, "humanoid": 0.003}
    for cls in (BARPPO, ARPPO):
        assert [cls.defaults(e)["kappa"] for e in ("hopper", "walker2d", "halfcheetah", "ant")] == [0.3, 0.3, 0.3, 1.0]
    for m in ("arppo-noguide", "barppo-noguide"):
        assert table[m].surrogate_weight == 0.0 and "kappa" not in table[m].defaults("hopper")
        with pytest.raises(RobbenchError, match=f"method '{m}' has no setting 'kappa'"):
            build_config(m, "hopper", trainer_params={"kappa": 1.0})
    assert table["barppo"].surrogate_weight == table["sappo"].surrogate_weight == 1.0
    for bad, message in [({"kappa": -1}, "kappa must be a number ≥ 0, got -1"),
                         ({"kappa": "big"}, "kappa must be a number ≥ 0, got 'big'"),
                         ({"inner_steps": 0}, "inner_steps must be an integer ≥ 1, got 0"),
                         ({"step_scale": 0}, "step_scale must be a number > 0")]:
        with pytest.raises(RobbenchError, match=message):
            make_objective("barppo", **bad)
    with pytest.raises(RobbenchError, match="unknown env 'hoper'"):
        SAPPO.defaults("hoper")


# ------------------------------------------------------------------------------ ε = 0: the math
def test_at_eps_zero_the_robust_terms_reduce_to_ppo(setup):
    core, mb = setup
    assert at_eps(core, 0.0) == 0.0
    surr, ent = ppo_terms(core, mb, mb.obs)
    ppo_loss = surr + ent
    for method, kappa in (("barppo", 0.3), ("arppo", 1.0)):
        obj = make_objective(method, kappa=kappa)
        extra = obj.extra_loss(core, mb)
        assert torch.allclose(extra, kappa * ppo_loss, rtol=1e-6, atol=0)  # κ·L(ŝ = s) = κ·(PPO loss)
        total = obj.surrogate_weight * surr + ent + extra  # what the core adds it to
        assert torch.allclose(total, (1 + kappa) * ppo_loss, rtol=1e-6, atol=0)
    for method in ("barppo-noguide", "arppo-noguide"):
        obj = make_objective(method)
        assert torch.allclose(obj.extra_loss(core, mb), ppo_loss, rtol=1e-6, atol=0)
    assert make_objective("sappo", kappa=1.0).extra_loss(core, mb).item() == 0.0


# ------------------------------------------------------------------------------ inner solvers
def test_hand_written_inner_gradients_match_autograd(setup):
    """robbench.fastpath's gradients (the trainers' default) against autograd on the same objectives."""
    core, mb = setup
    policy = core.policy
    x = (mb.obs + 0.05 * torch.randn(mb.obs.shape, generator=torch.Generator().manual_seed(1))).requires_grad_()
    with torch.no_grad():
        clean = policy(mb.obs)
        assert torch.allclose(fastpath.SigmoidMLP(policy).mean(mb.obs), clean, atol=1e-5)
    inv_var = torch.exp(-2 * policy.log_std.detach())
    divergence = ((policy(x) - clean).pow(2) * inv_var).sum(-1)
    log_probs = gaussian_log_prob(policy(x), policy.log_std.detach(), mb.actions)
    surrogate = core.surrogate(log_probs, mb)
    ratio = torch.exp(log_probs - mb.log_probs).detach()
    cases = [
        (fastpath.divergence_gradient(policy, mb.obs, inv_var, clean)(x.detach()), divergence),
        # the surrogate's hand gradient drops the positive per-sample factor r (same sign, same ŝ)
        (ratio.unsqueeze(-1) * fastpath.surrogate_gradient(policy, mb, core.cfg.clip)(x.detach()), surrogate),
    ]
    for grad, value in cases:
        (ref_grad,) = torch.autograd.grad(value.sum(), x)
        assert torch.allclose(grad, ref_grad, rtol=1e-3, atol=1e-5 * float(ref_grad.abs().max()))
        assert float(ref_grad.abs().max()) > 0


def test_sgld_raises_the_divergence_and_stays_in_the_ball(setup):
    core, mb = setup
    eps = at_eps(core, 1.0)
    step = eps / 10
    perturbed = BARPPO(kappa=0.3, inner_steps=10, step_scale=1.0).adversarial_states(core, mb, eps)
    assert not perturbed.requires_grad
    assert float((perturbed - mb.obs).abs().max()) <= eps + 1e-6
    corner = torch.randint(0, 2, mb.obs.shape, generator=torch.Generator().manual_seed(2)) * 2 - 1
    start = divergence(core, mb.obs, mb.obs + step * corner)  # same distribution as the solver's start
    found = divergence(core, mb.obs, perturbed)
    assert found.mean() > 10 * start.mean()  # ~(ε/step)² for a near-linear μ
    # beats random points of the whole ball too
    uniform = mb.obs + eps * (2 * torch.rand(mb.obs.shape, generator=torch.Generator().manual_seed(3)) - 1)
    assert (found > divergence(core, mb.obs, uniform)).float().mean() > 0.9
    # SA-PPO's regulariser is κ·R at this ŝ (the same SGLD solver)
    sappo = SAPPO(kappa=2.0, inner_steps=10, step_scale=1.0)
    assert sappo.extra_loss(core, mb).item() > 2.0 * 10 * start.mean().item()


def test_pgd_lowers_the_surrogate_and_stays_in_the_ball(setup):
    core, mb = setup
    eps = at_eps(core, 1.0)
    perturbed = ARPPO(kappa=0.3, inner_steps=10, step_scale=1.0).adversarial_states(core, mb, eps)
    assert not perturbed.requires_grad
    assert float((perturbed - mb.obs).abs().max()) <= eps + 1e-6
    clean, found = surrogate(core, mb, mb.obs), surrogate(core, mb, perturbed)
    assert found.mean() < clean.mean() - 0.05
    assert (found <= clean + 1e-6).float().mean() > 0.95
    uniform = mb.obs + eps * (2 * torch.rand(mb.obs.shape, generator=torch.Generator().manual_seed(3)) - 1)
    assert found.mean() < surrogate(core, mb, uniform).mean()


def test_arppo_pgd_start_is_anywhere_in_the_ball_by_default_and_within_one_step_when_asked(setup):
    """`pgd_start` "ball" (the reference CAR solver's U[−ε_t, ε_t] start, the default for new agents)
    against "step" (U[−ε_t/K, ε_t/K], what a recorded config without the setting was trained with).
    One inner step of 0.1·ε_t: from "step" ŝ stays within two steps of s; from "ball" it spreads."""
    core, mb = setup
    eps = at_eps(core, 1.0)
    assert make_objective("arppo").pgd_start == make_objective("arppo-noguide").pgd_start == "ball"
    assert ARPPO(kappa=0.3, inner_steps=10, step_scale=1.0).pgd_start == "step"  # a config from before
    moved = {}
    for start in ("ball", "step"):
        obj = make_objective("arppo", inner_steps=1, step_scale=0.1, pgd_start=start)
        ŝ = obj.adversarial_states(core, mb, eps)
        assert float((ŝ - mb.obs).abs().max()) <= eps + 1e-6
        moved[start] = (ŝ - mb.obs).abs() / eps
    assert float(moved["step"].max()) <= 0.2 + 1e-5
    assert float((moved["ball"] > 0.5).float().mean()) > 0.3
    with pytest.raises(RobbenchError, match="pgd_start"):
        make_objective("arppo", pgd_start="corner")
    assert "pgd_start" not in make_objective("barppo").config()  # BAR-PPO's SGLD solver has no such start


def test_zero_eps_leaves_states_clean_and_step_scale_is_used(setup):
    core, mb = setup
    obj = make_objective("barppo")
    assert torch.equal(obj.adversarial_states(core, mb, 0.0), mb.obs)
    assert make_objective("barppo", inner_steps=20, step_scale=3.0).step_size(0.1) == pytest.approx(0.015)


# ------------------------------------------------------------------------------ outer gradients
@pytest.mark.parametrize("method", ["sappo", "barppo", "arppo", "barppo-noguide"])
def test_gradients_flow_only_through_the_outer_term(setup, method):
    """∇θ of extra_loss equals ∇θ of the outer formula with ŝ (and μ(s) for SA-PPO) constants."""
    core, mb = setup
    eps = at_eps(core, 1.0)
    obj = make_objective(method)
    params = list(core.policy.parameters())
    state = core.gen.get_state()
    got = torch.autograd.grad(obj.extra_loss(core, mb), params, allow_unused=True)
    assert all(p.grad is None for p in params)  # the inner solver never touched .grad
    core.gen.set_state(state)  # replay the same inner randomness → the same ŝ
    if method == "sappo":
        target = _robust.clean_mean(core, mb.obs)
        perturbed = _robust.sgld_max_divergence(core, mb.obs, eps, obj.inner_steps, obj.step_size(eps), target)
        expected = obj.robust_weight * ((core.policy(perturbed) - target) / core.policy.std).pow(2).sum(-1).mean()
    else:
        perturbed = obj.adversarial_states(core, mb, eps)
        surr, ent = ppo_terms(core, mb, perturbed.detach())
        expected = obj.robust_weight * (surr + ent)
    assert not torch.equal(perturbed, mb.obs)
    want = torch.autograd.grad(expected, params, allow_unused=True)
    for g, w in zip(got, want):
        assert (g is None) == (w is None)
        if g is not None:
            assert torch.allclose(g, w, rtol=1e-5, atol=1e-8)
    assert any(g is not None and float(g.abs().max()) > 0 for g in got)


# ------------------------------------------------------------------------------ end to end
def test_checkpoint_records_kappa_and_solver_settings(tmp_path):
    with ResultsStore(tmp_path / "home") as store:
        record, trained = train_agent(store, "barppo", "hopper", preset="smoke", num_envs=4,
                                      trainer_params={"kappa": 1.0, "inner_steps": 5})
        assert trained
        agent = store.load_agent(record.agent_id)
    assert agent.meta["method"] == "barppo" and record.agent_id == "hopper/barppo/smoke/0"
    assert agent.meta["config"]["trainer"] == {"kappa": 1.0, "inner_steps": 5, "step_scale": 1.0}


def test_cli_trains_every_method_at_the_smoke_preset(tmp_path):
    runner = CliRunner()
    home = str(tmp_path / "home")
    for method in METHODS:
        extra = ["--kappa", "0.1"] if method == "arppo" else []
        result = runner.invoke(app, ["train", method, "hopper", "--preset", "smoke", "--num-envs", "4",
                                     "--home", home, *extra])
        assert result.exit_code == 0, result.output
    with ResultsStore(home) as store:
        meta = {a.method: store.load_agent(a.agent_id).meta["config"]["trainer"] for a in store.agents()}
    assert set(meta) == set(METHODS)
    assert meta["sappo"]["kappa"] == 1.0 and meta["barppo"]["kappa"] == 0.3 and meta["arppo"]["kappa"] == 0.1
    assert "kappa" not in meta["barppo-noguide"] and meta["arppo-noguide"]["inner_steps"] == 10
    bad = runner.invoke(app, ["train", "barppo-noguide", "hopper", "--kappa", "1", "--home", home])
    assert bad.exit_code == 2 and "has no setting 'kappa'" in bad.output
