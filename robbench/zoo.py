"""The reference zoo: the published boards' agents, shipped inside the package with a manifest.

    robbench/zoo/manifest.json
    robbench/zoo/<env>/<method>/<budget>/seed<k>.safetensors

The manifest lists, per agent: method, env, seed, budget, steps, the checkpoint's sha256, and its
natural and worst-case returns (with every attack's mean and a digest of the per-episode returns)
from the board that published it. Every load checks the file against the manifest's sha256.

    agent = robbench.load_agent("hopper/barppo/0")      # short id <env>/<method>/<seed>
    robbench evaluate --agents zoo --attacks random      # the zoo is imported into the home first
    robbench zoo list
    robbench zoo export --home reports/hopper/results-home [--home ...]   # maintainers
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from robbench.checkpoint import atomic_copy, check_agent_file, file_sha256, load_agent_file
from robbench.errors import RobbenchError

FORMAT = "robbench-zoo/1"
ZOO_DIR = Path(__file__).resolve().parent / "zoo"
NATURAL = "none"


def returns_digest(returns: list[float]) -> str:
    """sha256 over the per-episode returns as exact decimal strings (repr of the float)."""
    return hashlib.sha256(",".join(repr(float(r)) for r in returns).encode()).hexdigest()


def manifest(zoo_dir: Path = ZOO_DIR) -> dict[str, Any]:
    path = zoo_dir / "manifest.json"
    if not path.is_file():
        raise RobbenchError(f"no zoo manifest at {str(path)!r}")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RobbenchError(f"zoo manifest {str(path)!r} is unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise RobbenchError(f"zoo manifest {str(path)!r} must be a JSON object, got a {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise RobbenchError(f"zoo manifest has format {data.get('format')!r}, expected {FORMAT!r}")
    check_manifest(data, path)
    return data


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _relative_file(v: Any) -> bool:
    return isinstance(v, str) and bool(v) and not Path(v).is_absolute() and ".." not in Path(v).parts


ENTRY_KEYS: dict[str, tuple[str, Any]] = {
    "agent_id": ("a string", lambda v: isinstance(v, str) and bool(v)),
    "short_id": ("a string", lambda v: isinstance(v, str) and bool(v)),
    "method": ("a string", lambda v: isinstance(v, str) and bool(v)),
    "env": ("a string", lambda v: isinstance(v, str) and bool(v)),
    "seed": ("an integer ≥ 0", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
    "budget": ("a string", lambda v: isinstance(v, str) and bool(v)),
    "file": ("a relative path inside the zoo", _relative_file),
    "sha256": ("a string", lambda v: isinstance(v, str) and bool(v)),
    "natural": ("a number", _number),
    "worst": ("null or a table with a number 'mean' and a string 'attack'",
              lambda v: v is None or (isinstance(v, dict) and _number(v.get("mean"))
                                      and isinstance(v.get("attack"), str))),
    "attacks": ("a table: attack -> {mean: number, returns_sha256: string}",
                lambda v: isinstance(v, dict) and all(isinstance(c, dict) and _number(c.get("mean"))
                                                      and isinstance(c.get("returns_sha256"), str)
                                                      for c in v.values())),
}
"""The keys every manifest entry needs (what `robbench zoo list`, loading, importing and verifying
read), with what each must be."""


def check_manifest(data: dict[str, Any], path: Path) -> None:
    """One line naming the entry and the key for a missing or wrongly typed manifest key."""
    agents = data.get("agents")
    if not isinstance(agents, list):
        raise RobbenchError(f"zoo manifest {str(path)!r}: 'agents' must be a list of entries, got {_shown(agents)}")
    for i, entry in enumerate(agents):
        if not isinstance(entry, dict):
            raise RobbenchError(f"zoo manifest {str(path)!r}: entry {i} must be a table, got {_shown(entry)}")
        aid = entry.get("agent_id")
        label = f"entry {i} ({aid!r})" if isinstance(aid, str) else f"entry {i}"
        for key, (what, ok) in ENTRY_KEYS.items():
            if key not in entry:
                raise RobbenchError(f"zoo manifest {str(path)!r}: {label} is missing key {key!r}")
            if not ok(entry[key]):
                raise RobbenchError(f"zoo manifest {str(path)!r}: {label} key {key!r} must be {what}, "
                                    f"got {_shown(entry[key])}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def find(agent_id: str, zoo_dir: Path = ZOO_DIR) -> dict[str, Any]:
    """The manifest entry of a full id (`hopper/barppo/paper/0`) or short id (`hopper/barppo/0`)."""
    entries = manifest(zoo_dir)["agents"]
    for e in entries:
        if agent_id in (e["agent_id"], e["short_id"]):
            return e
    shown = ", ".join(e["short_id"] for e in entries)
    raise RobbenchError(f"unknown zoo agent {agent_id!r}; the zoo holds: {shown}")


def checked_path(entry: dict[str, Any], zoo_dir: Path = ZOO_DIR) -> Path:
    """The entry's checkpoint file, after checking it against the manifest's sha256."""
    path = zoo_dir / entry["file"]
    if not path.is_file():
        raise RobbenchError(f"zoo checkpoint {entry['file']!r} is missing")
    if file_sha256(path) != entry["sha256"]:
        raise RobbenchError(f"zoo checkpoint {entry['file']!r} does not match the manifest's sha256 (modified?)")
    return path


def load(agent_id: str, zoo_dir: Path = ZOO_DIR):
    entry = find(agent_id, zoo_dir)
    return load_agent_file(checked_path(entry, zoo_dir), expected_env=entry["env"])


def import_into(store, zoo_dir: Path = ZOO_DIR) -> list[str]:
    """Register every zoo agent in a results home (copying its checkpoint); returns their ids.

    An agent already in the home with the same checkpoint is kept; one with another checkpoint
    under the same id is an error (the zoo never overwrites a user's agent).
    """
    ids = []
    known = {a.agent_id: a for a in store.agents()}
    for entry in manifest(zoo_dir)["agents"]:
        src = checked_path(entry, zoo_dir)
        aid = entry["agent_id"]
        if aid in known:
            if known[aid].sha256 != entry["sha256"]:
                raise RobbenchError(f"agent {aid!r} in {str(store.home)!r} is not the zoo's (other checkpoint); "
                                    "use another --home for the zoo")
            ids.append(aid)
            continue
        meta = check_agent_file(src, expected_env=entry["env"])
        meta.pop("format", None)
        dst = store.agent_path(entry["env"], entry["method"], entry["budget"], entry["seed"])
        atomic_copy(src, dst)
        store.register_agent(meta, dst)
        ids.append(aid)
    return ids


# ---------------------------------------------------------------------------------------- export
def export(homes: list[Path], zoo_dir: Path = ZOO_DIR, budget: str = "paper") -> dict[str, Any]:
    """Rebuild the zoo from published results homes: every `budget` agent on a standard board."""
    from robbench.report import build_boards
    from robbench.store import ResultsStore

    entries = []
    for home in homes:
        with ResultsStore(home, readonly=True) as store:
            records = {a.agent_id: a for a in store.agents()}
            for board in build_boards(store):
                if board.departures:
                    continue
                for e in board.entries:
                    rec = records[e.agent_id]
                    if rec.budget != budget or NATURAL not in e.cells:
                        continue
                    worst = e.worst
                    attacks = {
                        a: {"mean": round(c["mean"], 6), "std": round(c["std"], 6),
                            "returns_sha256": returns_digest(c["returns"]),
                            "members": len(c.get("scan_members", [c])),
                            "preset": c["attack_config"].get("preset"),
                            "evaluated_on": c["info"].get("machine")}
                        for a, c in sorted(e.cells.items())
                    }
                    rel = Path(rec.env) / rec.method / rec.budget / f"seed{rec.seed}.safetensors"
                    entries.append({
                        "agent_id": rec.agent_id, "short_id": f"{rec.env}/{rec.method}/{rec.seed}",
                        "method": rec.method, "env": rec.env, "seed": rec.seed, "budget": rec.budget,
                        "steps": rec.steps, "file": str(rel), "sha256": rec.sha256, "eps": board.eps,
                        "episodes": board.protocol["episodes"],
                        "natural": attacks[NATURAL]["mean"],
                        "worst": None if worst is None else {"mean": round(worst[0], 6), "attack": worst[1]},
                        "attacks": attacks,
                        "code_version": rec.meta.get("provenance", {}).get("code_version"),
                        "published_in": f"reports/{rec.env}/",
                        "_src": str(rec.path),
                    })
    if not entries:
        raise RobbenchError("no agents at that budget on a standard board in the given homes")
    entries.sort(key=lambda x: (x["env"], x["method"], x["seed"]))
    staging = Path(tempfile.mkdtemp(prefix=".zoo-", dir=zoo_dir.parent))
    try:
        for x in entries:
            dst = staging / x["file"]
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(x.pop("_src"), dst)
            os.chmod(dst, 0o644)
        data = {"format": FORMAT, "agents": entries}
        (staging / "manifest.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        if zoo_dir.exists():
            shutil.rmtree(zoo_dir)
        os.replace(staging, zoo_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.chmod(zoo_dir, 0o755)
    return data


def verify(store, attacks: list[str], zoo_dir: Path = ZOO_DIR) -> list[dict[str, Any]]:
    """Compare the home's standard-protocol cells of the zoo agents with the manifest, per episode."""
    from robbench.report import build_boards

    boards = [b for b in build_boards(store) if not b.departures]
    cells = {(e.agent_id, a): c for b in boards for e in b.entries for a, c in e.cells.items()}
    rows = []
    for entry in manifest(zoo_dir)["agents"]:
        for attack in attacks:
            published = entry["attacks"].get(attack)
            got = cells.get((entry["agent_id"], attack))
            if published is None or got is None:
                continue
            rows.append({
                "agent": entry["short_id"], "attack": attack, "published": published["mean"],
                "got": round(got["mean"], 6), "match": returns_digest(got["returns"]) == published["returns_sha256"],
                "evaluated_on": published.get("evaluated_on"),
            })
    return rows
