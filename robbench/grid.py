"""Benchmark grids: a TOML or YAML file describing what to train, attack and certify, as jobs.

    # grid.toml
    envs = ["hopper"]
    methods = ["ppo", "barppo"]
    seeds = "0-2"                 # or [0, 1, 2], or 0
    preset = "quick"              # training budget: paper, quick or smoke
    attacks = ["none", "random", "mad", "sa_rl"]   # or "all", or "standard" (the suite boards rank by)
    episodes = 50
    certify = ["crown"]           # optional
    retrain_stale = true          # optional: retrain stored agents today's trainer would train otherwise
    [attack_params.sa_rl]
    preset = "medium"

Keys (all but `envs` and `methods` optional): envs, methods, seeds, preset, steps, num_envs,
trainer_params, retrain_stale, agents (ids of agents already in the home to attack as well), attacks,
attack_params, episodes, eps, certify, certify_states, certify_threshold. An agent already in the home is
not retrained; with `retrain_stale = true` one whose recorded settings differ from what its trainer
builds today (`train.stale_settings`, e.g. a faithful-baseline fix) is, and `--dry-run` names the settings. YAML is read with
`yaml.safe_load` (no tags, nothing executed). Every problem is one line naming the file and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robbench.certify import DEFAULT_STATES, DEFAULT_THRESHOLD
from robbench.errors import RobbenchError, unknown, validate_count, validate_seed
from robbench.evaluate import DEFAULT_EPISODES
from robbench.jobs import Job
from robbench.specs import AttackSpec, CertifySpec, EvaluateSpec, FitSpec, TrainSpec
from robbench.train import DEFAULT_NUM_ENVS, DEFAULT_PRESET

GRID_KEYS = {
    "envs": "list of env keys", "methods": "list of trainer names", "seeds": "seed list or range like '0-16'",
    "preset": "training preset", "steps": "env steps per training run", "num_envs": "env copies per trainer",
    "trainer_params": "table: method -> settings",
    "retrain_stale": "true to retrain stored agents whose recorded settings differ from today's trainer", "agents": "list of stored agent ids",
    "attacks": "list of attack names, 'all', or 'standard' / 'standard-vN' (a standard suite with its settings)",
    "attack_params": "table: attack -> settings",
    "episodes": "episodes per cell", "eps": "ε override", "certify": "list of bound methods",
    "certify_states": "states per certificate", "certify_threshold": "action-deviation threshold",
}


MAX_JOBS = 100_000  # jobs one command may plan (seeds, and a grid's train + fit + evaluate + certify jobs)
MAX_DEPTH = 32  # nesting levels a grid file may have (grids need 3: attack_params.<attack>.<setting>)


def parse_seeds(value: Any, what: str = "seeds") -> list[int]:
    """`3`, `[0, 1, 5]`, `"0-16"` or `"0,2,5-7"` → sorted unique seeds ≥ 0."""
    if isinstance(value, bool):
        raise RobbenchError(f"{what} must be seeds like 0, [0, 1] or '0-16', got {value!r}")
    if isinstance(value, int):
        items: list[Any] = [value]
    elif isinstance(value, list):
        items = value
    elif isinstance(value, str):
        items = [p.strip() for p in value.split(",") if p.strip()]
    else:
        raise RobbenchError(f"{what} must be seeds like 0, [0, 1] or '0-16', got {value!r}")
    if len(items) > MAX_JOBS:
        raise too_many_jobs(f"{what}: {len(items)} entries")
    ranges: list[tuple[int, int]] = []  # kept as ranges: "0-100000000" is counted, never materialised
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            lo = hi = item
        elif isinstance(item, str) and item.replace("-", "", 1).isdigit():
            lo_s, _, hi_s = item.partition("-")
            try:
                lo, hi = int(lo_s), int(hi_s or lo_s)
            except ValueError:  # more digits than Python converts
                raise RobbenchError(f"{what}: {_short(item)} is not a usable seed range") from None
        else:
            raise RobbenchError(f"{what}: cannot read {_short(item)} (use 0, [0, 1] or '0-16')")
        if lo < 0 or hi < lo:
            raise RobbenchError(f"{what}: bad range {_short(item)} (seeds are ≥ 0, low-high with low ≤ high)")
        validate_seed(hi, what)
        ranges.append((lo, hi))
    merged: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    count = sum(hi - lo + 1 for lo, hi in merged)
    if count > MAX_JOBS:
        raise too_many_jobs(f"{what}: {_short(value)} is {count} seeds")
    if not count:
        raise RobbenchError(f"{what} is empty")
    return [s for lo, hi in merged for s in range(lo, hi + 1)]


def too_many_jobs(what: str) -> RobbenchError:
    return RobbenchError(f"{what}; at most {MAX_JOBS} jobs per command (split the work over several runs or "
                         "grid files)")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class Grid:
    envs: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    preset: str = DEFAULT_PRESET
    steps: int | None = None
    num_envs: int = DEFAULT_NUM_ENVS
    trainer_params: dict[str, dict] = field(default_factory=dict)
    retrain_stale: bool = False
    agents: list[str] = field(default_factory=list)
    attacks: list[str] = field(default_factory=list)
    attack_params: dict[str, dict] = field(default_factory=dict)
    episodes: int = DEFAULT_EPISODES
    eps: float | None = None
    certify: list[str] = field(default_factory=list)
    certify_states: int = DEFAULT_STATES
    certify_threshold: float = DEFAULT_THRESHOLD


def load_grid(path: str | Path) -> Grid:
    """Read and validate a grid file (.toml, .yaml or .yml)."""
    path = Path(path)
    if not path.is_file():
        raise RobbenchError(f"grid file {str(path)!r} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise RobbenchError(f"cannot read grid file {str(path)!r}: {exc}") from None
    try:
        raw = _decode(text, path)
    except RecursionError:  # e.g. arrays nested 10000 deep: the parser gives up, one line here
        raise RobbenchError(f"{path.name}: nested too deeply; a grid has at most {MAX_DEPTH} levels") from None
    return parse_grid(raw, path.name)


def _decode(text: str, path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RobbenchError(f"{path.name}: invalid TOML: {exc}") from None
    elif suffix in (".yaml", ".yml"):
        import yaml

        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" at line {where.line + 1}" if where is not None else ""
            raise RobbenchError(f"{path.name}: invalid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    else:
        raise RobbenchError(f"grid file {path.name!r} must end in .toml, .yaml or .yml")
    return raw


def parse_grid(raw: Any, name: str = "grid") -> Grid:
    """Validate a parsed grid; every error is one line starting with the file's name."""
    try:
        if _depth(raw) > MAX_DEPTH:
            raise RobbenchError(f"{name}: nested too deeply; a grid has at most {MAX_DEPTH} levels")
        return _parse_grid(raw, name)
    except RobbenchError as exc:
        text = str(exc)
        raise RobbenchError(text if text.startswith(f"{name}: ") else f"{name}: {text}") from None


def _depth(value: Any) -> int:
    """Nesting depth of tables and lists, without recursion. YAML aliases share (or loop back to) a
    node: each is walked again only when reached deeper, and a loop counts as too deep."""
    deepest, stack, reached = 0, [(value, 1)], {}
    while stack and deepest <= MAX_DEPTH:
        item, level = stack.pop()
        if not isinstance(item, (dict, list)) or reached.get(id(item), 0) >= level:
            continue
        reached[id(item)] = level
        deepest = max(deepest, level)
        stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def count_jobs(grid: Grid) -> int:
    """How many distinct jobs `grid_jobs` makes, counted without making them."""
    from robbench.registry import get_attack
    from robbench.store import canonical_json
    from robbench.threat import LearnedAttack

    per_agent = 1 if grid.certify else 0
    for name in grid.attacks:
        cls = get_attack(name)
        if issubclass(cls, LearnedAttack):
            base = dict(grid.attack_params.get(name) or {})
            members = cls.scan_members(base)
            independent = getattr(cls, "fit_independent", ())  # members differing only there share a fit
            fits = {canonical_json({k: v for k, v in {**base, **m}.items() if k not in independent}) for m in members}
            per_agent += len(members) + len(fits)  # one evaluation per member, one job per distinct fit
        else:
            per_agent += 1
    trained = len(grid.envs) * len(grid.methods) * len(grid.seeds)
    return trained + (trained + len(grid.agents)) * per_agent


def _parse_grid(raw: Any, name: str) -> Grid:
    from robbench.certify import parse_methods, validate_threshold
    from robbench.envs import get_env_spec
    from robbench.registry import attacks, get_trainer
    from robbench.threat import validate_eps

    if not isinstance(raw, dict):
        raise RobbenchError(f"{name}: a grid is a table of keys ({', '.join(GRID_KEYS)}), got {type(raw).__name__}")
    bad = sorted(set(raw) - set(GRID_KEYS))
    if bad:
        raise RobbenchError(f"{name}: unknown key {bad[0]!r}; valid keys: {', '.join(GRID_KEYS)}")

    def names(key: str, allow_all: bool = False) -> list[str]:
        value = raw.get(key, [])
        if allow_all and value == "all":
            return ["all"]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise RobbenchError(f"{name}: {key} must be a list of names, got {value!r}")
        return list(dict.fromkeys(value))

    def integer(key: str, default: int | None) -> int | None:
        value = raw.get(key, default)
        return None if value is None else validate_count(value, key)

    def table(key: str, registry) -> dict[str, dict]:
        value = raw.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise RobbenchError(f"{name}: {key} must be a table of tables ({key}.<name>.<setting> = value)")
        for k in value:
            if k not in registry:
                raise unknown(f"{key} name", k, registry)
        return {k: dict(v) for k, v in value.items()}

    grid = Grid()
    grid.envs = names("envs")
    for e in grid.envs:
        get_env_spec(e)
    grid.methods = names("methods")
    for m in grid.methods:
        get_trainer(m)
    if bool(grid.envs) != bool(grid.methods):
        raise RobbenchError(f"{name}: give both envs and methods to train agents (or neither)")
    grid.seeds = parse_seeds(raw.get("seeds", 0), f"{name}: seeds")
    grid.preset = raw.get("preset", DEFAULT_PRESET)
    if not isinstance(grid.preset, str):
        raise RobbenchError(f"{name}: preset must be a name, got {grid.preset!r}")
    grid.steps = integer("steps", None)
    grid.num_envs = integer("num_envs", DEFAULT_NUM_ENVS)
    from robbench.registry import trainers

    grid.trainer_params = table("trainer_params", trainers())
    grid.retrain_stale = raw.get("retrain_stale", False)
    if not isinstance(grid.retrain_stale, bool):
        raise RobbenchError(f"{name}: retrain_stale must be true or false, got {grid.retrain_stale!r}")
    grid.agents = names("agents")
    table_attacks = attacks()
    suite_params: dict[str, dict] = {}
    selector = raw.get("attacks")
    if isinstance(selector, str) and selector.startswith("standard"):  # a versioned standard suite
        from robbench.plan import select_attacks

        grid.attacks, suite_params = select_attacks(selector)
    else:
        grid.attacks = names("attacks", allow_all=True)
    if grid.attacks == ["all"]:
        grid.attacks = list(table_attacks)
    for a in grid.attacks:
        if a not in table_attacks:
            raise unknown("attack", a, table_attacks)
    overrides = table("attack_params", table_attacks)  # laid over a suite's own settings (its cells then leave it)
    grid.attack_params = {a: {**suite_params.get(a, {}), **overrides.get(a, {})}
                          for a in dict.fromkeys([*suite_params, *overrides])}
    grid.episodes = integer("episodes", DEFAULT_EPISODES)
    if raw.get("eps") is not None:
        grid.eps = validate_eps(raw["eps"], "eps")
    grid.certify = parse_methods(",".join(names("certify"))) if raw.get("certify") else []
    grid.certify_states = integer("certify_states", DEFAULT_STATES)
    grid.certify_threshold = validate_threshold(raw.get("certify_threshold", DEFAULT_THRESHOLD), "certify_threshold")
    if not (grid.methods or grid.agents):
        raise RobbenchError(f"{name}: nothing to do (give envs and methods to train, or agents to attack)")
    n_jobs = count_jobs(grid)
    if n_jobs > MAX_JOBS:
        raise too_many_jobs(f"{name}: this grid is {n_jobs} jobs")
    # Trainer settings and presets are checked now, not when a worker first meets them.
    from robbench.train import build_config

    for env in grid.envs:
        for m in grid.methods:
            build_config(m, env, grid.seeds[0], grid.preset, grid.steps, grid.num_envs, grid.trainer_params.get(m))
    return grid


# ----------------------------------------------------------------------------------- grid → jobs
def train_jobs(methods: list[str], envs: list[str], seeds: list[int], preset: str, steps: int | None,
               num_envs: int, params: dict[str, dict], force: bool = False,
               retrain_stale: bool = False) -> list[tuple[str, Job]]:
    """(agent id, job) for every (env, method, seed)."""
    from robbench.train import agent_id, build_config

    out = []
    for env in envs:
        for method in methods:
            for seed in seeds:
                cfg, _ = build_config(method, env, seed, preset, steps, num_envs, params.get(method))
                aid = agent_id(env, method, cfg.budget, seed)
                spec = TrainSpec(method=method, env=env, seed=seed, preset=preset, steps=steps, num_envs=num_envs,
                                 params=params.get(method) or {}, force=force, retrain_stale=retrain_stale)
                out.append((aid, Job.make("train", spec, f"train {aid}")))
    return out


def attack_jobs(agent_deps: dict[str, tuple[str, ...]], attacks: list[str], params: dict[str, dict],
                episodes: int = DEFAULT_EPISODES, eps: float | None = None, fit: bool = True,
                force: bool = False) -> list[Job]:
    """Fit jobs (one per learned-attack scan member) and evaluation jobs (one per cell)."""
    from robbench.registry import get_attack
    from robbench.threat import LearnedAttack

    jobs: list[Job] = []
    fits: set[str] = set()
    for aid, deps in agent_deps.items():
        for name in attacks:
            cls = get_attack(name)
            base = dict(params.get(name) or {})
            learned = issubclass(cls, LearnedAttack)
            members = cls.scan_members(base) if learned else [{}]
            for member in members:
                p = {**base, **member}
                tag = f"{aid} × {name}" + "".join(f"[{k} {member[k]}]" for k in ("member", "rank") if k in member)
                eval_deps = deps
                if learned and fit:
                    shared = {k: v for k, v in p.items() if k not in cls.fit_independent}
                    fit_tag = f"{aid} × {name}" + (f"[member {shared['member']}]" if "member" in shared else "")
                    fit_job = Job.make("fit", FitSpec(agent_id=aid, attack=name, params=shared, eps=eps),
                                       f"fit {fit_tag}", deps)
                    if fit_job.key not in fits:  # members sharing one fit (targeted's ranks): one job
                        fits.add(fit_job.key)
                        jobs.append(fit_job)
                    eval_deps = (fit_job.key,)
                spec = EvaluateSpec(agent_id=aid, attack=name, params=p, eps=eps, episodes=episodes, fit=fit,
                                    force=force)
                jobs.append(Job.make("evaluate", spec, f"evaluate {tag}", eval_deps))
    return jobs


def drop_critic_cells(store, jobs: list[Job]) -> tuple[list[Job], list[tuple[str, str]]]:
    """Leave out the fit and evaluate jobs of attacks that need a critic (`Attack.needs_critic`) on
    stored agents that have none (`has_critic: false`, e.g. an imported policy without a value
    network): such a cell would otherwise attack a network that does not exist. Returns (the jobs
    kept, the (agent id, attack) pairs left out, each once); `critic_notice` words them."""
    from robbench.registry import get_attack

    critic_less = {a.agent_id for a in store.agents() if a.meta.get("has_critic", True) is False}
    kept: list[Job] = []
    dropped: dict[tuple[str, str], None] = {}
    dropped_keys: set[str] = set()
    for job in jobs:
        spec = job.typed
        attacked = isinstance(spec, AttackSpec)
        if (attacked and spec.agent_id in critic_less and get_attack(spec.attack).needs_critic) \
                or any(d in dropped_keys for d in job.deps):  # a job needing a dropped one attacks too
            dropped[(spec.agent_id, spec.attack)] = None
            dropped_keys.add(job.key)
            continue
        kept.append(job)
    return kept, list(dropped)


def critic_notice(agent_id: str, attack: str) -> str:
    return f"skipped: attack {attack!r} needs a critic (value network); agent {agent_id!r} has none"


def certify_jobs(agent_deps: dict[str, tuple[str, ...]], methods: list[str], eps: float | None = None,
                 states: int = DEFAULT_STATES, threshold: float = DEFAULT_THRESHOLD, force: bool = False) -> list[Job]:
    return [
        Job.make("certify", CertifySpec(agent_id=aid, methods=tuple(methods), eps=eps, states=states,
                                        threshold=threshold, force=force), f"certify {aid}", deps)
        for aid, deps in agent_deps.items()
    ]


def grid_jobs(grid: Grid, store) -> list[Job]:
    """Every job of the grid, dependencies included."""
    jobs: list[Job] = []
    agent_deps: dict[str, tuple[str, ...]] = {}
    for aid, job in train_jobs(grid.methods, grid.envs, grid.seeds, grid.preset, grid.steps, grid.num_envs,
                               grid.trainer_params, retrain_stale=grid.retrain_stale):
        jobs.append(job)
        agent_deps[aid] = (job.key,)
    for aid in grid.agents:
        store.get_agent(aid)  # one-line error for an unknown id
        agent_deps.setdefault(aid, ())
    jobs += attack_jobs(agent_deps, grid.attacks, grid.attack_params, grid.episodes, grid.eps)
    if grid.certify:
        jobs += certify_jobs(agent_deps, grid.certify, grid.eps, grid.certify_states, grid.certify_threshold)
    return jobs
