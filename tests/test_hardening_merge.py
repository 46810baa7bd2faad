"""A results home is untrusted input (issue 14): `robbench merge` and damaged or hand-edited databases.

Every case goes through the CLI (typer's CliRunner) and checks what the user sees: a refused row is a
`conflict:` line (exit 0, nothing of it written), a database that is not a robbench store is one
`error: ...` line (exit 2, no traceback, nothing written to the destination).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from robbench.certify import certify_agent
from robbench.checkpoint import FORMAT, atomic_save_tensors, file_sha256, read_tensors
from robbench.cli import app
from robbench.evaluate import evaluate_cell
from robbench.store import ARTIFACT_SCHEMA, DB_NAME, ResultsStore, canonical_json

runner = CliRunner()
AGENT = "hopper/ppo/smoke/0"
ATTACK_FORMAT = "robbench-attack/1"


# ------------------------------------------------------------------------------------------ helpers
def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def assert_one_line_error(result, *fragments: str) -> str:
    """Exit 2, exactly one line on stderr, starting `error: ` and holding every fragment; no traceback."""
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # a crash would be caught here
    err = [line for line in lines(result.stderr) if line.startswith("error")]
    assert len(err) == 1 and len(lines(result.stderr)) == 1, result.stderr
    assert err[0].startswith("error: "), err[0]
    for f in fragments:
        assert f in err[0], err[0]
    assert "Traceback" not in result.output
    return err[0]


def merge(src: Path, dst: Path):
    return cli("merge", src, "--home", dst)


def copy_home(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    with closing(sqlite3.connect(dst / DB_NAME)) as conn:  # the last connection to close folds -wal into the file
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return dst


def sql(home: Path, statement: str, params: tuple = ()) -> list[tuple]:
    with closing(sqlite3.connect(home / DB_NAME)) as conn:
        rows = conn.execute(statement, params).fetchall()
        conn.commit()
    return rows


def agent_sha(home: Path, agent_id: str = AGENT) -> str:
    return sql(home, "SELECT sha256 FROM agents WHERE agent_id = ?", (agent_id,))[0][0]


def insert_agent_row(home: Path, agent_id: str, path: str, sha256: str) -> None:
    env, method, budget, seed = agent_id.split("/")
    sql(home, "INSERT INTO agents VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (agent_id, method, env, int(seed), "smoke", budget, 4096, path, sha256, "{}", "2025-01-01T00:00:00"))


def artifact_key(agent_id: str, sha256: str, attack: str, fit_config: dict) -> str:
    """As robbench/artifacts.py keys a fitted attack (victim id + checkpoint sha256, attack, fit config)."""
    return hashlib.sha256(canonical_json({"agent": agent_id, "agent_sha256": sha256, "attack": attack,
                                          "fit_config": fit_config}).encode()).hexdigest()


def insert_artifact_row(home: Path, key: str, agent_id: str, sha: str, attack: str, fit_config: dict, path: str,
                        file_sha: str) -> None:
    with closing(sqlite3.connect(home / DB_NAME)) as conn:
        conn.executescript(ARTIFACT_SCHEMA)
        conn.execute("INSERT INTO attack_artifacts VALUES (?,?,?,?,?,?,?,?,?)",
                     (key, agent_id, sha, attack, canonical_json(fit_config), path, file_sha, "{}", "x"))
        conn.commit()


def write_agent_copy(base: Path, dst_file: Path, **meta_changes) -> tuple[dict, str]:
    """The smoke agent's tensors saved at `dst_file` with a changed header; returns (meta, sha256)."""
    tensors, meta = read_tensors(base / "agents/hopper/ppo/smoke/seed0.safetensors")
    meta = {**meta, **meta_changes}
    atomic_save_tensors(dst_file, tensors, {**meta, "format": FORMAT})
    return meta, file_sha256(dst_file)


def snapshot(home: Path) -> tuple[list[str], list[str]]:
    """The database's content (SQL dump) and every file under the home (SQLite's -wal/-shm aside)."""
    with closing(sqlite3.connect(home / DB_NAME)) as conn:
        dump = list(conn.iterdump())
    files = sorted(str(p.relative_to(home)) for p in home.rglob("*")
                   if not p.name.startswith(DB_NAME))
    return dump, files


@pytest.fixture(scope="module")
def base(smoke_home, tmp_path_factory) -> Path:
    """The session's smoke agent with one evaluated cell (attack none, 2 episodes), and nothing else
    (other tests of the session may have added results to the shared smoke home)."""
    home = copy_home(smoke_home, tmp_path_factory.mktemp("base") / "home")
    with closing(sqlite3.connect(home / DB_NAME)) as conn:
        for table in ("episodes", "cells", "certificates", "attack_artifacts", "jobs"):
            conn.execute(f"DROP TABLE IF EXISTS {table}" if table in ("attack_artifacts", "jobs")
                         else f"DELETE FROM {table}")
        conn.execute("DELETE FROM agents WHERE agent_id != ?", (AGENT,))
        conn.commit()
    for extra in ("attacks", "partial"):
        shutil.rmtree(home / extra, ignore_errors=True)
    with ResultsStore(home) as store:
        assert [a.agent_id for a in store.agents()] == [AGENT]
        evaluate_cell(store, AGENT, "none", episodes=2)
    return home


# ---------------------------------------------------------- 1. merge never writes outside the home
@pytest.mark.parametrize("table", ["agents", "attack_artifacts"])
def test_merge_refuses_a_path_through_a_symlink_out_of_the_home(base, tmp_path, table):
    src = copy_home(base, tmp_path / "evil")
    (src / "d1/d2/d3/d4/d5").mkdir(parents=True)
    (src / "lnk").symlink_to("d1/d2/d3/d4/d5")  # lnk/../../../../.. is the source home, but not in the target
    (src / "pwned").mkdir()
    (src / "pwned" / "FILE").write_bytes(b"the attacker's bytes\n")
    evil_path, evil_sha = "lnk/../../../../../pwned/FILE", file_sha256(src / "pwned" / "FILE")
    if table == "agents":
        insert_agent_row(src, "hopper/ppo/smoke/7", evil_path, evil_sha)
    else:
        insert_artifact_row(src, "k" * 64, AGENT, agent_sha(src), "sa_rl", {}, evil_path, evil_sha)
    dst = copy_home(base, tmp_path / "x1" / "x2" / "x3" / "dst")
    target = tmp_path / "pwned" / "FILE"  # where dst/lnk/../../../../../pwned/FILE lands

    res = merge(src, dst)
    assert res.exit_code == 0, res.output
    assert not target.exists() and not (tmp_path / "pwned").exists()
    assert not (dst / "lnk").exists()
    assert "conflict:" in res.stderr and "refused" in res.stderr
    assert sql(dst, "SELECT agent_id FROM agents") == [(AGENT,)]
    assert "0 agents, 0 fitted attacks, 0 cells" in res.stderr


@pytest.mark.parametrize("kind", ["absolute", "dotdot"])
def test_merge_refuses_absolute_and_dotdot_paths(base, tmp_path, kind):
    outside = tmp_path / "outside"
    outside.mkdir()
    src = copy_home(base, tmp_path / "src")
    dst = copy_home(base, tmp_path / "nest" / "dst")
    meta, sha = write_agent_copy(base, outside / "seed9.safetensors", agent_id="hopper/ppo/smoke/9", seed=9)
    path = str(outside / "seed9.safetensors") if kind == "absolute" else "agents/../../outside/seed9.safetensors"
    insert_agent_row(src, "hopper/ppo/smoke/9", path, sha)

    res = merge(src, dst)
    assert res.exit_code == 0, res.output
    assert "conflict:" in res.stderr and "hopper/ppo/smoke/9" in res.stderr
    assert sql(dst, "SELECT agent_id FROM agents") == [(AGENT,)]
    assert not (tmp_path / "nest" / "outside").exists()  # where dst/agents/../../outside/... would land


@pytest.mark.parametrize("level", ["file", "directory"])
def test_merge_refuses_a_symlink_in_a_canonical_source_path(base, tmp_path, level):
    """A canonical path whose file or directory is a symlink could read any file of the merging user."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    src = copy_home(base, tmp_path / "src")
    aid = "hopper/ppo/alt/0"
    meta, sha = write_agent_copy(base, elsewhere / "seed0.safetensors", agent_id=aid, budget="alt")
    canonical = src / "agents/hopper/ppo/alt/seed0.safetensors"
    if level == "file":
        canonical.parent.mkdir(parents=True)
        canonical.symlink_to(elsewhere / "seed0.safetensors")
    else:
        canonical.parent.symlink_to(elsewhere, target_is_directory=True)
    insert_agent_row(src, aid, "agents/hopper/ppo/alt/seed0.safetensors", sha)
    dst = copy_home(base, tmp_path / "dst")

    res = merge(src, dst)
    assert res.exit_code == 0, res.output
    assert "conflict:" in res.stderr and "symbolic link" in res.stderr
    assert sql(dst, "SELECT agent_id FROM agents") == [(AGENT,)]
    assert not (dst / "agents/hopper/ppo/alt").exists()


@pytest.mark.parametrize("case", ["garbage-agent", "other-agents-header", "garbage-artifact"])
def test_merge_validates_every_file_as_the_loader_would(base, tmp_path, case):
    src = copy_home(base, tmp_path / "src")
    dst = copy_home(base, tmp_path / "dst")
    if case == "garbage-agent":
        aid, rel = "hopper/ppo/smoke/4", "agents/hopper/ppo/smoke/seed4.safetensors"
        (src / rel).write_bytes(b"not a checkpoint, but its sha256 is in the row")
        insert_agent_row(src, aid, rel, file_sha256(src / rel))
    elif case == "other-agents-header":  # a valid checkpoint, but of another agent (its header says so)
        aid, rel = "hopper/ppo/smoke/5", "agents/hopper/ppo/smoke/seed5.safetensors"
        shutil.copyfile(src / "agents/hopper/ppo/smoke/seed0.safetensors", src / rel)
        insert_agent_row(src, aid, rel, file_sha256(src / rel))
    else:
        sha = agent_sha(src)
        key = artifact_key(AGENT, sha, "sa_rl", {"seed": 0})
        rel = f"attacks/sa_rl/{AGENT}/{key[:20]}.safetensors"
        (src / rel).parent.mkdir(parents=True)
        (src / rel).write_bytes(b"\x80\x04pickled?")
        insert_artifact_row(src, key, AGENT, sha, "sa_rl", {"seed": 0}, rel, file_sha256(src / rel))

    res = merge(src, dst)
    assert res.exit_code == 0, res.output
    assert "conflict:" in res.stderr and "0 agents, 0 fitted attacks" in res.stderr, res.stderr
    assert sql(dst, "SELECT agent_id FROM agents") == [(AGENT,)]
    assert not (dst / rel).exists()


# ------------------------------------------------------------------- 2. agent identity, real conflicts
def test_same_weights_in_another_checkpoint_file_merge_as_one_agent(base, tmp_path):
    """'there' trained the same agent deterministically: same tensors, other start time in the header."""
    here = copy_home(base, tmp_path / "here")
    there = copy_home(base, tmp_path / "there")
    ck = there / "agents/hopper/ppo/smoke/seed0.safetensors"
    tensors, meta = read_tensors(ck)
    meta["provenance"] = {**meta["provenance"], "started": "2099-01-01T00:00:00+0000"}
    atomic_save_tensors(ck, tensors, meta)
    with ResultsStore(there) as store:
        store.register_agent(meta, ck)
        theirs = store.get_agent(AGENT).sha256
        evaluate_cell(store, AGENT, "none", episodes=2)  # equal returns to here's: no conflict
        evaluate_cell(store, AGENT, "random", episodes=2)
        certify_agent(store, AGENT, ["ibp"], states=16)
    ours = agent_sha(here)
    assert theirs != ours
    fit = {"seed": 0, "preset": "smoke"}  # a fitted attack computed on their checkpoint
    key = artifact_key(AGENT, theirs, "sa_rl", fit)
    rel = f"attacks/sa_rl/{AGENT}/{key[:20]}.safetensors"
    atomic_save_tensors(there / rel, {"w": torch.ones(3)}, {"format": ATTACK_FORMAT})
    insert_artifact_row(there, key, AGENT, theirs, "sa_rl", fit, rel, file_sha256(there / rel))

    res = merge(there, here)
    assert res.exit_code == 0, res.output
    assert "conflict" not in res.stderr, res.stderr
    assert "0 agents, 1 fitted attack, 1 cell, 1 certificate merged" in res.stderr, res.stderr
    assert "same agent" in res.stderr
    assert agent_sha(here) == ours  # ours kept
    assert sorted(sql(here, "SELECT attack, agent_sha256 FROM cells")) == [("none", ours), ("random", ours)]
    assert sql(here, "SELECT agent_sha256 FROM certificates") == [(ours,)]
    new_key = artifact_key(AGENT, ours, "sa_rl", fit)
    new_rel = f"attacks/sa_rl/{AGENT}/{new_key[:20]}.safetensors"
    assert sql(here, "SELECT artifact_key, agent_sha256, path FROM attack_artifacts") == [(new_key, ours, new_rel)]
    assert file_sha256(here / new_rel) == file_sha256(there / rel)
    rep = cli("report", "--format", "csv", "--home", here)
    assert rep.exit_code == 0 and "random" in rep.stdout, rep.output

    again = merge(there, here)  # idempotent
    assert again.exit_code == 0, again.output
    assert "0 agents, 0 fitted attacks, 0 cells, 0 certificates merged" in again.stderr
    assert "conflict" not in again.stderr


def test_a_cell_with_other_returns_is_reported_as_a_conflict(base, tmp_path):
    here = copy_home(base, tmp_path / "here")
    there = copy_home(base, tmp_path / "there")
    sql(there, "UPDATE episodes SET ret = ret + 1.0 WHERE idx = 0")
    sql(there, "UPDATE cells SET mean = mean + 0.5")
    before = sql(here, "SELECT mean FROM cells")

    res = merge(there, here)
    assert res.exit_code == 0, res.output
    conflicts = [line for line in lines(res.stderr) if line.strip().startswith("conflict:")]
    assert len(conflicts) == 1 and "returns differ" in conflicts[0] and AGENT in conflicts[0], res.stderr
    assert "1 conflict" in res.stderr
    assert sql(here, "SELECT mean FROM cells") == before  # ours kept


def test_an_agent_with_other_weights_is_still_a_conflict(base, tmp_path):
    here = copy_home(base, tmp_path / "here")
    there = copy_home(base, tmp_path / "there")
    ck = there / "agents/hopper/ppo/smoke/seed0.safetensors"
    tensors, meta = read_tensors(ck)
    tensors = {k: (v + 0.25 if k == "policy.log_std" else v) for k, v in tensors.items()}
    atomic_save_tensors(ck, tensors, meta)
    with ResultsStore(there) as store:
        store.register_agent(meta, ck)
        evaluate_cell(store, AGENT, "random", episodes=2)
    res = merge(there, here)
    assert res.exit_code == 0, res.output
    assert "other checkpoint" in res.stderr and "0 agents, 0 fitted attacks, 0 cells" in res.stderr


# ----------------------------------------------------------------- 3. a corrupt source database
def _garbage(db: Path) -> None:
    db.write_bytes(b"this is not an SQLite database at all, " * 100)


def _no_episodes(db: Path) -> None:
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("DROP TABLE episodes")
        conn.commit()


def _cells_without_mean(db: Path) -> None:
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("ALTER TABLE cells RENAME COLUMN mean TO average")
        conn.commit()


def _empty(db: Path) -> None:
    db.write_bytes(b"")


@pytest.mark.parametrize("damage, fragment", [
    (_garbage, "not a readable robbench database (file is not a database)"),
    (_no_episodes, "not a robbench results store (no table 'episodes')"),
    (_cells_without_mean, "not a robbench results store (table 'cells' lacks column mean)"),
    (_empty, "empty (0 bytes)"),
], ids=["garbage", "missing-table", "missing-column", "zero-length"])
def test_corrupt_source_database_is_one_line_and_writes_nothing(base, tmp_path, damage, fragment):
    src = copy_home(base, tmp_path / "src")
    for extra in ("-wal", "-shm"):
        (src / (DB_NAME + extra)).unlink(missing_ok=True)
    damage(src / DB_NAME)
    dst = copy_home(base, tmp_path / "dst")
    before = snapshot(dst)
    res = merge(src, dst)
    assert_one_line_error(res, f"cannot merge {str(src)!r}", fragment)
    assert snapshot(dst) == before


# ------------------------------------------------------------ 4. a zero-length results.sqlite
@pytest.mark.parametrize("command", [
    ["report", "--format", "markdown"], ["list", "agents"], ["evaluate", "--attacks", "none", "--episodes", "2"],
    ["certify", "--method", "ibp", "--states", "16"], ["merge", "SOURCE"],
], ids=["report", "list-agents", "evaluate", "certify", "merge-into"])
def test_zero_length_database_is_one_line(base, tmp_path, command):
    home = copy_home(base, tmp_path / "home")
    for extra in ("-wal", "-shm"):
        (home / (DB_NAME + extra)).unlink(missing_ok=True)
    (home / DB_NAME).write_bytes(b"")
    source = copy_home(base, tmp_path / "source")
    args = [str(source) if a == "SOURCE" else a for a in command]
    res = cli(*args, "--home", home)
    assert_one_line_error(res, str(home), "empty (0 bytes)", "not a robbench results store")
    assert (home / DB_NAME).stat().st_size == 0  # never re-initialised over the checkpoints it indexed


# ------------------------------------------------------------------- 5. hand-edited rows
def _cell_key(home: Path) -> str:
    return sql(home, "SELECT cell_key FROM cells")[0][0]


@pytest.mark.parametrize("table, column, value, command, fragment", [
    ("cells", "attack_config", "{not json", "report", "is not valid JSON"),
    ("cells", "protocol", "[0.005, 2]", "report", "expected a JSON object"),
    ("cells", "protocol", '{"eps": 0.005}', "report", "lacks 'episodes'"),
    ("cells", "info", "nope", "report", "is not valid JSON"),
    ("cells", "mean", "abc", "report", "expected a number"),
    ("episodes", "ret", "oops", "report", "expected a number"),
    ("agents", "meta", "{", "list", "is not valid JSON"),
    ("agents", "seed", "x", "list", "expected an integer"),
    ("agents", "meta", "{", "report", "is not valid JSON"),
])
def test_hand_edited_rows_are_one_line_naming_table_and_row(base, tmp_path, table, column, value, command,
                                                            fragment):
    home = copy_home(base, tmp_path / "home")
    key = _cell_key(home)
    sql(home, f"UPDATE {table} SET {column} = ?", (value,))
    args = ["report", "--format", "markdown"] if command == "report" else ["list", "agents"]
    line = assert_one_line_error(cli(*args, "--home", home), f"table {table}", f"column {column!r}", fragment)
    assert (AGENT in line) if table == "agents" else (key[:12] in line), line


# ------------------------------------------------------------------- 6. disk full creating the jobs table
def test_disk_full_while_creating_the_jobs_table_is_one_line(tmp_path, monkeypatch):
    """The database cannot grow by a page (SQLite's max_page_count on every connection to it): SQLite's
    own SQLITE_FULL, as on a full disk, when `train` first creates the jobs table."""
    home = tmp_path / "home"
    ResultsStore(home).close()  # a new home: the store's tables, no jobs table yet
    real_connect = sqlite3.connect

    def connect_full(database, *args, **kwargs):
        conn = real_connect(database, *args, **kwargs)
        if Path(str(database)).name == DB_NAME and Path(str(database)).resolve().parent == home.resolve():
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect_full)
    res = cli("train", "ppo", "hopper", "--preset", "smoke", "--workers", "1", "--home", home)
    monkeypatch.undo()
    assert res.exit_code == 2, (res.output, res.exception)
    assert isinstance(res.exception, SystemExit), res.exception
    err = [line for line in lines(res.stderr) if line.startswith("error")]
    assert err == [f"error: could not write results: disk full or file too large while writing "
                   f"{str(home.resolve() / DB_NAME)!r}"], res.stderr
    assert "Traceback" not in res.output
    with closing(sqlite3.connect(home / DB_NAME)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "jobs" not in tables and not (home / "agents").exists()
