"""Board entries as files: `robbench submit` writes one, `robbench report --entries DIR` ranks them.

RobustBench's board is generated from one JSON record per model; a robbench entry is the same idea
with the evidence inside it. One file holds everything a board row is computed from: the agent's
provenance (library, format, sha256 of every input file, its observation and action conventions),
the protocol, the suite it was evaluated under, every cell's attack config with its **per-episode**
returns, and the agent's certificates. A report that reads entries recomputes every aggregate
(mean, std, min, max) from the episodes and refuses an entry whose stored aggregates disagree, so a
hand-edited mean cannot enter a board; rows read from entries are flagged *submitted* (evaluated
elsewhere, not re-run by this report).

An entry file is untrusted input: it is read as JSON of bounded size, every field is type-checked,
every number must be finite, and any problem is one line naming the file and the field.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robbench.errors import RobbenchError

FORMAT = "robbench-entry"
VERSION = 1
MAX_ENTRY_BYTES = 64 << 20  # 50 episodes × ~40 cells is ~100 kB; far larger is not an entry
AGENT_KEYS = ("agent_id", "method", "env", "seed", "preset", "budget", "steps", "sha256")
CONVENTION_KEYS = ("obs_norm", "action_clip", "activation", "squash", "hidden", "value_hidden", "has_critic",
                   "action_low", "action_high", "sigma_source")
"""The agent metadata that says how it sees and acts (docs/bring-your-own-agent.md), carried by an entry."""
CELL_KEYS = ("cell_key", "attack", "attack_config", "protocol", "eps", "episodes", "mean", "std", "min", "max",
             "env_steps", "wall_s", "info", "returns")
CERT_KEYS = ("agent_id", "agent_sha256", "method", "eps", "states", "threshold", "mean_dev", "max_dev",
             "mean_sum_u2_sigma2", "max_sum_u2_sigma2", "frac_below", "seconds_per_1000",
             "soundness_checked_points", "info")


# ------------------------------------------------------------------------------------------ write
def entry_of(store, agent_id: str) -> dict[str, Any]:
    """The board entry of one agent of `store`: its record, every cell of its current checkpoint
    with per-episode returns, and its certificates."""
    from robbench import provenance
    from robbench.suite import get_suite

    rec = store.get_agent(agent_id)
    cells = []
    for cell in store.cells():
        if cell["agent_id"] != agent_id or cell["agent_sha256"] != rec.sha256:
            continue  # a retrained checkpoint's old results are not this agent's
        eps = store.episodes(cell["cell_key"])
        cells.append({**{k: cell[k] for k in CELL_KEYS if k != "returns"},
                      "returns": [[int(e["idx"]), int(e["seed"]), float(e["ret"]), int(e["length"])] for e in eps]})
    if not cells:
        raise RobbenchError(f"agent {agent_id!r} has no results in this home: evaluate it first "
                            f"(robbench evaluate --agents {agent_id} --attacks standard)")
    certs = [{k: c[k] for k in CERT_KEYS} for c in store.certificates()
             if c["agent_id"] == agent_id and c["agent_sha256"] == rec.sha256]
    meta = rec.meta
    return {
        "format": FORMAT, "version": VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "code_version": provenance.code_version(),
        "suite": get_suite().id,
        "agent": {**{k: getattr(rec, k) for k in AGENT_KEYS},
                  "provenance": meta.get("provenance", {}),
                  "conventions": {k: meta[k] for k in CONVENTION_KEYS if k in meta},
                  "config": meta.get("config") or {}},
        "cells": cells, "certificates": certs,
    }


def write_entry(store, agent_id: str, out: str | Path) -> dict[str, Any]:
    """Write `entry_of(store, agent_id)` to `out` atomically (a temporary file renamed into place)."""
    entry = entry_of(store, agent_id)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(entry, f, indent=1, sort_keys=True, allow_nan=False)
            f.write("\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return entry


# ------------------------------------------------------------------------------------------- read
@dataclass(frozen=True)
class Submission:
    path: Path
    agent: Any  # robbench.store.AgentRecord, its `path` the entry file
    cells: list[dict[str, Any]]
    episodes: dict[str, list[dict[str, Any]]]
    certificates: list[dict[str, Any]]


class _Checker:
    def __init__(self, path: Path):
        self.where = f"entry {str(path)!r}"

    def fail(self, what: str) -> RobbenchError:
        return RobbenchError(f"{self.where}: {what}")

    def obj(self, v: Any, name: str, keys: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.fail(f"{name} must be an object")
        missing = [k for k in keys if k not in v]
        if missing:
            raise self.fail(f"{name} lacks {missing[0]!r}")
        return v

    def num(self, v: Any, name: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.fail(f"{name} must be a finite number, got {v!r}")
        return float(v)

    def int_(self, v: Any, name: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise self.fail(f"{name} must be an integer ≥ 0, got {v!r}")
        return v

    def str_(self, v: Any, name: str) -> str:
        if not isinstance(v, str) or not v or len(v) > 500:
            raise self.fail(f"{name} must be a non-empty string, got {v!r}")
        return v


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def read_entry(path: str | Path) -> Submission:
    """One entry file, validated; aggregates recomputed from the episodes and compared."""
    import numpy as np

    from robbench.envs import get_env_spec
    from robbench.store import AgentRecord, cell_key
    from robbench.store.rows import _protocol_problem

    path = Path(path)
    c = _Checker(path)
    if not path.is_file():
        raise c.fail("does not exist" if not path.exists() else "is not a file")
    if path.stat().st_size > MAX_ENTRY_BYTES:
        raise c.fail(f"is larger than {MAX_ENTRY_BYTES >> 20} MiB")
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda s: float("nan"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise c.fail(f"is not valid JSON ({' '.join(str(exc).split())[:120]})") from None
    c.obj(data, "the file", ("format", "version", "agent", "cells"))
    if data["format"] != FORMAT or data["version"] != VERSION:
        raise c.fail(f"is not a {FORMAT} version {VERSION} file (format {data['format']!r}, version "
                     f"{data['version']!r}); write it with `robbench submit`")
    a = c.obj(data["agent"], "agent", AGENT_KEYS)
    agent_id = c.str_(a["agent_id"], "agent.agent_id")
    env = c.str_(a["env"], "agent.env")
    try:
        get_env_spec(env)
    except RobbenchError as exc:  # unknown env: the same line, naming the file
        raise c.fail(str(exc)) from None
    sha = c.str_(a["sha256"], "agent.sha256")
    if len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha):
        raise c.fail(f"agent.sha256 must be 64 hex digits, got {sha!r}")
    provenance = a.get("provenance", {})
    conventions = a.get("conventions", {})
    config = a.get("config", {})  # the training config (absent in entries written before it was carried)
    if not isinstance(provenance, dict) or not isinstance(conventions, dict) or not isinstance(config, dict):
        raise c.fail("agent.provenance, agent.conventions and agent.config must be objects")
    expected = f"{env}/{a['method']}/{a['preset']}/{a['seed']}"
    if agent_id != expected:
        raise c.fail(f"agent.agent_id {agent_id!r} is not <env>/<method>/<preset>/<seed> of its fields ({expected!r})")
    agent = AgentRecord(
        agent_id, c.str_(a["method"], "agent.method"), env, c.int_(a["seed"], "agent.seed"),
        c.str_(a["preset"], "agent.preset"), c.str_(a["budget"], "agent.budget"), c.int_(a["steps"], "agent.steps"),
        path.resolve(), sha, {**{k: conventions[k] for k in CONVENTION_KEYS if k in conventions}, "config": config,
                              "provenance": provenance,
                              "submitted": {"file": path.name, "suite": data.get("suite"), "created": data.get("created")}})
    if not isinstance(data["cells"], list) or not data["cells"]:
        raise c.fail("cells must be a non-empty list")
    cells, episodes = [], {}
    for i, raw in enumerate(data["cells"]):
        name = f"cells[{i}]"
        cell = c.obj(raw, name, CELL_KEYS)
        attack = c.str_(cell["attack"], f"{name}.attack")
        for key in ("attack_config", "protocol", "info"):
            if not isinstance(cell[key], dict):
                raise c.fail(f"{name}.{key} must be an object")
        proto = cell["protocol"]
        problem = _protocol_problem(proto)
        if problem:
            raise c.fail(f"{name}.protocol {problem}")
        eps = c.num(cell["eps"], f"{name}.eps")
        if not _close(eps, c.num(proto["eps"], f"{name}.protocol.eps")):
            raise c.fail(f"{name}: eps {eps} differs from its protocol's {proto['eps']}")
        returns = cell["returns"]
        if not isinstance(returns, list) or not returns:
            raise c.fail(f"{name}.returns must be a non-empty list of [index, seed, return, length]")
        rows = []
        for j, ep in enumerate(returns):
            if not isinstance(ep, list) or len(ep) != 4:
                raise c.fail(f"{name}.returns[{j}] must be [index, seed, return, length]")
            rows.append({"idx": c.int_(ep[0], f"{name}.returns[{j}][0]"), "seed": c.int_(ep[1], f"{name}.returns[{j}][1]"),
                         "ret": c.num(ep[2], f"{name}.returns[{j}][2]"), "length": c.int_(ep[3], f"{name}.returns[{j}][3]")})
        if [r["idx"] for r in rows] != list(range(len(rows))):
            raise c.fail(f"{name}.returns must list episodes 0, 1, … in order")
        n = c.int_(cell["episodes"], f"{name}.episodes")
        if n != len(rows) or c.int_(proto["episodes"], f"{name}.protocol.episodes") != n:
            raise c.fail(f"{name} declares {n} episodes (protocol {proto['episodes']}) but lists {len(rows)}")
        base = c.int_(proto["base_seed"], f"{name}.protocol.base_seed")
        if [r["seed"] for r in rows] != [base + r["idx"] for r in rows]:
            raise c.fail(f"{name}: episode seeds are not the protocol's {base} + index")
        values = np.asarray([r["ret"] for r in rows])
        recomputed = {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
                      "max": float(values.max())}
        for key, value in recomputed.items():
            if not _close(c.num(cell[key], f"{name}.{key}"), value):
                raise c.fail(f"{name} ({attack}): stored {key} {cell[key]} is not its episodes' {value:.6g}")
        key = cell_key(agent_id, sha, attack, cell["attack_config"], proto)
        if cell["cell_key"] != key:
            raise c.fail(f"{name} ({attack}): cell_key does not match its agent, attack config and protocol")
        cells.append({"cell_key": key, "agent_id": agent_id, "agent_sha256": sha, "env": env, "attack": attack,
                      "attack_config": cell["attack_config"], "protocol": proto, "eps": eps, "episodes": n,
                      **recomputed, "env_steps": c.int_(cell["env_steps"], f"{name}.env_steps"),
                      "wall_s": c.num(cell["wall_s"], f"{name}.wall_s"), "info": cell["info"]})
        episodes[key] = rows
    if len({x["cell_key"] for x in cells}) != len(cells):
        raise c.fail("lists one cell twice")
    certs = data.get("certificates", [])
    if not isinstance(certs, list):
        raise c.fail("certificates must be a list")
    checked = []
    for i, raw in enumerate(certs):
        cert = c.obj(raw, f"certificates[{i}]", CERT_KEYS)
        if cert["agent_id"] != agent_id or cert["agent_sha256"] != sha:
            raise c.fail(f"certificates[{i}] is for another agent or checkpoint")
        for key in ("eps", "threshold", "mean_dev", "max_dev"):
            c.num(cert[key], f"certificates[{i}].{key}")
        c.str_(cert["method"], f"certificates[{i}].method")
        c.int_(cert["states"], f"certificates[{i}].states")
        checked.append(dict(cert))
    return Submission(path, agent, cells, episodes, checked)


def read_entries(folder: str | Path) -> list[Submission]:
    """Every `*.json` entry in `folder` (sorted by name); two entries of one agent id are refused."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RobbenchError(f"--entries {str(folder)!r} is not a folder of entry files (robbench submit writes them)")
    subs = [read_entry(p) for p in sorted(folder.glob("*.json"))]
    if not subs:
        raise RobbenchError(f"--entries {str(folder)!r} holds no .json entry files")
    seen: dict[str, Path] = {}
    for s in subs:
        if s.agent.agent_id in seen:
            raise RobbenchError(f"entries {seen[s.agent.agent_id].name!r} and {s.path.name!r} are both agent "
                                f"{s.agent.agent_id!r}; keep one")
        seen[s.agent.agent_id] = s.path
    return subs


class WithEntries:
    """A results store seen together with submitted entries: what `build_boards` reads (agents, cells,
    episodes, certificates). An entry for an agent id the home also has is refused unless it is the
    same checkpoint (same sha256), in which case the home's own results are used."""

    def __init__(self, store, submissions: list[Submission]):
        self.store = store
        own = {a.agent_id: a for a in store.agents()}
        self.subs = []
        for s in submissions:
            mine = own.get(s.agent.agent_id)
            if mine is None:
                self.subs.append(s)
            elif mine.sha256 != s.agent.sha256:
                raise RobbenchError(f"entry {s.path.name!r} is agent {s.agent.agent_id!r}, which this home also has "
                                    "as a different checkpoint; rename one of them")
        self._episodes = {k: v for s in self.subs for k, v in s.episodes.items()}

    def agents(self) -> list:
        return [*self.store.agents(), *(s.agent for s in self.subs)]

    def cells(self) -> list[dict[str, Any]]:
        return [*self.store.cells(), *(c for s in self.subs for c in s.cells)]

    def episodes(self, key: str) -> list[dict[str, Any]]:
        return self._episodes[key] if key in self._episodes else self.store.episodes(key)

    def certificates(self) -> list[dict[str, Any]]:
        return [*self.store.certificates(), *(c for s in self.subs for c in s.certificates)]
