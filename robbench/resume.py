"""Mid-job snapshots, so a long training or learned-attack fit resumes where it was killed.

A snapshot is the complete state of a `PPOCore` between two iterations: networks, Adam moments,
observation filter and reward scaler statistics, every random generator, the episode counters and
the exact MuJoCo integration state of each env copy (``mj_getState(mjSTATE_INTEGRATION)``, warm
start included), plus the Objective's own networks and optimisers. Restoring it and running the
remaining iterations gives bit-for-bit the agent an uninterrupted run gives (tests/test_resume.py).

Snapshots use the checkpoint format (safetensors + JSON metadata with a payload checksum; never
pickle) and are written atomically, so a kill during a write leaves the previous snapshot. They are
a cache: a snapshot that is corrupt, or from other code or another config, is ignored and the job
starts over; it is deleted once the job's final output is stored.

A job's `ResumePoint` is passed explicitly to what runs it: `PPOCore(..., resume=point)` for a
training run or a PPO-trained adversary, `LearnedAttack.fit(..., resume=point)` for a learned
attack's fit (robbench/artifacts.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robbench.checkpoint import atomic_save_tensors, read_tensors
from robbench.errors import RobbenchError

FORMAT = "robbench-snapshot/1"
DEFAULT_EVERY_S = 60.0  # wall seconds between snapshots; ROBBENCH_SNAPSHOT_S overrides (0: every iteration)


# ------------------------------------------------------------------------------ nested state packing
def pack(obj: Any, tensors: dict[str, torch.Tensor], path: str = "s") -> Any:
    """JSON skeleton of a nested state; tensors and arrays go into `tensors` under path names."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().clone().contiguous()
        return {"__tensor__": path}
    if isinstance(obj, np.ndarray):
        tensors[path] = torch.from_numpy(np.array(obj, order="C", copy=True))
        return {"__array__": path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: pack(v, tensors, f"{path}.{k}") for k, v in obj.items()}}
        return {"__items__": [[k, pack(v, tensors, f"{path}.{i}")] for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        packed = [pack(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
        return {"__tuple__": packed} if isinstance(obj, tuple) else packed
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot snapshot a {type(obj).__name__} at {path}")


def unpack(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, list):
        return [unpack(v, tensors) for v in skeleton]
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__array__" in skeleton:
            return tensors[skeleton["__array__"]].numpy()
        if "__dict__" in skeleton:
            return {k: unpack(v, tensors) for k, v in skeleton["__dict__"].items()}
        if "__items__" in skeleton:
            return {k: unpack(v, tensors) for k, v in skeleton["__items__"]}
        if "__tuple__" in skeleton:
            return tuple(unpack(v, tensors) for v in skeleton["__tuple__"])
    return skeleton


# ------------------------------------------------------------------------- generic object state
def object_state(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Learnable state of an Objective-like object: its modules, optimisers, generators, tensors
    and plain numbers (derived helpers such as bound models are rebuilt from the modules)."""
    out: dict[str, Any] = {}
    for name, value in vars(obj).items():
        if name in skip:
            continue
        if isinstance(value, torch.nn.Module):
            out[name] = {"module": value.state_dict()}
        elif isinstance(value, torch.optim.Optimizer):
            out[name] = {"optimizer": value.state_dict()["state"]}
        elif isinstance(value, torch.Generator):
            out[name] = {"generator": value.get_state()}
        elif isinstance(value, torch.Tensor):
            out[name] = {"tensor": value}
        elif isinstance(value, (bool, int, float)) and not isinstance(value, np.generic):
            out[name] = {"value": value}
    return out


def load_object_state(obj: Any, state: dict[str, Any]) -> None:
    for name, entry in state.items():
        current = getattr(obj, name, None)
        if "module" in entry:
            current.load_state_dict(entry["module"])
        elif "optimizer" in entry:
            load_optimizer_state(current, entry["optimizer"])
        elif "generator" in entry:
            current.set_state(entry["generator"])
        elif "tensor" in entry:
            setattr(obj, name, entry["tensor"].clone())
        else:
            setattr(obj, name, entry["value"])


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Restore per-parameter moments; hyper-parameters stay those of the live optimiser."""
    full = optimizer.state_dict()
    full["state"] = {int(k): v for k, v in state.items()}
    optimizer.load_state_dict(full)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, (torch.Tensor, np.ndarray, dict, list, tuple)) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def state_mismatch(got: Any, like: Any, where: str = "state") -> str | None:
    """Why a restored state cannot stand for the live state `like` (None: it can).

    Every key `like` has must be there, with the same kind of value: tensors and arrays of the same
    dtype and shape (any length where `like`'s is empty, e.g. a return history at the start), lists
    of the same length (any where `like`'s is empty), numbers for numbers, strings for strings.
    An empty table in `like` (optimiser moments before the first step) accepts any table; extra
    keys are accepted only as object-state tensors or values (`object_state` of attributes that
    were None when the job started). A numpy scalar and a 0-d array stand for each other (running
    statistics of shape () turn from one into the other once updated)."""
    if isinstance(like, np.generic) or (isinstance(like, np.ndarray) and like.ndim == 0):
        ok = (isinstance(got, (int, float, np.generic)) and not isinstance(got, (bool, np.bool_))) or (
            isinstance(got, np.ndarray) and got.ndim == 0 and got.dtype.kind in "iuf")
        return None if ok else f"{where} is {_short(got)}, expected a number"
    if isinstance(like, (torch.Tensor, np.ndarray)):
        kind = torch.Tensor if isinstance(like, torch.Tensor) else np.ndarray
        if not isinstance(got, kind):
            return f"{where} is a {type(got).__name__}, expected a {kind.__name__}"
        if got.dtype != like.dtype:
            return f"{where} has dtype {got.dtype}, expected {like.dtype}"
        empty = like.size == 0 if isinstance(like, np.ndarray) else like.numel() == 0
        if tuple(got.shape) != tuple(like.shape) and not (empty and got.ndim == like.ndim):
            return f"{where} has shape {tuple(got.shape)}, expected {tuple(like.shape)}"
        return None
    if isinstance(like, dict):
        if not isinstance(got, dict):
            return f"{where} is a {type(got).__name__}, expected a table"
        if not like:
            return None
        for key, value in like.items():
            if key not in got:
                return f"{where}.{key} is missing"
            problem = state_mismatch(got[key], value, f"{where}.{key}")
            if problem is not None:
                return problem
        for key in [k for k in got if k not in like]:
            entry = got[key]
            if not (isinstance(entry, dict) and len(entry) == 1
                    and (isinstance(entry.get("tensor"), torch.Tensor)
                         or isinstance(entry.get("value"), (bool, int, float)))):
                return f"{where}.{key} is not part of this job's state"
        return None
    if isinstance(like, (list, tuple)):
        if not isinstance(got, type(like)):
            return f"{where} is a {type(got).__name__}, expected a {type(like).__name__}"
        if like and len(got) != len(like):
            return f"{where} has {len(got)} entries, expected {len(like)}"
        for i, (g, w) in enumerate(zip(got, like)):
            problem = state_mismatch(g, w, f"{where}.{i}")
            if problem is not None:
                return problem
        return None
    if isinstance(like, bool):
        return None if isinstance(got, bool) else f"{where} is {_short(got)}, expected true or false"
    if isinstance(like, (int, float)):
        ok = isinstance(got, (int, float)) and not isinstance(got, bool) and (isinstance(like, float)
                                                                              or isinstance(got, int))
        want = "an integer" if isinstance(like, int) else "a number"
        return None if ok else f"{where} is {_short(got)}, expected {want}"
    if isinstance(like, str):
        return None if isinstance(got, str) else f"{where} is {_short(got)}, expected a string"
    return None


# ------------------------------------------------------------------------------------- snapshots
class ResumePoint:
    """Where one job keeps its snapshot, and when it writes the next one."""

    def __init__(self, path: str | os.PathLike, identity: dict[str, Any], every_s: float | None = None,
                 like: Callable[[], Any] | None = None):
        self.path = Path(path)
        self.identity = identity  # job config + code version; a snapshot of anything else is ignored
        self.like = like  # the live job's state(): a snapshot must have its structure (see `load`)
        env_every = os.environ.get("ROBBENCH_SNAPSHOT_S")
        self.every_s = float(env_every) if every_s is None and env_every else (every_s or DEFAULT_EVERY_S)
        self._last = time.monotonic()
        self.resumed_from: int | None = None
        self.discarded: str | None = None

    def load(self, like: Callable[[], Any] | None = None) -> dict[str, Any] | None:
        """The stored state, or None (no snapshot, or one that cannot be used: the reason is kept in
        `discarded`, and the job starts over).

        With `like` (here or given to the constructor: the live job's `state`), a snapshot must have
        that structure — every key, tensor dtype and shape (`state_mismatch`) — so a snapshot with a
        valid checksum but missing or malformed state is ignored like an unreadable one, instead of
        failing every re-run half-way through its restore."""
        if not self.path.is_file():
            return None
        try:
            tensors, meta = read_tensors(self.path, expected_format=FORMAT)
        except RobbenchError as exc:
            self.discarded = f"unreadable snapshot ignored ({exc})"
            return None
        if meta.get("identity") != self.identity:
            self.discarded = "snapshot from other code or another config ignored"
            return None
        problem = state = None
        try:
            state = unpack(meta["state"], tensors)
        except KeyError as exc:
            problem = f"it lacks {exc.args[0]!r}" if exc.args else "it lacks an entry"
        except (TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
            problem = f"its state is malformed: {' '.join(str(exc).split())}"
        like = like or self.like
        if problem is None and not isinstance(state, dict):
            problem = "its state is not a table"
        if problem is None and like is not None:
            problem = state_mismatch(state, like())
        if problem is not None:
            self.discarded = f"unusable snapshot {str(self.path)!r} ignored ({problem})"
            return None
        return state

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_s

    def save(self, state: dict[str, Any]) -> None:
        tensors: dict[str, torch.Tensor] = {}
        skeleton = pack(state, tensors)
        try:
            atomic_save_tensors(self.path, tensors, {"format": FORMAT, "identity": self.identity, "state": skeleton})
        except OSError as exc:
            raise RobbenchError(f"cannot write snapshot {str(self.path)!r}: {exc.strerror or exc}") from None
        except RobbenchError as exc:  # disk full, read-only home, ... (already one line, naming the file)
            raise RobbenchError(f"cannot write snapshot: {exc}") from None
        self._last = time.monotonic()

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------- env state
def gym_env_state(env) -> dict[str, Any]:
    """Exact state of one gymnasium MuJoCo env: integration state, RNG, time-limit counter."""
    import mujoco

    base = env.unwrapped
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    phys = np.empty(mujoco.mj_stateSize(base.model, spec))
    mujoco.mj_getState(base.model, base.data, phys, spec)
    return {"physics": phys, "rng": base.np_random.bit_generator.state, "elapsed": _time_limit(env)._elapsed_steps}


def set_gym_env_state(env, state: dict[str, Any]) -> None:
    import mujoco

    base = env.unwrapped
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    if state["physics"].shape[0] != mujoco.mj_stateSize(base.model, spec):
        raise RobbenchError("snapshot physics state does not match this environment")
    mujoco.mj_setState(base.model, base.data, np.asarray(state["physics"], dtype=np.float64), spec)
    mujoco.mj_forward(base.model, base.data)
    mujoco.mj_setState(base.model, base.data, np.asarray(state["physics"], dtype=np.float64), spec)
    base.np_random.bit_generator.state = state["rng"]
    _time_limit(env)._elapsed_steps = state["elapsed"]


def _time_limit(env):
    from gymnasium.wrappers import TimeLimit

    e = env
    while not isinstance(e, TimeLimit):
        if not hasattr(e, "env"):
            raise RobbenchError("env has no TimeLimit wrapper; cannot snapshot it")
        e = e.env
    return e
