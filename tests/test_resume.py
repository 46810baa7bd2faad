"""Mid-job snapshots: a killed training or adversary fit resumes to exactly the uninterrupted result."""

from __future__ import annotations

import pytest
import torch

from robbench.checkpoint import read_tensors
from robbench.errors import RobbenchError
from robbench.store import ResultsStore
from robbench.train import train_agent


class Killed(Exception):
    pass


def _kill_after(iteration: int):
    def progress(i, stats):
        if i == iteration:
            raise Killed

    return progress


def _tensors(path):
    tensors, meta = read_tensors(path)
    return tensors, meta


def _same_tensors(a, b):
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


SLOW_TRAINERS = ("sappo", "sappo-convex", "radial", "arppo", "arppo-noguide", "barppo-noguide")


@pytest.mark.parametrize("method", ["ppo", "barppo", "wocar"]
                         + [pytest.param(m, marks=pytest.mark.slow) for m in SLOW_TRAINERS])
def test_training_resumes_bit_for_bit(tmp_path, monkeypatch, method):
    monkeypatch.setenv("ROBBENCH_SNAPSHOT_S", "0")  # a snapshot after every iteration
    steps = 4 * 2048
    with ResultsStore(tmp_path / "a") as store:
        ref, _ = train_agent(store, method, "hopper", seed=3, preset="smoke", steps=steps)
        assert not list((tmp_path / "a" / "partial").rglob("*.safetensors"))  # cleared when done
    with ResultsStore(tmp_path / "b") as store:
        with pytest.raises(Killed):
            train_agent(store, method, "hopper", seed=3, preset="smoke", steps=steps, progress=_kill_after(3))
        snaps = list((tmp_path / "b" / "partial").rglob("*.safetensors"))
        assert len(snaps) == 1
        got, _ = train_agent(store, method, "hopper", seed=3, preset="smoke", steps=steps)
        assert got.meta["provenance"]["resumed_from_iteration"] == 3
        assert not snaps[0].exists()
    ta, ma = _tensors(ref.path)
    tb, mb = _tensors(got.path)
    _same_tensors(ta, tb)
    assert ma["provenance"]["final_train_return"] == mb["provenance"]["final_train_return"]


def test_snapshot_from_other_config_or_corrupt_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBBENCH_SNAPSHOT_S", "0")
    steps = 3 * 2048
    with ResultsStore(tmp_path / "a") as store:
        ref, _ = train_agent(store, "ppo", "hopper", seed=1, preset="smoke", steps=steps)
    with ResultsStore(tmp_path / "b") as store:
        with pytest.raises(Killed):
            train_agent(store, "ppo", "hopper", seed=1, preset="smoke", steps=steps, progress=_kill_after(2))
        snap = next((tmp_path / "b" / "partial").rglob("*.safetensors"))
        data = bytearray(snap.read_bytes())
        data[-3] ^= 0xFF  # flip a byte in the tensor payload
        snap.write_bytes(bytes(data))
        got, _ = train_agent(store, "ppo", "hopper", seed=1, preset="smoke", steps=steps)
        assert got.meta["provenance"]["resumed_from_iteration"] is None  # started over
    _same_tensors(_tensors(ref.path)[0], _tensors(got.path)[0])


def test_snapshot_refuses_unknown_objects():
    from robbench.resume import pack

    with pytest.raises(TypeError):
        pack({"x": object()}, {})


def test_snapshot_write_failure_is_one_line(tmp_path):
    from robbench.resume import ResumePoint

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    point = ResumePoint(blocker / "snap.safetensors", identity={})
    with pytest.raises(RobbenchError, match="cannot write snapshot"):
        point.save({"a": torch.zeros(2)})


@pytest.mark.parametrize("attack", ["sa_rl", "pa_ad"])
def test_adversary_fit_resumes_bit_for_bit(tmp_path, monkeypatch, smoke_home, attack):
    """A learned adversary's fit killed mid-way resumes to the same artifact and the same cell."""
    import shutil

    from robbench.evaluate import evaluate_cell

    monkeypatch.setenv("ROBBENCH_SNAPSHOT_S", "0")
    params = {"preset": "smoke", "member": 0}
    homes = []
    for name in ("a", "b"):
        home = tmp_path / name
        shutil.copytree(smoke_home, home)
        homes.append(home)
    with ResultsStore(homes[0]) as store:
        _, ref = evaluate_cell(store, "hopper/ppo/smoke/0", attack, episodes=3, attack_params=params)

    def dying(done, total, info=""):
        if done == 1:
            raise Killed

    with ResultsStore(homes[1]) as store:
        with pytest.raises(Killed):
            evaluate_cell(store, "hopper/ppo/smoke/0", attack, episodes=3, attack_params=params,
                          fit_progress=dying)
        assert list((homes[1] / "partial" / "attacks").rglob("*.safetensors"))
        _, got = evaluate_cell(store, "hopper/ppo/smoke/0", attack, episodes=3, attack_params=params)
        assert got.info["fit"]["fit_stats"]["resumed_from_iteration"] == 1
    assert got.returns.tolist() == ref.returns.tolist()
    ref_curve = ref.info["fit"]["fit_stats"]["adversary_return_per_iteration"]
    assert got.info["fit"]["fit_stats"]["adversary_return_per_iteration"] == ref_curve
