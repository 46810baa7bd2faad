"""Tests for robbench.lirpa_compat: auto-LiRPA 0.3 patched for current torch/numpy.

Soundness is checked empirically: no point of the ℓ∞ ball (uniform samples, corners, PGD maxima
and minima of each output) may fall outside [lb, ub]. Tightness is checked on a linear model
(where every method is exact) and against a hand-written IBP, so a bound that is too loose
(e.g. a mis-scaled eps) fails as well as one that is unsound.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

from robbench import lirpa_compat as lc

OBS, ACT = 11, 3
TOL = 1e-5  # float32 slack for "lb <= f <= ub"


def _tol(v: torch.Tensor) -> torch.Tensor:
    return TOL + 1e-5 * v.abs()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Small-tensor work: intra-op threads only add OpenMP contention on a shared 2-core box
    (measured: 52 s with 2 threads under load vs 3.5 s with 1)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tanh_mlp(sizes: list[int], seed: int, weight_scale: float = 1.0) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        with torch.no_grad():
            bound = weight_scale / np.sqrt(a)
            lin.weight.copy_((torch.rand(b, a, generator=g) * 2 - 1) * bound)
            lin.bias.copy_((torch.rand(b, generator=g) * 2 - 1) * bound)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


MODELS = {
    # the SA-PPO / robbench policy shape
    "small": dict(sizes=[OBS, 64, 64, ACT], seed=0, weight_scale=1.0),
    # deeper and wider, with large weights: a quarter to 40% of the hidden tanh units are
    # saturated (|z| > 2) at the centre, and IBP is vacuous (equal to the trivial bound) here
    "deep_saturated": dict(sizes=[OBS, 128, 128, 128, ACT], seed=1, weight_scale=4.0),
}


@pytest.fixture(scope="module", params=list(MODELS))
def model_and_bmodel(request):
    model = tanh_mlp(**MODELS[request.param])
    x0 = torch.zeros(1, OBS)
    return request.param, model, lc.bounded_module(model, x0)


def _states(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, OBS, generator=g)


def pgd_extremes(model: nn.Module, x: torch.Tensor, eps: torch.Tensor, steps: int = 40,
                 restarts: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row and output j: the max and min of f_j found by signed-gradient PGD in the ball.

    Returns (fmax, fmin) of shape [B, ACT]. eps has shape [B, 1].
    """
    g = torch.Generator().manual_seed(seed)
    B = x.shape[0]
    # one attack row per (state, output, direction, restart)
    xr = x.repeat_interleave(ACT * 2 * restarts, 0)
    er = eps.repeat_interleave(ACT * 2 * restarts, 0)
    j = torch.arange(ACT).repeat_interleave(2 * restarts).repeat(B)
    sgn = torch.tensor([1.0, -1.0]).repeat_interleave(restarts).repeat(B * ACT)
    delta = (torch.rand(xr.shape, generator=g) * 2 - 1) * er
    step = er / 4
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for t in range(steps):
            delta.requires_grad_(True)
            out = model(xr + delta).gather(1, j[:, None]).squeeze(1)
            (grad,) = torch.autograd.grad((sgn * out).sum(), delta)
            s = step if t < steps // 2 else step / 4
            delta = torch.max(torch.min(delta.detach() + s * grad.sign(), er), -er)
        with torch.no_grad():
            val = model(xr + delta).gather(1, j[:, None]).squeeze(1)
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    assert float((delta.abs() - er).max()) <= 1e-6  # the attack stayed in the ball
    val = val.view(B, ACT, 2, restarts)
    return val[:, :, 0].max(-1).values, val[:, :, 1].min(-1).values


def ball_samples(x: torch.Tensor, eps: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n uniform points and n corners of each row's ball: [B, 2n, OBS]."""
    g = torch.Generator().manual_seed(seed)
    B = x.shape[0]
    u = (torch.rand(B, n, OBS, generator=g) * 2 - 1) * eps[:, :, None]
    c = (torch.randint(0, 2, (B, n, OBS), generator=g) * 2 - 1).float() * eps[:, :, None]
    return x[:, None, :] + torch.cat([u, c], 1)


def assert_contains(lb, ub, vals, what):
    bad_lo = vals < lb - _tol(lb)
    bad_hi = vals > ub + _tol(ub)
    n_bad = int(bad_lo.sum() + bad_hi.sum())
    assert n_bad == 0, (
        f"{what}: {n_bad} values outside the certified bounds; worst violation "
        f"{float(torch.max((lb - vals).max(), (vals - ub).max())):.3g}"
    )


# ------------------------------------------------------------------------------------------
# import and patches
# ------------------------------------------------------------------------------------------


def test_import_and_patches_in_place():
    lirpa = lc.import_auto_lirpa()
    assert hasattr(lirpa, "BoundedModule") and hasattr(lirpa, "PerturbationLpNorm")
    assert lc.import_auto_lirpa() is lirpa

    # (1) numpy.lib.arraysetops with isin
    mod = sys.modules["numpy.lib.arraysetops"]
    assert mod.isin(np.array([1, 2, 3]), [2]).tolist() == [False, True, False]
    # (2) _set_opset_version drives the exporter's GLOBALS
    import torch.onnx.symbolic_helper as sh

    globals_ = lc._onnx_globals()
    old = globals_.export_onnx_opset_version
    try:
        sh._set_opset_version(13)
        assert globals_.export_onnx_opset_version == 13
    finally:
        sh._set_opset_version(old)
    # (3) torch._C.Node.__getitem__ dispatching on kindOf: attributes of a traced ONNX graph
    from torch.onnx.utils import _optimize_graph

    trace, _ = torch.jit._get_trace_graph(nn.Linear(3, 2), (torch.zeros(1, 3),))
    sh._set_opset_version(12)
    graph = _optimize_graph(trace, torch.onnx.OperatorExportTypes.ONNX_ATEN_FALLBACK, params_dict={})
    seen = {}
    for node in graph.nodes():
        for name in node.attributeNames():
            seen[(node.kind(), name)] = (node.kindOf(name), node[name])
    assert seen, "the traced Linear has no attributes to read"
    for (kind, name), (k, v) in seen.items():
        if k == "i":
            assert isinstance(v, int)
        elif k == "f":
            assert isinstance(v, float)
        elif k == "t":
            assert isinstance(v, torch.Tensor)
    # (4) torch._six.string_classes; (5) BoundedModule.parameters() works
    assert isinstance("x", sys.modules["torch._six"].string_classes)
    bm = lc.bounded_module(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)), torch.zeros(1, 3))
    assert len(list(bm.parameters())) == 4

    applied = lc.applied_patches()
    if torch.__version__.startswith("2."):
        for name in ("numpy.lib.arraysetops", "torch.onnx.symbolic_helper._set_opset_version",
                     "torch._C.Node.__getitem__", "torch._six"):
            assert name in applied


def test_patches_idempotent():
    lc.import_auto_lirpa()
    before = lc.applied_patches()
    getitem = torch._C.Node.__getitem__
    arraysetops = sys.modules["numpy.lib.arraysetops"]
    assert lc.apply_patches() == before
    lc._patch_bounded_module(lc.import_auto_lirpa())
    assert lc.applied_patches() == before
    assert torch._C.Node.__getitem__ is getitem
    assert sys.modules["numpy.lib.arraysetops"] is arraysetops


def test_memoised_tanh_table_matches_original():
    lc.import_auto_lirpa()
    from auto_LiRPA.operators.activation import BoundTanh

    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh())
    bm = lc.bounded_module(model, torch.zeros(1, 3))
    nodes = [n for n in bm.modules() if type(n) is BoundTanh]
    assert len(nodes) == 2 and nodes[0].d_lower is nodes[1].d_lower
    fresh = object.__new__(BoundTanh)
    fresh.device = nodes[0].device
    BoundTanh.precompute_relaxation._robbench_orig(fresh, "tanh", torch.tanh, nodes[0].dtanh)
    assert torch.equal(fresh.d_lower, nodes[0].d_lower)
    assert torch.equal(fresh.d_upper, nodes[0].d_upper)


def test_import_leaves_logging_and_warnings_alone():
    """auto_LiRPA calls logging.basicConfig and warnings.simplefilter('once') at import."""
    import subprocess
    from pathlib import Path

    code = (
        "import logging, warnings\n"
        "from robbench import lirpa_compat as lc\n"
        "f = list(warnings.filters)\n"
        "lc.import_auto_lirpa()\n"
        "assert logging.getLogger().handlers == [], logging.getLogger().handlers\n"
        "assert warnings.filters == f, 'warning filters changed'\n"
    )
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                       timeout=600, env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "DeprecationWarning" not in r.stderr, r.stderr[-2000:]


def test_missing_auto_lirpa_gives_clear_error(monkeypatch):
    import importlib.util

    monkeypatch.setattr(lc, "_AUTO_LIRPA", None)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "auto_LiRPA" else real(name, *a))
    with pytest.raises(RuntimeError, match="auto-LiRPA is not installed"):
        lc.import_auto_lirpa()


def test_compat_smoke_fails_loudly():
    """If a future torch/numpy breaks auto-LiRPA, this is the test that says so plainly."""
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
        x = torch.randn(5, 4)
        bm = lc.bounded_module(model, x[:1])
        results = {m: lc.bounds(bm, x, 0.1, m) for m in lc.METHODS}
    except Exception as e:  # pragma: no cover - only on breakage
        pytest.fail(
            f"auto-LiRPA compat is broken on torch {torch.__version__} / numpy {np.__version__}: "
            f"{type(e).__name__}: {str(e).rstrip('.')}. Update robbench/lirpa_compat.py.",
            pytrace=True,
        )
    y = model(x)
    for m, (lb, ub) in results.items():
        assert torch.isfinite(lb).all() and torch.isfinite(ub).all(), f"{m}: non-finite bounds"
        assert (lb <= y + TOL).all() and (y <= ub + TOL).all(), f"{m}: f(x) outside its bounds"
        assert (ub - lb > 0).all(), f"{m}: zero-width bounds for eps > 0"


# ------------------------------------------------------------------------------------------
# soundness on random tanh MLPs
# ------------------------------------------------------------------------------------------


def test_saturated_model_is_saturated():
    model = tanh_mlp(**MODELS["deep_saturated"])
    h = _states(64, 3)
    sat = []
    for layer in model:
        h = layer(h)
        if isinstance(layer, nn.Linear) and layer.out_features != ACT:
            sat.append(float((h.abs() > 2).float().mean()))
    assert min(sat) > 0.25, f"expected many saturated hidden units, got fractions {sat}"


@pytest.mark.parametrize("method", lc.METHODS)
def test_bounds_sound(model_and_bmodel, method):
    name, model, bm = model_and_bmodel
    B = 24
    x = _states(B, 10)
    # per-row radii: the protocol's 0.05..0.15 plus a large one
    eps = torch.tensor([0.05, 0.075, 0.15, 0.5])[torch.arange(B) % 4][:, None]
    lb, ub = lc.bounds(bm, x, eps[:, 0], method)
    assert lb.shape == ub.shape == (B, ACT)
    assert torch.isfinite(lb).all() and torch.isfinite(ub).all()
    with torch.no_grad():
        assert_contains(lb, ub, model(x), f"{name}/{method} center")
        pts = ball_samples(x, eps, 200, seed=11)
        vals = model(pts.reshape(-1, OBS)).view(B, -1, ACT)
        assert_contains(lb[:, None], ub[:, None], vals, f"{name}/{method} uniform+corners")
    fmax, fmin = pgd_extremes(model, x, eps)
    assert_contains(lb, ub, fmax, f"{name}/{method} PGD max")
    assert_contains(lb, ub, fmin, f"{name}/{method} PGD min")
    # the attack is meaningful: it beats random sampling (up to slack)
    assert (fmax >= vals.max(1).values - 1e-4).float().mean() > 0.9
    assert (fmin <= vals.min(1).values + 1e-4).float().mean() > 0.9


def test_scalar_eps_matches_per_row_eps(model_and_bmodel):
    _, _, bm = model_and_bmodel
    x = _states(6, 4)
    for method in lc.METHODS:
        a = lc.bounds(bm, x, 0.1, method)
        b = lc.bounds(bm, x, torch.full((6,), 0.1), method)
        torch.testing.assert_close(a[0], b[0])
        torch.testing.assert_close(a[1], b[1])
        # a row's bound does not depend on the other rows of the batch (up to float32 rounding, which
        # does: BLAS sums a batch of 6 and a batch of 1 in different orders; saturated bounds reach ~20)
        c = lc.bounds(bm, x[2:3], 0.1, method)
        torch.testing.assert_close(a[0][2:3], c[0], atol=1e-4, rtol=1e-4)


def test_eps_zero_is_exact(model_and_bmodel):
    _, model, bm = model_and_bmodel
    x = _states(16, 5)
    y = model(x).detach()
    for method in lc.METHODS:
        lb, ub = lc.bounds(bm, x, 0.0, method)
        torch.testing.assert_close(lb.detach(), y, atol=1e-5, rtol=0)
        torch.testing.assert_close(ub.detach(), y, atol=1e-5, rtol=0)
    # eps = 0 on some rows of a batch only
    eps = torch.tensor([0.0, 0.1] * 8)
    lb, ub = lc.bounds(bm, x, eps, "crown")
    torch.testing.assert_close(lb[::2].detach(), y[::2], atol=1e-5, rtol=0)
    assert (ub[1::2] - lb[1::2] > 0).all()


def test_crown_tighter_than_ibp_on_average(model_and_bmodel, capsys):
    name, _, bm = model_and_bmodel
    x = _states(64, 6)
    for eps in (0.05, 0.15):
        w = {}
        for method in lc.METHODS:
            lb, ub = lc.bounds(bm, x, eps, method)
            w[method] = (ub - lb).detach()
        widths = {k: float(v.mean()) for k, v in w.items()}
        assert w["crown"].mean() <= w["ibp"].mean() + 1e-6, (name, eps, widths)
        # CROWN's intermediate bounds are tighter than CROWN-IBP's (IBP) ones on these models
        assert w["crown"].mean() < w["crown-ibp"].mean(), (name, eps, widths)
        looser = int((w["crown"] > w["ibp"] + 1e-5).sum())
        with capsys.disabled():
                print(f"\n[{name} eps={eps}] mean width ibp={w['ibp'].mean():.4g} "
                  f"crown-ibp={w['crown-ibp'].mean():.4g} crown={w['crown'].mean():.4g}; "
                  f"CROWN looser than IBP on {looser}/{w['ibp'].numel()} elements", end="")


def test_crown_vs_ibp_when_ibp_is_vacuous(capsys):
    """Observation, not a requirement: with very large weights (scale 6) IBP collapses to the
    trivial bound 2·Σ|W_last| while CROWN's linear relaxations of tanh over huge intervals can be
    *looser* than that. Both must still be sound; the numbers are printed."""
    model = tanh_mlp([OBS, 128, 128, 128, ACT], seed=1, weight_scale=6.0)
    bm = lc.bounded_module(model, torch.zeros(1, OBS))
    x = _states(32, 6)
    trivial = 2 * model[-1].weight.abs().sum(1).detach()
    y = model(x).detach()
    msg = []
    for eps in (0.01, 0.15):
        w = {}
        for method in lc.METHODS:
            lb, ub = lc.bounds(bm, x, eps, method)
            assert_contains(lb.detach(), ub.detach(), y, f"scale-6 {method} centre")
            w[method] = (ub - lb).detach()
        looser = int((w["crown"] > w["ibp"] + 1e-5).sum())
        msg.append(f"eps={eps}: ibp={w['ibp'].mean():.4g} crown-ibp={w['crown-ibp'].mean():.4g} "
                   f"crown={w['crown'].mean():.4g} trivial={trivial.mean():.4g}, "
                   f"CROWN looser than IBP on {looser}/{w['ibp'].numel()}")
    with capsys.disabled():
        print("\n[scale-6 tanh MLP] " + "; ".join(msg), end="")


def test_linear_model_bounds_are_exact():
    """On an affine map every method is exact: ub = f(x) + eps·|W|·1, attained at a corner.

    This catches a too-large eps (loose but sound bounds) that soundness checks cannot.
    """
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(OBS, 16), nn.Linear(16, ACT))
    bm = lc.bounded_module(model, torch.zeros(1, OBS))
    x = _states(8, 7)
    eps = torch.linspace(0.01, 0.3, 8)
    W = (model[1].weight @ model[0].weight).detach()
    y = model(x).detach()
    expect = eps[:, None] * W.abs().sum(1)[None, :]
    fmax, fmin = pgd_extremes(model, x, eps[:, None], steps=16, restarts=1)
    torch.testing.assert_close(fmin, y - expect, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fmax, y + expect, atol=1e-4, rtol=1e-4)
    for method in lc.METHODS:
        lb, ub = lc.bounds(bm, x, eps, method)
        if method == "ibp":  # IBP through two affine layers is not exact: |W2||W1| >= |W2 W1|
            ibp = eps[:, None] * (model[1].weight.abs() @ model[0].weight.abs()).sum(1).detach()
            torch.testing.assert_close(ub.detach(), y + ibp, atol=1e-4, rtol=1e-4)
        else:
            torch.testing.assert_close(ub.detach(), y + expect, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(lb.detach(), y - expect, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------
# gradients and the mixed (SA-PPO convex training) bound
# ------------------------------------------------------------------------------------------


def manual_ibp(model: nn.Sequential, x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = x - eps, x + eps
    for layer in model:
        if isinstance(layer, nn.Linear):
            mid, rad = (hi + lo) / 2, (hi - lo) / 2
            mid = layer(mid)
            rad = rad @ layer.weight.abs().T
            lo, hi = mid - rad, mid + rad
        else:
            lo, hi = layer(lo), layer(hi)  # monotone activation
    return lo, hi


def test_ibp_matches_hand_written_ibp_and_gradients():
    model = tanh_mlp(**MODELS["small"])
    bm = lc.bounded_module(model, torch.zeros(1, OBS))
    x = _states(10, 8)
    lb, ub = lc.bounds(bm, x, 0.1, "ibp")
    mlb, mub = manual_ibp(model, x, 0.1)
    torch.testing.assert_close(lb, mlb, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ub, mub, atol=1e-5, rtol=1e-5)
    g1 = torch.autograd.grad((ub - lb).sum(), list(model.parameters()))
    g2 = torch.autograd.grad((mub - mlb).sum(), list(model.parameters()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", lc.METHODS)
def test_gradients_reach_parameters(method):
    model = tanh_mlp(**MODELS["small"])
    bm = lc.bounded_module(model, torch.zeros(1, OBS))
    x = _states(8, 9)
    lb, ub = lc.bounds(bm, x, 0.1, method)
    assert lb.requires_grad and ub.requires_grad
    loss = (ub - lb).pow(2).sum()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{method}: no gradient for {name}"
        assert torch.isfinite(p.grad).all()
        if name != "4.bias":  # the output bias cancels in ub - lb
            assert p.grad.abs().sum() > 0, f"{method}: zero gradient for {name}"
    # a training step that shrinks the width moves the bound (parameters are shared)
    with torch.no_grad():
        for p in model.parameters():
            p -= 1e-3 * p.grad
    lb2, ub2 = lc.bounds(bm, x, 0.1, method)
    assert float((ub2 - lb2).pow(2).sum().detach()) < float(loss.detach())


def test_mixed_ibp_crown_ibp():
    model = tanh_mlp(**MODELS["small"])
    bm = lc.bounded_module(model, torch.zeros(1, OBS))
    x = _states(12, 12)
    eps = torch.full((12,), 0.075)
    ilb, iub = lc.bounds(bm, x, eps, "ibp")
    clb, cub = lc.bounds(bm, x, eps, "crown-ibp")
    for beta in (0.0, 0.3, 1.0):
        lb, ub = lc.mixed_ibp_crown_ibp(bm, x, eps, beta)
        torch.testing.assert_close(lb, beta * ilb + (1 - beta) * clb)
        torch.testing.assert_close(ub, beta * iub + (1 - beta) * cub)
        fmax, fmin = pgd_extremes(model, x, eps[:, None], steps=20, restarts=1)
        assert_contains(lb, ub, fmax, f"mixed beta={beta} PGD max")
        assert_contains(lb, ub, fmin, f"mixed beta={beta} PGD min")
    lb, ub = lc.mixed_ibp_crown_ibp(bm, x, eps, 0.5)
    (ub - lb).sum().backward()
    assert model[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        lc.mixed_ibp_crown_ibp(bm, x, eps, 1.5)


def test_bad_arguments():
    bm = lc.bounded_module(tanh_mlp(**MODELS["small"]), torch.zeros(1, OBS))
    x = _states(4, 1)
    with pytest.raises(ValueError, match="unknown bound method"):
        lc.bounds(bm, x, 0.1, "alpha-crown")
    with pytest.raises(ValueError):
        lc.bounds(bm, x, -0.1, "ibp")
    with pytest.raises(ValueError):
        lc.bounds(bm, x, torch.full((3,), 0.1), "ibp")
