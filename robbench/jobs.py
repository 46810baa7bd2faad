"""Jobs, executors and the scheduler that runs a benchmark grid.

Every unit of work is a `Job`: train one agent, fit one learned-attack member, evaluate one cell,
certify one agent. A job's key is a hash of its kind, its inputs and config, and the code version.
Jobs name the jobs they need (`deps`): a cell's evaluation waits for its agent's training and its
attack's fit. The scheduler hands ready jobs to an executor:

* `inline` — in this process, one at a time (chosen when one worker is asked for or one job runs);
* `local` — a process pool sized to the cores (the default; forkserver workers, one torch thread
  each, killed with the driver);
* `ray` — Ray ≥ 2 tasks of one CPU each, on a local instance or a cluster (`--address`); the results
  home must then be on a filesystem every node sees.

Workers write their own results through the store (SQLite WAL, one transaction per cell or agent,
retried while another writer holds the lock); the driver alone writes the `jobs` log. Every output
is keyed by content, so a job whose output exists is skipped: killing a grid at any moment and
running it again runs only what is missing, and training and adversary fits continue from their
last snapshot (robbench/resume.py). A job that fails is recorded with its one-line reason, the jobs
that need it are skipped, and every other job still runs.
"""

from __future__ import annotations

import hashlib
import os
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robbench.errors import RobbenchError, io_error, unknown
from robbench.specs import CertifySpec, EvaluateSpec, FitSpec, JobSpec, TrainSpec, as_spec
from robbench.store import DB_NAME, DatabaseError, JobRecord, ResultsStore, canonical_json

KINDS = ("train", "fit", "evaluate", "certify")
PRIORITY = {"train": 0, "fit": 1, "evaluate": 2, "certify": 2}
BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class Job:
    """One unit of work. `typed` is its checked spec (robbench/specs.py); `spec` is that spec's dict
    form, the content address the key hashes and the jobs table stores."""

    kind: str
    spec: dict[str, Any]
    label: str
    deps: tuple[str, ...] = ()
    key: str = field(default="", compare=False)
    typed: JobSpec | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.typed is None:  # built field by field: the typed spec comes from the dict form
            object.__setattr__(self, "typed", as_spec(self.kind, self.spec))

    @staticmethod
    def make(kind: str, spec: JobSpec | dict[str, Any], label: str, deps: Iterable[str] = ()) -> Job:
        """A job from a typed spec, or from a dict (checked by turning it into one: bad input is one line)."""
        from robbench import provenance

        typed = as_spec(kind, spec)
        content = typed.to_dict()
        payload = canonical_json({"kind": kind, "spec": content, "code_version": provenance.code_version()})
        return Job(kind, content, label, tuple(deps), hashlib.sha256(payload.encode()).hexdigest(), typed)


@dataclass
class Outcome:
    job: Job
    status: str  # done | cached | failed | skipped
    summary: str = ""
    error: str = ""
    wall_s: float = 0.0


# ------------------------------------------------------------------------------------- run a job
def run_job(home: str, kind: str, spec: JobSpec | dict[str, Any], progress: Callable | None = None) -> dict[str, Any]:
    """Run one job against the results home; never raises: failures come back as a dict.

    Executors hand over the typed spec; a dict (a spec read back from a jobs table) is checked by
    the runner on the way in, so a bad one fails this job with one line like any other failure."""
    import torch

    torch.set_num_threads(int(os.environ.get("ROBBENCH_THREADS", "1")))
    start = time.perf_counter()
    try:
        with ResultsStore(home) as store:
            status, summary = _RUNNERS[kind](store, spec, progress)
        return {"status": status, "summary": summary, "wall_s": time.perf_counter() - start}
    except RobbenchError as exc:
        return {"status": "failed", "error": str(exc), "wall_s": time.perf_counter() - start}
    except (OSError, DatabaseError) as exc:  # disk full, read-only home, ...: one readable line
        where = Path(home) / DB_NAME if isinstance(exc, DatabaseError) else (exc.filename or home)
        return {"status": "failed", "error": str(io_error(exc, where)), "wall_s": time.perf_counter() - start}
    except Exception as exc:  # a bug: keep the traceback in the jobs log, one line on screen
        return {"status": "failed", "error": " ".join(f"{type(exc).__name__}: {exc}".split()),
                "traceback": traceback.format_exc(),
                "wall_s": time.perf_counter() - start}


_RUNNERS: dict[str, Callable[[ResultsStore, Any, Callable | None], tuple[str, str]]] = {}


def _runner(kind: str):
    """Register the runner of `kind`; it is called with the typed spec whatever form it was given in."""

    def register(fn):
        _RUNNERS[kind] = lambda store, spec, progress: fn(store, as_spec(kind, spec), progress)
        return fn

    return register


@_runner("train")
def _run_train(store: ResultsStore, spec: TrainSpec, progress) -> tuple[str, str]:
    from robbench.train import train_agent

    on_iter = None
    if progress is not None:
        on_iter = lambda i, s: progress(i, None, f"return {s['mean_return']:.0f} · {s['steps_per_s']:.0f} steps/s")  # noqa: E731
    record, trained = train_agent(
        store, spec.method, spec.env, spec.seed, spec.preset, spec.steps, spec.num_envs, spec.force, spec.params,
        on_iter, retrain_stale=spec.retrain_stale,
    )
    prov = record.meta.get("provenance", {})
    ret = prov.get("final_train_return")
    text = f"{record.steps} steps, train return {ret:.0f}" if ret is not None else f"{record.steps} steps"
    if prov.get("resumed_from_iteration"):
        text += f" (resumed at iteration {prov['resumed_from_iteration']})"
    return ("done" if trained else "cached"), text


@_runner("fit")
def _run_fit(store: ResultsStore, spec: FitSpec, progress) -> tuple[str, str]:
    from robbench.artifacts import artifact_exists, ensure_fitted
    from robbench.threat import Victim

    record, _, attack, _ = spec.resolve(store)
    cached = artifact_exists(store, record, attack)
    meta = ensure_fitted(store, record, attack, Victim(store.load_agent(record.agent_id)), fit=True,
                         progress=progress)
    return ("cached" if cached else "done"), f"fitted in {meta.get('wall_s', 0):.0f} s"


@_runner("evaluate")
def _run_evaluate(store: ResultsStore, spec: EvaluateSpec, progress) -> tuple[str, str]:
    from robbench.evaluate import evaluate_cell

    on_ep = None
    if progress is not None:
        on_ep = lambda done, steps: progress(done, spec.episodes, f"{steps} steps")  # noqa: E731
    _, result = evaluate_cell(
        store, spec.agent_id, spec.attack, eps=spec.eps, episodes=spec.episodes, base_seed=spec.base_seed,
        attack_params=spec.params, force=spec.force, progress=on_ep, fit=spec.fit,
    )
    if result is None:
        return "cached", "cached"
    return "done", f"{result.mean:.0f} ± {result.std:.0f}"


@_runner("certify")
def _run_certify(store: ResultsStore, spec: CertifySpec, progress) -> tuple[str, str]:
    from robbench.certify import certify_agent

    outcomes = certify_agent(store, spec.agent_id, spec.methods, eps=spec.eps, states=spec.states,
                             threshold=spec.threshold, force=spec.force)
    computed = any(o.computed for o in outcomes)
    text = ", ".join(f"{o.row['method']} {o.row['mean_dev']:.3g}" for o in outcomes)
    return ("done" if computed else "cached"), text


def is_complete(store: ResultsStore, job: Job) -> bool:
    """Whether the job's output is already in the store (checked by the driver before submitting)."""
    s = job.typed
    if s.force:
        return False
    try:
        if isinstance(s, TrainSpec):
            from robbench.train import agent_id, build_config, stale_settings, trained_record

            cfg, _ = build_config(s.method, s.env, s.seed, s.preset, s.steps, s.num_envs, s.params)
            record = trained_record(store, agent_id(s.env, s.method, cfg.budget, s.seed))
            return record is not None and not (s.retrain_stale and stale_settings(record, cfg))
        if isinstance(s, FitSpec):
            return s.fitted(store)
        if isinstance(s, EvaluateSpec):
            return store.has_cell(s.resolve(store)[3])
    except RobbenchError:
        return False  # the job itself will report the problem
    return False


# -------------------------------------------------------------------------------------- executors
class Executor(ABC):
    """Runs jobs; `submit` hands one over, `wait` returns those that finished (at least one)."""

    name = "executor"

    def __init__(self, workers: int):
        self.workers = workers

    @abstractmethod
    def submit(self, home: str, job: Job) -> None: ...

    @abstractmethod
    def wait(self) -> list[tuple[Job, dict[str, Any]]]: ...

    @property
    @abstractmethod
    def busy(self) -> int: ...

    def shutdown(self) -> None:
        pass

    def abort(self) -> None:
        """Stop now (Ctrl-C, an error in the driver): jobs in flight are dropped; their snapshots stay."""
        self.shutdown()


class InlineExecutor(Executor):
    """One job at a time in this process (no start-up cost; progress inside the job is shown)."""

    name = "inline"

    def __init__(self, progress: Callable[[Job], Callable | None] | None = None):
        super().__init__(1)
        self.queue: list[tuple[str, Job]] = []
        self.progress = progress

    def submit(self, home: str, job: Job) -> None:
        self.queue.append((home, job))

    def wait(self) -> list[tuple[Job, dict[str, Any]]]:
        home, job = self.queue.pop(0)
        hook = self.progress(job) if self.progress else None
        return [(job, run_job(home, job.kind, job.typed, hook))]

    @property
    def busy(self) -> int:
        return len(self.queue)


def _watch_driver(driver_pid: int) -> None:
    """Kill this worker the moment the driver process is gone (kill -9, the OOM killer, a lost session).

    A forkserver worker's parent is the forkserver, not the driver, and every worker holds the pipe
    that keeps the forkserver alive, so neither PR_SET_PDEATHSIG nor the forkserver notices a dead
    driver: without this the workers would go on computing and writing cells, racing a re-run. A
    thread blocks on a pidfd of the driver (readable when it exits; polled once a second where pidfds
    are unavailable). When the last worker is gone the forkserver and the resource tracker exit too."""
    import select
    import signal
    import threading

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)  # no clean-up to run: results are written atomically

    try:
        fd: int | None = os.pidfd_open(driver_pid)
    except ProcessLookupError:
        die()
        return
    except (AttributeError, OSError):  # no pidfd (old kernel, seccomp): poll
        fd = None

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:
            while True:
                try:
                    os.kill(driver_pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    pass
                time.sleep(1.0)
        die()

    threading.Thread(target=watch, name="robbench-driver-watch", daemon=True).start()


def _worker_init(driver_pid: int | None = None) -> None:
    """Pool worker set-up: one torch thread; die with the driver (no orphan keeps writing)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and stops the pool
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked when the forkserver started
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (the forkserver)
    except (OSError, AttributeError):
        pass
    if driver_pid is not None:
        _watch_driver(driver_pid)
    import torch

    torch.set_num_threads(int(os.environ.get("ROBBENCH_THREADS", "1")))


def _start_forkserver() -> None:
    """Start the forkserver (and the resource tracker) with SIGINT ignored.

    A terminal's Ctrl-C goes to the whole process group; the forkserver spends its first seconds
    importing torch, and a KeyboardInterrupt there prints a long traceback. A process started with
    SIGINT ignored keeps it ignored (Python installs no KeyboardInterrupt handler), and so do the
    workers it forks: the driver alone handles Ctrl-C, and stops them."""
    import signal
    import threading
    from multiprocessing import forkserver

    if threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()
        return
    # Blocked as well as ignored: a Ctrl-C in this instant stays pending and reaches the driver after.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()  # spawns it and returns; the preload runs in the new process
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _kill_forkserver() -> None:
    """SIGKILL this process's forkserver (a worker it is forking now would otherwise start orphaned)."""
    import signal
    from multiprocessing import forkserver

    pid = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


class LocalExecutor(Executor):
    """A pool of worker processes on this machine."""

    name = "local"

    def __init__(self, workers: int):
        super().__init__(workers)
        self._start_pool()
        self.futures: dict[Any, Job] = {}

    def _start_pool(self) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["torch", "robbench.jobs"])
        _start_forkserver()
        self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_worker_init,
                                        initargs=(os.getpid(),))

    def submit(self, home: str, job: Job) -> None:
        self.futures[self.pool.submit(run_job, home, job.kind, job.typed)] = job

    def wait(self) -> list[tuple[Job, dict[str, Any]]]:
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_futures
        from concurrent.futures.process import BrokenProcessPool

        done, _ = wait_futures(list(self.futures), return_when=FIRST_COMPLETED)
        out, broken = [], False
        for fut in done:
            job = self.futures.pop(fut)
            try:
                out.append((job, fut.result()))
            except BrokenProcessPool:
                broken = True
                out.append((job, {"status": "failed", "error": "its worker process died (killed or out of memory)"}))
        if broken:  # every job in flight is lost with the pool: record them, start a fresh pool
            for fut, job in list(self.futures.items()):
                out.append((job, {"status": "failed", "error": "lost when a worker process died; run again"}))
            self.futures.clear()
            self.pool.shutdown(wait=False, cancel_futures=True)
            self._start_pool()
        return out

    @property
    def busy(self) -> int:
        return len(self.futures)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def abort(self) -> None:
        for proc in list((getattr(self.pool, "_processes", None) or {}).values()):
            proc.kill()  # a job killed mid-way resumes from its snapshot next time
        _kill_forkserver()  # and any worker it is forking right now dies with it (PDEATHSIG)
        self.shutdown()


class RayExecutor(Executor):
    """Ray tasks (one CPU each). `address=None` starts a local instance with `workers` CPUs."""

    name = "ray"

    def __init__(self, workers: int, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise RobbenchError("the ray backend needs Ray: pip install 'robbench[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            env = {k: v for k, v in os.environ.items() if k.startswith("ROBBENCH_")}
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "runtime_env": {"env_vars": env}, "logging_level": "ERROR"}
            try:
                if address:
                    ray.init(address=address, **kwargs)
                else:
                    ray.init(num_cpus=workers, **kwargs)
            except Exception as exc:  # ConnectionError, RuntimeError, ...: one line
                raise RobbenchError(f"cannot start or reach Ray ({address or 'local'}): {exc}") from None
            self._owns = True
        else:
            self._owns = False
        super().__init__(int(ray.cluster_resources().get("CPU", workers)))
        self.remote = ray.remote(num_cpus=1, max_retries=0)(run_job)
        self.refs: dict[Any, Job] = {}

    def submit(self, home: str, job: Job) -> None:
        self.refs[self.remote.remote(home, job.kind, job.typed)] = job

    def wait(self) -> list[tuple[Job, dict[str, Any]]]:
        ready, _ = self.ray.wait(list(self.refs), num_returns=1)
        out = []
        for ref in ready:
            job = self.refs.pop(ref)
            try:
                out.append((job, self.ray.get(ref)))
            except Exception as exc:  # the worker died (node lost, OOM)
                out.append((job, {"status": "failed", "error": f"Ray task failed: {type(exc).__name__}"}))
        return out

    @property
    def busy(self) -> int:
        return len(self.refs)

    def shutdown(self) -> None:
        for ref in self.refs:
            self.ray.cancel(ref, force=True)
        if self._owns:
            self.ray.shutdown()


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def check_executor_options(backend: str, workers: int | None, address: str | None) -> None:
    """One-line errors for --backend, --workers and --address (the CLI checks them before any work)."""
    if backend not in BACKENDS:
        raise unknown("backend", backend, BACKENDS)
    if workers is not None and workers < 1:
        raise RobbenchError(f"--workers must be at least 1, got {workers}")
    if address and backend != "ray":
        raise RobbenchError("--address is only used with --backend ray")


def make_executor(backend: str, workers: int | None, jobs: int, address: str | None = None,
                  progress: Callable | None = None) -> Executor:
    """`workers=None`: the cores. One worker (or one job) runs inline on the local backend."""
    check_executor_options(backend, workers, address)
    if backend == "ray":
        return RayExecutor(workers or available_cores(), address)
    n = min(workers or available_cores(), max(jobs, 1))
    return InlineExecutor(progress) if n == 1 else LocalExecutor(n)


# -------------------------------------------------------------------------------------- scheduler
def record_outcome(store: ResultsStore, outcome: Outcome, executor: str, extra: dict | None = None) -> None:
    status = "done" if outcome.status in ("done", "cached") else outcome.status
    info = {"summary": outcome.summary, "wall_s": round(outcome.wall_s, 3), "executor": executor, **(extra or {})}
    store.write_job(JobRecord(outcome.job.key, outcome.job.kind, outcome.job.label, outcome.job.spec, status,
                              outcome.error, info))


def run_jobs(
    jobs: list[Job], home: str | Path, executor: Executor, on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Run `jobs` (a DAG) to completion; returns one outcome per job, in finishing order."""
    home = str(Path(home).resolve())
    by_key = {j.key: j for j in jobs}
    for j in jobs:
        missing = [d for d in j.deps if d not in by_key]
        if missing:
            raise RobbenchError(f"job {j.label!r} needs a job that is not in the grid")
    pending = dict(by_key)
    status: dict[str, str] = {}
    checked: set[str] = set()
    outcomes: list[Outcome] = []

    def finish(outcome: Outcome, extra: dict | None = None) -> None:
        status[outcome.job.key] = outcome.status
        outcomes.append(outcome)
        record_outcome(store, outcome, executor.name, extra)
        if on_outcome is not None:
            on_outcome(outcome)

    with ResultsStore(home) as store:
        store.ensure_jobs_table()
        try:
            while pending or executor.busy:
                progressed = True
                while progressed:  # settle skips and cached jobs, which may make more jobs ready
                    progressed = False
                    for key, job in list(pending.items()):
                        dep_states = [status.get(d) for d in job.deps]
                        if any(s in ("failed", "skipped") for s in dep_states):
                            failed = next(by_key[d].label for d in job.deps if status.get(d) in ("failed", "skipped"))
                            del pending[key]
                            finish(Outcome(job, "skipped", error=f"skipped: {failed} did not complete"))
                            progressed = True
                        elif key not in checked and all(s in ("done", "cached") for s in dep_states):
                            checked.add(key)  # ready: is its output stored already? (asked once)
                            if is_complete(store, job):
                                del pending[key]
                                finish(Outcome(job, "cached", summary="cached"))
                                progressed = True
                # Keep every worker busy, preferring the jobs that finish an agent's results
                # (evaluate > fit > train): complete rows come early, and a kill loses least.
                ready = [j for j in pending.values() if all(status.get(d) in ("done", "cached") for d in j.deps)]
                ready.sort(key=lambda j: -PRIORITY[j.kind])
                for job in ready[: max(0, executor.workers - executor.busy)]:
                    del pending[job.key]
                    executor.submit(home, job)
                if executor.busy:
                    for job, res in executor.wait():
                        extra = {"traceback": res["traceback"]} if "traceback" in res else None
                        finish(Outcome(job, res["status"], res.get("summary", ""), res.get("error", ""),
                                       res.get("wall_s", 0.0)), extra)
                elif pending:
                    raise RobbenchError("the job graph has a cycle")  # cannot happen for grids we build
        except BaseException:
            executor.abort()
            raise
        executor.shutdown()
    return outcomes
