"""The commands that read and write a results home without running jobs: `import`, `report`,
`submit`, `list` and `merge`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Column, Table

from robbench.cli.common import HomeOpt, app, cli_errors, open_store, out_console, plural, say, write_atomic
from robbench.errors import RobbenchError, unknown


# -------------------------------------------------------------------------------------------- import
@app.command("import")
@cli_errors
def import_(
    path: str = typer.Argument(..., metavar="PATH", help="The agent: an SB3 .zip, a CleanRL .cleanrl_model, "
                               ".safetensors weights (--format torch, with --spec), an ONNX MLP (with --spec), or an "
                               "rl-zoo3 run folder."),
    env: Optional[str] = typer.Option(None, "--env", help="Environment it was trained on (`robbench list envs`)."),
    format: Optional[str] = typer.Option(None, "--format", help="sb3, cleanrl, torch, onnx or rlzoo (default: from the "
                                         "file name; a folder is an rl-zoo3 run)."),
    vecnormalize: Optional[str] = typer.Option(None, "--vecnormalize", help="SB3 VecNormalize .pkl (read without "
                                               "running code) with the observation statistics."),
    obs_stats: Optional[str] = typer.Option(None, "--obs-stats", help="Observation statistics as .npz or .json: "
                                            "mean, var, optional epsilon (1e-8) and clip_obs (10)."),
    raw_obs: bool = typer.Option(False, "--raw-obs", help="The agent was trained on raw, unnormalised observations."),
    activation: Optional[str] = typer.Option(None, "--activation", help="tanh, relu or elu, when the model file "
                                             "does not record it."),
    spec: Optional[str] = typer.Option(None, "--spec", help="--format torch: the JSON architecture spec; onnx: its log σ "
                                       "(default: PATH with .json)."),
    name: Optional[str] = typer.Option(None, "--name", help="Method part of the agent id (default: the file name)."),
    home: Optional[str] = HomeOpt,
):
    """Register an agent trained elsewhere (SB3, CleanRL, plain torch, ONNX) as <env>/<name>/external/<seed>.

    Its observation normalisation and action clipping are recorded and reproduced in every evaluation."""
    from robbench.envs import ENVS, get_env_spec
    from robbench.importers import import_agent

    if env is None:
        raise RobbenchError(f"--env is required: the env the agent was trained on ({', '.join(sorted(ENVS))})")
    get_env_spec(env)
    with open_store(home, must_exist=False) as store:
        done = import_agent(store, path, env, fmt=format, vecnormalize=vecnormalize, obs_stats=obs_stats,
                            raw_obs=raw_obs, activation=activation, spec=spec, name=name)
    verb = "imported" if done.created else "already imported (same files and options)"
    say(f"{verb}: {done.summary()}")
    typer.echo(done.agent_id)


# -------------------------------------------------------------------------------------------- report
@app.command()
@cli_errors
def report(
    format: str = typer.Option("markdown", "--format", help="markdown, csv, json, latex or html."),
    out: Optional[str] = typer.Option(
        None, help="Write to a file instead of stdout. A bare file name goes under reports/; a directory "
        "gets leaderboard.<ext>."),
    compare_paper: bool = typer.Option(
        False, "--compare-paper", help="Show the paper's published rows (gym v2, 17-seed medians) beside ours, "
        "in a separate block, never ranked with ours."),
    paper_csv: Optional[str] = typer.Option(
        None, "--paper-csv", help="Published results CSV for --compare-paper (default: the BARPO paper's "
        "Tables 1-4, shipped as robbench/data/paper_results.csv)."),
    entries: Optional[str] = typer.Option(
        None, "--entries", help="A folder of submitted board entries (`robbench submit` files) to rank beside this "
        "home's agents, flagged submitted; every aggregate is recomputed from their per-episode returns."),
    home: Optional[str] = HomeOpt,
):
    """Print or write the leaderboards (boards, significance, seed aggregates, trust flags)."""
    from robbench.report import EXTENSIONS, FORMATS, render

    if format not in FORMATS:
        raise unknown("format", format, FORMATS)
    if compare_paper:
        if paper_csv is None:
            from robbench.report import PAPER_CSV

            paper_csv = str(PAPER_CSV)
        elif not Path(paper_csv).is_file():
            raise RobbenchError(f"--paper-csv {paper_csv!r} is not a file")
    with open_store(home, must_exist=True, readonly=True) as store:  # works on a read-only home
        source = store
        if entries is not None:
            from robbench.submit import WithEntries, read_entries

            source = WithEntries(store, read_entries(entries))
        text = render(source, format, compare_paper=compare_paper, paper_csv=paper_csv)
    if out is None:
        sys.stdout.write(text)
        return
    path = Path(out)
    if len(path.parts) == 1 and not path.is_dir():
        path = Path("reports") / path
    if path.is_dir() or out.endswith("/"):
        path = path / f"leaderboard.{EXTENSIONS[format]}"
    write_atomic(path, text)
    say(f"wrote {path}")



# -------------------------------------------------------------------------------------------- submit
@app.command()
@cli_errors
def submit(
    agent: str = typer.Argument(..., metavar="AGENT_ID", help="The agent whose board entry to write."),
    out: str = typer.Option(..., "--out", help="The entry file to write (JSON)."),
    home: Optional[str] = HomeOpt,
):
    """Write one self-contained board entry: provenance, protocol, suite, per-episode returns, certificates.

    `robbench report --entries DIR` ranks a folder of such files beside a home's own agents."""
    from robbench.submit import write_entry

    with open_store(home, must_exist=True, readonly=True) as store:
        entry = write_entry(store, agent, out)
    attacks = sorted({c["attack"] for c in entry["cells"]})
    say(f"wrote {out}: {plural(len(entry['cells']), 'cell')} ({', '.join(attacks)}), "
        f"{plural(len(entry['certificates']), 'certificate')}, suite {entry['suite']}")


# ---------------------------------------------------------------------------------------------- list
LISTABLE = ("envs", "trainers", "attacks", "agents")


@app.command("list")
@cli_errors
def list_(what: str = typer.Argument(..., help="envs, trainers, attacks or agents."), home: Optional[str] = HomeOpt):
    """List registered environments, trainers, attacks, or the agents in a results home."""
    from robbench.envs import ENVS
    from robbench.registry import attacks, trainers

    if what not in LISTABLE:
        raise unknown("list target", what, LISTABLE)
    if what == "envs":
        t = Table("key", "gymnasium id", "ε", "paper budget", "policy lr", "value lr", "note")
        for s in ENVS.values():
            t.add_row(s.key, s.gym_id, f"{s.eps:g}", f"{s.iterations} it = {s.paper_steps / 1e6:.1f}M",
                      f"{s.policy_lr:g}", f"{s.value_lr:g}", s.note)
    elif what == "trainers":
        t = Table("method", "description")
        for name, cls in trainers().items():
            t.add_row(name, (cls.__doc__ or "").strip().splitlines()[0])
    elif what == "attacks":
        t = Table("attack", "needs fitting", "preset budgets (per victim)", "default parameters", "description")
        for name, cls in attacks().items():
            budgets = cls.preset_budgets() if hasattr(cls, "preset_budgets") else {}
            shown = "\n".join(f"{k}: {v}" for k, v in budgets.items()) or "—"
            t.add_row(name, "yes" if cls.needs_fit else "no", shown, json.dumps(cls.default_params()), cls.description)
        out_console().print(t)
        from robbench.suite import get_suite

        suite = get_suite()
        t = Table(Column("standard suite member", overflow="fold"), "cells per agent", "parameters",
                  title=f"`--attacks standard` = {suite.id} (ranked boards use exactly these cells)")
        counts = suite.cell_counts(1.0)
        for name in suite.attacks:
            t.add_row(name, str(counts[name]), json.dumps(suite.params(name)) if suite.params(name) else "defaults")
    else:
        with open_store(home, must_exist=True, readonly=True) as store:
            t = Table(Column("agent id", overflow="fold", min_width=24), "method", "env", "seed", "preset", "steps",
                      Column("trained on", overflow="fold"))
            for a in store.agents():
                t.add_row(a.agent_id, a.method, a.env, str(a.seed), a.preset, str(a.steps),
                          a.meta.get("provenance", {}).get("started", ""))
    out_console().print(t)



# --------------------------------------------------------------------------------------------- merge
@app.command()
@cli_errors
def merge(
    sources: list[str] = typer.Argument(..., metavar="SOURCE...", help="Results homes to merge in."),
    home: Optional[str] = HomeOpt,
):
    """Merge other results homes (agents, fitted attacks, cells, certificates) into this one."""
    from robbench.merge import merge_home

    with open_store(home, must_exist=False) as store:
        for src in sources:
            rep = merge_home(store, Path(src))
            n = len(rep.conflicts)
            say(f"{src}: {plural(rep.agents, 'agent')}, {plural(rep.artifacts, 'fitted attack')}, "
                f"{plural(rep.cells, 'cell')}, {plural(rep.certificates, 'certificate')} merged"
                + (f"; {plural(n, 'conflict')} (left out or kept ours):" if n else ""))
            for line in rep.conflicts:
                say(f"  conflict: {line}")
            for line in rep.notes:
                say(f"  same agent: {line}")

