"""Bring your own agent: import a policy trained elsewhere into a results home (docs/bring-your-own-agent.md).

    robbench import ppo_hopper.zip --env hopper --vecnormalize vecnormalize.pkl      # SB3 PPO / A2C
    robbench import agent.cleanrl_model --env hopper --obs-stats stats.npz           # CleanRL
    robbench import weights.safetensors --env hopper --format torch --spec arch.json --raw-obs

An imported agent is an ordinary robbench checkpoint (safetensors + JSON metadata) registered as
`<env>/<name>/external/<seed>` (the seed counts imports under one name), so `robbench evaluate`,
`certify` and `report` treat it like robbench's own agents. What robbench cannot read from the
files is never guessed: the activation (when SB3 did not record it readably), the observation
normalisation (VecNormalize file, statistics file, or `--raw-obs`) and, for raw torch weights,
whether actions are clipped, must be given; each is written into the agent's metadata.

Conventions reproduced exactly: SB3 / CleanRL normalise `clip((o − mean)/sqrt(var + epsilon),
−clip_obs, clip_obs)` (`obs_norm.convention = "sb3"`) and clip the action to the action box
(`action_clip: true`); robbench's own agents use `clip((o − mean)/(std + 1e-8), ±10)` and pass the
mean unclipped.

Nothing in an input file is executed: SB3's `policy.pth` and CleanRL's files are read with
`torch.load(weights_only=True)`; SB3's `data` is JSON; VecNormalize pickles go through
`RestrictedUnpickler`, which builds numpy arrays and inert stand-ins for the few SB3 / gymnasium
classes such a file names, and refuses every other global with one line.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import re
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robbench.errors import RobbenchError, unknown

FORMATS = ("sb3", "cleanrl", "torch", "onnx", "rlzoo")
BUDGET = "external"
ACTIVATION_NAMES = {"Tanh": "tanh", "ReLU": "relu", "ELU": "elu"}  # torch class -> robbench name
MAX_FILE_BYTES = 512 << 20  # no policy robbench can evaluate comes near this; larger is refused unread
SB3_EPSILON, SB3_CLIP_OBS = 1e-8, 10.0  # VecNormalize's and gymnasium NormalizeObservation's defaults
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


# ------------------------------------------------------------------------------ the network read
@dataclass
class Network:
    """A Gaussian MLP policy read from some format: Linear layers as (weight, bias), in order."""

    actor: list[tuple[torch.Tensor, torch.Tensor]]
    log_std: torch.Tensor
    critic: list[tuple[torch.Tensor, torch.Tensor]] | None
    activation: str
    activation_source: str
    action_clip: bool
    info: dict[str, Any] = field(default_factory=dict)  # steps, gamma, versions: provenance only

    @property
    def obs_dim(self) -> int:
        return int(self.actor[0][0].shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actor[-1][0].shape[0])

    @property
    def hidden(self) -> list[int]:
        return [int(w.shape[0]) for w, _ in self.actor[:-1]]

    @property
    def value_hidden(self) -> list[int] | None:
        return None if self.critic is None else [int(w.shape[0]) for w, _ in self.critic[:-1]]

    def describe(self) -> str:
        widths = "-".join(map(str, self.hidden)) or "linear"
        return f"{self.activation} {widths}" + (", critic" if self.critic is not None else ", no critic")


def _file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise RobbenchError(f"{what} {str(path)!r} does not exist" if not path.exists() else
                            f"{what} {str(path)!r} is not a file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise RobbenchError(f"{what} {str(path)!r} is {size >> 20} MiB; robbench reads at most "
                            f"{MAX_FILE_BYTES >> 20} MiB")
    return path


def _torch_state_dict(data: bytes, where: str) -> dict[str, torch.Tensor]:
    """A state dict from torch.save bytes, read with weights_only=True (no code runs)."""
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError with a many-line explanation, a zip error, ...
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise RobbenchError(f"{where} is not a plain tensor state dict (torch.load with weights_only=True "
                            f"refused it: {first[:200]})") from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise RobbenchError(f"{where} does not hold a state dict (name -> tensor), got a {type(obj).__name__}")
    return dict(obj)


def _linear_chain(sd: dict[str, torch.Tensor], prefix: str, where: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The Linear layers `<prefix><i>.weight/.bias` of an nn.Sequential whose Linear layers sit at
    i = 0, 2, 4, … (activations between them); anything else under the prefix is refused."""
    layers: dict[int, dict[str, torch.Tensor]] = {}
    for key, t in sd.items():
        if not key.startswith(prefix):
            continue
        idx, _, kind = key[len(prefix):].partition(".")
        if not idx.isdigit() or kind not in ("weight", "bias"):
            raise RobbenchError(f"{where}: tensor {key!r} is not a Linear layer's weight or bias (only MLPs of "
                                "Linear layers with tanh / ReLU / ELU activations are supported)")
        layers.setdefault(int(idx), {})[kind] = t
    order = sorted(layers)
    if order != list(range(0, 2 * len(order), 2)):
        raise RobbenchError(f"{where}: layers {prefix}{order} are not Linear layers at 0, 2, 4, … of an "
                            "nn.Sequential alternating Linear and activation (other layers, e.g. a LayerNorm, "
                            "are not supported)")
    chain = []
    for i in order:
        if set(layers[i]) != {"weight", "bias"}:
            raise RobbenchError(f"{where}: layer {prefix}{i} lacks its {'bias' if 'weight' in layers[i] else 'weight'}")
        chain.append((layers[i]["weight"], layers[i]["bias"]))
    return chain


def _check_chain(chain: list[tuple[torch.Tensor, torch.Tensor]], out: int | None, where: str, what: str) -> None:
    for k, (w, b) in enumerate(chain):
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise RobbenchError(f"{where}: {what} layer {k} has weight {tuple(w.shape)} and bias {tuple(b.shape)}, "
                                "not a Linear layer's (out, in) and (out,)")
        if k and w.shape[1] != chain[k - 1][0].shape[0]:
            raise RobbenchError(f"{where}: {what} layer {k} takes {w.shape[1]} inputs but layer {k - 1} gives "
                                f"{chain[k - 1][0].shape[0]}")
        for t in (w, b):
            if not t.dtype.is_floating_point:
                raise RobbenchError(f"{where}: {what} layer {k} has dtype {t.dtype}, expected floating point")
            if not bool(torch.isfinite(t).all()):
                raise RobbenchError(f"{where}: {what} layer {k} holds NaN or infinite values")
    if out is not None and chain[-1][0].shape[0] != out:
        raise RobbenchError(f"{where}: the {what}'s output layer gives {chain[-1][0].shape[0]} values, expected {out}")


def _log_std(t: torch.Tensor, act_dim: int, where: str, name: str) -> torch.Tensor:
    if t.shape == (1, act_dim):  # CleanRL's actor_logstd
        t = t[0]
    if t.shape != (act_dim,):
        raise RobbenchError(f"{where}: {name!r} has shape {tuple(t.shape)}; only a state-independent log σ of "
                            f"shape ({act_dim},) is supported (state-dependent σ, e.g. SB3's gSDE, is not)")
    if not t.dtype.is_floating_point or not bool(torch.isfinite(t).all()):
        raise RobbenchError(f"{where}: {name!r} must hold finite floating-point values")
    return t


def parse_activation(name: str | None) -> str | None:
    """`--activation`: tanh, relu or elu (None: not given)."""
    if name is None:
        return None
    from robbench.policy import ACTIVATIONS

    key = name.strip().lower()
    if key not in ACTIVATIONS:
        raise unknown("activation", name, ACTIVATIONS)
    return key


# ----------------------------------------------------------------------------------------- SB3
SB3_KEYS = ("log_std", "action_net.", "value_net.", "mlp_extractor.policy_net.", "mlp_extractor.value_net.")


def read_sb3(path: str | Path, activation: str | None = None) -> Network:
    """An SB3 PPO / A2C `MlpPolicy` (ActorCriticPolicy, diagonal Gaussian) from its `.zip`."""
    path = _file(path, "SB3 model")
    where = f"SB3 model {str(path)!r}"
    try:
        with zipfile.ZipFile(path) as z:
            infos = {i.filename: i for i in z.infolist()}
            if "policy.pth" not in infos:
                raise RobbenchError(f"{where} has no policy.pth (not a stable-baselines3 model zip?)")
            for member in ("policy.pth", "data"):
                if member in infos and infos[member].file_size > MAX_FILE_BYTES:
                    raise RobbenchError(f"{where}: {member} is larger than {MAX_FILE_BYTES >> 20} MiB")
            policy_bytes = z.read("policy.pth")
            data_bytes = z.read("data") if "data" in infos else None
            version = z.read("_stable_baselines3_version").decode(errors="replace").strip()[:40] \
                if "_stable_baselines3_version" in infos else None
    except zipfile.BadZipFile:
        raise RobbenchError(f"{where} is not a zip file (stable-baselines3 saves models as .zip)") from None
    except (OSError, zipfile.LargeZipFile, RuntimeError, ValueError) as exc:
        raise RobbenchError(f"{where} cannot be read ({' '.join(str(exc).split())})") from None
    sd = _torch_state_dict(policy_bytes, f"{where}: policy.pth")
    data = _sb3_data(data_bytes)
    if any(k.startswith(("actor.", "critic.", "q_net.", "qf")) for k in sd):
        raise RobbenchError(f"{where} is an off-policy (SAC / TD3 / DQN) policy; only PPO / A2C MlpPolicy "
                            "(ActorCriticPolicy, Gaussian) models are supported")
    for key, t in sd.items():
        if key.startswith(("features_extractor.", "pi_features_extractor.", "vf_features_extractor.")):
            raise RobbenchError(f"{where}: tensor {key!r} belongs to a learned features extractor; only MlpPolicy "
                                "(flatten extractor) is supported")
        if not (key == "log_std" or key.startswith((*SB3_KEYS[1:], "mlp_extractor.shared_net."))):
            raise RobbenchError(f"{where}: unexpected tensor {key!r} (an SB3 MlpPolicy holds log_std, "
                                "mlp_extractor.policy_net.*, mlp_extractor.value_net.*, action_net.*, value_net.*)")
    if data.get("use_sde") is True:
        raise RobbenchError(f"{where} uses state-dependent exploration (gSDE, use_sde=True); only a "
                            "state-independent log σ is supported")
    kwargs = data.get("policy_kwargs") if isinstance(data.get("policy_kwargs"), dict) else None
    if kwargs is not None and kwargs.get("squash_output") is True:
        raise RobbenchError(f"{where} squashes its actions with tanh (squash_output=True); tanh-squashed "
                            "policies are not supported")
    if "action_net.weight" not in sd or "log_std" not in sd:
        lacking = "action_net.weight" if "action_net.weight" not in sd else "log_std"
        raise RobbenchError(f"{where}: policy.pth lacks {lacking} (not an ActorCriticPolicy with a Gaussian "
                            "action distribution?)")
    shared = _linear_chain(sd, "mlp_extractor.shared_net.", where)  # SB3 < 1.8: net_arch=[64, dict(pi=..., vf=...)]
    actor = shared + _linear_chain(sd, "mlp_extractor.policy_net.", where) + [(sd["action_net.weight"],
                                                                                sd.get("action_net.bias"))]
    if actor[-1][1] is None:
        raise RobbenchError(f"{where}: policy.pth lacks action_net.bias")
    _check_chain(actor, None, where, "policy")
    critic = None
    if "value_net.weight" in sd:
        critic = shared + _linear_chain(sd, "mlp_extractor.value_net.", where) + [(sd["value_net.weight"],
                                                                                   sd.get("value_net.bias"))]
        if critic[-1][1] is None:
            raise RobbenchError(f"{where}: policy.pth lacks value_net.bias")
        _check_chain(critic, 1, where, "value")
        if critic[0][0].shape[1] != actor[0][0].shape[1]:
            raise RobbenchError(f"{where}: the value network takes {critic[0][0].shape[1]} inputs, the policy "
                                f"{actor[0][0].shape[1]}")
    log_std = _log_std(sd["log_std"], int(actor[-1][0].shape[0]), where, "log_std")
    recorded, source = _sb3_activation(data, kwargs)
    if recorded is None and activation is None:
        raise RobbenchError(f"{where} does not record its activation in readable form ({source}); pass "
                            "--activation tanh|relu|elu")
    if recorded is not None and activation is not None and recorded != activation:
        raise RobbenchError(f"{where} records activation {recorded!r} (policy_kwargs), but --activation is "
                            f"{activation!r}")
    chosen = activation or recorded
    info = {"sb3_version": version, "steps": data.get("num_timesteps"), "gamma": data.get("gamma"),
            "algorithm_hint": "PPO/A2C ActorCriticPolicy"}
    return Network(actor, log_std, critic, chosen, source if recorded else "--activation", True,
                   {k: v for k, v in info.items() if v is not None})


def _sb3_data(data_bytes: bytes | None) -> dict[str, Any]:
    """SB3's `data` member: JSON (objects it could not write as JSON are base64 cloudpickle, never
    decoded here; their readable attributes are used)."""
    if data_bytes is None:
        return {}
    try:
        data = json.loads(data_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _sb3_activation(data: dict[str, Any], kwargs: dict[str, Any] | None) -> tuple[str | None, str]:
    """(activation, where it was read) from `data`'s policy_kwargs, or (None, why not)."""
    if not data:
        return None, "its data member is missing or not JSON"
    if "policy_kwargs" not in data:
        return None, "its data has no policy_kwargs"
    if kwargs is None:
        return None, "its policy_kwargs are not a readable table"
    if "activation_fn" not in kwargs:
        if ":serialized:" in kwargs and not any(not k.startswith(":") for k in kwargs):
            return None, "its policy_kwargs are stored only pickled"  # never unpickled here
        return "tanh", "SB3 default (policy_kwargs set no activation_fn; ActorCriticPolicy uses nn.Tanh)"
    text = kwargs["activation_fn"]
    match = re.fullmatch(r"<class 'torch\.nn\.modules\.activation\.(\w+)'>", text) if isinstance(text, str) else None
    if match is None:
        return None, f"policy_kwargs activation_fn is {str(text)[:60]!r}"
    name = match.group(1)
    if name not in ACTIVATION_NAMES:
        raise RobbenchError(f"activation nn.{name} is not supported; robbench imports networks with "
                            f"{', '.join(f'nn.{n}' for n in ACTIVATION_NAMES)}")
    return ACTIVATION_NAMES[name], f"policy_kwargs activation_fn nn.{name}"


# ------------------------------------------------------------------------------------- CleanRL
def read_cleanrl(path: str | Path, activation: str | None = None) -> Network:
    """CleanRL's ppo_continuous_action `Agent` state dict (`torch.save(agent.state_dict())`):
    actor_mean.0/2/4, actor_logstd (1, act_dim), critic.0/2/4; tanh 64-64 in CleanRL's script."""
    path = _file(path, "CleanRL model")
    where = f"CleanRL model {str(path)!r}"
    sd = _torch_state_dict(path.read_bytes(), where)
    for key in sd:
        if not (key == "actor_logstd" or key.startswith(("actor_mean.", "critic."))):
            raise RobbenchError(f"{where}: unexpected tensor {key!r} (a CleanRL continuous-action PPO Agent holds "
                                "actor_mean.*, actor_logstd and critic.*)")
    if "actor_logstd" not in sd or not any(k.startswith("actor_mean.") for k in sd):
        raise RobbenchError(f"{where} lacks {'actor_logstd' if 'actor_logstd' not in sd else 'actor_mean.*'} "
                            "(not CleanRL's ppo_continuous_action Agent?)")
    actor = _linear_chain(sd, "actor_mean.", where)
    _check_chain(actor, None, where, "policy")
    critic = _linear_chain(sd, "critic.", where) or None
    if critic is not None:
        _check_chain(critic, 1, where, "value")
    log_std = _log_std(sd["actor_logstd"], int(actor[-1][0].shape[0]), where, "actor_logstd")
    source = "--activation" if activation else "CleanRL ppo_continuous_action default (nn.Tanh)"
    return Network(actor, log_std, critic, activation or "tanh", source, True)


# --------------------------------------------------------------------------------------- torch
SPEC_KEYS = {
    "hidden": "list of hidden widths, e.g. [64, 64] (required)",
    "activation": "tanh, relu or elu (required)",
    "squash": "none (tanh-squashed outputs are refused) (required)",
    "action_clip": "true if actions were clipped to the action box in training / evaluation (required)",
    "std": "state-independent (default; state-dependent is refused)",
    "actor": "prefix of the policy's Linear layers <prefix>0, <prefix>2, … (default 'actor.')",
    "log_std": "name of the log σ tensor, shape (act_dim,) or (1, act_dim) (default 'log_std')",
    "critic": "prefix of the value network's Linear layers, or null for none (default 'critic.', if present)",
    "critic_hidden": "the value network's hidden widths (default: those its tensors have)",
    "format": "optional, 'robbench-policy-spec/1'",
}


def read_torch(path: str | Path, spec_path: str | Path | None = None) -> Network:
    """Plain torch weights saved as safetensors plus a JSON architecture spec (`SPEC_KEYS`)."""
    path = _file(path, "weights file")
    where = f"weights file {str(path)!r}"
    if spec_path is None:
        guess = path.with_suffix(".json")
        if not guess.is_file():
            raise RobbenchError(f"{where} needs its architecture spec: pass --spec FILE.json (keys: hidden, "
                                "activation, squash, action_clip)")
        spec_path = guess
    spec_path = _file(spec_path, "architecture spec")
    try:
        spec = json.loads(spec_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise RobbenchError(f"architecture spec {str(spec_path)!r} is not valid JSON ({exc})") from None
    swhere = f"architecture spec {str(spec_path)!r}"
    if not isinstance(spec, dict):
        raise RobbenchError(f"{swhere} must be a JSON object with keys {', '.join(SPEC_KEYS)}")
    bad = sorted(set(spec) - set(SPEC_KEYS))
    if bad:
        raise RobbenchError(f"{swhere}: unknown key {bad[0]!r}; valid keys: {', '.join(SPEC_KEYS)}")
    for key in ("hidden", "activation", "squash", "action_clip"):
        if key not in spec:
            raise RobbenchError(f"{swhere} lacks {key!r} ({SPEC_KEYS[key]})")
    if spec["squash"] != "none":
        raise RobbenchError(f"{swhere}: squash {spec['squash']!r} is not supported; only unsquashed Gaussian "
                            "means (squash: none) can be imported")
    if spec.get("std", "state-independent") != "state-independent":
        raise RobbenchError(f"{swhere}: std {spec.get('std')!r} is not supported; only a state-independent log σ")
    if not isinstance(spec["action_clip"], bool):
        raise RobbenchError(f"{swhere}: action_clip must be true or false, got {spec['action_clip']!r}")
    activation = parse_activation(spec["activation"]) if isinstance(spec["activation"], str) else None
    if activation is None:
        raise unknown("activation", spec["activation"], ("tanh", "relu", "elu"))
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise RobbenchError(f"{where} is not a readable safetensors file ({' '.join(str(exc).split())})") from None
    actor_prefix, log_std_name = spec.get("actor", "actor."), spec.get("log_std", "log_std")
    critic_prefix = spec.get("critic", "critic.")
    for key, value in (("actor", actor_prefix), ("log_std", log_std_name)):
        if not isinstance(value, str) or not value:
            raise RobbenchError(f"{swhere}: {key} must be a tensor name or prefix, got {value!r}")
    if critic_prefix is not None and (not isinstance(critic_prefix, str) or not critic_prefix):
        raise RobbenchError(f"{swhere}: critic must be a prefix or null, got {critic_prefix!r}")
    if "critic" in spec and critic_prefix is not None and not any(k.startswith(critic_prefix) for k in sd):
        raise RobbenchError(f"{where} has no tensors {critic_prefix}* although the spec names that critic")
    used = {log_std_name}
    for key in sd:
        if key.startswith(actor_prefix) or (critic_prefix is not None and key.startswith(critic_prefix)):
            used.add(key)
    extra = sorted(set(sd) - used)
    if extra:
        raise RobbenchError(f"{where}: unexpected tensor {extra[0]!r} (the spec reads {actor_prefix}*, {log_std_name}"
                            + (f", {critic_prefix}*" if critic_prefix else "") + ")")
    if log_std_name not in sd:
        raise RobbenchError(f"{where} has no tensor {log_std_name!r} (the log σ)")
    actor = _linear_chain(sd, actor_prefix, where)
    if not actor:
        raise RobbenchError(f"{where} has no policy layers {actor_prefix}0, {actor_prefix}2, …")
    _check_chain(actor, None, where, "policy")
    critic = _linear_chain(sd, critic_prefix, where) if critic_prefix is not None else []
    critic = critic or None
    if critic is not None:
        _check_chain(critic, 1, where, "value")
    net = Network(actor, _log_std(sd[log_std_name], int(actor[-1][0].shape[0]), where, log_std_name), critic,
                  activation, "architecture spec", spec["action_clip"])
    for key, have in (("hidden", net.hidden), ("critic_hidden", net.value_hidden)):
        if key in spec and spec[key] != have:
            raise RobbenchError(f"{swhere}: {key} {spec[key]!r} does not match the tensors, which have {have!r}")
    return net


# ------------------------------------------------------------------ observation statistics
class _Inert:
    """Stand-in for an admitted SB3 / gymnasium class: records its arguments and state, runs nothing."""

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any):
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any):
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


_INERT_NAMES = {
    ("stable_baselines3.common.vec_env.vec_normalize", "VecNormalize"),
    ("stable_baselines3.common.running_mean_std", "RunningMeanStd"),
    ("gymnasium.spaces.box", "Box"),
    ("gym.spaces.box", "Box"),
    # a space's seeded RNG (Box._np_random): numpy's Generator / BitGenerator / SeedSequence pickles
    ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pcg64", "PCG64"),
    ("numpy.random._pcg64", "PCG64DXSM"),
    ("numpy.random._mt19937", "MT19937"),
    ("numpy.random._philox", "Philox"),
    ("numpy.random._sfc64", "SFC64"),
    ("numpy.random.bit_generator", "SeedSequence"),
    ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"),
}
_INERT = {name: type(name[1].strip("_") or "Inert", (_Inert,), {"qualname": ".".join(name)}) for name in _INERT_NAMES}


def _numpy_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]

    out: dict[tuple[str, str], Any] = {("numpy", "dtype"): np.dtype, ("numpy", "ndarray"): np.ndarray}
    for core in ("numpy._core", "numpy.core"):  # numpy 2 and numpy 1 spellings
        out[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        out[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        out[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    return out


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles only what an SB3 VecNormalize file needs: numpy arrays, dtypes and scalars (numpy's
    own reconstructors), and inert stand-ins for VecNormalize, RunningMeanStd, gymnasium's Box and
    numpy's RNG constructors. Any other global (os.system, builtins.eval, …) is refused before
    anything is called: a one-line RobbenchError naming it."""

    def __init__(self, file, where: str):
        super().__init__(file)
        self.where = where
        self.admitted = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _INERT:
            return _INERT[(module, name)]
        if (module, name) in self.admitted:
            return self.admitted[(module, name)]
        raise RobbenchError(f"{self.where} refers to {module}.{name}, which robbench does not load (only numpy "
                            "arrays and SB3 VecNormalize / RunningMeanStd statistics are read); nothing was executed")

    def persistent_load(self, pid: Any) -> Any:
        raise RobbenchError(f"{self.where} uses persistent ids, which a VecNormalize file does not; refused")


@dataclass
class ObsStats:
    """The observation normalisation to record: convention sb3 (mean, var, epsilon, clip_obs) or none."""

    convention: str
    mean: np.ndarray | None = None
    var: np.ndarray | None = None
    epsilon: float = SB3_EPSILON
    clip_obs: float | None = SB3_CLIP_OBS
    source: str = ""

    def meta(self) -> dict[str, Any]:
        if self.convention == "none":
            return {"convention": "none", "source": self.source}
        return {"convention": "sb3", "epsilon": self.epsilon, "clip_obs": self.clip_obs, "source": self.source}

    def describe(self) -> str:
        if self.convention == "none":
            return "raw observations (no normalisation; ε applies to raw observations)"
        clip = "no clip" if self.clip_obs is None else f"clip ±{self.clip_obs:g}"
        return f"clip((o − mean)/sqrt(var + {self.epsilon:g})) [{clip}] from {self.source}"


def read_vecnormalize(path: str | Path) -> ObsStats:
    """obs_rms mean / var, epsilon, clip_obs and norm_obs of an SB3 `VecNormalize.save` pickle."""
    path = _file(path, "VecNormalize file")
    where = f"VecNormalize file {str(path)!r}"
    try:
        obj = RestrictedUnpickler(io.BytesIO(path.read_bytes()), where).load()
    except RobbenchError:
        raise
    except (pickle.UnpicklingError, EOFError, MemoryError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, OverflowError, RecursionError) as exc:
        raise RobbenchError(f"{where} is not a readable VecNormalize pickle ({type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:160]})") from None
    if not isinstance(obj, _Inert) or obj.qualname != "stable_baselines3.common.vec_env.vec_normalize.VecNormalize" \
            or not isinstance(obj.state, dict):
        got = getattr(obj, "qualname", type(obj).__name__)
        raise RobbenchError(f"{where} does not hold an SB3 VecNormalize (got {got})")
    state = obj.state
    if not bool(state.get("norm_obs", True)):
        return ObsStats("none", source=f"{path.name} (norm_obs=False)")
    rms = state.get("obs_rms")
    if not isinstance(rms, _Inert) or not rms.qualname.endswith("RunningMeanStd") or not isinstance(rms.state, dict):
        raise RobbenchError(f"{where}: obs_rms is not one RunningMeanStd (dict observations are not supported)")
    epsilon, clip_obs = state.get("epsilon", SB3_EPSILON), state.get("clip_obs", SB3_CLIP_OBS)
    return _stats(rms.state.get("mean"), rms.state.get("var"), epsilon, clip_obs, where, path.name)


def read_obs_stats(path: str | Path) -> ObsStats:
    """Observation statistics as `.npz` (arrays mean, var; optional scalars epsilon, clip_obs) or
    `.json` ({"mean": [...], "var": [...], "epsilon": 1e-8, "clip_obs": 10.0 | null})."""
    path = _file(path, "observation statistics file")
    where = f"observation statistics file {str(path)!r}"
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                raw = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise RobbenchError(f"{where} is not a readable .npz ({' '.join(str(exc).split())[:160]})") from None
        extra = sorted(set(raw) - {"mean", "var", "epsilon", "clip_obs", "count"})
        scalar = {k: (raw[k].item() if k in raw and raw[k].shape == () else raw.get(k))
                  for k in ("epsilon", "clip_obs")}
        if isinstance(scalar["clip_obs"], float) and math.isnan(scalar["clip_obs"]):
            scalar["clip_obs"] = None
    elif suffix == ".json":
        try:
            raw = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise RobbenchError(f"{where} is not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise RobbenchError(f"{where} must be a JSON object with mean and var")
        extra = sorted(set(raw) - {"mean", "var", "epsilon", "clip_obs", "count"})
        scalar = {"epsilon": raw.get("epsilon", SB3_EPSILON), "clip_obs": raw.get("clip_obs", SB3_CLIP_OBS)}
    else:
        raise RobbenchError(f"{where} must end in .npz or .json (a VecNormalize .pkl goes to --vecnormalize)")
    if extra:
        raise RobbenchError(f"{where}: unknown entry {extra[0]!r}; valid: mean, var, epsilon, clip_obs, count")
    for key in ("mean", "var"):
        if key not in raw:
            raise RobbenchError(f"{where} lacks {key!r}")
    epsilon = SB3_EPSILON if scalar["epsilon"] is None else scalar["epsilon"]
    clip = SB3_CLIP_OBS if "clip_obs" not in raw else scalar["clip_obs"]
    return _stats(raw["mean"], raw["var"], epsilon, clip, where, path.name)


def _stats(mean: Any, var: Any, epsilon: Any, clip_obs: Any, where: str, source: str) -> ObsStats:
    arrays = []
    for key, value in (("mean", mean), ("var", var)):
        try:
            a = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise RobbenchError(f"{where}: {key} is not an array of numbers") from None
        if a.ndim != 1 or not np.isfinite(a).all():
            raise RobbenchError(f"{where}: {key} must be a 1-d array of finite numbers, got shape {a.shape}")
        arrays.append(a)
    if arrays[0].shape != arrays[1].shape:
        raise RobbenchError(f"{where}: mean has {arrays[0].size} entries but var {arrays[1].size}")
    if (arrays[1] < 0).any():
        raise RobbenchError(f"{where}: var has negative entries")

    def number(v: Any) -> float | None:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            return None
        v = float(v)
        return v if math.isfinite(v) else None

    eps = number(epsilon)
    if eps is None or eps < 0:
        raise RobbenchError(f"{where}: epsilon must be a finite number ≥ 0, got {epsilon!r}")
    clip = None if clip_obs is None else number(clip_obs)
    if clip_obs is not None and (clip is None or clip <= 0):
        raise RobbenchError(f"{where}: clip_obs must be a finite number > 0 or null, got {clip_obs!r}")
    if ((arrays[1] + eps) <= 0).any():
        raise RobbenchError(f"{where}: var has zero entries and epsilon is 0 (division by zero)")
    return ObsStats("sb3", arrays[0], arrays[1], eps, clip, source)


# ------------------------------------------------------------------------------------ rl-zoo3
@dataclass
class RLZooRun:
    """The files of one rl-zoo3 run folder `<algo>/<EnvId>_<n>/`."""

    model: Path
    env_id: str
    config: dict[str, Any]
    config_path: Path
    vecnormalize: Path | None
    normalize: bool


def _yaml_load(path: Path) -> Any:
    """rl-zoo3's config.yml with `yaml.safe_load` rules, plus the one tag rl-zoo3 writes (PyYAML's
    `!!python/object/apply:collections.OrderedDict` of [key, value] pairs), read as a plain dict.
    Every other python tag is refused by the safe loader (nothing is constructed or run)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def ordered_dict(loader, node):
        if not isinstance(node, yaml.SequenceNode) or len(node.value) != 1:
            raise yaml.constructor.ConstructorError(None, None, "OrderedDict with unexpected arguments",
                                                    node.start_mark)
        pairs = loader.construct_sequence(node.value[0], deep=True)
        if not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in pairs):
            raise yaml.constructor.ConstructorError(None, None, "OrderedDict items are not [key, value]",
                                                    node.start_mark)
        return dict(pairs)

    Loader.add_constructor("tag:yaml.org,2002:python/object/apply:collections.OrderedDict", ordered_dict)
    try:
        return yaml.load(path.read_text(), Loader=Loader)  # noqa: S506 (a SafeLoader subclass)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = getattr(exc, "problem", None) or getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise RobbenchError(f"rl-zoo3 config {str(path)!r} cannot be read safely ({reason})") from None


def read_rlzoo_run(folder: str | Path) -> RLZooRun:
    """The model (`<EnvId>.zip`, else `best_model.zip`), config.yml and vecnormalize.pkl of a run."""
    folder = Path(folder)
    env_id = re.sub(r"_\d+$", "", folder.name)
    params = folder / env_id
    where = f"rl-zoo3 run {str(folder)!r}"
    model = next((m for m in (folder / f"{env_id}.zip", folder / "best_model.zip") if m.is_file()), None)
    if model is None:
        raise RobbenchError(f"{where} holds neither {env_id}.zip nor best_model.zip (expected the layout "
                            "<algo>/<EnvId>_<n>/<EnvId>.zip with <EnvId>/config.yml)")
    config_path = params / "config.yml"
    if not config_path.is_file():
        raise RobbenchError(f"{where} has no {env_id}/config.yml")
    config = _yaml_load(_file(config_path, "rl-zoo3 config"))
    if not isinstance(config, dict):
        raise RobbenchError(f"rl-zoo3 config {str(config_path)!r} is not a table of hyperparameters")
    for key in ("env_wrapper", "frame_stack"):
        if config.get(key):
            raise RobbenchError(f"{where} trains with {key} {str(config[key])[:60]!r}, which changes what the policy "
                                "sees; such runs are not supported")
    norm = config.get("normalize", False)
    if isinstance(norm, str):  # rl-zoo3 writes e.g. "dict(norm_obs=True, norm_reward=False)" or "True"
        text = norm.replace(" ", "")
        normalize = "norm_obs=False" not in text and text not in ("False", "false")
    elif isinstance(norm, dict):
        normalize = norm.get("norm_obs", True) is not False
    else:
        normalize = bool(norm)
    vec = params / "vecnormalize.pkl"
    if normalize and not vec.is_file():
        raise RobbenchError(f"{where} was trained with normalize={norm!r} but has no {env_id}/vecnormalize.pkl")
    return RLZooRun(model, env_id, config, config_path, vec if normalize else None, normalize)


def _check_gym_id(env_id: str, env: str) -> None:
    """An rl-zoo3 run of `Hopper-v3` may be imported as robbench's `hopper` (Hopper-v5); another
    environment family may not."""
    from robbench.envs import get_env_spec

    ours = get_env_spec(env).gym_id
    if env_id.split("-v")[0] != ours.split("-v")[0]:
        raise RobbenchError(f"the rl-zoo3 run trained on {env_id}, but env {env!r} is {ours} (wrong --env?)")


# ------------------------------------------------------------------------------- the import
def detect_format(path: str | Path) -> str:
    if Path(path).is_dir():
        return "rlzoo"
    suffix = Path(path).suffix.lower()
    found = {".zip": "sb3", ".cleanrl_model": "cleanrl", ".safetensors": "torch", ".onnx": "onnx"}.get(suffix)
    if found is None:
        raise RobbenchError(f"cannot tell the format of {str(path)!r} from its name; pass --format "
                            f"({', '.join(f for f in FORMATS if f != 'rlzoo')}; an rl-zoo3 run is a folder)")
    return found


def read_network(path: str | Path, fmt: str, activation: str | None = None, spec: str | Path | None = None) -> Network:
    if fmt not in FORMATS:
        raise unknown("format", fmt, FORMATS)
    if fmt not in ("torch", "onnx") and spec is not None:
        raise RobbenchError(f"--spec is for --format torch and onnx only (format {fmt!r} carries its architecture)")
    if fmt == "sb3":
        return read_sb3(path, activation)
    if fmt == "cleanrl":
        return read_cleanrl(path, activation)
    if activation is not None:
        raise RobbenchError(f"--activation is not used with --format {fmt}: "
                            + ("the architecture spec gives it" if fmt == "torch" else "the graph gives it"))
    if fmt == "onnx":
        from robbench.importers_onnx import read_onnx

        return read_onnx(path, spec)
    return read_torch(path, spec)


def read_obs_norm(fmt: str, vecnormalize: str | Path | None, obs_stats: str | Path | None,
                  raw_obs: bool) -> ObsStats:
    given = [n for n, v in (("--vecnormalize", vecnormalize), ("--obs-stats", obs_stats), ("--raw-obs", raw_obs)) if v]
    if len(given) > 1:
        raise RobbenchError(f"{' and '.join(given)} exclude each other: give the one observation normalisation "
                            "the agent was trained with")
    if vecnormalize is not None:
        return read_vecnormalize(vecnormalize)
    if obs_stats is not None:
        return read_obs_stats(obs_stats)
    if raw_obs:
        return ObsStats("none", source="--raw-obs")
    hint = {"sb3": "its VecNormalize file (--vecnormalize vecnormalize.pkl)",
            "cleanrl": "the NormalizeObservation statistics CleanRL does not save (--obs-stats mean/var .npz or .json)",
            "torch": "its statistics (--obs-stats mean/var .npz or .json)",
            "onnx": "its statistics (--obs-stats mean/var .npz or .json)"}[fmt]
    raise RobbenchError(f"the observation normalisation is not in the model file: pass {hint}, or --raw-obs "
                        "if it was trained on raw observations")


def _sha256(path: str | Path) -> str:
    from robbench.checkpoint import file_sha256

    return file_sha256(path)


def build_agent(net: Network, stats: ObsStats, env: str, meta: dict[str, Any]):
    """The robbench Agent of an imported network (float32 weights), `meta` completed with its
    dimensions and conventions; raises one line if the network does not fit the env."""
    from robbench.checkpoint import env_dims
    from robbench.envs import make_env
    from robbench.policy import (Agent, GaussianPolicy, IdentityObsNormalizer, MissingCritic, StaticObsNormalizer,
                                 ValueNet)

    obs_dim, act_dim = env_dims(env)
    if net.obs_dim != obs_dim or net.act_dim != act_dim:
        raise RobbenchError(f"the policy maps {net.obs_dim}-dim observations to {net.act_dim}-dim actions, but env "
                            f"{env!r} has {obs_dim}-dim observations and {act_dim}-dim actions (wrong --env?)")
    if stats.convention == "sb3" and stats.mean.shape != (obs_dim,):
        raise RobbenchError(f"the observation statistics have {stats.mean.size} entries, env {env!r} has "
                            f"{obs_dim}-dim observations (wrong --env or statistics file?)")
    e = make_env(env)
    try:
        low = [float(v) for v in np.asarray(e.action_space.low, dtype=np.float32).reshape(-1)]
        high = [float(v) for v in np.asarray(e.action_space.high, dtype=np.float32).reshape(-1)]
    finally:
        e.close()
    meta = {**meta, "obs_dim": obs_dim, "act_dim": act_dim, "hidden": net.hidden, "activation": net.activation,
            "has_critic": net.critic is not None, "obs_norm": stats.meta(), "action_clip": net.action_clip}
    if net.critic is not None:
        meta["value_hidden"] = net.value_hidden
    if net.action_clip:
        meta.update(action_low=low, action_high=high)
    policy = GaussianPolicy(obs_dim, act_dim, tuple(net.hidden), 1.0, net.activation)
    state = {f"mean_net.{2 * i}.{kind}": t.detach().float().clone()
             for i, (w, b) in enumerate(net.actor) for kind, t in (("weight", w), ("bias", b))}
    policy.load_state_dict({**state, "log_std": net.log_std.detach().float().clone()})
    if net.critic is not None:
        value = ValueNet(obs_dim, tuple(net.value_hidden), net.activation)
        value.load_state_dict({f"net.{2 * i}.{kind}": t.detach().float().clone()
                               for i, (w, b) in enumerate(net.critic) for kind, t in (("weight", w), ("bias", b))})
    else:
        value = MissingCritic(meta["agent_id"])
    normalizer = (IdentityObsNormalizer() if stats.convention == "none"
                  else StaticObsNormalizer(stats.mean, stats.var, stats.epsilon, stats.clip_obs))
    policy.eval()
    value.eval()
    return Agent(policy, value, normalizer, meta)


@dataclass
class Imported:
    record: Any  # robbench.store.AgentRecord
    network: Network
    stats: ObsStats
    created: bool  # False: the same files were imported before under this name

    @property
    def agent_id(self) -> str:
        return self.record.agent_id

    def summary(self) -> str:
        clip = "clipped to the action box" if self.network.action_clip else "the mean, unclipped"
        return (f"{self.network.describe()} (activation: {self.network.activation_source}); observations: "
                f"{self.stats.describe()}; actions: {clip}")


def default_name(path: str | Path, fmt: str) -> str:
    """The file's stem as an agent-id part (`ppo_hopper.zip` → `ppo_hopper`), never a trainer's name."""
    from robbench.registry import trainers

    name = re.sub(r"[^A-Za-z0-9_-]", "-", Path(path).stem)[:56].strip("-_") or fmt
    return f"{name}-{fmt}" if name in trainers() else name


def check_name(name: str) -> str:
    from robbench.registry import trainers

    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RobbenchError(f"--name {name!r} must be 1-64 letters, digits, '-' or '_' (it becomes part of the "
                            "agent id <env>/<name>/external/<seed>)")
    if name in trainers():
        raise RobbenchError(f"--name {name!r} is a robbench trainer; choose another name for an imported agent")
    return name


def import_agent(store, path: str | Path, env: str, fmt: str | None = None, vecnormalize: str | Path | None = None,
                 obs_stats: str | Path | None = None, raw_obs: bool = False, activation: str | None = None,
                 spec: str | Path | None = None, name: str | None = None) -> Imported:
    """Read an outside agent, write it as a robbench checkpoint and register it in `store`.

    The id is `<env>/<name>/external/<seed>`, seed the next free one under that name; importing the
    same files with the same options again returns the agent already registered."""
    from robbench import provenance
    from robbench.checkpoint import save_agent
    from robbench.envs import get_env_spec

    spec_env = get_env_spec(env)
    if not Path(path).is_dir():
        _file(path, "agent file")
    fmt = detect_format(path) if fmt is None else fmt
    if fmt not in FORMATS:
        raise unknown("format", fmt, FORMATS)
    activation = parse_activation(activation)
    files: dict[str, Any] = {"model": path, "vecnormalize": vecnormalize, "obs_stats": obs_stats, "spec": spec}
    if fmt == "rlzoo":
        if not Path(path).is_dir():
            raise RobbenchError(f"--format rlzoo takes a run folder <algo>/<EnvId>_<n>/, not {str(path)!r}")
        if spec is not None:
            raise RobbenchError("--spec is for --format torch only (an rl-zoo3 run carries its architecture)")
        if vecnormalize is not None or obs_stats is not None or raw_obs:
            raise RobbenchError("an rl-zoo3 run brings its own observation normalisation (config.yml, "
                                "vecnormalize.pkl); drop --vecnormalize / --obs-stats / --raw-obs")
        run = read_rlzoo_run(path)
        _check_gym_id(run.env_id, env)
        net = read_sb3(run.model, activation)
        net.info.update(rlzoo_env_id=run.env_id, rlzoo_model=run.model.name)
        stats = read_vecnormalize(run.vecnormalize) if run.normalize else ObsStats("none", source="config.yml "
                                                                                   "normalize=False")
        files = {"model": run.model, "vecnormalize": run.vecnormalize, "config": run.config_path}
        default = f"{Path(path).parent.name}-{run.env_id}".lower() if Path(path).parent.name else run.env_id.lower()
    else:
        net = read_network(path, fmt, activation, spec)
        stats = read_obs_norm(fmt, vecnormalize, obs_stats, raw_obs)
        default = default_name(path, fmt)
    name = check_name(name if name is not None else re.sub(r"[^A-Za-z0-9_-]", "-", default)[:64])
    source = {
        "format": fmt,
        "files": {role: {"name": Path(p).name, "sha256": _sha256(p)} for role, p in files.items() if p is not None},
        "activation": net.activation, "raw_obs": bool(raw_obs),
    }
    same = [a for a in store.agents() if a.env == env and a.method == name and a.budget == BUDGET]
    for record in same:
        if record.meta.get("provenance", {}).get("source") == source:
            return Imported(record, net, stats, False)
    seed = max((a.seed for a in same), default=-1) + 1
    aid = f"{env}/{name}/{BUDGET}/{seed}"
    steps = net.info.get("steps")
    meta = {
        "agent_id": aid, "method": name, "env": env, "gym_id": spec_env.gym_id, "seed": seed, "preset": BUDGET,
        "budget": BUDGET, "steps": steps if isinstance(steps, int) and 0 <= steps < 2**62 else 0, "eps": spec_env.eps,
        "config": {"format": fmt, **({"gamma": net.info["gamma"]} if isinstance(net.info.get("gamma"), float) else {})},
        "provenance": {
            "imported": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "imported_from": str(Path(path)),
            "code_version": provenance.code_version(), "machine": provenance.machine(), "source": source,
            "activation_source": net.activation_source, "external": net.info,
        },
    }
    agent = build_agent(net, stats, env, meta)
    dst = store.agent_path(env, name, BUDGET, seed)
    save_agent(agent, dst)
    from robbench.checkpoint import check_agent_file

    check_agent_file(dst, expected_env=env)  # what evaluate will load: validated now, not at the first cell
    return Imported(store.register_agent(agent.meta, dst), net, stats, True)


# ------------------------------------------------------------------------------- Python API
@dataclass
class BenchmarkResult:
    """What `robbench.benchmark` returns: per-attack mean returns of one agent under one protocol."""

    agent_id: str
    env: str
    episodes: int
    returns: dict[str, float]  # attack -> mean return (a scan attack: its minimum over members)
    skipped: list[str] = field(default_factory=list)  # attacks not run (e.g. a critic attack, no critic)

    @property
    def natural(self) -> float | None:
        return self.returns.get("none")

    @property
    def worst(self) -> tuple[float, str] | None:
        """(min over natural and attacks of the mean return, which one)."""
        if not self.returns:
            return None
        attack = min(self.returns, key=lambda a: self.returns[a])
        return self.returns[attack], attack

    def __str__(self) -> str:
        rows = ", ".join(f"{a} {v:.1f}" for a, v in self.returns.items())
        worst = self.worst
        return f"{self.agent_id}: {rows}" + (f"; worst {worst[0]:.1f} ({worst[1]})" if worst else "")


def benchmark(policy_or_path, env: str = "hopper", attacks: str | list[str] = "standard", home=None,
              episodes: int = 50, workers: int | None = 1, **import_options: Any) -> BenchmarkResult:
    """Import (if needed) and evaluate an agent, through the same store and job path as the CLI.

    `policy_or_path`: a model file (imported with `import_options`: fmt, vecnormalize, obs_stats,
    raw_obs, activation, spec, name), an agent id of the home, or a loaded robbench Agent (its id
    must be registered in the home). `attacks`: "standard", "all", a comma-separated string or a
    list. The natural cell (`none`) is always included, so `worst` is min(natural, attacks)."""
    from robbench.evaluate import Protocol
    from robbench.grid import attack_jobs, drop_critic_cells
    from robbench.jobs import make_executor, run_jobs
    from robbench.policy import Agent
    from robbench.registry import attacks as all_attacks
    from robbench.store import ResultsStore, resolve_home

    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes <= 0:
        raise RobbenchError(f"episodes must be a positive integer, got {episodes!r}")
    table = all_attacks()
    params: dict[str, dict] = {}
    if isinstance(attacks, str) and attacks.startswith("standard"):
        from robbench.suite import get_suite

        suite = get_suite(attacks)
        names = list(suite.attacks)
        params = {n: suite.params(n) for n in names if suite.params(n)}
    elif attacks == "all":
        names = list(table)
    else:
        names = [a.strip() for a in (attacks.split(",") if isinstance(attacks, str) else attacks) if a.strip()]
        for n in names:
            if n not in table:
                raise unknown("attack", n, table)
    names = list(dict.fromkeys(["none", *names]))
    root = resolve_home(home)
    with ResultsStore(root) as store, tempfile.TemporaryDirectory(prefix="robbench-import-") as tmp:
        if isinstance(policy_or_path, Agent):
            aid = _register_loaded(store, policy_or_path)
        elif hasattr(policy_or_path, "save") and hasattr(policy_or_path, "policy"):  # an SB3 model object
            options = dict(import_options)
            model_file = Path(tmp) / f"{type(policy_or_path).__name__.lower()}.zip"
            policy_or_path.save(str(model_file))
            if hasattr(options.get("vecnormalize"), "save"):  # a VecNormalize object
                options["vecnormalize"], vec = Path(tmp) / "vecnormalize.pkl", options["vecnormalize"]
                vec.save(str(options["vecnormalize"]))
            options.setdefault("name", f"sb3-{type(policy_or_path).__name__.lower()}")
            aid = import_agent(store, model_file, env, fmt="sb3", **options).agent_id
        elif isinstance(policy_or_path, (str, Path)) and Path(policy_or_path).is_file():
            aid = import_agent(store, policy_or_path, env, **import_options).agent_id
        elif isinstance(policy_or_path, str):
            aid = store.get_agent(policy_or_path).agent_id
        else:
            raise RobbenchError(f"benchmark needs a model file, an agent id or a robbench Agent, got "
                                f"{type(policy_or_path).__name__}")
        record = store.get_agent(aid)
        jobs = attack_jobs({aid: ()}, names, params, episodes, None)
        jobs, notices = drop_critic_cells(store, jobs)
        protocol = Protocol.for_env(record.env, episodes=episodes).to_dict()
    executor = make_executor("local", workers, len(jobs))
    outcomes = run_jobs(jobs, root, executor)
    failed = [o for o in outcomes if o.status in ("failed", "skipped")]
    if failed:
        raise RobbenchError(f"{failed[0].job.label}: {failed[0].error}")
    returns: dict[str, float] = {}
    with ResultsStore(root, readonly=True) as store:
        for cell in store.cells():
            if cell["agent_id"] == aid and cell["agent_sha256"] == record.sha256 and cell["protocol"] == protocol \
                    and cell["attack"] in names and (cell["attack"] not in params or all(
                        cell["attack_config"].get(k) == v for k, v in params[cell["attack"]].items()
                        if k in cell["attack_config"])):
                returns[cell["attack"]] = min(returns.get(cell["attack"], math.inf), float(cell["mean"]))
    ordered = {n: returns[n] for n in names if n in returns}
    return BenchmarkResult(aid, record.env, episodes, ordered, [attack for _, attack in notices])


def _register_loaded(store, agent) -> str:
    """The id of a loaded robbench Agent in `store`, saving and registering its checkpoint there
    first if the home does not hold it (e.g. a zoo agent)."""
    from robbench.checkpoint import save_agent

    aid = agent.agent_id
    if aid not in {a.agent_id for a in store.agents()}:
        meta = agent.meta
        dst = store.agent_path(meta["env"], meta["method"], meta["budget"], int(meta["seed"]))
        save_agent(agent, dst)
        store.register_agent(meta, dst)
    return aid
