"""Board entries as files (robbench/submit.py): `robbench submit` writes one agent's evidence, `robbench
report --entries DIR` ranks it beside a home's agents, recomputing every aggregate; a hand-edited or
malformed entry is one line and never reaches a board."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robbench.store import ResultsStore, cell_key
from tests.test_import import cli, one_line_error
from tests.test_report_views import add_agent, add_cell

ATTACKS = ("none", "random", "mad")


def fill(store, method, seed, base, rng):
    rec = add_agent(store, method, seed)
    for k, attack in enumerate(ATTACKS):
        add_cell(store, rec, attack, rng.normal(base - 300 * k, 40, size=50))
    return rec


@pytest.fixture()
def homes(tmp_path):
    """`ours` holds ppo/0 and sappo/0; `theirs` holds ppo/0 and wocar/0, whose entry is submitted."""
    rng = np.random.default_rng(0)
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    with ResultsStore(ours) as st:
        fill(st, "ppo", 0, 3000, rng)
        fill(st, "sappo", 0, 2500, rng)
    with ResultsStore(theirs) as st:
        fill(st, "ppo", 0, 3000, np.random.default_rng(0))  # the same checkpoint bytes and results as ours
        fill(st, "wocar", 0, 2800, rng)
    entries = tmp_path / "entries"
    res = cli("submit", "hopper/wocar/paper/0", "--out", entries / "wocar.json", "--home", theirs)
    assert res.exit_code == 0, res.output
    assert "3 cells (mad, none, random)" in res.output
    return ours, theirs, entries


def board(home, *extra):
    res = cli("report", "--home", home, "--format", "json", *extra)
    assert res.exit_code == 0, res.output
    return {r["agent"]: r for r in json.loads(res.output) if "agent" in r}


def test_an_entry_is_self_contained_and_ranks_as_it_did_at_home(homes):
    ours, theirs, entries = homes
    entry = json.loads((entries / "wocar.json").read_text())
    assert entry["format"] == "robbench-entry" and entry["suite"].startswith("standard-v")
    assert entry["agent"]["agent_id"] == "hopper/wocar/paper/0" and len(entry["agent"]["sha256"]) == 64
    assert sorted(c["attack"] for c in entry["cells"]) == sorted(ATTACKS)
    assert all(len(c["returns"]) == 50 for c in entry["cells"])  # per-episode evidence, not only means
    at_home = board(theirs)["hopper/wocar/paper/0"]
    rows = board(ours, "--entries", entries)
    assert set(rows) == {"hopper/ppo/paper/0", "hopper/sappo/paper/0", "hopper/wocar/paper/0"}
    mine = rows["hopper/wocar/paper/0"]
    for key in ("none_mean", "random_mean", "mad_mean", "worst_mean", "worst_attack"):
        assert mine[key] == pytest.approx(at_home[key]) if isinstance(mine[key], float) else mine[key] == at_home[key]
    assert [f["code"] for f in mine["flags"]].count("submitted") == 1
    assert not any(f["code"] == "submitted" for f in rows["hopper/sappo/paper/0"]["flags"])
    ranked = sorted((r for r in rows.values() if r["rank"]), key=lambda r: r["rank"])
    assert [r["agent"] for r in ranked] == sorted(rows, key=lambda a: -rows[a]["worst_mean"])  # ranked beside ours
    md = cli("report", "--home", ours, "--entries", entries).output
    assert "submitted entry" in md


def test_an_entry_of_an_agent_the_home_already_has_is_not_counted_twice(homes, tmp_path):
    ours, theirs, entries = homes
    cli("submit", "hopper/ppo/paper/0", "--out", entries / "ppo.json", "--home", theirs)
    rows = board(ours, "--entries", entries)
    assert not any(f["code"] == "submitted" for f in rows["hopper/ppo/paper/0"]["flags"])  # the home's own
    other = json.loads((entries / "ppo.json").read_text())
    other["agent"]["sha256"] = "0" * 64  # a different checkpoint under the same id, its cells keyed to it
    for c in other["cells"]:
        c["cell_key"] = cell_key(other["agent"]["agent_id"], "0" * 64, c["attack"], c["attack_config"], c["protocol"])
    (entries / "ppo.json").write_text(json.dumps(other))
    one_line_error(cli("report", "--home", ours, "--entries", entries), "also has", "different checkpoint")


def _tamper(entries, change):
    data = json.loads((entries / "wocar.json").read_text())
    change(data)
    (entries / "wocar.json").write_text(json.dumps(data))


def _cell(data, attack):
    return next(c for c in data["cells"] if c["attack"] == attack)


@pytest.mark.parametrize("change, needles", [
    (lambda d: _cell(d, "mad").update(mean=_cell(d, "mad")["mean"] + 500), ["cells[", "(mad): stored mean"]),
    (lambda d: _cell(d, "mad")["returns"][3].__setitem__(2, 99999.0), ["(mad): stored mean"]),
    (lambda d: _cell(d, "none")["attack_config"].update(steps=99), ["cell_key does not match"]),
    (lambda d: _cell(d, "none")["returns"].pop(), ["declares 50 episodes"]),
    (lambda d: _cell(d, "none")["returns"][0].__setitem__(1, 7), ["episode seeds are not the protocol's"]),
    (lambda d: _cell(d, "none")["protocol"].update(eps="wide"), ["protocol has eps="]),
    (lambda d: d["agent"].update(agent_id="hopper/wocar/paper/9"), ["is not <env>/<method>/<preset>/<seed>"]),
    (lambda d: d["agent"].update(env="moon"), ["moon"]),
    (lambda d: d.update(format="robustbench"), ["is not a robbench-entry version 1 file"]),
    (lambda d: d.update(cells=[]), ["cells must be a non-empty list"]),
])
def test_a_tampered_or_malformed_entry_is_one_line(homes, change, needles):
    ours, _, entries = homes
    _tamper(entries, change)
    one_line_error(cli("report", "--home", ours, "--entries", entries), "wocar.json", *needles)


def test_bad_entry_files_and_folders_are_one_line(homes, tmp_path):
    ours, theirs, entries = homes
    (entries / "broken.json").write_text('{"format": "robbench-entry", ')
    one_line_error(cli("report", "--home", ours, "--entries", entries), "broken.json", "not valid JSON")
    (entries / "broken.json").unlink()
    one_line_error(cli("report", "--home", ours, "--entries", tmp_path / "nowhere"), "not a folder")
    (tmp_path / "empty").mkdir()
    one_line_error(cli("report", "--home", ours, "--entries", tmp_path / "empty"), "no .json entry files")
    with ResultsStore(theirs) as st:
        add_agent(st, "radial", 0)
    one_line_error(cli("submit", "hopper/radial/paper/0", "--out", tmp_path / "r.json", "--home", theirs),
                   "has no results")
    assert not (tmp_path / "r.json").exists()
