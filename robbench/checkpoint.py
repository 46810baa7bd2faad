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
from robbench.policy import Agent, GaussianPolicy, ValueNet

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
    tensors: dict[str, torch.Tensor] = {}
    tensors.update({f"policy.{k}": v for k, v in agent.policy.state_dict().items()})
    tensors.update({f"value.{k}": v for k, v in agent.value.state_dict().items()})
    for k, v in agent.obs_filter.stats.state().items():
        tensors[f"obs_filter.{k}"] = torch.from_numpy(np.asarray(v))
    for module, state in agent.extra_state.items():
        tensors.update({f"extra.{module}.{k}": v for k, v in state.items()})
    atomic_save_tensors(path, tensors, {"format": FORMAT, **agent.meta})


@functools.lru_cache(maxsize=None)
def env_dims(env: str) -> tuple[int, int]:
    """(observation, action) dimensions of a registered env, read from its gymnasium spaces."""
    from robbench.envs import make_env

    e = make_env(env)
    try:
        return int(np.prod(e.observation_space.shape)), int(np.prod(e.action_space.shape))
    finally:
        e.close()


def agent_tensor_shapes(obs_dim: int, act_dim: int, hidden: list[int]) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes an agent checkpoint of these dimensions holds (extra.* aside)."""
    shapes: dict[str, tuple[int, ...]] = {"policy.log_std": (act_dim,), "obs_filter.n": (),
                                          "obs_filter.mean": (obs_dim,), "obs_filter.m2": (obs_dim,)}
    for prefix, out in (("policy.mean_net", act_dim), ("value.net", 1)):
        dims = (obs_dim, *hidden, out)
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            shapes[f"{prefix}.{2 * i}.weight"] = (b, a)
            shapes[f"{prefix}.{2 * i}.bias"] = (b,)
    return shapes


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
    from robbench.envs import ENVS

    if env not in ENVS:
        raise bad(f"unknown env {shown(env)}; valid choices: {', '.join(sorted(ENVS))}")
    for key, want, what in zip(("obs_dim", "act_dim"), env_dims(env), ("observation", "action")):
        if dims[key] != want:
            raise bad(f"metadata {key} {shown(dims[key])} does not match env {env!r}, whose {what}s have "
                      f"{want} dimensions")
    expected = agent_tensor_shapes(dims["obs_dim"], dims["act_dim"], hidden)
    for name in sorted(tensors):
        t = tensors[name]
        if name in expected:
            if tuple(t.shape) != expected[name]:
                raise bad(f"tensor {name!r} has shape {tuple(t.shape)}, but obs_dim {dims['obs_dim']}, act_dim "
                          f"{dims['act_dim']} and hidden {hidden} imply {expected[name]}")
        elif not (name.startswith("extra.") and all(name[len("extra."):].partition(".")[::2])):
            raise bad(f"unexpected tensor {name!r} (an agent holds policy.*, value.*, obs_filter.* and "
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
    if bool((tensors["obs_filter.m2"] < 0).any()):
        raise bad("tensor 'obs_filter.m2' (sums of squared deviations) has negative values")


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
    try:
        policy = GaussianPolicy(meta["obs_dim"], meta["act_dim"], tuple(meta["hidden"]), 1.0)
        value = ValueNet(meta["obs_dim"], tuple(meta["hidden"]))
        policy.load_state_dict(_strip(tensors, "policy."))
        value.load_state_dict(_strip(tensors, "value."))
        stats = RunningMeanStd.from_state({k: v.numpy() for k, v in _strip(tensors, "obs_filter.").items()})
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise RobbenchError(f"checkpoint {str(path)!r} does not hold a valid agent ({reason})") from None
    obs_filter = ObsFilter(meta["obs_dim"])
    obs_filter.stats = stats
    obs_filter.frozen = True
    extra: dict[str, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        if name.startswith("extra."):
            module, key = name[len("extra."):].split(".", 1)
            extra.setdefault(module, {})[key] = t
    meta.pop("format", None)
    policy.eval()
    value.eval()
    return Agent(policy, value, obs_filter, meta, extra)


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
