"""The published boards' summaries (scripts/publish.py) agree with the boards they summarise."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from robbench import stats
from robbench.report import OURS_LABEL

REPO = Path(__file__).resolve().parent.parent
BOARD = REPO / "reports" / "hopper" / "leaderboard.json"
pytestmark = pytest.mark.skipif(not BOARD.is_file(), reason="no published Hopper board in this checkout")


def _publish():
    spec = importlib.util.spec_from_file_location("publish", REPO / "scripts" / "publish.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_shows_the_current_hopper_board():
    publish = _publish()
    text = (REPO / "README.md").read_text()
    shown = text.split(publish.README_START, 1)[1].split(publish.README_END, 1)[0].strip()
    assert shown == publish.readme_block("hopper").strip(), "README's board is stale: rerun scripts/publish.py"


def test_method_table_has_one_median_agent_per_method_in_worst_case_order():
    publish = _publish()
    rows = [r for r in json.loads(BOARD.read_text()) if r["source"] == OURS_LABEL]
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
