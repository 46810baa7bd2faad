"""Stable-Baselines3 `.zip` models (PPO / A2C): `policy.pth` via `torch.load(weights_only=True)`, `data` as JSON."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

from robbench.errors import RobbenchError
from robbench.importers.common import (ACTIVATION_NAMES, MAX_FILE_BYTES, Network, _check_chain, _file, _linear_chain,
                                       _log_std, _torch_state_dict)


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
