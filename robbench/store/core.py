"""The store's core: one open results database and the primitives every table's methods are built on.

`StoreCore` opens the database (`connection.open_database`: checked, migrated when opened for
writing), runs transactions whose failures are one line, writes rows by column name, and checks every
row it reads back (`rows.row_dict`). The methods of each table live in their own module as a mixin
of it; `robbench.store.ResultsStore` combines them.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from robbench.store.connection import Transaction, open_database
from robbench.store.rows import row_dict
from robbench.store.schema import DB_NAME, all_columns, schema_columns, statements

_S = TypeVar("_S", bound="StoreCore")
_CONFLICT = {"": "INSERT", "replace": "INSERT OR REPLACE", "ignore": "INSERT OR IGNORE"}


class StoreCore:
    """Access to one results home. Use as a context manager."""

    def __init__(self, home: str | os.PathLike, readonly: bool = False):
        """`readonly=True` (reports, listings) only reads, so it also works on a home it cannot write."""
        self.home = Path(home)
        self.readonly = readonly
        self.conn = open_database(self.home, readonly)

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def transaction(self) -> Transaction:
        """BEGIN IMMEDIATE … COMMIT around several of the store's writes (merge takes a whole source home
        in one); a full disk or a read-only home inside it is one line, and nothing of it is kept."""
        return Transaction(self.conn, self.home / DB_NAME)

    def ensure_table(self, schema: str) -> None:
        """Create the tables of a `CREATE TABLE IF NOT EXISTS` script that are missing, in one transaction.

        A full disk or a read-only home is then a one-line RobbenchError and never half a schema;
        when every table exists nothing is written (so this also works on a read-only store)."""
        if set(schema_columns(schema)) <= self._tables():
            return
        with self.transaction():
            for statement in statements(schema):
                self.conn.execute(statement)

    def has_table(self, table: str) -> bool:
        """Whether the home has `table` (the ones created on demand, and certificates in an older home
        opened read-only, may be absent: their readers then return nothing)."""
        return table in self._tables()

    def _tables(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _insert(self, table: str, rows: Iterable[Mapping[str, Any]], conflict: str = "") -> int:
        """Write rows by column name (every column of the table, taken from each mapping by its name; extra
        keys are ignored), inside the caller's transaction. `conflict`: "", "replace" or "ignore" (a row
        whose key exists is kept). Returns the number of rows written."""
        rows = list(rows)
        if not rows:  # nothing to write: the table need not exist (one created on demand)
            return 0
        columns = list(all_columns()[table])
        names = ", ".join(f'"{c}"' for c in columns)
        marks = ", ".join(f":{c}" for c in columns)
        sql = f'{_CONFLICT[conflict]} INTO "{table}" ({names}) VALUES ({marks})'
        cur = self.conn.executemany(sql, ({c: row[c] for c in columns} for row in rows))
        return max(cur.rowcount, 0)

    def _row(self, table: str, row: sqlite3.Row) -> dict[str, Any]:
        return row_dict(table, row, f"results database {str(self.home / DB_NAME)!r}")
