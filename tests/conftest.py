"""Shared fixtures: a fresh results home with one smoke-trained Hopper PPO agent."""

from __future__ import annotations

import pytest

from robbench.store import ResultsStore
from robbench.train import train_agent


@pytest.fixture(scope="session")
def smoke_home(tmp_path_factory):
    """A results home holding `hopper/ppo/smoke/0` (2 PPO iterations; seconds)."""
    home = tmp_path_factory.mktemp("home")
    with ResultsStore(home) as store:
        train_agent(store, "ppo", "hopper", seed=0, preset="smoke")
    return home


@pytest.fixture()
def store(smoke_home):
    with ResultsStore(smoke_home) as s:
        yield s


@pytest.fixture()
def smoke_agent(store):
    return store.load_agent("hopper/ppo/smoke/0")
