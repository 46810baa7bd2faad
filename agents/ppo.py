"""`ppo` — standard PPO (SPO in the BARPO paper): the core alone (spec/ppo.md)."""

from robbench.ppo import Objective
from robbench.registry import register_trainer


@register_trainer("ppo")
class PPO(Objective):
    """Clipped-surrogate PPO with the reference MuJoCo hyperparameters; no robustness term."""

