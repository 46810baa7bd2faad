"""The command line: every invalid input gets one line naming the bad value, exit 2, no traceback."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from robbench.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "ppx", "hopper"], "unknown method 'ppx'; valid choices: "),
        (["train", "ppo", "hoper"], "unknown env 'hoper'; valid choices: ant, halfcheetah, hopper"),
        (["train", "ppo", "hopper", "--preset", "huge"], "unknown preset 'huge'; valid choices: "),
        (["train", "ppo", "hopper", "--steps", "-5"], "--steps must be positive"),
        (["train", "ppo", "hopper", "--num-envs", "3"], "--num-envs must be a positive divisor of 2048"),
        (["train", "ppo", "hopper", "--param", "kappa=1"], "method 'ppo' has no setting 'kappa'"),
        (["evaluate", "--attacks", "fgsm"], "unknown attack 'fgsm'; valid choices: "),
        (["evaluate", "--agents", "hopper/nope/paper/0"], "unknown agent 'hopper/nope/paper/0'"),
        (["evaluate", "--eps", "-0.1"], "--eps must be a finite number ≥ 0, got -0.1"),
        (["evaluate", "--eps", "nan"], "--eps must be a finite number ≥ 0"),
        (["evaluate", "--episodes", "0"], "--episodes must be an integer ≥ 1, got 0"),
        (["report", "--format", "pdf"], "unknown format 'pdf'; valid choices: csv, html, json, latex, markdown"),
        (["list", "robots"], "unknown list target 'robots'"),
    ],
)
def test_bad_input_gets_one_line(args, message, smoke_home):
    result = run(*args, "--home", smoke_home) if args[0] != "list" else run(*args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in result.output


def test_missing_home_is_one_line(tmp_path):
    for cmd in (["evaluate"], ["report"], ["list", "agents"]):
        result = run(*cmd, "--home", tmp_path / "nowhere")
        assert result.exit_code == 2
        assert result.output.strip().startswith("error: results home") and "does not exist" in result.output


def test_list_commands(smoke_home):
    for what in ("envs", "trainers", "attacks"):
        assert run("list", what).exit_code == 0
    out = run("list", "agents", "--home", smoke_home)
    assert out.exit_code == 0 and "hopper/ppo/smoke/0" in out.output


def test_end_to_end_smoke_through_the_console_script(tmp_path):
    """train smoke → evaluate none and random → report markdown/csv/json on a fresh home."""
    exe = shutil.which("robbench", path=os.path.dirname(sys.executable)) or shutil.which("robbench")
    assert exe, "the robbench console script is not installed"
    home = tmp_path / "home"
    env = {**os.environ, "ROBBENCH_HOME": str(home), "COLUMNS": "200"}

    def cli(*args):
        proc = subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    cli("train", "ppo", "hopper", "--preset", "smoke")
    cli("evaluate", "--agents", "all", "--attacks", "none,random", "--episodes", "4")
    md = cli("report", "--format", "markdown")
    assert "Hopper-v5" in md and "hopper/ppo/smoke/0" in md and "| natural | random | worst |" in md
    assert "NON-STANDARD: 4 episodes" in md
    records = json.loads(cli("report", "--format", "json"))
    assert len(records) == 1 and len(records[0]["attacks"]["random"]["returns"]) == 4
    assert records[0]["preset"] == "smoke" and records[0]["train_steps"] == 4096
    csv_text = cli("report", "--format", "csv")
    assert "random_returns" in csv_text.splitlines()[0]
    # re-running a finished cell is a no-op
    before = (home / "results.sqlite").stat().st_size
    cli("evaluate", "--attacks", "none,random", "--episodes", "4")
    out = tmp_path / "reports"
    cli("report", "--format", "markdown", "--out", f"{out}/")
    assert (out / "leaderboard.md").read_text() == md
    proc = subprocess.run([exe, "report", "--out", "board.csv", "--format", "csv"], env=env, cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and (tmp_path / "reports" / "board.csv").read_text() == csv_text
    assert before > 0
