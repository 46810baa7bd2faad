"""The `robbench` command line (typer + rich).

    robbench train <method> <env> [--seed | --seeds 0-16] [--steps --preset --num-envs --param k=v]
    robbench import <model> --env <env> [--format sb3|cleanrl|torch|onnx|rlzoo --vecnormalize --obs-stats --raw-obs
                    --activation --spec --name]
    robbench run <grid.toml|yaml> [--workers N] [--backend local|ray [--address auto|host:port]]
    robbench evaluate --agents all|<ids> --attacks all|<names> [--episodes --eps]
    robbench certify --agents all|<ids> [--method ibp|crown-ibp|crown|all --eps --states --threshold]
    robbench report --format markdown|csv|json [--out]
    robbench list envs|trainers|attacks|agents
    robbench merge <other-home>... [--home]
    robbench zoo list|export
    robbench demo

Bad input gets one line on stderr naming the bad value and the valid choices, exit status 2, no
traceback.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column, Table

from robbench.errors import RobbenchError, unknown

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Train, attack, certify and rank robust deep-RL agents under one protocol.",
)
console = Console(stderr=True)
out_console = Console()

HomeOpt = typer.Option(None, "--home", help="Results home (default: $ROBBENCH_HOME or ./robbench-results).")


class Terminated(KeyboardInterrupt):
    """SIGTERM on the driver (Slurm, systemd, `kill`): stop as on Ctrl-C (the pool is stopped, finished
    work kept); a second SIGTERM kills outright, and the workers still die with the driver."""


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated()


def _interrupted(exc: KeyboardInterrupt) -> typer.Exit:
    word = "terminated" if isinstance(exc, Terminated) else "interrupted"
    typer.echo(f"{word}: finished cells and agents are kept; re-run to continue", err=True)
    return typer.Exit(143 if isinstance(exc, Terminated) else 130)


def cli_errors(fn):
    """Turn RobbenchError into one line on stderr and exit status 2 (Ctrl-C / SIGTERM: one line too)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RobbenchError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as exc:
            raise _interrupted(exc) from None

    return wrapper


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
    )


def _parse_params(items: list[str]) -> dict:
    """`k=v` pairs; values parsed as JSON when possible (numbers, booleans), else kept as strings."""
    params = {}
    for item in items:
        if "=" not in item:
            raise RobbenchError(f"--param expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            params[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            params[k.strip()] = v
    return params


def _open_store(home: Optional[str], must_exist: bool, readonly: bool = False):
    from robbench.store import ResultsStore, resolve_home

    return ResultsStore(resolve_home(home, must_exist=must_exist), readonly=readonly)


def _check_executor(backend: str, workers, address) -> None:
    from robbench.jobs import check_executor_options

    check_executor_options(backend, workers, address)


WorkersOpt = typer.Option(None, "--workers", help="Parallel jobs (default: the cores; 1 runs in this process).")
BackendOpt = typer.Option("local", "--backend", help="Executor: local (process pool) or ray.")
AddressOpt = typer.Option(None, "--address", help="Ray cluster address (auto or host:port); default: start a local one.")


def _execute(jobs, home: Path, workers, backend: str, address, title: str) -> list:
    """Run jobs through an executor with a progress bar over jobs; a failure summary at the end."""
    from robbench.jobs import make_executor, run_jobs

    from robbench.cost import estimate_seconds

    runnable = len(jobs)
    # The bar advances by each job's estimated cost (robbench/cost.py), so its ETA weighs a long
    # adversary fit above a short evaluation; the count of jobs is shown beside it.
    cost = {job.key: estimate_seconds(job.kind, job.spec) for job in jobs}
    finished = [0]
    with _progress() as bar:
        overall = bar.add_task(title, total=sum(cost.values()) or 1.0, info=f"0/{runnable} jobs")
        inner = {}

        def inline_progress(job):
            task = bar.add_task(f"  {job.label}", total=None, info="")
            inner[job.key] = task

            def hook(done, total=None, info=""):
                bar.update(task, completed=done, total=total, info=info)

            return hook

        executor = make_executor(backend, workers, runnable, address, progress=inline_progress)
        bar.update(overall, description=f"{title} ({executor.name}, {executor.workers} worker"
                   f"{'s' if executor.workers != 1 else ''})")

        def on_outcome(o):
            text = o.summary if o.status in ("done", "cached") else o.error
            if o.job.key in inner:
                bar.remove_task(inner.pop(o.job.key))
            if o.status != "cached":
                mark = {"done": "[green]✓[/]", "failed": "[red]✗[/]", "skipped": "[yellow]–[/]"}[o.status]
                # soft_wrap: one line per job even in a pipe or a log (the terminal wraps it, not rich)
                bar.console.print(f"{mark} {o.job.label}: {text}", highlight=False, markup=True, soft_wrap=True)
            finished[0] += 1
            bar.update(overall, advance=cost.get(o.job.key, 0.0), info=f"{finished[0]}/{runnable} jobs · {o.job.label}")

        outcomes = run_jobs(jobs, home, executor, on_outcome)
    counts = {k: sum(o.status == k for o in outcomes) for k in ("done", "cached", "failed", "skipped")}
    console.print(f"{counts['done']} jobs run, {counts['cached']} already done, {counts['failed']} failed, "
                  f"{counts['skipped']} skipped")
    return outcomes


def _exit_on_failures(outcomes) -> None:
    failed = [o for o in outcomes if o.status in ("failed", "skipped")]
    if failed:
        console.print(f"{len(failed)} jobs did not complete (recorded in the jobs table); "
                      "finished results are kept, re-run to retry")
        raise typer.Exit(1)


# --------------------------------------------------------------------------------------------- train
@app.command()
@cli_errors
def train(
    method: str = typer.Argument(..., help="Trainer (see `robbench list trainers`)."),
    env: str = typer.Argument(..., help="Environment key (see `robbench list envs`)."),
    seed: int = typer.Option(0, help="Training seed (0 ≤ seed < 2**31)."),
    seeds: Optional[str] = typer.Option(None, help="Several seeds as jobs, e.g. 0-16 or 0,3,5-7 (overrides --seed)."),
    preset: str = typer.Option("paper", help="Budget preset: paper, quick or smoke."),
    steps: Optional[int] = typer.Option(None, help="Override the preset's number of env steps."),
    num_envs: int = typer.Option(8, help="Parallel env copies (speed only; 2048 steps/iteration regardless)."),
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
    from robbench.envs import get_env_spec
    from robbench.grid import parse_seeds, train_jobs
    from robbench.registry import get_trainer

    get_trainer(method), get_env_spec(env)
    _check_executor(backend, workers, address)
    params = _parse_params(param)
    if kappa is not None:
        params["kappa"] = kappa
    if num_envs < 1:
        raise RobbenchError(f"--num-envs must be at least 1, got {num_envs}")
    seed_list = parse_seeds(seeds, "--seeds") if seeds is not None else parse_seeds(seed, "--seed")
    jobs = [job for _, job in train_jobs([method], [env], seed_list, preset, steps, num_envs, {method: params},
                                         force=force)]
    with _open_store(home, must_exist=False) as store:
        root = store.home
    outcomes = _execute(jobs, root, workers, backend, address, f"train {method} {env}")
    with _open_store(str(root), must_exist=True) as store:
        known = {a.agent_id: a for a in store.agents()}
    for o in outcomes:
        aid = o.job.label.removeprefix("train ")
        if o.status in ("done", "cached") and aid in known:
            prov = known[aid].meta.get("provenance", {}) if o.status == "done" else {}
            verb = ("retrained" if prov.get("replaced_checkpoint") else "trained") if o.status == "done" \
                else "exists (use --force to retrain)"
            console.print(f"{aid}: {verb} — {known[aid].steps} steps, checkpoint {known[aid].path}")
            for note, text in (("replaced_checkpoint", "the stored agent was unusable ({}); retrained it"),
                               ("snapshot_ignored", "{}; trained from the start")):
                if prov.get(note):
                    console.print(f"warning: {aid}: " + text.format(prov[note]), markup=False, highlight=False,
                                  soft_wrap=True)
    _exit_on_failures(outcomes)


# ------------------------------------------------------------------------------------------ evaluate
@app.command()
@cli_errors
def evaluate(
    agents: str = typer.Option("all", help="`all`, `zoo` (the shipped reference agents, imported into the home "
                               "first) or comma-separated agent ids."),
    attacks: str = typer.Option("all", help="`standard` (the versioned standard suite boards are ranked by), `all`, "
                                "or comma-separated attack names (see `robbench list attacks`)."),
    episodes: int = typer.Option(50, help="Episodes per (agent, attack)."),
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
    from robbench.evaluate import Protocol
    from robbench.registry import attacks as all_attacks
    from robbench.store import iter_agent_ids

    if episodes <= 0:
        raise RobbenchError(f"--episodes must be positive, got {episodes}")
    if eps is not None and (eps != eps or eps < 0 or eps == float("inf")):
        raise RobbenchError(f"--eps must be a number ≥ 0, got {eps}")
    _check_executor(backend, workers, address)
    table = all_attacks()
    suite_params: dict[str, dict] = {}
    if attacks == "all":
        names = list(table)
    elif attacks.startswith("standard"):
        from robbench.suite import get_suite

        suite = get_suite(attacks)
        names = suite.attacks
        suite_params = {n: suite.params(n) for n in names}
    else:
        names = [n.strip() for n in attacks.split(",") if n.strip()]
        for n in names:
            if n not in table:
                raise unknown("attack", n, table)
    attack_params: dict[str, dict] = {n: dict(p) for n, p in suite_params.items() if p}
    for key, value in _parse_params(param).items():
        name, _, setting = key.partition(".")
        if not setting or name not in table:
            raise RobbenchError(f"--param expects attack.key=value with a registered attack, got {key!r}")
        attack_params.setdefault(name, {})[setting] = value
    from robbench.grid import attack_jobs, critic_notice, drop_critic_cells
    from robbench.jobs import is_complete

    with _open_store(home, must_exist=agents != "zoo") as store:
        if agents == "zoo":
            from robbench import zoo

            ids = zoo.import_into(store)
        else:
            ids = list(iter_agent_ids(store, agents))
        if not ids:
            raise RobbenchError("no agents in this results home; train one with `robbench train`")
        for name, p in attack_params.items():  # bad settings: one line now, not one failure per job
            table[name](Protocol.for_env(store.get_agent(ids[0]).env, eps=eps).eps, **p)
        jobs = attack_jobs({aid: () for aid in ids}, names, attack_params, episodes, eps, fit=fit, force=force)
        jobs, no_critic = drop_critic_cells(store, jobs)  # never attack a value network an agent lacks
        for aid, name in no_critic:
            console.print(critic_notice(aid, name), markup=False, highlight=False, soft_wrap=True)
        skipped = []
        if not fit:  # cells of learned attacks with no stored artifact cannot run
            runnable = []
            for job in jobs:
                needs_fit = table[job.spec["attack"]].needs_fit
                if needs_fit and not force and not is_complete(store, job) and not _fitted(store, job):
                    if attacks != "all":
                        raise RobbenchError(f"attack {job.spec['attack']!r} is not fitted for agent "
                                            f"{job.spec['agent_id']!r}; run without --no-fit to train it")
                    skipped.append(job.label.removeprefix("evaluate "))
                    continue
                runnable.append(job)
            jobs = runnable
        root = store.home
    outcomes = _execute(jobs, root, workers, backend, address, "attacks")
    if skipped:
        console.print(f"skipped (--no-fit, no stored artifact): {', '.join(skipped)}")
    _exit_on_failures(outcomes)
    console.print("done; see `robbench report`")


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
    with _open_store(home, must_exist=False) as store:
        done = import_agent(store, path, env, fmt=format, vecnormalize=vecnormalize, obs_stats=obs_stats,
                            raw_obs=raw_obs, activation=activation, spec=spec, name=name)
    verb = "imported" if done.created else "already imported (same files and options)"
    console.print(f"{verb}: {done.summary()}", markup=False, highlight=False, soft_wrap=True)
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
    home: Optional[str] = HomeOpt,
):
    """Print or write the leaderboards (boards, significance, seed aggregates, trust flags)."""
    from robbench.report import EXTENSIONS, FORMATS, render

    # Called as a plain function (`demo`), the defaults are typer's OptionInfo objects.
    compare_paper = compare_paper is True
    paper_csv = paper_csv if isinstance(paper_csv, str) else None
    if format not in FORMATS:
        raise unknown("format", format, FORMATS)
    if compare_paper:
        if paper_csv is None:
            from robbench.report import PAPER_CSV

            paper_csv = str(PAPER_CSV)
        elif not Path(paper_csv).is_file():
            raise RobbenchError(f"--paper-csv {paper_csv!r} is not a file")
    with _open_store(home, must_exist=True, readonly=True) as store:  # works on a read-only home
        text = render(store, format, compare_paper=compare_paper, paper_csv=paper_csv)
    if out is None:
        sys.stdout.write(text)
        return
    path = Path(out)
    if len(path.parts) == 1 and not path.is_dir():
        path = Path("reports") / path
    if path.is_dir() or out.endswith("/"):
        path = path / f"leaderboard.{EXTENSIONS[format]}"
    write_atomic(path, text)
    console.print(f"wrote {path}")


def _fitted(store, job) -> bool:
    from robbench.artifacts import artifact_exists
    from robbench.jobs import _attack

    try:
        record, _, attack, _ = _attack(store, job.spec)
    except RobbenchError:
        return True  # let the job report it
    return artifact_exists(store, record, attack)


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
    from robbench.jobs import is_complete

    _check_executor(backend, workers, address)
    grid = load_grid(grid_file)
    with _open_store(home, must_exist=False) as store:
        jobs, no_critic = drop_critic_cells(store, grid_jobs(grid, store))
        for aid, name in no_critic:
            console.print(critic_notice(aid, name), markup=False, highlight=False, soft_wrap=True)
        root = store.home
        if dry_run:
            t = Table("kind", "job", "state", box=box.SIMPLE_HEAD)
            for job in jobs:
                t.add_row(job.kind, job.label.split(" ", 1)[1], "done" if is_complete(store, job) else "to run")
            out_console.print(t)
            return
    kinds = {k: sum(j.kind == k for j in jobs) for k in ("train", "fit", "evaluate", "certify")}
    console.print(f"grid {Path(grid_file).name}: {len(jobs)} jobs ("
                  + ", ".join(f"{n} {k}" for k, n in kinds.items() if n) + f") → {root}")
    outcomes = _execute(jobs, root, workers, backend, address, "grid")
    _exit_on_failures(outcomes)
    console.print("done; see `robbench report`")


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename: a report is either whole or absent."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; reports are meant to be read and served
        os.replace(tmp, path)
    except OSError as exc:
        raise RobbenchError(f"cannot write {str(path)!r}: {exc.strerror}") from None


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
        out_console.print(t)
        from robbench.suite import get_suite

        suite = get_suite()
        t = Table(Column("standard suite member", overflow="fold"), "cells per agent", "parameters",
                  title=f"`--attacks standard` = {suite.id} (ranked boards use exactly these cells)")
        counts = suite.cell_counts(1.0)
        for name in suite.attacks:
            t.add_row(name, str(counts[name]), json.dumps(suite.params(name)) if suite.params(name) else "defaults")
    else:
        with _open_store(home, must_exist=True, readonly=True) as store:
            t = Table(Column("agent id", overflow="fold", min_width=24), "method", "env", "seed", "preset", "steps",
                      Column("trained on", overflow="fold"))
            for a in store.agents():
                t.add_row(a.agent_id, a.method, a.env, str(a.seed), a.preset, str(a.steps),
                          a.meta.get("provenance", {}).get("started", ""))
    out_console.print(t)


# ------------------------------------------------------------------------------------------- certify
@app.command()
@cli_errors
def certify(
    agents: str = typer.Option("all", help="`all` or comma-separated agent ids."),
    method: str = typer.Option("all", help="Bound method: ibp, crown-ibp, crown, all, or a comma-separated list."),
    eps: Optional[float] = typer.Option(None, help="Radius of the ℓ∞ ball (default: the protocol ε of the agent's env)."),
    states: int = typer.Option(1000, help="States sampled from the agent's natural episodes."),
    threshold: float = typer.Option(
        0.1, help="Certified action deviation counted as small, in action units (fraction of states ≤ it)."),
    force: bool = typer.Option(False, help="Recompute certificates that are already stored."),
    home: Optional[str] = HomeOpt,
):
    """Certified bounds of the policy mean over the ε-ball (auto-LiRPA), soundness-checked, then stored."""
    from robbench.certify import certify_agent, parse_methods, validate_threshold
    from robbench.store import iter_agent_ids

    methods = parse_methods(method)
    if eps is not None and (eps != eps or eps < 0 or eps == float("inf")):
        raise RobbenchError(f"--eps must be a number ≥ 0, got {eps}")
    if states <= 0:
        raise RobbenchError(f"--states must be positive, got {states}")
    validate_threshold(threshold)
    rows = []
    with _open_store(home, must_exist=True) as store:
        ids = list(iter_agent_ids(store, agents))
        if not ids:
            raise RobbenchError("no agents in this results home; train one with `robbench train`")
        with _progress() as bar:
            task = bar.add_task("certify", total=len(ids) * len(methods), info="")
            for aid in ids:
                bar.update(task, info=aid)
                try:
                    outcomes = certify_agent(
                        store, aid, methods, eps=eps, states=states, threshold=threshold, force=force,
                        progress=lambda stage: bar.advance(task) if stage in methods else None,
                    )
                except RobbenchError:  # e.g. a bad checkpoint: the error alone, on one line
                    bar.remove_task(task)
                    raise
                rows += outcomes
                bar.update(task, completed=(ids.index(aid) + 1) * len(methods))
    checked = sorted({o.row["soundness_checked_points"] for o in rows})
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
    for o in rows:
        r = o.row
        kept += not o.computed
        t.add_row(r["agent_id"], r["method"], f"{r['eps']:g}", f"{r['mean_dev']:.3g}", f"{r['max_dev']:.3g}",
                  f"{r['mean_sum_u2_sigma2']:.4g}", f"{r['frac_below']:.1%}", f"{r['seconds_per_1000']:.2g}")
        cmp = (r["info"] or {}).get("vs_ibp")
        if cmp and cmp.get("looser_states"):
            notes.append(f"{r['agent_id']} {r['method']}: looser than IBP on {cmp['looser_states']} of "
                         f"{r['states']} states (both sound; reported per method)")
    if kept:
        notes.append(f"{kept} of {len(rows)} rows were stored before and kept (--force recomputes them)")
    out_console.print(t)
    for n in notes:
        out_console.print(n)


# --------------------------------------------------------------------------------------------- merge
@app.command()
@cli_errors
def merge(
    sources: list[str] = typer.Argument(..., metavar="SOURCE...", help="Results homes to merge in."),
    home: Optional[str] = HomeOpt,
):
    """Merge other results homes (agents, fitted attacks, cells, certificates) into this one."""
    from robbench.merge import merge_home

    with _open_store(home, must_exist=False) as store:
        for src in sources:
            rep = merge_home(store, Path(src))
            n = len(rep.conflicts)
            console.print(f"{src}: {rep.agents} agents, {rep.artifacts} fitted attacks, {rep.cells} cells, "
                          f"{rep.certificates} certificates merged"
                          + (f"; {n} conflict{'s' if n != 1 else ''} (left out or kept ours):" if n else ""),
                          soft_wrap=True, highlight=False, markup=False)
            for line in rep.conflicts:
                console.print(f"  conflict: {line}", soft_wrap=True, highlight=False, markup=False)
            for line in rep.notes:
                console.print(f"  same agent: {line}", soft_wrap=True, highlight=False, markup=False)


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
    out_console.print(t)


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
    evaluate(agents="zoo", attacks=",".join(names), episodes=50, eps=None, fit=False, param=[], force=False,
             workers=workers, backend="local", address=None, home=home)
    with _open_store(home, must_exist=True, readonly=True) as store:
        rows = zoo.verify(store, names)
    t = Table("agent", "attack", "published", "here", "per-episode", box=box.SIMPLE_HEAD)
    for r in rows:
        t.add_row(r["agent"], r["attack"], f"{r['published']:.2f}", f"{r['got']:.2f}",
                  "[green]identical[/]" if r["match"] else "[red]differs[/]")
    out_console.print(t)
    bad = [r for r in rows if not r["match"]]
    out_console.print(f"{len(rows) - len(bad)} of {len(rows)} cells reproduce the manifest exactly")
    if bad:
        where = sorted({str(r["evaluated_on"]) for r in bad})
        out_console.print(f"published cells were evaluated on: {'; '.join(where)} — another torch/MuJoCo build "
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
    console.print(f"wrote {zoo.ZOO_DIR / 'manifest.json'}: {len(data['agents'])} agents")


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
    from robbench.toy import run_toy

    if grid < 2:
        raise RobbenchError(f"--grid must be at least 2, got {grid}")
    if steps <= 0 or not lr > 0:
        raise RobbenchError(f"--steps and --lr must be positive, got {steps} and {lr}")
    run_toy(grid=grid, out_dir=Path(out) if out else None, console=out_console, steps=steps, lr=lr)


# ---------------------------------------------------------------------------------------------- demo
@app.command()
@cli_errors
def demo(
    preset: str = typer.Option("quick", help="Training budget preset for the demo agents."),
    methods: str = typer.Option("ppo,barppo", help="Trainers, comma-separated (`robbench list trainers`)."),
    env: str = typer.Option("hopper", help="Environment."),
    episodes: int = typer.Option(50, help="Evaluation episodes per cell."),
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
    for m in chosen:
        train(m, env, seed=0, seeds=None, preset=preset, steps=None, num_envs=8, kappa=None, param=[], force=False,
              workers=1, backend="local", address=None, home=home)
    from robbench.registry import attacks as all_attacks

    untrained = ",".join(n for n, cls in all_attacks().items() if not cls.needs_fit)
    evaluate(agents="all", attacks=untrained, episodes=episodes, eps=None, fit=False, param=[], force=False,
             workers=None, backend="local", address=None, home=home)
    report(format="markdown", out=None, home=home)


def main() -> None:
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        # Tiny MLPs: one intra-op thread is fastest, and on a loaded 2-core machine torch's default
        # thread pool can be an order of magnitude slower. Override with ROBBENCH_THREADS.
        import torch

        torch.set_num_threads(int(os.environ.get("ROBBENCH_THREADS", "1")))
    except KeyboardInterrupt as exc:  # Ctrl-C while torch loads: one line, not its import traceback
        raise SystemExit(_interrupted(exc).exit_code) from None
    app()


if __name__ == "__main__":
    main()
