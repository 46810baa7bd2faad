"""Bad input, as the user sees it.

Every bad input either stops the command with one line on stderr (`error: ...`, exit status 2, no
traceback, nothing run), or, inside a grid of jobs, fails that one job: it is recorded in the
`jobs` table and printed as one `✗ <job>: <reason>` line, the other jobs' results are kept and the
command exits 1. Covered: malformed grid files, unknown names, bad ε, checkpoints from another env
or another code version, a pickle crafted to run code, a read-only results home, a full disk, and
an env that starts returning NaN.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import os
import pickle
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from typer.testing import CliRunner

from robbench.checkpoint import FORMAT, atomic_save_tensors, read_tensors
from robbench.cli import app
from robbench.errors import RobbenchError, io_error
from robbench.registry import attacks, trainers
from robbench.store import DB_NAME, ResultsStore

runner = CliRunner()
AGENT = "hopper/ppo/smoke/0"


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def assert_one_line_error(result, expected: str | None = None, startswith: str | None = None) -> str:
    """Exit 2, nothing on stdout, exactly one line on stderr (`expected`, or starting so), no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # a crash would be caught here
    assert result.stdout == ""
    err = lines(result.stderr)
    assert len(err) == 1, result.stderr
    if expected is not None:
        assert err[0] == f"error: {expected}"
    if startswith is not None:
        assert err[0].startswith(f"error: {startswith}"), err[0]
    assert "Traceback" not in result.output
    return err[0]


def assert_job_failures(result, failed: dict[str, str], done: list[str]) -> None:
    """Exit 1; one `✗ label: reason` line per failed job (exactly as given), `✓` for the others."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    err = lines(result.stderr)
    assert sorted(line for line in err if line.startswith("✗ ")) == sorted(
        f"✗ {label}: {reason}" for label, reason in failed.items())
    for label in done:
        assert any(line.startswith(f"✓ {label}: ") for line in err), result.stderr
    assert f"{len(failed)} job{'s' if len(failed) != 1 else ''} did not complete" in result.stderr
    assert "Traceback" not in result.output


def jobs_table(home: Path) -> dict[str, tuple[str, str]]:
    with closing(sqlite3.connect(home / DB_NAME)) as conn:
        rows = conn.execute("SELECT label, status, error FROM jobs").fetchall()
    return {label: (status, error) for label, status, error in rows}


def cells(home: Path) -> list[tuple[str, str, int]]:
    with closing(sqlite3.connect(home / DB_NAME)) as conn:
        return sorted(conn.execute("SELECT agent_id, attack, episodes FROM cells").fetchall())


@pytest.fixture()
def home(smoke_home, tmp_path) -> Path:
    """A private copy of the session's smoke home (one agent, hopper/ppo/smoke/0)."""
    dst = tmp_path / "home"
    shutil.copytree(smoke_home, dst)
    return dst


def add_agent(home: Path, agent_id: str, file_format: str | None = None, file_env: str | None = None,
              raw: bytes | None = None) -> Path:
    """Register a crafted copy of the smoke agent under `agent_id` (<env>/<method>/<budget>/<seed>): the
    file says it holds `file_env` and `file_format` when given, or is the `raw` bytes."""
    with ResultsStore(home) as store:
        good = store.get_agent(AGENT)
        tensors, meta = read_tensors(good.path)
        e, method, budget, seed = agent_id.split("/")
        meta = {**meta, "agent_id": agent_id, "env": e, "seed": int(seed)}
        path = store.agent_path(e, method, budget, int(seed))
        file_meta = {**meta, "env": file_env or e}
        if raw is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(raw)
        else:
            atomic_save_tensors(path, tensors, {**file_meta, "format": file_format or FORMAT})
        store.register_agent(meta, path)
    return path


# ------------------------------------------------------------------------- 1. malformed grid files
MALFORMED = [
    ("bad.toml", 'envs = ["hopper"\nmethods = ["ppo"]\n', None, "bad.toml: invalid TOML: "),
    ("bad.yaml", "envs: [hopper\nmethods: [ppo]\n", None, "bad.yaml: invalid YAML at line 2: "),
    ("list.yaml", "- envs: [hopper]\n- methods: [ppo]\n",
     "list.yaml: a grid is a table of keys (envs, methods, seeds, preset, steps, num_envs, trainer_params, retrain_stale, "
     "agents, attacks, attack_params, episodes, eps, certify, certify_states, certify_threshold), got list", None),
    ("unknown_key.toml", 'envs = ["hopper"]\nmethods = ["ppo"]\npreset = "smoke"\nbogus = 1\n',
     "unknown_key.toml: unknown key 'bogus'; valid keys: envs, methods, seeds, preset, steps, num_envs, "
     "trainer_params, retrain_stale, agents, attacks, attack_params, episodes, eps, certify, certify_states, certify_threshold",
     None),
    ("episodes.toml", 'envs = ["hopper"]\nmethods = ["ppo"]\npreset = "smoke"\nepisodes = "ten"\n',
     "episodes.toml: episodes must be an integer ≥ 1, got 'ten'", None),
    ("seeds_reversed.toml", 'envs = ["hopper"]\nmethods = ["ppo"]\npreset = "smoke"\nseeds = "3-1"\n',
     "seeds_reversed.toml: seeds: bad range '3-1' (seeds are ≥ 0, low-high with low ≤ high)", None),
    ("seeds_negative.toml", 'envs = ["hopper"]\nmethods = ["ppo"]\npreset = "smoke"\nseeds = -1\n',
     "seeds_negative.toml: seeds: bad range -1 (seeds are ≥ 0, low-high with low ≤ high)", None),
    ("grid.json", '{"envs": ["hopper"], "methods": ["ppo"]}',
     "grid file 'grid.json' must end in .toml, .yaml or .yml", None),
]


@pytest.mark.parametrize("name, text, expected, prefix", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_grid_file_is_one_line_and_runs_nothing(tmp_path, name, text, expected, prefix):
    grid = tmp_path / name
    grid.write_text(text)
    result = cli("run", grid, "--home", tmp_path / "h")
    assert_one_line_error(result, expected, prefix)
    assert not (tmp_path / "h").exists()  # rejected before anything was opened or run


def test_missing_grid_file(tmp_path):
    grid = tmp_path / "nope.toml"
    result = cli("run", grid, "--home", tmp_path / "h")
    assert_one_line_error(result, f"grid file {str(grid)!r} does not exist")


def test_yaml_python_tag_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    grid = tmp_path / "evil.yaml"
    grid.write_text(f'envs: !!python/object/apply:os.system ["touch {marker}"]\nmethods: [ppo]\n')
    result = cli("run", grid, "--home", tmp_path / "h")
    assert_one_line_error(result, "evil.yaml: invalid YAML at line 1: could not determine a constructor for the tag "
                                  "'tag:yaml.org,2002:python/object/apply:os.system'")
    assert not marker.exists()


# ------------------------------------------------------------------------ 2. unknown names (grid)
ATTACKS = ", ".join(sorted(attacks()))
TRAINERS = ", ".join(sorted(trainers()))
UNKNOWN_IN_GRID = [
    ("env", 'envs = ["hoper"]\nmethods = ["ppo"]\npreset = "smoke"\n',
     "g.toml: unknown env 'hoper'; valid choices: ant, halfcheetah, hopper, humanoid, walker2d"),
    ("method", 'envs = ["hopper"]\nmethods = ["ppx"]\npreset = "smoke"\n',
     f"g.toml: unknown method 'ppx'; valid choices: {TRAINERS}"),
    ("attack", f'agents = ["{AGENT}"]\nattacks = ["fgsm"]\n',
     f"g.toml: unknown attack 'fgsm'; valid choices: {ATTACKS}"),
    ("attack_params", f'agents = ["{AGENT}"]\nattacks = ["none"]\n[attack_params.fgsm]\nsteps = 3\n',
     f"g.toml: unknown attack_params name 'fgsm'; valid choices: {ATTACKS}"),
    ("trainer setting", 'envs = ["hopper"]\nmethods = ["ppo"]\npreset = "smoke"\n[trainer_params.ppo]\nkappa = 1\n',
     "g.toml: method 'ppo' has no setting 'kappa'; valid: none"),
]


@pytest.mark.parametrize("what, text, expected", UNKNOWN_IN_GRID, ids=[u[0] for u in UNKNOWN_IN_GRID])
def test_unknown_name_in_grid(tmp_path, home, what, text, expected):
    grid = tmp_path / "g.toml"
    grid.write_text(text)
    assert_one_line_error(cli("run", grid, "--home", home), expected)
    assert not (home / "agents" / "hopper" / "ppx").exists()


def test_unknown_agent_id_in_grid(tmp_path, home):
    grid = tmp_path / "g.toml"
    grid.write_text('agents = ["hopper/ppo/smoke/0", "hopper/ppo/smoke/9"]\nattacks = ["none"]\nepisodes = 2\n')
    assert_one_line_error(cli("run", grid, "--home", home),
                          f"unknown agent 'hopper/ppo/smoke/9' in {str(home)!r}; known agents: {AGENT}")
    assert cells(home) == []  # nothing was run for the valid agent either


# ------------------------------------------------------------------- 2. unknown names (CLI options)
EXECUTOR_OPTIONS = [
    (["--backend", "spark"], "unknown backend 'spark'; valid choices: local, ray"),
    (["--workers", "0"], "--workers must be at least 1, got 0"),
    (["--address", "auto"], "--address is only used with --backend ray"),
]


@pytest.mark.parametrize("opts, expected", EXECUTOR_OPTIONS, ids=["backend", "workers", "address"])
def test_bad_executor_options_fail_before_any_work(tmp_path, home, opts, expected):
    fresh = tmp_path / "fresh"
    assert_one_line_error(cli("train", "ppo", "hopper", "--preset", "smoke", *opts, "--home", fresh), expected)
    assert not fresh.exists()  # no home created, no progress bar printed before the error
    assert_one_line_error(cli("evaluate", "--attacks", "none", "--episodes", "2", *opts, "--home", home), expected)
    grid = tmp_path / "g.toml"
    grid.write_text(f'agents = ["{AGENT}"]\nattacks = ["none"]\nepisodes = 2\n')
    assert_one_line_error(cli("run", grid, *opts, "--home", home), expected)
    assert cells(home) == []


# ---------------------------------------------------------------------------------------- 3. bad ε
@pytest.mark.parametrize("value, shown", [("-0.1", "-0.1"), ("nan", "nan"), ("inf", "inf"), ("-inf", "-inf")])
def test_bad_eps_in_grid(tmp_path, home, value, shown):
    grid = tmp_path / "eps.toml"
    grid.write_text(f'agents = ["{AGENT}"]\nattacks = ["none"]\nepisodes = 2\neps = {value}\n')
    assert_one_line_error(cli("run", grid, "--home", home), f"eps.toml: eps must be a finite number ≥ 0, got {shown}")
    assert cells(home) == []


@pytest.mark.parametrize("value, shown", [("-1", "-1.0"), ("nan", "nan"), ("inf", "inf")])
def test_bad_eps_on_the_command_line(home, value, shown):
    result = cli("evaluate", "--attacks", "none", "--episodes", "2", "--eps", value, "--home", home)
    assert_one_line_error(result, f"--eps must be a finite number ≥ 0, got {shown}")
    assert cells(home) == []


# ----------------------------------------------------------- 4. checkpoints from elsewhere, 5. pickle
def test_checkpoint_of_another_env_or_code_version_fails_only_its_jobs(tmp_path, home):
    walker = add_agent(home, "walker2d/ppo/smoke/0", file_env="hopper")  # a hopper agent filed as walker2d
    future = add_agent(home, "hopper/ppo/smoke/99", file_format="robbench-agent/99")
    grid = tmp_path / "g.toml"
    grid.write_text(f'agents = ["{AGENT}", "walker2d/ppo/smoke/0", "hopper/ppo/smoke/99"]\nattacks = ["none"]\n'
                    "episodes = 2\n")
    result = cli("run", grid, "--workers", "1", "--home", home)
    wrong_env = f"checkpoint {str(walker)!r} was trained on env 'hopper', not 'walker2d'"
    wrong_version = (f"checkpoint {str(future)!r} has format 'robbench-agent/99', written by an incompatible "
                     "robbench version; this version reads 'robbench-agent/1' (re-create it with this version)")
    assert_job_failures(result, {"evaluate walker2d/ppo/smoke/0 × none": wrong_env,
                                 "evaluate hopper/ppo/smoke/99 × none": wrong_version},
                        done=[f"evaluate {AGENT} × none"])
    table = jobs_table(home)
    assert table["evaluate walker2d/ppo/smoke/0 × none"] == ("failed", wrong_env)
    assert table["evaluate hopper/ppo/smoke/99 × none"] == ("failed", wrong_version)
    assert table[f"evaluate {AGENT} × none"] == ("done", "")
    assert cells(home) == [(AGENT, "none", 2)]
    with ResultsStore(home) as store, pytest.raises(RobbenchError) as exc:
        store.load_agent("walker2d/ppo/smoke/0")
    assert str(exc.value) == wrong_env


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_checkpoint_never_runs_code(tmp_path, home):
    marker = tmp_path / "PWNED"
    evil = add_agent(home, "hopper/ppo/smoke/66", raw=pickle.dumps({"policy": _RunsCode(marker)}))
    expected = (f"checkpoint {str(evil)!r} is a pickle (torch.save) file, not a robbench safetensors checkpoint; "
                "it was not loaded (unpickling can run code)")
    with ResultsStore(home) as store, pytest.raises(RobbenchError) as exc:
        store.load_agent("hopper/ppo/smoke/66")
    assert str(exc.value) == expected
    result = cli("evaluate", "--agents", f"hopper/ppo/smoke/66,{AGENT}", "--attacks", "none", "--episodes", "2",
                 "--workers", "1", "--home", home)
    assert_job_failures(result, {"evaluate hopper/ppo/smoke/66 × none": expected}, done=[f"evaluate {AGENT} × none"])
    assert jobs_table(home)["evaluate hopper/ppo/smoke/66 × none"] == ("failed", expected)
    assert cells(home) == [(AGENT, "none", 2)]
    assert not marker.exists()


# ------------------------------------------------------------------------- 6. read-only results home
_PR_CAPBSET_DROP = 24
_DAC_CAPS = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER


def _setuid_nobody() -> None:
    os.setuid(65534)


def _drop_dac_caps() -> None:
    """Stay root but lose the capabilities that ignore file modes (dropped from the bounding set
    before exec, so the new program never gets them): file permissions then apply as to anyone."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _DAC_CAPS:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _probe(preexec, where: Path) -> tuple[bool, str]:
    """Can a child with `preexec` run this interpreter with robbench, and is it refused a 0444 file?"""
    probe = where / "probe"
    probe.write_text("x")
    probe.chmod(0o444)
    code = (f"import robbench.cli\ntry:\n    open({str(probe)!r}, 'a').write('y')\nexcept PermissionError:\n"
            "    print('refused')\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code], preexec_fn=preexec, capture_output=True, text=True,
                              timeout=600, cwd=where)  # a hang guard only
    except OSError as exc:
        return False, f"{exc.strerror}: {exc.filename}"
    finally:
        probe.unlink()
    if proc.returncode != 0:
        return False, (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    refused = proc.stdout.strip() == "refused"
    return refused, "" if refused else "writes to a 0444 file are not refused"


@pytest.fixture()
def unprivileged(tmp_path):
    """A `preexec_fn` under which file permissions stop writes (root ignores them), and a world-readable
    scratch directory for it: setuid(65534) when that user can run the venv's interpreter, else root
    without its DAC-override capabilities; skipped when neither works here."""
    scratch = Path(tempfile.mkdtemp(prefix="robbench-ro-"))
    scratch.chmod(0o755)
    try:
        if os.geteuid() != 0:
            yield None, scratch  # chmod alone stops an ordinary user
            return
        reasons = []
        for preexec, what in ((_setuid_nobody, "setuid(65534)"), (_drop_dac_caps, "dropping CAP_DAC_OVERRIDE")):
            ok, why = _probe(preexec, scratch)
            if ok:
                yield preexec, scratch
                return
            reasons.append(f"{what}: {why}")
        pytest.skip("cannot run the CLI without root's permission bypass (" + "; ".join(reasons) + ")")
    finally:
        for p in [scratch, *scratch.rglob("*")]:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        shutil.rmtree(scratch, ignore_errors=True)


def robbench_proc(args, preexec=None, cwd=None, env=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "robbench.cli", *map(str, args)], capture_output=True, text=True,
                          preexec_fn=preexec, cwd=cwd, env=env, timeout=600)  # a hang guard only


def test_read_only_home_refuses_writes_in_one_line_and_still_reports(home, unprivileged):
    preexec, scratch = unprivileged
    assert cli("evaluate", "--attacks", "none", "--episodes", "2", "--workers", "1", "--home", home).exit_code == 0
    ro = scratch / "home"
    shutil.copytree(home, ro)
    subprocess.run(["chmod", "-R", "a+rX", str(ro)], check=True)
    (ro / DB_NAME).chmod(0o444)
    ro.chmod(0o555)
    before = sorted(p.name for p in ro.iterdir())
    env = {"HOME": str(scratch)}

    res = robbench_proc(["evaluate", "--attacks", "random", "--episodes", "2", "--workers", "1", "--home", ro],
                        preexec, scratch, env)
    assert res.returncode == 2, res.stderr
    assert lines(res.stderr) == [
        f"error: cannot open results home {str(ro)!r} for writing: it is read-only (attempt to write a readonly "
        "database); fix its permissions or pass a writable --home"]
    assert res.stdout == ""

    res = robbench_proc(["report", "--format", "markdown", "--home", ro], preexec, scratch, env)
    assert res.returncode == 0, res.stderr
    assert f"`{AGENT}`" in res.stdout and res.stderr == ""
    res = robbench_proc(["list", "agents", "--home", ro], preexec, scratch, env)
    assert res.returncode == 0 and AGENT in res.stdout, res.stderr
    assert sorted(p.name for p in ro.iterdir()) == before  # nothing written


# -------------------------------------------------------------------------------------- 7. full disk
def _file_size_limit(n: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past n bytes fail with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))
    return preexec


# SQLite's -shm file is 32 KiB; a smoke checkpoint is ~43 kB (asserted below): room for the one, not the other.
FSIZE = 32768 + 4096


def test_full_disk_while_saving_a_checkpoint(smoke_home, tmp_path):
    with ResultsStore(smoke_home) as store:
        assert store.get_agent(AGENT).path.stat().st_size > FSIZE + 2048
    home = tmp_path / "home"
    with ResultsStore(home) as store:  # the empty database (49 kB: larger than a checkpoint) exists already
        from robbench.store import JOBS_SCHEMA

        store.conn.executescript(JOBS_SCHEMA)
    res = robbench_proc(["train", "ppo", "hopper", "--preset", "smoke", "--home", home], _file_size_limit(FSIZE),
                        tmp_path)
    final = home / "agents" / "hopper" / "ppo" / "smoke" / "seed0.safetensors"
    reason = f"disk full or file too large while writing {str(final)!r}"
    assert res.returncode == 1, res.stderr
    assert [line for line in lines(res.stderr) if line.startswith(("✗", "error"))] == [
        f"✗ train {AGENT}: {reason}"]
    assert "Traceback" not in res.stderr + res.stdout
    assert not final.exists() and not list(home.rglob(".tmp-*"))  # no half-written file, under any name
    assert jobs_table(home) == {f"train {AGENT}": ("failed", reason)}
    with closing(sqlite3.connect(home / DB_NAME)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM agents").fetchone()[0] == 0


def test_full_disk_while_creating_the_results_database(tmp_path):
    home = tmp_path / "home"
    res = robbench_proc(["train", "ppo", "hopper", "--preset", "smoke", "--home", home], _file_size_limit(FSIZE),
                        tmp_path)
    assert res.returncode == 2, res.stderr
    assert lines(res.stderr) == [f"error: cannot open results home {str(home)!r}: disk I/O error while writing "
                                 f"{str(home / DB_NAME)!r} (disk full or file too large?)"]
    assert not (home / "agents").exists()
    with closing(sqlite3.connect(home / DB_NAME)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.parametrize("code, expected", [
    (errno.ENOSPC, "disk full or file too large while writing '/h/x'"),
    (errno.EFBIG, "disk full or file too large while writing '/h/x'"),
    (errno.EROFS, "cannot write '/h/x': it is read-only"),
    (errno.EACCES, "permission denied on '/h/x'"),
    (errno.EIO, "I/O error on '/h/x': Input/output error"),
])
def test_write_errors_become_one_readable_line(code, expected, tmp_path, monkeypatch):
    assert str(io_error(OSError(code, os.strerror(code), "/h/x"), "/h/x")) == expected
    # ... from a job (the scheduler records it), and from the checkpoint writer (safetensors' own error)
    from robbench import checkpoint, jobs

    def runner_fails(store, spec, progress):
        raise OSError(code, os.strerror(code), "/h/x")

    monkeypatch.setitem(jobs._RUNNERS, "train", runner_fails)
    res = jobs.run_job(str(tmp_path / "h"), "train", {})
    assert res["status"] == "failed" and res["error"] == expected and "traceback" not in res

    def save_fails(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")
        raise checkpoint.SafetensorError(f"Error while serializing: I/O error: {os.strerror(code)} (os error {code})")

    monkeypatch.setattr(checkpoint, "save_file", save_fails)
    target = tmp_path / "c" / "x.safetensors"
    with pytest.raises(RobbenchError) as exc:
        atomic_save_tensors(target, {}, {})
    assert str(exc.value) == expected.replace("/h/x", str(target))
    assert list(target.parent.iterdir()) == []  # the temporary file is gone too


# ------------------------------------------------------------------------ 8. NaN from an env mid-grid
class _NanAfter(gym.Wrapper):
    """Returns an all-NaN observation from its `after`+1-th step on."""

    def __init__(self, env, after: int):
        super().__init__(env)
        self.after, self.steps = after, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.steps > self.after:
            obs = np.full_like(obs, np.nan)
        return obs, reward, terminated, truncated, info


def test_nan_observation_fails_one_job_and_keeps_the_others(home, monkeypatch):
    from robbench import envs
    from robbench.grid import attack_jobs
    from robbench.jobs import InlineExecutor, run_jobs

    real_make_env = envs.make_env
    monkeypatch.setitem(envs.ENVS, "hopnan", dataclasses.replace(envs.ENVS["hopper"], key="hopnan"))
    monkeypatch.setattr(envs, "make_env", lambda key: _NanAfter(real_make_env(key), 3) if key == "hopnan"
                        else real_make_env(key))
    add_agent(home, "hopnan/ppo/smoke/0")  # the smoke agent, on an env that turns NaN after 3 steps
    jobs = attack_jobs({"hopnan/ppo/smoke/0": (), AGENT: ()}, ["none", "random"], {}, episodes=2, eps=None)
    outcomes = {o.job.label: o for o in run_jobs(jobs, home, InlineExecutor())}

    reason = "env 'hopnan' returned a non-finite observation (11 of 11 entries NaN or inf, first at index 0: nan)"
    for attack in ("none", "random"):
        assert (outcomes[f"evaluate hopnan/ppo/smoke/0 × {attack}"].status,
                outcomes[f"evaluate hopnan/ppo/smoke/0 × {attack}"].error) == ("failed", reason)
        assert outcomes[f"evaluate {AGENT} × {attack}"].status == "done"
    table = jobs_table(home)
    assert table["evaluate hopnan/ppo/smoke/0 × none"] == ("failed", reason)
    assert table[f"evaluate {AGENT} × random"] == ("done", "")
    assert cells(home) == [(AGENT, "none", 2), (AGENT, "random", 2)]
    with closing(sqlite3.connect(home / DB_NAME)) as conn:
        info = conn.execute("SELECT info FROM jobs WHERE status = 'failed'").fetchone()[0]
    assert "traceback" not in info  # a recognised failure, not a crash
