"""robbench: train, attack, certify and rank robust deep-RL agents under one protocol."""

from __future__ import annotations

__version__ = "0.1.0"


def load_agent(agent_id_or_path: str, home: str | None = None):
    """Load an agent: a checkpoint path, a zoo id, or an agent id of a results home.

    One line from Python: ``agent = robbench.load_agent("hopper/barppo/0")`` — a short zoo id
    ``<env>/<method>/<seed>``, checked against the zoo manifest's sha256 (robbench/zoo.py). A full
    id ``<env>/<method>/<budget>/<seed>`` is looked up in the results home (``home``, else
    ``$ROBBENCH_HOME``, else ``./robbench-results``) and, if that home does not have it, in the zoo.
    """
    from pathlib import Path

    from robbench import zoo
    from robbench.checkpoint import load_agent_file
    from robbench.errors import RobbenchError
    from robbench.store import DB_NAME, ResultsStore, resolve_home

    if agent_id_or_path.endswith(".safetensors") or Path(agent_id_or_path).is_file():
        return load_agent_file(agent_id_or_path)
    if agent_id_or_path.count("/") == 2:
        return zoo.load(agent_id_or_path)
    root = resolve_home(home)
    if (root / DB_NAME).is_file():
        with ResultsStore(root, readonly=True) as store:
            if agent_id_or_path in {a.agent_id for a in store.agents()}:
                return store.load_agent(agent_id_or_path)
    try:
        return zoo.load(agent_id_or_path)
    except RobbenchError:
        raise RobbenchError(f"unknown agent {agent_id_or_path!r}: not in results home {str(root)!r} "
                            "nor in the zoo (`robbench zoo list`)") from None


def benchmark(policy_or_path, env: str = "hopper", attacks="standard", home: str | None = None,
              episodes: int = 50, **import_options):
    """Import (if needed) and evaluate an agent under attacks; returns per-attack mean returns.

    Three lines from Python::

        import robbench
        result = robbench.benchmark("ppo_hopper.zip", env="hopper", vecnormalize="vecnormalize.pkl")
        print(result.worst)          # (min over natural and attacks, which one)

    `policy_or_path`: an SB3 / CleanRL / torch model file (options as `robbench import`: fmt,
    vecnormalize, obs_stats, raw_obs, activation, spec, name), an SB3 model object, an agent id of
    the results home, or a loaded robbench Agent. Runs through the same store and jobs as
    `robbench evaluate`; finished cells are reused. See robbench.importers.benchmark.
    """
    from robbench.importers import benchmark as _benchmark

    return _benchmark(policy_or_path, env=env, attacks=attacks, home=home, episodes=episodes, **import_options)
