"""The import itself: detect the format, read network and statistics, build and register the agent."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robbench.errors import RobbenchError, unknown
from robbench.importers.cleanrl import read_cleanrl
from robbench.importers.common import BUDGET, FORMATS, NAME_RE, Network, _file, parse_activation
from robbench.importers.rlzoo import _check_gym_id, read_rlzoo_run
from robbench.importers.sb3 import read_sb3
from robbench.importers.torch_weights import read_torch
from robbench.importers.vecnormalize import ObsStats, read_obs_stats, read_vecnormalize


# ------------------------------------------------------------------------------- the import
def detect_format(path: str | Path) -> str:
    if Path(path).is_dir():
        return "rlzoo"
    suffix = Path(path).suffix.lower()
    found = {".zip": "sb3", ".cleanrl_model": "cleanrl", ".safetensors": "torch", ".onnx": "onnx"}.get(suffix)
    if found is None:
        raise RobbenchError(f"cannot tell the format of {str(path)!r} from its name; pass --format "
                            f"({', '.join(f for f in FORMATS if f != 'rlzoo')}; an rl-zoo3 run is a folder)")
    return found


def read_network(path: str | Path, fmt: str, activation: str | None = None, spec: str | Path | None = None) -> Network:
    if fmt not in FORMATS:
        raise unknown("format", fmt, FORMATS)
    if fmt not in ("torch", "onnx") and spec is not None:
        raise RobbenchError(f"--spec is for --format torch and onnx only (format {fmt!r} carries its architecture)")
    if fmt == "sb3":
        return read_sb3(path, activation)
    if fmt == "cleanrl":
        return read_cleanrl(path, activation)
    if activation is not None:
        raise RobbenchError(f"--activation is not used with --format {fmt}: "
                            + ("the architecture spec gives it" if fmt == "torch" else "the graph gives it"))
    if fmt == "onnx":
        from robbench.importers.onnx import read_onnx

        return read_onnx(path, spec)
    return read_torch(path, spec)


def read_obs_norm(fmt: str, vecnormalize: str | Path | None, obs_stats: str | Path | None,
                  raw_obs: bool) -> ObsStats:
    given = [n for n, v in (("--vecnormalize", vecnormalize), ("--obs-stats", obs_stats), ("--raw-obs", raw_obs)) if v]
    if len(given) > 1:
        raise RobbenchError(f"{' and '.join(given)} exclude each other: give the one observation normalisation "
                            "the agent was trained with")
    if vecnormalize is not None:
        return read_vecnormalize(vecnormalize)
    if obs_stats is not None:
        return read_obs_stats(obs_stats)
    if raw_obs:
        return ObsStats("none", source="--raw-obs")
    hint = {"sb3": "its VecNormalize file (--vecnormalize vecnormalize.pkl)",
            "cleanrl": "the NormalizeObservation statistics CleanRL does not save (--obs-stats mean/var .npz or .json)",
            "torch": "its statistics (--obs-stats mean/var .npz or .json)",
            "onnx": "its statistics (--obs-stats mean/var .npz or .json)"}[fmt]
    raise RobbenchError(f"the observation normalisation is not in the model file: pass {hint}, or --raw-obs "
                        "if it was trained on raw observations")


def _sha256(path: str | Path) -> str:
    from robbench.checkpoint import file_sha256

    return file_sha256(path)


def build_agent(net: Network, stats: ObsStats, env: str, meta: dict[str, Any]):
    """The robbench Agent of an imported network (float32 weights), `meta` completed with its
    dimensions and conventions; raises one line if the network does not fit the env."""
    from robbench.checkpoint import env_dims
    from robbench.envs import make_env
    from robbench.policy import (Agent, GaussianPolicy, IdentityObsNormalizer, MissingCritic, StaticObsNormalizer,
                                 ValueNet)

    obs_dim, act_dim = env_dims(env)
    if net.obs_dim != obs_dim or net.act_dim != act_dim:
        raise RobbenchError(f"the policy maps {net.obs_dim}-dim observations to {net.act_dim}-dim actions, but env "
                            f"{env!r} has {obs_dim}-dim observations and {act_dim}-dim actions (wrong --env?)")
    if stats.convention == "sb3" and stats.mean.shape != (obs_dim,):
        raise RobbenchError(f"the observation statistics have {stats.mean.size} entries, env {env!r} has "
                            f"{obs_dim}-dim observations (wrong --env or statistics file?)")
    e = make_env(env)
    try:
        low = [float(v) for v in np.asarray(e.action_space.low, dtype=np.float32).reshape(-1)]
        high = [float(v) for v in np.asarray(e.action_space.high, dtype=np.float32).reshape(-1)]
    finally:
        e.close()
    meta = {**meta, "obs_dim": obs_dim, "act_dim": act_dim, "hidden": net.hidden, "activation": net.activation,
            "has_critic": net.critic is not None, "obs_norm": stats.meta(), "action_clip": net.action_clip}
    if net.critic is not None:
        meta["value_hidden"] = net.value_hidden
    if net.action_clip or net.squash == "tanh":
        meta.update(action_low=low, action_high=high)
    if net.squash == "tanh":
        if not all(np.isfinite(low + high)):
            raise RobbenchError(f"env {env!r} has an unbounded action box: a tanh-squashed policy cannot be mapped onto it")
        meta["squash"] = "tanh"
    if net.sigma_source:
        meta["sigma_source"] = net.sigma_source
    policy = GaussianPolicy(obs_dim, act_dim, tuple(net.hidden), 1.0, net.activation, net.squash)
    state = {f"mean_net.{2 * i}.{kind}": t.detach().float().clone()
             for i, (w, b) in enumerate(net.actor) for kind, t in (("weight", w), ("bias", b))}
    if net.squash == "tanh":  # SB3's unscale_action: low + (a + 1)/2 · (high − low)
        lo, hi = torch.tensor(low, dtype=torch.float32), torch.tensor(high, dtype=torch.float32)
        if not net.squash_onto_box and not (bool((lo == -1).all()) and bool((hi == 1).all())):
            raise RobbenchError(f"the graph's tanh output is its action, but env {env!r} has the action box "
                                f"[{min(low):g}, {max(high):g}], not [-1, 1]: export the scaling too, or import "
                                "the weights with --format torch (squash: tanh maps onto the box)")
        if net.squash_box is not None:  # the file's own map (CleanRL's action_scale / action_bias buffers)
            scale, bias = (torch.tensor(v, dtype=torch.float32) for v in net.squash_box)
            if not (torch.allclose(scale, (hi - lo) / 2, atol=1e-6) and torch.allclose(bias, (hi + lo) / 2, atol=1e-6)):
                raise RobbenchError(f"the actor maps its tanh onto the box with scale {net.squash_box[0]} and bias "
                                    f"{net.squash_box[1]}, which is not env {env!r}'s action box (wrong --env?)")
        box = 2 * len(net.actor)
        state.update({f"mean_net.{box}.weight": torch.diag((hi - lo) / 2), f"mean_net.{box}.bias": (hi + lo) / 2})
    policy.load_state_dict({**state, "log_std": net.log_std.detach().float().clone()})
    if net.critic is not None:
        value = ValueNet(obs_dim, tuple(net.value_hidden), net.activation)
        value.load_state_dict({f"net.{2 * i}.{kind}": t.detach().float().clone()
                               for i, (w, b) in enumerate(net.critic) for kind, t in (("weight", w), ("bias", b))})
    else:
        value = MissingCritic(meta["agent_id"])
    normalizer = (IdentityObsNormalizer() if stats.convention == "none"
                  else StaticObsNormalizer(stats.mean, stats.var, stats.epsilon, stats.clip_obs))
    policy.eval()
    value.eval()
    return Agent(policy, value, normalizer, meta)


@dataclass
class Imported:
    record: Any  # robbench.store.AgentRecord
    network: Network
    stats: ObsStats
    created: bool  # False: the same files were imported before under this name

    @property
    def agent_id(self) -> str:
        return self.record.agent_id

    def summary(self) -> str:
        clip = "clipped to the action box" if self.network.action_clip else "the mean, unclipped"
        sigma = f"; σ: {self.network.sigma_source}" if self.network.sigma_source else ""
        return (f"{self.network.describe()} (activation: {self.network.activation_source}); observations: "
                f"{self.stats.describe()}; actions: {clip}{sigma}")


def default_name(path: str | Path, fmt: str) -> str:
    """The file's stem as an agent-id part (`ppo_hopper.zip` → `ppo_hopper`), never a trainer's name."""
    from robbench.registry import trainers

    name = re.sub(r"[^A-Za-z0-9_-]", "-", Path(path).stem)[:56].strip("-_") or fmt
    return f"{name}-{fmt}" if name in trainers() else name


def check_name(name: str) -> str:
    from robbench.registry import trainers

    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RobbenchError(f"--name {name!r} must be 1-64 letters, digits, '-' or '_' (it becomes part of the "
                            "agent id <env>/<name>/external/<seed>)")
    if name in trainers():
        raise RobbenchError(f"--name {name!r} is a robbench trainer; choose another name for an imported agent")
    return name


def import_agent(store, path: str | Path, env: str, fmt: str | None = None, vecnormalize: str | Path | None = None,
                 obs_stats: str | Path | None = None, raw_obs: bool = False, activation: str | None = None,
                 spec: str | Path | None = None, name: str | None = None) -> Imported:
    """Read an outside agent, write it as a robbench checkpoint and register it in `store`.

    The id is `<env>/<name>/external/<seed>`, seed the next free one under that name; importing the
    same files with the same options again returns the agent already registered."""
    from robbench import provenance
    from robbench.checkpoint import save_agent
    from robbench.envs import get_env_spec

    spec_env = get_env_spec(env)
    if not Path(path).is_dir():
        _file(path, "agent file")
    fmt = detect_format(path) if fmt is None else fmt
    if fmt not in FORMATS:
        raise unknown("format", fmt, FORMATS)
    activation = parse_activation(activation)
    files: dict[str, Any] = {"model": path, "vecnormalize": vecnormalize, "obs_stats": obs_stats, "spec": spec}
    if fmt == "rlzoo":
        if not Path(path).is_dir():
            raise RobbenchError(f"--format rlzoo takes a run folder <algo>/<EnvId>_<n>/, not {str(path)!r}")
        if spec is not None:
            raise RobbenchError("--spec is for --format torch only (an rl-zoo3 run carries its architecture)")
        if vecnormalize is not None or obs_stats is not None or raw_obs:
            raise RobbenchError("an rl-zoo3 run brings its own observation normalisation (config.yml, "
                                "vecnormalize.pkl); drop --vecnormalize / --obs-stats / --raw-obs")
        run = read_rlzoo_run(path)
        _check_gym_id(run.env_id, env)
        net = read_sb3(run.model, activation)
        net.info.update(rlzoo_env_id=run.env_id, rlzoo_model=run.model.name)
        stats = read_vecnormalize(run.vecnormalize) if run.normalize else ObsStats("none", source="config.yml "
                                                                                   "normalize=False")
        files = {"model": run.model, "vecnormalize": run.vecnormalize, "config": run.config_path}
        default = f"{Path(path).parent.name}-{run.env_id}".lower() if Path(path).parent.name else run.env_id.lower()
    else:
        net = read_network(path, fmt, activation, spec)
        stats = read_obs_norm(fmt, vecnormalize, obs_stats, raw_obs)
        default = default_name(path, fmt)
    name = check_name(name if name is not None else re.sub(r"[^A-Za-z0-9_-]", "-", default)[:64])
    source = {
        "format": fmt,
        "files": {role: {"name": Path(p).name, "sha256": _sha256(p)} for role, p in files.items() if p is not None},
        "activation": net.activation, "raw_obs": bool(raw_obs),
    }
    same = [a for a in store.agents() if a.env == env and a.method == name and a.budget == BUDGET]
    for record in same:
        if record.meta.get("provenance", {}).get("source") == source:
            return Imported(record, net, stats, False)
    seed = max((a.seed for a in same), default=-1) + 1
    aid = f"{env}/{name}/{BUDGET}/{seed}"
    steps = net.info.get("steps")
    meta = {
        "agent_id": aid, "method": name, "env": env, "gym_id": spec_env.gym_id, "seed": seed, "preset": BUDGET,
        "budget": BUDGET, "steps": steps if isinstance(steps, int) and 0 <= steps < 2**62 else 0, "eps": spec_env.eps,
        "config": {"format": fmt, **({"gamma": net.info["gamma"]} if isinstance(net.info.get("gamma"), float) else {})},
        "provenance": {
            "imported": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "imported_from": str(Path(path)),
            "code_version": provenance.code_version(), "machine": provenance.machine(), "source": source,
            "activation_source": net.activation_source, "external": net.info,
        },
    }
    agent = build_agent(net, stats, env, meta)
    dst = store.agent_path(env, name, BUDGET, seed)
    save_agent(agent, dst)
    from robbench.checkpoint import check_agent_file

    check_agent_file(dst, expected_env=env)  # what evaluate will load: validated now, not at the first cell
    return Imported(store.register_agent(agent.meta, dst), net, stats, True)
