"""Exact tests of the toy ISA-MDP module against the paper's Appendix D (Prop. D.1 = Props 3.1/3.2).

Closed forms used below are derived by hand from the MDP of Appendix D (r̂, P̂, γ = 0.9):
  det(I − γP^π) = P_{α,β} = 0.0261 α + 0.1 (1 − 0.711 β),
  A_{α,β} = 0.1305 α + (0.35 α + 0.1)(0.711 β − 0.991) + 0.0045,
  B_{α,β} = 0.1305 α + (0.35 α + 0.1)(0.711 β − 0.891) + 0.0545,
so V(s1) = A/P, V(s2) = B/P (eqs 26-27), and e.g. V^{π_{1,1}} = (9/55, 104/55), V^{π_{0,0}} = (−0.946, −0.346).
β̃: Q(s1,a1) − Q(s1,a2) = −0.35 + 0.261 (V(s2) − V(s1)) vanishes; at α = 0, V(s2) − V(s1) = 0.06/P, so
  β̃ = (0.35·0.1 − 0.261·0.06) / (0.35·0.0711) = 0.01934 / 0.024885.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from robbench import toy
from robbench.toy_run import run_toy

MDP = toy.PAPER_MDP
BETA_TILDE = 0.01934 / 0.024885
RNG = np.random.default_rng(20240611)


def paper_P(a, b):
    return 0.0261 * a + 0.1 * (1 - 0.711 * b)


def paper_A(a, b):
    return 0.1305 * a + (0.35 * a + 0.1) * (0.711 * b - 0.991) + 0.0045


def paper_B(a, b):
    return 0.1305 * a + (0.35 * a + 0.1) * (0.711 * b - 0.891) + 0.0545


def grid(n):
    t = np.linspace(0.0, 1.0, n)
    return np.stack(np.meshgrid(t, t, indexing="ij"), axis=-1), t


# ---------------------------------------------------------------- values and gradients


def test_values_match_closed_forms_26_27():
    th = RNG.random((500, 2))
    a, b = th[:, 0], th[:, 1]
    ev = toy.evaluate(th)
    np.testing.assert_allclose(ev.V[:, 0], paper_A(a, b) / paper_P(a, b), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ev.V[:, 1], paper_B(a, b) / paper_P(a, b), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ev.J, ev.V.mean(axis=-1), rtol=0, atol=1e-15)


def test_linear_solve_agrees_with_bellman_iteration():
    th = np.concatenate([RNG.random((200, 2)), [[0, 0], [0, 1], [1, 0], [1, 1]]])
    ev = toy.evaluate(th)
    pi = np.stack([th, 1 - th], axis=-1)
    p_pi = np.einsum("nsa,sat->nst", pi, MDP.P)
    r_pi = np.sum(pi * MDP.r, axis=-1)
    v = np.zeros_like(r_pi)
    for _ in range(700):  # contraction 0.9^700 ≈ 1e-32
        v = r_pi + MDP.gamma * np.einsum("nst,nt->ns", p_pi, v)
    np.testing.assert_allclose(ev.V, v, rtol=0, atol=1e-12)
    # Q is consistent with V: V(s) = Σ_a π(a|s) Q(s, a) and Q = r + γ P V.
    np.testing.assert_allclose(np.sum(pi * ev.Q, axis=-1), ev.V, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ev.Q, MDP.r + MDP.gamma * np.einsum("sat,nt->nsa", MDP.P, v), rtol=0, atol=1e-12)


def test_deterministic_values_and_ordering_32():
    ev = toy.evaluate(np.array([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]))
    # Hand-derived exact values.
    np.testing.assert_allclose(ev.V[0], [9 / 55, 104 / 55], rtol=0, atol=1e-13)
    np.testing.assert_allclose(ev.V[2], [-0.946, -0.346], rtol=0, atol=1e-13)
    # The paper's printed (two-decimal) values.
    paper = np.array([[0.16, 1.89], [-0.81, 1.26], [-0.95, -0.35], [-2.47, -1.71]])
    np.testing.assert_allclose(ev.V, paper, rtol=0, atol=0.005)
    # V^{π11} ⪰ V^{π01} ⪰ V^{π00} ⪰ V^{π10}, componentwise and strictly.
    assert np.all(np.diff(ev.V, axis=0) < 0)
    # π11 is globally optimal and π10 worst among *all* policies (checked on a stochastic grid).
    g, _ = grid(101)
    j = toy.evaluate(g).J
    assert j.max() <= ev.J[0] + 1e-12 and j.min() >= ev.J[3] - 1e-12


def test_gradient_matches_paper_28_31_and_finite_differences():
    th = 0.05 + 0.9 * RNG.random((300, 2))
    a, b = th[:, 0], th[:, 1]
    P, A, B = paper_P(a, b), paper_A(a, b), paper_B(a, b)
    d1a = (0.24885 * b - 0.21635) / P - 0.0261 * A / P**2
    d1b = (0.24885 * a + 0.0711) / P + 0.0711 * A / P**2
    d2a = (0.24885 * b - 0.18135) / P - 0.0261 * B / P**2
    d2b = (0.24885 * a + 0.0711) / P + 0.0711 * B / P**2
    grad = toy.evaluate(th).grad
    np.testing.assert_allclose(grad[:, 0], 0.5 * (d1a + d2a), rtol=0, atol=1e-11)
    np.testing.assert_allclose(grad[:, 1], 0.5 * (d1b + d2b), rtol=0, atol=1e-11)
    h = 1e-6
    for k in range(2):
        e = np.zeros(2)
        e[k] = h
        fd = (toy.evaluate(th + e).J - toy.evaluate(th - e).J) / (2 * h)
        np.testing.assert_allclose(grad[:, k], fd, rtol=0, atol=1e-8)


@pytest.mark.parametrize("paradigm", ["ARPO", "BARPO"])
def test_adversarial_gradients_match_finite_differences_away_from_switches(paradigm):
    th = 0.05 + 0.9 * RNG.random((2000, 2))
    ev = toy.adversarial_evaluate(th)
    srt = np.sort(ev.J, axis=-1)
    # Keep points whose active piece is unique with a margin (Danskin gradient = true gradient there).
    keep = (srt[:, 1] - srt[:, 0] > 1e-3) & (np.abs(th[:, 0] - th[:, 1]) > 1e-3)
    th = th[keep]
    assert len(th) > 500
    j, g, _ = toy.paradigm_objective(paradigm, th)
    h = 1e-7
    for k in range(2):
        e = np.zeros(2)
        e[k] = h
        fd = (toy.paradigm_objective(paradigm, th + e)[0] - toy.paradigm_objective(paradigm, th - e)[0]) / (2 * h)
        np.testing.assert_allclose(g[:, k], fd, rtol=0, atol=1e-7)


# ---------------------------------------------------------------- adversaries


def test_strongest_adversary_is_uniformly_minimal():
    th = np.concatenate([RNG.random((1000, 2)), grid(21)[0].reshape(-1, 2)])
    idx, v_star, j_star = toy.strongest_adversary(th)
    ev = toy.adversarial_evaluate(th)
    # ≤ every deterministic admissible adversary, in every state (one ν minimises both states).
    assert np.all(v_star[:, None, :] <= ev.V + 1e-12)
    np.testing.assert_allclose(j_star, ev.J.min(axis=-1), rtol=0, atol=1e-15)
    # ≤ randomised adversaries too: state s shown s with prob λ_s, the other state otherwise, so the
    # agent acts with π(a1|·) = λ_s θ_s + (1 − λ_s) θ_other.
    for _ in range(20):
        lam = RNG.random(th.shape)
        mixed = lam * th + (1 - lam) * th[:, ::-1]
        assert np.all(v_star <= toy.evaluate(mixed).V + 1e-12)
    # Identity is not always the minimiser (the check above is not vacuous).
    assert len(np.unique(idx)) == 4


def test_kl_adversary_inner_problem():
    p = RNG.random(1000)
    q = RNG.random(1000)
    np.testing.assert_allclose(toy.kl_bernoulli(p, q), p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q)),
                               rtol=1e-12, atol=1e-15)
    assert toy.kl_bernoulli(0.3, 0.0) == np.inf and toy.kl_bernoulli(0.0, 0.3) == pytest.approx(-np.log(0.7))
    assert toy.kl_bernoulli(0.4, 0.4) == 0.0
    th = RNG.random((1000, 2))
    idx, kl = toy.kl_adversary(th)
    assert np.all(idx == 3)  # off the diagonal the KL-maximising ν is the swap
    np.testing.assert_allclose(kl, toy.kl_bernoulli(th, th[:, ::-1]), rtol=0, atol=0)
    assert toy.kl_adversary([0.3, 0.3])[0] == 0  # ties go to the unperturbed state
    # Landscape lifting (App. H.4): V^{π∘ν◇} ≥ V^{π∘ν*}, with strict inequality somewhere.
    g = grid(51)[0]
    jb = toy.paradigm_objective("BARPO", g)[0]
    ja = toy.paradigm_objective("ARPO", g)[0]
    assert np.all(jb >= ja - 1e-12) and np.any(jb > ja + 0.1)


# ---------------------------------------------------------------- β̃, robust region, cut point


def test_beta_tilde_threshold_33_34():
    for s in (0, 1):
        assert toy.beta_tilde(MDP, s) == pytest.approx(BETA_TILDE, abs=1e-12)
    assert round(BETA_TILDE, 3) == 0.777
    betas = np.linspace(0, 1, 401)
    betas = betas[np.abs(betas - BETA_TILDE) > 1e-9]
    f = toy.evaluate(np.stack([np.ones_like(betas), betas], -1)).V - toy.evaluate(
        np.stack([np.zeros_like(betas), betas], -1)).V
    sign = np.sign(betas - BETA_TILDE)[:, None]
    assert np.all(np.sign(f) == sign)  # (33), for both states
    # (34): along every horizontal line V is monotone in α, direction set by β vs β̃.
    g, t = grid(41)
    v = toy.evaluate(g).V  # [iα, iβ, s]
    dv = np.diff(v, axis=0)
    for j, b in enumerate(t):
        assert np.all(np.sign(dv[:, j, :]) == np.sign(b - BETA_TILDE))
    # (35): strictly increasing in β for every α.
    assert np.all(np.diff(v, axis=1) > 0)


def test_robust_region_shape():
    mask, t = toy.robust_mask(101)
    a, b = np.meshgrid(t, t, indexing="ij")
    expected = (np.abs(a - b) < 1e-15) | (b <= np.minimum(a, BETA_TILDE))
    np.testing.assert_array_equal(mask, expected)
    # Outside the region the adversary really hurts (not a tolerance artefact): the smallest gap,
    # ≈ 7e-5 at (0.79, 0.78) just above β̃, is far above the 1e-12 robustness tolerance.
    gap = toy.robust_gap(np.stack([a, b], -1))
    assert np.all(gap[~expected] > 1e-6)
    assert np.all(gap[expected] <= 1e-12)


def test_cut_point():
    cut = toy.robust_cut_point()
    np.testing.assert_allclose(cut, [BETA_TILDE, BETA_TILDE], rtol=0, atol=1e-9)
    mask, t = toy.robust_mask(201)
    a, b = np.meshgrid(t, t, indexing="ij")
    h = t[1] - t[0]

    def components_without(c):
        return toy.connected_components(mask & (np.hypot(a - c[0], b - c[1]) > 2.5 * h))

    assert toy.connected_components(mask) == 1
    assert components_without(cut) == 2  # Prop. 3.2 / D.1 (1)
    assert components_without((0.6, 0.3)) == 1  # interior point of the 2-D part: not a cut point
    assert components_without((0.3, 0.3)) == 1  # diagonal below β̃ borders the 2-D part: not a cut point
    # Honest extra: every diagonal point above β̃ is a cut point too (the diagonal there is 1-D).
    assert components_without((0.9, 0.9)) == 2
    # Just below the cut point the region is 2-D, just above it is only the diagonal.
    assert toy.robust_gap([cut[0] + 0.1, cut[1] - 1e-4]) <= 1e-12
    assert toy.robust_gap([cut[0] + 0.1, cut[1] + 1e-4]) > 1e-8


# ---------------------------------------------------------------- FOSPs, Prop 3.1


def test_origin_stationary_for_arpo_not_spo():
    # SPO: the projected gradient at (0, 0) is (0, ∂V(μ0)/∂β) with ∂V/∂β = ½((29) + (31)) > 0.
    a, b = 0.0, 0.0
    dvb = 0.5 * ((0.0711 / paper_P(a, b) + 0.0711 * paper_A(a, b) / paper_P(a, b) ** 2)
                 + (0.0711 / paper_P(a, b) + 0.0711 * paper_B(a, b) / paper_P(a, b) ** 2))
    assert toy.stationarity("SPO", [0.0, 0.0]) == pytest.approx(dvb, abs=1e-12)
    assert dvb > 0.25
    assert toy.evaluate([0.0, 1e-4]).J > toy.evaluate([0.0, 0.0]).J
    # ARPO: σ = 0, and (0, 0) is a strict local maximum of V^{π∘ν*(π)}(μ0) along every feasible ray.
    assert toy.stationarity("ARPO", [0.0, 0.0]) == 0.0
    j0 = toy.paradigm_objective("ARPO", [0.0, 0.0])[0]
    ang = np.linspace(0, np.pi / 2, 91)
    for r in (1e-3, 1e-2, 0.05):
        jr = toy.paradigm_objective("ARPO", r * np.stack([np.cos(ang), np.sin(ang)], -1))[0]
        assert np.all(jr < j0)
    # BARPO does not stall there.
    assert toy.stationarity("BARPO", [0.0, 0.0]) > 0.25


def test_fosp_sets():
    g, t = grid(101)
    for p, expected in {"SPO": [(1.0, 1.0)], "ARPO": [(0.0, 0.0), (1.0, 1.0)], "BARPO": [(1.0, 1.0)]}.items():
        sig = toy.stationarity(p, g)
        got = [(t[i], t[j]) for i, j in np.argwhere(sig <= 1e-9)]
        assert got == expected, p
    # Off the grid, ARPO also has a first-order stationary saddle on the diagonal at t⋄ = argmin V(t, t).
    ts = toy.diagonal_saddle()
    assert toy.stationarity("ARPO", [ts, ts]) < 1e-9
    assert toy.stationarity("ARPO", [ts + 0.01, ts + 0.01]) > 1e-3


def test_proposition_3_1():
    v = {p: toy.evaluate(list(p)).J for p in [(1.0, 1.0), (0.0, 0.0), (1.0, 0.0)]}
    v_s, v_a, v_minus = v[(1.0, 1.0)], v[(0.0, 0.0)], v[(1.0, 0.0)]
    assert v_s == pytest.approx(113 / 110, abs=1e-13)
    assert v_a == pytest.approx(-0.646, abs=1e-13)
    assert (round(float(v_s), 2), round(float(v_minus), 2)) == (1.03, -2.09)
    assert round(float(v_s - v_minus), 2) == 3.12 and round(float(v_a - v_minus), 2) == 1.44
    assert v_a - v_minus < 0.5 * (v_s - v_minus)
    assert toy.robust_gap([0.0, 0.0]) == 0.0  # π_A is robust


# ---------------------------------------------------------------- the whole pipeline


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    from rich.console import Console

    out = tmp_path_factory.mktemp("toy")
    buf = io.StringIO()
    res = run_toy(grid=11, out_dir=out, console=Console(file=buf, width=120))
    return res, out, buf.getvalue()


def test_run_toy_outcomes(toy_run):
    res, _, printed = toy_run
    assert "β̃" in printed and "ARPO" in printed and "sticky" in printed
    assert res["beta_tilde"] == pytest.approx(BETA_TILDE, abs=1e-12)
    for p in toy.PARADIGMS:
        assert sum(res["outcomes"][p]["fractions"].values()) == pytest.approx(1.0, abs=1e-12)
    assert res["outcomes"]["SPO"]["fractions"]["global optimum"] == 1.0
    assert res["outcomes"]["BARPO"]["fractions"]["global optimum"] == 1.0
    arpo = res["runs"]["ARPO"]
    sticky = arpo["labels"] == "sticky"
    assert 0.2 < sticky.mean() < 0.3
    assert np.all(sticky | (arpo["labels"] == "global optimum"))
    # The sticky point is π_{0,0}; its basin is the low corner of the square.
    assert np.all(np.abs(arpo["reached"][sticky]).max(axis=-1) < 1e-2)
    s = arpo["starts"].sum(axis=-1)
    assert np.all(sticky[s <= 0.6 + 1e-9]) and not np.any(sticky[s >= 0.8 - 1e-9])
    np.testing.assert_allclose(arpo["natural"][sticky], -0.646, atol=0.01)


def test_figure_written(toy_run):
    res, out, _ = toy_run
    path = out / "toy_landscape.png"
    assert res["figure"] == path and path.is_file()
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 1000 and height > 400 and len(data) > 50_000
    assert data[-8:-4] == b"IEND"
    assert sorted(p.name for p in out.iterdir()) == ["toy_landscape.png"]  # no temp file left behind
