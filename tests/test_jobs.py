"""Executors and grids: Ray vs local equality, kill -9 then resume, concurrent writers."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robbench.store import ResultsStore

GRID = """
envs = ["hopper"]
methods = ["ppo", "barppo"]
seeds = "0-1"
preset = "smoke"
steps = 8192
attacks = ["none", "random", "mad", "sa_rl"]
episodes = 5
certify = ["ibp"]
certify_states = 64

[attack_params.sa_rl]
preset = "smoke"
"""


def robbench(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robbench.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kw)


def content(home: Path) -> dict[str, list]:
    """Every stored result, minus what legitimately differs between runs (times, machine, hashes of
    files whose headers carry them); per-episode returns compared exactly."""
    conn = sqlite3.connect(home / "results.sqlite")
    conn.row_factory = sqlite3.Row

    agents = sorted((r["agent_id"], r["steps"], _payload(home / r["path"])) for r in conn.execute("SELECT * FROM agents"))
    cells = sorted(
        (r["agent_id"], r["attack"], r["attack_config"], r["protocol"], r["mean"], r["std"], r["min"], r["max"],
         r["env_steps"], json.dumps([(e["idx"], e["seed"], e["ret"], e["length"]) for e in conn.execute(
             "SELECT * FROM episodes WHERE cell_key = ? ORDER BY idx", (r["cell_key"],))]))
        for r in conn.execute("SELECT * FROM cells")
    )
    n_episodes = conn.execute("SELECT COUNT(*) FROM episodes").fetchone()[0]
    artifacts = sorted((r["agent_id"], r["attack"], r["fit_config"], _payload(home / r["path"]))
                       for r in conn.execute("SELECT * FROM attack_artifacts"))
    certs = sorted((r["agent_id"], r["method"], r["eps"], r["states"], r["mean_dev"], r["max_dev"])
                   for r in conn.execute("SELECT * FROM certificates"))
    jobs = sorted((r["job_key"], r["kind"], r["status"]) for r in conn.execute("SELECT * FROM jobs"))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    return {"agents": agents, "cells": cells, "n_episodes": [n_episodes], "artifacts": artifacts,
            "certificates": certs, "jobs": jobs}


def _payload(path: Path) -> str:
    """The tensor checksum stored in a safetensors header (independent of provenance metadata)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata()["payload_sha256"]


@pytest.fixture(scope="module")
def grid_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("grid") / "grid.toml"
    path.write_text(GRID)
    return path


@pytest.fixture(scope="module")
def local_run(grid_file, tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("local") / "home"
    res = robbench("run", str(grid_file), "--workers", "2", "--home", str(home))
    assert res.returncode == 0, res.stderr[-2000:]
    got = content(home)
    # 4 agents × (none, random, mad, 1 SA-RL member) cells, one SA-RL artifact and one certificate each
    assert len(got["agents"]) == 4 and len(got["cells"]) == 16 and got["n_episodes"] == [80]
    assert len(got["artifacts"]) == 4 and len(got["certificates"]) == 4
    assert {s for _, _, s in got["jobs"]} == {"done"} and len(got["jobs"]) == 4 + 4 * 5 + 4
    return got


@pytest.mark.slow  # minutes on 2 cores: the whole grid (and the local_run fixture, once)
def test_inline_backend_matches_local_pool(grid_file, local_run, tmp_path):
    res = robbench("run", str(grid_file), "--workers", "1", "--home", str(tmp_path / "home"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert content(tmp_path / "home") == local_run


@pytest.mark.slow  # minutes on 2 cores: the whole grid (and the local_run fixture, once)
def test_ray_backend_matches_local(grid_file, local_run, tmp_path):
    pytest.importorskip("ray")
    res = robbench("run", str(grid_file), "--backend", "ray", "--workers", "2", "--home", str(tmp_path / "home"),
                   env={"COLUMNS": "200"})  # the progress line, executor included, untruncated
    assert res.returncode == 0, res.stderr[-2000:]
    assert "(ray, 2 workers)" in res.stderr
    assert content(tmp_path / "home") == local_run


@pytest.mark.slow  # minutes on 2 cores: the whole grid (and the local_run fixture, once)
def test_kill9_mid_grid_then_resume_gives_the_same_store(grid_file, local_run, tmp_path):
    """SIGKILL the whole run (driver and workers) at three moments, then finish it."""
    home = tmp_path / "home"
    env = {**os.environ, "ROBBENCH_SNAPSHOT_S": "0"}  # snapshots every iteration: kills land mid-job
    kills = 0
    for _ in range(3):  # each round runs until one more job is recorded, then everything is killed
        before = _jobs_recorded(home)
        proc = subprocess.Popen([sys.executable, "-m", "robbench.cli", "run", str(grid_file), "--workers", "2",
                                 "--home", str(home)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        _wait(lambda: _jobs_recorded(home) > before or proc.poll() is not None, "one more job finishing")
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 2
    res = robbench("run", str(grid_file), "--workers", "2", "--home", str(home), env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert content(home) == local_run
    assert not list((home / "partial").rglob("*.safetensors"))  # every snapshot consumed and cleared
    assert not list(home.rglob(".tmp-*"))  # no half-written file left behind


def test_two_concurrent_evaluators_on_one_home(smoke_home, tmp_path):
    import shutil

    home = tmp_path / "home"
    shutil.copytree(smoke_home, home)
    with ResultsStore(home) as store:  # the session's smoke home may hold cells other tests evaluated
        for attack in {c["attack"] for c in store.cells()}:
            store.drop_rows(attack=attack)
    args = ["evaluate", "--attacks", "none,random,mad,critic", "--episodes", "5", "--workers", "1",
            "--home", str(home)]
    procs = [subprocess.Popen([sys.executable, "-m", "robbench.cli", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1000:] for o in outs]
    conn = sqlite3.connect(home / "results.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0] == 4
    assert conn.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] == 4 * 5
    per_cell = conn.execute("SELECT cell_key, COUNT(*) FROM episodes GROUP BY cell_key").fetchall()
    assert all(n == 5 for _, n in per_cell)


def test_train_seeds_runs_one_job_per_seed(tmp_path):
    res = robbench("train", "ppo", "hopper", "--preset", "smoke", "--seeds", "0-2", "--workers", "2",
                   "--home", str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    conn = sqlite3.connect(tmp_path / "results.sqlite")
    ids = sorted(r[0] for r in conn.execute("SELECT agent_id FROM agents"))
    assert ids == [f"hopper/ppo/smoke/{k}" for k in range(3)]
    again = robbench("train", "ppo", "hopper", "--preset", "smoke", "--seeds", "0-2", "--home", str(tmp_path))
    assert again.returncode == 0 and "0 jobs run, 3 already done" in again.stderr


def test_dry_run_lists_jobs_and_state(grid_file, tmp_path):
    res = robbench("run", str(grid_file), "--dry-run", "--home", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("to run") == 4 + 4 * 5 + 4


def test_failed_job_is_recorded_and_dependents_skipped(tmp_path, monkeypatch):
    """A job that fails is logged with its reason; the jobs needing it are skipped; others run."""
    from robbench.jobs import InlineExecutor, Job, run_jobs

    ok = Job.make("train", {"method": "ppo", "env": "hopper", "seed": 0, "preset": "smoke", "steps": None,
                            "num_envs": 8, "params": {}}, "train ok")
    bad = Job.make("train", {"method": "ppo", "env": "hopper", "seed": 1, "preset": "smoke", "steps": None,
                             "num_envs": 8, "params": {"no_such_setting": 1}}, "train bad")
    child = Job.make("evaluate", {"agent_id": "hopper/ppo/smoke/1", "attack": "none", "params": {},
                                  "eps": None, "episodes": 2}, "evaluate child", (bad.key,))
    outcomes = {o.job.label: o for o in run_jobs([ok, bad, child], tmp_path, InlineExecutor())}
    assert outcomes["train ok"].status == "done"
    assert outcomes["train bad"].status == "failed" and "no setting 'no_such_setting'" in outcomes["train bad"].error
    assert outcomes["evaluate child"].status == "skipped"
    conn = sqlite3.connect(tmp_path / "results.sqlite")
    rows = dict(conn.execute("SELECT label, status FROM jobs").fetchall())
    assert rows == {"train ok": "done", "train bad": "failed", "evaluate child": "skipped"}


def _live_in_session(sid: int) -> list[str]:
    """States of the session's processes that are not zombies (those are dead, left to init)."""
    states = subprocess.run(["ps", "-s", str(sid), "-o", "stat="], capture_output=True, text=True).stdout
    return [st for st in states.split() if not st.startswith("Z")]


def _jobs_recorded(home: Path) -> int:
    try:
        with sqlite3.connect(f"file:{home / 'results.sqlite'}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    except sqlite3.Error:  # no database or no jobs table yet
        return 0


def _wait(condition, what: str, bound: float = 600) -> None:
    """Poll for a behaviour; the bound only stops a hang, and says so."""
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"hung: {what} did not happen within {bound:.0f} s")
        time.sleep(0.1)


def test_ctrl_c_stops_the_grid_and_leaves_no_worker(tmp_path):
    """Ctrl-C as a terminal sends it (SIGINT to the whole process group) while the workers run jobs:
    exit 130 with one line, finished jobs kept, no process of the run left."""
    home = tmp_path / "home"
    grid = tmp_path / "smoke.toml"
    grid.write_text(GRID.replace("steps = 8192\n", ""))  # 2-iteration trainings: a first job ends soon
    proc = subprocess.Popen([sys.executable, "-m", "robbench.cli", "run", str(grid), "--workers", "2",
                             "--home", str(home)], stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # not inherited as ignored
    try:
        _wait(lambda: _jobs_recorded(home) >= 1 or proc.poll() is not None, "a first job finishing")
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        os.killpg(proc.pid, signal.SIGINT)
        err = proc.communicate(timeout=600)[1]  # a hang guard only
        assert proc.returncode == 130, err[-2000:]
        assert err.strip().splitlines()[-1].startswith("interrupted: finished cells and agents are kept")
        assert "Traceback" not in err, err[-2000:]
        assert _jobs_recorded(home) >= 1  # what finished before Ctrl-C is kept
        _wait(lambda: not _live_in_session(proc.pid), "every process of the run exiting", bound=60)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


@pytest.mark.slow  # minutes on 2 cores: the whole grid (and the local_run fixture, once)
def test_merge_homes_gives_the_single_run_store(grid_file, local_run, tmp_path):
    """Half the grid on 'another machine', half here, merged: the store one run would have made."""
    import shutil

    from robbench.grid import load_grid

    grid = GRID.replace('seeds = "0-1"', "seeds = 0")
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(grid)
    b.write_text(GRID.replace('seeds = "0-1"', "seeds = 1"))
    assert load_grid(a).seeds == [0] and load_grid(b).seeds == [1]
    here, there = tmp_path / "here", tmp_path / "there"
    for g, h in ((a, here), (b, there)):
        res = robbench("run", str(g), "--workers", "2", "--home", str(h))
        assert res.returncode == 0, res.stderr[-2000:]
    res = robbench("merge", str(there), "--home", str(here))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "2 agents, 2 fitted attacks, 8 cells, 2 certificates merged" in res.stderr
    again = robbench("merge", str(there), "--home", str(here))  # idempotent
    assert "0 agents, 0 fitted attacks, 0 cells, 0 certificates merged" in again.stderr
    got = content(here)
    want = dict(local_run)
    got.pop("jobs"), want.pop("jobs")  # each home logs its own jobs
    assert got == want
    # a conflicting agent (same id, other checkpoint) is left out, not overwritten
    clash = tmp_path / "clash"
    shutil.copytree(there, clash)
    ck = next((clash / "agents").rglob("seed1.safetensors"))
    data = bytearray(ck.read_bytes())
    data[-3] ^= 1
    ck.write_bytes(bytes(data))
    res = robbench("merge", str(clash), "--home", str(here))
    assert res.returncode == 0 and "checkpoint missing or modified" in res.stderr
