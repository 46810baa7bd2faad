"""Bring your own agent: import a policy trained elsewhere into a results home (docs/bring-your-own-agent.md).

    robbench import ppo_hopper.zip --env hopper --vecnormalize vecnormalize.pkl      # SB3 PPO / A2C / SAC / TD3
    robbench import agent.cleanrl_model --env hopper --obs-stats stats.npz           # CleanRL
    robbench import weights.safetensors --env hopper --format torch --spec arch.json --raw-obs

An imported agent is an ordinary robbench checkpoint (safetensors + JSON metadata) registered as
`<env>/<name>/external/<seed>` (the seed counts imports under one name), so `robbench evaluate`,
`certify` and `report` treat it like robbench's own agents. What robbench cannot read from the
files is never guessed: the activation (when SB3 did not record it readably), the observation
normalisation (VecNormalize file, statistics file, or `--raw-obs`) and, for raw torch weights,
whether actions are clipped, must be given; each is written into the agent's metadata.

Conventions reproduced exactly: SB3 / CleanRL normalise `clip((o − mean)/sqrt(var + epsilon),
−clip_obs, clip_obs)` (`obs_norm.convention = "sb3"`) and clip the action to the action box
(`action_clip: true`); robbench's own agents use `clip((o − mean)/(std + 1e-8), ±10)` and pass the
mean unclipped.

Nothing in an input file is executed: SB3's `policy.pth` and CleanRL's files are read with
`torch.load(weights_only=True)`; SB3's `data` is JSON; VecNormalize pickles go through
`RestrictedUnpickler`, which builds numpy arrays and inert stand-ins for the few SB3 / gymnasium
classes such a file names, and refuses every other global with one line.

One module per format, each a reader returning a `Network` (robbench/importers/common.py): `sb3`,
`cleanrl`, `torch_weights` (torch / safetensors with a JSON spec), `rlzoo`; observation statistics
and the restricted VecNormalize unpickler in `vecnormalize`; the import itself in `agent`; the
Python API `benchmark` in `api`. The names below are those `robbench.importers` has always offered.
"""

from __future__ import annotations

from robbench.importers.agent import (Imported, build_agent, check_name, default_name, detect_format, import_agent,
                                      read_network, read_obs_norm)
from robbench.importers.api import BenchmarkResult, benchmark
from robbench.importers.cleanrl import read_cleanrl
from robbench.importers.common import (ACTIVATION_NAMES, BUDGET, FORMATS, MAX_FILE_BYTES, NAME_RE, SB3_CLIP_OBS,
                                       SB3_EPSILON, Network, parse_activation)
from robbench.importers.rlzoo import RLZooRun, read_rlzoo_run
from robbench.importers.sb3 import read_sb3
from robbench.importers.torch_weights import SPEC_KEYS, read_torch
from robbench.importers.vecnormalize import ObsStats, RestrictedUnpickler, read_obs_stats, read_vecnormalize

__all__ = [
    "ACTIVATION_NAMES", "BUDGET", "FORMATS", "MAX_FILE_BYTES", "NAME_RE", "SB3_CLIP_OBS", "SB3_EPSILON", "SPEC_KEYS",
    "BenchmarkResult", "Imported", "Network", "ObsStats", "RLZooRun", "RestrictedUnpickler", "benchmark",
    "build_agent", "check_name", "default_name", "detect_format", "import_agent", "parse_activation", "read_cleanrl",
    "read_network", "read_obs_norm", "read_obs_stats", "read_rlzoo_run", "read_sb3", "read_torch",
    "read_vecnormalize",
]
