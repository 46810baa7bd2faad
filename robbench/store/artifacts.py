"""The store's index of fitted learned attacks (the `attack_artifacts` table).

robbench/artifacts.py fits an attack and writes its safetensors file under the home; the store keeps
one row per file, keyed by the victim (agent id + checkpoint sha256), the attack and its fit config.
The table is created when the first artifact is stored: a home without learned attacks has none, and
then every reader here returns nothing.
"""

from __future__ import annotations

import sqlite3
from dataclasses import fields
from pathlib import Path
from typing import Any

from robbench.store.core import StoreCore
from robbench.store.rows import ArtifactRecord, canonical_json, now
from robbench.store.schema import ARTIFACT_SCHEMA


class ArtifactsMixin(StoreCore):
    def ensure_artifacts_table(self) -> None:
        """Create the table if missing, in one transaction (a full disk is one line, never half a schema)."""
        self.ensure_table(ARTIFACT_SCHEMA)

    def get_artifact(self, key: str) -> ArtifactRecord | None:
        """The artifact of that key, or None (also when no artifact was ever stored here)."""
        if not self.has_table("attack_artifacts"):
            return None
        row = self.conn.execute("SELECT * FROM attack_artifacts WHERE artifact_key = ?", (key,)).fetchone()
        return None if row is None else self._artifact(row)

    def artifacts(self) -> list[ArtifactRecord]:
        """Every stored artifact, ordered by agent, attack and key."""
        if not self.has_table("attack_artifacts"):
            return []
        rows = self.conn.execute("SELECT * FROM attack_artifacts ORDER BY agent_id, attack, artifact_key")
        return [self._artifact(r) for r in rows.fetchall()]

    def write_artifact(self, key: str, agent_id: str, agent_sha256: str, attack: str, fit_config: dict[str, Any],
                       path: Path, sha256: str, meta: dict[str, Any]) -> ArtifactRecord:
        """Index an artifact file already written (atomically) under the home; a row with the same key is
        replaced (a refit after its file went missing or changed)."""
        self.ensure_artifacts_table()
        rel = str(Path(path).resolve().relative_to(self.home.resolve()))
        rec = ArtifactRecord(artifact_key=key, agent_id=agent_id, agent_sha256=agent_sha256, attack=attack,
                             fit_config=fit_config, path=self.home / rel, sha256=sha256, meta=meta, created=now())
        with self.transaction():
            self._insert("attack_artifacts", [{**vars(rec), "fit_config": canonical_json(fit_config), "path": rel,
                                               "meta": canonical_json(meta)}], conflict="replace")
        return rec

    def _artifact(self, row: sqlite3.Row) -> ArtifactRecord:
        d = self._row("attack_artifacts", row)
        return ArtifactRecord(**{f.name: d[f.name] for f in fields(ArtifactRecord)} | {"path": self.home / d["path"]})
