"""Plain torch / safetensors weights with a JSON architecture spec (`--format torch --spec`)."""

from __future__ import annotations

from pathlib import Path

from robbench.errors import RobbenchError, unknown
from robbench.importers.common import Network, _check_chain, _file, _linear_chain, _log_std, json_spec, parse_activation


# --------------------------------------------------------------------------------------- torch
SPEC_KEYS = {
    "hidden": "list of hidden widths, e.g. [64, 64] (required)",
    "activation": "tanh, relu or elu (required)",
    "squash": "none, or tanh: the action is low + (tanh(last layer) + 1)/2 · (high − low) on the env's box "
              "(required)",
    "action_clip": "true if actions were clipped to the action box in training / evaluation (required)",
    "std": "state-independent (default; state-dependent is refused)",
    "actor": "prefix of the policy's Linear layers <prefix>0, <prefix>2, … (default 'actor.')",
    "log_std": "name of the log σ tensor, shape (act_dim,) or (1, act_dim) (default 'log_std')",
    "critic": "prefix of the value network's Linear layers, or null for none (default 'critic.', if present)",
    "critic_hidden": "the value network's hidden widths (default: those its tensors have)",
    "format": "optional, 'robbench-policy-spec/1'",
}


def read_torch(path: str | Path, spec_path: str | Path | None = None) -> Network:
    """Plain torch weights saved as safetensors plus a JSON architecture spec (`SPEC_KEYS`)."""
    path = _file(path, "weights file")
    where = f"weights file {str(path)!r}"
    if spec_path is None:
        guess = path.with_suffix(".json")
        if not guess.is_file():
            raise RobbenchError(f"{where} needs its architecture spec: pass --spec FILE.json (keys: hidden, "
                                "activation, squash, action_clip)")
        spec_path = guess
    spec_path = _file(spec_path, "architecture spec")
    swhere = f"architecture spec {str(spec_path)!r}"
    spec = json_spec(spec_path, swhere, SPEC_KEYS)
    for key in ("hidden", "activation", "squash", "action_clip"):
        if key not in spec:
            raise RobbenchError(f"{swhere} lacks {key!r} ({SPEC_KEYS[key]})")
    if spec["squash"] not in ("none", "tanh"):
        raise RobbenchError(f"{swhere}: squash {spec['squash']!r} is not supported; only none (the mean as it is) "
                            "or tanh (squashed onto the action box)")
    if spec.get("std", "state-independent") != "state-independent":
        raise RobbenchError(f"{swhere}: std {spec.get('std')!r} is not supported; only a state-independent log σ")
    if not isinstance(spec["action_clip"], bool):
        raise RobbenchError(f"{swhere}: action_clip must be true or false, got {spec['action_clip']!r}")
    activation = parse_activation(spec["activation"]) if isinstance(spec["activation"], str) else None
    if activation is None:
        raise unknown("activation", spec["activation"], ("tanh", "relu", "elu"))
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise RobbenchError(f"{where} is not a readable safetensors file ({' '.join(str(exc).split())})") from None
    actor_prefix, log_std_name = spec.get("actor", "actor."), spec.get("log_std", "log_std")
    critic_prefix = spec.get("critic", "critic.")
    for key, value in (("actor", actor_prefix), ("log_std", log_std_name)):
        if not isinstance(value, str) or not value:
            raise RobbenchError(f"{swhere}: {key} must be a tensor name or prefix, got {value!r}")
    if critic_prefix is not None and (not isinstance(critic_prefix, str) or not critic_prefix):
        raise RobbenchError(f"{swhere}: critic must be a prefix or null, got {critic_prefix!r}")
    if "critic" in spec and critic_prefix is not None and not any(k.startswith(critic_prefix) for k in sd):
        raise RobbenchError(f"{where} has no tensors {critic_prefix}* although the spec names that critic")
    used = {log_std_name}
    for key in sd:
        if key.startswith(actor_prefix) or (critic_prefix is not None and key.startswith(critic_prefix)):
            used.add(key)
    extra = sorted(set(sd) - used)
    if extra:
        raise RobbenchError(f"{where}: unexpected tensor {extra[0]!r} (the spec reads {actor_prefix}*, {log_std_name}"
                            + (f", {critic_prefix}*" if critic_prefix else "") + ")")
    if log_std_name not in sd:
        raise RobbenchError(f"{where} has no tensor {log_std_name!r} (the log σ)")
    actor = _linear_chain(sd, actor_prefix, where)
    if not actor:
        raise RobbenchError(f"{where} has no policy layers {actor_prefix}0, {actor_prefix}2, …")
    _check_chain(actor, None, where, "policy")
    critic = _linear_chain(sd, critic_prefix, where) if critic_prefix is not None else []
    critic = critic or None
    if critic is not None:
        _check_chain(critic, 1, where, "value")
    net = Network(actor, _log_std(sd[log_std_name], int(actor[-1][0].shape[0]), where, log_std_name), critic,
                  activation, "architecture spec", spec["action_clip"], squash=spec["squash"])
    for key, have in (("hidden", net.hidden), ("critic_hidden", net.value_hidden)):
        if key in spec and spec[key] != have:
            raise RobbenchError(f"{swhere}: {key} {spec[key]!r} does not match the tensors, which have {have!r}")
    return net
