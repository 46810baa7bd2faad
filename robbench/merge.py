"""Merge results homes: bring another machine's agents, fitted attacks, cells and certificates in.

For grids run where the results home cannot be shared (a cluster without a shared filesystem, a
lent machine): run there into a fresh or copied home, bring the home back, and

    robbench merge other-home/ [more/ ...] --home my-home

Every row is keyed by content, so merging is idempotent and order-free. An agent id present on
both sides with different checkpoints is a conflict: that agent and everything about it are left
out (with a line saying so), never overwritten. Cells, artifacts and certificates are only taken
for the checkpoint they were computed on. Files are copied (atomically) before the rows that name
them are committed, in one transaction per source home.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from robbench.checkpoint import atomic_copy, file_sha256
from robbench.errors import RobbenchError
from robbench.store import DB_NAME, ResultsStore


@dataclass
class MergeReport:
    agents: int = 0
    cells: int = 0
    artifacts: int = 0
    certificates: int = 0
    conflicts: list[str] = field(default_factory=list)


def merge_home(store: ResultsStore, source: Path) -> MergeReport:
    """Merge one source home into `store`."""
    from robbench.artifacts import SCHEMA as ARTIFACT_SCHEMA

    source = Path(source)
    if not (source / DB_NAME).is_file():
        raise RobbenchError(f"{str(source)!r} is not a results home (no {DB_NAME})")
    if source.resolve() == store.home.resolve():
        raise RobbenchError("cannot merge a results home into itself")
    rep = MergeReport()
    store.conn.executescript(ARTIFACT_SCHEMA)
    src = sqlite3.connect(f"{(source / DB_NAME).resolve().as_uri()}?mode=ro", uri=True)
    src.row_factory = sqlite3.Row
    try:
        ours = {r["agent_id"]: r["sha256"] for r in store.conn.execute("SELECT agent_id, sha256 FROM agents")}
        take_agents, valid = [], set()
        for row in src.execute("SELECT * FROM agents"):
            if row["agent_id"] in ours and ours[row["agent_id"]] != row["sha256"]:
                rep.conflicts.append(f"{row['agent_id']}: other checkpoint in {str(source)!r}; left out")
                continue
            path = source / row["path"]
            if not path.is_file() or file_sha256(path) != row["sha256"]:
                rep.conflicts.append(f"{row['agent_id']}: checkpoint missing or modified in {str(source)!r}; left out")
                continue
            valid.add((row["agent_id"], row["sha256"]))
            if row["agent_id"] not in ours:
                take_agents.append(row)
        tables = {r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        artifacts = []
        if "attack_artifacts" in tables:
            for row in src.execute("SELECT * FROM attack_artifacts"):
                path = source / row["path"]
                if (row["agent_id"], row["agent_sha256"]) in valid and path.is_file() \
                        and file_sha256(path) == row["sha256"]:
                    artifacts.append(row)
        for row in take_agents + artifacts:  # files first: a row never names a missing file
            atomic_copy(source / row["path"], store.home / row["path"])
        cells = [r for r in src.execute("SELECT * FROM cells") if (r["agent_id"], r["agent_sha256"]) in valid]
        certs = [r for r in src.execute("SELECT * FROM certificates")
                 if (r["agent_id"], r["agent_sha256"]) in valid] if "certificates" in tables else []
        with store._tx():
            c = store.conn
            for row in take_agents:
                c.execute(f"INSERT OR IGNORE INTO agents VALUES ({','.join('?' * len(row.keys()))})", tuple(row))
                rep.agents += 1
            for row in cells:
                if c.execute("SELECT 1 FROM cells WHERE cell_key = ?", (row["cell_key"],)).fetchone():
                    continue
                c.execute(f"INSERT INTO cells VALUES ({','.join('?' * len(row.keys()))})", tuple(row))
                eps = src.execute("SELECT * FROM episodes WHERE cell_key = ?", (row["cell_key"],)).fetchall()
                c.executemany("INSERT INTO episodes VALUES (?,?,?,?,?)", [tuple(e) for e in eps])
                rep.cells += 1
            for row in artifacts:
                cur = c.execute(f"INSERT OR IGNORE INTO attack_artifacts VALUES ({','.join('?' * len(row.keys()))})",
                                tuple(row))
                rep.artifacts += cur.rowcount
            for row in certs:
                cur = c.execute(f"INSERT OR IGNORE INTO certificates VALUES ({','.join('?' * len(row.keys()))})",
                                tuple(row))
                rep.certificates += cur.rowcount
    finally:
        src.close()
    return rep
