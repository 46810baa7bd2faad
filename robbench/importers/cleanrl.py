"""CleanRL `.cleanrl_model` files: ppo_continuous_action's Agent state dict, and the actors of
td3_continuous_action / ddpg_continuous_action (saved as the (actor, qf1, qf2) state dicts) and
sac_continuous_action (fc1, fc2, fc_mean, fc_logstd): their deterministic action
tanh(head(MLP(s))) · action_scale + action_bias."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

from robbench.errors import RobbenchError
from robbench.importers.common import Network, _check_chain, _file, _linear_chain, _log_std, _torch_state_dict


# ------------------------------------------------------------------------------------- CleanRL
def read_cleanrl(path: str | Path, activation: str | None = None) -> Network:
    """CleanRL's ppo_continuous_action `Agent` state dict (`torch.save(agent.state_dict())`):
    actor_mean.0/2/4, actor_logstd (1, act_dim), critic.0/2/4; tanh 64-64 in CleanRL's script."""
    path = _file(path, "CleanRL model")
    where = f"CleanRL model {str(path)!r}"
    sd = _torch_state_dict(path.read_bytes(), where, first_of_tuple=True)
    if any(k.startswith(("fc_mu.", "fc_mean.")) for k in sd):
        return _read_cleanrl_actor(sd, where, activation)
    for key in sd:
        if not (key == "actor_logstd" or key.startswith(("actor_mean.", "critic."))):
            raise RobbenchError(f"{where}: unexpected tensor {key!r} (a CleanRL continuous-action PPO Agent holds "
                                "actor_mean.*, actor_logstd and critic.*)")
    if "actor_logstd" not in sd or not any(k.startswith("actor_mean.") for k in sd):
        raise RobbenchError(f"{where} lacks {'actor_logstd' if 'actor_logstd' not in sd else 'actor_mean.*'} "
                            "(not CleanRL's ppo_continuous_action Agent?)")
    actor = _linear_chain(sd, "actor_mean.", where)
    _check_chain(actor, None, where, "policy")
    critic = _linear_chain(sd, "critic.", where) or None
    if critic is not None:
        _check_chain(critic, 1, where, "value")
    log_std = _log_std(sd["actor_logstd"], int(actor[-1][0].shape[0]), where, "actor_logstd")
    source = "--activation" if activation else "CleanRL ppo_continuous_action default (nn.Tanh)"
    return Network(actor, log_std, critic, activation or "tanh", source, True)


def _read_cleanrl_actor(sd: dict[str, Any], where: str, activation: str | None) -> Network:
    """CleanRL's TD3 / DDPG `Actor` (fc1, fc2, …, fc_mu) or SAC `Actor` (…, fc_mean, fc_logstd), with
    the `action_scale` / `action_bias` buffers its forward maps the tanh with (checked against the
    env's box at import). F.relu between layers in CleanRL's scripts: the default."""
    from robbench.importers.sb3 import OFF_POLICY_SIGMA

    algorithm = "TD3/DDPG" if "fc_mu.weight" in sd else "SAC"
    head = "fc_mu" if algorithm == "TD3/DDPG" else "fc_mean"
    hidden = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"fc(\d+)\.weight", k)))
    names = [f"fc{i}" for i in hidden] + [head]
    allowed = {f"{n}.{kind}" for n in names for kind in ("weight", "bias")} | {"action_scale", "action_bias"}
    if algorithm == "SAC":
        allowed |= {"fc_logstd.weight", "fc_logstd.bias"}
    stray = sorted(set(sd) - allowed)
    if stray:
        raise RobbenchError(f"{where}: unexpected tensor {stray[0]!r} for a CleanRL {algorithm} actor (fc1, fc2, …, "
                            f"{head}, action_scale, action_bias)")
    missing = sorted(k for n in names for k in (f"{n}.weight", f"{n}.bias") if k not in sd)
    missing += [k for k in ("action_scale", "action_bias") if k not in sd]
    if missing:
        raise RobbenchError(f"{where}: the CleanRL {algorithm} actor lacks {missing[0]!r}")
    actor = [(sd[f"{n}.weight"], sd[f"{n}.bias"]) for n in names]
    _check_chain(actor, None, where, "policy")
    act_dim = int(actor[-1][0].shape[0])
    box = []
    for key in ("action_scale", "action_bias"):
        t = sd[key].reshape(-1)
        if t.numel() != act_dim or not t.dtype.is_floating_point or not bool(torch.isfinite(t).all()):
            raise RobbenchError(f"{where}: {key} must hold {act_dim} finite numbers, got shape {tuple(sd[key].shape)}")
        box.append([float(v) for v in t])
    source = "--activation" if activation else f"CleanRL {algorithm.split('/')[0].lower()}_continuous_action default (F.relu)"
    sigma = (f"{OFF_POLICY_SIGMA:g} (the CleanRL {algorithm} actor holds no state-independent σ; used only where an "
             "attack samples the victim's actions)")
    return Network(actor, torch.full((act_dim,), math.log(OFF_POLICY_SIGMA)), None, activation or "relu", source, True,
                   {"algorithm_hint": f"CleanRL {algorithm} actor"}, squash="tanh", sigma_source=sigma,
                   squash_box=(box[0], box[1]))
