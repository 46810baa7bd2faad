"""Merge results homes: bring another machine's agents, fitted attacks, cells and certificates in.

For grids run where the results home cannot be shared (a cluster without a shared filesystem, a
lent machine): run there into a fresh or copied home, bring the home back, and

    robbench merge other-home/ [more/ ...] --home my-home

A source home is untrusted input (researchers exchange them); nothing in it is used unchecked:

* Its database must be a robbench store (every table with its columns), else one line and nothing is
  written here. Every row is checked as the store checks its own (`store.row_dict`: column types,
  JSON); a bad row is refused with a conflict line, never a crash.
* Files are only taken at the canonical layout, derived from the row's own ids: agent
  `<env>/<method>/<budget>/<k>` at `agents/<env>/<method>/<budget>/seed<k>.safetensors`, a fitted
  attack at `attacks/<attack>/<agent id>/<key[:20]>.safetensors`, its key recomputed from its content
  (each name a plain name: no `/`, no `..`, no absolute path). A row naming any other path is refused.
  Source files are opened one component at a time without following symbolic links (a link anywhere
  in the path is refused), and both resolved paths must stay inside their homes.
* Each file is copied to a temporary name in this home, its sha256 checked against the row, and
  loaded as the loader would (an agent with `load_agent_file` for its env and its header's ids
  checked against the row; an attack with `read_tensors`) before it is put in place.

Agent identity is the agent id plus its weights: the checkpoint's payload hash (`payload_sha256`, over
every tensor; config and provenance such as start and wall times live in the header and are not part
of it), not the file's sha256.

* An id only in the source: the agent comes in, with everything computed on it.
* An id on both sides with the same payload: the same agent. Ours is kept (file and sha256); the
  source's cells, fitted attacks and certificates, computed on identical tensors, are taken *re-keyed*
  to our checkpoint: their `agent_sha256` becomes ours and their keys, which include it (`cell_key`,
  `artifact_key`), are recomputed. (A re-keyed attack file keeps its header, which names the
  source's checkpoint sha256.) A line says so.
* An id on both sides with other weights: a conflict; that agent and everything about it are left out
  (with a line saying so), never overwritten.

Rows about a checkpoint the source no longer indexes (stale results of a retrained agent) are skipped.
A cell whose (re-keyed) key we already hold is kept as ours; if its per-episode returns differ, that is
a conflict, reported (ours kept). Likewise a certificate with other numbers, a fitted attack with other
weights. So merging is idempotent, and order-free except where sources conflict with each other.
Files are copied (atomically) before the rows that name them are committed, in one transaction per
source home.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robbench.checkpoint import atomic_copy, load_agent_file, read_tensors
from robbench.errors import RobbenchError, io_error
from robbench.store import DB_NAME, ResultsStore, canonical_json, cell_key, read_source

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}\Z")  # one path component: never '', '.', '..' or '/'
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_CERT_NUMBERS = ("mean_dev", "max_dev", "mean_sum_u2_sigma2", "max_sum_u2_sigma2", "frac_below")


@dataclass
class MergeReport:
    agents: int = 0
    cells: int = 0
    artifacts: int = 0
    certificates: int = 0
    conflicts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # same agent (weights), other checkpoint file: re-keyed


class _Refused(Exception):
    """A source file that may not be taken (the reason is the message); `missing`: absent or other bytes."""

    def __init__(self, reason: str, missing: bool = False):
        super().__init__(reason)
        self.missing = missing

    def line(self, what: str, label: str) -> str:
        if self.missing:
            return f"{what} missing or modified in {label} ({self}); left out"
        return f"{what} in {label} refused ({self}); left out"


@dataclass
class _Source:
    """Every row of a source home, checked (`row_dict`); `raw` keeps the stored values for inserting."""

    agents: list[tuple[dict, dict]] = field(default_factory=list)
    cells: list[tuple[dict, dict]] = field(default_factory=list)
    episodes: dict[str, list[dict]] = field(default_factory=dict)
    artifacts: list[tuple[dict, dict]] = field(default_factory=list)
    certificates: list[tuple[dict, dict]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    bad_cells: set[str] = field(default_factory=set)


def merge_home(store: ResultsStore, source: Path) -> MergeReport:
    """Merge one source home into `store` (see the module docstring for what is taken and how)."""
    from robbench.artifacts import FORMAT as ARTIFACT_FORMAT

    source = Path(source)
    label = repr(str(source))
    if not (source / DB_NAME).is_file():
        raise RobbenchError(f"{label} is not a results home (no {DB_NAME})")
    if (source / DB_NAME).is_symlink():
        raise RobbenchError(f"cannot merge {label}: its {DB_NAME} is a symbolic link")
    root = source.resolve()
    home = store.home.resolve()
    if root == home:
        raise RobbenchError("cannot merge a results home into itself")
    src = _read_source(root, label)  # a database that is not a robbench store stops here: nothing written
    rep = MergeReport(conflicts=list(src.refused))
    ours = {a.agent_id: a for a in store.agents()}
    try:
        staging = Path(tempfile.mkdtemp(prefix=".merge-", dir=store.home))
    except OSError as exc:
        raise io_error(exc, store.home) from None
    try:
        take: dict[tuple[str, str], str] = {}  # (agent id, source checkpoint sha256) -> our checkpoint sha256
        envs: dict[str, str] = {}
        files: list[tuple[Path, str]] = []  # (staged copy, path relative to the home)
        new_agents: list[dict] = []
        for a, raw in src.agents:
            aid = a["agent_id"]
            problem = _agent_problem(a)
            if problem:
                rep.conflicts.append(f"{aid!r}: agents row refused ({problem}); left out")
                continue
            rel = _agent_rel(a)
            try:
                staged = _stage(root, rel, a["sha256"], staging, home)
            except _Refused as why:
                rep.conflicts.append(why.line(f"{aid}: checkpoint", label))
                continue
            try:
                agent = load_agent_file(staged, expected_env=a["env"])
            except RobbenchError as exc:
                rep.conflicts.append(f"{aid}: checkpoint in {label} is not a valid agent "
                                     f"({_unstaged(exc, staged, root / rel)}); left out")
                continue
            header = {k: agent.meta.get(k) for k in ("agent_id", "env", "method", "budget", "seed")}
            if header != {k: a[k] for k in header}:
                rep.conflicts.append(f"{aid}: checkpoint in {label} holds another agent (its header says "
                                     f"{header['agent_id']!r}); left out")
                continue
            mine = ours.get(aid)
            if mine is None:
                files.append((staged, rel))
                new_agents.append(raw)
                take[(aid, a["sha256"])] = a["sha256"]
            elif mine.sha256 == a["sha256"]:
                take[(aid, a["sha256"])] = a["sha256"]
            else:
                try:
                    our_payload = _payload(mine.path)
                except RobbenchError as exc:
                    rep.conflicts.append(f"{aid}: our checkpoint is missing or damaged ({exc}); left out")
                    continue
                if our_payload != _payload(staged):
                    rep.conflicts.append(f"{aid}: other checkpoint (other weights) in {label}; left out")
                    continue
                take[(aid, a["sha256"])] = mine.sha256
                rep.notes.append(f"{aid}: same weights as ours, another checkpoint file in {label} (sha256 "
                                 f"{a['sha256'][:12]}, ours {mine.sha256[:12]}); its results are taken for ours")
            envs[aid] = a["env"]

        artifacts: list[dict] = []
        for art, raw in src.artifacts:
            aid, mapped = art["agent_id"], take.get((art["agent_id"], art["agent_sha256"]))
            if mapped is None:
                continue  # stale, or its agent was left out
            what = f"fitted attack {art['attack']!r} for {aid}"
            if not _NAME.match(art["attack"]):
                rep.conflicts.append(f"{what}: refused (attack name is not a plain name); left out")
                continue
            key = _artifact_key(aid, art["agent_sha256"], art["attack"], art["fit_config"])
            if key != art["artifact_key"]:
                rep.conflicts.append(f"{what}: refused (its key does not match its content); left out")
                continue
            rel = _artifact_rel(art["attack"], aid, key)
            if art["path"] != rel:
                rep.conflicts.append(f"{what}: refused (path {art['path']!r} is not the canonical {rel!r}); left out")
                continue
            try:
                staged = _stage(root, rel, art["sha256"], staging, home)
                read_tensors(staged, expected_format=ARTIFACT_FORMAT)
            except _Refused as why:
                rep.conflicts.append(why.line(f"{what}: file", label))
                continue
            except RobbenchError as exc:
                rep.conflicts.append(f"{what}: file in {label} is not a valid artifact "
                                     f"({_unstaged(exc, staged, root / rel)}); left out")
                continue
            new_key = _artifact_key(aid, mapped, art["attack"], art["fit_config"])
            new_rel = _artifact_rel(art["attack"], aid, new_key)
            row = {**raw, "artifact_key": new_key, "agent_sha256": mapped, "path": new_rel}
            existing = store.get_artifact(new_key)
            if existing is not None:
                try:
                    same = _payload(existing.path, ARTIFACT_FORMAT) == _payload(staged, ARTIFACT_FORMAT)
                except RobbenchError:
                    same = False
                if not same:
                    rep.conflicts.append(f"{what}: other weights than ours for the same fit config in {label}; "
                                         "kept ours")
                continue
            if not _inside(store.home / new_rel, home):
                rep.conflicts.append(f"{what}: would be written outside this home; left out")
                continue
            files.append((staged, new_rel))
            artifacts.append(row)
        for _, rel in files:
            if not _inside(store.home / rel, home):
                raise RobbenchError(f"cannot merge {label}: {rel!r} would be written outside "
                                    f"{str(store.home)!r} (a symbolic link in this home?)")

        cells: list[tuple[dict, list[dict]]] = []
        for cell, raw in src.cells:
            aid, sha = cell["agent_id"], cell["agent_sha256"]
            mapped = take.get((aid, sha))
            if mapped is None or cell["cell_key"] in src.bad_cells:
                continue
            what = f"cell {aid} × {cell['attack']} (key {cell['cell_key'][:12]})"
            if cell["env"] != envs[aid]:
                rep.conflicts.append(f"{what}: refused (env {cell['env']!r}, but the agent's is {envs[aid]!r}); "
                                     "left out")
                continue
            if cell_key(aid, sha, cell["attack"], cell["attack_config"], cell["protocol"]) != cell["cell_key"]:
                rep.conflicts.append(f"{what}: refused (its key does not match its content); left out")
                continue
            eps = sorted(src.episodes.get(cell["cell_key"], []), key=lambda e: e["idx"])
            if [e["idx"] for e in eps] != list(range(cell["episodes"])):
                rep.conflicts.append(f"{what}: refused ({len(eps)} episode rows for {cell['episodes']} episodes); "
                                     "left out")
                continue
            new_key = cell["cell_key"] if mapped == sha else cell_key(
                aid, mapped, cell["attack"], cell["attack_config"], cell["protocol"])
            cells.append(({**raw, "cell_key": new_key, "agent_sha256": mapped},
                          [{**e, "cell_key": new_key} for e in eps]))
        certs = [{**raw, "agent_sha256": take[(c["agent_id"], c["agent_sha256"])]}
                 for c, raw in src.certificates if (c["agent_id"], c["agent_sha256"]) in take]

        for staged, rel in files:  # files first: a row never names a missing file
            try:
                atomic_copy(staged, store.home / rel)
            except OSError as exc:
                raise io_error(exc, store.home / rel) from None
        if artifacts:
            store.ensure_artifacts_table()
        with store.transaction():
            rep.agents += store.import_rows("agents", new_agents, keep_ours=True)
            for row, eps in cells:
                mine = store.find_cell(row["cell_key"])
                if mine is not None:
                    conflict = _cell_conflict(store, mine, row, eps, label)
                    if conflict:
                        rep.conflicts.append(conflict)
                    continue
                store.import_rows("cells", [row])
                store.import_rows("episodes", eps)
                rep.cells += 1
            rep.artifacts += store.import_rows("attack_artifacts", artifacts, keep_ours=True)
            for row in certs:
                mine = store.find_certificate(row)
                if mine is None:
                    rep.certificates += store.import_rows("certificates", [row], keep_ours=True)
                elif any(mine[k] != row[k] for k in _CERT_NUMBERS):
                    rep.conflicts.append(
                        f"certificate {row['agent_id']} {row['method']} ε={row['eps']:g} ({row['states']} states): "
                        f"other bounds in {label} (mean deviation {row['mean_dev']:.6g}, ours {mine['mean_dev']:.6g}); "
                        "kept ours")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return rep


# ------------------------------------------------------------------------------------ the source
def _read_source(root: Path, label: str) -> _Source:
    """Read and check every row of a source home's database; one line if it is not a robbench store."""
    db = root / DB_NAME
    if db.stat().st_size == 0:
        raise RobbenchError(f"cannot merge {label}: its {DB_NAME} is empty (0 bytes), not a robbench results store")
    read = read_source(db, f"cannot merge {label}: its {DB_NAME}", f"source home {label}")
    out = _Source()

    def rows(table: str):
        """The table's checked rows with their stored values; a refused row is a conflict line (and a
        refused cell or episode row keeps its whole cell out)."""
        for r in read[table]:
            if r.row is not None:
                yield r.row, r.raw
                continue
            out.refused.append(f"refused: {r.problem}")
            if table in ("cells", "episodes") and isinstance(r.raw.get("cell_key"), str):
                out.bad_cells.add(r.raw["cell_key"])

    out.agents = list(rows("agents"))
    out.cells = list(rows("cells"))
    for e, _ in rows("episodes"):
        out.episodes.setdefault(e["cell_key"], []).append(e)
    out.artifacts = list(rows("attack_artifacts"))
    out.certificates = list(rows("certificates"))
    return out


def _agent_problem(a: dict[str, Any]) -> str | None:
    """Why an agents row does not describe a checkpoint at the canonical place, or None."""
    for key in ("env", "method", "budget"):
        if not _NAME.match(a[key]):
            return f"{key} {a[key]!r} is not a plain name"
    if a["seed"] < 0:
        return f"seed {a['seed']} is negative"
    expected_id = f"{a['env']}/{a['method']}/{a['budget']}/{a['seed']}"
    if a["agent_id"] != expected_id:
        return f"its id is not {expected_id!r}, as its env, method, budget and seed make it"
    if not _SHA256.match(a["sha256"]):
        return "sha256 is not a sha256"
    rel = _agent_rel(a)
    if a["path"] != rel:
        return f"path {a['path']!r} is not the canonical {rel!r}"
    return None


def _agent_rel(a: dict[str, Any]) -> str:
    return f"agents/{a['env']}/{a['method']}/{a['budget']}/seed{a['seed']}.safetensors"


def _artifact_rel(attack: str, agent_id: str, key: str) -> str:
    return f"attacks/{attack}/{agent_id}/{key[:20]}.safetensors"


def _artifact_key(agent_id: str, agent_sha256: str, attack: str, fit_config: dict) -> str:
    """As `robbench.artifacts.artifact_key` computes it."""
    payload = canonical_json({"agent": agent_id, "agent_sha256": agent_sha256, "attack": attack,
                              "fit_config": fit_config})
    return hashlib.sha256(payload.encode()).hexdigest()


def _stage(root: Path, rel: str, sha256: str, staging: Path, home: Path) -> Path:
    """Copy `root/rel` into `staging` and return the copy, after checking its sha256 is `sha256`.

    The source path is opened one component at a time relative to the directory above it, never
    following a symbolic link (so a link anywhere in it, swapped in at any moment, is refused), and
    only a regular file is read."""
    parts = rel.split("/")
    if not all(_NAME.match(p) for p in parts):
        raise _Refused(f"{rel!r} is not a plain relative path")
    if not _inside(staging, home):
        raise _Refused("the staging directory is outside this home")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | (os.O_NONBLOCK if last else os.O_DIRECTORY)
            try:
                nfd = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                where = "/".join(parts[: i + 1])
                if exc.errno == errno.ENOENT:
                    raise _Refused(f"{where} does not exist", missing=True) from None
                if exc.errno in (errno.ELOOP, errno.EMLINK) or os.path.islink(root / where):
                    raise _Refused(f"{where} is a symbolic link") from None
                if exc.errno == errno.ENOTDIR:
                    raise _Refused(f"{where} is not a directory") from None
                raise _Refused(f"{where}: {exc.strerror}") from None
            os.close(fd)
            fd = nfd
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _Refused(f"{rel} is not a regular file")
        if not _inside(root / rel, root):  # cannot happen after the walk above; checked all the same
            raise _Refused(f"{rel!r} leads outside the source home")
        h = hashlib.sha256()
        try:
            out_fd, out = tempfile.mkstemp(dir=staging, suffix=f"-{parts[-1]}")
            out = Path(out)
            with open(out_fd, "wb") as f:
                while chunk := os.read(fd, 1 << 20):
                    h.update(chunk)
                    f.write(chunk)
        except OSError as exc:
            raise io_error(exc, staging) from None
    finally:
        os.close(fd)
    if h.hexdigest() != sha256:
        raise _Refused("sha256 mismatch", missing=True)
    return out


def _inside(path: Path, root: Path) -> bool:
    """Whether `path`, with every symbolic link that exists resolved, is under `root` (resolved)."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        return False


def _unstaged(exc: Exception, staged: Path, real: Path) -> str:
    return str(exc).replace(str(staged), str(real))


def _payload(path: Path, expected_format: str | None = None) -> str:
    """The checked payload hash of a robbench safetensors file (over its tensors, not its header)."""
    from robbench.checkpoint import payload_hash

    tensors, _ = read_tensors(path) if expected_format is None else read_tensors(path, expected_format)
    return payload_hash(tensors)


def _cell_conflict(store: ResultsStore, mine: dict, theirs: dict, eps: list[dict], label: str) -> str | None:
    """None when the source's cell equals ours (same per-episode returns); else the conflict line."""
    ours = [(e["idx"], e["seed"], e["ret"], e["length"]) for e in store.episodes(mine["cell_key"])]
    other = [(e["idx"], e["seed"], e["ret"], e["length"]) for e in eps]
    numbers = ("episodes", "mean", "std", "min", "max")
    if ours == other and all(mine[k] == theirs[k] for k in numbers):
        return None
    differ = sum(a != b for a, b in zip(ours, other)) + abs(len(ours) - len(other))
    return (f"cell {theirs['agent_id']} × {theirs['attack']} (ε={theirs['eps']:g}, key {mine['cell_key'][:12]}): "
            f"returns differ between the homes ({differ} of {max(len(ours), len(other))} episodes; mean "
            f"{mine['mean']:.6g} here, {theirs['mean']:.6g} in {label}); kept ours")
