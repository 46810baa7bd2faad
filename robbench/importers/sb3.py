"""Stable-Baselines3 `.zip` models: `policy.pth` via `torch.load(weights_only=True)`, `data` as JSON.

PPO / A2C (`ActorCriticPolicy`: a Gaussian MLP with a state-independent log σ and a V critic), and
the deterministic actors of SAC, TD3 and DDPG: μ(s) = tanh(MLP(s)) mapped onto the action box, as
their `predict(..., deterministic=True)` does. Their critics are Q(s, a), not V(s): they import
without one (critic attacks are skipped, and the row says so)."""

from __future__ import annotations

import json
import math
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

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
    if any(k.startswith(("q_net.", "q_net_target.", "quantile_net.")) for k in sd):
        raise RobbenchError(f"{where} is a DQN-family (discrete-action) policy; robbench imports PPO / A2C, SAC "
                            "and TD3 / DDPG MlpPolicy models")
    if any(k.startswith("actor.") for k in sd):
        return _read_actor(sd, data, where, activation, version)
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
    recorded, source = _sb3_activation(data, kwargs, "tanh", "ActorCriticPolicy")
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


OFF_POLICY_SIGMA = 0.1
"""σ given to an imported SAC / TD3 / DDPG actor, which holds no state-independent σ (SAC's is
state-dependent, TD3's exploration noise is not part of the policy): TD3's usual Gaussian exploration
noise. Deterministic evaluation never uses it; only attacks that sample the victim's actions do
(robust Sarsa's data collection, PA-AD's training). Recorded in the agent's `sigma_source`."""


def _read_actor(sd: dict[str, Any], data: dict[str, Any], where: str, activation: str | None,
                version: str | None) -> Network:
    """The deterministic actor of an SB3 SAC (`actor.latent_pi.*`, `actor.mu`) or TD3 / DDPG
    (`actor.mu.*`, Tanh last) policy: μ(s) = tanh(MLP(s)), mapped onto the action box at import."""
    if data.get("use_sde") is True:
        raise RobbenchError(f"{where} uses state-dependent exploration (gSDE, use_sde=True), which changes the "
                            "SAC actor; only use_sde=False actors are supported")
    kwargs = data.get("policy_kwargs") if isinstance(data.get("policy_kwargs"), dict) else None
    for key in sd:
        if key.startswith(("actor.features_extractor.", "critic.features_extractor.")):
            raise RobbenchError(f"{where}: tensor {key!r} belongs to a learned features extractor; only MlpPolicy "
                                "(flatten extractor) is supported")
    actor_sd = {k: v for k, v in sd.items() if k.startswith("actor.")}
    if "actor.latent_pi.0.weight" in actor_sd or "actor.mu.weight" in actor_sd:  # SAC
        algorithm = "SAC"
        known = ("actor.latent_pi.", "actor.mu.weight", "actor.mu.bias", "actor.log_std.weight", "actor.log_std.bias")
        head = [(actor_sd.get("actor.mu.weight"), actor_sd.get("actor.mu.bias"))]
        if head[0][0] is None or head[0][1] is None:
            raise RobbenchError(f"{where}: the SAC actor lacks actor.mu's weight or bias")
        actor = _linear_chain(actor_sd, "actor.latent_pi.", where) + head
    else:  # TD3 / DDPG: actor.mu is Linear, activation, …, Linear, Tanh
        algorithm = "TD3/DDPG"
        known = ("actor.mu.",)
        actor = _linear_chain(actor_sd, "actor.mu.", where)
        if not actor:
            raise RobbenchError(f"{where}: policy.pth has actor.* tensors but neither a SAC (actor.latent_pi, "
                                "actor.mu) nor a TD3 (actor.mu.0, actor.mu.2, …) actor")
    stray = sorted(k for k in actor_sd if not k.startswith(known))
    if stray:
        raise RobbenchError(f"{where}: unexpected actor tensor {stray[0]!r} for an SB3 {algorithm} MlpPolicy")
    _check_chain(actor, None, where, "policy")
    recorded, source = _sb3_activation(data, kwargs, "relu", f"{algorithm} actor")
    if recorded is None and activation is None:
        raise RobbenchError(f"{where} does not record its activation in readable form ({source}); pass "
                            "--activation tanh|relu|elu")
    if recorded is not None and activation is not None and recorded != activation:
        raise RobbenchError(f"{where} records activation {recorded!r} (policy_kwargs), but --activation is "
                            f"{activation!r}")
    act_dim = int(actor[-1][0].shape[0])
    log_std = torch.full((act_dim,), math.log(OFF_POLICY_SIGMA))
    sigma = (f"{OFF_POLICY_SIGMA:g} (the {algorithm} model holds no state-independent σ; used only where an attack "
             "samples the victim's actions)")
    info = {"sb3_version": version, "steps": data.get("num_timesteps"), "gamma": data.get("gamma"),
            "algorithm_hint": f"{algorithm} deterministic actor"}
    return Network(actor, log_std, None, activation or recorded, source if recorded else "--activation", True,
                   {k: v for k, v in info.items() if v is not None}, squash="tanh", sigma_source=sigma)


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


def _sb3_activation(data: dict[str, Any], kwargs: dict[str, Any] | None, default: str,
                    policy: str) -> tuple[str | None, str]:
    """(activation, where it was read) from `data`'s policy_kwargs (`default`, SB3's for `policy`,
    when they set none), or (None, why not)."""
    if not data:
        return None, "its data member is missing or not JSON"
    if "policy_kwargs" not in data:
        return None, "its data has no policy_kwargs"
    if kwargs is None:
        return None, "its policy_kwargs are not a readable table"
    if "activation_fn" not in kwargs:
        if ":serialized:" in kwargs and not any(not k.startswith(":") for k in kwargs):
            return None, "its policy_kwargs are stored only pickled"  # never unpickled here
        torch_name = {v: k for k, v in ACTIVATION_NAMES.items()}[default]
        return default, f"SB3 default (policy_kwargs set no activation_fn; {policy} uses nn.{torch_name})"
    text = kwargs["activation_fn"]
    match = re.fullmatch(r"<class 'torch\.nn\.modules\.activation\.(\w+)'>", text) if isinstance(text, str) else None
    if match is None:
        return None, f"policy_kwargs activation_fn is {str(text)[:60]!r}"
    name = match.group(1)
    if name not in ACTIVATION_NAMES:
        raise RobbenchError(f"activation nn.{name} is not supported; robbench imports networks with "
                            f"{', '.join(f'nn.{n}' for n in ACTIVATION_NAMES)}")
    return ACTIVATION_NAMES[name], f"policy_kwargs activation_fn nn.{name}"
