"""Rows of the results database: how one is checked and named, the keys and JSON robbench writes, and
the typed records the store hands out.

A home's database is treated as input that may be damaged or hand-edited (homes are exchanged with
`robbench merge`): every row read back is checked against its column types and JSON shape
(`row_dict`), so a bad row is one line naming its table and key, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robbench.errors import RobbenchError
from robbench.store.schema import JSON_COLUMNS, ROW_KEYS, all_columns


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def row_name(table: str, row: Any) -> str:
    """`cell_key='3f0c…'`: the key columns of a row, for error messages."""
    keys = ROW_KEYS.get(table, ())
    try:
        parts = [f"{k}={_shown(row[k], 30)}" for k in keys]
    except (IndexError, KeyError):
        parts = []
    return ", ".join(parts) or "?"


def row_dict(table: str, row: Any, where: str) -> dict[str, Any]:
    """A row of a robbench table as a dict, JSON columns parsed, after checking every column's type.

    A hand-edited or damaged row (text in a number column, invalid JSON, a cell's protocol that is not
    a protocol, an agent path outside the home) raises one line naming `where`, the table, the row's
    key and the column."""
    columns = all_columns()[table]
    d = dict(row)
    name = row_name(table, d)

    def bad(column: str, problem: str) -> RobbenchError:
        return RobbenchError(f"{where}: table {table}, row {name}: column {column!r} {problem}; "
                             "fix or delete that row")

    for column, kind in columns.items():
        if column not in d:
            raise bad(column, "is missing")
        value = d[column]
        if value is None:
            raise bad(column, "is NULL")
        if kind == "TEXT" and not isinstance(value, str):
            raise bad(column, f"holds {type(value).__name__} {_shown(value)}, expected text")
        if kind == "INTEGER" and (not isinstance(value, int) or isinstance(value, bool)):
            raise bad(column, f"holds {type(value).__name__} {_shown(value)}, expected an integer")
        if kind == "REAL" and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise bad(column, f"holds {type(value).__name__} {_shown(value)}, expected a number")
    for column in JSON_COLUMNS.get(table, ()):
        try:
            value = json.loads(d[column])
        except (json.JSONDecodeError, RecursionError) as exc:
            raise bad(column, f"is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from None
        if not isinstance(value, dict):
            raise bad(column, f"is JSON {type(value).__name__}, expected a JSON object")
        d[column] = value
    if table == "cells":
        problem = _protocol_problem(d["protocol"])
        if problem:
            raise bad("protocol", problem)
    if table in ("agents", "attack_artifacts"):
        rel = Path(d["path"])
        if not d["path"] or rel.is_absolute() or ".." in rel.parts or "\0" in d["path"]:
            raise bad("path", f"{_shown(d['path'])} is not a path inside the home")
    return d


def _protocol_problem(proto: dict[str, Any]) -> str | None:
    """Why a cell's protocol is not an evaluation protocol (robbench.evaluate.Protocol), or None."""
    from dataclasses import fields

    from robbench.evaluate import Protocol

    kinds = {f.name: str(f.type) for f in fields(Protocol)}
    unknown_keys = sorted(set(proto) - set(kinds))
    if unknown_keys:
        return f"has unknown key{'s' if len(unknown_keys) > 1 else ''} {', '.join(unknown_keys)}"
    for key, kind in kinds.items():
        if key not in proto:
            return f"lacks {key!r}"
        v = proto[key]
        ok = {"bool": isinstance(v, bool), "int": isinstance(v, int) and not isinstance(v, bool),
              "float": isinstance(v, (int, float)) and not isinstance(v, bool)}.get(kind, True)
        if not ok:
            return f"has {key}={_shown(v)}, expected {_KIND_WORDS.get(kind, kind)}"
    return None


_KIND_WORDS = {"float": "a number", "int": "an integer", "bool": "true or false"}


def canonical_json(obj: Any) -> str:
    """Sorted, compact JSON; NaN/inf become null (SQLite's JSON functions reject them)."""
    return json.dumps(_finite(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def cell_key(agent_id: str, agent_sha256: str, attack: str, attack_config: dict, protocol: dict) -> str:
    payload = canonical_json(
        {"agent": agent_id, "agent_sha256": agent_sha256, "attack": attack, "attack_config": attack_config,
         "protocol": protocol}
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass(frozen=True)
class AgentRecord:
    """An indexed checkpoint; `path` is absolute (under the home), `meta` the checkpoint's header."""

    agent_id: str
    method: str
    env: str
    seed: int
    preset: str
    budget: str
    steps: int
    path: Path
    sha256: str
    meta: dict[str, Any]


@dataclass(frozen=True)
class ArtifactRecord:
    """A fitted learned attack (robbench/artifacts.py): keyed by victim, attack and fit config; `path`
    is absolute (under the home), `meta` the file's header (fit statistics, wall time, machine)."""

    artifact_key: str
    agent_id: str
    agent_sha256: str
    attack: str
    fit_config: dict[str, Any]
    path: Path
    sha256: str
    meta: dict[str, Any]
    created: str


@dataclass(frozen=True)
class JobRecord:
    """One line of a grid's jobs log (robbench/jobs.py): the job's last outcome. `status` is `done`,
    `failed` or `skipped`; `info` holds the summary, wall time, executor and a crash's traceback."""

    job_key: str
    kind: str
    label: str
    spec: dict[str, Any]
    status: str
    error: str
    info: dict[str, Any]
    updated: str = ""  # set by the store when it writes the row
