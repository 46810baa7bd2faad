"""The victim folded into an environment, and the PPO-trained adversary both SA-RL and PA-AD share.

A learned adversary (SA-RL, spec/attacks.md "SA-RL"; PA-AD's director, "PA-AD") is an RL agent
whose environment is "the MuJoCo env + the frozen victim". `AdversaryEnv` is that environment with
the `EnvBatch` interface, so the adversary trains with the *same* PPO core as every trainer
(`PPOCore(cfg, envs=AdversaryEnv(...))`), not a copy of it:

- observation: the victim's clean normalised state s = victim_filter(o) (the victim's filter is
  frozen; protocol.md). The core then normalises it once more with the adversary's *own* running
  filter, as it does for any env; that filter is saved with the adversary and used frozen at
  evaluation, so training and evaluation see the same input.
- action: whatever the attack's `perturber(s, action)` turns into ŝ ∈ B_ε(s) — SA-RL: a state
  residual δ, ŝ = s + ε·clip(δ, −1, 1); PA-AD: a direction d in the victim's action space that the
  actor turns into ŝ by a gradient step. Every ŝ is checked against the ball, as in the evaluator.
- the victim acts on ŝ: its mean μ(ŝ) (SA-RL, spec: "the victim acts deterministically on ŝ") or a
  sample μ(ŝ) + σ·N(0, I) with its learned σ (PA-AD: "victim stochastic while the director trains").
  One batched victim forward per step for all N envs, never one per env.
- reward: −(victim's raw reward). The core's reward scaler divides it by the running std of the
  discounted return and clips to ±10; that scaling is sign-symmetric (the std of −ret is the std of
  ret, the clip is symmetric), so what the adversary learns from equals −(victim's scaled reward),
  the spec's "−(victim's normalised reward)". The scaler's statistics are the adversary's own: the
  victim's reward statistics are not part of a checkpoint.
- no autoreset: the core resets finished envs (`reset_one`), exactly as for `EnvBatch`.

`PPOAdversaryAttack` below is the LearnedAttack both attacks subclass: presets and scan members,
`fit` (build the env, train with the core), `state_dict` (adversary policy + its frozen filter),
and the deterministic adversary (its mean) at evaluation.
"""

from __future__ import annotations

import itertools
import math
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from robbench.envs import EnvBatch
from robbench.errors import RobbenchError, unknown
from robbench.filters import ObsFilter, RunningMeanStd
from robbench.policy import GaussianPolicy
from robbench.ppo import PPOConfig, PPOCore
from robbench.resume import ResumePoint
from robbench.threat import LearnedAttack, Victim, check_in_ball

Perturber = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(clean states s (N, obs_dim), adversary actions (N, act_dim)) -> ŝ ∈ B_ε(s), (N, obs_dim)."""


class AdversaryEnv:
    """N copies of the victim's env with the victim inside; the adversary's view of the world.

    `envs` defaults to `EnvBatch(victim env, num_envs)`; tests may pass any object with the
    `EnvBatch` interface. `gen` is the only source of randomness (victim action noise); the
    perturber draws its own from the generator it was built with.
    """

    def __init__(
        self,
        victim: Victim,
        eps: float,
        act_dim: int,
        perturber: Perturber,
        num_envs: int,
        gen: torch.Generator,
        stochastic_victim: bool = False,
        envs: Any | None = None,
        attack: str = "adversary",
    ):
        self.victim = victim
        self.eps = float(eps)
        self.perturber = perturber
        self.gen = gen
        self.stochastic_victim = stochastic_victim
        self.attack = attack
        self.envs = envs if envs is not None else EnvBatch(victim.agent.env, num_envs)
        self.spec = self.envs.spec
        self.obs_dim = self.envs.obs_dim
        self.act_dim = int(act_dim)
        policy_in = victim.policy.mean_net[0].in_features
        if policy_in != self.obs_dim:
            raise RobbenchError(f"victim expects {policy_in}-dim states, env {self.spec.key!r} gives {self.obs_dim}")
        self._states = np.zeros((len(self.envs), self.obs_dim))  # clean normalised states s
        self.max_perturbation = 0.0
        self.victim_forwards = 0  # batched victim action forwards (one per step)

    def __len__(self) -> int:
        return len(self.envs)

    def _normalize(self, raw: np.ndarray) -> np.ndarray:
        return self.victim.agent.normalize(raw)

    def reset_one(self, i: int, seed: int | None = None) -> np.ndarray:
        s = self._normalize(self.envs.reset_one(i, seed=seed)[None])[0]
        self._states[i] = s
        return s.copy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Perturb every env's state, let the victim act on ŝ, step: (s', −r_victim, terminated, truncated)."""
        clean = torch.from_numpy(self._states).float()  # float32, as the evaluator feeds the victim
        perturbed = self.perturber(clean, torch.as_tensor(actions, dtype=torch.float32))
        dist = check_in_ball(perturbed, clean, self.eps, self.attack)
        self.max_perturbation = max(self.max_perturbation, dist)
        with torch.no_grad():
            victim_actions = self.victim.mean(perturbed)
            if self.stochastic_victim:
                victim_actions = victim_actions + self.victim.std * torch.randn(victim_actions.shape, generator=self.gen)
            victim_actions = self.victim.agent.clip_action(victim_actions)  # the agent's own convention
        self.victim_forwards += 1
        raw_next, rewards, terminated, truncated = self.envs.step(victim_actions.numpy().astype(np.float64))
        self._states = self._normalize(raw_next)
        return self._states.copy(), -rewards, terminated, truncated

    def get_state(self) -> dict:
        return {"envs": self.envs.get_state(), "states": self._states, "gen": self.gen.get_state(),
                "max_perturbation": self.max_perturbation, "victim_forwards": self.victim_forwards}

    def set_state(self, state: dict) -> None:
        self.envs.set_state(state["envs"])
        self._states = state["states"].copy()
        self.gen.set_state(state["gen"])
        self.max_perturbation = float(state["max_perturbation"])
        self.victim_forwards = int(state["victim_forwards"])

    def close(self) -> None:
        self.envs.close()


# --------------------------------------------------------------------------------- presets and grid
ADVERSARY_LRS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    # (policy lrs, value lrs) of ATLA's attack scans against vanilla PPO
    # (configs/attack_ppo_<env>_scan.py: adv_ppo_lr_adam, adv_val_lr). Humanoid has no reference
    # scan; it gets Ant's values (its PPO learning rates are Ant's).
    "hopper": ((3e-4, 1e-3, 3e-3), (3e-4, 1e-3, 3e-3)),
    "walker2d": ((1e-4, 3e-4, 1e-3), (1e-4, 3e-4, 1e-3)),
    "halfcheetah": ((3e-4, 1e-3, 3e-3), (1e-5, 3e-5, 1e-4)),
    "ant": ((3e-5, 1e-4, 3e-4), (3e-5, 1e-4, 3e-4)),
    "humanoid": ((3e-5, 1e-4, 3e-4), (3e-5, 1e-4, 3e-4)),
}
LONG_ENVS = ("ant", "humanoid")
"""Envs whose paper budgets are ≈5× longer (SA-RL 2441 vs 488 iterations, PA-AD 4882 vs 976)."""


@dataclass(frozen=True)
class Member:
    """One adversary's PPO hyperparameters. Learning rates are *levels* 0, 1, 2 into the env's
    reference ladder (`ADVERSARY_LRS`): an attack is built before it knows its victim's env, and the
    cell key must not change when it learns it. The resolved values are in the fit statistics."""

    anneal_lr: bool
    clip: float
    entropy_coef: float
    policy_lr_level: int
    value_lr_level: int


def reference_grid() -> tuple[Member, ...]:
    """ATLA's attack scan: anneal {on, off} × clip {0.2, 0.4} × entropy {0, 1e-5, 3e-5, 1e-4, 3e-4,
    1e-3} × 3 policy lrs × 3 value lrs = 216 adversaries (configs/attack_ppo_*_scan.py)."""
    return tuple(
        Member(anneal, clip, ent, p, v)
        for anneal, clip, ent, p, v in itertools.product(
            (True, False), (0.2, 0.4), (0.0, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3), range(3), range(3)
        )
    )


@dataclass(frozen=True)
class Preset:
    """A training budget and the scan members trained at it."""

    iterations: int
    """PPO iterations (× 2048 steps) per adversary on hopper/walker2d/halfcheetah; ant and humanoid
    train `long_env_factor` times as many (the paper's ratio), except the 2-iteration smoke preset."""
    members: tuple[Member, ...]
    description: str


DEFAULT_PRESET = "quick"


# ---------------------------------------------------------------------------------- the attack base
class PPOAdversaryAttack(LearnedAttack):
    """A LearnedAttack whose attacker is a PPO policy trained on `AdversaryEnv` (SA-RL, PA-AD).

    Subclasses set the presets and paper budgets and say how an adversary action becomes ŝ.
    Params: `seed` (the core's seed; the env noise generator is drawn from the fit generator),
    `preset` (default `quick`, as for `rs`: `robbench evaluate` then finishes in minutes and the
    board marks the result under budget; `paper` is the protocol's scan), `member` (index into the
    preset's scan; `scan_members` enumerates them), `train_steps` (None: the preset's budget; a
    number overrides it, rounded up to whole iterations) and `paper_steps` (fixed, recorded).
    """

    NUM_ENVS: ClassVar[int] = 8
    """Parallel env copies while training (a speed knob; 2048 steps per iteration regardless)."""
    PAPER_ITERATIONS: ClassVar[int]
    PAPER_ITERATIONS_LONG: ClassVar[int]
    PRESETS: ClassVar[dict[str, Preset]]
    STOCHASTIC_VICTIM: ClassVar[bool]

    def __init__(self, eps: float, **params: Any):
        super().__init__(eps, **params)
        preset = self.params["preset"]
        if preset not in self.PRESETS:
            raise unknown(f"{self.name} preset", preset, self.PRESETS)
        members = self.PRESETS[preset].members
        member = 0 if self.params["member"] is None else self.params["member"]
        if isinstance(member, bool) or not isinstance(member, int) or not 0 <= member < len(members):
            raise RobbenchError(
                f"attack {self.name!r}: member must be an integer in 0..{len(members) - 1} for preset {preset!r}, "
                f"got {member!r}"
            )
        seed = self.params["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise RobbenchError(f"attack {self.name!r}: seed must be an integer ≥ 0, got {seed!r}")
        steps = self.params["train_steps"]
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0):
            raise RobbenchError(f"attack {self.name!r}: train_steps must be a positive integer or null, got {steps!r}")
        if self.params["paper_steps"] != self.paper_steps():
            raise RobbenchError(f"attack {self.name!r}: paper_steps is fixed at {self.paper_steps()}")
        self.member_index = member
        self.member = members[member]
        self.policy: GaussianPolicy | None = None
        self.obs_filter: ObsFilter | None = None

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {
            "seed": 0,
            "preset": DEFAULT_PRESET,  # like `rs`: a CLI default that finishes; the board flags it under budget
            "member": None,  # index into the preset's scan (set by scan_members); None: 0
            "train_steps": None,  # None: the preset's budget per adversary
            "paper_steps": cls.paper_steps() if hasattr(cls, "PAPER_ITERATIONS") else None,
        }

    @classmethod
    def preset_budgets(cls) -> dict[str, str]:
        return {name: f"{len(p.members)} adversar{'y' if len(p.members) == 1 else 'ies'} × {p.iterations} it ({p.iterations * 2048 // 1000}k steps each"
                      + ("; ant/humanoid ×5)" if name != "smoke" else ")") for name, p in cls.PRESETS.items()}

    @classmethod
    def scan_members(cls, params: dict[str, Any]) -> list[dict[str, Any]]:
        preset = params.get("preset", DEFAULT_PRESET)
        if preset not in cls.PRESETS:
            raise unknown(f"{cls.name} preset", preset, cls.PRESETS)
        if params.get("member") is not None:  # one member asked for explicitly
            return [{}]
        return [{"member": k} for k in range(len(cls.PRESETS[preset].members))]

    @classmethod
    def paper_steps(cls) -> int:
        return cls.PAPER_ITERATIONS * 2048

    @property
    def long_env_factor(self) -> float:
        return self.PAPER_ITERATIONS_LONG / self.PAPER_ITERATIONS

    def iterations_for(self, env: str) -> int:
        """PPO iterations this adversary trains against a victim on `env`."""
        if self.params["train_steps"] is not None:
            return math.ceil(self.params["train_steps"] / 2048)
        base = self.PRESETS[self.params["preset"]].iterations
        if env in LONG_ENVS and self.params["preset"] != "smoke":
            return round(base * self.long_env_factor)
        return base

    def config(self) -> dict[str, Any]:
        """Everything that identifies the adversary. `train_steps`/`paper_steps` are per adversary on
        hopper, walker2d and halfcheetah; ant and humanoid train ≈5× as long under every preset
        but smoke (the paper's 2441/488 and 4882/976), so train_steps / paper_steps is the same
        fraction of the paper budget on every env."""
        preset = self.PRESETS[self.params["preset"]]
        iterations = self.iterations_for("hopper")
        return {
            "eps": self.eps,
            "seed": self.params["seed"],
            "preset": self.params["preset"],
            "member": self.member_index,
            "grid_size": len(preset.members),
            "reference_grid_size": len(reference_grid()),
            **asdict(self.member),
            "train_steps": iterations * 2048,
            "paper_steps": self.paper_steps(),
            **self.actor_config(),
        }

    def actor_config(self) -> dict[str, Any]:
        """Settings of how actions become perturbations (PA-AD's actor); part of the cell key."""
        return {}

    # ------------------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def action_dim(self, victim: Victim) -> int:
        """Dimension of the adversary's action."""

    @abstractmethod
    def perturber(self, victim: Victim, gen: torch.Generator) -> Perturber:
        """(s, adversary action) -> ŝ ∈ B_ε(s), drawing any randomness from `gen`."""

    def value_clip(self, env: str) -> bool:
        """Whether the adversary's value loss is clipped."""
        return True

    def init_adversary(self, core: PPOCore, victim: Victim) -> None:
        """Hook: set the adversary's initial networks before training (a warm start); by default the
        core's own initialisation. A snapshot being resumed overrides it."""

    # --------------------------------------------------------------------------------------- fit
    def ppo_config(self, env: str) -> PPOConfig:
        """The adversary's PPO run: the core's defaults (2048 steps/iteration, 10 epochs × 32
        minibatches, γ 0.99, λ 0.95, std 1 at init) with this member's hyperparameters."""
        policy_lrs, value_lrs = ADVERSARY_LRS[env]
        m = self.member
        return PPOConfig(
            env=env, method=f"adversary:{self.name}", seed=self.params["seed"], preset=self.params["preset"],
            iterations=self.iterations_for(env), num_envs=self.NUM_ENVS,
            policy_lr=policy_lrs[m.policy_lr_level], value_lr=value_lrs[m.value_lr_level],
            anneal_lr=m.anneal_lr, clip=m.clip, entropy_coef=m.entropy_coef, value_clip=self.value_clip(env),
            initial_std=1.0, eps=self.eps, threads=torch.get_num_threads(),
        )

    def fit(self, victim: Victim, gen: torch.Generator, progress=None, resume: ResumePoint | None = None,
            envs: Any | None = None) -> dict[str, Any]:
        """Train the adversary with the PPO core against the frozen victim; return its statistics.

        `resume`: the core's snapshot place (a killed fit continues from it). `envs` (tests only) replaces the victim's `EnvBatch` with another object of the same
        interface. The per-iteration mean adversary return (−victim return over the episodes that
        ended in that iteration) is recorded so a reader can see whether training made progress.
        """
        env = victim.agent.env
        if env not in ADVERSARY_LRS:
            raise unknown("env for a learned adversary", env, ADVERSARY_LRS)
        cfg = self.ppo_config(env)
        env_gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
        adv_env = AdversaryEnv(
            victim, self.eps, self.action_dim(victim), self.perturber(victim, env_gen), cfg.num_envs, env_gen,
            stochastic_victim=self.STOCHASTIC_VICTIM, envs=envs, attack=self.name,
        )
        curve: list[float] = []
        try:
            core = PPOCore(cfg, envs=adv_env, resume=resume)
            self.init_adversary(core, victim)

            def on_iteration(iteration: int, stats: dict[str, float]) -> None:
                if progress is not None:
                    progress(iteration, cfg.iterations, f"adversary return {core.return_curve[-1]:.0f}")

            core.train(on_iteration)
            wall = core.wall_s
            # (adversary return per iteration; kept by the core so a resumed fit has the whole curve)
            curve = [round(r, 3) if math.isfinite(r) else float("nan") for r in core.return_curve]
        finally:
            adv_env.close()
        self.policy = core.policy
        self.policy.eval()
        self.obs_filter = _frozen_copy(core.obs_filter)
        policy_lrs, value_lrs = ADVERSARY_LRS[env]
        finite = [r for r in curve if math.isfinite(r)]
        head = finite[: max(1, len(finite) // 5)]
        tail = finite[-max(1, len(finite) // 5):]
        return {
            "env": env, "iterations": cfg.iterations, "steps": core.steps_done, "num_envs": cfg.num_envs,
            "policy_lr": cfg.policy_lr, "value_lr": cfg.value_lr, "anneal_lr": cfg.anneal_lr, "clip": cfg.clip,
            "entropy_coef": cfg.entropy_coef, "value_clip": cfg.value_clip,
            "stochastic_victim": self.STOCHASTIC_VICTIM, "wall_s": round(wall, 2),
            "steps_per_s": round(core.steps_done / wall, 1),
            "max_perturbation": adv_env.max_perturbation,
            "adversary_return_first": float(np.mean(head)) if head else None,
            "adversary_return_last": float(np.mean(tail)) if tail else None,
            "adversary_return_per_iteration": curve,
            "reference_lr_ladders": {"policy": list(policy_lrs), "value": list(value_lrs)},
        }

    # -------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def adversary_action(self, states: torch.Tensor) -> torch.Tensor:
        """The deterministic adversary: its mean on its own frozen normalisation of s."""
        if self.policy is None or self.obs_filter is None:
            raise RobbenchError(f"attack {self.name!r} is not fitted; call fit() or load its artifact first")
        if states.shape[-1] != self.obs_filter.stats.mean.shape[0]:
            raise RobbenchError(
                f"attack {self.name!r} was fitted on {self.obs_filter.stats.mean.shape[0]}-dim states, "
                f"got {states.shape[-1]}-dim ones"
            )
        x = torch.from_numpy(self.obs_filter.normalize(states.detach().double().numpy())).float()
        return self.policy(x)

    def perturb(self, victim: Victim, states: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return self.perturber(victim, gen)(states, self.adversary_action(states))

    # ----------------------------------------------------------------------------------- storage
    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.policy is None or self.obs_filter is None:
            raise RobbenchError(f"attack {self.name!r} has nothing to save: it is not fitted")
        tensors = {f"policy.{k}": v.detach().clone() for k, v in self.policy.state_dict().items()}
        for k, v in self.obs_filter.stats.state().items():
            tensors[f"obs_filter.{k}"] = torch.from_numpy(np.asarray(v).copy())
        return tensors

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        try:
            policy_state = {k[len("policy."):]: v for k, v in tensors.items() if k.startswith("policy.")}
            linear = sorted(
                (int(k.split(".")[1]), v) for k, v in policy_state.items() if k.startswith("mean_net.") and
                k.endswith(".weight")
            )
            hidden = tuple(w.shape[0] for _, w in linear[:-1])
            policy = GaussianPolicy(linear[0][1].shape[1], linear[-1][1].shape[0], hidden)
            policy.load_state_dict(policy_state)
            stats = RunningMeanStd.from_state(
                {k: tensors[f"obs_filter.{k}"].numpy() for k in ("n", "mean", "m2")}
            )
        except (KeyError, IndexError, RuntimeError, ValueError) as exc:
            raise RobbenchError(f"stored {self.name!r} artifact does not hold a valid adversary ({exc})") from None
        policy.eval()
        self.policy = policy
        self.obs_filter = ObsFilter(stats.mean.shape[0])
        self.obs_filter.stats = stats
        self.obs_filter.frozen = True


def _frozen_copy(obs_filter: ObsFilter) -> ObsFilter:
    frozen = ObsFilter(obs_filter.stats.mean.shape[0])
    frozen.stats = RunningMeanStd.from_state(obs_filter.stats.state())
    frozen.frozen = True
    return frozen
