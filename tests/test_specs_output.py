"""Typed job specs (robbench/specs.py) and the command line's output off a terminal (issue 18).

The specs must keep every job's content address: the dict form of a spec read back from the jobs
table of each committed results home is that same dict, so the same work keeps its key. Piped or
logged, the CLI prints tables at full width (agent ids whole) and one progress line per job."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

import robbench
from robbench.cli import app
from robbench.cli.common import plural
from robbench.errors import RobbenchError
from robbench.jobs import Job
from robbench.specs import CertifySpec, EvaluateSpec, FitSpec, TrainSpec, spec_from_dict

REPO = Path(__file__).resolve().parent.parent
HOMES = sorted(REPO.glob("reports/*/results-home/results.sqlite"))
runner = CliRunner()


# ----------------------------------------------------------------------------------- typed specs
@pytest.mark.skipif(not HOMES, reason="no committed results homes in this checkout")
@pytest.mark.parametrize("db", HOMES, ids=[p.parent.parent.name for p in HOMES])
def test_every_stored_job_spec_reads_back_as_the_same_dict(db):
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT kind, spec FROM jobs").fetchall()
    assert rows
    for kind, text in rows:
        stored = json.loads(text)
        assert spec_from_dict(kind, stored).to_dict() == stored, (kind, stored)


def test_the_dict_form_is_the_one_the_untyped_specs_had():
    """Pinned: the keys of these dicts are what job keys hash; a new field must not enter them."""
    assert TrainSpec(method="ppo", env="hopper", seed=3, preset="smoke").to_dict() == {
        "method": "ppo", "env": "hopper", "seed": 3, "preset": "smoke", "steps": None, "num_envs": 8, "params": {}}
    assert FitSpec(agent_id="a/b/c/0", attack="rs", params={"member": 1}).to_dict() == {
        "agent_id": "a/b/c/0", "attack": "rs", "params": {"member": 1}, "eps": None}
    assert EvaluateSpec(agent_id="a/b/c/0", attack="none").to_dict() == {
        "agent_id": "a/b/c/0", "attack": "none", "params": {}, "eps": None, "episodes": 50, "fit": True}
    assert EvaluateSpec(agent_id="a/b/c/0", attack="none", force=True, base_seed=7).to_dict()["base_seed"] == 7
    assert CertifySpec(agent_id="a/b/c/0", methods=("ibp",)).to_dict() == {
        "agent_id": "a/b/c/0", "methods": ["ibp"], "eps": None, "states": 1000, "threshold": 0.1}


def test_a_job_made_from_a_dict_or_a_spec_has_one_key():
    spec = EvaluateSpec(agent_id="a/b/c/0", attack="none", episodes=3)
    assert Job.make("evaluate", spec, "x").key == Job.make("evaluate", spec.to_dict(), "x").key
    assert Job.make("evaluate", spec, "x").key != Job.make("evaluate", EvaluateSpec(
        agent_id="a/b/c/0", attack="none", episodes=4), "x").key


@pytest.mark.parametrize("make, message", [
    (lambda: EvaluateSpec(agent_id="a", attack="none", episodes=0), "episodes must be an integer ≥ 1, got 0"),
    (lambda: EvaluateSpec(agent_id="a", attack="none", episodes=True), "episodes must be an integer ≥ 1, got True"),
    (lambda: FitSpec(agent_id="a", attack="rs", eps=-0.5), "eps must be a finite number ≥ 0, got -0.5"),
    (lambda: FitSpec(agent_id="a", attack="rs", eps="0.1"), "eps must be a finite number ≥ 0, got '0.1'"),
    (lambda: TrainSpec(method="ppo", env="hopper", seed=-1), "seed: seed -1 is out of range"),
    (lambda: TrainSpec(method="ppo", env="hopper", seed=0, num_envs=0), "num_envs must be an integer ≥ 1, got 0"),
    (lambda: CertifySpec(agent_id="a", methods=("crwn",)), "unknown bound method 'crwn'"),
    (lambda: CertifySpec(agent_id="a", threshold=float("nan")), "threshold must be a finite number ≥ 0"),
    (lambda: spec_from_dict("evaluate", {"agent_id": "a", "attack": "none", "episodez": 3}),
     "evaluate job: unknown key 'episodez'"),
    (lambda: spec_from_dict("certify", {"methods": ["ibp"]}), "certify job: missing key 'agent_id'"),
    (lambda: Job.make("fit", EvaluateSpec(agent_id="a", attack="none"), "x"), "cannot run as a fit job"),
])
def test_a_bad_spec_value_is_one_line(make, message):
    with pytest.raises(RobbenchError) as exc:
        make()
    text = str(exc.value)
    assert message in text and "\n" not in text


def test_specs_are_frozen():
    spec = EvaluateSpec(agent_id="a", attack="none")
    with pytest.raises(AttributeError):
        spec.episodes = 3


# ---------------------------------------------------------------------------------- the output
def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"robbench {robbench.__version__}\n"


def test_plurals():
    assert [plural(n, "job") for n in (0, 1, 2)] == ["0 jobs", "1 job", "2 jobs"]
    assert plural(1, "adversary", "adversaries") == "1 adversary"
    assert plural(3, "adversary", "adversaries") == "3 adversaries"


def _piped(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("FORCE_COLOR", None)
    return subprocess.run([sys.executable, "-m", "robbench.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.skipif(not (REPO / "robbench" / "zoo" / "manifest.json").is_file(), reason="no zoo in this checkout")
def test_zoo_list_piped_at_80_columns_keeps_every_id_whole_on_one_line():
    from robbench import zoo

    res = _piped("zoo", "list")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    ids = [e["short_id"] for e in zoo.manifest()["agents"]]
    assert ids and max(len(line) for line in lines) > 80  # printed at its width, not folded to the pipe's
    for short_id in ids:
        row = [line for line in lines if re.search(rf"(^|\s){re.escape(short_id)}\s", line)]
        assert len(row) == 1, (short_id, res.stdout)
    assert "\x1b[" not in res.stdout and "…" not in res.stdout


def test_list_attacks_piped_says_no_1_adversaries():
    res = _piped("list", "attacks")
    assert res.returncode == 0, res.stderr
    assert "1 adversaries" not in res.stdout and "1 adversary" in res.stdout


def test_evaluate_off_a_terminal_prints_a_progress_line_per_job(tmp_path, smoke_home):
    home = tmp_path / "home"
    shutil.copytree(smoke_home, home)
    result = runner.invoke(app, ["evaluate", "--attacks", "none,random", "--episodes", "2", "--workers", "1",
                                 "--home", str(home)])
    assert result.exit_code == 0, result.output
    err = result.stderr.splitlines()
    assert err[0] == "attacks (inline, 1 worker): 2 jobs"
    progress = [line for line in err if re.fullmatch(r"  \d/2 jobs · \S+ elapsed · ETA \S+", line)]
    assert [p.split()[0] for p in progress] == ["1/2", "2/2"]
    assert progress[-1].endswith("ETA 0s")
    assert any(line.startswith("✓ evaluate hopper/ppo/smoke/0 × random: ") for line in err)
    assert "2 jobs run, 0 already done, 0 failed, 0 skipped" in err
