"""What a command asks for, as jobs: the one path from `train`, `evaluate`, `certify`, `zoo verify`
and `demo` (and the Python API) to the scheduler.

A grid file (robbench/grid.py) and a command line name the same work in two ways; both end in
`grid.train_jobs` / `grid.attack_jobs` / `grid.certify_jobs`, so a cell asked for on the command
line and in a grid is the same job with the same key, and the CLI only parses its flags and calls
these functions. Every check here raises a one-line RobbenchError before any work starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from robbench.certify import DEFAULT_STATES, DEFAULT_THRESHOLD
from robbench.errors import RobbenchError, unknown, validate_count
from robbench.evaluate import DEFAULT_EPISODES
from robbench.jobs import Job
from robbench.train import DEFAULT_NUM_ENVS, DEFAULT_PRESET


def parse_settings(items: list[str], what: str = "--param") -> dict[str, Any]:
    """`k=v` pairs; values parsed as JSON when possible (numbers, booleans), else kept as strings."""
    params: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise RobbenchError(f"{what} expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            params[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            params[k.strip()] = v
    return params


def plan_training(method: str, env: str, seeds: list[int], preset: str = DEFAULT_PRESET, steps: int | None = None,
                  num_envs: int = DEFAULT_NUM_ENVS, params: dict[str, Any] | None = None,
                  force: bool = False) -> list[Job]:
    """One train job per seed, the trainer, env, preset and settings checked first."""
    from robbench.envs import get_env_spec
    from robbench.grid import train_jobs
    from robbench.registry import get_trainer

    get_trainer(method), get_env_spec(env)
    validate_count(num_envs, "num_envs")
    return [job for _, job in train_jobs([method], [env], seeds, preset, steps, num_envs, {method: params or {}},
                                         force=force)]


def select_attacks(selector: str) -> tuple[list[str], dict[str, dict]]:
    """(attack names, their settings) of `all`, a standard suite (`standard`, `standard-v2`, …) or a
    comma-separated list of registered attacks; only a suite carries settings."""
    from robbench.registry import attacks

    table = attacks()
    if selector == "all":
        return list(table), {}
    if selector.startswith("standard"):
        from robbench.suite import get_suite

        suite = get_suite(selector)
        return list(suite.attacks), {n: dict(suite.params(n)) for n in suite.attacks if suite.params(n)}
    names = [n.strip() for n in selector.split(",") if n.strip()]
    for n in names:
        if n not in table:
            raise unknown("attack", n, table)
    return names, {}


def attack_settings(base: dict[str, dict], overrides: dict[str, Any]) -> dict[str, dict]:
    """`base` (a suite's settings) with `attack.key` overrides laid over it."""
    from robbench.registry import attacks

    table = attacks()
    out = {n: dict(p) for n, p in base.items()}
    for key, value in overrides.items():
        name, _, setting = key.partition(".")
        if not setting or name not in table:
            raise RobbenchError(f"--param expects attack.key=value with a registered attack, got {key!r}")
        out.setdefault(name, {})[setting] = value
    return out


@dataclass
class AttackPlan:
    """The jobs of an evaluation, and what was left out of it and why."""

    jobs: list[Job]
    no_critic: list[tuple[str, str]] = field(default_factory=list)  # (agent, attack): needs a critic it lacks
    unfitted: list[str] = field(default_factory=list)  # "agent × attack" cells left out under fit=False


def plan_attacks(store, agents: str, selector: str, episodes: int = DEFAULT_EPISODES, eps: float | None = None,
                 fit: bool = True, overrides: dict[str, Any] | None = None, force: bool = False) -> AttackPlan:
    """The fit and evaluate jobs of `agents` (`all`, `zoo` or ids) under the attacks `selector` names.

    Bad settings are one line now, not one failure per job. With `fit=False` a cell whose learned
    attack has no stored artifact cannot run: under `all` it is left out (listed in `unfitted`),
    under a named selection it is an error, since the caller asked for exactly that cell."""
    from robbench.evaluate import Protocol
    from robbench.grid import attack_jobs, drop_critic_cells
    from robbench.jobs import is_complete
    from robbench.registry import attacks
    from robbench.store import iter_agent_ids

    names, suite_params = select_attacks(selector)
    params = attack_settings(suite_params, overrides or {})
    if agents == "zoo":
        from robbench import zoo

        ids = zoo.import_into(store)
    else:
        ids = list(iter_agent_ids(store, agents))
    if not ids:
        raise RobbenchError("no agents in this results home; train one with `robbench train`")
    table = attacks()
    for name, p in params.items():
        table[name](Protocol.for_env(store.get_agent(ids[0]).env, eps=eps).eps, **p)
    jobs = attack_jobs({aid: () for aid in ids}, names, params, episodes, eps, fit=fit, force=force)
    jobs, no_critic = drop_critic_cells(store, jobs)  # never attack a value network an agent lacks
    plan = AttackPlan(jobs, no_critic)
    if fit:
        return plan
    runnable = []
    for job in jobs:
        spec = job.typed
        if table[spec.attack].needs_fit and not force and not is_complete(store, job) and not _fitted(store, spec):
            if selector != "all":
                raise RobbenchError(f"attack {spec.attack!r} is not fitted for agent {spec.agent_id!r}; run "
                                    "without --no-fit to train it")
            plan.unfitted.append(job.label.removeprefix("evaluate "))
            continue
        runnable.append(job)
    plan.jobs = runnable
    return plan


def plan_certify(store, agents: str, methods: list[str], eps: float | None = None, states: int = DEFAULT_STATES,
                 threshold: float = DEFAULT_THRESHOLD, force: bool = False) -> list[Job]:
    """One certify job per agent of `agents` (`all` or ids) in the home."""
    from robbench.grid import certify_jobs
    from robbench.store import iter_agent_ids

    ids = list(iter_agent_ids(store, agents))
    if not ids:
        raise RobbenchError("no agents in this results home; train one with `robbench train`")
    return certify_jobs({aid: () for aid in ids}, methods, eps, states, threshold, force)


def _fitted(store, spec) -> bool:
    try:
        return spec.fitted(store)
    except RobbenchError:
        return True  # let the job report it
