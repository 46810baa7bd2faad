"""`targeted` — drive the victim's action along chosen directions of the action box (APGD-T's analogue).

AutoAttack's targeted APGD is hard to beat because it tries several *targets* and keeps the
strongest. Here a target is a direction d in the victim's action space, and the attack runs APGD
(robbench.pgd.apgd_ascent; 20 steps per environment step by default) on ⟨μ(ŝ) − μ(s), d⟩: every
state pushes the action the same way, which is what topples a MuJoCo walker. The objective is linear
and unbounded on purpose (MuJoCo clamps the control, and a saturated dimension then costs nothing
but the control penalty).

Candidates, for an action space of n dimensions:
- the 2n axes ±e_i;
- the corners of the box, sign vectors: all 2^n when 2^n ≤ `max_corners` (default 32), else the two
  constant corners (+1…+1, −1…−1) and `max_corners` − 2 distinct corners drawn with `seed` — never
  the 3^n (or 2^n) enumeration for Ant (8) or Humanoid (17);
- two state-dependent targets: d(s) = −sign(μ(s)) ("anti", against the intended action) and
  d(s) = +sign(μ(s)) ("along", saturate it).

Screening (the `fit`, stored as an artifact like any learned attack's): every candidate runs
`screen_episodes` episodes (default 4) on held-out episode seeds `screen_seed + i` (default 2,000,000
+ i, disjoint from the protocol's 1,000,000 + i), all candidates as one batch, the same seeds for each.
Candidates are ranked by their mean held-out return; every candidate's score is recorded in the fit
statistics. The attack's scan members are ranks 0 … `top` − 1 (default 3): each is evaluated on the
protocol's seeds as its own cell, and the board shows the minimum with the chosen target's name.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from robbench.errors import RobbenchError
from robbench.pgd import apgd_ascent
from robbench.registry import register_attack
from robbench.threat import LearnedAttack, Victim, resolve_steps

FIXED, ANTI, ALONG = 0, 1, 2


def candidate_targets(act_dim: int, max_corners: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(directions (C, n), kinds (C,)) of the candidate set described in the module docstring."""
    dirs: list[list[float]] = []
    for i in range(act_dim):
        for sign in (1.0, -1.0):
            d = [0.0] * act_dim
            d[i] = sign
            dirs.append(d)
    if 2 ** act_dim <= max_corners:
        corners = [list(c) for c in itertools.product((1.0, -1.0), repeat=act_dim)]
    else:
        corners = [[1.0] * act_dim, [-1.0] * act_dim]
        seen = {tuple(c) for c in corners}
        rng = np.random.default_rng(seed)
        while len(corners) < max_corners:
            c = tuple(float(v) for v in rng.choice((1.0, -1.0), size=act_dim))
            if c not in seen:
                seen.add(c)
                corners.append(list(c))
    if act_dim == 1:
        corners = []  # the corners of a segment are its two axes
    dirs += corners
    kinds = [FIXED] * len(dirs) + [ANTI, ALONG]
    dirs += [[0.0] * act_dim, [0.0] * act_dim]
    return torch.tensor(dirs, dtype=torch.float32), torch.tensor(kinds, dtype=torch.int64)


def target_name(direction: torch.Tensor, kind: int) -> str:
    if kind == ANTI:
        return "anti-sign(μ)"
    if kind == ALONG:
        return "along-sign(μ)"
    nz = torch.nonzero(direction).flatten().tolist()
    if len(nz) == 1 and direction.numel() > 1:
        return f"axis {nz[0]}{'+' if direction[nz[0]] > 0 else '−'}"
    return "corner " + "".join("+" if v > 0 else "−" for v in direction.tolist())


def push_along(victim: Victim, states: torch.Tensor, directions: torch.Tensor, kinds: torch.Tensor,
               eps: float, gen: torch.Generator, steps: int, restarts: int) -> torch.Tensor:
    """APGD on ⟨μ(ŝ) − μ(s), d_j⟩ for row j's own target (directions/kinds given per row)."""
    with torch.no_grad():
        clean_mean = victim.mean(states)
    sign = torch.sign(clean_mean)
    d = torch.where((kinds == ANTI).unsqueeze(-1), -sign, torch.where((kinds == ALONG).unsqueeze(-1), sign,
                                                                        directions))
    return apgd_ascent(lambda x: ((victim.mean(x) - clean_mean) * d).sum(-1), states, eps, gen, steps=steps,
                       restarts=restarts)


class _Screen:
    """Every candidate in one evaluation batch: episode e runs candidate e // episodes_each."""

    name = "targeted"

    def __init__(self, outer: TargetedAttack, episodes_each: int):
        self.outer, self.eps, self.each = outer, outer.eps, episodes_each

    def perturb_episodes(self, victim, states, gen, episodes):
        which = torch.as_tensor(np.asarray(episodes) // self.each)
        return push_along(victim, states, self.outer.directions[which], self.outer.kinds[which], self.eps, gen,
                          self.outer.steps, self.outer.restarts)

    def member_label(self):
        return None


@register_attack("targeted")
class TargetedAttack(LearnedAttack):
    fit_independent = ("rank",)
    description = ("APGD pushing μ(ŝ) along an action direction (axes, corners, ±sign μ); candidates screened "
                   "on held-out episodes, the strongest `top` each a member")

    def __init__(self, eps: float, **params: Any):
        super().__init__(eps, **params)
        p = self.params
        self.steps, _ = resolve_steps(self.name, self.eps, {"steps": p["steps"], "step_size": None})
        self.restarts, _ = resolve_steps(self.name, self.eps, {"steps": p["restarts"], "step_size": None})
        for key in ("top", "screen_episodes", "max_corners"):
            resolve_steps(self.name, self.eps, {"steps": p[key], "step_size": None})
        if isinstance(p["rank"], bool) or not isinstance(p["rank"], int) or not 0 <= p["rank"] < p["top"]:
            raise RobbenchError(f"attack 'targeted': rank must be an integer in [0, top), got {p['rank']!r}")
        self.directions = self.kinds = self.order = self.scores = None

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"steps": 20, "restarts": 1, "top": 3, "rank": 0, "screen_episodes": 4,
                "screen_seed": 2_000_000, "max_corners": 32, "seed": 0}

    @classmethod
    def scan_members(cls, params: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"rank": r} for r in range(int(params.get("top", cls.default_params()["top"])))]

    def fit_config(self) -> dict[str, Any]:
        return {k: v for k, v in self.config().items() if k != "rank"}  # one screening for every rank

    def fit(self, victim: Victim, gen: torch.Generator, progress=None, resume=None) -> dict[str, Any]:
        from robbench.evaluate import Protocol, evaluate

        agent = victim.agent
        act_dim = int(victim.std.numel())
        self.directions, self.kinds = candidate_targets(act_dim, self.params["max_corners"], self.params["seed"])
        n_cand, each = len(self.kinds), self.params["screen_episodes"]
        base = Protocol.for_env(agent.env, eps=self.eps)
        seeds = self.params["screen_seed"] + np.tile(np.arange(each), n_cand)
        protocol = Protocol(eps=self.eps, episodes=n_cand * each, base_seed=self.params["screen_seed"],
                            max_steps=base.max_steps)
        on_step = None
        if progress is not None:
            on_step = lambda done, steps: progress(done, n_cand * each, f"screening {n_cand} targets")  # noqa: E731
        result = evaluate(agent, _Screen(self, each), protocol, on_step, seeds=seeds)
        self.scores = torch.tensor(result.returns.reshape(n_cand, each).mean(axis=1), dtype=torch.float64)
        self.order = torch.argsort(self.scores, stable=True)
        return {
            "screen_seeds": [int(seeds[0]), int(seeds[each - 1])],
            "candidates": {target_name(self.directions[i], int(self.kinds[i])): round(float(self.scores[i]), 2)
                           for i in range(n_cand)},
            "chosen": [self._name(r) for r in range(min(self.params["top"], n_cand))],
        }

    def _name(self, rank: int) -> str:
        i = int(self.order[rank])
        return target_name(self.directions[i], int(self.kinds[i]))

    def member_label(self) -> str | None:
        if self.order is None or self.params["rank"] >= len(self.order):
            return None
        return f"{self._name(self.params['rank'])} (rank {self.params['rank']})"

    def perturb(self, victim: Victim, states: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.order is None:
            raise RobbenchError("attack 'targeted' was not screened (fit) before use")
        rank = min(self.params["rank"], len(self.order) - 1)
        i = int(self.order[rank])
        n = states.shape[0]
        return push_along(victim, states, self.directions[i].expand(n, -1), self.kinds[i].expand(n), self.eps, gen,
                          self.steps, self.restarts)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"directions": self.directions, "kinds": self.kinds, "order": self.order, "scores": self.scores}

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        need = {"directions", "kinds", "order", "scores"}
        if set(tensors) != need:
            raise RobbenchError(f"targeted artifact: expected tensors {sorted(need)}, got {sorted(tensors)}")
        self.directions, self.kinds = tensors["directions"].float(), tensors["kinds"].long()
        self.order, self.scores = tensors["order"].long(), tensors["scores"].double()
