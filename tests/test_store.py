import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from robbench.errors import RobbenchError
from robbench.evaluate import evaluate_cell
from robbench.store import DB_NAME, ResultsStore, resolve_home


def test_finished_cell_is_not_rerun_unless_forced(store):
    key, first = evaluate_cell(store, "hopper/ppo/smoke/0", "random", episodes=3)
    assert first is not None
    key2, second = evaluate_cell(store, "hopper/ppo/smoke/0", "random", episodes=3)
    assert key2 == key and second is None
    key3, third = evaluate_cell(store, "hopper/ppo/smoke/0", "random", episodes=3, force=True)
    assert key3 == key and third is not None
    n_cells = store.conn.execute("SELECT COUNT(*) FROM cells WHERE cell_key=?", (key,)).fetchone()[0]
    n_eps = store.conn.execute("SELECT COUNT(*) FROM episodes WHERE cell_key=?", (key,)).fetchone()[0]
    assert (n_cells, n_eps) == (1, 3)
    assert [e["ret"] for e in store.episodes(key)] == pytest.approx(list(third.returns))


def test_protocol_and_attack_config_are_part_of_the_key(store):
    k1, _ = evaluate_cell(store, "hopper/ppo/smoke/0", "random", episodes=2)
    k2, _ = evaluate_cell(store, "hopper/ppo/smoke/0", "random", episodes=2, eps=0.01)
    k3, _ = evaluate_cell(store, "hopper/ppo/smoke/0", "none", episodes=2)
    assert len({k1, k2, k3}) == 3


def _cell(key, n):
    return {
        "cell_key": key, "agent_id": "a", "agent_sha256": "x", "env": "hopper", "attack": "none",
        "attack_config": {"eps": 0.0}, "protocol": {"eps": 0.0}, "eps": 0.0, "episodes": n, "mean": 0.0,
        "std": 0.0, "min": 0.0, "max": 0.0, "env_steps": 0, "wall_s": 0.0, "info": {},
    }


def test_failure_inside_a_write_leaves_no_partial_cell(tmp_path):
    with ResultsStore(tmp_path) as st:
        episodes = [(0, 0, 1.0, 10), (1, 1, 2.0, 10), (1, 2, 3.0, 10)]  # duplicate idx: fails midway
        with pytest.raises(sqlite3.IntegrityError):
            st.write_cell(_cell("k", 3), episodes)
        assert st.conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0] == 0
        assert st.conn.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] == 0


WRITER = textwrap.dedent(
    """
    import sys
    from robbench.store import ResultsStore
    home = sys.argv[1]
    with ResultsStore(home) as st:
        i = 0
        while True:
            n = 200
            cell = {
                "cell_key": f"k{i}", "agent_id": "a", "agent_sha256": "x", "env": "hopper", "attack": "none",
                "attack_config": {"eps": 0.0}, "protocol": {"eps": 0.0}, "eps": 0.0, "episodes": n,
                "mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0, "env_steps": 0, "wall_s": 0.0,
                "info": {"pad": "x" * 20000},
            }
            st.write_cell(cell, [(j, j, float(j), 1) for j in range(n)])
            i += 1
            if i == 1:  # one whole cell is stored before any kill, however loaded the machine
                print("ready", flush=True)
    """
)


def test_kill_during_writes_leaves_only_whole_cells(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    for delay in (0.05, 0.13, 0.31):
        proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    con = sqlite3.connect(tmp_path / DB_NAME)
    cells = con.execute("SELECT cell_key, episodes FROM cells").fetchall()
    assert cells, "the writer should have finished some cells before being killed"
    for key, n in cells:
        assert con.execute("SELECT COUNT(*) FROM episodes WHERE cell_key=?", (key,)).fetchone()[0] == n
    orphans = con.execute("SELECT COUNT(*) FROM episodes WHERE cell_key NOT IN (SELECT cell_key FROM cells)")
    assert orphans.fetchone()[0] == 0
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_home_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBBENCH_HOME", str(tmp_path / "env-home"))
    assert resolve_home(str(tmp_path / "flag")) == tmp_path / "flag"
    assert resolve_home(None) == tmp_path / "env-home"
    monkeypatch.delenv("ROBBENCH_HOME")
    monkeypatch.chdir(tmp_path)
    assert resolve_home(None).name == "robbench-results"
    with pytest.raises(RobbenchError, match="does not exist"):
        resolve_home(None, must_exist=True)


def test_tampered_agent_file_is_refused(tmp_path):
    from robbench.train import train_agent

    with ResultsStore(tmp_path) as st:
        rec, _ = train_agent(st, "ppo", "hopper", preset="smoke", steps=2048)
        data = bytearray(rec.path.read_bytes())
        data[-1] ^= 1
        rec.path.write_bytes(bytes(data))
        with pytest.raises(RobbenchError, match="sha256 mismatch"):
            st.load_agent(rec.agent_id)


def test_dropping_an_agent_drops_everything_about_it(smoke_home, tmp_path):
    import shutil

    home = tmp_path / "home"
    shutil.copytree(smoke_home, home)
    agent = "hopper/ppo/smoke/0"
    with ResultsStore(home) as st:
        evaluate_cell(st, agent, "none", episodes=2)
        rec = st.get_agent(agent)
        st.write_certificate({k: 0 for k in ResultsStore.CERTIFICATE_FIELDS}
                             | {"agent_id": agent, "agent_sha256": rec.sha256, "method": "ibp", "info": {}})
        st.write_artifact("a" * 64, agent, rec.sha256, "critic", {}, rec.path, rec.sha256, {})
        assert st.drop_rows(attack="critic", agent_id="another/agent") == 0
        assert [a.agent_id for a in st.artifacts()] == [agent]
        n = len([c for c in st.cells() if c["agent_id"] == agent])
        assert n > 0 and st.drop_rows(agent_id=agent) == n
        assert (st.agents(), st.cells(), st.certificates(), st.artifacts()) == ([], [], [], [])
        assert st.conn.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] == 0
        with pytest.raises(ValueError):
            st.drop_rows()
