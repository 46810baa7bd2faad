"""rl-zoo3 run folders `<algo>/<EnvId>_<n>/`: the model, its VecNormalize and its recorded settings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robbench.errors import RobbenchError
from robbench.importers.common import _file


# ------------------------------------------------------------------------------------ rl-zoo3
@dataclass
class RLZooRun:
    """The files of one rl-zoo3 run folder `<algo>/<EnvId>_<n>/`."""

    model: Path
    env_id: str
    config: dict[str, Any]
    config_path: Path
    vecnormalize: Path | None
    normalize: bool


def _yaml_load(path: Path) -> Any:
    """rl-zoo3's config.yml with `yaml.safe_load` rules, plus the one tag rl-zoo3 writes (PyYAML's
    `!!python/object/apply:collections.OrderedDict` of [key, value] pairs), read as a plain dict.
    Every other python tag is refused by the safe loader (nothing is constructed or run)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def ordered_dict(loader, node):
        if not isinstance(node, yaml.SequenceNode) or len(node.value) != 1:
            raise yaml.constructor.ConstructorError(None, None, "OrderedDict with unexpected arguments",
                                                    node.start_mark)
        pairs = loader.construct_sequence(node.value[0], deep=True)
        if not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in pairs):
            raise yaml.constructor.ConstructorError(None, None, "OrderedDict items are not [key, value]",
                                                    node.start_mark)
        return dict(pairs)

    Loader.add_constructor("tag:yaml.org,2002:python/object/apply:collections.OrderedDict", ordered_dict)
    try:
        return yaml.load(path.read_text(), Loader=Loader)  # noqa: S506 (a SafeLoader subclass)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = getattr(exc, "problem", None) or getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise RobbenchError(f"rl-zoo3 config {str(path)!r} cannot be read safely ({reason})") from None


def read_rlzoo_run(folder: str | Path) -> RLZooRun:
    """The model (`<EnvId>.zip`, else `best_model.zip`), config.yml and vecnormalize.pkl of a run."""
    folder = Path(folder)
    env_id = re.sub(r"_\d+$", "", folder.name)
    params = folder / env_id
    where = f"rl-zoo3 run {str(folder)!r}"
    model = next((m for m in (folder / f"{env_id}.zip", folder / "best_model.zip") if m.is_file()), None)
    if model is None:
        raise RobbenchError(f"{where} holds neither {env_id}.zip nor best_model.zip (expected the layout "
                            "<algo>/<EnvId>_<n>/<EnvId>.zip with <EnvId>/config.yml)")
    config_path = params / "config.yml"
    if not config_path.is_file():
        raise RobbenchError(f"{where} has no {env_id}/config.yml")
    config = _yaml_load(_file(config_path, "rl-zoo3 config"))
    if not isinstance(config, dict):
        raise RobbenchError(f"rl-zoo3 config {str(config_path)!r} is not a table of hyperparameters")
    for key in ("env_wrapper", "frame_stack"):
        if config.get(key):
            raise RobbenchError(f"{where} trains with {key} {str(config[key])[:60]!r}, which changes what the policy "
                                "sees; such runs are not supported")
    norm = config.get("normalize", False)
    if isinstance(norm, str):  # rl-zoo3 writes e.g. "dict(norm_obs=True, norm_reward=False)" or "True"
        text = norm.replace(" ", "")
        normalize = "norm_obs=False" not in text and text not in ("False", "false")
    elif isinstance(norm, dict):
        normalize = norm.get("norm_obs", True) is not False
    else:
        normalize = bool(norm)
    vec = params / "vecnormalize.pkl"
    if normalize and not vec.is_file():
        raise RobbenchError(f"{where} was trained with normalize={norm!r} but has no {env_id}/vecnormalize.pkl")
    return RLZooRun(model, env_id, config, config_path, vec if normalize else None, normalize)


def _check_gym_id(env_id: str, env: str) -> None:
    """An rl-zoo3 run of `Hopper-v3` may be imported as robbench's `hopper` (Hopper-v5); another
    environment family may not."""
    from robbench.envs import get_env_spec

    ours = get_env_spec(env).gym_id
    if env_id.split("-v")[0] != ours.split("-v")[0]:
        raise RobbenchError(f"the rl-zoo3 run trained on {env_id}, but env {env!r} is {ours} (wrong --env?)")
