"""The shipped zoo: manifest hashes, one-line loading, and exact reproduction of published returns."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

import robbench
from robbench import zoo
from robbench.checkpoint import file_sha256
from robbench.errors import RobbenchError
from robbench.evaluate import Protocol, evaluate
from robbench.registry import get_attack
from robbench.store import ResultsStore

pytestmark = pytest.mark.skipif(not (zoo.ZOO_DIR / "manifest.json").is_file(), reason="no zoo in this checkout")


def test_every_zoo_file_matches_its_manifest_hash():
    entries = zoo.manifest()["agents"]
    assert entries
    for e in entries:
        assert file_sha256(zoo.ZOO_DIR / e["file"]) == e["sha256"], e["file"]
        assert e["natural"] == e["attacks"]["none"]["mean"]
        assert e["worst"]["mean"] == min(a["mean"] for k, a in e["attacks"].items() if k != "none")
        assert e["budget"] == "paper"


def test_load_agent_by_short_and_full_id():
    e = zoo.manifest()["agents"][0]
    a = robbench.load_agent(e["short_id"])
    b = robbench.load_agent(e["agent_id"], home="/nonexistent-home")
    assert a.meta["agent_id"] == b.meta["agent_id"] == e["agent_id"]
    with pytest.raises(RobbenchError, match="unknown zoo agent 'hopper/nope/0'"):
        robbench.load_agent("hopper/nope/0")


def test_a_modified_zoo_file_is_refused(tmp_path):
    copy = tmp_path / "zoo"
    shutil.copytree(zoo.ZOO_DIR, copy)
    e = zoo.manifest(copy)["agents"][0]
    path = copy / e["file"]
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(RobbenchError, match="does not match the manifest's sha256"):
        zoo.load(e["short_id"], copy)


def _same_stack(entry: dict, attack: str) -> bool:
    """Bit-exact returns need the software and CPU the board was evaluated with: another torch build,
    MuJoCo version or CPU feature set changes the last float bits, which the contact dynamics amplify.
    Cells recorded before the CPU signature was (provenance.cpu_signature) count as another CPU."""
    import mujoco

    from robbench.provenance import cpu_signature
    import torch

    where = entry["attacks"][attack].get("evaluated_on") or ""
    return (f"torch {torch.__version__}" in where and f"mujoco {mujoco.__version__}" in where
            and cpu_signature() in where)


def _reproduce(entry: dict, attack: str) -> bool:
    """Re-evaluate a zoo cell: on the stack it was evaluated on, the per-episode returns must be the
    manifest's bit for bit; elsewhere the episodes are a fresh draw of the same distribution, and the
    mean must agree within 4 standard errors of the difference. Returns whether the check was exact."""
    import math

    import torch

    agent = zoo.load(entry["short_id"])
    protocol = Protocol.for_env(entry["env"], episodes=entry["episodes"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as every job runs (ROBBENCH_THREADS=1): a 2-thread matmul changes the last bits
    try:
        result = evaluate(agent, get_attack(attack)(protocol.eps), protocol)
    finally:
        torch.set_num_threads(threads)
    published = entry["attacks"][attack]
    if _same_stack(entry, attack):
        assert zoo.returns_digest(result.returns.tolist()) == published["returns_sha256"]
        assert round(result.mean, 6) == published["mean"]
        return True
    n = entry["episodes"]
    se = math.sqrt((published["std"] ** 2 + float(result.returns.std()) ** 2) / n)
    assert abs(result.mean - published["mean"]) <= 4 * se + 1e-6, (entry["agent_id"], result.mean, published)
    return False


def test_zoo_natural_returns_reproduce_exactly():
    """Two zoo agents re-evaluated here give the manifest's per-episode returns bit for bit (on the
    stack they were evaluated on; elsewhere, the same mean within 4 standard errors)."""
    entries = zoo.manifest()["agents"]
    picked = [e for e in entries if e["method"] in ("barppo", "ppo") and e["seed"] == 0][:2]
    for e in picked:
        _reproduce(e, "none")


@pytest.mark.slow
@pytest.mark.parametrize("attack", ["none", "random"])
def test_whole_zoo_reproduces(attack):
    for e in zoo.manifest()["agents"]:
        _reproduce(e, attack)


def test_evaluate_agents_zoo_imports_and_runs(tmp_path):
    """`robbench evaluate --agents zoo` on an empty home imports the zoo (hash-checked) and runs it."""
    res = subprocess.run([sys.executable, "-m", "robbench.cli", "evaluate", "--agents", "zoo", "--attacks", "none",
                          "--episodes", "1", "--home", str(tmp_path / "home")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    with ResultsStore(tmp_path / "home") as store:
        ids = {a.agent_id: a.sha256 for a in store.agents()}
        assert ids == {e["agent_id"]: e["sha256"] for e in zoo.manifest()["agents"]}
        assert len(store.cells()) == len(ids)


def test_cells_record_the_cpu_they_were_evaluated_on(tmp_path):
    """What `_same_stack` needs to tell an exact re-run from a fresh draw: the CPU signature is in
    every cell's machine string."""
    from robbench.evaluate import evaluate_cell
    from robbench.provenance import cpu_signature
    from robbench.store import ResultsStore
    from robbench.train import train_agent

    sig = cpu_signature()
    assert sig.split()[1].startswith("cpu-") and len(sig.split()[1]) == len("cpu-") + 8
    with ResultsStore(tmp_path) as store:
        record, _ = train_agent(store, "ppo", "hopper", seed=0, preset="smoke")
        key, _ = evaluate_cell(store, record.agent_id, "none", episodes=1)
        (cell,) = [c for c in store.cells() if c["cell_key"] == key]
    assert sig in cell["info"]["machine"]
