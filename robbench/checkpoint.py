"""Agent checkpoints: safetensors tensors + JSON metadata, never pickle.

A checkpoint is one `.safetensors` file. Tensors: `policy.*`, `value.*`, `obs_filter.*`,
`extra.<module>.*`. The safetensors header metadata carries `robbench` (JSON: config and provenance)
and `payload_sha256`, a hash over every tensor's name, dtype, shape and bytes, so that a flipped
byte in the weights is caught, not only a broken header. Loading parses JSON and raw tensor bytes
only; nothing in the file is ever executed. Files are written to a temporary name and renamed, so a
crash never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from robbench.errors import RobbenchError, io_error
from robbench.filters import ObsFilter, RunningMeanStd
from robbench.policy import (Agent, GaussianPolicy, IdentityObsNormalizer, MissingCritic, StaticObsNormalizer,
                             ValueNet)

FORMAT = "robbench-agent/1"


def payload_hash(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    """Write a safetensors file with JSON `metadata` via a temporary file and an atomic rename."""
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header = {
        "format": metadata.get("format", FORMAT),
        "robbench": json.dumps(metadata, sort_keys=True),
        "payload_sha256": payload_hash(tensors),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
    except OSError as exc:  # read-only home, permissions, full disk: one line
        raise io_error(exc, path) from None
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=header)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; checkpoints are shared read-only data
        os.replace(tmp, path)
    except (OSError, SafetensorError) as exc:  # e.g. disk full (ENOSPC) or file size limit (EFBIG)
        Path(tmp).unlink(missing_ok=True)
        raise io_error(exc, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_copy(src: str | Path, dst: str | Path) -> None:
    """Copy a file via a temporary name and an atomic rename (0644); a file already equal is kept."""
    src, dst = Path(src), Path(dst)
    if dst.is_file() and file_sha256(dst) == file_sha256(src):
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=".tmp-")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_tensors(path: str | Path, expected_format: str = FORMAT) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify a robbench safetensors file; one-line RobbenchError on any problem."""
    path = Path(path)
    if not path.is_file():
        raise RobbenchError(f"checkpoint {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        if _looks_pickled(path):  # never unpickled: say what the file is
            raise RobbenchError(f"checkpoint {str(path)!r} is a pickle (torch.save) file, not a robbench "
                                "safetensors checkpoint; it was not loaded (unpickling can run code)") from None
        reason = " ".join(str(exc).split())
        raise RobbenchError(f"checkpoint {str(path)!r} is corrupt or truncated ({reason})") from None
    found = header.get("format")
    if found != expected_format:
        if isinstance(found, str) and found.split("/")[0] == expected_format.split("/")[0]:
            raise RobbenchError(
                f"checkpoint {str(path)!r} has format {found!r}, written by an incompatible robbench version; "
                f"this version reads {expected_format!r} (re-create it with this version)"
            )
        raise RobbenchError(f"checkpoint {str(path)!r} has format {found!r}, expected {expected_format!r}")
    if header.get("payload_sha256") != payload_hash(tensors):
        raise RobbenchError(f"checkpoint {str(path)!r} is corrupt (tensor checksum mismatch)")
    try:
        meta = json.loads(header["robbench"])
    except (KeyError, json.JSONDecodeError, RecursionError):
        raise RobbenchError(f"checkpoint {str(path)!r} is corrupt (unreadable metadata)") from None
    if not isinstance(meta, dict):
        raise RobbenchError(f"checkpoint {str(path)!r} is corrupt (its metadata is a JSON {type(meta).__name__}, "
                            "not an object)")
    return tensors, meta


def _looks_pickled(path: Path) -> bool:
    """A pickle (protocol ≥ 2: 0x80 then the protocol) or a zip (torch.save's default format), and not
    a safetensors file (8-byte header length, then '{')."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if head[8:9] == b"{":
        return False
    return (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) or head[:2] == b"PK"


def save_agent(agent: Agent, path: str | Path) -> None:
    """Write an agent checkpoint. robbench's own agents (tanh, a critic, the running observation
    filter) hold exactly the tensors and metadata they always did; an imported agent's conventions
    are in its metadata (`activation`, `squash`, `value_hidden`, `has_critic`, `obs_norm`, `action_clip`)."""
    tensors: dict[str, torch.Tensor] = {}
    tensors.update({f"policy.{k}": v for k, v in agent.policy.state_dict().items()})
    if agent.meta.get("has_critic", True):
        tensors.update({f"value.{k}": v for k, v in agent.value.state_dict().items()})
    convention = obs_norm_convention(agent.meta)
    if convention == "robbench":
        for k, v in agent.obs_filter.stats.state().items():
            tensors[f"obs_filter.{k}"] = torch.from_numpy(np.asarray(v))
    elif convention == "sb3":
        tensors["obs_norm.mean"] = torch.from_numpy(np.asarray(agent.obs_filter.mean, dtype=np.float64).copy())
        tensors["obs_norm.var"] = torch.from_numpy(np.asarray(agent.obs_filter.var, dtype=np.float64).copy())
    for module, state in agent.extra_state.items():
        tensors.update({f"extra.{module}.{k}": v for k, v in state.items()})
    atomic_save_tensors(path, tensors, {"format": FORMAT, **agent.meta})


OBS_NORM_CONVENTIONS = ("robbench", "sb3", "none")
"""How an agent normalises raw observations (`meta["obs_norm"]["convention"]`, absent: robbench):
robbench: clip((o − mean)/(std + 1e-8), ±10) with the running filter's tensors `obs_filter.*`;
sb3: clip((o − mean)/sqrt(var + epsilon), ±clip_obs), tensors `obs_norm.mean` / `obs_norm.var`
(SB3 VecNormalize; gymnasium NormalizeObservation as CleanRL uses it); none: raw observations."""


def obs_norm_convention(meta: dict) -> str:
    norm = meta.get("obs_norm")
    return norm.get("convention", "robbench") if isinstance(norm, dict) else "robbench"


@functools.lru_cache(maxsize=None)
def env_dims(env: str) -> tuple[int, int]:
    """(observation, action) dimensions of a registered env, read from its gymnasium spaces."""
    from robbench.envs import make_env

    e = make_env(env)
    try:
        return int(np.prod(e.observation_space.shape)), int(np.prod(e.action_space.shape))
    finally:
        e.close()


def agent_tensor_shapes(obs_dim: int, act_dim: int, hidden: list[int], value_hidden: list[int] | None = None,
                        critic: bool = True, obs_norm: str = "robbench",
                        squash: str = "none") -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes an agent checkpoint of these dimensions holds (extra.* aside).

    Defaults: robbench's own agents (value net as wide as the policy, the running filter)."""
    shapes: dict[str, tuple[int, ...]] = {"policy.log_std": (act_dim,)}
    if obs_norm == "robbench":
        shapes.update({"obs_filter.n": (), "obs_filter.mean": (obs_dim,), "obs_filter.m2": (obs_dim,)})
    elif obs_norm == "sb3":
        shapes.update({"obs_norm.mean": (obs_dim,), "obs_norm.var": (obs_dim,)})
    nets = [("policy.mean_net", act_dim, hidden)]
    if critic:
        nets.append(("value.net", 1, hidden if value_hidden is None else value_hidden))
    for prefix, out, widths in nets:
        dims = (obs_dim, *widths, out)
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            shapes[f"{prefix}.{2 * i}.weight"] = (b, a)
            shapes[f"{prefix}.{2 * i}.bias"] = (b,)
    if squash == "tanh":  # GaussianPolicy's Tanh, then the Linear onto the action box
        box = 2 * len(hidden) + 2
        shapes.update({f"policy.mean_net.{box}.weight": (act_dim, act_dim), f"policy.mean_net.{box}.bias": (act_dim,)})
    return shapes


def _finite_number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # a JSON integer of hundreds of digits
        return False


def validate_agent(tensors: dict[str, torch.Tensor], meta: Any, path: str | Path) -> None:
    """Check an agent checkpoint's metadata and tensors before anything is built from them.

    The metadata (a JSON object) must name a registered env and give `obs_dim` / `act_dim` equal to
    that env's spaces and `hidden` as a list of positive integers; the tensors must be exactly the
    policy, value and observation-filter tensors those dimensions imply (plus `extra.<module>.<key>`),
    with those shapes, floating-point and finite (filter count an integer ≥ 0, m2 ≥ 0). So a file's
    metadata can never make the loader allocate more than the file's own tensors. Every loader of
    agent checkpoints calls this; a problem is one RobbenchError line naming it.
    """
    def bad(reason: str) -> RobbenchError:
        return RobbenchError(f"checkpoint {str(path)!r} does not hold a valid agent ({reason})")

    def shown(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."

    if not isinstance(meta, dict):
        raise bad(f"its metadata is a {type(meta).__name__}, not a JSON object")
    env = meta.get("env")
    if not isinstance(env, str):
        raise bad(f"metadata 'env' must be an env name, got {shown(env)}")
    for key, kind in (("agent_id", str), ("config", dict), ("provenance", dict)):
        if key in meta and not isinstance(meta[key], kind):
            raise bad(f"metadata {key!r} must be a {'string' if kind is str else 'JSON object'}, "
                      f"got {shown(meta[key])}")

    def positive_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    dims = {}
    for key in ("obs_dim", "act_dim"):
        if not positive_int(meta.get(key)):
            raise bad(f"metadata {key!r} must be a positive integer, got {shown(meta.get(key))}")
        dims[key] = meta[key]
    hidden = meta.get("hidden")
    if not isinstance(hidden, list) or not all(positive_int(h) for h in hidden):
        raise bad(f"metadata 'hidden' must be a list of positive integers, got {shown(hidden)}")
    conventions = _check_conventions(meta, dims["act_dim"], bad, shown, positive_int)
    from robbench.envs import ENVS

    if env not in ENVS:
        raise bad(f"unknown env {shown(env)}; valid choices: {', '.join(sorted(ENVS))}")
    for key, want, what in zip(("obs_dim", "act_dim"), env_dims(env), ("observation", "action")):
        if dims[key] != want:
            raise bad(f"metadata {key} {shown(dims[key])} does not match env {env!r}, whose {what}s have "
                      f"{want} dimensions")
    value_hidden, critic, obs_norm = conventions
    expected = agent_tensor_shapes(dims["obs_dim"], dims["act_dim"], hidden, value_hidden, critic, obs_norm,
                                   meta.get("squash", "none"))
    widths = f"hidden {hidden}" + (f" (value_hidden {value_hidden})" if value_hidden is not None else "")
    holds = ["policy.*"] + (["value.*"] if critic else []) + \
        {"robbench": ["obs_filter.*"], "sb3": ["obs_norm.*"], "none": []}[obs_norm]
    for name in sorted(tensors):
        t = tensors[name]
        if name in expected:
            if tuple(t.shape) != expected[name]:
                raise bad(f"tensor {name!r} has shape {tuple(t.shape)}, but obs_dim {dims['obs_dim']}, act_dim "
                          f"{dims['act_dim']} and {widths} imply {expected[name]}")
        elif not (name.startswith("extra.") and all(name[len("extra."):].partition(".")[::2])):
            raise bad(f"unexpected tensor {name!r} (an agent holds {', '.join(holds)} and "
                      "extra.<module>.<key> tensors)")
        if name == "obs_filter.n":
            if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool or int(t) < 0:
                raise bad(f"tensor 'obs_filter.n' must be an integer count ≥ 0, got {t.item()!r} ({t.dtype})")
            continue
        if not t.dtype.is_floating_point:
            raise bad(f"tensor {name!r} has dtype {t.dtype}, expected a floating-point type")
        if not bool(torch.isfinite(t).all()):
            raise bad(f"tensor {name!r} holds NaN or infinite values")
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise bad(f"tensor {missing[0]!r} is missing")
    if obs_norm == "robbench" and bool((tensors["obs_filter.m2"] < 0).any()):
        raise bad("tensor 'obs_filter.m2' (sums of squared deviations) has negative values")
    if obs_norm == "sb3":
        if bool((tensors["obs_norm.var"] < 0).any()):
            raise bad("tensor 'obs_norm.var' (observation variances) has negative values")
        if bool((tensors["obs_norm.var"].double() + float(meta["obs_norm"]["epsilon"]) <= 0).any()):
            raise bad("tensor 'obs_norm.var' has zero variances and obs_norm epsilon is 0 (division by zero)")


def _check_conventions(meta: dict, act_dim: int, bad, shown, positive_int) -> tuple[list[int] | None, bool, str]:
    """The optional convention keys of an agent's metadata (absent: robbench's own agent):
    `activation`, `squash`, `value_hidden`, `has_critic`, `obs_norm`, `action_clip` / `action_low` /
    `action_high`. Returns (value_hidden or None, has a critic, obs_norm convention)."""
    from robbench.policy import ACTIVATIONS, SQUASHES

    if "activation" in meta and meta["activation"] not in ACTIVATIONS:
        raise bad(f"metadata 'activation' must be one of {', '.join(ACTIVATIONS)}, got {shown(meta['activation'])}")
    if "squash" in meta and meta["squash"] not in SQUASHES:
        raise bad(f"metadata 'squash' must be one of {', '.join(SQUASHES)}, got {shown(meta['squash'])}")
    value_hidden = meta.get("value_hidden")
    if "value_hidden" in meta and (not isinstance(value_hidden, list)
                                   or not all(positive_int(h) for h in value_hidden)):
        raise bad(f"metadata 'value_hidden' must be a list of positive integers, got {shown(value_hidden)}")
    for key in ("has_critic", "action_clip"):
        if key in meta and not isinstance(meta[key], bool):
            raise bad(f"metadata {key!r} must be true or false, got {shown(meta[key])}")
    norm = meta.get("obs_norm", {"convention": "robbench"})
    if not isinstance(norm, dict) or norm.get("convention") not in OBS_NORM_CONVENTIONS:
        raise bad(f"metadata 'obs_norm' must be a table whose 'convention' is one of "
                  f"{', '.join(OBS_NORM_CONVENTIONS)}, got {shown(norm)}")
    if norm["convention"] == "sb3":
        eps, clip = norm.get("epsilon"), norm.get("clip_obs")
        if not _finite_number(eps) or eps < 0:
            raise bad(f"metadata obs_norm 'epsilon' must be a finite number ≥ 0, got {shown(eps)}")
        if clip is not None and (not _finite_number(clip) or clip <= 0):
            raise bad(f"metadata obs_norm 'clip_obs' must be null or a finite number > 0, got {shown(clip)}")
    if meta.get("action_clip"):
        bounds = [meta.get("action_low"), meta.get("action_high")]
        for key, value in zip(("action_low", "action_high"), bounds):
            if not isinstance(value, list) or len(value) != act_dim or not all(_finite_number(v) for v in value):
                raise bad(f"metadata {key!r} must be a list of {act_dim} finite numbers when action_clip is true, "
                          f"got {shown(value)}")
        if any(lo > hi for lo, hi in zip(*bounds)):
            raise bad("metadata 'action_low' exceeds 'action_high'")
    return value_hidden, meta.get("has_critic", True), norm["convention"]


def check_agent_file(path: str | Path, expected_env: str | None = None) -> dict:
    """Read and validate an agent checkpoint without building its networks; returns its metadata."""
    tensors, meta = read_tensors(path)
    if expected_env is not None and meta.get("env") != expected_env:
        raise RobbenchError(
            f"checkpoint {str(path)!r} was trained on env {meta.get('env')!r}, not {expected_env!r}"
        )
    validate_agent(tensors, meta, path)
    return meta


def load_agent_file(path: str | Path, expected_env: str | None = None) -> Agent:
    """Load an agent checkpoint; the filter comes back frozen. Never executes code from the file.

    Metadata and tensors are validated (`validate_agent`) before any network is built."""
    tensors, meta = read_tensors(path)
    if expected_env is not None and meta.get("env") != expected_env:
        raise RobbenchError(
            f"checkpoint {str(path)!r} was trained on env {meta.get('env')!r}, not {expected_env!r}"
        )
    validate_agent(tensors, meta, path)
    activation = meta.get("activation", "tanh")
    try:
        policy = GaussianPolicy(meta["obs_dim"], meta["act_dim"], tuple(meta["hidden"]), 1.0, activation,
                                meta.get("squash", "none"))
        policy.load_state_dict(_strip(tensors, "policy."))
        if meta.get("has_critic", True):
            value = ValueNet(meta["obs_dim"], tuple(meta.get("value_hidden", meta["hidden"])), activation)
            value.load_state_dict(_strip(tensors, "value."))
        else:
            value = MissingCritic(meta.get("agent_id", str(path)))
        obs_filter = _obs_normalizer(meta, tensors)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise RobbenchError(f"checkpoint {str(path)!r} does not hold a valid agent ({reason})") from None
    extra: dict[str, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        if name.startswith("extra."):
            module, key = name[len("extra."):].split(".", 1)
            extra.setdefault(module, {})[key] = t
    meta.pop("format", None)
    policy.eval()
    value.eval()
    return Agent(policy, value, obs_filter, meta, extra)


def _obs_normalizer(meta: dict, tensors: dict[str, torch.Tensor]):
    """The frozen observation normaliser of the agent's convention (`obs_norm_convention`)."""
    convention = obs_norm_convention(meta)
    if convention == "sb3":
        norm = meta["obs_norm"]
        return StaticObsNormalizer(tensors["obs_norm.mean"].double().numpy(), tensors["obs_norm.var"].double().numpy(),
                                   norm["epsilon"], norm.get("clip_obs"))
    if convention == "none":
        return IdentityObsNormalizer()
    obs_filter = ObsFilter(meta["obs_dim"])
    obs_filter.stats = RunningMeanStd.from_state({k: v.numpy() for k, v in _strip(tensors, "obs_filter.").items()})
    obs_filter.frozen = True
    return obs_filter


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
