"""Policy and value networks, the diagonal Gaussian, and the `Agent` bundle (ppo.md, "Networks")."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from robbench.errors import RobbenchError, unknown
from robbench.filters import ObsFilter

LOG_2PI = math.log(2.0 * math.pi)

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}
"""Hidden-layer activations a policy or value network may have (robbench's own networks: tanh).
ELU is torch's default (alpha = 1), as SB3 / CleanRL use `nn.ELU`."""


def check_activation(name: object) -> str:
    """`name` if it is a known activation, else a one-line RobbenchError listing the known ones."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise unknown("activation", name, ACTIVATIONS)
    return name


def mlp(in_dim: int, out_dim: int, hidden: tuple[int, ...], out_gain: float,
        activation: str = "tanh") -> nn.Sequential:
    """MLP (Linear, activation, …, Linear) with orthogonal init (gain √2 hidden, `out_gain` head), zero
    biases. Linear layers sit at the even indices of the Sequential whatever the activation."""
    act = ACTIVATIONS[check_activation(activation)]
    layers: list[nn.Module] = []
    dims = (in_dim, *hidden)
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), act()]
    layers.append(nn.Linear(dims[-1], out_dim))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            gain = out_gain if layer is layers[-1] else math.sqrt(2.0)
            nn.init.orthogonal_(layer.weight, gain=gain)
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class UnsupportedNetwork(RobbenchError, TypeError):
    """A network the tanh-only fast paths (fastbounds, fastpath) do not cover (one line; a TypeError
    too, as it always was)."""


def linear_tanh_layers(seq: nn.Module) -> list[nn.Linear]:
    """The Linear layers of a Linear-Tanh-…-Linear `nn.Sequential` (`mlp` with tanh); UnsupportedNetwork
    (a TypeError) for anything else, e.g. an imported ReLU or ELU policy. The one structure check of
    the tanh-only fast paths: `robbench.fastbounds` (certify uses auto-LiRPA, which handles ReLU too)
    and `robbench.fastpath`."""
    mods = list(seq) if isinstance(seq, nn.Sequential) else []
    if not mods or len(mods) % 2 == 0 or not all(
        isinstance(m, nn.Linear if i % 2 == 0 else nn.Tanh) for i, m in enumerate(mods)
    ):
        found = sorted({type(m).__name__ for i, m in enumerate(mods) if i % 2 == 1 and not isinstance(m, nn.Tanh)})
        extra = f" (this one has {', '.join(found)})" if found else ""
        raise UnsupportedNetwork(f"the fast paths need a Linear-Tanh-…-Linear nn.Sequential{extra}")
    return mods[::2]


SQUASHES = ("none", "tanh")
"""How μ(s) leaves the MLP: as it is (robbench's own policies, SB3 PPO), or "tanh": squashed into
(−1, 1) then mapped affinely onto the action box (SB3 SAC / TD3 actors, squashed torch policies)."""


class GaussianPolicy(nn.Module):
    """μ(s) from an MLP and a state-independent learned log σ.

    `squash` "tanh" appends Tanh and a Linear(act_dim, act_dim) to `mean_net`: μ = W·tanh(z) + b, W
    and b the action box's half-widths (diagonal) and centre, set by whoever builds the policy (the
    importer) and saved with it. The Sequential still alternates Linear and activation, so every
    consumer of `mean_net` (attacks, auto-LiRPA certification, the tanh-only fast paths) sees the
    squashed mean as one more layer."""

    def __init__(self, obs_dim: int, act_dim: int, hidden=(64, 64), initial_std: float = 1.0,
                 activation: str = "tanh", squash: str = "none"):
        super().__init__()
        if squash not in SQUASHES:
            raise unknown("squash", squash, SQUASHES)
        self.activation, self.squash = activation, squash
        self.mean_net = mlp(obs_dim, act_dim, hidden, out_gain=0.01, activation=activation)
        if squash == "tanh":
            box = nn.Linear(act_dim, act_dim)
            with torch.no_grad():
                box.weight.copy_(torch.eye(act_dim))
                box.bias.zero_()
            self.mean_net.extend([nn.Tanh(), box])
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(initial_std)))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mean_net(obs)

    @property
    def std(self) -> torch.Tensor:
        return self.log_std.exp()

    def log_prob(self, mean: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Closed-form diagonal Gaussian log-density, summed over action dimensions."""
        return gaussian_log_prob(mean, self.log_std, actions)

    def entropy(self) -> torch.Tensor:
        """Entropy of the diagonal Gaussian (state-independent σ): Σ(log σ + ½ log 2πe)."""
        return (self.log_std + 0.5 * (LOG_2PI + 1.0)).sum()


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    z = (actions - mean) * torch.exp(-log_std)
    return -(0.5 * z.pow(2) + log_std + 0.5 * LOG_2PI).sum(-1)


class ValueNet(nn.Module):
    def __init__(self, obs_dim: int, hidden=(64, 64), activation: str = "tanh"):
        super().__init__()
        self.net = mlp(obs_dim, 1, hidden, out_gain=1.0, activation=activation)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


class MissingCritic(nn.Module):
    """The value network of an agent that has none (an imported policy without a critic).

    Calling it is a one-line RobbenchError, never a silent zero: an attack that needs V must not
    run against a made-up network. `robbench evaluate` skips such cells before they start."""

    def __init__(self, agent_id: str = "?"):
        super().__init__()
        self.agent_id = agent_id

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        raise RobbenchError(f"agent {self.agent_id!r} has no critic (value network); an attack that needs "
                            "one cannot run on it")


class StaticObsNormalizer:
    """`clip((o − mean)/sqrt(var + epsilon), −clip_obs, clip_obs)`: SB3's VecNormalize and gymnasium's
    NormalizeObservation (+ CleanRL's clip to ±10), with frozen statistics. `clip_obs` None: no clip.

    Same interface as a frozen robbench `ObsFilter` (`normalize`, `frozen`)."""

    frozen = True

    def __init__(self, mean: np.ndarray, var: np.ndarray, epsilon: float, clip_obs: float | None):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.var = np.asarray(var, dtype=np.float64)
        self.epsilon = float(epsilon)
        self.clip_obs = None if clip_obs is None else float(clip_obs)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        out = (np.asarray(obs, dtype=np.float64) - self.mean) / np.sqrt(self.var + self.epsilon)
        return out if self.clip_obs is None else np.clip(out, -self.clip_obs, self.clip_obs)


class IdentityObsNormalizer:
    """An agent trained on raw observations: the 'normalised' state is the raw observation (float64)."""

    frozen = True

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(obs, dtype=np.float64)


@dataclass
class Agent:
    """What an evaluation needs of a trained agent: policy, value net, frozen obs filter, metadata.

    `meta` holds the JSON-able config and provenance written into the checkpoint (method, env, seed,
    preset, steps, code version, ...). `extra_state` holds the state dicts of any additional
    networks a trainer saved (e.g. WocaR's worst-case Q), keyed by module name.

    Conventions (absent keys: robbench's own): `meta["obs_norm"]["convention"]` says how raw
    observations are normalised (`obs_filter` implements it: robbench's running filter, SB3-style
    static statistics, or none); `meta["action_clip"]` (with `action_low` / `action_high`) says
    whether the action sent to the environment is clipped to the action box (SB3, CleanRL) or is
    the mean itself (robbench's protocol). `meta["has_critic"]` false: `value` is a MissingCritic.
    """

    policy: GaussianPolicy
    value: ValueNet | MissingCritic
    obs_filter: ObsFilter | StaticObsNormalizer | IdentityObsNormalizer
    meta: dict[str, Any]
    extra_state: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    _bounds: dict[Any, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, init=False, repr=False,
                                                                  compare=False)

    @property
    def env(self) -> str:
        return self.meta["env"]

    @property
    def agent_id(self) -> str:
        return self.meta["agent_id"]

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """Normalise raw observations with the agent's own frozen convention (`meta["obs_norm"]`):
        robbench's filter, SB3-style static statistics, or none (raw observations)."""
        return self.obs_filter.normalize(obs)

    @property
    def has_critic(self) -> bool:
        return bool(self.meta.get("has_critic", True))

    @property
    def action_clip(self) -> bool:
        """Whether actions are clipped to the action box before they reach the env (imported agents)."""
        return bool(self.meta.get("action_clip", False))

    def clip_action(self, actions: torch.Tensor) -> torch.Tensor:
        """The action the env receives: `actions` clipped to [action_low, action_high] when the agent's
        convention says so (SB3's `predict`, CleanRL's ClipAction), else `actions` unchanged."""
        if not self.action_clip:
            return actions
        key = (actions.dtype, actions.device)
        if key not in self._bounds:
            self._bounds[key] = tuple(torch.as_tensor(self.meta[k], dtype=actions.dtype, device=actions.device)
                                      for k in ("action_low", "action_high"))
        low, high = self._bounds[key]
        return torch.minimum(torch.maximum(actions, low), high)

    @torch.no_grad()
    def act(self, states: torch.Tensor) -> torch.Tensor:
        """Deterministic action for a batch of (possibly perturbed) normalised states: μ(ŝ), clipped
        to the action box when the agent's convention clips (`action_clip`)."""
        return self.clip_action(self.policy(states))

    def predict(self, raw_obs: np.ndarray) -> np.ndarray:
        """The deterministic action for raw environment observations (one `(obs_dim,)` or a batch
        `(n, obs_dim)`): normalised with the agent's own convention, then `act` (float32, as the
        evaluator feeds the policy). Like SB3's `model.predict(obs, deterministic=True)`."""
        raw = np.asarray(raw_obs, dtype=np.float64)
        single = raw.ndim == 1
        states = torch.from_numpy(self.normalize(raw.reshape(1, -1) if single else raw)).float()
        actions = self.act(states).numpy()
        return actions[0] if single else actions
