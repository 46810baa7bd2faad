"""ONNX policies: an exported MLP read back as robbench's own Gaussian policy network.

An ONNX file is a computation graph, not a module. robbench does not run that graph: it reads the
chain of operators from the observation input to the action output and rebuilds it as the Linear
layers + activation of `robbench.policy.GaussianPolicy`, so every gradient attack, the fast paths
and auto-LiRPA certification work on it exactly as on a robbench-trained agent, and the rebuilt
network is checked against the graph's own semantics (the tests compare with onnxruntime).

What is read (the operators `torch.onnx.export` and tf2onnx write for an MLP):
- `Gemm` (transA = 0; transB 0 or 1; alpha and beta folded into weight and bias), or `MatMul`
  followed by `Add` of a constant bias (or no `Add`: zero bias);
- one activation between layers, the same everywhere: `Tanh`, `Relu`, `Elu` (α = 1);
- `Identity`, and `Flatten` of the (batch, obs) input, which change nothing;
- a final `Tanh` after the last layer: a tanh-squashed actor (TD3's, SAC's deterministic action);
  the graph's output is the action, so it imports only for an env whose action box is [−1, 1];
- a final `Clip` to the env's action box [−1, 1]: the agent clips its actions (recorded as its
  action-clip convention, SB3's and CleanRL's); any other clip is refused.
Anything else (normalisation inside the graph, scaling after the squash, convolutions, branches) is
refused with one line naming the operator: robbench would otherwise evaluate a different function
than the file.

An exported policy carries its deterministic action only. Its log σ (used by the stochastic
protocol, robust Sarsa's exploration and certification's σ-scaled bounds) is never guessed: it comes
from the JSON spec beside the file (`--spec`, default `<file>.json`):
`{"log_std": [..act_dim numbers..], "output": "action", "value_output": null, "action_clip": null}`
— `output` names the action output (default: the graph's first output); `value_output` a value
output whose chain becomes the critic (default: none, so critic attacks are skipped and the board
says so); `action_clip` overrides what the graph says only to state it where the graph has no
`Clip` (true: the actions were clipped outside the graph, as SB3's `predict` does).

Why not a converter to torch modules (onnx2torch): it depends on torchvision, whose PyPI wheels pull a
multi-GB CUDA torch build next to robbench's pinned CPU torch; and a generic converted graph would
still have to be matched to an MLP for the fast paths and certification. `onnx` (the format's own
parser) is the only dependency, in the `onnx` extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from robbench.errors import RobbenchError
from robbench.importers.common import Network, _check_chain, _file, _log_std, json_spec

ACTIVATIONS = {"Tanh": "tanh", "Relu": "relu", "Elu": "elu"}
PASS_THROUGH = ("Identity", "Flatten")
SPEC_KEYS = {"log_std": "the policy's log σ, one number per action dimension",
             "output": "name of the action output (default: the first graph output)",
             "value_output": "name of a value output to import as the critic (default: none)",
             "action_clip": "true if actions were clipped to the box outside the graph (default: what the graph says)"}


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise RobbenchError("reading ONNX needs the onnx package: pip install 'robbench[onnx]' "
                            "(or pip install onnx)") from None
    return onnx, numpy_helper


class _Graph:
    """The graph's nodes by output name and its constants (initializers and Constant nodes)."""

    def __init__(self, model, where: str):
        onnx, numpy_helper = _onnx()
        self.where = where
        graph = model.graph
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.producer: dict[str, Any] = {}
        for node in graph.node:
            if node.op_type == "Constant":
                attr = {a.name: a for a in node.attribute}
                if "value" not in attr:
                    raise RobbenchError(f"{where}: a Constant node without a tensor value is not supported")
                self.consts[node.output[0]] = numpy_helper.to_array(attr["value"].t)
                continue
            for out in node.output:
                self.producer[out] = node
        self.inputs = [i.name for i in graph.input if i.name not in self.consts]
        self.outputs = [o.name for o in graph.output]
        if len(self.inputs) != 1:
            raise RobbenchError(f"{where} has {len(self.inputs)} inputs ({', '.join(self.inputs) or 'none'}); "
                                "a policy takes one observation input")

    def attrs(self, node) -> dict[str, Any]:
        onnx, _ = _onnx()
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def const(self, name: str, node) -> np.ndarray:
        if name not in self.consts:
            raise RobbenchError(f"{self.where}: {node.op_type} node {node.name or node.output[0]!r} takes a computed "
                                f"{name!r} where a constant weight was expected")
        return np.asarray(self.consts[name], dtype=np.float64)

    def chain(self, output: str) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], set[str], tuple[float, float] | None,
                                          bool]:
        """Walk back from `output` to the input: (Linear layers in order, activations used between
        them, final clip, whether the last layer is followed by a Tanh squash)."""
        ops: list[Any] = []
        name = output
        while name != self.inputs[0]:
            node = self.producer.get(name)
            if node is None:
                raise RobbenchError(f"{self.where}: {name!r} is neither computed from the observation input "
                                    f"{self.inputs[0]!r} nor a constant")
            computed = [i for i in node.input if i and i not in self.consts]
            if len(computed) != 1:
                raise RobbenchError(f"{self.where}: {node.op_type} node {node.name or node.output[0]!r} combines "
                                    f"{len(computed)} computed inputs; only a chain of layers can be imported")
            ops.append(node)
            name = computed[0]
        ops.reverse()
        layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        acts: list[tuple[int, str]] = []  # (layers before it, activation)
        clip: tuple[float, float] | None = None
        i = 0
        while i < len(ops):
            node = ops[i]
            op = node.op_type
            if clip is not None:
                raise RobbenchError(f"{self.where}: {op} after the final Clip is not supported")
            if op == "Gemm":
                a = self.attrs(node)
                if a.get("transA", 0):
                    raise RobbenchError(f"{self.where}: Gemm with transA = 1 is not supported")
                w = self.const(node.input[1], node)
                w = w if a.get("transB", 0) else w.T
                b = self.const(node.input[2], node).reshape(-1) if len(node.input) > 2 and node.input[2] else \
                    np.zeros(w.shape[0])
                layers.append(self._layer(a.get("alpha", 1.0) * w, a.get("beta", 1.0) * b, node))
            elif op == "MatMul":
                w = self.const(node.input[1], node).T
                b = np.zeros(w.shape[0])
                nxt = ops[i + 1] if i + 1 < len(ops) else None
                if nxt is not None and nxt.op_type == "Add":
                    b = self.const(next(x for x in nxt.input if x in self.consts), nxt).reshape(-1)
                    i += 1
                layers.append(self._layer(w, b, node))
            elif op in ACTIVATIONS:
                if not layers:
                    raise RobbenchError(f"{self.where}: an activation before the first layer is not supported")
                if op == "Elu" and abs(float(self.attrs(node).get("alpha", 1.0)) - 1.0) > 1e-12:
                    raise RobbenchError(f"{self.where}: Elu with α ≠ 1 is not supported")
                if acts and acts[-1][0] == len(layers):
                    raise RobbenchError(f"{self.where}: two activations in a row ({acts[-1][1]}, {ACTIVATIONS[op]}) "
                                        "are not supported")
                acts.append((len(layers), ACTIVATIONS[op]))
            elif op in PASS_THROUGH:
                if op == "Flatten" and layers:
                    raise RobbenchError(f"{self.where}: Flatten between layers is not supported")
            elif op == "Clip":
                lo, hi = self._clip_bounds(node)
                clip = (lo, hi)
            else:
                raise RobbenchError(f"{self.where}: operator {op!r} is not supported in an imported policy (supported: "
                                    f"Gemm, MatMul + Add, {', '.join(ACTIVATIONS)}, {', '.join(PASS_THROUGH)}, a final "
                                    "Clip); export the bare MLP")
            i += 1
        if not layers:
            raise RobbenchError(f"{self.where}: no layer between {self.inputs[0]!r} and {output!r}")
        squash = bool(acts) and acts[-1][0] == len(layers)  # an activation after the last layer
        if squash and acts[-1][1] != "tanh":
            raise RobbenchError(f"{self.where}: a {acts[-1][1]} after the last layer is not supported (only a "
                                "Tanh squash of the action)")
        between = {name for _, name in (acts[:-1] if squash else acts)}
        if len(between) > 1:
            raise RobbenchError(f"{self.where}: the layers use different activations ({', '.join(sorted(between))}); "
                                "robbench's policy network uses one")
        if len(layers) - 1 > len(acts) - squash:
            raise RobbenchError(f"{self.where}: {len(layers)} layers without an activation between each of them")
        return layers, between, clip, squash

    def _layer(self, w: np.ndarray, b: np.ndarray, node) -> tuple[torch.Tensor, torch.Tensor]:
        if w.ndim != 2 or b.shape != (w.shape[0],) or not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise RobbenchError(f"{self.where}: {node.op_type} node {node.name or node.output[0]!r} has weights of "
                                f"shape {w.shape} and bias {b.shape}; expected finite (out, in) and (out,)")
        return torch.as_tensor(w, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)

    def _clip_bounds(self, node) -> tuple[float, float]:
        a = self.attrs(node)
        if "min" in a or "max" in a:  # opset < 11
            lo, hi = a.get("min", -np.inf), a.get("max", np.inf)
        else:
            get = lambda k: float(self.const(node.input[k], node).reshape(())) \
                if len(node.input) > k and node.input[k] else None  # noqa: E731
            lo, hi = get(1), get(2)
        if lo is None or hi is None or abs(float(lo) + 1.0) > 1e-6 or abs(float(hi) - 1.0) > 1e-6:
            raise RobbenchError(f"{self.where}: a Clip to [{lo}, {hi}] is not the action box [-1, 1]; only "
                                "clipping to the box can be imported")
        return float(lo), float(hi)


def _spec(path: Path, spec_path: str | Path | None) -> tuple[dict[str, Any], str]:
    if spec_path is None:
        guess = path.with_suffix(".json")
        if not guess.is_file():
            raise RobbenchError(f"ONNX file {str(path)!r} carries the deterministic action only: give its log σ in a "
                                'spec (--spec FILE.json with {"log_std": [...]}; keys: ' + ", ".join(SPEC_KEYS) + ")")
        spec_path = guess
    spec_path = _file(spec_path, "ONNX spec")
    where = f"ONNX spec {str(spec_path)!r}"
    spec = json_spec(spec_path, where, SPEC_KEYS)
    if "log_std" not in spec:
        raise RobbenchError(f"{where} lacks 'log_std' ({SPEC_KEYS['log_std']})")
    for key in ("output", "value_output"):
        if spec.get(key) is not None and not (isinstance(spec[key], str) and spec[key]):
            raise RobbenchError(f"{where}: {key} must be an output name or null, got {spec[key]!r}")
    if spec.get("action_clip") is not None and not isinstance(spec["action_clip"], bool):
        raise RobbenchError(f"{where}: action_clip must be true, false or null, got {spec['action_clip']!r}")
    return spec, where


def read_onnx(path: str | Path, spec_path: str | Path | None = None):
    """An ONNX MLP policy (see the module docstring) as a `robbench.importers.Network`."""
    path = _file(path, "ONNX file")
    where = f"ONNX file {str(path)!r}"
    spec, swhere = _spec(path, spec_path)
    onnx, _ = _onnx()
    try:
        model = onnx.load_model_from_string(path.read_bytes())
    except Exception as exc:  # the parser raises protobuf's DecodeError and others for a non-ONNX file
        raise RobbenchError(f"{where} is not a readable ONNX model ({' '.join(str(exc).split())[:200]})") from None
    graph = _Graph(model, where)
    output = spec.get("output") or (graph.outputs[0] if graph.outputs else None)
    if output not in graph.outputs:
        raise RobbenchError(f"{where} has no output {output!r}; its outputs: {', '.join(graph.outputs) or 'none'}")
    actor, acts, clip, squash = graph.chain(output)
    _check_chain(actor, None, where, "policy")
    critic = None
    value_acts: set[str] = set()
    if spec.get("value_output") is not None:
        if spec["value_output"] not in graph.outputs:
            raise RobbenchError(f"{swhere}: value_output {spec['value_output']!r} is not an output of the graph "
                                f"({', '.join(graph.outputs)})")
        critic, value_acts, value_clip, value_squash = graph.chain(spec["value_output"])
        if value_clip is not None or value_squash:
            raise RobbenchError(f"{where}: the value output is clipped or squashed; a critic must be a plain MLP")
        _check_chain(critic, 1, where, "value")
    used = acts | value_acts
    if len(used) > 1:
        raise RobbenchError(f"{where}: the policy and value networks use different activations "
                            f"({', '.join(sorted(used))}); robbench's networks share one")
    activation = next(iter(used)) if used else "tanh"  # a single linear layer has none to choose
    log_std = torch.as_tensor(np.asarray(spec["log_std"], dtype=np.float64)) \
        if isinstance(spec["log_std"], list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                     for v in spec["log_std"]) else None
    if log_std is None:
        raise RobbenchError(f"{swhere}: log_std must be a list of numbers, got {spec['log_std']!r}")
    action_clip = clip is not None or bool(spec.get("action_clip"))
    if clip is not None and spec.get("action_clip") is False:
        raise RobbenchError(f"{swhere}: action_clip is false but the graph clips its actions to [-1, 1]")
    info = {"onnx_output": output, "onnx_opset": [int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")],
            "onnx_producer": f"{model.producer_name} {model.producer_version}".strip(),
            "action_clip_source": "Clip in the graph" if clip is not None else
            ("spec" if spec.get("action_clip") is not None else "default (none in the graph)")}
    source = "ONNX graph" if used else "none (one linear layer)"
    if squash:
        info["squash_source"] = "Tanh after the last layer in the graph (its output is the action)"
    return Network(actor, _log_std(log_std, int(actor[-1][0].shape[0]), swhere, "log_std"), critic, activation,
                   source, action_clip, info, squash="tanh" if squash else "none", squash_onto_box=False)
