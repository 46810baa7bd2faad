"""Observation statistics: SB3 VecNormalize pickles through a restricted unpickler, or .npz / .json files."""

from __future__ import annotations

import io
import math
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robbench.errors import RobbenchError
from robbench.importers.common import SB3_CLIP_OBS, SB3_EPSILON, _file, json_spec


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
        raw = json_spec(path, where, what="with mean and var")
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
