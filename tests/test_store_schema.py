"""The results database's schema version (`PRAGMA user_version`): new homes, homes written before
versions existed (the committed boards' among them), newer homes, and homes no migration can fix."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from robbench.cli import app
from robbench.errors import RobbenchError
from robbench.store import DB_NAME, SCHEMA_VERSION, JobRecord, ResultsStore

REPO = Path(__file__).resolve().parent.parent
COMMITTED = sorted(REPO.glob("reports/*/results-home/results.sqlite"))
AGENT = "hopper/ppo/smoke/0"


def sql(db: Path, *statements: str) -> list[tuple]:
    with closing(sqlite3.connect(db)) as conn:
        rows = [row for s in statements for row in conn.execute(s).fetchall()]
        conn.commit()
    return rows


def version(db: Path) -> int:
    return sql(db, "PRAGMA user_version")[0][0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def contents(store: ResultsStore) -> tuple:
    """Everything a report or a grid reads from a home, as the store gives it (paths relative to the home)."""
    def here(records):
        return [replace(r, path=r.path.relative_to(store.home)) for r in records]

    return (here(store.agents()), store.cells(), [store.episodes(c["cell_key"]) for c in store.cells()[:20]],
            store.certificates(), here(store.artifacts()), store.jobs())


@pytest.fixture()
def home(smoke_home, tmp_path) -> Path:
    dst = tmp_path / "home"
    shutil.copytree(smoke_home, dst)
    with ResultsStore(dst) as store:
        store.write_job(JobRecord("k" * 64, "train", f"train {AGENT}", {"env": "hopper"}, "done", "", {"summary": "x"}))
    return dst


def test_a_new_home_gets_the_current_version(tmp_path):
    ResultsStore(tmp_path / "new").close()
    assert version(tmp_path / "new" / DB_NAME) == SCHEMA_VERSION


def test_a_home_from_before_versions_is_read_as_it_stands_and_stamped_when_written(home):
    db = home / DB_NAME
    with ResultsStore(home, readonly=True) as store:
        expected = contents(store)
    sql(db, "PRAGMA user_version = 0", "DROP TABLE certificates")  # as an early robbench left it
    before = digest(db)
    with ResultsStore(home, readonly=True) as store:
        assert contents(store) == expected and store.certificates() == []
    assert digest(db) == before and version(db) == 0  # reading never migrates
    with ResultsStore(home) as store:
        assert contents(store) == expected
    assert version(db) == SCHEMA_VERSION
    assert sql(db, "SELECT name FROM sqlite_master WHERE name = 'certificates'") == [("certificates",)]


@pytest.mark.skipif(not COMMITTED, reason="no committed results homes in this checkout")
@pytest.mark.parametrize("db", COMMITTED, ids=[p.parent.parent.name for p in COMMITTED])
def test_a_committed_results_home_opens_unchanged_and_migrates_on_a_copy(db, tmp_path):
    before = digest(db)
    with ResultsStore(db.parent, readonly=True) as store:
        assert store.agents() and store.cells()
        expected = contents(store)
    assert digest(db) == before  # the committed home itself is never written
    copy = tmp_path / "home"
    copy.mkdir()
    shutil.copyfile(db, copy / DB_NAME)
    assert version(copy / DB_NAME) in range(SCHEMA_VERSION + 1)
    with ResultsStore(copy) as store:
        assert contents(store) == expected
    assert version(copy / DB_NAME) == SCHEMA_VERSION
    with ResultsStore(copy, readonly=True) as store:
        assert contents(store) == expected


@pytest.mark.parametrize("readonly", [False, True], ids=["write", "read"])
def test_a_home_from_a_newer_robbench_is_one_line(home, readonly):
    db = home / DB_NAME
    sql(db, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = digest(db)
    with pytest.raises(RobbenchError) as err:
        ResultsStore(home, readonly=readonly)
    text = str(err.value)
    assert "\n" not in text and str(home) in text, text
    assert f"schema version {SCHEMA_VERSION + 1}, newer than this robbench reads (version {SCHEMA_VERSION})" in text
    assert digest(db) == before


def test_a_newer_home_through_the_cli_and_as_a_merge_source(home, tmp_path):
    sql(home / DB_NAME, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    res = CliRunner().invoke(app, ["list", "agents", "--home", str(home)])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert [line for line in res.stderr.splitlines() if line.strip()] == [
        f"error: the database of results home {str(home)!r} has schema version {SCHEMA_VERSION + 1}, newer than "
        f"this robbench reads (version {SCHEMA_VERSION}); open it with the robbench that wrote it, or a newer one"]
    dst = tmp_path / "dst"
    ResultsStore(dst).close()
    res = CliRunner().invoke(app, ["merge", str(home), "--home", str(dst)])
    assert res.exit_code == 2, res.output
    assert f"cannot merge {str(home)!r}: its {DB_NAME} has schema version {SCHEMA_VERSION + 1}" in res.stderr
    with ResultsStore(dst, readonly=True) as store:
        assert store.agents() == []


def test_a_negative_version_is_one_line(home):
    sql(home / DB_NAME, "PRAGMA user_version = -3")
    with pytest.raises(RobbenchError, match=f"schema version -3, which no robbench writes .this robbench reads "
                                            f"version {SCHEMA_VERSION}."):
        ResultsStore(home, readonly=True)


def test_an_old_home_whose_tables_no_migration_fixes_is_one_line_and_left_as_it_was(home):
    db = home / DB_NAME
    sql(db, "PRAGMA user_version = 0", "ALTER TABLE cells DROP COLUMN wall_s")
    before = digest(db)
    for readonly in (True, False):
        with pytest.raises(RobbenchError) as err:
            ResultsStore(home, readonly=readonly)
        assert str(err.value) == (
            f"the database of results home {str(home)!r} is not a robbench results store (table 'cells' lacks "
            f"column wall_s); it has schema version 0, which this robbench (schema version {SCHEMA_VERSION}) "
            "cannot migrate")
    assert version(db) == 0 and digest(db) == before  # the migration was rolled back whole


def test_rows_are_written_by_column_name(home):
    """A table whose columns stand in another order (rebuilt by hand, or by another tool) still gets
    every value in its own column."""
    db = home / DB_NAME
    types = {r[1]: r[2] for r in sql(db, "PRAGMA table_info(agents)")}
    swapped = list(types)[::-1]
    columns = [f"{c} {types[c]} {'PRIMARY KEY' if c == 'agent_id' else 'NOT NULL'}" for c in swapped]
    sql(db, f"CREATE TABLE agents2 ({', '.join(columns)})",
        f"INSERT INTO agents2 SELECT {', '.join(swapped)} FROM agents", "DROP TABLE agents",
        "ALTER TABLE agents2 RENAME TO agents")
    with ResultsStore(home) as store:
        rec = store.get_agent(AGENT)
        store.register_agent({**rec.meta, "seed": 0}, rec.path)
        again = store.get_agent(AGENT)
    assert (again.agent_id, again.env, again.method, again.budget, again.seed, again.sha256, again.path) == (
        rec.agent_id, rec.env, rec.method, rec.budget, rec.seed, rec.sha256, rec.path)


def test_the_jobs_log_round_trips_as_records(home):
    with ResultsStore(home) as store:
        failed = store.write_job(JobRecord("f" * 64, "evaluate", "evaluate x", {"attack": "mad"}, "failed", "boom",
                                           {"wall_s": 1.5}))
        assert failed.updated
        assert store.jobs(status="failed") == [failed]
        assert [j.status for j in store.jobs()] == ["failed", "done"]  # ordered by kind, then label
