"""The results database's tables, its schema version, and the checks that a database is a robbench store.

Every table robbench writes is defined here, whichever part of robbench fills it (the jobs log,
fitted attacks): one place knows every column, so `check_schema` can check a home's tables and
`row_dict` each row read back.

The schema version is SQLite's `PRAGMA user_version`. A new home gets `SCHEMA_VERSION`; a home at an
older version is migrated when it is opened for writing (`migrate`, one transaction with the version
stamp); a home from a newer robbench, or one whose tables are not what its version says, is a
one-line error naming the version it has and the version this robbench reads.
"""

from __future__ import annotations

import functools
import sqlite3

from robbench.errors import RobbenchError

DB_NAME = "results.sqlite"

#: The version of the tables below. Raise it with every change to them, adding the step that brings a
#: home of the previous version up to it to MIGRATIONS.
SCHEMA_VERSION = 1

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

# The log of a grid's jobs (robbench/jobs.py), written by the driver alone; created by the first grid.
JOBS_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_key   TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,
    label     TEXT NOT NULL,
    spec      TEXT NOT NULL,  -- JSON
    status    TEXT NOT NULL,  -- done or failed (skipped: a job it needs failed)
    error     TEXT NOT NULL,
    info      TEXT NOT NULL,  -- JSON: summary, wall time, executor, traceback of a crash
    updated   TEXT NOT NULL
);
"""

#: The SQL that brings a home of version `v` to `v + 1`, by `v`, for the versions that change a table; it
#: runs in the transaction that then checks the tables and stamps the new version. A version missing
#: here changes no table: 0 -> 1 only stamps a home written before schema versions existed (its tables
#: are today's, which the check after the steps confirms).
MIGRATIONS: dict[int, str] = {}

#: Columns holding JSON objects (parsed by `row_dict`).
JSON_COLUMNS = {
    "agents": ("meta",), "cells": ("attack_config", "protocol", "info"), "certificates": ("info",),
    "attack_artifacts": ("fit_config", "meta"), "jobs": ("spec", "info"),
}
#: The columns that name a row in error messages.
ROW_KEYS = {
    "agents": ("agent_id",), "cells": ("cell_key",), "episodes": ("cell_key", "idx"),
    "certificates": ("agent_id", "method", "eps", "states", "threshold"), "attack_artifacts": ("artifact_key",),
    "jobs": ("job_key",),
}
#: Tables every robbench store has (the rest of SCHEMA, and the tables created on demand, may be absent).
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


def all_columns() -> dict[str, dict[str, str]]:
    """The columns of every robbench table, the ones created on demand included."""
    return {**schema_columns(SCHEMA), **schema_columns(ARTIFACT_SCHEMA), **schema_columns(JOBS_SCHEMA)}


def statements(schema: str) -> list[str]:
    """A script's statements one by one: `executescript` would commit the transaction they belong in."""
    out, buf = [], ""
    for line in schema.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf)
            buf = ""
    return out


def stored_version(conn: sqlite3.Connection, where: str) -> int:
    """The schema version a database says it has; a one-line error for one this robbench cannot read
    (newer than SCHEMA_VERSION, or negative: no robbench wrote it)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RobbenchError(f"{where} has schema version {version}, newer than this robbench reads (version "
                            f"{SCHEMA_VERSION}); open it with the robbench that wrote it, or a newer one")
    if version < 0:
        raise RobbenchError(f"{where} has schema version {version}, which no robbench writes (this robbench reads "
                            f"version {SCHEMA_VERSION})")
    return version


def check_schema(conn: sqlite3.Connection, where: str, tables: tuple[str, ...] | None = None,
                 required: tuple[str, ...] = REQUIRED_TABLES) -> set[str]:
    """Check that `conn` holds a robbench store this robbench reads: a schema version it knows, every
    `required` table, and every present table of `tables` (default: every robbench table) with all its
    columns. Returns the tables present.

    Raises a one-line RobbenchError (`where` names the database) otherwise; a home of an older version
    whose tables are not today's says so (no migration makes it one). A sqlite error while reading the
    schema (garbage bytes, a damaged file) propagates for the caller to word."""
    expected = all_columns()
    found = {name: kind for name, kind in conn.execute("SELECT name, type FROM sqlite_master")}
    if not any(t in found for t in expected):
        what = "an empty database" if not found else "a database without robbench tables"
        raise RobbenchError(f"{where} is not a robbench results store ({what})")
    version = stored_version(conn, where)
    old = (f"; it has schema version {version}, which this robbench (schema version {SCHEMA_VERSION}) cannot "
           "migrate" if version < SCHEMA_VERSION else "")
    for table in tables or tuple(expected):
        if table not in found:
            if table in required:
                raise RobbenchError(f"{where} is not a robbench results store (no table {table!r}){old}")
            continue
        if found[table] != "table":
            raise RobbenchError(f"{where} is not a robbench results store ({table!r} is a {found[table]}, "
                                f"not a table){old}")
        have = {r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')}
        missing = [c for c in expected[table] if c not in have]
        if missing:
            raise RobbenchError(f"{where} is not a robbench results store (table {table!r} lacks column"
                                f"{'s' if len(missing) > 1 else ''} {', '.join(missing)}){old}")
    return {t for t in found if found[t] == "table"}


def migrate(conn: sqlite3.Connection, where: str) -> None:
    """Give a database opened for writing today's core tables at SCHEMA_VERSION, in one transaction.

    A new database gets SCHEMA; an older version every step from its version on; then the tables are
    checked and the version stamped. Any failure rolls all of it back, so a home is never left half
    migrated, nor stamped with a version its tables do not have. Nothing is written (and no write lock
    taken) when the home is already current."""
    if _current(conn):
        check_schema(conn, where)
        return
    _migratable(conn, where)  # a foreign or newer database: one line, before taking the write lock
    conn.execute("BEGIN IMMEDIATE")
    try:
        tables = _migratable(conn, where)  # again under the lock: another process may have created the home
        version = stored_version(conn, where) if tables else SCHEMA_VERSION
        for script in [MIGRATIONS.get(v, "") for v in range(version, SCHEMA_VERSION)] + [SCHEMA]:
            for statement in statements(script):
                conn.execute(statement)
        check_schema(conn, where)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _migratable(conn: sqlite3.Connection, where: str) -> set[str]:
    """The names in the database, after checking it is empty or a robbench store of a version this
    robbench reads: robbench tables are never added to another program's database."""
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    if names and "agents" not in names:
        raise RobbenchError(f"{where} is not a robbench results store (a database without robbench tables)")
    if names:
        stored_version(conn, where)
    return names


def _current(conn: sqlite3.Connection) -> bool:
    """Whether the database is at SCHEMA_VERSION with every table of SCHEMA (the usual case: no write)."""
    if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
        return False
    have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    return set(schema_columns(SCHEMA)) | {"cells_by_agent"} <= have
