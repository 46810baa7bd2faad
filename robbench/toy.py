"""The two-state toy ISA-MDP of the BARPO paper: exact landscape analysis of SPO, ARPO and BARPO.

Everything here is exact tabular float64 arithmetic (numpy only; matplotlib's Agg canvas for the
figure). References are to the paper (Li et al., "On the Tension Between Optimality and Adversarial
Robustness in Policy Optimization", ICLR 2026) and to
docs/toy.md:

* the MDP itself, the value formulas (26)-(31), the ordering (32), the threshold β̃ of (33)-(34),
  the robust region Θ_Robust and its cut point: Appendix D, Proposition D.1 (= Props 3.1 / 3.2);
* the objectives: (SPO), (ARPO) and (BARPO) in Sections 2 and 4, all taken in expectation over
  μ0 ("we take the expectation over the distribution μ0", Section 2), i.e. the scalar
  J(θ) = μ0ᵀ V(θ) is what every paradigm ascends;
* FOSPs: Section 2 ("FOSP in SPO", "FOSP in ARPO"), checked here with the first-order
  (Clarke / directional-derivative) condition on the box [0, 1]²; Appendix D does the same with KKT.

Parameterisation: θ = (α, β), π(a1|s1) = α, π(a1|s2) = β (Appendix D). Arrays of policies have a
trailing axis of length 2 holding (α, β); every function broadcasts over leading axes, so a whole
grid of starts is handled in one call.

Adversaries: B(s1) = B(s2) = {s1, s2}, so there are exactly four deterministic observation maps ν,
listed in ``ADVERSARIES`` as (ν(s1), ν(s2)). The perturbed policy π∘ν is again a member of the
family, with parameters θ[ν] ∈ {(α, β), (α, α), (β, β), (β, α)} (spec toy.md).

Interpretations made (also recorded in the docstrings where they matter):

* Objective: V(μ0) = ½ (V(s1) + V(s2)) for all three paradigms (Section 2).
* ARPO gradient: Danskin-style gradient of the *active* adversary, i.e. ∇_θ V^{π_θ∘ν}(μ0) with
  ν = ν*(π_θ) held fixed. Where several adversaries tie (always on the diagonal α = β, where all
  four give the same perturbed policy) the first in ``ADVERSARIES`` order is taken, so identity
  wins ties: "the adversary only perturbs when it strictly gains".
* BARPO inner problem: ν◇(s) = argmax_{s'∈B(s)} KL(π(·|s) ‖ π(·|s')), solved state by state by
  enumeration; ties (KL = 0 for both candidates, i.e. α = β) go to the unperturbed state. The
  outer gradient holds ν◇ fixed (the paper's solver "ignores the second-order term", App. I;
  ν◇ is piecewise constant here, so this is the exact gradient wherever ν◇ is locally constant).
* "Sticky low-value stationary point": a run whose tail has settled (tail spread ≤ tol_x), that
  is first-order stationary for its own paradigm's objective (ε-stationarity, see
  ``stationarity``) and whose natural value is below the midpoint of Proposition 3.1's yardstick:
  V^π(μ0) − V⁻(μ0) < ½ (V*(μ0) − V⁻(μ0)). See ``classify``.

What the exact analysis shows (numbers from ``robbench.toy_run.run_toy``): Appendix D's ordering (32), β̃ ≈ 0.777175,
Θ_Robust = {α = β} ∪ {β ≤ min(α, β̃)} and its cut point (β̃, β̃) are reproduced exactly. Two things
worth knowing: (i) the KL-surrogate adversary of this MDP is the swap ν = (s2, s1) whenever α ≠ β,
so BARPO ascends V^{π_{β,α}}(μ0), a mirror image of the SPO landscape with the single FOSP (1, 1);
(ii) ARPO's sticky basin around π_{0,0} covers about a quarter of the square of starts (≈ 0.25
for grids of 11 to 41 points a side and step sizes 0.002 to 0.05), not the "about one-third" of
the paper's Section 3.2.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ADVERSARIES",
    "ADVERSARY_NAMES",
    "CLASSES",
    "PARADIGMS",
    "ToyMDP",
    "PAPER_MDP",
    "Evaluation",
    "evaluate",
    "adversarial_evaluate",
    "strongest_adversary",
    "kl_bernoulli",
    "kl_adversary",
    "paradigm_objective",
    "stationarity",
    "beta_tilde",
    "diagonal_saddle",
    "robust_gap",
    "robust_mask",
    "robust_cut_point",
    "connected_components",
    "PGAResult",
    "run_pga",
    "classify",
]

#: The four admissible deterministic adversaries as (ν(s1), ν(s2)) state indices (0 = s1, 1 = s2).
ADVERSARIES = np.array([[0, 1], [0, 0], [1, 1], [1, 0]], dtype=np.intp)
ADVERSARY_NAMES = ("identity", "show s1", "show s2", "swap")
PARADIGMS = ("SPO", "ARPO", "BARPO")
CLASSES = ("global optimum", "robust", "sticky", "other")

# Chain-rule tensor: C[ν, s, k] = 1 iff ν(s) = k, so ∂/∂θ_k = Σ_s C[ν, s, k] ∂/∂θ'_s with θ' = θ[ν].
_CHAIN = (ADVERSARIES[:, :, None] == np.arange(2)[None, None, :]).astype(np.float64)


@dataclass(frozen=True)
class ToyMDP:
    """A two-state, two-action MDP (Appendix D). ``r[i, j] = r(s_i, a_j)``, ``P[i, j, k] = P(s_k|s_i, a_j)``."""

    r: np.ndarray
    P: np.ndarray
    gamma: float
    mu0: np.ndarray

    @classmethod
    def paper(cls) -> "ToyMDP":
        """Appendix D: r̂ = [−0.45, −0.1, 0.5, 0.5], P̂ = [[.7, .3], [.99, .01], [.2, .8], [.99, .01]],
        γ = 0.9, μ0 uniform; r(s_i, a_j) = r̂[2(i−1) + (j−1)], P(s_k|s_i, a_j) = P̂[2(i−1) + (j−1)][k]."""
        r_hat = np.array([-0.45, -0.1, 0.5, 0.5])
        p_hat = np.array([[0.7, 0.3], [0.99, 0.01], [0.2, 0.8], [0.99, 0.01]])
        return cls(r=r_hat.reshape(2, 2), P=p_hat.reshape(2, 2, 2), gamma=0.9, mu0=np.array([0.5, 0.5]))


PAPER_MDP = ToyMDP.paper()


@dataclass(frozen=True)
class Evaluation:
    """Exact quantities of π_θ (leading axes broadcast).

    V (…, 2): V^π(s); Q (…, 2, 2): Q^π(s, a); rho (…, 2): μ0ᵀ(I − γP^π)⁻¹ (unnormalised discounted
    occupancy); grad (…, 2): ∂V^π(μ0)/∂(α, β); J (…): V^π(μ0).
    """

    V: np.ndarray
    Q: np.ndarray
    rho: np.ndarray
    grad: np.ndarray
    J: np.ndarray


def evaluate(theta, mdp: ToyMDP = PAPER_MDP) -> Evaluation:
    """V^π, Q^π and the exact policy gradient of V^π(μ0) for π = π_{α,β}.

    V solves (I − γP^π)V = r^π (the linear system behind (26)-(27)); the 2×2 system is solved with
    its explicit inverse adj(M)/det(M) (Cramer's rule), det(M) being the paper's P_{α,β}.
    Q = r + γPV. The gradient is the policy-gradient theorem for the direct parameterisation:
    ∂V(μ0)/∂θ_s = ρ(s) (Q(s, a1) − Q(s, a2)) with ρ = μ0ᵀ(I − γP^π)⁻¹ — equations (28)-(31)
    averaged over μ0.
    """
    theta = np.asarray(theta, dtype=np.float64)
    th = theta[..., :, None]  # (…, s, 1)
    p_pi = th * mdp.P[:, 0, :] + (1.0 - th) * mdp.P[:, 1, :]  # (…, s, t)
    r_pi = theta * mdp.r[:, 0] + (1.0 - theta) * mdp.r[:, 1]
    m00 = 1.0 - mdp.gamma * p_pi[..., 0, 0]
    m01 = -mdp.gamma * p_pi[..., 0, 1]
    m10 = -mdp.gamma * p_pi[..., 1, 0]
    m11 = 1.0 - mdp.gamma * p_pi[..., 1, 1]
    det = m00 * m11 - m01 * m10
    v = np.stack([m11 * r_pi[..., 0] - m01 * r_pi[..., 1], m00 * r_pi[..., 1] - m10 * r_pi[..., 0]], -1)
    v /= det[..., None]
    mu = mdp.mu0
    rho = np.stack([mu[0] * m11 - mu[1] * m10, mu[1] * m00 - mu[0] * m01], -1) / det[..., None]
    q = mdp.r + mdp.gamma * (v @ mdp.P.reshape(4, 2).T).reshape(v.shape[:-1] + (2, 2))
    grad = rho * (q[..., 0] - q[..., 1])
    return Evaluation(V=v, Q=q, rho=rho, grad=grad, J=v @ mdp.mu0)


def adversarial_evaluate(theta, mdp: ToyMDP = PAPER_MDP) -> Evaluation:
    """Evaluate π∘ν for all four admissible ν at once (new axis −2 / −1 of length 4 = ``ADVERSARIES``).

    π∘ν is π_{θ[ν]}; its value is V^{π∘ν} (Section 2), and the gradient w.r.t. the *agent's*
    parameters θ follows by the chain rule through θ' = θ[ν] (ν held fixed). Returned V is
    (…, 4, 2), J (…, 4), grad (…, 4, 2) w.r.t. θ; Q and rho refer to the perturbed policy.
    """
    theta = np.asarray(theta, dtype=np.float64)
    ev = evaluate(theta[..., ADVERSARIES], mdp)  # θ' : (…, 4, 2)
    grad = (ev.grad[..., None, :] @ _CHAIN)[..., 0, :]
    return Evaluation(V=ev.V, Q=ev.Q, rho=ev.rho, grad=grad, J=ev.J)


def _first_min(values: np.ndarray, rtol: float = 1e-12) -> np.ndarray:
    """Index of the minimum along the last axis; among (numerical) ties the lowest index."""
    m = values.min(axis=-1, keepdims=True)
    return np.argmax(values <= m + rtol * (1.0 + np.abs(m)), axis=-1)


def strongest_adversary(theta, mdp: ToyMDP = PAPER_MDP):
    """ν*(π) = argmin_ν V^{π∘ν} by enumeration of the four admissible ν (Section 2; App. D).

    The minimiser is taken on V^{π∘ν}(μ0); because the adversary faces an MDP of its own (action =
    the state shown), one deterministic ν minimises every V^{π∘ν}(s) at once, which the tests
    check. Ties go to the lowest index of ``ADVERSARIES`` (identity first).
    Returns (index (…), V^{π∘ν*} (…, 2), V^{π∘ν*}(μ0) (…)).
    """
    ev = adversarial_evaluate(theta, mdp)
    idx = _first_min(ev.J)
    v = np.take_along_axis(ev.V, idx[..., None, None], axis=-2)[..., 0, :]
    return idx, v, v @ mdp.mu0


def kl_bernoulli(p, q) -> np.ndarray:
    """KL(Bern(p) ‖ Bern(q)) over the two actions, with 0·log(0/q) = 0 and p·log(p/0) = +∞."""
    p, q = np.broadcast_arrays(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64))
    out = np.zeros(p.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        for pa, qa in ((p, q), (1.0 - p, 1.0 - q)):
            out = out + np.where(pa > 0, pa * (np.log(np.where(pa > 0, pa, 1.0)) - np.log(qa)), 0.0)
    return out


def kl_adversary(theta):
    """The BARPO inner problem (eq. BARPO): ν◇(s) = argmax_{s'∈B(s)} KL(π(·|s) ‖ π(·|s')), per state.

    With B(s) = {s1, s2}, each state compares KL = 0 (show the true state) with the KL to the
    other state's action distribution. Ties (α = β, both KL = 0) go to the true state.
    Returns (adversary index into ``ADVERSARIES`` (…), per-state KL of the chosen ν (…, 2)).
    Consequence for this MDP: ν◇ is the swap whenever α ≠ β, the identity on the diagonal.
    """
    theta = np.asarray(theta, dtype=np.float64)
    kl_other = kl_bernoulli(theta, theta[..., ::-1])  # (…, 2): state s shown the other state
    perturb = kl_other > 0.0  # strict: KL(π(·|s)‖π(·|s)) = 0 wins ties
    nu = np.where(perturb, 1 - np.arange(2), np.arange(2))  # (…, 2): ν(s)
    idx = np.argmax(np.all(nu[..., None, :] == ADVERSARIES, axis=-1), axis=-1)
    return idx, np.where(perturb, kl_other, 0.0)


def paradigm_objective(paradigm: str, theta, mdp: ToyMDP = PAPER_MDP):
    """Objective J(θ) and the ascent direction used by projected gradient ascent, per paradigm.

    SPO: J = V^{π_θ}(μ0), exact gradient. ARPO: J = V^{π_θ∘ν*(π_θ)}(μ0), Danskin gradient of the
    active adversary (ties → identity). BARPO: J = V^{π_θ∘ν◇(θ)}(μ0) with ν◇ from ``kl_adversary``,
    gradient with ν◇ held fixed. Returns (J (…), grad (…, 2), adversary index (…) or None for SPO).
    """
    theta = np.asarray(theta, dtype=np.float64)
    if paradigm == "SPO":
        ev = evaluate(theta, mdp)
        return ev.J, ev.grad, None
    if paradigm == "ARPO":
        ev = adversarial_evaluate(theta, mdp)
        idx = _first_min(ev.J)
    elif paradigm == "BARPO":
        idx, _ = kl_adversary(theta)
        nu = ADVERSARIES[idx]
        ev = evaluate(np.take_along_axis(theta, nu, axis=-1), mdp)
        grad = (ev.grad[..., None, :] @ _CHAIN[idx])[..., 0, :]
        return ev.J, grad, idx
    else:
        raise ValueError(f"unknown paradigm {paradigm!r}; expected one of {PARADIGMS}")
    j = np.take_along_axis(ev.J, idx[..., None], axis=-1)[..., 0]
    grad = np.take_along_axis(ev.grad, idx[..., None, None], axis=-2)[..., 0, :]
    return j, grad, idx


def stationarity(paradigm: str, theta, mdp: ToyMDP = PAPER_MDP, eps=0.0, box_tol: float = 0.0):
    """First-order stationarity measure σ(θ) ≥ 0 of the paradigm's objective on the box [0, 1]².

    σ(θ) = max over unit directions d in the tangent cone of the box at θ of the one-sided
    directional derivative J'(θ; d); θ is first-order stationary iff σ(θ) = 0 (the first-order
    part of "FOSP in SPO/ARPO", Section 2; App. D checks the same via KKT). Per paradigm:

    * SPO: J'(θ; d) = ∇V(μ0)·d, so σ is the norm of the projected gradient.
    * ARPO: J = min_ν V^{π∘ν}(μ0), so by Danskin J'(θ; d) = min_{ν active at θ} ∇V^{π∘ν}·d.
      ``eps`` (scalar or per point) > 0 counts pieces within ε of the minimum as active
      (ε-subdifferential), used only to classify end points of finite runs.
    * BARPO: J = V^{π∘ν◇(θ)}(μ0) with ν◇ piecewise constant; it switches only on the diagonal and
      all pieces agree there, so J is continuous and J'(θ; d) = ∇V^{π∘ν◇(θ+0d)}·d with the piece
      selected just off θ along d (not a min over the tie set on the diagonal).

    ``box_tol`` treats coordinates within box_tol of 0 or 1 as on the boundary (0 for exact checks).

    Exact in 2-D: on each arc of directions where the selected piece set is fixed, the maximum of
    min_i g_i·d is attained at an arc end (box-cone edges are the axes; BARPO's switching
    directions are ±(1, 1)/√2), at some g_i/|g_i|, or where two pieces cross ((g_i − g_j)·d = 0).
    All these candidates are enumerated and evaluated.
    """
    theta = np.asarray(theta, dtype=np.float64)
    if paradigm == "SPO":
        grads = evaluate(theta, mdp).grad[..., None, :]
    elif paradigm in ("ARPO", "BARPO"):
        ev = adversarial_evaluate(theta, mdp)
        grads = ev.grad
    else:
        raise ValueError(f"unknown paradigm {paradigm!r}; expected one of {PARADIGMS}")
    m = grads.shape[-2]
    batch = theta.shape[:-1]
    r = 1.0 / np.sqrt(2.0)
    cands = [np.broadcast_to(np.array(d, dtype=np.float64), batch + (2,))
             for d in ((1, 0), (-1, 0), (0, 1), (0, -1), (r, r), (-r, -r))]
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(m):
            g = grads[..., i, :]
            cands.append(g / np.linalg.norm(g, axis=-1, keepdims=True))
            for j in range(i + 1, m):
                diff = g - grads[..., j, :]
                perp = np.stack([-diff[..., 1], diff[..., 0]], -1) / np.linalg.norm(diff, axis=-1, keepdims=True)
                cands.extend([perp, -perp])
    d = np.stack(cands, axis=-2)  # (…, c, 2)
    d = np.where(np.all(np.isfinite(d), axis=-1, keepdims=True), d, 0.0)
    if paradigm == "SPO":
        mask = np.ones(batch + (1, 1), dtype=bool)
    elif paradigm == "ARPO":
        lowest = ev.J.min(axis=-1, keepdims=True)
        eps = np.asarray(eps, dtype=np.float64)[..., None]
        mask = (ev.J <= lowest + eps + 1e-12 * (1.0 + np.abs(lowest)))[..., None, :]  # (…, 1, m)
    else:
        idx, _ = kl_adversary(np.clip(theta[..., None, :] + 1e-9 * d, 0.0, 1.0))  # (…, c)
        mask = idx[..., None] == np.arange(m)  # (…, c, m)
    lo = theta <= box_tol
    hi = theta >= 1.0 - box_tol
    feasible = np.all((~lo[..., None, :] | (d >= -1e-15)) & (~hi[..., None, :] | (d <= 1e-15)), axis=-1)
    dd = np.einsum("...ik,...ck->...ci", grads, d)  # (…, c, m)
    dd = np.where(mask, dd, np.inf).min(axis=-1)
    dd = np.where(feasible, dd, -np.inf)
    return np.maximum(dd.max(axis=-1), 0.0)


def _bisect(f, lo: float, hi: float, iters: int = 200) -> float:
    """Root of a scalar function with f(lo) < 0 < f(hi) (or a predicate True at lo, False at hi)."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if f(mid):
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def beta_tilde(mdp: ToyMDP = PAPER_MDP, state: int = 0) -> float:
    """The threshold β̃ of (33): the root of f(β, s) = V^{π_{1,β}}(s) − V^{π_{0,β}}(s).

    Found by bisection to machine precision (f(0, s) < 0 < f(1, s) is asserted). By the Line
    Theorem (Lemma D.1) the root is the same for s1 and s2; the tests check that.
    """

    def f(b):
        return float(evaluate([1.0, b], mdp).V[state] - evaluate([0.0, b], mdp).V[state])

    if not f(0.0) < 0.0 < f(1.0):
        raise ValueError("f(β, s) does not change sign on [0, 1]; no threshold β̃")
    return _bisect(lambda b: f(b) < 0.0, 0.0, 1.0)


def diagonal_saddle(mdp: ToyMDP = PAPER_MDP) -> float:
    """t⋄ = argmin_t V^{π_{t,t}}(μ0): where the natural value along the diagonal turns.

    Not in the paper; it explains ARPO's sticky basin. The diagonal is a ridge of the ARPO
    objective below β̃ (the adversary bites on both sides), so ARPO slides along it towards (0, 0)
    from below t⋄ and towards (1, 1) from above; (t⋄, t⋄) is a first-order stationary saddle.
    """

    def slope(t):
        return float(evaluate([t, t], mdp).grad.sum())

    if not slope(0.0) < 0.0 < slope(1.0):
        raise ValueError("V(t, t) is monotone on [0, 1]")
    return _bisect(lambda t: slope(t) < 0.0, 0.0, 1.0)


def robust_gap(theta, mdp: ToyMDP = PAPER_MDP) -> np.ndarray:
    """max_s (V^π(s) − V^{π∘ν*(π)}(s)) ≥ 0; zero exactly on Θ_Robust (definition in App. D)."""
    _, v_adv, _ = strongest_adversary(theta, mdp)
    return np.max(evaluate(theta, mdp).V - v_adv, axis=-1)


def robust_mask(n: int, mdp: ToyMDP = PAPER_MDP, tol: float = 1e-12):
    """Θ_Robust on the n×n grid α_i = β_i = i/(n−1) (indexing [i_α, i_β]); the diagonal is on the grid."""
    t = np.linspace(0.0, 1.0, n)
    grid = np.stack(np.meshgrid(t, t, indexing="ij"), axis=-1)
    return robust_gap(grid, mdp) <= tol, t


def robust_cut_point(mdp: ToyMDP = PAPER_MDP, tol: float = 1e-12) -> tuple[float, float]:
    """The junction of Θ_Robust's two parts (Prop. D.1 (1): the cut point (β̃, β̃)).

    Θ_Robust is the diagonal plus a 2-D part; the 2-D part's highest point is computed as
    sup{β : (1, β) ∈ Θ_Robust} by bisection on the robustness predicate along the α = 1 edge (it
    is the edge furthest from the diagonal), independently of ``beta_tilde``. Every diagonal point
    above it is a cut point too (the diagonal there is a 1-D whisker); this is the lowest one,
    the one the paper names. Connectivity is checked on a grid by ``connected_components``.
    """
    if not robust_gap([1.0, 0.0], mdp) <= tol or robust_gap([1.0, 1.0 - 1e-9], mdp) <= tol:
        raise ValueError("robustness along α = 1 is not of the expected shape")
    b = _bisect(lambda x: bool(robust_gap([1.0, x], mdp) <= tol), 0.0, 1.0)
    return b, b


def connected_components(mask: np.ndarray) -> int:
    """Number of 8-connected components of a boolean grid (breadth-first search)."""
    mask = np.asarray(mask, dtype=bool)
    seen = np.zeros_like(mask)
    n_rows, n_cols = mask.shape
    count = 0
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        count += 1
        seen[start] = True
        queue = deque([start])
        while queue:
            i, j = queue.popleft()
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    a, b = i + di, j + dj
                    if 0 <= a < n_rows and 0 <= b < n_cols and mask[a, b] and not seen[a, b]:
                        seen[a, b] = True
                        queue.append((a, b))
    return count


@dataclass
class PGAResult:
    """Outcome of projected gradient ascent from a batch of starts (rows)."""

    paradigm: str
    starts: np.ndarray
    final: np.ndarray
    tail_mean: np.ndarray
    tail_spread: np.ndarray
    paths: np.ndarray = field(repr=False)
    """(len(record), steps + 1, 2) iterates of the recorded starts."""


def run_pga(paradigm: str, starts, steps: int = 4000, lr: float = 0.01, record=(), mdp: ToyMDP = PAPER_MDP,
            tail: float = 0.1) -> PGAResult:
    """Projected gradient ascent θ ← Proj_{[0,1]²}(θ + lr · g(θ)), all starts at once.

    g is the paradigm's ascent direction from ``paradigm_objective`` (exact gradient for SPO,
    Danskin gradient of the active strongest adversary for ARPO, gradient under the KL-surrogate
    adversary for BARPO). Constant step. The reached policy is reported as the mean of the last
    ``tail`` fraction of iterates (a subgradient method on ARPO's kinks ends in an O(lr)
    oscillation around the limit) together with the tail's spread (max ∞-distance to that mean).
    """
    x = np.array(starts, dtype=np.float64, copy=True)
    record = np.asarray(record, dtype=np.intp)
    n_tail = max(1, int(round(tail * steps)))
    paths = np.empty((record.size, steps + 1, 2))
    paths[:, 0] = x[record]
    tail_iter = np.empty((n_tail,) + x.shape)
    for k in range(steps):
        _, g, _ = paradigm_objective(paradigm, x, mdp)
        x = np.clip(x + lr * g, 0.0, 1.0)
        paths[:, k + 1] = x[record]
        if k >= steps - n_tail:
            tail_iter[k - (steps - n_tail)] = x
    mean = tail_iter.mean(axis=0)
    spread = np.abs(tail_iter - mean).max(axis=(0, 2))
    return PGAResult(paradigm, np.asarray(starts, dtype=np.float64), x, mean, spread, paths)


def classify(paradigm: str, theta, spread, mdp: ToyMDP = PAPER_MDP, tol_x: float = 1e-2,
             tol_g: float = 5e-2):
    """Classify reached policies into ``CLASSES`` (first matching rule wins).

    * "global optimum": within tol_x (∞-norm) of argmax V^π(μ0) (here (1, 1); found among the
      deterministic policies, where the optimum of a finite MDP lies).
    * "sticky": settled (tail spread ≤ tol_x), ε-stationary for the paradigm's own objective
      (σ ≤ tol_g with ``stationarity``(eps = 2·G·tol_x, box_tol = tol_x), G the largest adversary
      gradient norm there, so every piece active somewhere in the tol_x-ball counts), and low
      natural value: V^π(μ0) − V⁻(μ0) < ½ (V*(μ0) − V⁻(μ0)) (Proposition 3.1's yardstick).
    * "robust": settled, ε-stationary, not low-valued, and robust up to the same tolerance
      (robust_gap ≤ 2·G·tol_x).
    * "other": anything else (vulnerable or unsettled).
    Returns (class labels (n,), dict of the per-run numbers used).
    """
    theta = np.asarray(theta, dtype=np.float64)
    spread = np.asarray(spread, dtype=np.float64)
    det = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    j_det = evaluate(det, mdp).J
    v_star, v_minus = j_det.max(), j_det.min()
    x_opt = det[np.argmax(j_det)]
    nat = evaluate(theta, mdp).J
    _, _, adv = strongest_adversary(theta, mdp)
    g_norm = np.linalg.norm(adversarial_evaluate(theta, mdp).grad, axis=-1).max(axis=-1)
    eps = 2.0 * g_norm * tol_x
    sigma = stationarity(paradigm, theta, mdp, eps=eps if paradigm == "ARPO" else 0.0, box_tol=tol_x)
    gap = robust_gap(theta, mdp)
    settled = spread <= tol_x
    stationary = settled & (sigma <= tol_g)
    low = nat - v_minus < 0.5 * (v_star - v_minus)
    is_opt = np.abs(theta - x_opt).max(axis=-1) <= tol_x
    labels = np.full(theta.shape[:-1], "other", dtype=object)
    labels[stationary & (gap <= eps)] = "robust"
    labels[stationary & low] = "sticky"
    labels[is_opt] = "global optimum"
    return labels, {"natural": nat, "adversarial": adv, "sigma": sigma, "gap": gap, "settled": settled}
