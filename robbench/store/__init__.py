"""The results store: one SQLite database (plus agent checkpoint files) under a results home.

Home resolution: `--home`, else `$ROBBENCH_HOME`, else `./robbench-results`.

Layout::

    <home>/results.sqlite                       agents, cells, episodes, certificates, attack_artifacts, jobs
    <home>/agents/<env>/<method>/<budget>/seed<k>.safetensors
    <home>/attacks/<attack>/<agent id>/<key[:20]>.safetensors

A *cell* is one (agent, attack config, protocol) evaluation. Its key is a hash of the agent id and
checkpoint hash, the attack's name and parameters, and the protocol (ε, episodes, seeds, ...), so
re-running a finished cell is a no-op unless forced. A cell and all its per-episode rows are written
in one transaction: a process killed at any moment leaves either the whole cell or nothing.

A home's database is treated as input that may be damaged or hand-edited (homes are exchanged with
`robbench merge`): opening one checks it is a robbench store (an empty or foreign database, or a table
missing columns, is a one-line error), and every row read back is checked against its column types
and JSON shape (`row_dict`), so a bad row is one line naming its table and key, never a traceback.

The store is the only part of robbench that speaks SQL: every table is read and written through
`ResultsStore`'s methods, with typed records (`AgentRecord`, `ArtifactRecord`, `JobRecord`). Modules:

* `schema`: the tables, the schema version (`PRAGMA user_version`) and its migrations, `check_schema`;
* `rows`: checking and naming rows, keys and canonical JSON, the records;
* `connection`: home resolution, opening a database, one-line transactions;
* `core`: `StoreCore`, the primitives the table mixins share;
* `cells`, `artifacts`, `jobs`: each table's methods; `exchange`: merge's and publication's.
"""

from __future__ import annotations

from collections.abc import Iterator

from robbench.store.artifacts import ArtifactsMixin
from robbench.store.cells import CERTIFICATE_KEY, CellsMixin
from robbench.store.connection import DEFAULT_HOME, DatabaseError, Transaction, resolve_home
from robbench.store.exchange import EXCHANGED_TABLES, ExchangeMixin, SourceRow, read_source
from robbench.store.jobs import JobsMixin
from robbench.store.rows import (AgentRecord, ArtifactRecord, JobRecord, canonical_json, cell_key, now, row_dict,
                                 row_name)
from robbench.store.schema import (ARTIFACT_SCHEMA, DB_NAME, JOBS_SCHEMA, JSON_COLUMNS, REQUIRED_TABLES, ROW_KEYS,
                                   SCHEMA, SCHEMA_VERSION, check_schema, schema_columns)

__all__ = [
    "ARTIFACT_SCHEMA", "CERTIFICATE_KEY", "DB_NAME", "DEFAULT_HOME", "EXCHANGED_TABLES", "JOBS_SCHEMA",
    "JSON_COLUMNS", "REQUIRED_TABLES", "ROW_KEYS", "SCHEMA", "SCHEMA_VERSION", "AgentRecord", "ArtifactRecord",
    "DatabaseError", "JobRecord", "ResultsStore", "SourceRow", "Transaction", "canonical_json", "cell_key",
    "check_schema", "iter_agent_ids", "now", "read_source", "resolve_home", "row_dict", "row_name",
    "schema_columns",
]


class ResultsStore(CellsMixin, ArtifactsMixin, JobsMixin, ExchangeMixin):
    """Access to one results home (every table's methods). Use as a context manager."""


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
