"""CleanRL `.cleanrl_model` files (ppo_continuous_action's Agent state dict)."""

from __future__ import annotations

from pathlib import Path

from robbench.errors import RobbenchError
from robbench.importers.common import Network, _check_chain, _file, _linear_chain, _log_std, _torch_state_dict


# ------------------------------------------------------------------------------------- CleanRL
def read_cleanrl(path: str | Path, activation: str | None = None) -> Network:
    """CleanRL's ppo_continuous_action `Agent` state dict (`torch.save(agent.state_dict())`):
    actor_mean.0/2/4, actor_logstd (1, act_dim), critic.0/2/4; tanh 64-64 in CleanRL's script."""
    path = _file(path, "CleanRL model")
    where = f"CleanRL model {str(path)!r}"
    sd = _torch_state_dict(path.read_bytes(), where)
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
