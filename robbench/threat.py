"""The threat model: the victim as attacks see it, the ℓ∞ ball, and the attack interface.

protocol.md: ε lives in the normalised observation space; the attacker perturbs the filtered state
s inside B_ε(s) = [s − ε, s + ε]; the result is not clipped back to ±10; every attack's output is
projected onto the ball, and the evaluator checks `max|ŝ − s| <= ε + 1e-6` on every step.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from robbench.errors import RobbenchError
from robbench.policy import Agent

BALL_TOLERANCE = 1e-6


def project_to_ball(perturbed: torch.Tensor, clean: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
    """Π: the nearest point of B_ε(clean) in ℓ∞ (elementwise clamp to [s − ε, s + ε])."""
    return torch.maximum(torch.minimum(perturbed, clean + eps), clean - eps)


def check_in_ball(perturbed: torch.Tensor, clean: torch.Tensor, eps: float, attack: str) -> float:
    """Return max|ŝ − s|; raise if an attack left the ball (a bug in the attack, never tolerated)."""
    if not torch.isfinite(perturbed).all():
        raise RobbenchError(f"attack {attack!r} produced a non-finite perturbed state")
    dist = float((perturbed - clean).abs().max()) if perturbed.numel() else 0.0
    if dist > eps + BALL_TOLERANCE:
        raise RobbenchError(f"attack {attack!r} left the ε-ball: max|ŝ − s| = {dist:.3g} > ε = {eps:.3g}")
    return dist


def validate_eps(eps: object, what: str = "ε") -> float:
    """The radius as a float, or one line naming `what` (ε, --eps, a grid's eps key).

    The one check of an ε, wherever it comes from: the CLI, a grid file, a job spec, a protocol or
    an attack; a bool or a string is refused here too, not only a negative or non-finite number."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise RobbenchError(f"{what} must be a finite number ≥ 0, got {eps if isinstance(eps, (int, float)) else repr(eps)}")
    return float(eps)


@dataclass
class Victim:
    """The agent as attacks see it: frozen networks, deterministic mean action μ(ŝ)."""

    agent: Agent

    @property
    def policy(self):
        return self.agent.policy

    @property
    def value(self):
        return self.agent.value

    @property
    def std(self) -> torch.Tensor:
        return self.agent.policy.std.detach()

    def mean(self, states: torch.Tensor) -> torch.Tensor:
        return self.agent.policy(states)


class Attack(ABC):
    """Perturbs a batch of normalised states inside B_ε. Subclasses live in `attacks/`.

    Subclasses set `needs_fit = True` and implement `fit` when they learn something about the victim
    first (robust Sarsa, SA-RL, PA-AD). `perturb` is called once per environment step on the states
    of every live episode at once; it must draw its randomness from `gen` only.
    """

    name: ClassVar[str] = "?"
    needs_fit: ClassVar[bool] = False
    needs_critic: ClassVar[bool] = False  # uses the agent's value network V
    description: ClassVar[str] = ""

    def __init__(self, eps: float, **params: Any):
        self.eps = validate_eps(eps)
        unknown_params = set(params) - set(self.default_params())
        if unknown_params:
            valid = ", ".join(sorted(self.default_params())) or "none"
            raise RobbenchError(
                f"attack {self.name!r} has no parameter {sorted(unknown_params)[0]!r}; valid: {valid}"
            )
        self.params = {**self.default_params(), **params}

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {}

    def config(self) -> dict[str, Any]:
        """Everything that identifies this attack's results (part of the cell key)."""
        return {"eps": self.eps, **self.params}

    @abstractmethod
    def perturb(self, victim: Victim, states: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Return ŝ ∈ B_ε(states), shape (batch, obs_dim)."""

    def perturb_episodes(self, victim: Victim, states: torch.Tensor, gen: torch.Generator,
                         episodes) -> torch.Tensor:
        """What the evaluator calls: `episodes[j]` is the episode index of row j (the live episodes
        of the batch). Attacks that treat every episode alike ignore it; an attack that screens
        several candidates in one batch (e.g. `targeted`'s held-out screening) gives each episode
        its own candidate."""
        return self.perturb(victim, states, gen)

    def member_label(self) -> str | None:
        """A short name of what this cell ran (e.g. the chosen target), shown on the board."""
        return None

    def fit(self, victim: Victim, **kwargs: Any) -> None:
        """Learned attacks train against `victim` here; attacks without training have nothing to do."""


class IterativeAttack(Attack):
    """An attack that iterates K sign-gradient steps: owns `steps` (K, default 10) and `step_size`
    (default ε/K), their validation, and records the resolved step size in `config()` so that the
    default and an explicit ε/K share one results cell."""

    def __init__(self, eps: float, **params: Any):
        super().__init__(eps, **params)
        self.steps, self.step_size = resolve_steps(self.name, self.eps, self.params)

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"steps": 10, "step_size": None}  # None: ε / steps (the protocol default)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "steps": self.steps, "step_size": self.step_size}


def resolve_steps(attack: str, eps: float, params: dict[str, Any]) -> tuple[int, float]:
    """Validate `steps` (int ≥ 1) and `step_size` (None → ε/steps, else a finite number ≥ 0)."""
    steps, step_size = params["steps"], params["step_size"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise RobbenchError(f"attack {attack!r}: steps must be an integer ≥ 1, got {steps!r}")
    if step_size is None:
        return steps, eps / steps
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or not math.isfinite(step_size) \
            or step_size < 0:
        raise RobbenchError(f"attack {attack!r}: step_size must be a finite number ≥ 0 or null, got {step_size!r}")
    return steps, float(step_size)

class LearnedAttack(Attack):
    """An attack that first learns something about its victim (robust Sarsa Q, SA-RL adversary,
    PA-AD director). The evaluator calls `fit` once per (victim, fit config) and stores the result
    as an artifact in the results home (robbench/artifacts.py), so later evaluations reuse it.

    Conventions every learned attack follows:
    - `default_params()` includes `seed` and the training budget as `train_steps` (what this preset
      trains) and `paper_steps` (the paper's budget), so reports can flag under-budget attacks.
    - `fit_config()` is the part of the config that determines the artifact (by default all of it).
    - A scan (a grid of attackers whose minimum is the attack's result) lists its members in
      `scan_members(params)`: one parameter override per member, each evaluated as its own cell
      under the same attack name; the board shows the minimum over members.
    """

    needs_fit: ClassVar[bool] = True
    fit_independent: ClassVar[tuple[str, ...]] = ()
    """Parameters that select a scan member without changing the fit (e.g. `targeted`'s rank, all
    ranks sharing one screening): the grid makes one fit job for all members that differ only in them."""

    @classmethod
    def scan_members(cls, params: dict[str, Any]) -> list[dict[str, Any]]:
        return [{}]

    @classmethod
    def preset_budgets(cls) -> dict[str, str]:
        """Budget preset name -> what it trains (shown by `robbench list attacks`)."""
        return {}

    def fit_config(self) -> dict[str, Any]:
        return self.config()

    @abstractmethod
    def fit(self, victim: Victim, gen: torch.Generator, progress=None, resume=None) -> dict[str, Any]:
        """Train against `victim`; return JSON-able training statistics.

        `resume` (a `robbench.resume.ResumePoint`, or None): where a long fit keeps mid-fit
        snapshots so a killed fit continues where it stopped; a fit too short to need them ignores it."""

    @abstractmethod
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors that fully determine the fitted attack (saved as safetensors)."""

    @abstractmethod
    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore a fitted attack from `state_dict()` output."""
