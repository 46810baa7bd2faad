"""The Python API `robbench.benchmark`: import (if needed) and evaluate one agent through the job path."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robbench.errors import RobbenchError, validate_count
from robbench.importers.agent import import_agent


# ------------------------------------------------------------------------------- Python API
@dataclass
class BenchmarkResult:
    """What `robbench.benchmark` returns: per-attack mean returns of one agent under one protocol."""

    agent_id: str
    env: str
    episodes: int
    returns: dict[str, float]  # attack -> mean return (a scan attack: its minimum over members)
    skipped: list[str] = field(default_factory=list)  # attacks not run (e.g. a critic attack, no critic)

    @property
    def natural(self) -> float | None:
        return self.returns.get("none")

    @property
    def worst(self) -> tuple[float, str] | None:
        """(min over natural and attacks of the mean return, which one)."""
        if not self.returns:
            return None
        attack = min(self.returns, key=lambda a: self.returns[a])
        return self.returns[attack], attack

    def __str__(self) -> str:
        rows = ", ".join(f"{a} {v:.1f}" for a, v in self.returns.items())
        worst = self.worst
        return f"{self.agent_id}: {rows}" + (f"; worst {worst[0]:.1f} ({worst[1]})" if worst else "")


def benchmark(policy_or_path, env: str = "hopper", attacks: str | list[str] = "standard", home=None,
              episodes: int = 50, workers: int | None = 1, **import_options: Any) -> BenchmarkResult:
    """Import (if needed) and evaluate an agent, through the same store and job path as the CLI.

    `policy_or_path`: a model file (imported with `import_options`: fmt, vecnormalize, obs_stats,
    raw_obs, activation, spec, name), an agent id of the home, or a loaded robbench Agent (its id
    must be registered in the home). `attacks`: "standard", "all", a comma-separated string or a
    list. The natural cell (`none`) is always included, so `worst` is min(natural, attacks)."""
    from robbench.evaluate import Protocol
    from robbench.grid import attack_jobs, drop_critic_cells
    from robbench.jobs import make_executor, run_jobs
    from robbench.plan import select_attacks
    from robbench.policy import Agent
    from robbench.store import ResultsStore, resolve_home

    validate_count(episodes, "episodes")
    names, params = select_attacks(attacks if isinstance(attacks, str) else ",".join(attacks))
    names = list(dict.fromkeys(["none", *names]))
    root = resolve_home(home)
    with ResultsStore(root) as store, tempfile.TemporaryDirectory(prefix="robbench-import-") as tmp:
        if isinstance(policy_or_path, Agent):
            aid = _register_loaded(store, policy_or_path)
        elif hasattr(policy_or_path, "save") and hasattr(policy_or_path, "policy"):  # an SB3 model object
            options = dict(import_options)
            model_file = Path(tmp) / f"{type(policy_or_path).__name__.lower()}.zip"
            policy_or_path.save(str(model_file))
            if hasattr(options.get("vecnormalize"), "save"):  # a VecNormalize object
                options["vecnormalize"], vec = Path(tmp) / "vecnormalize.pkl", options["vecnormalize"]
                vec.save(str(options["vecnormalize"]))
            options.setdefault("name", f"sb3-{type(policy_or_path).__name__.lower()}")
            aid = import_agent(store, model_file, env, fmt="sb3", **options).agent_id
        elif isinstance(policy_or_path, (str, Path)) and Path(policy_or_path).is_file():
            aid = import_agent(store, policy_or_path, env, **import_options).agent_id
        elif isinstance(policy_or_path, str):
            aid = store.get_agent(policy_or_path).agent_id
        else:
            raise RobbenchError(f"benchmark needs a model file, an agent id or a robbench Agent, got "
                                f"{type(policy_or_path).__name__}")
        record = store.get_agent(aid)
        jobs = attack_jobs({aid: ()}, names, params, episodes, None)
        jobs, notices = drop_critic_cells(store, jobs)
        protocol = Protocol.for_env(record.env, episodes=episodes).to_dict()
    executor = make_executor("local", workers, len(jobs))
    outcomes = run_jobs(jobs, root, executor)
    failed = [o for o in outcomes if o.status in ("failed", "skipped")]
    if failed:
        raise RobbenchError(f"{failed[0].job.label}: {failed[0].error}")
    returns: dict[str, float] = {}
    with ResultsStore(root, readonly=True) as store:
        for cell in store.cells():
            if cell["agent_id"] == aid and cell["agent_sha256"] == record.sha256 and cell["protocol"] == protocol \
                    and cell["attack"] in names and (cell["attack"] not in params or all(
                        cell["attack_config"].get(k) == v for k, v in params[cell["attack"]].items()
                        if k in cell["attack_config"])):
                returns[cell["attack"]] = min(returns.get(cell["attack"], math.inf), float(cell["mean"]))
    ordered = {n: returns[n] for n in names if n in returns}
    return BenchmarkResult(aid, record.env, episodes, ordered, [attack for _, attack in notices])


def _register_loaded(store, agent) -> str:
    """The id of a loaded robbench Agent in `store`, saving and registering its checkpoint there
    first if the home does not hold it (e.g. a zoo agent)."""
    from robbench.checkpoint import save_agent

    aid = agent.agent_id
    if aid not in {a.agent_id for a in store.agents()}:
        meta = agent.meta
        dst = store.agent_path(meta["env"], meta["method"], meta["budget"], int(meta["seed"]))
        save_agent(agent, dst)
        store.register_agent(meta, dst)
    return aid
