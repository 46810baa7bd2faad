"""Certified bounds on the policy mean over the ε-ball (protocol.md, "Certification").

For an agent, ε and a bound method (IBP, CROWN-IBP or CROWN, via :mod:`robbench.lirpa_compat`):

1. **States.** Natural rollouts of the agent, run by the evaluator itself (deterministic mean
   actions, frozen filter, episode i reset with seed ``base_seed + i``; :func:`collect_states`
   records the normalised state of every step). ``n`` states are drawn uniformly without
   replacement from all visited states with an explicit seed, so a certificate is reproducible.
2. **Bounds.** ``[lb, ub]`` of μ over ``B_ε(s) = {ŝ : |ŝ − s|_∞ ≤ ε}`` for every state, in batches.
   Only the bound computation is timed (``seconds_per_1000``); tracing the network is not.
3. **Statistics** (protocol.md): ``u = max(|lb − μ(s)|, |ub − μ(s)|)`` elementwise; the certified
   action deviation of a state is ``max_i u_i`` (a bound on ``max_i |μ_i(ŝ) − μ_i(s)|``); the
   SA-PPO style bound is ``Σ_i u_i² / σ_i²`` (SA-PPO, Zhang et al. 2020, the convex-relaxation
   upper bound on the action KL term, up to the factor ½). Per method: mean and max over states
   of both, and the fraction of states whose certified deviation is ``≤ threshold``.
4. **Soundness self-check**, before anything is stored: μ at every state, uniform and corner samples
   of every state's ball, and, on up to ``check_states`` states, signed-gradient PGD maximising and
   minimising each μ_i and MAD-style SGLD maximising ``Σ((μ(ŝ) − μ(s))/σ̃)²`` (attacks/mad.py).
   Any point outside ``[lb, ub]`` beyond float32 slack raises :class:`UnsoundBoundError`; nothing
   is written for that agent.

The three methods are reported separately and never combined: CROWN is usually tighter than IBP,
but on networks with very large weights its linear relaxations of tanh over huge intervals can be
looser (both stay sound; lirpa_compat's tests show it). Whenever CROWN or CROWN-IBP is certified,
IBP is computed on the same states as a reference and ``info["vs_ibp"]`` counts where the method
was looser.

**Default threshold: 0.1 action units, absolute and ε-independent.** The paper's environments
(Hopper, Walker2d, HalfCheetah, Ant) take actions in [−1, 1], so 0.1 is 5 % of an actuator's
range: a deviation below it barely changes the applied control. It is deliberately *not* relative
to σ: a σ-relative threshold would reward agents that keep a wide exploration σ, and the
σ-relative view is already reported by ``Σ u²/σ²``. Nor does it scale with ε, so fractions are
comparable across ε. (Humanoid's actions lie in [−0.4, 0.4]; pass a smaller ``--threshold`` there.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from robbench import lirpa_compat
from robbench.errors import RobbenchError, unknown, validate_count
from robbench.evaluate import DEFAULT_BASE_SEED, Protocol, evaluate
from robbench.pgd import sign_gradient_ascent
from robbench.policy import Agent
from robbench.threat import Attack, Victim, validate_eps

METHODS: tuple[str, ...] = lirpa_compat.METHODS
DEFAULT_STATES = 1000
DEFAULT_THRESHOLD = 0.1
"""Certified-deviation threshold in action units (see the module docstring for the choice)."""
DEFAULT_SAMPLE_SEED = 0
DEFAULT_CHECK_SEED = 1
ROLLOUT_EPISODES = 8  # first round of natural episodes; more rounds only if too few states
MAX_EPISODES = 2000
BATCH_SIZE = 500
CHECK_STATES = 1000  # states attacked by PGD/MAD in the soundness check (all of them by default)
CHECK_SAMPLES = 8  # uniform and as many corner samples per state, for every state
PGD_STEPS = 20
PGD_RESTARTS = 2  # one from a random corner, one from a uniform start
ABS_TOL = 1e-5  # float32 slack of "lb ≤ μ(ŝ) ≤ ub", as in tests/test_lirpa_compat.py
REL_TOL = 1e-5


class UnsoundBoundError(RobbenchError):
    """A point of the ε-ball was found outside a computed bound; that bound is never stored."""


# --------------------------------------------------------------------------------------- states
@dataclass
class StateSample:
    """`states` (n, obs_dim) float32, drawn from `visited` states of `episodes` natural episodes."""

    states: torch.Tensor
    visited: int
    episodes: int
    base_seed: int
    sample_seed: int
    mean_episode_length: float

    def info(self) -> dict[str, Any]:
        return {"base_seed": self.base_seed, "episodes": self.episodes, "visited": self.visited,
                "sample_seed": self.sample_seed, "mean_episode_length": self.mean_episode_length,
                "sampling": "uniform without replacement over all visited normalised states"}


class _StateRecorder(Attack):
    """ŝ = s (the natural rollout of the `none` attack), keeping a copy of every state it sees."""

    name = "record-states"

    def __init__(self) -> None:
        super().__init__(0.0)
        self.seen: list[torch.Tensor] = []

    def perturb(self, victim: Victim, states: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        self.seen.append(states.detach().clone())
        return states


def collect_states(
    agent: Agent, n: int, base_seed: int = DEFAULT_BASE_SEED, sample_seed: int = DEFAULT_SAMPLE_SEED,
    episodes: int = ROLLOUT_EPISODES, max_episodes: int = MAX_EPISODES,
) -> StateSample:
    """Draw `n` normalised states from the agent's natural (unattacked, deterministic) episodes.

    Episodes run through :func:`robbench.evaluate.evaluate` with seeds base_seed, base_seed + 1, …;
    after the first `episodes`, further rounds are sized from the mean episode length until at
    least `n` states were visited (at most `max_episodes` episodes in all).
    """
    validate_count(n, "states")
    recorder = _StateRecorder()
    done, visited = 0, 0
    round_size = episodes
    while visited < n and done < max_episodes:
        round_size = max(1, min(round_size, max_episodes - done))
        evaluate(agent, recorder, Protocol.for_env(agent.env, eps=0.0, episodes=round_size,
                                                   base_seed=base_seed + done))
        done += round_size
        visited = sum(len(s) for s in recorder.seen)
        mean_len = visited / done
        round_size = min(256, math.ceil(1.25 * max(n - visited, 0) / mean_len) + 1)
    if visited < n:
        raise RobbenchError(
            f"only {visited} states were visited in {done} natural episodes of {agent.agent_id!r}; "
            f"ask for --states ≤ {visited}"
        )
    every = torch.cat(recorder.seen).float()
    idx = np.sort(np.random.default_rng(sample_seed).choice(visited, size=n, replace=False))
    return StateSample(every[torch.from_numpy(idx)].contiguous(), visited, done, base_seed, sample_seed,
                       visited / done)


# --------------------------------------------------------------------------------------- bounds
def compute_bounds(
    bmodel: Any, states: torch.Tensor, eps: float, method: str, batch_size: int = BATCH_SIZE,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(lb, ub, seconds) of μ over every state's ε-ball, in batches; only the bounding is timed."""
    lbs, ubs = [], []
    with torch.no_grad():
        lirpa_compat.bounds(bmodel, states[: min(8, len(states))], eps, method)  # warm-up, untimed
        start = time.perf_counter()
        for i in range(0, len(states), batch_size):
            lb, ub = lirpa_compat.bounds(bmodel, states[i:i + batch_size], eps, method)
            lbs.append(lb.detach())
            ubs.append(ub.detach())
        seconds = time.perf_counter() - start
    return torch.cat(lbs), torch.cat(ubs), seconds


def certified_deviation(lb: torch.Tensor, ub: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """u = max(|lb − μ(s)|, |ub − μ(s)|) elementwise (protocol.md)."""
    return torch.maximum((lb - mu).abs(), (ub - mu).abs())


def certificate_stats(u: torch.Tensor, std: torch.Tensor, threshold: float) -> dict[str, float]:
    """The stored statistics of one method from u (states, act_dim) and the policy σ (act_dim)."""
    dev = u.max(dim=1).values.double()
    sum_u2 = (u.double() / std.double()).pow(2).sum(dim=1)
    return {
        "mean_dev": float(dev.mean()), "max_dev": float(dev.max()),
        "mean_sum_u2_sigma2": float(sum_u2.mean()), "max_sum_u2_sigma2": float(sum_u2.max()),
        "frac_below": float((dev <= threshold).double().mean()),
    }


# ------------------------------------------------------------------------------------ soundness
@dataclass
class BallProbe:
    """Points of the states' ε-balls and μ there, to be checked against every method's bounds.

    `values[k]` is μ(`points[k]`), a point of the ball of state `owner[k]`; `kind[k]` indexes
    `KINDS`. `attack_dev` is the largest max_i |μ_i(ŝ) − μ_i(s)| any probe point reached per
    state: an empirical lower bound on the true deviation, to compare with the certified one.
    """

    KINDS = ("centre", "uniform", "corner", "pgd", "mad")
    values: torch.Tensor
    owner: torch.Tensor
    kind: torch.Tensor
    attack_dev: torch.Tensor
    attacked_states: int
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def points(self) -> int:
        return len(self.values)


def probe_ball(
    mean_net: nn.Module, std: torch.Tensor, states: torch.Tensor, eps: float, seed: int = DEFAULT_CHECK_SEED,
    check_states: int = CHECK_STATES, samples: int = CHECK_SAMPLES, steps: int = PGD_STEPS,
    restarts: int = PGD_RESTARTS,
) -> BallProbe:
    """Search every state's ball for extreme values of μ (see the module docstring, step 4)."""
    gen = torch.Generator().manual_seed(seed)
    n, d = states.shape
    chunks: list[tuple[torch.Tensor, torch.Tensor, int]] = []  # (points, owner, kind)
    all_rows = torch.arange(n)
    chunks.append((states, all_rows, 0))
    rows = all_rows.repeat_interleave(samples)
    centre = states[rows]
    chunks.append((centre + (torch.rand(centre.shape, generator=gen) * 2 - 1) * eps, rows, 1))
    corner_sign = torch.randint(0, 2, centre.shape, generator=gen).to(states.dtype) * 2 - 1
    chunks.append((centre + corner_sign * eps, rows, 2))

    m = min(check_states, n)
    attacked = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False)))
    with torch.no_grad():
        mu = mean_net(states)
    act = mu.shape[1]
    # PGD: one row per (attacked state, output i, direction ±, restart)
    per = act * 2 * restarts
    rows = attacked.repeat_interleave(per)
    out_idx = torch.arange(act).repeat_interleave(2 * restarts).repeat(m)
    direction = torch.tensor([1.0, -1.0]).repeat_interleave(restarts).repeat(m * act)

    for r in range(restarts):
        start = ("corner", "uniform")[r % 2]
        sel = torch.arange(r, len(rows), restarts)  # this restart's rows
        rows_r, dir_r, out_r = rows[sel], direction[sel], out_idx[sel]

        def objective(x: torch.Tensor, dir_r=dir_r, out_r=out_r) -> torch.Tensor:
            return dir_r * mean_net(x).gather(1, out_r[:, None]).squeeze(1)

        found = sign_gradient_ascent(objective, states[rows_r], eps, gen, steps=steps,
                                     step_size=eps / 8, start=start)
        chunks.append((found, rows_r, 3))

    # MAD-style: maximise Σ((μ(ŝ) − μ(s))/σ̃)², σ̃ = σ/mean(σ), SGLD noise as attacks/mad.py
    rows = attacked.repeat_interleave(restarts)
    inv_scale = (std.mean() / std).detach()
    mu_rows = mu[rows]
    step = eps / 10
    noise = math.sqrt(2.0 * step)
    found = sign_gradient_ascent(
        lambda x: ((mean_net(x) - mu_rows) * inv_scale).pow(2).sum(-1), states[rows], eps, gen,
        steps=steps, step_size=step, start="corner", noise=lambda i: noise / (i + 2),
    )
    chunks.append((found, rows, 4))

    points = torch.cat([c[0] for c in chunks])
    owner = torch.cat([c[1] for c in chunks])
    kind = torch.cat([torch.full((len(c[1]),), c[2]) for c in chunks])
    dist = float((points - states[owner]).abs().max())
    if dist > eps + 1e-6:  # the probe itself must stay in the ball, or the check proves nothing
        raise RuntimeError(f"soundness probe left the ε-ball ({dist} > {eps})")
    with torch.no_grad():
        values = mean_net(points)
    dev = (values - mu[owner]).abs().max(dim=1).values
    attack_dev = torch.zeros(n).scatter_reduce(0, owner, dev, reduce="amax")
    config = {"seed": seed, "samples_per_state": 2 * samples, "attacked_states": m, "pgd_steps": steps,
              "pgd_restarts": restarts, "mad_restarts": restarts, "abs_tol": ABS_TOL, "rel_tol": REL_TOL}
    return BallProbe(values, owner, kind, attack_dev, m, config)


def check_sound(probe: BallProbe, lb: torch.Tensor, ub: torch.Tensor, what: str) -> float:
    """Raise UnsoundBoundError if a probe value leaves [lb, ub] beyond float32 slack.

    Returns the worst margin (max over points and outputs of how far a value is beyond its bound;
    ≤ 0 when every point is inside, > 0 but within slack is tolerated rounding).
    """
    lo, hi = lb[probe.owner], ub[probe.owner]
    over = torch.maximum(lo - probe.values, probe.values - hi)  # > 0: outside
    slack = ABS_TOL + REL_TOL * torch.maximum(lo.abs(), hi.abs())
    bad = over > slack
    if bool(bad.any()):
        k, i = (int(v) for v in torch.nonzero(bad)[(over - slack)[bad].argmax()])
        # ^ the worst violation
        kind = BallProbe.KINDS[int(probe.kind[k])]
        s = int(probe.owner[k])
        raise UnsoundBoundError(
            f"{what} is unsound: a {kind} point in the ball of state {s} gives μ_{i} = "
            f"{float(probe.values[k, i]):.6g} outside [{float(lo[k, i]):.6g}, {float(hi[k, i]):.6g}] "
            f"({int(bad.sum())} violations); nothing was stored"
        )
    return float(over.max())


# ------------------------------------------------------------------------------------- certify
@dataclass
class MethodCertificate:
    """One method's bounds on one set of states, after its soundness check passed."""

    method: str
    lb: torch.Tensor
    ub: torch.Tensor
    u: torch.Tensor
    stats: dict[str, float]
    seconds: float
    seconds_per_1000: float
    worst_margin: float
    vs_ibp: dict[str, Any] | None = None


def certify_policy(
    mean_net: nn.Module, std: torch.Tensor, states: torch.Tensor, eps: float,
    methods: Sequence[str] = METHODS, threshold: float = DEFAULT_THRESHOLD, batch_size: int = BATCH_SIZE,
    check_seed: int = DEFAULT_CHECK_SEED, check_states: int = CHECK_STATES, label: str = "policy",
) -> tuple[dict[str, MethodCertificate], BallProbe, dict[str, Any]]:
    """Bounds, statistics and soundness check of each method for a policy mean μ = `mean_net`.

    Returns ({method: certificate}, the probe used for the check, extra info). Raises
    UnsoundBoundError, naming the method and the escaping point, if any bound is unsound.
    """
    methods = list(dict.fromkeys(methods))
    for m in methods:
        if m not in METHODS:
            raise unknown("bound method", m, METHODS)
    eps = validate_eps(eps)
    states = states.detach().float()
    std = std.detach().float()
    start = time.perf_counter()
    bmodel = lirpa_compat.bounded_module(mean_net, states[:1])
    build_s = time.perf_counter() - start
    with torch.no_grad():
        mu = mean_net(states)
    probe = probe_ball(mean_net, std, states, eps, seed=check_seed, check_states=check_states)
    certs: dict[str, MethodCertificate] = {}
    ibp_ref: tuple[torch.Tensor, torch.Tensor] | None = None
    for method in (["ibp"] if "ibp" not in methods and len(methods) else []) + methods:
        lb, ub, seconds = compute_bounds(bmodel, states, eps, method, batch_size)
        worst = check_sound(probe, lb, ub, f"the {method} bound of {label} at ε = {eps:g}")
        if method == "ibp":
            ibp_ref = (lb, ub)
            if method not in methods:
                continue
        u = certified_deviation(lb, ub, mu)
        certs[method] = MethodCertificate(
            method, lb, ub, u, certificate_stats(u, std, threshold), seconds,
            seconds * 1000.0 / len(states), worst,
        )
    for method, cert in certs.items():
        if method != "ibp" and ibp_ref is not None:
            cert.vs_ibp = compare_to_ibp(cert, ibp_ref, mu)
    return certs, probe, {"bounded_module_build_s": build_s}


def compare_to_ibp(cert: MethodCertificate, ibp: tuple[torch.Tensor, torch.Tensor], mu: torch.Tensor) -> dict:
    """Where `cert` is looser than IBP on the same states (reported, never assumed impossible)."""
    ilb, iub = ibp
    tol = ABS_TOL
    iu = certified_deviation(ilb, iub, mu)
    dev, idev = cert.u.max(1).values, iu.max(1).values
    return {
        "looser_states": int((dev > idev + tol).sum()),
        "looser_width_elements": int(((cert.ub - cert.lb) > (iub - ilb) + tol).sum()),
        "elements": int(cert.u.numel()),
        "ibp_mean_dev": float(idev.double().mean()),
        "max_excess_dev": float((dev - idev).max()),
    }


# ---------------------------------------------------------------------------------- the harness
@dataclass
class CertifyOutcome:
    """One stored (or already present) certificate row and whether this call computed it."""

    row: dict[str, Any]
    computed: bool


def certificate_key(row: dict[str, Any]) -> tuple:
    return (row["agent_id"], row["agent_sha256"], row["method"], float(row["eps"]), int(row["states"]),
            float(row["threshold"]))


def stored_certificates(store, agent_id: str, methods: Sequence[str], eps: float | None = None,
                        states: int = DEFAULT_STATES, threshold: float = DEFAULT_THRESHOLD) -> dict[str, dict[str, Any]]:
    """{method: stored row} of the certificates `certify_agent` would compute with these settings
    (`eps=None`: the agent's protocol ε), for the agent's current checkpoint; missing methods are absent.

    The row key is (agent, checkpoint hash, method, ε, states, threshold): `certify_agent` skips the
    methods found here, and the CLI reads the rows its certify jobs wrote back through it."""
    from robbench.envs import get_env_spec

    record = store.get_agent(agent_id)
    eps = validate_eps(get_env_spec(record.env).eps if eps is None else eps)
    existing = {certificate_key(r): r for r in store.certificates()}
    keys = {m: (agent_id, record.sha256, m, float(eps), int(states), float(threshold)) for m in methods}
    return {m: existing[k] for m, k in keys.items() if k in existing}


def parse_methods(selector: str) -> list[str]:
    """`all` or a comma-separated list of bound methods, in the canonical order."""
    if selector.strip() == "all":
        return list(METHODS)
    names = [m.strip() for m in selector.split(",") if m.strip()]
    if not names:
        raise unknown("bound method", selector, (*METHODS, "all"))
    for m in names:
        if m not in METHODS:
            raise unknown("bound method", m, (*METHODS, "all"))
    return [m for m in METHODS if m in names]


def validate_threshold(threshold: object, what: str = "--threshold") -> float:
    """The one check of a deviation threshold (CLI flag, grid key, job spec), named by `what`."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) \
            or threshold < 0:
        raise RobbenchError(f"{what} must be a finite number ≥ 0 (action units), got {threshold!r}")
    return float(threshold)


def certify_agent(
    store, agent_id: str, methods: Sequence[str] = METHODS, eps: float | None = None,
    states: int = DEFAULT_STATES, threshold: float = DEFAULT_THRESHOLD, force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[CertifyOutcome]:
    """Certify one stored agent with each method and store the rows; present rows are kept.

    `eps` defaults to the protocol ε of the agent's environment. A (agent, checkpoint hash, method,
    ε, states, threshold) row that exists is returned as is unless `force`. Nothing is written
    unless every requested method passed its soundness check.
    """
    from robbench import provenance
    from robbench.envs import get_env_spec

    record = store.get_agent(agent_id)
    spec = get_env_spec(record.env)
    eps = validate_eps(spec.eps if eps is None else eps)
    validate_count(states, "states")
    threshold = validate_threshold(threshold, "threshold")
    methods = parse_methods(",".join(methods))
    stored = stored_certificates(store, agent_id, methods, eps, states, threshold)
    todo = [m for m in methods if force or m not in stored]
    if not todo:
        return [CertifyOutcome(stored[m], False) for m in methods]
    agent = store.load_agent(agent_id)
    sample = collect_states(agent, states)
    if progress is not None:
        progress("states")
    certs, probe, extra = certify_policy(
        agent.policy.mean_net, agent.policy.std, sample.states, eps, todo, threshold, label=repr(agent_id),
    )
    base_info = {
        "env": record.env, "protocol_eps": spec.eps, "standard_eps": abs(eps - spec.eps) <= 1e-12,
        "threshold_units": "action", "threshold_rule": "max_i u_i <= threshold",
        "state_sample": sample.info(), "soundness_check": {**probe.config, "points": probe.points},
        "batch_size": BATCH_SIZE, "torch_threads": torch.get_num_threads(),
        "code_version": provenance.code_version(), "machine": provenance.machine_summary(),
        "torch": torch.__version__, "auto_lirpa": _auto_lirpa_version(), **extra,
    }
    outcomes: dict[str, CertifyOutcome] = {}
    for method, cert in certs.items():
        attacked = torch.unique(probe.owner[probe.kind >= 3])
        row = {
            "agent_id": agent_id, "agent_sha256": record.sha256, "method": method, "eps": float(eps),
            "states": int(states), "threshold": float(threshold), **cert.stats,
            "seconds_per_1000": cert.seconds_per_1000, "soundness_checked_points": probe.points,
            "info": {
                **base_info, "bound_seconds": cert.seconds, "worst_margin": cert.worst_margin,
                "attack_mean_dev": float(probe.attack_dev[attacked].double().mean()),
                "attack_max_dev": float(probe.attack_dev.max()),
                "vs_ibp": cert.vs_ibp,
            },
        }
        store.write_certificate(row)
        outcomes[method] = CertifyOutcome(row, True)
        if progress is not None:
            progress(method)
    return [outcomes.get(m) or CertifyOutcome(stored[m], False) for m in methods]


def _auto_lirpa_version() -> str:
    try:
        from importlib.metadata import version

        return version("auto-LiRPA")
    except Exception:
        return "unknown"
