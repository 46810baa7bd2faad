"""What every `robbench` command shares: the typer app, one-line errors, the consoles, the progress of
a run of jobs, and plain output when stdout or stderr is not a terminal.

In a terminal tables and progress bars are drawn by rich at the terminal's width. Piped or written
to a log they are not: rich would fold a table at 80 columns (cutting the agent ids one copies
into `load_agent`) and a live bar writes nothing until it stops, so a long `evaluate` under nohup
or Slurm would leave an empty log for hours. Off a terminal, tables are printed at their full
width and a run of jobs prints one line per finished job and one progress line with the count and
an ETA.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from robbench.errors import RobbenchError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Train, attack, certify and rank robust deep-RL agents under one protocol.",
)

HomeOpt = typer.Option(None, "--home", help="Results home (default: $ROBBENCH_HOME or ./robbench-results).")
WorkersOpt = typer.Option(None, "--workers", help="Parallel jobs (default: the cores; 1 runs in this process).")
BackendOpt = typer.Option("local", "--backend", help="Executor: local (process pool) or ray.")
AddressOpt = typer.Option(None, "--address", help="Ray cluster address (auto or host:port); default: start a local one.")

PLAIN_WIDTH = 10_000  # off a terminal: wide enough that no table folds or truncates a cell


def _console(stderr: bool) -> Console:
    """A console on the current stdout / stderr (looked up per call: tests and pipes swap them)."""
    stream = sys.stderr if stderr else sys.stdout
    plain = not (hasattr(stream, "isatty") and stream.isatty())
    return Console(stderr=stderr, width=PLAIN_WIDTH if plain else None)


def err_console() -> Console:
    return _console(stderr=True)


def out_console() -> Console:
    return _console(stderr=False)


def say(text: str) -> None:
    """One line on stderr, as written: no markup, no highlighting, never wrapped by rich."""
    err_console().print(text, markup=False, highlight=False, soft_wrap=True)


def plural(n: int, word: str, many: str | None = None) -> str:
    """`1 job`, `2 jobs`; `many` for irregular plurals (`1 adversary`, `3 adversaries`)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def _version(value: bool) -> None:
    if value:
        import robbench

        typer.echo(f"robbench {robbench.__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print robbench's version and exit.")) -> None:
    """Train, attack, certify and rank robust deep-RL agents under one protocol."""


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


def open_store(home: Optional[str], must_exist: bool, readonly: bool = False):
    from robbench.store import ResultsStore, resolve_home

    return ResultsStore(resolve_home(home, must_exist=must_exist), readonly=readonly)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class _PlainProgress:
    """Progress of a run of jobs as lines (off a terminal): one per finished job, then the count and
    an ETA. The ETA weighs the jobs by their estimated cost (robbench/cost.py) and extrapolates the
    rate of the jobs that ran; jobs found already done cost nothing and are left out of the rate."""

    def __init__(self, title: str, cost: dict[str, float], total: int):
        self.title, self.cost, self.total = title, cost, total
        self.start = time.monotonic()
        self.finished = 0
        self.ran_cost = 0.0  # estimated seconds of the jobs that ran (not cached)
        self.left_cost = sum(cost.values())

    def started(self, executor) -> None:
        say(f"{self.title} ({executor.name}, {plural(executor.workers, 'worker')}): {plural(self.total, 'job')}")

    def finish(self, outcome, line: str | None) -> None:
        self.finished += 1
        spent = self.cost.get(outcome.job.key, 0.0)
        self.left_cost -= spent
        if outcome.status != "cached":
            self.ran_cost += spent
        if line is None:
            return
        say(line)
        elapsed = time.monotonic() - self.start
        eta = (_duration(elapsed * max(self.left_cost, 0.0) / self.ran_cost) if self.ran_cost > 0 and self.left_cost > 0
               else ("0s" if self.finished == self.total else "unknown"))
        say(f"  {self.finished}/{self.total} jobs · {_duration(elapsed)} elapsed · ETA {eta}")


def execute(jobs, home: Path, workers, backend: str, address, title: str) -> list:
    """Run jobs through an executor: a progress bar over jobs in a terminal, progress lines
    elsewhere; a count of what ran, was found done, failed or was skipped at the end."""
    from robbench.cost import estimate_seconds
    from robbench.jobs import make_executor, run_jobs

    runnable = len(jobs)
    # The bar advances by each job's estimated cost (robbench/cost.py), so its ETA weighs a long
    # adversary fit above a short evaluation; the count of jobs is shown beside it.
    cost = {job.key: estimate_seconds(job.kind, job.typed) for job in jobs}
    console = err_console()

    def job_line(o) -> str | None:
        if o.status == "cached":
            return None
        text = o.summary if o.status == "done" else o.error
        return f"{ {'done': '✓', 'failed': '✗', 'skipped': '–'}[o.status]} {o.job.label}: {text}"

    if not console.is_terminal:
        plain = _PlainProgress(title, cost, runnable)
        executor = make_executor(backend, workers, runnable, address)
        plain.started(executor)
        outcomes = run_jobs(jobs, home, executor, lambda o: plain.finish(o, job_line(o)))
    else:
        outcomes = _run_with_bar(jobs, home, workers, backend, address, title, cost, console, job_line)
    counts = {k: sum(o.status == k for o in outcomes) for k in ("done", "cached", "failed", "skipped")}
    say(f"{plural(counts['done'], 'job')} run, {counts['cached']} already done, {counts['failed']} failed, "
        f"{counts['skipped']} skipped")
    return outcomes


def _run_with_bar(jobs, home, workers, backend, address, title, cost, console, job_line) -> list:
    from robbench.jobs import make_executor, run_jobs

    runnable = len(jobs)
    finished = [0]
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                  transient=False) as bar:
        overall = bar.add_task(title, total=sum(cost.values()) or 1.0, info=f"0/{runnable} jobs")
        inner = {}

        def inline_progress(job):
            task = bar.add_task(f"  {job.label}", total=None, info="")
            inner[job.key] = task

            def hook(done, total=None, info=""):
                bar.update(task, completed=done, total=total, info=info)

            return hook

        executor = make_executor(backend, workers, runnable, address, progress=inline_progress)
        bar.update(overall, description=f"{title} ({executor.name}, {plural(executor.workers, 'worker')})")

        def on_outcome(o):
            if o.job.key in inner:
                bar.remove_task(inner.pop(o.job.key))
            line = job_line(o)
            if line is not None:  # soft_wrap: one line per job (the terminal wraps it, not rich)
                bar.console.print(line, highlight=False, markup=False, soft_wrap=True)
            finished[0] += 1
            bar.update(overall, advance=cost.get(o.job.key, 0.0), info=f"{finished[0]}/{runnable} jobs · {o.job.label}")

        return run_jobs(jobs, home, executor, on_outcome)


def exit_on_failures(outcomes) -> None:
    failed = [o for o in outcomes if o.status in ("failed", "skipped")]
    if failed:
        say(f"{plural(len(failed), 'job')} did not complete (recorded in the jobs table); finished results are "
            "kept, re-run to retry")
        raise typer.Exit(1)


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
