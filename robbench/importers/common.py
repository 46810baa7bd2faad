"""What every format reader shares: the network it reads, file and tensor checks, activations."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    squash: str = "none"  # "tanh": μ = box centre + half-width · tanh(last layer) (SAC, TD3)
    squash_onto_box: bool = True  # False: tanh's output is the action itself (an ONNX graph ending in Tanh)
    squash_box: tuple[list[float], list[float]] | None = None  # (scale, bias) the file itself maps tanh with
    sigma_source: str = ""  # where log σ came from, when the model holds no state-independent one

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
        return (f"{self.activation} {widths}" + (", tanh-squashed onto the action box" if self.squash == "tanh" else "")
                + (", critic" if self.critic is not None else ", no critic"))


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


def _torch_state_dict(data: bytes, where: str, first_of_tuple: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from torch.save bytes, read with weights_only=True (no code runs).
    `first_of_tuple`: a tuple / list of state dicts gives its first (CleanRL's TD3 and DDPG save
    (actor, qf1, qf2) state dicts together)."""
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError with a many-line explanation, a zip error, ...
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise RobbenchError(f"{where} is not a plain tensor state dict (torch.load with weights_only=True "
                            f"refused it: {first[:200]})") from None
    if first_of_tuple and isinstance(obj, (tuple, list)) and obj:
        obj = obj[0]
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


def json_spec(path: Path, where: str, keys: dict[str, str] | None = None, what: str = "") -> dict[str, Any]:
    """A JSON object read from `path` (one line naming `where` if it is not one); with `keys`, any
    other key is refused, naming the valid ones."""
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise RobbenchError(f"{where} is not valid JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise RobbenchError(f"{where} must be a JSON object " + (f"with keys {', '.join(keys)}" if keys else what))
    bad = sorted(set(spec) - set(keys)) if keys is not None else []
    if bad:
        raise RobbenchError(f"{where}: unknown key {bad[0]!r}; valid keys: {', '.join(keys)}")
    return spec
