"""Agents trained before a trainer's settings changed (issue 16, "re-train only what these change"):
`train.stale_settings` names what today's trainer would train differently, `--dry-run` shows it,
and a grid with `retrain_stale = true` retrains exactly those agents, once."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
from typer.testing import CliRunner

from robbench.cli import app
from robbench.grid import parse_grid
from robbench.store import ResultsStore
from robbench.train import build_config, stale_settings, train_agent

GRID = """
envs = ["hopper"]
methods = ["arppo", "ppo"]
seeds = "0"
preset = "smoke"
{extra}
"""


@pytest.fixture(scope="module")
def stale_home(smoke_home, tmp_path_factory):
    """conftest's home (`hopper/ppo/smoke/0`) plus `hopper/arppo/smoke/0` trained the old way
    (`pgd_start=step`): one agent today's trainer would train otherwise, one it would not."""
    home = tmp_path_factory.mktemp("stale") / "h"
    shutil.copytree(smoke_home, home)
    with ResultsStore(home) as store:
        train_agent(store, "arppo", "hopper", seed=0, preset="smoke", trainer_params={"pgd_start": "step"})
    return home


def _record(store, aid):
    return next(a for a in store.agents() if a.agent_id == aid)


def _without(record, key):
    """The record as an agent trained before the trainer setting `key` existed would have it."""
    meta = dict(record.meta)
    meta["config"] = {**meta["config"], "trainer": {k: v for k, v in meta["config"]["trainer"].items() if k != key}}
    return dataclasses.replace(record, meta=meta)


def test_stale_settings_read_a_missing_key_as_the_trainers_legacy_value(stale_home):
    with ResultsStore(stale_home) as store:
        record = _record(store, "hopper/arppo/smoke/0")
        today, _ = build_config("arppo", "hopper", 0, "smoke")
        assert stale_settings(record, today) == {"trainer.pgd_start": ("step", "ball")}
        # Recorded before `pgd_start` existed: the key is absent and meant "step" (ARPPO.legacy_settings).
        assert stale_settings(_without(record, "pgd_start"), today) == {"trainer.pgd_start": ("step", "ball")}
        same, _ = build_config("arppo", "hopper", 0, "smoke", trainer_params={"pgd_start": "step"})
        assert stale_settings(record, same) == {}
        # A key added with a default that keeps the old behaviour is no change.
        assert stale_settings(_without(record, "kappa"), same) == {}
        imported = dataclasses.replace(record, meta={k: v for k, v in record.meta.items() if k != "config"})
        assert stale_settings(imported, today) == {}


def test_a_grid_retrains_stale_agents_only_when_asked_and_only_once(stale_home, tmp_path):
    home, runner = tmp_path / "h", CliRunner()
    shutil.copytree(stale_home, home)
    with ResultsStore(home) as store:
        before = {a.agent_id: a.sha256 for a in store.agents()}
    plain, retrain = tmp_path / "plain.toml", tmp_path / "retrain.toml"
    plain.write_text(GRID.format(extra=""))
    retrain.write_text(GRID.format(extra="retrain_stale = true"))

    shown = runner.invoke(app, ["run", str(plain), "--dry-run", "--home", str(home)])
    assert shown.exit_code == 0, shown.output
    assert "other settings than today's: trainer.pgd_start 'step' → 'ball'" in " ".join(shown.output.split())
    assert runner.invoke(app, ["run", str(plain), "--workers", "1", "--home", str(home)]).exit_code == 0
    with ResultsStore(home) as store:
        assert {a.agent_id: a.sha256 for a in store.agents()} == before  # not asked: nothing retrained

    shown = runner.invoke(app, ["run", str(retrain), "--dry-run", "--home", str(home)])
    assert "to retrain: trainer.pgd_start 'step' → 'ball'" in " ".join(shown.output.split()), shown.output
    done = runner.invoke(app, ["run", str(retrain), "--workers", "1", "--home", str(home)])
    assert done.exit_code == 0, done.output
    with ResultsStore(home) as store:
        after = {a.agent_id: a for a in store.agents()}
    arppo = after["hopper/arppo/smoke/0"]
    assert arppo.sha256 != before["hopper/arppo/smoke/0"]
    assert arppo.meta["config"]["trainer"]["pgd_start"] == "ball"
    assert arppo.meta["provenance"]["retrained_stale"] == {"trainer.pgd_start": ["step", "ball"]}
    assert after["hopper/ppo/smoke/0"].sha256 == before["hopper/ppo/smoke/0"]  # not stale: kept

    again = runner.invoke(app, ["run", str(retrain), "--workers", "1", "--home", str(home)])
    assert again.exit_code == 0, again.output
    with ResultsStore(home) as store:
        assert _record(store, "hopper/arppo/smoke/0").sha256 == arppo.sha256  # retrained once, then done


def test_retrain_stale_must_be_a_boolean():
    from robbench.errors import RobbenchError

    with pytest.raises(RobbenchError, match="retrain_stale must be true or false"):
        parse_grid({"envs": ["hopper"], "methods": ["ppo"], "retrain_stale": "yes"}, "g.toml")
