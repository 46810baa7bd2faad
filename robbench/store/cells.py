"""The store's agents, cells (with their episodes) and certificates: the tables every home has.

A *cell* is one (agent, attack config, protocol) evaluation. Its key is a hash of the agent id and
checkpoint hash, the attack's name and parameters, and the protocol (ε, episodes, seeds, ...), so
re-running a finished cell is a no-op unless forced. A cell and all its per-episode rows are written
in one transaction: a process killed at any moment leaves either the whole cell or nothing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from robbench.errors import RobbenchError
from robbench.store.core import StoreCore
from robbench.store.rows import AgentRecord, canonical_json, now

#: The columns of a certificate row's key (the table's UNIQUE constraint).
CERTIFICATE_KEY = ("agent_id", "agent_sha256", "method", "eps", "states", "threshold")


class CellsMixin(StoreCore):
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
        with self.transaction():
            self._insert("agents", [{**vars(rec), "path": rel, "meta": canonical_json(meta), "created": now()}],
                         conflict="replace")
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
        key = cell["cell_key"]
        with self.transaction():
            self.conn.execute("DELETE FROM episodes WHERE cell_key = ?", (key,))
            self.conn.execute("DELETE FROM cells WHERE cell_key = ?", (key,))
            self._insert("cells", [{**cell, "attack_config": canonical_json(cell["attack_config"]),
                                    "protocol": canonical_json(cell["protocol"]),
                                    "info": canonical_json(cell["info"]), "created": now()}])
            self._insert("episodes", [dict(zip(("idx", "seed", "ret", "length"), ep), cell_key=key)
                                      for ep in episodes])

    def cells(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM cells ORDER BY env, agent_id, attack").fetchall()
        return [self._row("cells", r) for r in rows]

    def find_cell(self, key: str) -> dict[str, Any] | None:
        """The cell of that key (as `cells()` gives it), or None."""
        row = self.conn.execute("SELECT * FROM cells WHERE cell_key = ?", (key,)).fetchone()
        return None if row is None else self._row("cells", row)

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
        with self.transaction():
            self._insert("certificates", [{**row, "created": now()}], conflict="replace")

    def certificates(self) -> list[dict[str, Any]]:
        """Every stored certificate, `info` parsed, ordered by agent, method, ε, states, threshold; none
        for an older home without the table (opened read-only, so not migrated)."""
        if not self.has_table("certificates"):
            return []
        rows = self.conn.execute(
            "SELECT * FROM certificates ORDER BY agent_id, method, eps, states, threshold"
        ).fetchall()
        return [self._row("certificates", r) for r in rows]

    def find_certificate(self, key: dict[str, Any]) -> dict[str, Any] | None:
        """The certificate with the key columns (CERTIFICATE_KEY) of `key`, or None."""
        if not self.has_table("certificates"):
            return None
        where = " AND ".join(f"{c} = ?" for c in CERTIFICATE_KEY)
        row = self.conn.execute(f"SELECT * FROM certificates WHERE {where}",
                                tuple(key[c] for c in CERTIFICATE_KEY)).fetchone()
        return None if row is None else self._row("certificates", row)
