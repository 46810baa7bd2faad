"""The commands that run jobs: `train`, `evaluate`, `certify` and `run` (a grid file).

Each parses its flags, asks robbench/plan.py (or robbench/grid.py) for the jobs and hands them to
the scheduler through `common.execute`; `demo` and `zoo verify` reuse `train_agents` and
`attack_agents`, the same path without the typer layer."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.table import Column, Table

from robbench.certify import DEFAULT_STATES, DEFAULT_THRESHOLD
from robbench.cli.common import (AddressOpt, BackendOpt, HomeOpt, WorkersOpt, app, cli_errors, execute,
                                 exit_on_failures, open_store, out_console, plural, say)
from robbench.errors import validate_count
from robbench.evaluate import DEFAULT_EPISODES
from robbench.train import DEFAULT_NUM_ENVS, DEFAULT_PRESET


def check_executor(backend: str, workers, address) -> None:
    from robbench.jobs import check_executor_options

    check_executor_options(backend, workers, address)


def train_agents(method: str, env: str, seeds: list[int], preset: str = DEFAULT_PRESET,
                 steps: Optional[int] = None, num_envs: int = DEFAULT_NUM_ENVS, params: dict | None = None, force: bool = False, workers=None,
                 backend: str = "local", address=None, home: Optional[str] = None) -> list:
    """Train one agent per seed as jobs and say what became of each; returns the outcomes."""
    from robbench.plan import plan_training

    jobs = plan_training(method, env, seeds, preset, steps, num_envs, params, force=force)
    with open_store(home, must_exist=False) as store:
        root = store.home
    outcomes = execute(jobs, root, workers, backend, address, f"train {method} {env}")
    with open_store(str(root), must_exist=True) as store:
        known = {a.agent_id: a for a in store.agents()}
    for o in outcomes:
        aid = o.job.label.removeprefix("train ")
        if o.status in ("done", "cached") and aid in known:
            prov = known[aid].meta.get("provenance", {}) if o.status == "done" else {}
            verb = ("retrained" if prov.get("replaced_checkpoint") else "trained") if o.status == "done" \
                else "exists (use --force to retrain)"
            say(f"{aid}: {verb} — {known[aid].steps} steps, checkpoint {known[aid].path}")
            for note, text in (("replaced_checkpoint", "the stored agent was unusable ({}); retrained it"),
                               ("snapshot_ignored", "{}; trained from the start")):
                if prov.get(note):
                    say(f"warning: {aid}: " + text.format(prov[note]))
    return outcomes


def attack_agents(agents: str, attacks: str, episodes: int = DEFAULT_EPISODES, eps: Optional[float] = None,
                  fit: bool = True, overrides: dict | None = None, force: bool = False, workers=None,
                  backend: str = "local", address=None, home: Optional[str] = None) -> list:
    """Evaluate `agents` under `attacks` as jobs (robbench/plan.py), saying what was left out."""
    from robbench.grid import critic_notice
    from robbench.plan import plan_attacks

    with open_store(home, must_exist=agents != "zoo") as store:
        plan = plan_attacks(store, agents, attacks, episodes, eps, fit=fit, overrides=overrides, force=force)
        root = store.home
    for aid, name in plan.no_critic:
        say(critic_notice(aid, name))
    outcomes = execute(plan.jobs, root, workers, backend, address, "attacks")
    if plan.unfitted:
        say(f"skipped (--no-fit, no stored artifact): {', '.join(plan.unfitted)}")
    return outcomes


# --------------------------------------------------------------------------------------------- train
@app.command()
@cli_errors
def train(
    method: str = typer.Argument(..., help="Trainer (see `robbench list trainers`)."),
    env: str = typer.Argument(..., help="Environment key (see `robbench list envs`)."),
    seed: int = typer.Option(0, help="Training seed (0 ≤ seed < 2**31)."),
    seeds: Optional[str] = typer.Option(None, help="Several seeds as jobs, e.g. 0-16 or 0,3,5-7 (overrides --seed)."),
    preset: str = typer.Option(DEFAULT_PRESET, help="Budget preset: paper, quick or smoke."),
    steps: Optional[int] = typer.Option(None, help="Override the preset's number of env steps."),
    num_envs: int = typer.Option(DEFAULT_NUM_ENVS,
                                 help="Parallel env copies (speed only; 2048 steps/iteration regardless)."),
    kappa: Optional[float] = typer.Option(None, help="Robust trainers: weight κ of the robustness term."),
    param: list[str] = typer.Option([], help="Trainer setting key=value (repeatable)."),
    force: bool = typer.Option(False, help="Retrain even if this agent exists."),
    workers: Optional[int] = WorkersOpt,
    backend: str = BackendOpt,
    address: Optional[str] = AddressOpt,
    home: Optional[str] = HomeOpt,
):
    """Train agents (one job per seed) and store their checkpoints in the results home.

    A killed run resumes from its last snapshot (about once a minute) when started again."""
    from robbench.grid import parse_seeds
    from robbench.plan import parse_settings

    check_executor(backend, workers, address)
    params = parse_settings(param)
    if kappa is not None:
        params["kappa"] = kappa
    seed_list = parse_seeds(seeds, "--seeds") if seeds is not None else parse_seeds(seed, "--seed")
    outcomes = train_agents(method, env, seed_list, preset, steps, num_envs, params, force, workers, backend,
                            address, home)
    exit_on_failures(outcomes)


# ------------------------------------------------------------------------------------------ evaluate
@app.command()
@cli_errors
def evaluate(
    agents: str = typer.Option("all", help="`all`, `zoo` (the shipped reference agents, imported into the home "
                               "first) or comma-separated agent ids."),
    attacks: str = typer.Option("all", help="`standard` (the versioned standard suite boards are ranked by), `all`, "
                                "or comma-separated attack names (see `robbench list attacks`)."),
    episodes: int = typer.Option(DEFAULT_EPISODES, help="Episodes per (agent, attack)."),
    eps: Optional[float] = typer.Option(None, help="Override the protocol ε (labelled non-standard)."),
    fit: bool = typer.Option(True, "--fit/--no-fit", help="Train learned attacks that have no stored artifact."),
    param: list[str] = typer.Option([], help="Attack setting attack.key=value, e.g. rs.preset=paper (repeatable)."),
    force: bool = typer.Option(False, help="Re-run cells that already have results."),
    workers: Optional[int] = WorkersOpt,
    backend: str = BackendOpt,
    address: Optional[str] = AddressOpt,
    home: Optional[str] = HomeOpt,
):
    """Evaluate agents under attacks; finished cells are skipped, learned attacks fitted once.

    Each learned-attack member fit and each cell is a job, run in parallel over --workers."""
    from robbench.plan import parse_settings
    from robbench.threat import validate_eps

    validate_count(episodes, "--episodes")
    if eps is not None:
        validate_eps(eps, "--eps")
    check_executor(backend, workers, address)
    outcomes = attack_agents(agents, attacks, episodes, eps, fit, parse_settings(param), force, workers, backend,
                             address, home)
    exit_on_failures(outcomes)
    say("done; see `robbench report`")


# ----------------------------------------------------------------------------------------------- run
@app.command()
@cli_errors
def run(
    grid_file: str = typer.Argument(..., metavar="GRID", help="A .toml or .yaml grid (see robbench/grid.py)."),
    workers: Optional[int] = WorkersOpt,
    backend: str = BackendOpt,
    address: Optional[str] = AddressOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="List the jobs and what is already done, run nothing."),
    home: Optional[str] = HomeOpt,
):
    """Run a whole benchmark grid (train → fit → evaluate → certify) as jobs; re-run to resume."""
    from robbench.grid import critic_notice, drop_critic_cells, grid_jobs, load_grid
    from robbench.jobs import KINDS

    check_executor(backend, workers, address)
    grid = load_grid(grid_file)
    with open_store(home, must_exist=False) as store:
        jobs, no_critic = drop_critic_cells(store, grid_jobs(grid, store))
        for aid, name in no_critic:
            say(critic_notice(aid, name))
        root = store.home
        if dry_run:
            t = Table("kind", "job", "state", box=box.SIMPLE_HEAD)
            for job in jobs:
                t.add_row(job.kind, job.label.split(" ", 1)[1], _dry_run_state(store, job))
            out_console().print(t)
            return
    kinds = {k: sum(j.kind == k for j in jobs) for k in KINDS}
    say(f"grid {Path(grid_file).name}: {plural(len(jobs), 'job')} ("
        + ", ".join(f"{n} {k}" for k, n in kinds.items() if n) + f") → {root}")
    outcomes = execute(jobs, root, workers, backend, address, "grid")
    exit_on_failures(outcomes)
    say("done; see `robbench report`")


def _dry_run_state(store, job) -> str:
    """done / to run; a stored agent today's trainer would train with other settings says which."""
    from robbench.jobs import is_complete
    from robbench.specs import TrainSpec

    state = "done" if is_complete(store, job) else "to run"
    spec = job.typed
    if not isinstance(spec, TrainSpec) or spec.force:
        return state
    from robbench.train import agent_id, build_config, describe_stale, stale_settings, trained_record

    cfg, _ = build_config(spec.method, spec.env, spec.seed, spec.preset, spec.steps, spec.num_envs, spec.params)
    record = trained_record(store, agent_id(spec.env, spec.method, cfg.budget, spec.seed))
    stale = stale_settings(record, cfg) if record is not None else {}
    if not stale:
        return state
    if spec.retrain_stale:
        return f"to retrain: {describe_stale(stale)}"
    return f"done, with other settings than today's: {describe_stale(stale)} (retrain_stale = true retrains it)"


# ------------------------------------------------------------------------------------------- certify
@app.command()
@cli_errors
def certify(
    agents: str = typer.Option("all", help="`all` or comma-separated agent ids."),
    method: str = typer.Option("all", help="Bound method: ibp, crown-ibp, crown, all, or a comma-separated list."),
    eps: Optional[float] = typer.Option(None, help="Radius of the ℓ∞ ball (default: the protocol ε of the agent's env)."),
    states: int = typer.Option(DEFAULT_STATES, help="States sampled from the agent's natural episodes."),
    threshold: float = typer.Option(
        DEFAULT_THRESHOLD, help="Certified action deviation counted as small, in action units (fraction of states ≤ it)."),
    force: bool = typer.Option(False, help="Recompute certificates that are already stored."),
    workers: Optional[int] = WorkersOpt,
    backend: str = BackendOpt,
    address: Optional[str] = AddressOpt,
    home: Optional[str] = HomeOpt,
):
    """Certified bounds of the policy mean over the ε-ball (auto-LiRPA), soundness-checked, then stored.

    One certify job per agent, run in parallel over --workers; the rows are then read back."""
    from robbench.certify import parse_methods, stored_certificates, validate_threshold
    from robbench.plan import plan_certify
    from robbench.threat import validate_eps

    methods = parse_methods(method)
    if eps is not None:
        validate_eps(eps, "--eps")
    validate_count(states, "--states")
    validate_threshold(threshold)
    check_executor(backend, workers, address)
    with open_store(home, must_exist=True) as store:
        jobs = plan_certify(store, agents, methods, eps, states, threshold, force)
        before = {j.typed.agent_id: {} if force else stored_certificates(store, j.typed.agent_id, methods, eps,
                                                                         states, threshold) for j in jobs}
        root = store.home
    outcomes = execute(jobs, root, workers, backend, address, "certify")
    certified = [o.job.typed.agent_id for o in outcomes if o.status in ("done", "cached")]
    rows = []
    with open_store(str(root), must_exist=True, readonly=True) as store:
        for aid in sorted(certified, key=list(before).index):
            now = stored_certificates(store, aid, methods, eps, states, threshold)
            rows += [(now[m], m in before[aid]) for m in methods if m in now]
    if rows:
        _certificate_table(rows, states, threshold)
    exit_on_failures(outcomes)


def _certificate_table(rows: list[tuple[dict, bool]], states: int, threshold: float) -> None:
    """The certified rows, as (row, whether it was stored before and kept), with the notes under them."""
    checked = sorted({r["soundness_checked_points"] for r, _ in rows})
    t = Table(Column("agent id", overflow="fold", min_width=18),
              *(Column(h, no_wrap=True) for h in ("method", "ε", "mean dev", "max dev", "Σu²/σ²",
                                                   f"≤ {threshold:g}", "s/1k")),
              box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
              title=f"certified bounds of μ over the ε-ball, {states} states per agent")
    notes = [
        "dev = max_i u_i in action units (mean and max over states); Σu²/σ²: mean over states; "
        "s/1k: bound seconds per 1000 states",
        f"sound: no PGD, MAD or sampled point left the bounds ({', '.join(map(str, checked))} ball points "
        "per agent)",
    ]
    kept = 0
    for r, was_stored in rows:
        kept += was_stored
        t.add_row(r["agent_id"], r["method"], f"{r['eps']:g}", f"{r['mean_dev']:.3g}", f"{r['max_dev']:.3g}",
                  f"{r['mean_sum_u2_sigma2']:.4g}", f"{r['frac_below']:.1%}", f"{r['seconds_per_1000']:.2g}")
        cmp = (r["info"] or {}).get("vs_ibp")
        if cmp and cmp.get("looser_states"):
            notes.append(f"{r['agent_id']} {r['method']}: looser than IBP on {cmp['looser_states']} of "
                         f"{r['states']} states (both sound; reported per method)")
    if kept:
        notes.append(f"{kept} of {len(rows)} rows were stored before and kept (--force recomputes them)")
    out = out_console()
    out.print(t)
    for n in notes:
        out.print(n)
