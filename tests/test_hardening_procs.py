"""Hardening (issue 14): worker processes die with the driver, however it ends, and inputs that
would exhaust memory or the stack, or a misspelt name, get one line instead of a traceback.

Nothing here times anything. Waits poll for a behaviour (workers started, a line printed, processes
gone) and give up only after a bound far beyond any normal run, saying the run hung.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from robbench.cli import app
from robbench.grid import MAX_JOBS
from robbench.registry import trainers

HUNG = 600  # seconds: a bound only against a hang, never a measurement
GONE = 60  # seconds for killed processes to disappear (they go in well under one)

LONG_GRID = """
envs = ["hopper"]
methods = ["ppo"]
seeds = "0-1"
preset = "paper"   # 2M steps per agent: the workers are busy for as long as the test needs
attacks = ["none"]
episodes = 2
"""


# ------------------------------------------------------------------------------------ processes
def _stat(pid: str) -> tuple[int, str, int, int] | None:
    """(pid, state, ppid, session) of a process, from /proc (None if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(pid), fields[0], int(fields[1]), int(fields[3])


def session_procs(sid: int) -> dict[int, int]:
    """Live (non-zombie) processes of session `sid`: pid -> parent pid."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(entry)
            if st is not None and st[3] == sid and st[1] != "Z":
                out[st[0]] = st[2]
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def loading_torch(pid: int) -> bool:
    """Whether libtorch is mapped: the process is inside `import torch` (or past it)."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def workers(driver: int) -> list[int]:
    """Pool workers of a driver: the children of its forkserver."""
    procs = session_procs(driver)
    servers = {pid for pid, ppid in procs.items() if ppid == driver and "forkserver" in cmdline(pid)}
    return [pid for pid, ppid in procs.items() if ppid in servers]


def wait_for(condition, what: str, bound: float = HUNG):
    deadline = time.monotonic() + bound
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"hung: {what} did not happen within {bound:.0f} s")
        time.sleep(0.05)


def assert_none_left(sid: int) -> None:
    """No process of the run's session is alive (zombies, reparented to init, are dead)."""
    deadline = time.monotonic() + GONE
    while (left := session_procs(sid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, "processes of the run outlived its driver: " + "; ".join(
        f"{pid}: {cmdline(pid)[:100]}" for pid in left)


def _default_sigint() -> None:
    # A test suite started in the background (nohup, `&`) passes SIGINT on as ignored; a terminal's
    # Ctrl-C reaches a CLI that handles it, so give the CLI the default back.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    """The CLI in a new session (its id is the driver's pid), stderr to `log`."""
    with open(log, "w") as err:
        return subprocess.Popen([sys.executable, "-m", "robbench.cli", *args], stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True, preexec_fn=_default_sigint,
                                env={**os.environ, **(env or {})})


def finish(proc: subprocess.Popen) -> None:
    """Whatever the test's outcome: nothing of the run is left running on the machine."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


@pytest.fixture()
def long_grid(tmp_path) -> Path:
    path = tmp_path / "long.toml"
    path.write_text(LONG_GRID)
    return path


def test_kill9_on_the_driver_leaves_no_worker_forkserver_or_tracker(long_grid, tmp_path):
    """kill -9 of the driver alone (the OOM killer, a lost node): its workers, the forkserver and
    the resource tracker go with it instead of training on and racing a re-run."""
    proc = start(["run", str(long_grid), "--workers", "2", "--home", str(tmp_path / "home")], tmp_path / "err")
    try:
        wait_for(lambda: len(workers(proc.pid)) >= 2, "two pool workers starting")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert_none_left(proc.pid)
    finally:
        finish(proc)


def test_sigterm_on_evaluate_stops_its_workers_keeps_results_and_says_so(smoke_home, tmp_path):
    """SIGTERM (Slurm, systemd) on `evaluate --workers 2`: one line, exit 143, finished cells kept,
    no worker left computing."""
    home = tmp_path / "home"
    shutil.copytree(smoke_home, home)
    log = tmp_path / "err"
    proc = start(["evaluate", "--attacks", "none,sa_rl", "--param", "sa_rl.preset=medium", "--episodes", "5",
                  "--workers", "2", "--home", str(home)], log)
    try:
        wait_for(lambda: "evaluate hopper/ppo/smoke/0 × none:" in log.read_text(), "the 'none' cell finishing")
        wait_for(lambda: len(workers(proc.pid)) >= 2, "two workers fitting the adversaries")
        os.kill(proc.pid, signal.SIGTERM)
        wait_for(lambda: proc.poll() is not None, "the driver exiting after SIGTERM")
        assert_none_left(proc.pid)
    finally:
        finish(proc)
    err = log.read_text()
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1] == "terminated: finished cells and agents are kept; re-run to continue"
    with sqlite3.connect(home / "results.sqlite") as conn:
        cells = conn.execute("SELECT cell_key, episodes FROM cells WHERE attack = 'none'").fetchall()
        assert len(cells) == 1
        (key, n), = cells
        assert conn.execute("SELECT COUNT(*) FROM episodes WHERE cell_key = ?", (key,)).fetchone()[0] == n == 5


def test_ctrl_c_while_the_pool_starts_is_one_line(long_grid, tmp_path):
    """A terminal's Ctrl-C (SIGINT to the whole process group) while the forkserver is still
    importing torch: the driver's one line, no forkserver or worker traceback, nothing left."""
    log = tmp_path / "err"
    proc = start(["run", str(long_grid), "--workers", "2", "--home", str(tmp_path / "home")], log)
    try:
        wait_for(lambda: any(ppid == proc.pid and "forkserver" in cmdline(pid) and loading_torch(pid)
                             for pid, ppid in session_procs(proc.pid).items()), "the forkserver importing torch")
        os.killpg(proc.pid, signal.SIGINT)
        wait_for(lambda: proc.poll() is not None, "the driver exiting after Ctrl-C")
        assert_none_left(proc.pid)
    finally:
        finish(proc)
    err = log.read_text()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("interrupted: finished cells and agents are kept")


# ---------------------------------------------------------------------------------- bad inputs
runner = CliRunner()


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    err = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), result.stderr
    return err[0]


def _address_space() -> int:
    """This process's virtual size (torch imported, as in the CLI), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize in /proc/self/status")


def capped(args: list[str]) -> subprocess.CompletedProcess:
    """The CLI with 2 GiB of address space beyond what a torch process takes: a command that
    materialises a huge seed range (~5 GB) runs out of memory here instead of taking the machine's."""
    cap = _address_space() + (2 << 30)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    return subprocess.run([sys.executable, "-m", "robbench.cli", *args], capture_output=True, text=True,
                          preexec_fn=limit, timeout=HUNG)


def assert_capped(res: subprocess.CompletedProcess, *expected: str) -> None:
    err = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(err) == 1, res.stderr[-2000:]
    assert err[0].startswith("error: ") and f"at most {MAX_JOBS} jobs" in err[0], err[0]
    for text in expected:
        assert text in err[0], err[0]


def test_huge_seed_range_in_a_grid_is_one_line_not_memory_error(tmp_path):
    grid = tmp_path / "huge.toml"
    grid.write_text('envs = ["hopper"]\nmethods = ["ppo"]\nseeds = "0-100000000"\npreset = "smoke"\n')
    res = capped(["run", str(grid), "--dry-run", "--home", str(tmp_path / "home")])
    assert_capped(res, "huge.toml", "100000001 seeds")


def test_huge_seed_range_on_train_is_one_line_not_memory_error(tmp_path):
    res = capped(["train", "ppo", "hopper", "--preset", "smoke", "--seeds", "0-100000000",
                  "--home", str(tmp_path / "home")])
    assert_capped(res, "--seeds", "100000001 seeds")
    assert not (tmp_path / "home" / "agents").exists()


def test_grid_of_more_jobs_than_the_cap_is_refused_before_planning_them(tmp_path):
    """Few seeds each, but seeds × methods × attacks over the cap: refused from the counts alone."""
    seeds = MAX_JOBS // 4
    grid = tmp_path / "wide.yaml"
    grid.write_text(f"envs: [hopper]\nmethods: [ppo, barppo]\nseeds: '0-{seeds - 1}'\npreset: smoke\n"
                    "attacks: [none, random]\n")
    res = capped(["run", str(grid), "--dry-run", "--home", str(tmp_path / "home")])
    assert_capped(res, "wide.yaml", f"{2 * seeds * 3} jobs")


def test_the_cap_counts_exactly_the_jobs_a_grid_plans(tmp_path):
    """The count the cap is checked against is the number of jobs the grid then makes."""
    from robbench.grid import count_jobs, grid_jobs, parse_grid
    from robbench.store import ResultsStore

    raw = {"envs": ["hopper"], "methods": ["ppo", "barppo"], "seeds": "0-2,5", "preset": "smoke",
           "attacks": ["none", "random", "sa_rl", "pa_ad", "targeted"], "attack_params": {"sa_rl": {"preset": "quick"}},
           "certify": ["ibp"]}
    grid = parse_grid(raw, "g.toml")
    with ResultsStore(tmp_path) as store:
        jobs = grid_jobs(grid, store)
    assert count_jobs(grid) == len({j.key for j in jobs})  # targeted's ranks share one fit job
    assert {j.kind for j in jobs} == {"train", "fit", "evaluate", "certify"}


@pytest.mark.parametrize("suffix", ["toml", "yaml"])
def test_grid_nested_10000_deep_is_one_line(tmp_path, suffix):
    deep = "[" * 10000 + "]" * 10000
    grid = tmp_path / f"deep.{suffix}"
    grid.write_text(f'envs = {deep}\n' if suffix == "toml" else f"envs: {deep}\n")
    line = one_line_error(runner.invoke(app, ["run", str(grid), "--dry-run", "--home", str(tmp_path / "h")]))
    assert line == f"error: deep.{suffix}: nested too deeply; a grid has at most 32 levels"


@pytest.mark.parametrize("table", ["[trainer_params.barppo]\nkappa.", "attacks = ['random']\n[attack_params.random]\n"],
                         ids=["trainer_params", "attack_params"])
def test_grid_whose_tables_nest_deeper_than_a_grid_can_is_one_line(tmp_path, table):
    """Dotted keys build a table 3000 deep without the parser recursing; a trainer or attack setting
    that deep would overflow the stack later (checking or hashing it): the grid says so first."""
    grid = tmp_path / "dotted.toml"
    keys = ".".join(f"k{i}" for i in range(3000))
    grid.write_text(f'envs = ["hopper"]\nmethods = ["barppo"]\npreset = "smoke"\n{table}{keys} = 1\n')
    line = one_line_error(runner.invoke(app, ["run", str(grid), "--dry-run", "--home", str(tmp_path / "h")]))
    assert line == "error: dotted.toml: nested too deeply; a grid has at most 32 levels"


def test_demo_refuses_a_misspelt_method_and_lists_the_valid_ones(tmp_path):
    home = tmp_path / "home"
    result = runner.invoke(app, ["demo", "--methods", "ppo,ppoo", "--preset", "smoke", "--episodes", "2",
                                 "--home", str(home)])
    line = one_line_error(result)
    assert "'ppoo'" in line and all(name in line for name in trainers()), line
    assert not (home / "agents").exists()  # nothing was trained before the typo was caught


def test_a_grid_of_the_standard_suite_plans_the_cells_evaluate_plans(store):
    """`attacks = "standard"` in a grid: the same fit and evaluation jobs as `robbench evaluate
    --attacks standard` (so grid cells are suite cells, and a grid resumes what evaluate began);
    attack_params are laid over the suite's settings."""
    from robbench.grid import count_jobs, grid_jobs, parse_grid
    from robbench.plan import plan_attacks
    from robbench.suite import get_suite

    aid = "hopper/ppo/smoke/0"
    grid = parse_grid({"agents": [aid], "attacks": "standard"}, "g.toml")
    jobs = grid_jobs(grid, store)
    assert count_jobs(grid) == len({j.key for j in jobs})
    planned = plan_attacks(store, aid, "standard").jobs
    assert {j.key for j in jobs} == {j.key for j in planned}
    assert {j.typed.attack for j in jobs if j.kind == "evaluate"} == set(get_suite().attacks)
    tuned = parse_grid({"agents": [aid], "attacks": "standard", "attack_params": {"ars_director": {"iterations": 2}}},
                       "g.toml")
    assert tuned.attack_params["ars_director"]["iterations"] == 2
    assert tuned.attack_params["ars_director"]["search_seed"] == grid.attack_params["ars_director"]["search_seed"]
