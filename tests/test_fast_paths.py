"""Fast paths of the robust trainers against their slow reference paths (same maths, float rounding).

- robbench.fastbounds (training-time IBP / CROWN-IBP) against auto-LiRPA: bounds and gradients.
- robbench.pgd's in-place update against the out-of-place formula it replaced.
- the core's merged μ(s)/μ(ŝ) forward (`Objective.perturbed_states` → `mb.perturbed_mean`) against
  each objective's stand-alone `extra_loss`.
- robbench.fastpath (the trainers' hand-written inner gradients and WocaR's Q step) against
  autograd: gradients, solver outputs, and each trainer's loss with `fast_path` on and off.
"""

from __future__ import annotations

import math

import pytest
import torch

from robbench import fastpath
from robbench.fastbounds import FastMLPBounds, TanhTable
from robbench.lirpa_compat import bounded_module, bounds, mixed_ibp_crown_ibp
from robbench.pgd import sign_gradient_ascent
from robbench.policy import GaussianPolicy, UnsupportedNetwork, mlp

TOL = 2e-5


def rough_policy(seed: int, obs_dim: int = 11, act_dim: int = 3, hidden=(64, 64)) -> GaussianPolicy:
    """A policy with large weights and biases, so every tanh relaxation case occurs."""
    torch.manual_seed(seed)
    policy = GaussianPolicy(obs_dim, act_dim, hidden)
    with torch.no_grad():
        for m in policy.mean_net:
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(2.5)
                m.bias.normal_(0.0, 0.7)
    return policy


def close(a: torch.Tensor, b: torch.Tensor, tol: float = TOL) -> bool:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max()) <= tol * (1.0 + float(b.abs().max()))


@pytest.fixture(scope="module")
def nets():
    out = []
    for seed, hidden in ((0, (64, 64)), (2, (16, 16, 16))):
        policy = rough_policy(seed, hidden=hidden)
        bm = bounded_module(policy.mean_net, torch.zeros(1, 11))
        out.append((policy, bm, FastMLPBounds(policy.mean_net, TanhTable.from_bounded_module(bm))))
    return out


@pytest.mark.parametrize("eps", [0.0, 0.075, 0.4, 2.0])
def test_fast_bounds_match_auto_lirpa(nets, eps):
    x = torch.randn(32, 11, generator=torch.Generator().manual_seed(3))
    for policy, bm, fast in nets:
        params = list(policy.mean_net.parameters())
        cases = [("ibp", bounds(bm, x, eps, "ibp"), fast.ibp(x, eps)),
                 ("crown-ibp", bounds(bm, x, eps, "crown-ibp"), fast.crown_ibp(x, eps))]
        cases += [("beta=0.3", mixed_ibp_crown_ibp(bm, x, eps, 0.3), fast.mixed(x, eps, 0.3))]
        for name, ref, got in cases:
            for r, g in zip(ref, got):
                assert close(g, r), f"{name} eps={eps}: {float((g - r).abs().max())}"
            # gradients into the network's parameters (a generic downstream loss)
            loss_ref = (ref[1] - ref[0]).pow(2).sum() + ref[0].sin().sum()
            loss_got = (got[1] - got[0]).pow(2).sum() + got[0].sin().sum()
            for gr, gg in zip(torch.autograd.grad(loss_ref, params), torch.autograd.grad(loss_got, params)):
                assert close(gg, gr, 1e-4), f"{name} eps={eps} gradient"


def test_fast_bounds_per_row_and_per_feature_eps(nets):
    policy, bm, fast = nets[0]
    x = torch.randn(16, 11)
    rows = torch.linspace(0.0, 0.3, 16)
    feats = torch.linspace(0.01, 0.2, 11).unsqueeze(0)  # per-feature: (1, d)
    for eps in (rows, feats):
        for method, fn in (("ibp", fast.ibp), ("crown-ibp", fast.crown_ibp)):
            for r, g in zip(bounds(bm, x, eps, method), fn(x, eps)):
                assert close(g, r)


def test_fast_bounds_follow_weight_updates_and_reject_other_modules(nets):
    policy, bm, fast = nets[0]
    x = torch.randn(8, 11)
    with torch.no_grad():
        policy.mean_net[0].bias.add_(0.3)
    try:
        for r, g in zip(bounds(bm, x, 0.1, "crown-ibp"), fast.crown_ibp(x, 0.1)):
            assert close(g, r)
    finally:
        with torch.no_grad():
            policy.mean_net[0].bias.sub_(0.3)
    with pytest.raises(TypeError):
        FastMLPBounds(torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1)))


def test_policy_mean_bounds_fast_equals_reference():
    from robbench.agents._bounds import PolicyMeanBounds

    policy = rough_policy(4)
    pmb = PolicyMeanBounds(policy)
    x = torch.randn(20, 11)
    for got, ref in ((pmb.ibp(x, 0.1), pmb.reference_ibp(x, 0.1)),
                     (pmb.mixed(x, 0.1, 0.4), pmb.reference_mixed(x, 0.1, 0.4))):
        for g, r in zip(got, ref):
            assert close(g, r)


# ------------------------------------------------------------------------------------- pgd
def reference_sign_gradient_ascent(objective, clean, eps, gen, steps, step_size, start, noise, maximize):
    """robbench.pgd.sign_gradient_ascent as it was before the in-place update (autograd path)."""
    clean = clean.detach()
    step = step_size
    if start == "uniform":
        x = clean + (torch.rand(clean.shape, generator=gen) * 2 - 1) * step
    elif start == "corner":
        x = clean + (torch.randint(0, 2, clean.shape, generator=gen) * 2 - 1).to(clean.dtype) * step
    else:
        x = clean.clone()
    lo, hi = clean - eps, clean + eps
    x = torch.clamp(x, lo, hi)
    signed = step if maximize else -step
    for i in range(steps):
        x.requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(objective(x).sum(), x)
        x = x.detach()
        grad = torch.nan_to_num(grad, nan=0.0)
        if noise is not None:
            grad = grad + noise(i) * torch.randn(grad.shape, generator=gen)
        x = torch.clamp(x + signed * torch.sign(grad), lo, hi)
    return x


@pytest.mark.parametrize("start,noise,maximize,tensor_step", [
    ("uniform", None, False, False), ("corner", 0.05, True, False), ("clean", None, False, True),
])
def test_pgd_in_place_update_is_bitwise_the_old_one(start, noise, maximize, tensor_step):
    torch.manual_seed(0)
    net = mlp(5, 1, (16,), 1.0)
    clean = torch.randn(12, 5)
    eps = torch.rand(12, 5) * 0.2 + 0.01 if tensor_step else 0.1
    step = 2 * eps / 7 if tensor_step else eps / 7
    noise_fn = None if noise is None else (lambda i: noise / (i + 2))
    f = lambda x: net(x).squeeze(-1)  # noqa: E731
    got = sign_gradient_ascent(f, clean, eps, torch.Generator().manual_seed(5), steps=7, step_size=step,
                               start=start, noise=noise_fn, maximize=maximize)
    want = reference_sign_gradient_ascent(f, clean, eps, torch.Generator().manual_seed(5), 7, step, start,
                                          noise_fn, maximize)
    assert torch.equal(got, want)


# -------------------------------------------------------------------- merged core forward
@pytest.mark.parametrize("method", ["barppo", "arppo", "sappo", "wocar"])
def test_merged_forward_equals_standalone_extra_loss(method):
    """extra_loss with the core's μ(s), μ(ŝ) from one forward == extra_loss computing them itself."""
    from robbench.ppo import Minibatch, PPOCore
    from robbench.train import build_config

    cfg, objective = build_config(method, "hopper", seed=0, steps=2 * 2048, num_envs=4)
    core = PPOCore(cfg, objective)
    try:
        torch.manual_seed(1)
        n = 64
        obs = torch.randn(n, core.envs.obs_dim)
        actions = torch.randn(n, core.envs.act_dim)
        with torch.no_grad():
            log_probs = core.policy.log_prob(core.policy(obs), actions)
        adv = torch.randn(n)
        if method == "wocar":
            objective._worst_q = torch.randn(2048)
        core.minibatch_step = int(0.5 * cfg.iterations * cfg.epochs * cfg.minibatches)
        mb = lambda: Minibatch(obs=obs, actions=actions, log_probs=log_probs, advantages=adv,  # noqa: E731
                               returns=adv, values=adv, index=torch.arange(n))
        params = list(core.policy.parameters())
        state = core.gen.get_state()
        plain = mb()
        want = objective.extra_loss(core, plain)
        want_grad = torch.autograd.grad(want, params, allow_unused=True)

        core.gen.set_state(state)
        merged = mb()
        states = objective.perturbed_states(core, merged)
        assert states is not None and not states.requires_grad
        both = core.policy(torch.cat([obs, states]))
        merged.mean, merged.perturbed_mean = both[:n], both[n:]
        got = objective.extra_loss(core, merged)
        got_grad = torch.autograd.grad(got, params, allow_unused=True)
        assert math.isclose(float(got.detach()), float(want.detach()), rel_tol=1e-5, abs_tol=1e-7)
        for g, w in zip(got_grad, want_grad):
            assert (g is None) == (w is None)
            if g is not None:
                assert torch.allclose(g, w, rtol=1e-4, atol=1e-7)
    finally:
        core.envs.close()


def test_arppo_direction_shortcut_gives_the_same_perturbed_states():
    """AR-PPO's fast solver uses the surrogate head's `direction` (u without the positive factor r):
    the sign of each sample's gradient, hence ŝ, must equal the autograd solve on the policy."""
    from robbench.agents import _robust
    from robbench.ppo import Minibatch

    torch.manual_seed(0)
    policy = rough_policy(3)
    obs = torch.randn(64, 11)
    with torch.no_grad():
        mean = policy(obs)
        actions = mean + policy.std * torch.randn(64, 3)
        old_log_probs = _robust.gaussian_log_prob(mean + 0.3 * torch.randn(64, 3), policy.log_std, actions)
    adv = torch.randn(64)
    mb = Minibatch(obs, actions, old_log_probs, adv, torch.zeros(64), torch.zeros(64), torch.arange(64))
    log_std = policy.log_std.detach()

    def surrogate(x):
        ratio = torch.exp(_robust.gaussian_log_prob(policy(x), log_std, actions) - old_log_probs)
        return torch.min(ratio * adv, torch.clamp(ratio, 0.8, 1.2) * adv)

    args = dict(steps=10, step_size=0.01, start="uniform", maximize=False)
    fast = sign_gradient_ascent(surrogate, obs, 0.1, torch.Generator().manual_seed(1),
                                gradient=fastpath.surrogate_gradient(policy, mb, 0.2), **args)
    slow = sign_gradient_ascent(surrogate, obs, 0.1, torch.Generator().manual_seed(1), **args)
    assert torch.equal(fast, slow)
    assert float((fast - obs).abs().max()) > 0.05  # the solve moved


def test_sgld_fast_path_gives_the_autograd_states():
    """SA-PPO's / BAR-PPO's SGLD ŝ with the hand gradient (and the fast path's own μ(s)) equals the
    autograd solve on the policy, with the same generator."""
    from robbench.agents import _robust
    from robbench.ppo import PPOCore
    from robbench.train import build_config

    cfg, objective = build_config("sappo", "hopper", seed=0, steps=2048, num_envs=1)
    core = PPOCore(cfg, objective)
    try:
        batch = core.collect()
        obs = batch.obs[:64]
        with torch.no_grad():  # a policy whose mean depends strongly on s
            for p in core.policy.mean_net.parameters():
                p.mul_(3.0)
        got = {}
        for fast in (True, False):
            core.gen.manual_seed(7)
            got[fast] = _robust.sgld_max_divergence(core, obs, cfg.eps, 10, cfg.eps / 10, fast=fast)
        assert torch.equal(got[True], got[False])
        assert float((got[True] - obs).abs().max()) > 0.5 * cfg.eps
    finally:
        core.envs.close()


@pytest.mark.parametrize("method", ["sappo", "barppo", "arppo", "wocar"])
def test_trainer_loss_is_the_same_with_and_without_its_fast_path(method):
    """`Objective.fast_path` changes how gradients are computed, never what the trainer optimises:
    one minibatch's extra loss and its policy gradients agree to float tolerance, and so does
    WocaR's TD loss on one batch (its a* search and Q step run with and without the fast path)."""
    from robbench.ppo import Minibatch, PPOCore
    from robbench.train import build_config

    cfg, objective = build_config(method, "hopper", seed=0, steps=2 * 2048, num_envs=4)
    core = PPOCore(cfg, objective)
    try:
        batch = core.collect()
        core.minibatch_step = int(0.5 * cfg.iterations * cfg.epochs * cfg.minibatches)
        start = (core.gen.get_state(), {k: v.clone() for k, v in getattr(objective, "q", torch.nn.Linear(1, 1))
                                        .state_dict().items()})
        idx = torch.arange(64)
        adv = batch.advantages[idx]
        mb = Minibatch(batch.obs[idx], batch.actions[idx], batch.log_probs[idx], (adv - adv.mean()) / adv.std(),
                       batch.returns[idx], batch.values[idx], idx)
        params = list(core.policy.parameters())
        results = {}
        for fast in (True, False):
            objective.fast_path = fast
            core.gen.set_state(start[0])
            if method == "wocar":
                objective.q.load_state_dict(start[1])
                objective.q_target.load_state_dict(start[1])
                objective.q_epochs, objective.q_minibatches = 1, 1  # one Q step: its loss is before any update
                objective.prepare_batch(core, batch)
            loss = objective.extra_loss(core, Minibatch(**{f: getattr(mb, f) for f in
                                                           ("obs", "actions", "log_probs", "advantages",
                                                            "returns", "values", "index")}))
            q_loss = objective.last_q_loss if method == "wocar" else 0.0
            results[fast] = (loss.detach(), torch.autograd.grad(loss, params, allow_unused=True), q_loss)
        (lf, gf, qf), (ls, gs, qs) = results[True], results[False]
        assert math.isclose(float(lf), float(ls), rel_tol=1e-5, abs_tol=1e-7)
        for a, b in zip(gf, gs):
            assert (a is None) == (b is None)
            if a is not None:
                assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
        assert math.isclose(qf, qs, rel_tol=1e-5)  # WocaR's TD loss (a* searched with or without it)
    finally:
        core.envs.close()


def test_wocar_worst_action_hand_gradient_equals_autograd():
    """WocaR's a* search differentiates Q_w by hand (sigmoid-form backward); same a* as autograd."""
    from robbench.agents.wocar import worst_action

    torch.manual_seed(0)
    q = mlp(14, 1, (64, 64), out_gain=1.0)
    s = torch.randn(512, 11)
    lo = torch.randn(512, 3) * 0.3 - 0.5
    hi = lo + 0.4
    fast = worst_action(q, s, lo, hi, torch.Generator().manual_seed(0), fast=True)
    slow = worst_action(q, s, lo, hi, torch.Generator().manual_seed(0), fast=False)
    assert torch.equal(fast, slow)
    centre = (hi + lo) / 2
    with torch.no_grad():
        assert float(q(torch.cat([s, fast], -1)).mean()) < float(q(torch.cat([s, centre], -1)).mean())


def test_wocar_hand_td_gradients_equal_autograd():
    """WocaR's fast Q step writes its gradients by hand; they must equal autograd's on `td_loss`."""
    from robbench.agents.wocar import td_loss

    torch.manual_seed(0)
    q, q_target = mlp(14, 1, (64, 64), out_gain=1.0), mlp(14, 1, (64, 64), out_gain=1.0)
    sa, next_sa = torch.randn(64, 14), torch.randn(64, 14)
    rewards, not_done = torch.randn(64), (torch.rand(64) > 0.1).float()
    loss = fastpath.td_step_gradients(q, q_target, sa, next_sa, rewards, not_done, 0.99)
    hand = [p.grad.clone() for p in q.parameters()]
    q.zero_grad()
    ref = td_loss(q, q_target, sa, next_sa, rewards, not_done, 0.99)
    ref.backward()
    assert torch.allclose(loss, ref.detach(), rtol=1e-6)
    for h, p in zip(hand, q.parameters()):
        assert h.shape == p.grad.shape and torch.allclose(h, p.grad, rtol=1e-5, atol=1e-7)
    assert all(float(p.grad.abs().max()) > 0 for p in q.parameters())


def test_fast_paths_take_only_the_tanh_mlp():
    """One structure check (robbench.policy.linear_tanh_layers) guards fastbounds and fastpath alike."""
    relu = mlp(5, 2, (8,), 1.0, activation="relu")
    for build in (fastpath.SigmoidMLP, FastMLPBounds):
        with pytest.raises(UnsupportedNetwork, match="ReLU"):
            build(relu)
    net = mlp(5, 2, (8, 8, 8), 1.0)
    x = torch.randn(6, 5)
    with torch.no_grad():
        assert close(fastpath.SigmoidMLP(net).mean(x), net(x), 1e-5)  # the sigmoid form is the same function
