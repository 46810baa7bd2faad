"""Policy and value networks, the diagonal Gaussian, and the `Agent` bundle (ppo.md, "Networks")."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from robbench.filters import ObsFilter

LOG_2PI = math.log(2.0 * math.pi)


def mlp(in_dim: int, out_dim: int, hidden: tuple[int, ...], out_gain: float) -> nn.Sequential:
    """tanh MLP with orthogonal init (gain √2 hidden, `out_gain` head), zero biases."""
    layers: list[nn.Module] = []
    dims = (in_dim, *hidden)
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    layers.append(nn.Linear(dims[-1], out_dim))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            gain = out_gain if layer is layers[-1] else math.sqrt(2.0)
            nn.init.orthogonal_(layer.weight, gain=gain)
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class GaussianPolicy(nn.Module):
    """μ(s) from an MLP (not squashed) and a state-independent learned log σ."""

    def __init__(self, obs_dim: int, act_dim: int, hidden=(64, 64), initial_std: float = 1.0):
        super().__init__()
        self.mean_net = mlp(obs_dim, act_dim, hidden, out_gain=0.01)
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
    def __init__(self, obs_dim: int, hidden=(64, 64)):
        super().__init__()
        self.net = mlp(obs_dim, 1, hidden, out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


@dataclass
class Agent:
    """What an evaluation needs of a trained agent: policy, value net, frozen obs filter, metadata.

    `meta` holds the JSON-able config and provenance written into the checkpoint (method, env, seed,
    preset, steps, code version, ...). `extra_state` holds the state dicts of any additional
    networks a trainer saved (e.g. WocaR's worst-case Q), keyed by module name.
    """

    policy: GaussianPolicy
    value: ValueNet
    obs_filter: ObsFilter
    meta: dict[str, Any]
    extra_state: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    @property
    def env(self) -> str:
        return self.meta["env"]

    @property
    def agent_id(self) -> str:
        return self.meta["agent_id"]

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """Normalise raw observations with the frozen filter."""
        return self.obs_filter.normalize(obs)

    @torch.no_grad()
    def act(self, states: torch.Tensor) -> torch.Tensor:
        """Deterministic action μ(ŝ) for a batch of (possibly perturbed) normalised states."""
        return self.policy(states)
