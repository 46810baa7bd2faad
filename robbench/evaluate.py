"""The evaluator: N episodes of one agent under one attack, as one batch (protocol.md, "Evaluation").

All episodes run at once over N env copies: at every step the live episodes' normalised states go
through the attack and the policy as one (live, obs_dim) batch. Actions are the deterministic mean
μ(ŝ), passed to MuJoCo unclipped; the filter is frozen; episode i resets with seed base_seed + i;
returns are sums of raw rewards. The same inputs give the same returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from robbench.envs import EnvBatch, get_env_spec
from robbench.errors import RobbenchError, validate_count
from robbench.policy import Agent
from robbench.threat import Attack, LearnedAttack, Victim, check_in_ball, validate_eps

DEFAULT_EPISODES = 50
DEFAULT_BASE_SEED = 1_000_000  # far from the seeds training resets use


@dataclass(frozen=True)
class Protocol:
    """The evaluation protocol of one cell; part of its key."""

    eps: float
    episodes: int = DEFAULT_EPISODES
    base_seed: int = DEFAULT_BASE_SEED
    max_steps: int = 1000
    deterministic: bool = True

    @classmethod
    def for_env(cls, env: str, eps: float | None = None, episodes: int = DEFAULT_EPISODES,
                base_seed: int = DEFAULT_BASE_SEED) -> Protocol:
        spec = get_env_spec(env)
        validate_count(episodes, "episodes")
        return cls(eps=validate_eps(spec.eps if eps is None else eps), episodes=episodes,
                   base_seed=base_seed, max_steps=spec.max_episode_steps)

    def departures(self, env: str) -> list[str]:
        """How this protocol departs from the standard one (empty list: standard)."""
        spec = get_env_spec(env)
        out = []
        if abs(self.eps - spec.eps) > 1e-12:
            out.append(f"eps {self.eps:g} (protocol {spec.eps:g})")
        if self.episodes < DEFAULT_EPISODES:
            out.append(f"{self.episodes} episodes (protocol {DEFAULT_EPISODES})")
        if not self.deterministic:
            out.append("stochastic actions")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvalResult:
    returns: np.ndarray
    lengths: np.ndarray
    seeds: np.ndarray
    env_steps: int
    wall_s: float
    max_perturbation: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    @property
    def std(self) -> float:
        return float(self.returns.std())


ProgressFn = Callable[[int, int], None]  # (episodes finished, env steps so far)


def evaluate(agent: Agent, attack: Attack, protocol: Protocol, progress: ProgressFn | None = None,
             seeds: np.ndarray | None = None) -> EvalResult:
    """Run `protocol.episodes` episodes of `agent` under `attack`, all as one batch.

    `seeds` (one per episode) overrides base_seed + i; only screening on held-out seeds uses it
    (e.g. `targeted` runs every candidate on the same few seeds), never a protocol cell."""
    if abs(attack.eps - protocol.eps) > 1e-12:
        raise RobbenchError(f"attack ε {attack.eps} differs from the protocol ε {protocol.eps}")
    n = protocol.episodes
    envs = EnvBatch(agent.env, n)
    victim = Victim(agent)
    gen = torch.Generator().manual_seed(protocol.base_seed)
    seeds = protocol.base_seed + np.arange(n) if seeds is None else np.asarray(seeds, dtype=np.int64)
    if len(seeds) != n:
        raise RobbenchError(f"{len(seeds)} seeds for {n} episodes")
    start = time.perf_counter()
    raw = np.stack([envs.reset_one(i, seed=int(seeds[i])) for i in range(n)])
    returns = np.zeros(n)
    lengths = np.zeros(n, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    max_pert = 0.0
    max_change, sum_change = 0.0, 0.0
    steps = 0
    try:
        while alive.any():
            idx = np.flatnonzero(alive)
            clean = torch.from_numpy(agent.normalize(raw[idx])).float()
            perturbed = attack.perturb_episodes(victim, clean, gen, idx)
            max_pert = max(max_pert, check_in_ball(perturbed, clean, protocol.eps, attack.name))
            actions_t = agent.act(perturbed)
            if attack.name != "none":
                # How far the attack moved the action (trust flag: a gradient attack that never moves it).
                change = (actions_t - agent.act(clean)).abs().amax(dim=-1)
                max_change = max(max_change, float(change.max()))
                sum_change += float(change.sum())
            actions = actions_t.numpy().astype(np.float64)
            for j, i in enumerate(idx):
                raw[i], reward, terminated, truncated = envs.step_one(i, actions[j])
                returns[i] += reward
                lengths[i] += 1
                if terminated or truncated or lengths[i] >= protocol.max_steps:
                    alive[i] = False
            steps += len(idx)
            if progress is not None:
                progress(int(n - alive.sum()), steps)
    finally:
        envs.close()
    info = {"max_action_change": max_change, "mean_action_change": sum_change / max(steps, 1)}
    if attack.member_label() is not None:
        info["member"] = attack.member_label()
    return EvalResult(returns, lengths, seeds, steps, time.perf_counter() - start, max_pert, info)


def resolve_cell(
    store, agent_id: str, attack_name: str, eps: float | None = None, episodes: int = DEFAULT_EPISODES,
    base_seed: int = DEFAULT_BASE_SEED, attack_params: dict[str, Any] | None = None,
):
    """(agent record, protocol, attack, cell key) of one cell, without running anything."""
    from robbench.registry import get_attack
    from robbench.store import cell_key

    record = store.get_agent(agent_id)
    protocol = Protocol.for_env(record.env, eps=eps, episodes=episodes, base_seed=base_seed)
    attack = get_attack(attack_name)(protocol.eps, **(attack_params or {}))
    key = cell_key(agent_id, record.sha256, attack.name, attack.config(), protocol.to_dict())
    return record, protocol, attack, key


def evaluate_cell(
    store, agent_id: str, attack_name: str, eps: float | None = None, episodes: int = DEFAULT_EPISODES,
    base_seed: int = DEFAULT_BASE_SEED, attack_params: dict[str, Any] | None = None, force: bool = False,
    progress: ProgressFn | None = None, fit: bool = True, fit_progress=None,
) -> tuple[str, EvalResult | None]:
    """Evaluate one (agent, attack, protocol) cell and store it; a finished cell is skipped.

    A learned attack is fitted first (or its stored artifact reused; `fit=False` refuses to train).
    Returns (cell key, result), result None when the cell already existed and `force` is off.
    """
    from robbench import provenance

    record, protocol, attack, key = resolve_cell(store, agent_id, attack_name, eps, episodes, base_seed,
                                                 attack_params)
    if store.has_cell(key) and not force:
        return key, None
    agent = store.load_agent(agent_id)
    fit_meta = None
    if isinstance(attack, LearnedAttack):
        from robbench.artifacts import ensure_fitted

        fit_meta = ensure_fitted(store, record, attack, Victim(agent), fit=fit, progress=fit_progress)
    result = evaluate(agent, attack, protocol, progress)
    if fit_meta is not None:
        result.info["fit"] = {k: fit_meta.get(k) for k in ("fit_stats", "wall_s", "code_version", "created")}
    cell = {
        "cell_key": key, "agent_id": agent_id, "agent_sha256": record.sha256, "env": record.env,
        "attack": attack.name, "attack_config": attack.config(), "protocol": protocol.to_dict(),
        "eps": protocol.eps, "episodes": protocol.episodes, "mean": result.mean, "std": result.std,
        "min": float(result.returns.min()), "max": float(result.returns.max()),
        "env_steps": result.env_steps, "wall_s": result.wall_s,
        "info": {"code_version": provenance.code_version(), "machine": provenance.machine_summary(),
                 "max_perturbation": result.max_perturbation, **result.info},
    }
    episodes_rows = [
        (i, int(result.seeds[i]), float(result.returns[i]), int(result.lengths[i])) for i in range(protocol.episodes)
    ]
    store.write_cell(cell, episodes_rows)
    return key, result


def evaluate_attack(
    store, agent_id: str, attack_name: str, eps: float | None = None, episodes: int = DEFAULT_EPISODES,
    base_seed: int = DEFAULT_BASE_SEED, attack_params: dict[str, Any] | None = None, force: bool = False,
    progress: ProgressFn | None = None, fit: bool = True, fit_progress=None,
) -> list[tuple[str, EvalResult | None]]:
    """Evaluate every member of an attack's scan (one cell each; a plain attack has one member)."""
    from robbench.registry import get_attack

    cls = get_attack(attack_name)
    params = dict(attack_params or {})
    members = cls.scan_members(params) if issubclass(cls, LearnedAttack) else [{}]
    return [
        evaluate_cell(store, agent_id, attack_name, eps, episodes, base_seed, {**params, **member}, force,
                      progress, fit, fit_progress)
        for member in members
    ]
