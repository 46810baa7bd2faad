"""Agent checkpoints: safetensors tensors + JSON metadata, never pickle.

A checkpoint is one `.safetensors` file. Tensors: `policy.*`, `value.*`, `obs_filter.*`,
`extra.<module>.*`. The safetensors header metadata carries `robbench` (JSON: config and provenance)
and `payload_sha256`, a hash over every tensor's name, dtype, shape and bytes, so that a flipped
byte in the weights is caught, not only a broken header. Loading parses JSON and raw tensor bytes
only; nothing in the file is ever executed. Files are written to a temporary name and renamed, so a
crash never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

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
    except (KeyError, json.JSONDecodeError):
        raise RobbenchError(f"checkpoint {str(path)!r} is corrupt (unreadable metadata)") from None
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


def load_agent_file(path: str | Path, expected_env: str | None = None) -> Agent:
    """Load an agent checkpoint; the filter comes back frozen. Never executes code from the file."""
    tensors, meta = read_tensors(path)
    if expected_env is not None and meta.get("env") != expected_env:
        raise RobbenchError(
            f"checkpoint {str(path)!r} was trained on env {meta.get('env')!r}, not {expected_env!r}"
        )
    try:
        policy = GaussianPolicy(meta["obs_dim"], meta["act_dim"], tuple(meta["hidden"]), 1.0)
        value = ValueNet(meta["obs_dim"], tuple(meta["hidden"]))
        policy.load_state_dict(_strip(tensors, "policy."))
        value.load_state_dict(_strip(tensors, "value."))
        stats = RunningMeanStd.from_state({k: v.numpy() for k, v in _strip(tensors, "obs_filter.").items()})
    except (KeyError, RuntimeError, TypeError) as exc:
        raise RobbenchError(f"checkpoint {str(path)!r} does not hold a valid agent ({exc})") from None
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
