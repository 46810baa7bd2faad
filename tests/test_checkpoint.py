import os
import pickle

import pytest
import torch

from robbench.checkpoint import load_agent_file, save_agent
from robbench.errors import RobbenchError


def test_round_trip_gives_identical_actions_and_metadata(smoke_agent, tmp_path):
    path = tmp_path / "a.safetensors"
    save_agent(smoke_agent, path)
    loaded = load_agent_file(path, expected_env="hopper")
    states = torch.randn(32, 11)
    assert torch.equal(loaded.act(states), smoke_agent.act(states))
    assert torch.equal(loaded.value(states), smoke_agent.value(states))
    assert loaded.obs_filter.frozen
    assert loaded.obs_filter.stats.n == smoke_agent.obs_filter.stats.n
    assert loaded.meta["preset"] == "smoke" and loaded.meta["steps"] == 4096
    assert loaded.meta["provenance"]["code_version"]
    assert loaded.meta["seed"] == 0 and loaded.meta["gym_id"] == "Hopper-v5"


def test_truncated_checkpoint_gets_one_line_error(smoke_agent, tmp_path):
    path = tmp_path / "a.safetensors"
    save_agent(smoke_agent, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RobbenchError, match="corrupt or truncated") as exc:
        load_agent_file(path)
    assert "\n" not in str(exc.value)


def test_flipped_weight_byte_is_detected(smoke_agent, tmp_path):
    path = tmp_path / "a.safetensors"
    save_agent(smoke_agent, path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # inside the tensor payload, header untouched
    path.write_bytes(bytes(data))
    with pytest.raises(RobbenchError, match="checksum"):
        load_agent_file(path)


def test_wrong_env_is_rejected(smoke_agent, tmp_path):
    path = tmp_path / "a.safetensors"
    save_agent(smoke_agent, path)
    with pytest.raises(RobbenchError, match="trained on env 'hopper', not 'walker2d'"):
        load_agent_file(path, expected_env="walker2d")


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_CHECKPOINT",))


def test_pickle_checkpoint_is_refused_without_running_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"policy": _Payload()}))
    with pytest.raises(RobbenchError):
        load_agent_file(path)
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()


def test_missing_checkpoint(tmp_path):
    with pytest.raises(RobbenchError, match="does not exist"):
        load_agent_file(tmp_path / "nope.safetensors")
