"""The results store: one SQLite database (plus agent checkpoint files) under a results home.

Home resolution: `--home`, else `$ROBBENCH_HOME`, else `./robbench-results`.

Layout::

    <home>/results.sqlite                       agents, cells, episodes, certificates
    <home>/agents/<env>/<method>/<budget>/seed<k>.safetensors

A *cell* is one (agent, attack config, protocol) evaluation. Its key is a hash of the agent id and
checkpoint hash, the attack's name and parameters, and the protocol (ε, episodes, seeds, ...), so
re-running a finished cell is a no-op unless forced. A cell and all its per-episode rows are written
in one transaction: a process killed at any moment leaves either the whole cell or nothing.

A home's database is treated as input that may be damaged or hand-edited (homes are exchanged with
`robbench merge`): opening one checks it is a robbench store (an empty or foreign database, or a table
missing columns, is a one-line error), and every row read back is checked against its column types
and JSON shape (`row_dict`), so a bad row is one line naming its table and key, never a traceback.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robbench.errors import RobbenchError, io_error

DB_NAME = "results.sqlite"
DEFAULT_HOME = "robbench-results"

SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    agent_id   TEXT PRIMARY KEY,
    method     TEXT NOT NULL,
    env        TEXT NOT NULL,
    seed       INTEGER NOT NULL,
    preset     TEXT NOT NULL,
    budget     TEXT NOT NULL,
    steps      INTEGER NOT NULL,
    path       TEXT NOT NULL,   -- relative to the home
    sha256     TEXT NOT NULL,
    meta       TEXT NOT NULL,   -- JSON: config + provenance, as in the checkpoint
    created    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    cell_key      TEXT PRIMARY KEY,
    agent_id      TEXT NOT NULL,
    agent_sha256  TEXT NOT NULL,
    env           TEXT NOT NULL,
    attack        TEXT NOT NULL,
    attack_config TEXT NOT NULL,  -- JSON
    protocol      TEXT NOT NULL,  -- JSON
    eps           REAL NOT NULL,
    episodes      INTEGER NOT NULL,
    mean          REAL NOT NULL,
    std           REAL NOT NULL,
    min           REAL NOT NULL,
    max           REAL NOT NULL,
    env_steps     INTEGER NOT NULL,
    wall_s        REAL NOT NULL,
    info          TEXT NOT NULL,  -- JSON: code version, machine, attack diagnostics
    created       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS episodes (
    cell_key  TEXT NOT NULL REFERENCES cells(cell_key) ON DELETE CASCADE,
    idx       INTEGER NOT NULL,
    seed      INTEGER NOT NULL,
    ret       REAL NOT NULL,
    length    INTEGER NOT NULL,
    PRIMARY KEY (cell_key, idx)
);
CREATE INDEX IF NOT EXISTS cells_by_agent ON cells(agent_id);
CREATE TABLE IF NOT EXISTS certificates (
    agent_id                 TEXT NOT NULL,
    agent_sha256             TEXT NOT NULL,
    method                   TEXT NOT NULL,  -- ibp, crown-ibp or crown
    eps                      REAL NOT NULL,
    states                   INTEGER NOT NULL,
    threshold                REAL NOT NULL,  -- on max_i u_i, in action units
    mean_dev                 REAL NOT NULL,  -- mean over states of the certified max_i |μ_i(ŝ) − μ_i(s)|
    max_dev                  REAL NOT NULL,
    mean_sum_u2_sigma2       REAL NOT NULL,  -- mean over states of Σ_i u_i²/σ_i² (SA-PPO style)
    max_sum_u2_sigma2        REAL NOT NULL,
    frac_below               REAL NOT NULL,  -- fraction of states with max_i u_i <= threshold
    seconds_per_1000         REAL NOT NULL,  -- bound computation only
    soundness_checked_points INTEGER NOT NULL,
    info                     TEXT NOT NULL,  -- JSON: state sampling, soundness check, CROWN vs IBP, ...
    created                  TEXT NOT NULL,
    UNIQUE (agent_id, agent_sha256, method, eps, states, threshold)
);
"""

# Fitted learned attacks (robbench/artifacts.py), created when the first one is stored.
ARTIFACT_SCHEMA = """
CREATE TABLE IF NOT EXISTS attack_artifacts (
    artifact_key  TEXT PRIMARY KEY,
    agent_id      TEXT NOT NULL,
    agent_sha256  TEXT NOT NULL,
    attack        TEXT NOT NULL,
    fit_config    TEXT NOT NULL,  -- JSON
    path          TEXT NOT NULL,  -- relative to the home
    sha256        TEXT NOT NULL,
    meta          TEXT NOT NULL,  -- JSON: fit statistics, wall time, code version
    created       TEXT NOT NULL
);
"""


def resolve_home(home: str | os.PathLike | None, must_exist: bool = False) -> Path:
    """`--home`, else `$ROBBENCH_HOME`, else `./robbench-results`."""
    path = Path(home or os.environ.get("ROBBENCH_HOME") or DEFAULT_HOME).expanduser()
    if must_exist and not (path / DB_NAME).is_file():
        raise RobbenchError(f"results home {str(path)!r} does not exist or holds no results (train an agent first)")
    if must_exist and _empty_file(path / DB_NAME):
        raise _empty_database(path)
    return path


def _empty_file(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size == 0
    except OSError:
        return False


def _empty_database(home: Path) -> RobbenchError:
    return RobbenchError(f"results home {str(home)!r} is damaged: its database {DB_NAME} is empty (0 bytes), not a "
                         "robbench results store; restore it from a backup or pass another --home")


# ------------------------------------------------------------------------------ schema and rows
#: Columns holding JSON objects (parsed by `row_dict`).
JSON_COLUMNS = {
    "agents": ("meta",), "cells": ("attack_config", "protocol", "info"), "certificates": ("info",),
    "attack_artifacts": ("fit_config", "meta"),
}
#: The columns that name a row in error messages.
ROW_KEYS = {
    "agents": ("agent_id",), "cells": ("cell_key",), "episodes": ("cell_key", "idx"),
    "certificates": ("agent_id", "method", "eps", "states", "threshold"), "attack_artifacts": ("artifact_key",),
}
#: Tables every robbench store has (the rest of SCHEMA, and other modules' tables, are created on demand).
REQUIRED_TABLES = ("agents", "cells", "episodes")


@functools.cache
def schema_columns(schema: str = SCHEMA) -> dict[str, dict[str, str]]:
    """`{table: {column: declared type}}` of a `CREATE TABLE` script, in column order."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(schema)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: {r[1]: r[2].upper() for r in conn.execute(f'PRAGMA table_info("{t}")')} for t in tables}
    finally:
        conn.close()


def _all_columns() -> dict[str, dict[str, str]]:
    return {**schema_columns(SCHEMA), **schema_columns(ARTIFACT_SCHEMA)}


def check_schema(conn: sqlite3.Connection, where: str, tables: tuple[str, ...] | None = None,
                 required: tuple[str, ...] = REQUIRED_TABLES) -> set[str]:
    """Check that `conn` holds a robbench store: every `required` table, and every present table of
    `tables` (default: every robbench table) with all its columns. Returns the tables present.

    Raises a one-line RobbenchError (`where` names the database) otherwise; a sqlite error while
    reading the schema (garbage bytes, a damaged file) propagates for the caller to word."""
    expected = _all_columns()
    found = {name: kind for name, kind in conn.execute("SELECT name, type FROM sqlite_master")}
    if not any(t in found for t in expected):
        what = "an empty database" if not found else "a database without robbench tables"
        raise RobbenchError(f"{where} is not a robbench results store ({what})")
    for table in tables or tuple(expected):
        if table not in found:
            if table in required:
                raise RobbenchError(f"{where} is not a robbench results store (no table {table!r})")
            continue
        if found[table] != "table":
            raise RobbenchError(f"{where} is not a robbench results store ({table!r} is a {found[table]}, not a table)")
        have = {r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')}
        missing = [c for c in expected[table] if c not in have]
        if missing:
            raise RobbenchError(f"{where} is not a robbench results store (table {table!r} lacks column"
                                f"{'s' if len(missing) > 1 else ''} {', '.join(missing)})")
    return {t for t in found if found[t] == "table"}


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
    columns = _all_columns()[table]
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


@dataclass
class AgentRecord:
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


class ResultsStore:
    """Access to one results home. Use as a context manager."""

    def __init__(self, home: str | os.PathLike, readonly: bool = False):
        """`readonly=True` (reports, listings) only reads, so it also works on a home it cannot write."""
        self.home = Path(home)
        self.readonly = readonly
        db = self.home / DB_NAME
        where = f"the database of results home {str(self.home)!r}"
        try:
            # A zero-length database is an index lost (truncated, a failed copy): never re-initialise it over
            # the checkpoints it indexed. Alone in its directory it may be a home another process creates now.
            if _empty_file(db) and (readonly or any(p.name not in _DB_FILES for p in self.home.iterdir())):
                raise _empty_database(self.home)
            if readonly:
                self.conn = _connect_readonly(db)
                try:
                    check_schema(self.conn, where)
                except BaseException:
                    self.conn.close()
                    raise
            else:
                self.home.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(db, timeout=60.0, isolation_level=None)
                try:
                    self.conn.execute("PRAGMA journal_mode=WAL")
                    self.conn.execute("PRAGMA synchronous=FULL")
                    self.conn.execute("PRAGMA foreign_keys=ON")
                    tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master")}
                    if tables and "agents" not in tables:  # never add robbench tables to another program's database
                        raise RobbenchError(f"{where} is not a robbench results store (a database without "
                                            "robbench tables)")
                    self.conn.executescript(SCHEMA)
                    check_schema(self.conn, where)
                except BaseException:
                    self.conn.close()
                    raise
        except (OSError, sqlite3.Error) as exc:
            reason = " ".join(str(exc).split())
            if not readonly and (getattr(exc, "sqlite_errorcode", 0) & 0xFF == 8
                                 or getattr(exc, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS)):
                raise RobbenchError(f"cannot open results home {str(self.home)!r} for writing: it is read-only "
                                    f"({reason}); fix its permissions or pass a writable --home") from None
            if isinstance(exc, OSError) or getattr(exc, "sqlite_errorcode", 0) & 0xFF in (10, 13):  # IOERR, FULL
                reason = str(io_error(exc, getattr(exc, "filename", None) or self.home / DB_NAME))
            raise RobbenchError(f"cannot open results home {str(self.home)!r}: {reason}") from None
        self.conn.row_factory = sqlite3.Row

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------------------------------ agents
    def agent_path(self, env: str, method: str, budget: str, seed: int) -> Path:
        return self.home / "agents" / env / method / budget / f"seed{seed}.safetensors"

    def register_agent(self, meta: dict[str, Any], path: Path) -> AgentRecord:
        """Index a checkpoint already written (atomically) under the home."""
        from robbench.checkpoint import file_sha256

        rec = AgentRecord(
            agent_id=meta["agent_id"], method=meta["method"], env=meta["env"], seed=int(meta["seed"]),
            preset=meta["preset"], budget=meta["budget"], steps=int(meta["steps"]), path=Path(path),
            sha256=file_sha256(path), meta=meta,
        )
        rel = str(Path(path).resolve().relative_to(self.home.resolve()))
        with self._tx():
            self.conn.execute(
                "INSERT OR REPLACE INTO agents VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (rec.agent_id, rec.method, rec.env, rec.seed, rec.preset, rec.budget, rec.steps, rel,
                 rec.sha256, canonical_json(meta), now()),
            )
        return rec

    def agents(self) -> list[AgentRecord]:
        rows = self.conn.execute("SELECT * FROM agents ORDER BY env, method, budget, seed").fetchall()
        return [self._agent(r) for r in rows]

    def get_agent(self, agent_id: str) -> AgentRecord:
        row = self.conn.execute("SELECT * FROM agents WHERE agent_id = ?", (agent_id,)).fetchone()
        if row is None:
            known = [r["agent_id"] for r in self.conn.execute("SELECT agent_id FROM agents")]
            shown = ", ".join(sorted(known)[:20]) or "none (train one with `robbench train`)"
            raise RobbenchError(f"unknown agent {agent_id!r} in {str(self.home)!r}; known agents: {shown}")
        return self._agent(row)

    def load_agent(self, agent_id: str):
        """Load an agent by id, checking the file still matches the hash recorded at training."""
        from robbench.checkpoint import file_sha256, load_agent_file

        rec = self.get_agent(agent_id)
        if not rec.path.is_file():
            raise RobbenchError(f"checkpoint of agent {agent_id!r} is missing ({str(rec.path)!r})")
        if file_sha256(rec.path) != rec.sha256:
            raise RobbenchError(f"checkpoint of agent {agent_id!r} changed since training (sha256 mismatch)")
        return load_agent_file(rec.path, expected_env=rec.env)

    def _agent(self, row: sqlite3.Row) -> AgentRecord:
        row = self._row("agents", row)
        return AgentRecord(
            agent_id=row["agent_id"], method=row["method"], env=row["env"], seed=row["seed"],
            preset=row["preset"], budget=row["budget"], steps=row["steps"], path=self.home / row["path"],
            sha256=row["sha256"], meta=row["meta"],
        )

    # ------------------------------------------------------------------------------------- cells
    def has_cell(self, key: str) -> bool:
        return self.conn.execute("SELECT 1 FROM cells WHERE cell_key = ?", (key,)).fetchone() is not None

    def write_cell(self, cell: dict[str, Any], episodes: list[tuple[int, int, float, int]]) -> None:
        """Write one cell and its per-episode rows (idx, seed, return, length) atomically.

        An existing cell with the same key is replaced inside the same transaction (`--force`).
        """
        with self._tx():
            self.conn.execute("DELETE FROM episodes WHERE cell_key = ?", (cell["cell_key"],))
            self.conn.execute("DELETE FROM cells WHERE cell_key = ?", (cell["cell_key"],))
            self.conn.execute(
                "INSERT INTO cells VALUES (:cell_key,:agent_id,:agent_sha256,:env,:attack,:attack_config,"
                ":protocol,:eps,:episodes,:mean,:std,:min,:max,:env_steps,:wall_s,:info,:created)",
                {**cell, "attack_config": canonical_json(cell["attack_config"]),
                 "protocol": canonical_json(cell["protocol"]), "info": canonical_json(cell["info"]),
                 "created": now()},
            )
            self.conn.executemany(
                "INSERT INTO episodes VALUES (?,?,?,?,?)", [(cell["cell_key"], *ep) for ep in episodes]
            )

    def cells(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM cells ORDER BY env, agent_id, attack").fetchall()
        return [self._row("cells", r) for r in rows]

    def episodes(self, key: str) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM episodes WHERE cell_key = ? ORDER BY idx", (key,)).fetchall()
        return [self._row("episodes", r) for r in rows]

    # ------------------------------------------------------------------------------ certificates
    CERTIFICATE_FIELDS = (
        "agent_id", "agent_sha256", "method", "eps", "states", "threshold", "mean_dev", "max_dev",
        "mean_sum_u2_sigma2", "max_sum_u2_sigma2", "frac_below", "seconds_per_1000",
        "soundness_checked_points", "info",
    )

    def write_certificate(self, cert: dict[str, Any]) -> None:
        """Write one certificate row (robbench/certify.py) in one transaction.

        A row with the same (agent_id, agent_sha256, method, eps, states, threshold) is replaced
        (`--force`). Only bounds that passed certify's soundness check may be written.
        """
        missing = [k for k in self.CERTIFICATE_FIELDS if k not in cert]
        if missing:
            raise ValueError(f"certificate lacks fields {missing}")
        row = {k: cert[k] for k in self.CERTIFICATE_FIELDS}
        row["info"] = canonical_json(row["info"])
        with self._tx():
            self.conn.execute(
                "INSERT OR REPLACE INTO certificates VALUES (:agent_id,:agent_sha256,:method,:eps,:states,"
                ":threshold,:mean_dev,:max_dev,:mean_sum_u2_sigma2,:max_sum_u2_sigma2,:frac_below,"
                ":seconds_per_1000,:soundness_checked_points,:info,:created)",
                {**row, "created": now()},
            )

    def certificates(self) -> list[dict[str, Any]]:
        """Every stored certificate, `info` parsed, ordered by agent, method, ε, states, threshold."""
        rows = self.conn.execute(
            "SELECT * FROM certificates ORDER BY agent_id, method, eps, states, threshold"
        ).fetchall()
        return [self._row("certificates", r) for r in rows]

    # -------------------------------------------------------------------------------- internals
    def ensure_table(self, schema: str) -> None:
        """Create the tables of a `CREATE TABLE IF NOT EXISTS` script that are missing, in one transaction.

        A full disk or a read-only home is then a one-line RobbenchError and never half a schema;
        when every table exists nothing is written (so this also works on a read-only store)."""
        wanted = schema_columns(schema)
        have = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if set(wanted) <= have:
            return
        statements, buf = [], ""
        for line in schema.splitlines(keepends=True):
            buf += line
            if sqlite3.complete_statement(buf):
                statements.append(buf)
                buf = ""
        with self._tx():
            for statement in statements:
                self.conn.execute(statement)

    def _row(self, table: str, row: sqlite3.Row) -> dict[str, Any]:
        return row_dict(table, row, f"results database {str(self.home / DB_NAME)!r}")

    def _tx(self):
        return _Transaction(self.conn, self.home / DB_NAME)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception (incl. KeyboardInterrupt)."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None = None):
        self.conn = conn
        self.path = path or Path(DB_NAME)

    def __enter__(self) -> None:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise RobbenchError(f"results database is not writable: {_db_reason(exc, self.path)}") from None

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error as err:
                self._rollback()
                raise RobbenchError(f"could not commit results: {_db_reason(err, self.path)}") from None
        else:
            self._rollback()
            # disk full, read-only or I/O error in the middle of a write: one line (a bug stays a bug)
            if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", 0) & 0xFF in (8, 10, 13):
                raise RobbenchError(f"could not write results: {_db_reason(exc, self.path)}") from None

    def _rollback(self) -> None:
        """ROLLBACK unless SQLite already rolled back itself (it does on a full disk or an I/O error)."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


def _db_reason(err: sqlite3.Error, path: Path) -> str:
    """`database or disk is full` → the readable form robbench uses for every full disk."""
    if getattr(err, "sqlite_errorcode", 0) & 0xFF in (8, 10, 13):  # SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL
        return str(io_error(err, path))
    return " ".join(str(err).split())


_DB_FILES = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal"}


def _connect_readonly(db: Path) -> sqlite3.Connection:
    """Open the database only to read it (no schema, no pragma writes), for reports and listings.

    In a writable home this is an ordinary connection (which tidies up its `-wal`/`-shm` on close);
    else `mode=ro`; and a WAL database in a directory this process cannot write (no `-shm` can be
    created) is read as the file stands, provided no `-wal` holds commits not yet merged into it."""
    uri = db.resolve().as_uri()
    if not db.is_file():  # mode=rw would fail too; never create a database here
        raise sqlite3.OperationalError(f"unable to open database file {str(db)!r}")
    last: sqlite3.Error | None = None
    for mode in ("rw", "ro"):
        conn = sqlite3.connect(f"{uri}?mode={mode}", uri=True, timeout=60.0, isolation_level=None)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            last = exc
    wal = db.with_name(db.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise last
    conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return conn


def iter_agent_ids(store: ResultsStore, selector: str) -> Iterator[str]:
    """Expand `all` or a comma-separated list of ids."""
    if selector == "all":
        yield from (a.agent_id for a in store.agents())
        return
    for part in selector.split(","):
        part = part.strip()
        if part:
            store.get_agent(part)  # validates, one-line error if unknown
            yield part
