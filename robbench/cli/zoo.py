"""The reference zoo (`zoo list|verify|export`), the toy landscape and the `demo` job."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.table import Table

from robbench.cli.common import (HomeOpt, WorkersOpt, app, cli_errors, exit_on_failures, open_store, out_console,
                                 plural, say)
from robbench.cli.jobs import attack_agents, train_agents
from robbench.errors import RobbenchError, unknown, validate_count
from robbench.evaluate import DEFAULT_EPISODES


# ----------------------------------------------------------------------------------------------- zoo
zoo_app = typer.Typer(help="The reference zoo shipped with robbench (robbench/zoo/).", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")


@zoo_app.command("list")
@cli_errors
def zoo_list():
    """The zoo's agents with their published natural and worst-case returns."""
    from robbench import zoo

    t = Table("id", "method", "env", "seed", "budget", "natural", "worst (attack)", "sha256",
              box=box.SIMPLE_HEAD)
    for e in zoo.manifest()["agents"]:
        worst = e["worst"]
        t.add_row(e["short_id"], e["method"], e["env"], str(e["seed"]), e["budget"], f"{e['natural']:.0f}",
                  f"{worst['mean']:.0f} ({worst['attack']})" if worst else "—", e["sha256"][:12])
    out_console().print(t)


@zoo_app.command("verify")
@cli_errors
def zoo_verify(
    attacks: str = typer.Option("none,random", help="Attacks needing no fitting to re-run (comma-separated)."),
    workers: Optional[int] = WorkersOpt,
    home: Optional[str] = HomeOpt,
):
    """Re-evaluate the zoo under the standard protocol and compare every episode with the manifest."""
    from robbench import zoo

    names = [a.strip() for a in attacks.split(",") if a.strip()]
    exit_on_failures(attack_agents("zoo", ",".join(names), fit=False, workers=workers, home=home))
    with open_store(home, must_exist=True, readonly=True) as store:
        rows = zoo.verify(store, names)
    t = Table("agent", "attack", "published", "here", "per-episode", box=box.SIMPLE_HEAD)
    for r in rows:
        t.add_row(r["agent"], r["attack"], f"{r['published']:.2f}", f"{r['got']:.2f}",
                  "[green]identical[/]" if r["match"] else "[red]differs[/]")
    out = out_console()
    out.print(t)
    bad = [r for r in rows if not r["match"]]
    out.print(f"{len(rows) - len(bad)} of {len(rows)} cells reproduce the manifest exactly")
    if bad:
        where = sorted({str(r["evaluated_on"]) for r in bad})
        out.print(f"published cells were evaluated on: {'; '.join(where)} — another torch/MuJoCo build "
                          "changes the last float bits, which the dynamics amplify")
        raise typer.Exit(1)


@zoo_app.command("export")
@cli_errors
def zoo_export(
    home: list[str] = typer.Option(..., "--home", help="A published results home (repeatable)."),
    budget: str = typer.Option("paper", help="Only agents trained at this budget."),
):
    """Rebuild robbench/zoo/ (checkpoints + manifest) from published results homes (maintainers)."""
    from robbench import zoo

    data = zoo.export([Path(h) for h in home], budget=budget)
    say(f"wrote {zoo.ZOO_DIR / 'manifest.json'}: {plural(len(data['agents']), 'agent')}")


# ----------------------------------------------------------------------------------------------- toy
@app.command()
@cli_errors
def toy(
    grid: int = typer.Option(21, help="Initial policies per axis (grid × grid starts)."),
    out: Optional[str] = typer.Option("reports/toy", help="Directory for toy_landscape.png."),
    steps: int = typer.Option(4000, help="Projected-gradient-ascent steps per start."),
    lr: float = typer.Option(0.01, help="Step size of the projected gradient ascent."),
):
    """Exact landscape analysis of SPO, ARPO and BARPO on the two-state ISA-MDP (paper Appendix D)."""
    from robbench.toy_run import run_toy

    if grid < 2:
        raise RobbenchError(f"--grid must be at least 2, got {grid}")
    if steps <= 0 or not lr > 0:
        raise RobbenchError(f"--steps and --lr must be positive, got {steps} and {lr}")
    run_toy(grid=grid, out_dir=Path(out) if out else None, console=out_console(), steps=steps, lr=lr)


# ---------------------------------------------------------------------------------------------- demo
@app.command()
@cli_errors
def demo(
    preset: str = typer.Option("quick", help="Training budget preset for the demo agents."),
    methods: str = typer.Option("ppo,barppo", help="Trainers, comma-separated (`robbench list trainers`)."),
    env: str = typer.Option("hopper", help="Environment."),
    episodes: int = typer.Option(DEFAULT_EPISODES, help="Evaluation episodes per cell."),
    home: Optional[str] = HomeOpt,
):
    """The embedded default job: train → attack (attacks needing no fitting) → markdown leaderboard."""
    from robbench.registry import trainers

    table = trainers()
    chosen = list(dict.fromkeys(m.strip() for m in methods.split(",") if m.strip()))
    for m in chosen:
        if m not in table:
            raise unknown("trainer", m, table)
    if not chosen:
        raise RobbenchError(f"--methods names no trainer; valid choices: {', '.join(sorted(table))}")
    validate_count(episodes, "--episodes")
    for m in chosen:
        exit_on_failures(train_agents(m, env, [0], preset, workers=1, home=home))
    from robbench.registry import attacks as all_attacks
    from robbench.report import render

    untrained = ",".join(n for n, cls in all_attacks().items() if not cls.needs_fit)
    exit_on_failures(attack_agents("all", untrained, episodes, fit=False, home=home))
    with open_store(home, must_exist=True, readonly=True) as store:
        sys.stdout.write(render(store, "markdown"))

