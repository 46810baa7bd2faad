"""Certification (robbench/certify.py, `robbench certify`): soundness first, then the statistics.

Soundness is checked here independently of certify's own self-check: a test-side PGD (with a
decaying step, not robbench.pgd) maximises and minimises every μ_i inside the ball, plus uniform
and corner samples; no value may leave [lb, ub]. The self-check is shown to fire on a bound that is
too tight, and to be strong enough to reach the exact bound of an affine network.
"""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from robbench import certify as cert
from robbench import lirpa_compat as lc
from robbench.cli import app
from robbench.policy import GaussianPolicy
from robbench.store import ResultsStore

OBS, ACT = 11, 3
TOL = 1e-5
SMOKE = "hopper/ppo/smoke/0"
N_STATES = 200  # smoke-agent certificates (the CLI default is 1000)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def random_policy(hidden: tuple[int, ...], seed: int, weight_scale: float) -> GaussianPolicy:
    """A robbench policy whose mean net gets U(±scale/√fan_in) weights and biases."""
    g = torch.Generator().manual_seed(seed)
    policy = GaussianPolicy(OBS, ACT, hidden, initial_std=0.3)
    with torch.no_grad():
        for layer in policy.mean_net:
            if isinstance(layer, nn.Linear):
                bound = weight_scale / np.sqrt(layer.in_features)
                layer.weight.copy_((torch.rand(layer.weight.shape, generator=g) * 2 - 1) * bound)
                layer.bias.copy_((torch.rand(layer.bias.shape, generator=g) * 2 - 1) * bound)
        policy.log_std.copy_(torch.tensor([-1.0, -2.0, 0.0]))
    return policy


RANDOM = {
    "small": dict(hidden=(64, 64), seed=0, weight_scale=1.0),
    # large weights: many hidden tanh units saturated at the centre, IBP close to vacuous
    "saturated": dict(hidden=(128, 128, 128), seed=1, weight_scale=4.0),
}


def states(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, OBS, generator=torch.Generator().manual_seed(seed))


def pgd_extremes(net: nn.Module, x: torch.Tensor, eps: float, steps: int = 40, restarts: int = 2,
                 seed: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row and output: max and min of μ_i found by PGD in the ball (step ε/4 then ε/16)."""
    g = torch.Generator().manual_seed(seed)
    B, act = x.shape[0], net(x[:1]).shape[1]
    xr = x.repeat_interleave(act * 2 * restarts, 0)
    j = torch.arange(act).repeat_interleave(2 * restarts).repeat(B)
    sgn = torch.tensor([1.0, -1.0]).repeat_interleave(restarts).repeat(B * act)
    delta = (torch.rand(xr.shape, generator=g) * 2 - 1) * eps
    for t in range(steps):
        delta.requires_grad_(True)
        out = net(xr + delta).gather(1, j[:, None]).squeeze(1)
        (grad,) = torch.autograd.grad((sgn * out).sum(), delta)
        step = eps / 4 if t < steps // 2 else eps / 16
        delta = (delta.detach() + step * grad.sign()).clamp(-eps, eps)
    with torch.no_grad():
        val = net(xr + delta).gather(1, j[:, None]).squeeze(1).view(B, act, 2, restarts)
    return val[:, :, 0].max(-1).values, val[:, :, 1].min(-1).values


def ball_values(net: nn.Module, x: torch.Tensor, eps: float, n: int, seed: int) -> torch.Tensor:
    """μ at n uniform points and n corners of each row's ball: [B, 2n, act]."""
    g = torch.Generator().manual_seed(seed)
    B, d = x.shape
    u = (torch.rand(B, n, d, generator=g) * 2 - 1) * eps
    c = (torch.randint(0, 2, (B, n, d), generator=g) * 2 - 1).float() * eps
    with torch.no_grad():
        return net((x[:, None, :] + torch.cat([u, c], 1)).reshape(-1, d)).view(B, 2 * n, -1)


def assert_inside(lb, ub, vals, what):
    out = (vals < lb - TOL - TOL * lb.abs()) | (vals > ub + TOL + TOL * ub.abs())
    assert not out.any(), f"{what}: {int(out.sum())} values outside the certified bounds"


def assert_sound(net, x, eps, certs, label):
    fmax, fmin = pgd_extremes(net, x, eps)
    vals = ball_values(net, x, eps, 64, seed=3)
    for method, c in certs.items():
        assert_inside(c.lb, c.ub, fmax, f"{label}/{method} PGD max")
        assert_inside(c.lb, c.ub, fmin, f"{label}/{method} PGD min")
        assert_inside(c.lb[:, None], c.ub[:, None], vals, f"{label}/{method} uniform+corners")
        # the certified deviation bounds the deviation every attack found
        with torch.no_grad():
            mu = net(x)
        found = torch.maximum((fmax - mu).abs(), (fmin - mu).abs()).max(1).values
        assert (found <= c.u.max(1).values + 1e-4).all(), f"{label}/{method}: deviation above certificate"
    # the test-side attack is meaningful: it beats sampling
    assert (fmax >= vals.max(1).values - 1e-4).float().mean() > 0.9


def report_crown_vs_ibp(label, certs, capsys):
    parts = [f"{m} mean dev {c.stats['mean_dev']:.4g}" for m, c in certs.items()]
    looser = {m: c.vs_ibp["looser_states"] for m, c in certs.items() if c.vs_ibp}
    with capsys.disabled():
        print(f"\n[certify {label}] " + ", ".join(parts) + f"; states where looser than IBP: {looser}", end="")


# ------------------------------------------------------------------------------ random networks
@pytest.mark.parametrize("name", list(RANDOM))
@pytest.mark.parametrize("eps", [0.075, 0.3])
def test_random_policies_sound(name, eps, capsys):
    policy = random_policy(**RANDOM[name])
    x = states(48, 1)
    certs, probe, _ = cert.certify_policy(policy.mean_net, policy.std, x, eps)
    assert list(certs) == list(lc.METHODS)
    assert probe.points == 48 * (1 + 16) + 48 * ACT * 2 * 2 + 48 * 2
    assert_sound(policy.mean_net, x, eps, certs, f"{name} eps={eps}")
    # direct recomputation of the statistics from the bounds
    mu = policy.mean_net(x).detach()
    bm = lc.bounded_module(policy.mean_net, x[:1])
    for method, c in certs.items():
        lb, ub = lc.bounds(bm, x, eps, method)
        torch.testing.assert_close(c.lb, lb.detach())
        u = np.maximum(np.abs(lb.detach().numpy() - mu.numpy()), np.abs(ub.detach().numpy() - mu.numpy()))
        dev = u.max(1)
        s = (u ** 2 / policy.std.detach().numpy() ** 2).sum(1)
        assert c.stats["mean_dev"] == pytest.approx(dev.mean(), rel=1e-5)
        assert c.stats["max_dev"] == pytest.approx(dev.max(), rel=1e-5)
        assert c.stats["mean_sum_u2_sigma2"] == pytest.approx(s.mean(), rel=1e-4)
        assert c.stats["max_sum_u2_sigma2"] == pytest.approx(s.max(), rel=1e-4)
        assert c.stats["frac_below"] == pytest.approx((dev <= cert.DEFAULT_THRESHOLD).mean())
    # the CROWN-vs-IBP comparison counts what it says it counts
    iu = certs["ibp"].u.max(1).values
    for method in ("crown-ibp", "crown"):
        looser = int((certs[method].u.max(1).values > iu + cert.ABS_TOL).sum())
        assert certs[method].vs_ibp["looser_states"] == looser
    if name == "small":  # moderate weights: CROWN is the tightest, per state
        assert certs["crown"].vs_ibp["looser_states"] == 0
    report_crown_vs_ibp(f"{name} eps={eps}", certs, capsys)


def test_self_check_rejects_an_unsound_bound(monkeypatch):
    """Bounds shrunk towards μ(s) are unsound; certify must refuse them, naming the method."""
    policy = random_policy(**RANDOM["small"])
    x = states(16, 2)
    real = lc.bounds

    def too_tight(bmodel, xs, eps, method):
        lb, ub = real(bmodel, xs, eps, method)
        if method != "crown":
            return lb, ub
        mid = (lb + ub) / 2
        return mid - 0.2 * (ub - lb) / 2, mid + 0.2 * (ub - lb) / 2

    monkeypatch.setattr(lc, "bounds", too_tight)
    with pytest.raises(cert.UnsoundBoundError, match="crown bound .* is unsound"):
        cert.certify_policy(policy.mean_net, policy.std, x, 0.1)
    # IBP and CROWN-IBP alone are still fine
    certs, _, _ = cert.certify_policy(policy.mean_net, policy.std, x, 0.1, methods=["ibp", "crown-ibp"])
    assert set(certs) == {"ibp", "crown-ibp"}


def test_self_check_reaches_the_exact_bound_of_an_affine_net():
    """On an affine map CROWN is exact and attained at a corner: the probe must get there."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(OBS, 16), nn.Linear(16, ACT))
    x = states(20, 4)
    certs, probe, _ = cert.certify_policy(net, torch.full((ACT,), 0.5), x, 0.1, methods=["crown"])
    assert -1e-4 < certs["crown"].worst_margin <= 1e-5
    W = (net[1].weight @ net[0].weight).detach()
    exact = (0.1 * W.abs().sum(1)).max()
    assert float(probe.attack_dev.max()) == pytest.approx(float(exact), rel=1e-4)


def test_eps_zero_gives_zero_deviation():
    policy = random_policy(**RANDOM["saturated"])
    certs, _, _ = cert.certify_policy(policy.mean_net, policy.std, states(32, 6), 0.0)
    for method, c in certs.items():
        assert c.stats["max_dev"] <= 1e-5, method
        assert c.stats["max_sum_u2_sigma2"] <= 1e-8, method
        assert c.stats["frac_below"] == 1.0


def test_bad_arguments():
    policy = random_policy(**RANDOM["small"])
    with pytest.raises(cert.RobbenchError, match="unknown bound method 'alpha-crown'"):
        cert.certify_policy(policy.mean_net, policy.std, states(4, 0), 0.1, methods=["alpha-crown"])
    with pytest.raises(cert.RobbenchError, match="ε must be a finite number ≥ 0"):
        cert.certify_policy(policy.mean_net, policy.std, states(4, 0), -0.1)
    assert cert.parse_methods("all") == list(lc.METHODS)
    assert cert.parse_methods("crown, ibp") == ["ibp", "crown"]


# ---------------------------------------------------------------------------- the trained agent
@pytest.fixture()
def home(smoke_home, tmp_path):
    """A private copy of the smoke home (the session home is shared with other tests)."""
    dst = tmp_path / "home"
    shutil.copytree(smoke_home, dst)
    return dst


def test_states_come_from_natural_rollouts(smoke_agent):
    a = cert.collect_states(smoke_agent, 50)
    b = cert.collect_states(smoke_agent, 50)
    c = cert.collect_states(smoke_agent, 50, sample_seed=1)
    assert torch.equal(a.states, b.states) and not torch.equal(a.states, c.states)
    assert a.states.shape == (50, OBS) and a.states.dtype == torch.float32
    assert a.visited >= 50 and a.episodes >= cert.ROLLOUT_EPISODES
    # the first state of the episode with seed base_seed is the normalised reset observation
    from robbench.envs import EnvBatch

    envs = EnvBatch("hopper", 1)
    first = torch.from_numpy(smoke_agent.normalize(envs.reset_one(0, seed=a.base_seed)[None])).float()
    envs.close()
    every = cert.collect_states(smoke_agent, a.visited)  # all visited states
    assert (every.states - first).abs().amax(1).min() < 1e-6
    with pytest.raises(cert.RobbenchError, match="states must be an integer ≥ 1"):
        cert.collect_states(smoke_agent, 0)


def test_smoke_agent_sound_and_stored_stats_match_recomputation(home, capsys):
    with ResultsStore(home) as store:
        outcomes = cert.certify_agent(store, SMOKE, states=N_STATES)
        rows = {r["method"]: r for r in store.certificates()}
        agent = store.load_agent(SMOKE)
        record = store.get_agent(SMOKE)
    assert [o.computed for o in outcomes] == [True] * 3 and set(rows) == set(lc.METHODS)
    net, std = agent.policy.mean_net, agent.policy.std.detach()
    sample = cert.collect_states(agent, N_STATES)  # deterministic: the same states
    x = sample.states
    mu = net(x).detach().numpy()
    bm = lc.bounded_module(net, x[:1])
    certs = {}
    for method, row in rows.items():
        assert row["agent_sha256"] == record.sha256 and row["eps"] == 0.075 and row["states"] == N_STATES
        assert row["threshold"] == cert.DEFAULT_THRESHOLD
        assert row["info"]["state_sample"]["visited"] == sample.visited
        lb, ub = (t.detach() for t in lc.bounds(bm, x, 0.075, method))
        u = np.maximum(np.abs(lb.numpy() - mu), np.abs(ub.numpy() - mu))
        dev, s = u.max(1), (u ** 2 / std.numpy() ** 2).sum(1)
        assert row["mean_dev"] == pytest.approx(dev.mean(), rel=1e-5)
        assert row["max_dev"] == pytest.approx(dev.max(), rel=1e-5)
        assert row["mean_sum_u2_sigma2"] == pytest.approx(s.mean(), rel=1e-4)
        assert row["max_sum_u2_sigma2"] == pytest.approx(s.max(), rel=1e-4)
        assert row["frac_below"] == pytest.approx((dev <= 0.1).mean())
        assert row["seconds_per_1000"] > 0 and row["soundness_checked_points"] > N_STATES * 17
        assert row["info"]["worst_margin"] <= 1e-5
        assert row["info"]["attack_max_dev"] <= row["max_dev"] + 1e-5
        certs[method] = cert.MethodCertificate(method, lb, ub, torch.from_numpy(u), {}, 0, 0, 0)
    assert_sound(net, x[:64], 0.075, {m: cert.MethodCertificate(m, c.lb[:64], c.ub[:64], c.u[:64], {}, 0, 0, 0)
                                      for m, c in certs.items()}, "smoke agent")
    # CROWN vs IBP on the same states: reported, and on this small trained net never looser
    for method in ("crown-ibp", "crown"):
        vs = rows[method]["info"]["vs_ibp"]
        with capsys.disabled():
            print(f"\n[certify smoke agent] {method}: mean dev {rows[method]['mean_dev']:.4g} vs IBP "
                  f"{rows['ibp']['mean_dev']:.4g}; looser than IBP on {vs['looser_states']} states", end="")
    assert rows["crown"]["info"]["vs_ibp"]["looser_states"] == 0
    assert rows["crown"]["mean_dev"] <= rows["crown-ibp"]["mean_dev"] <= rows["ibp"]["mean_dev"]


def test_eps_zero_on_the_agent_and_rerun_is_a_noop(home, monkeypatch):
    with ResultsStore(home) as store:
        first = cert.certify_agent(store, SMOKE, methods=["crown"], eps=0.0, states=50)
        assert first[0].row["max_dev"] <= 1e-5 and first[0].row["frac_below"] == 1.0

        def boom(*a, **k):
            raise AssertionError("certify_policy called for a stored certificate")

        monkeypatch.setattr(cert, "certify_policy", boom)
        again = cert.certify_agent(store, SMOKE, methods=["crown"], eps=0.0, states=50)
        assert not again[0].computed and again[0].row["max_dev"] == first[0].row["max_dev"]
        with pytest.raises(AssertionError, match="stored certificate"):
            cert.certify_agent(store, SMOKE, methods=["crown"], eps=0.0, states=50, force=True)


def test_unsound_bound_is_never_stored(home, monkeypatch):
    real = lc.bounds
    monkeypatch.setattr(lc, "bounds", lambda bm, x, eps, m: tuple(t * 0 for t in real(bm, x, eps, m)))
    with ResultsStore(home) as store:
        with pytest.raises(cert.UnsoundBoundError, match="nothing was stored"):
            cert.certify_agent(store, SMOKE, states=50)
        assert store.certificates() == []


# ---------------------------------------------------------------------------------------- store
def test_store_certificates_replace_on_same_key(tmp_path):
    row = {"agent_id": "a/b/c/0", "agent_sha256": "x", "method": "ibp", "eps": 0.075, "states": 10,
           "threshold": 0.1, "mean_dev": 1.0, "max_dev": 2.0, "mean_sum_u2_sigma2": 3.0,
           "max_sum_u2_sigma2": 4.0, "frac_below": 0.5, "seconds_per_1000": 0.1,
           "soundness_checked_points": 7, "info": {"k": [1]}}
    with ResultsStore(tmp_path) as store:
        store.write_certificate(row)
        store.write_certificate({**row, "mean_dev": 1.5})
        store.write_certificate({**row, "method": "crown"})
        rows = store.certificates()
        assert [(r["method"], r["mean_dev"]) for r in rows] == [("crown", 1.0), ("ibp", 1.5)]
        assert rows[0]["info"] == {"k": [1]} and rows[0]["created"]
        with pytest.raises(ValueError, match="lacks fields"):
            store.write_certificate({k: v for k, v in row.items() if k != "frac_below"})
    with pytest.raises(sqlite3.IntegrityError):  # the key is enforced by the schema itself
        conn = sqlite3.connect(tmp_path / "results.sqlite")
        conn.execute("INSERT INTO certificates SELECT * FROM certificates")


# ------------------------------------------------------------------------------------------ CLI
runner = CliRunner()


@pytest.mark.parametrize("args, message", [
    (["--method", "alpha"], "unknown bound method 'alpha'; valid choices: all, crown, crown-ibp, ibp"),
    (["--eps", "-0.1"], "--eps must be a finite number ≥ 0, got -0.1"),
    (["--eps", "nan"], "--eps must be a finite number ≥ 0"),
    (["--states", "0"], "--states must be an integer ≥ 1, got 0"),
    (["--states", "-3"], "--states must be an integer ≥ 1, got -3"),
    (["--threshold", "-1"], "--threshold must be a finite number ≥ 0"),
    (["--agents", "hopper/nope/paper/0"], "unknown agent 'hopper/nope/paper/0'"),
])
def test_cli_bad_input_is_one_line(args, message, smoke_home):
    result = runner.invoke(app, ["certify", *args, "--home", str(smoke_home)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output


def test_cli_writes_rows_and_rerun_is_noop_unless_forced(home):
    def rowids():
        conn = sqlite3.connect(home / "results.sqlite")
        try:
            return conn.execute("SELECT method, rowid FROM certificates ORDER BY method").fetchall()
        finally:
            conn.close()

    args = ["certify", "--agents", SMOKE, "--method", "ibp,crown", "--states", "60", "--home", str(home)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "crown" in result.output and "hopper/ppo/smoke/0" in result.output
    with ResultsStore(home) as store:
        rows = store.certificates()
    assert [(r["method"], r["states"], r["eps"]) for r in rows] == [("crown", 60, 0.075), ("ibp", 60, 0.075)]
    before = rowids()
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "2 of 2 rows were stored before and kept" in again.output
    assert rowids() == before
    forced = runner.invoke(app, [*args, "--force"])
    assert forced.exit_code == 0 and "kept" not in forced.output
    assert len(rowids()) == 2 and rowids() != before


def test_cli_threshold_default_matches_module():
    import inspect

    from robbench import cli

    default = inspect.signature(cli.certify).parameters["threshold"].default.default
    assert default == cert.DEFAULT_THRESHOLD
