"""Learned-attack artifacts: fitted Q networks, adversaries and directors, stored and reused.

An artifact is keyed by the victim (agent id + checkpoint sha256), the attack name and its fit
config (which includes its seed and budget). It is one safetensors file under
`<home>/attacks/<attack>/<agent id>/<key>.safetensors`, written atomically with the same safe
format as agent checkpoints (no pickle), and indexed in the results database
(`ResultsStore.write_artifact`).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import torch

from robbench import provenance
from robbench.checkpoint import atomic_save_tensors, file_sha256, read_tensors
from robbench.errors import RobbenchError
from robbench.resume import ResumePoint
from robbench.store import AgentRecord, ResultsStore, canonical_json, now
from robbench.threat import LearnedAttack, Victim

FORMAT = "robbench-attack/1"

def artifact_key(record: AgentRecord, attack: LearnedAttack) -> str:
    payload = canonical_json({"agent": record.agent_id, "agent_sha256": record.sha256, "attack": attack.name,
                              "fit_config": attack.fit_config()})
    return hashlib.sha256(payload.encode()).hexdigest()


def ensure_fitted(
    store: ResultsStore, record: AgentRecord, attack: LearnedAttack, victim: Victim, fit: bool = True,
    progress=None,
) -> dict[str, Any]:
    """Load the attack's artifact for this victim, or fit and store it. Returns the artifact meta."""
    store.ensure_artifacts_table()  # a full disk is one line before the fit, not after it
    key = artifact_key(record, attack)
    stored = store.get_artifact(key)
    if stored is not None:
        path = stored.path
        if path.is_file() and file_sha256(path) == stored.sha256:
            tensors, meta = read_tensors(path, expected_format=FORMAT)
            attack.load_state_dict(tensors)
            return meta
    if not fit:
        raise RobbenchError(
            f"attack {attack.name!r} is not fitted for agent {record.agent_id!r}; run without --no-fit to train it"
        )
    gen = torch.Generator().manual_seed(int(attack.params.get("seed", 0)))
    start = time.perf_counter()
    point = ResumePoint(
        store.home / "partial" / "attacks" / attack.name / record.agent_id / f"{key[:20]}.safetensors",
        identity={"artifact_key": key, "code_version": provenance.code_version()},
    )
    stats = attack.fit(victim, gen, progress, resume=point)  # a long fit snapshots its progress there
    if point.resumed_from is not None:
        stats = {**stats, "resumed_from_iteration": point.resumed_from}
    meta = {
        "format": FORMAT, "attack": attack.name, "agent_id": record.agent_id, "agent_sha256": record.sha256,
        "fit_config": attack.fit_config(), "fit_stats": stats, "wall_s": round(time.perf_counter() - start, 2),
        "code_version": provenance.code_version(), "machine": provenance.machine_summary(), "created": now(),
    }
    path = store.home / "attacks" / attack.name / record.agent_id / f"{key[:20]}.safetensors"
    atomic_save_tensors(path, attack.state_dict(), meta)
    store.write_artifact(key, record.agent_id, record.sha256, attack.name, attack.fit_config(), path,
                         file_sha256(path), meta)
    point.clear()
    return meta


def artifact_exists(store: ResultsStore, record: AgentRecord, attack: LearnedAttack) -> bool:
    """Whether a fitted artifact for this victim and fit config is stored (and its file intact)."""
    stored = store.get_artifact(artifact_key(record, attack))
    return stored is not None and stored.path.is_file()
