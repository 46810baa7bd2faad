"""Typed job specs: what one train, fit, evaluate or certify job does, checked once.

A job is content-addressed (robbench/jobs.py): its key hashes its kind, its spec and the code
version, and the jobs table of every results home stores the spec as JSON. These frozen
dataclasses are the one place a spec's fields, defaults and checks live; grids, the CLI and the
Python API build them, the job runners read them. The defaults are the named constants of
robbench/evaluate.py, robbench/certify.py and robbench/train.py, never restated.

`to_dict()` is the spec's content address and must not drift: it has exactly the keys the
untyped dicts had before these classes existed, so the same work keeps the same job key and the
jobs recorded in a results home still describe it. A field listed in `OMITTED_AT_DEFAULT` is left
out of the dict while it has its default (`force` was only written when set, and an evaluation's
base seed never was); any other field is always written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from robbench.certify import DEFAULT_STATES, DEFAULT_THRESHOLD, METHODS, validate_threshold
from robbench.errors import RobbenchError, unknown, validate_count, validate_seed
from robbench.evaluate import DEFAULT_BASE_SEED, DEFAULT_EPISODES
from robbench.threat import validate_eps
from robbench.train import DEFAULT_NUM_ENVS, DEFAULT_PRESET


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise RobbenchError(f"{what} must be a non-empty name, got {value!r}")
    return value


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise RobbenchError(f"{what} must be true or false, got {value!r}")
    return value


def _settings(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise RobbenchError(f"{what} must be a table of settings, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """What every spec shares: its kind, the dict form that is hashed and stored, the checks.

    `params` dicts are held as given (a frozen dataclass freezes its fields, not their contents):
    nothing mutates a spec's settings after it is built, and the dict form copies them."""

    KIND: ClassVar[str] = ""
    OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("force",)

    force: bool = False

    def __post_init__(self) -> None:
        _flag(self.force, "force")

    def to_dict(self) -> dict[str, Any]:
        """The content address: sorted into JSON it is hashed into the job key and stored."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in self.OMITTED_AT_DEFAULT and value == f.default:
                continue
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = dict(value)
            out[f.name] = value
        return out


@dataclass(frozen=True, kw_only=True)
class TrainSpec(JobSpec):
    """Train one agent: a trainer on an env with one seed at a budget preset (robbench/train.py)."""

    KIND: ClassVar[str] = "train"

    method: str
    env: str
    seed: int
    preset: str = DEFAULT_PRESET
    steps: int | None = None
    num_envs: int = DEFAULT_NUM_ENVS
    params: dict[str, Any] = field(default_factory=dict)
    retrain_stale: bool = False
    """Retrain a stored agent that today's trainer would train with other settings (`train.stale_settings`)."""

    OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("force", "retrain_stale")

    def __post_init__(self) -> None:
        super().__post_init__()
        _flag(self.retrain_stale, "retrain_stale")
        _name(self.method, "method")
        _name(self.env, "env")
        validate_seed(self.seed, "seed")
        _name(self.preset, "preset")
        if self.steps is not None:
            validate_count(self.steps, "steps")
        validate_count(self.num_envs, "num_envs")
        _settings(self.params, "params")


@dataclass(frozen=True, kw_only=True)
class AttackSpec(JobSpec):
    """An attack on one stored agent: what a fit and an evaluation share."""

    agent_id: str
    attack: str
    params: dict[str, Any] = field(default_factory=dict)
    eps: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _name(self.agent_id, "agent_id")
        _name(self.attack, "attack")
        _settings(self.params, "params")
        if self.eps is not None:
            validate_eps(self.eps, "eps")  # checked, not converted: 0 and 0.0 hash differently

    def resolve(self, store, episodes: int = DEFAULT_EPISODES, base_seed: int = DEFAULT_BASE_SEED):
        """(agent record, protocol, attack, cell key) of this attack on its agent, running nothing."""
        from robbench.evaluate import resolve_cell

        return resolve_cell(store, self.agent_id, self.attack, self.eps, episodes, base_seed, self.params)

    def fitted(self, store) -> bool:
        """Whether the attack's learned artifact for this agent is stored (True for one that fits nothing)."""
        from robbench.artifacts import artifact_exists

        record, _, attack, _ = self.resolve(store)
        return artifact_exists(store, record, attack)


@dataclass(frozen=True, kw_only=True)
class FitSpec(AttackSpec):
    """Fit one learned-attack member on one agent (its params hold only what the fit depends on)."""

    KIND: ClassVar[str] = "fit"


@dataclass(frozen=True, kw_only=True)
class EvaluateSpec(AttackSpec):
    """Evaluate one cell: an attack on an agent over `episodes` seeded episodes."""

    KIND: ClassVar[str] = "evaluate"
    OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("force", "base_seed")

    episodes: int = DEFAULT_EPISODES
    base_seed: int = DEFAULT_BASE_SEED
    fit: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        validate_count(self.episodes, "episodes")
        validate_seed(self.base_seed, "base_seed")
        _flag(self.fit, "fit")

    def resolve(self, store, episodes: int | None = None, base_seed: int | None = None):
        return super().resolve(store, self.episodes if episodes is None else episodes,
                               self.base_seed if base_seed is None else base_seed)


@dataclass(frozen=True, kw_only=True)
class CertifySpec(JobSpec):
    """Certify one agent with the given bound methods (robbench/certify.py)."""

    KIND: ClassVar[str] = "certify"

    agent_id: str
    methods: tuple[str, ...] = METHODS
    eps: float | None = None
    states: int = DEFAULT_STATES
    threshold: float = DEFAULT_THRESHOLD

    def __post_init__(self) -> None:
        super().__post_init__()
        _name(self.agent_id, "agent_id")
        object.__setattr__(self, "methods", tuple(self.methods))  # a list from JSON or a grid
        if not self.methods:
            raise RobbenchError(f"methods must name at least one bound method ({', '.join(METHODS)})")
        for m in self.methods:
            if m not in METHODS:
                raise unknown("bound method", m, METHODS)
        if self.eps is not None:
            validate_eps(self.eps, "eps")
        validate_threshold(self.threshold, "threshold")
        validate_count(self.states, "states")


SPECS: dict[str, type[JobSpec]] = {cls.KIND: cls for cls in (TrainSpec, FitSpec, EvaluateSpec, CertifySpec)}


def spec_from_dict(kind: str, data: dict[str, Any]) -> JobSpec:
    """The typed spec of a stored or hand-written dict; an unknown or missing key is one line."""
    if kind not in SPECS:
        raise unknown("job kind", kind, SPECS)
    cls = SPECS[kind]
    if not isinstance(data, dict):
        raise RobbenchError(f"a {kind} job spec is a table of keys, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    extra = sorted(set(data) - set(names))
    if extra:
        raise RobbenchError(f"{kind} job: unknown key {extra[0]!r}; valid keys: {', '.join(names)}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in data]
    if missing:
        raise RobbenchError(f"{kind} job: missing key {missing[0]!r}")
    return cls(**data)


def as_spec(kind: str, spec: JobSpec | dict[str, Any]) -> JobSpec:
    """A typed spec of `kind`, from a typed spec (checked to be of that kind) or its dict form."""
    if isinstance(spec, JobSpec):
        if spec.KIND != kind:
            raise RobbenchError(f"a {spec.KIND} spec cannot run as a {kind} job")
        return spec
    return spec_from_dict(kind, spec)
