"""The published boards' summaries (scripts/publish.py) agree with the boards they summarise."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from robbench import stats
from robbench.evaluate import evaluate_cell
from robbench.report import OURS_LABEL
from robbench.store import DB_NAME, SCHEMA_VERSION, JobRecord, ResultsStore

REPO = Path(__file__).resolve().parent.parent
BOARD = REPO / "reports" / "hopper" / "leaderboard.json"
needs_board = pytest.mark.skipif(not BOARD.is_file(), reason="no published Hopper board in this checkout")
AGENT = "hopper/ppo/smoke/0"


def _publish():
    spec = importlib.util.spec_from_file_location("publish", REPO / "scripts" / "publish.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_board
def test_readme_shows_the_current_hopper_board():
    publish = _publish()
    text = (REPO / "README.md").read_text()
    shown = text.split(publish.README_START, 1)[1].split(publish.README_END, 1)[0].strip()
    assert shown == publish.readme_block("hopper").strip(), "README's board is stale: rerun scripts/publish.py"


@needs_board
def test_method_table_has_one_median_agent_per_method_in_worst_case_order():
    publish = _publish()
    # agents whose suite has not finished are on the board unranked, and count for no method yet
    rows = [r for r in json.loads(BOARD.read_text()) if r["source"] == OURS_LABEL and r["rank"] is not None]
    by_method: dict[str, dict[int, float]] = {}
    for r in rows:
        by_method.setdefault(r["method"], {})[r["seed"]] = r["worst_mean"]
    lines = publish.method_table("hopper").splitlines()[2:]
    assert len(lines) == len(by_method)
    shown = []
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        method = cells[1].strip("`")
        seeds = by_method[method]
        median = stats.median_agent(seeds)
        assert cells[2] == f"{len(seeds)} (seed {median})"
        worst = float(cells[-4].split("**")[1])
        assert worst == round(seeds[median])
        shown.append(seeds[median])
    assert shown == sorted(shown, reverse=True)


def test_snapshot_publishes_a_trimmed_single_file_copy_of_a_working_home(smoke_home, tmp_path, monkeypatch):
    """What `snapshot` leaves in reports/<env>/results-home: the working home's rows less the unpublished
    attacks' and the unfinished jobs, one database file (no -wal), at the current schema version, with
    exactly the files its rows name; the working home keeps everything."""
    publish = _publish()
    monkeypatch.setattr(publish, "UNPUBLISHED_ATTACKS", ("random",))
    src = tmp_path / "working"
    shutil.copytree(smoke_home, src)
    with ResultsStore(src) as store:
        for cell in store.cells():
            store.drop_rows(attack=cell["attack"])  # other tests of the session may have added cells
        evaluate_cell(store, AGENT, "none", episodes=2)
        evaluate_cell(store, AGENT, "random", episodes=2)
        rec = store.get_agent(AGENT)
        for attack in ("critic", "random"):
            path = src / "attacks" / attack / AGENT / f"{attack}.safetensors"
            path.parent.mkdir(parents=True)
            path.write_bytes(attack.encode())
            store.write_artifact(attack * 8, AGENT, rec.sha256, attack, {"seed": 0}, path, "0" * 64, {"wall_s": 1})
        for status in ("done", "failed", "skipped"):
            store.write_job(JobRecord(status * 8, "evaluate", f"evaluate {status}", {}, status, "", {}))
        kept = {"cells": sorted(c["attack"] for c in store.cells()), "jobs": len(store.jobs())}
    (src / "partial").mkdir(exist_ok=True)
    (src / "partial" / "snapshot.safetensors").write_bytes(b"mid-job")

    dst = tmp_path / "reports" / "hopper" / "results-home"
    publish.snapshot(src, dst)
    assert sorted(p.name for p in dst.iterdir()) == ["agents", "attacks", DB_NAME]
    files = sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file() and p.name != DB_NAME)
    assert files == ["agents/hopper/ppo/smoke/seed0.safetensors", f"attacks/critic/{AGENT}/critic.safetensors"]
    with closing(sqlite3.connect(dst / DB_NAME)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    with ResultsStore(dst, readonly=True) as store:
        assert [c["attack"] for c in store.cells()] == ["none"]
        assert [len(store.episodes(c["cell_key"])) for c in store.cells()] == [2]
        assert [a.attack for a in store.artifacts()] == ["critic"]
        assert [j.status for j in store.jobs()] == ["done"]
    with ResultsStore(src, readonly=True) as store:
        assert {"cells": sorted(c["attack"] for c in store.cells()), "jobs": len(store.jobs())} == kept
        assert kept == {"cells": ["none", "random"], "jobs": 3}
