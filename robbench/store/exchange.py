"""Homes in and out: reading another home's rows for `robbench merge`, copying them in by column name,
and trimming a snapshot of a home for publication (scripts/publish.py).

What merge takes is decided in robbench/merge.py; the store only reads a source home, never writing
it (read-only, `trusted_schema` off: its database is untrusted input), checks every row as it checks
its own, and writes the rows merge hands back, naming every column.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robbench.errors import RobbenchError
from robbench.store.connection import connect_source
from robbench.store.core import StoreCore
from robbench.store.rows import row_dict
from robbench.store.schema import DB_NAME, all_columns, check_schema

#: The tables merge reads from a source home and copies into this one (the jobs log stays where it ran).
EXCHANGED_TABLES = ("agents", "cells", "episodes", "attack_artifacts", "certificates")


@dataclass(frozen=True)
class SourceRow:
    """One row of a source home: `raw` as stored (what is copied), `row` checked with JSON parsed
    (`rows.row_dict`), or None with `problem`, the one-line reason it was refused."""

    raw: dict[str, Any]
    row: dict[str, Any] | None
    problem: RobbenchError | None = None


def read_source(db: Path, where: str, row_where: str) -> dict[str, list[SourceRow]]:
    """Every row of the exchanged tables of another home's database, by table (a table the home does not
    have is empty). `where` names the database in the one line raised when it is not a robbench store
    this robbench reads (or not readable at all); `row_where` names it in a refused row's reason."""
    columns = all_columns()
    out: dict[str, list[SourceRow]] = {t: [] for t in EXCHANGED_TABLES}
    try:
        conn = connect_source(db)
        try:
            tables = check_schema(conn, where, EXCHANGED_TABLES)
            for table in EXCHANGED_TABLES:
                if table not in tables:
                    continue
                names = ", ".join(f'"{c}"' for c in columns[table])
                for r in conn.execute(f'SELECT {names} FROM "{table}"'):
                    try:
                        out[table].append(SourceRow(dict(r), row_dict(table, r, row_where)))
                    except RobbenchError as exc:
                        out[table].append(SourceRow(dict(r), None, exc))
        finally:
            conn.close()
    except sqlite3.Error as exc:
        reason = " ".join(str(exc).split())
        raise RobbenchError(f"{where} is not a readable robbench database ({reason})") from None
    return out


class ExchangeMixin(StoreCore):
    """Uses the agents and artifacts readers of the other mixins (`ResultsStore` has them all)."""

    # ---------------------------------------------------------------------------------- merge in
    def import_rows(self, table: str, rows: Iterable[Mapping[str, Any]], keep_ours: bool = False) -> int:
        """Copy rows of another home (their stored values, as `read_source` gives them in `raw`) into
        this one by column name, inside the caller's `transaction()`. `keep_ours`: a row whose key we
        hold already is left as ours (else that is an integrity error). Returns the rows written."""
        if table not in EXCHANGED_TABLES:
            raise ValueError(f"{table!r} is not a table homes exchange")
        return self._insert(table, rows, conflict="ignore" if keep_ours else "")

    # ---------------------------------------------------------------------------- publication
    def backup_to(self, directory: Path) -> Path:
        """Copy this home's database into `directory` (a new home's, without its files) with SQLite's
        online backup, consistent even while workers write to this one. Returns the copy's path."""
        target = Path(directory) / DB_NAME
        dst = sqlite3.connect(target)
        try:
            self.conn.backup(dst)
        finally:
            dst.close()
        return target

    def drop_rows(self, attack: str | None = None, agent_id: str | None = None) -> int:
        """Delete the results of one attack, or of one agent (its agents row, certificates, cells and
        fitted attacks), or of that agent under that attack, in one transaction. Returns the number of
        cells deleted (their episodes go with them). Files under the home are left to the caller."""
        if attack is None and agent_id is None:
            raise ValueError("drop_rows needs an attack, an agent id or both")
        tests = [(c, v) for c, v in (("attack", attack), ("agent_id", agent_id)) if v is not None]
        where = " AND ".join(f"{c} = ?" for c, _ in tests)
        args = tuple(v for _, v in tests)
        with self.transaction():
            keys = [(r[0],) for r in self.conn.execute(f"SELECT cell_key FROM cells WHERE {where}", args)]
            self.conn.executemany("DELETE FROM episodes WHERE cell_key = ?", keys)
            self.conn.execute(f"DELETE FROM cells WHERE {where}", args)
            if self.has_table("attack_artifacts"):
                self.conn.execute(f"DELETE FROM attack_artifacts WHERE {where}", args)
            if attack is None:
                self.conn.execute("DELETE FROM certificates WHERE agent_id = ?", (agent_id,))
                self.conn.execute("DELETE FROM agents WHERE agent_id = ?", (agent_id,))
        return len(keys)

    def drop_unfinished_jobs(self) -> int:
        """Delete the jobs log's failed and skipped jobs (a published home records what was done; what
        failed is the working home's business). Returns the number deleted."""
        if not self.has_table("jobs"):
            return 0
        with self.transaction():
            return self.conn.execute("DELETE FROM jobs WHERE status != 'done'").rowcount

    def indexed_files(self) -> list[str]:
        """The files the database names, relative to the home: every agent checkpoint and fitted attack."""
        records = [*self.agents(), *self.artifacts()]
        return [str(r.path.relative_to(self.home)) for r in records]

    def compact(self) -> None:
        """Fold the write-ahead log into the database file and drop its free pages: a single file, as
        small as it gets, for a home that is committed or shipped (no -wal or -shm beside it)."""
        self.conn.execute("PRAGMA journal_mode=DELETE")
        self.conn.execute("VACUUM")
