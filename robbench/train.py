"""Train one agent with a registered trainer and put its checkpoint in the results home."""

from __future__ import annotations

import time
from typing import Any

from robbench import provenance
from robbench.checkpoint import check_agent_file, file_sha256, save_agent
from robbench.errors import RobbenchError, validate_seed
from robbench.ppo import PPOConfig, PPOCore, ProgressFn
from robbench.registry import get_trainer
from robbench.resume import ResumePoint
from robbench.store import AgentRecord, ResultsStore

DEFAULT_PRESET = "paper"  # the paper's budget: what a board is ranked at
DEFAULT_NUM_ENVS = 8  # env copies per trainer (speed only: 2048 steps per iteration regardless)


def agent_id(env: str, method: str, budget: str, seed: int) -> str:
    """Agent ids read `<env>/<method>/<budget>/<seed>`, e.g. `hopper/barppo/paper/0`."""
    return f"{env}/{method}/{budget}/{seed}"


def build_config(
    method: str, env: str, seed: int = 0, preset: str = DEFAULT_PRESET, steps: int | None = None,
    num_envs: int = DEFAULT_NUM_ENVS, trainer_params: dict[str, Any] | None = None, **ppo_overrides: Any,
) -> tuple[PPOConfig, Any]:
    """The PPO config and Objective for `method` on `env`, trainer defaults merged with overrides.

    The config already holds the trainer's own PPO settings (`PPOConfig.with_objective`): it is the
    one the core runs and the checkpoint records."""
    trainer_cls = get_trainer(method)
    if isinstance(seed, int) and not isinstance(seed, bool) and seed < 0:
        raise RobbenchError(f"--seed must be ≥ 0, got {seed}")
    validate_seed(seed)
    params = {**trainer_cls.defaults(env), **(trainer_params or {})}
    unknown_params = set(trainer_params or {}) - set(trainer_cls.defaults(env))
    if unknown_params:
        valid = ", ".join(sorted(trainer_cls.defaults(env))) or "none"
        raise RobbenchError(f"method {method!r} has no setting {sorted(unknown_params)[0]!r}; valid: {valid}")
    cfg = PPOConfig.for_env(env, preset=preset, steps=steps, num_envs=num_envs, seed=seed, method=method,
                            trainer=params, **ppo_overrides)
    objective = trainer_cls(**params)
    return cfg.with_objective(objective), objective


def checkpoint_problem(record: AgentRecord) -> str | None:
    """Why a registered agent's checkpoint cannot be used (missing, unreadable, truncated, not an
    agent, or not the file registered at training), or None when it is sound."""
    try:
        if not record.path.is_file():
            return f"its checkpoint {str(record.path)!r} is missing"
        check_agent_file(record.path, expected_env=record.env)
        if file_sha256(record.path) != record.sha256:
            return f"its checkpoint {str(record.path)!r} changed since training (sha256 mismatch)"
    except RobbenchError as exc:
        return str(exc)
    except OSError as exc:
        return f"its checkpoint {str(record.path)!r} cannot be read ({exc.strerror or exc})"
    return None


def stored_record(store: ResultsStore, aid: str) -> AgentRecord | None:
    """The registered agent `aid` (sound checkpoint or not), else None."""
    return next((a for a in store.agents() if a.agent_id == aid), None)


def trained_record(store: ResultsStore, aid: str) -> AgentRecord | None:
    """The stored agent `aid` if it is registered and its checkpoint is sound (`checkpoint_problem`),
    else None: a missing, truncated or modified checkpoint does not count as trained."""
    record = stored_record(store, aid)
    return record if record is not None and checkpoint_problem(record) is None else None


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def stale_settings(record: AgentRecord, cfg: PPOConfig) -> dict[str, tuple[Any, Any]]:
    """The settings a stored agent was trained with that `cfg` (what the trainer builds today for the
    same method, env, seed and budget) would change: {dotted key: (then, now)}; {} when none.

    A key the recorded config lacks means what the trainer's `legacy_settings` says (e.g. AR-PPO's
    `pgd_start` was "step" before the setting existed); a key without a legacy entry was added with a
    default that keeps the old behaviour, so it is not a change. An agent with no recorded config
    (imported) is never stale."""
    recorded = record.meta.get("config")
    if not recorded:
        return {}
    legacy = {f"trainer.{k}": v for k, v in getattr(get_trainer(cfg.method), "legacy_settings", {}).items()}
    then, now = _flat(recorded), _flat(cfg.to_dict())
    out: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(then) | set(now)):
        old = then.get(key, legacy.get(key, now.get(key)))
        new = now.get(key, "<unset>")
        if old != new:
            out[key] = (old, new)
    return out


def describe_stale(diff: dict[str, tuple[Any, Any]]) -> str:
    """`trainer.pgd_start step → ball, …` for a `stale_settings` result."""
    return ", ".join(f"{k} {then!r} → {now!r}" for k, (then, now) in diff.items())


def train_agent(
    store: ResultsStore, method: str, env: str, seed: int = 0, preset: str = DEFAULT_PRESET,
    steps: int | None = None, num_envs: int = DEFAULT_NUM_ENVS, force: bool = False,
    trainer_params: dict[str, Any] | None = None, progress: ProgressFn | None = None,
    retrain_stale: bool = False, **ppo_overrides: Any,
) -> tuple[AgentRecord, bool]:
    """Train (unless already trained) and register an agent. Returns (record, trained_now).

    With `retrain_stale` an agent already stored is retrained when today's trainer would train it
    with other settings (`stale_settings`); the settings it replaced go into its provenance."""
    cfg, objective = build_config(method, env, seed, preset, steps, num_envs, trainer_params, **ppo_overrides)
    aid = agent_id(env, method, cfg.budget, seed)
    path = store.agent_path(env, method, cfg.budget, seed)
    existing = None if force else stored_record(store, aid)
    replaced = None if existing is None else checkpoint_problem(existing)
    if replaced is not None:  # retrained below, and said so (provenance.replaced_checkpoint)
        existing = None
    stale = stale_settings(existing, cfg) if existing is not None and retrain_stale else {}
    if stale:
        existing = None
    if existing is not None:
        stored = existing.meta.get("config", {}).get("trainer", {})
        differ = sorted(k for k, v in (trainer_params or {}).items() if stored.get(k, "<unset>") != v)
        if differ:
            raise RobbenchError(
                f"agent {aid!r} exists, trained with other settings ({', '.join(f'{k}={stored.get(k)!r}' for k in differ)}); "
                "use --force to retrain it, or another --home"
            )
        return existing, False
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    code_version = provenance.code_version()  # of the code that starts the run
    # A snapshot lacking any of the live state is ignored (training starts over): `PPOCore.train`
    # loads it against the core's own `state`.
    point = ResumePoint(
        store.home / "partial" / "train" / env / method / cfg.budget / f"seed{seed}.safetensors",
        identity={"agent_id": aid, "config": cfg.to_dict(), "code_version": code_version},
    )
    core = PPOCore(cfg, objective, resume=point)
    final = core.train(progress)
    meta = {
        "agent_id": aid, "method": method, "env": env, "gym_id": core.envs.spec.gym_id, "seed": seed,
        "preset": cfg.preset, "budget": cfg.budget, "steps": core.steps_done, "iterations": cfg.iterations,
        "eps": cfg.eps, "config": cfg.to_dict(),
        "provenance": {
            "code_version": code_version, "machine": provenance.machine(), "started": started,
            "wall_s": round(core.wall_s, 2), "final_train_return": final.get("mean_return"),
            "steps_per_s": round(final.get("steps_per_s", 0.0), 1),
            "resumed_from_iteration": core.resume.resumed_from,
        },
    }
    notes = {"snapshot_ignored": core.resume.discarded, "replaced_checkpoint": replaced,
             "retrained_stale": {k: list(v) for k, v in stale.items()} or None}
    meta["provenance"].update({k: v for k, v in notes.items() if v is not None})
    save_agent(core.agent(meta), path)
    core.envs.close()
    record = store.register_agent(meta, path)
    core.resume.clear()
    return record, True
