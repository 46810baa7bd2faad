"""robbench: train, attack, certify and rank robust deep-RL agents under one protocol."""

from __future__ import annotations

__version__ = "0.1.0"


def load_agent(agent_id_or_path: str, home: str | None = None):
    """Load a trained agent by id (e.g. ``"hopper/ppo/quick/0"``) from a results home, or by path.

    One line from Python: ``agent = robbench.load_agent("hopper/ppo/paper/0")``.
    """
    from pathlib import Path

    from robbench.checkpoint import load_agent_file
    from robbench.store import ResultsStore, resolve_home

    if agent_id_or_path.endswith(".safetensors") or Path(agent_id_or_path).is_file():
        return load_agent_file(agent_id_or_path)
    with ResultsStore(resolve_home(home, must_exist=True)) as store:
        return store.load_agent(agent_id_or_path)
