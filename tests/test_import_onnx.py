"""ONNX policies (robbench/importers/onnx.py): exported MLPs rebuilt as robbench networks, checked
against onnxruntime's own execution of the same file; graphs robbench would misread are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import robbench
from tests.test_import import ACT, OBS, cli, imported_id, one_line_error, raw_observations, sequential

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
LOG_STD = [-0.5, -0.2, 0.1]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's legacy exporter says it is legacy


class Clipped(nn.Module):
    def __init__(self, body: nn.Module, lo: float = -1.0, hi: float = 1.0):
        super().__init__()
        self.body, self.lo, self.hi = body, lo, hi

    def forward(self, x):
        return torch.clamp(self.body(x), self.lo, self.hi)


class MatMulMLP(nn.Module):
    """x @ W + b written out, which the exporter emits as MatMul + Add rather than Gemm."""

    def __init__(self, seq: nn.Sequential):
        super().__init__()
        self.ws = nn.ParameterList([nn.Parameter(m.weight.detach().T.clone()) for m in seq if isinstance(m, nn.Linear)])
        self.bs = nn.ParameterList([nn.Parameter(m.bias.detach().clone()) for m in seq if isinstance(m, nn.Linear)])

    def forward(self, x):
        for i, (w, b) in enumerate(zip(self.ws, self.bs)):
            x = x @ w + b
            if i + 1 < len(self.ws):
                x = torch.relu(x)
        return x


class WithValue(nn.Module):
    def __init__(self, actor: nn.Module, critic: nn.Module):
        super().__init__()
        self.actor, self.critic = actor, critic

    def forward(self, x):
        return self.actor(x), self.critic(x)


def export(module: nn.Module, path, outputs=("action",), spec: dict | None = None):
    torch.onnx.export(module.eval(), (torch.zeros(1, OBS),), str(path), dynamo=False, input_names=["obs"],
                      output_names=list(outputs), dynamic_axes={"obs": {0: "batch"}})
    if spec is not None:
        path.with_suffix(".json").write_text(json.dumps(spec))
    return path


def run_onnx(path, obs: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"obs": obs.astype(np.float32)})


@pytest.mark.parametrize("act, clip", [(nn.Tanh, False), (nn.ReLU, True), (nn.ELU, False)])
def test_an_exported_mlp_acts_as_onnxruntime_runs_it(tmp_path, act, clip):
    seq = sequential([OBS, 32, 24, ACT], act=act, out_bias=0.8)  # the bias pushes some actions past the box
    path = export(Clipped(seq) if clip else seq, tmp_path / "policy.onnx", spec={"log_std": LOG_STD})
    home = tmp_path / "home"
    aid = imported_id(cli("import", path, "--env", "hopper", "--raw-obs", "--home", home))  # format from .onnx
    agent = robbench.load_agent(aid, home=str(home))
    assert agent.meta["hidden"] == [32, 24] and agent.meta["action_clip"] is clip
    assert agent.meta["provenance"]["source"]["format"] == "onnx"
    assert torch.allclose(agent.policy.log_std, torch.tensor(LOG_STD))
    obs = raw_observations(60)
    expected = run_onnx(path, obs)[0]
    if clip:  # the exported clip is exercised: some actions sit on the box
        assert (np.abs(expected) == 1.0).any()
    np.testing.assert_allclose(agent.predict(obs), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh])
def test_a_final_tanh_is_a_squash_and_is_never_dropped(tmp_path, act):
    """A TD3-style actor (…, Linear, Tanh): with tanh hidden layers too, the last Tanh must not be
    taken for one more hidden activation and lost."""
    seq = nn.Sequential(*sequential([OBS, 24, 16, ACT], act=act, out_bias=3.0), nn.Tanh())
    path = export(seq, tmp_path / "td3.onnx", spec={"log_std": LOG_STD})
    home = tmp_path / "home"
    aid = imported_id(cli("import", path, "--env", "hopper", "--raw-obs", "--home", home))
    agent = robbench.load_agent(aid, home=str(home))
    assert agent.meta["squash"] == "tanh" and agent.meta["hidden"] == [24, 16]
    obs = raw_observations(60)
    expected = run_onnx(path, obs)[0]
    assert (np.abs(expected) > 0.99).any()  # saturated: a dropped tanh (outputs near 3) would be far off
    np.testing.assert_allclose(agent.predict(obs), expected, rtol=1e-5, atol=1e-5)


def test_matmul_add_graph_and_a_value_output_become_policy_and_critic(tmp_path):
    actor = MatMulMLP(sequential([OBS, 16, 16, ACT], act=nn.ReLU, seed=1))
    critic = sequential([OBS, 16, 1], act=nn.ReLU, seed=2)
    path = export(WithValue(actor, critic), tmp_path / "ac.onnx", outputs=("action", "value"),
                  spec={"log_std": LOG_STD, "value_output": "value"})
    assert {n.op_type for n in onnx.load(str(path)).graph.node} >= {"MatMul", "Add"}
    home = tmp_path / "home"
    aid = imported_id(cli("import", path, "--env", "hopper", "--raw-obs", "--home", home))
    agent = robbench.load_agent(aid, home=str(home))
    assert agent.meta["has_critic"] and agent.meta["value_hidden"] == [16]
    obs = raw_observations(40)
    action, value = run_onnx(path, obs)
    np.testing.assert_allclose(agent.predict(obs), action, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        got = agent.value(torch.from_numpy(obs).float()).numpy().reshape(-1)
    np.testing.assert_allclose(got, value.reshape(-1), rtol=1e-5, atol=1e-5)


class Sigmoid(nn.Module):
    def forward(self, x):
        return torch.sigmoid(x)


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(OBS, 8), nn.Linear(8, 8), nn.Linear(8, ACT)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.tanh(self.a(x)))))


@pytest.mark.parametrize("module, spec, needles", [
    (lambda: nn.Sequential(nn.Linear(OBS, 8), Sigmoid(), nn.Linear(8, ACT)), {"log_std": LOG_STD},
     ["operator 'Sigmoid' is not supported"]),
    (lambda: Mixed(), {"log_std": LOG_STD}, ["different activations"]),
    (lambda: nn.Sequential(nn.Linear(OBS, 8), nn.Tanh(), nn.Linear(8, ACT), nn.ReLU()), {"log_std": LOG_STD},
     ["relu after the last layer"]),
    (lambda: Clipped(sequential([OBS, 8, ACT]), -0.5, 0.5), {"log_std": LOG_STD}, ["not the action box"]),
    (lambda: sequential([OBS, 8, ACT]), None, ["deterministic action only", "--spec"]),
    (lambda: sequential([OBS, 8, ACT]), {"log_std": [0.0]}, ["shape (1,)"]),
    (lambda: sequential([OBS, 8, ACT]), {"log_std": LOG_STD, "sigma": 1}, ["unknown key 'sigma'"]),
    (lambda: sequential([OBS, 8, ACT]), {"log_std": LOG_STD, "output": "mean"}, ["no output 'mean'"]),
    (lambda: sequential([OBS, 8, 5]), {"log_std": LOG_STD + [0.0, 0.0]}, ["5-dim actions", "wrong --env"]),
])
def test_graphs_robbench_would_misread_are_refused_in_one_line(tmp_path, module, spec, needles):
    path = export(module(), tmp_path / "bad.onnx", spec=spec)
    one_line_error(cli("import", path, "--env", "hopper", "--raw-obs", "--home", tmp_path / "home"), *needles)
    agents = tmp_path / "home" / "agents"
    assert not agents.exists() or not any(p.is_file() for p in agents.rglob("*"))  # nothing registered


def test_a_file_that_is_not_onnx_is_one_line(tmp_path):
    path = tmp_path / "policy.onnx"
    path.write_bytes(b"\x00not a protobuf at all\xff" * 10)
    path.with_suffix(".json").write_text(json.dumps({"log_std": LOG_STD}))
    one_line_error(cli("import", path, "--env", "hopper", "--raw-obs", "--home", tmp_path / "home"),
                   "not a readable ONNX model")
