"""Where jobs run: a local process pool, a Ray cluster, or Slurm through submitit.

Every backend runs the same worker function (:func:`multiticket.launch.jobs.execute_job`) on the
same jobs, and every worker writes into the same run store, so the run directory that comes out
does not depend on the backend. The local pool and submitit are driven by :func:`schedule`, which
submits a job as soon as the units it reads are finished; Ray gets the whole graph at once, each
task holding the object refs of the tasks it depends on.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import importlib
import math
import multiprocessing as mp
import os
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multiticket.errors import RunFailure, UserError, storage_error
from multiticket.launch.jobs import Job, JobCall, execute_job
from multiticket.launch.lifeline import exit_if_gone, tie_to_parent
from multiticket.launch.resources import gpu_slots
from multiticket.runtime import collector_paused

#: called by the driver with each finished job and its per-unit results
OnResults = Callable[[Job, list[dict[str, Any]]], None]


@dataclass
class LaunchOptions:
    backend: str = "local"  # local | ray | slurm
    #: units at once: pool size (local), CPUs of a local Ray (ray), array parallelism (slurm); "auto":
    #: what this machine allows (multiticket.launch.resources; the command line's default)
    workers: int | str = 1
    granularity: str | None = None  # unit | chain (default: unit, chain for slurm)
    device: str = "auto"
    threads: int = 1  # torch threads per worker (local pool)
    in_process_threads: int | None = None  # torch threads of an in-process run (None: torch's default)
    address: str | None = None  # ray
    cpus_per_unit: float = 1.0  # ray, slurm
    gpus_per_unit: float = 0.0  # ray, slurm
    slurm_cluster: str = "slurm"  # slurm | local | debug (submitit's local executors, for testing)
    slurm_partition: str | None = None
    slurm_time: int = 240  # minutes per job (a timed-out job requeues itself)
    slurm_mem_gb: float | None = None
    slurm_folder: str | None = None  # submitit logs and pickles (must be shared too)
    poll_seconds: float = 1.0
    force_pool: bool = False  # --workers 1 in a worker process, not in this one (benchmarks)
    command: str | None = None  # the command line that made the run (provenance.json; None: the Python API)

    @property
    def in_process(self) -> bool:
        return self.backend == "local" and self.workers == 1 and not self.force_pool

    @property
    def worker_count(self) -> int:
        """``workers`` once the driver has resolved ``auto`` (it does before any backend starts)."""
        if not isinstance(self.workers, int):
            raise TypeError(f"LaunchOptions.workers: {self.workers!r} not resolved to a number")
        return self.workers

    @property
    def resolved_granularity(self) -> str:
        return self.granularity or ("chain" if self.backend == "slurm" else "unit")


def _key(job: Job, unit: Any) -> tuple[str, Any]:
    return (job.spec.run_dir, unit)


def schedule(
    jobs: Sequence[Job],
    submit_many: Callable[[list[Job]], list[Any]],
    wait_any: Callable[[list[Any]], list[Any]],
    result: Callable[[Any], list[dict[str, Any]]],
    on_results: OnResults,
) -> None:
    """Submit each job once every unit it depends on is finished; keep independent work going
    after a failure, then raise the first failure (a rerun resumes from what finished)."""
    produced = {_key(j, u) for j in jobs for u in j.units}
    finished: set[tuple[str, Any]] = set()
    pending = list(jobs)
    running: dict[Any, Job] = {}
    failure: tuple[Job, BaseException] | None = None
    while pending or running:
        ready = [j for j in pending if all(_key(j, d) in finished or _key(j, d) not in produced for d in j.deps)]
        if ready:
            pending = [j for j in pending if j not in ready]
            for handle, job in zip(submit_many(ready), ready):
                running[handle] = job
        if not running:
            break  # what is left depends on a failed job
        for handle in wait_any(list(running)):
            job = running.pop(handle)
            try:
                results = result(handle)
            except BaseException as exc:  # noqa: BLE001 - reported below, after the rest ran
                failure = failure or (job, exc)
                continue
            on_results(job, results)
            finished.update(_key(job, r["unit"]) for r in results)
    if failure is not None:
        raise _failure(*failure)


def _failure(job: Job, exc: BaseException) -> RunFailure | UserError:
    cause = getattr(exc, "cause", None) or exc  # Ray wraps the worker's exception
    cause = storage_error(cause) or cause
    if isinstance(cause, UserError):  # bad input or a full/read-only disk: still exit code 2
        return UserError(f"{job.name()}: {cause}")
    if isinstance(cause, RunFailure):
        return RunFailure(f"{job.name()}: {cause}")
    return RunFailure(f"{job.name()}: {type(cause).__name__}: {cause}")


# -- local process pool ---------------------------------------------------------------------------


def _init_worker(gpu_ids: Any, threads: int, driver: int | None = None) -> None:
    """Pool initializer: die with the process that forked this one and with the ``driver``
    (:mod:`multiticket.launch.lifeline`); leave Ctrl-C to the driver, which stops the pool; one
    GPU per worker (before CUDA is touched), ``threads`` torch threads."""
    tie_to_parent()
    if driver is not None:
        exit_if_gone(driver)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if gpu_ids is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_ids.get())
    import torch

    torch.set_num_threads(threads)


def _gpu_count(device: str) -> int:
    if device == "cpu":
        return 0
    import torch

    return torch.cuda.device_count()


#: imported by the fork server for every worker: the job runner, and torch._dynamo, which torch
#: imports lazily the first time any optimizer is built (about 2 s per worker otherwise, measured)
WORKER_MODULES = ("multiticket.launch.jobs", "torch._dynamo")


def worker_modules(domains: Sequence[str] = (), user: Sequence[str] = ()) -> list[str]:
    """Modules the fork server imports once for every worker: :data:`WORKER_MODULES`, the
    adapters of the domains about to run (SB3 or transformers take seconds to import; a plugin
    domain's module too), and the user's modules the tasks import (``rl.imports``: each worker
    imports them again on validating its task, a no-op once preloaded, so one missing here is
    still imported where it runs)."""
    from multiticket.domains import domains as registry

    adapters = sorted({m for d in domains if d in registry and (m := registry.module_of(d))})
    return [*WORKER_MODULES, *adapters, *[m for a in adapters for m in _declared_preload(a)], *dict.fromkeys(user)]


def _declared_preload(module: str) -> tuple[str, ...]:
    """The heavy modules a light domain module names as ``WORKER_PRELOAD`` (the HF package keeps
    transformers out of validation, but its workers should import it once, in the fork server)."""
    try:
        declared = getattr(importlib.import_module(module), "WORKER_PRELOAD", ())
    except ImportError:
        return ()
    return tuple(m for m in declared if isinstance(m, str))


def worker_context(preload: Sequence[str] = WORKER_MODULES) -> Any:
    """How pool workers start. Forking the driver after torch ran can deadlock OpenMP/CUDA, so
    workers fork from a clean server process that imported torch, multiticket and ``preload``
    once (Linux, macOS); each worker then starts in milliseconds instead of re-importing torch
    (about 1.5 s) and its adapter's libraries. A module that fails to import there is imported
    by the worker instead. Elsewhere: spawn. The fork server first imports
    :mod:`multiticket.launch.forkserver_lifeline`, so that it dies with the driver."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["multiticket.launch.forkserver_lifeline", *preload])
    return ctx


def warm_up_workers(opts: LaunchOptions, domains: Sequence[str] = (), user: Sequence[str] = ()) -> None:
    """Start the local pool's fork server now, so its imports overlap the driver's validation.
    (A fork server already running keeps the modules it preloaded.) An in-process run is its own
    worker: it imports the same library modules here, with the collector paused
    (:func:`multiticket.runtime.collector_paused`), but not the user's (their own import path,
    with its errors and module directories, is the adapter's); one that fails to import is left
    to the unit that needs it."""
    if opts.backend == "local" and opts.in_process:
        with collector_paused():
            for module in worker_modules(domains):
                with contextlib.suppress(ImportError):
                    importlib.import_module(module)
    elif opts.backend == "local":
        ctx = worker_context(worker_modules(domains, user))
        if ctx.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            forkserver.ensure_running()


def stop_pool(pool: cf.ProcessPoolExecutor, timeout: float = 30.0) -> None:
    """Stop a process pool at once: cancel what has not started, terminate the workers, and join
    the pool's management thread. ``shutdown(wait=False)`` forgets that thread, and one still
    running at exit races the interpreter's exit hook on its wake-up pipe (EBADF and a traceback
    after the one-line error), so it is taken before the shutdown and joined here."""
    manager = getattr(pool, "_executor_manager_thread", None)
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        proc.terminate()
    if manager is not None:
        manager.join(timeout)


def run_local(jobs: Sequence[Job], opts: LaunchOptions, probe: str, on_results: OnResults) -> None:
    domains = [d for j in jobs if (d := j.spec.resolved.get("domain")) is not None]
    ctx = worker_context(worker_modules(domains, [m for j in jobs for m in j.spec.user_modules]))
    size = max(1, min(opts.worker_count, len(jobs)))  # no idle workers
    slots = gpu_slots(size, _gpu_count(opts.device))
    gpu_ids = None
    if slots is not None:
        gpu_ids = ctx.Queue()
        for gpu in slots:
            gpu_ids.put(gpu)
    pool = cf.ProcessPoolExecutor(
        size, mp_context=ctx, initializer=_init_worker, initargs=(gpu_ids, opts.threads, os.getpid())
    )
    try:
        schedule(
            jobs,
            lambda batch: [pool.submit(execute_job, j, probe, opts.threads) for j in batch],
            lambda fs: list(cf.wait(fs, return_when=cf.FIRST_COMPLETED).done),
            lambda f: f.result(),
            on_results,
        )
    except BaseException:
        stop_pool(pool)  # Ctrl-C or a failure: a unit killed half-way has no DONE and is redone on resume
        raise
    pool.shutdown()


# -- Ray -----------------------------------------------------------------------------------------


def run_ray(jobs: Sequence[Job], opts: LaunchOptions, probe: str, on_results: OnResults) -> None:
    try:
        import ray
    except ModuleNotFoundError:
        raise UserError("--backend ray: needs the package 'ray' (pip install 'ray[default]')") from None
    started = False
    if not ray.is_initialized():
        if opts.address:
            ray.init(address=opts.address, log_to_driver=False)
        else:
            ray.init(
                num_cpus=max(1, math.ceil(opts.worker_count * opts.cpus_per_unit)),
                include_dashboard=False,
                log_to_driver=False,
            )
        started = True
    threads = max(1, int(opts.cpus_per_unit))
    remote = ray.remote(execute_job).options(num_cpus=opts.cpus_per_unit, num_gpus=opts.gpus_per_unit, max_retries=0)
    try:
        refs: dict[tuple[str, Any], Any] = {}
        pending: dict[Any, Job] = {}
        for job in jobs:  # dependency order: the refs a job waits for exist already
            deps = [refs[_key(job, d)] for d in job.deps if _key(job, d) in refs]
            ref = remote.remote(job, probe, threads, *deps)
            pending[ref] = job
            for u in job.units:
                refs[_key(job, u)] = ref
        failure: tuple[Job, BaseException] | None = None
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                try:
                    results = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - dependents fail the same way; first one reported
                    failure = failure or (job, exc)
                    continue
                on_results(job, results)
        if failure is not None:
            raise _failure(*failure)
    finally:
        if started:
            ray.shutdown()


# -- Slurm (submitit) ----------------------------------------------------------------------------


def slurm_executor(opts: LaunchOptions, folder: Path) -> Any:
    try:
        import submitit
    except ModuleNotFoundError:
        raise UserError("--backend slurm: needs the package 'submitit' (pip install submitit)") from None
    if opts.slurm_cluster == "slurm" and shutil.which("sbatch") is None:
        raise UserError(
            "--backend slurm: Slurm not found (no 'sbatch' on PATH); "
            "--slurm-cluster local runs the same jobs as local processes"
        )
    executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=opts.slurm_cluster)
    params: dict[str, Any] = {
        "name": "multiticket",
        "timeout_min": opts.slurm_time,
        "cpus_per_task": max(1, math.ceil(opts.cpus_per_unit)),
        "slurm_array_parallelism": max(1, opts.workers),
    }
    if opts.gpus_per_unit:
        params["gpus_per_node"] = math.ceil(opts.gpus_per_unit)
    if opts.slurm_partition:
        params["slurm_partition"] = opts.slurm_partition
    if opts.slurm_mem_gb:
        params["mem_gb"] = opts.slurm_mem_gb
    executor.update_parameters(**params)
    return executor


def run_slurm(jobs: Sequence[Job], opts: LaunchOptions, probe: str, on_results: OnResults, folder: Path) -> None:
    executor = slurm_executor(opts, folder)
    threads = max(1, math.ceil(opts.cpus_per_unit))
    call = JobCall()

    def submit_many(batch: list[Job]) -> list[Any]:
        with executor.batch():  # one job array per batch of ready jobs
            handles = [executor.submit(call, j, probe, threads) for j in batch]
        return handles

    def wait_any(handles: list[Any]) -> list[Any]:
        if opts.slurm_cluster == "debug":
            return handles[:1]  # the debug executor runs a job in this process when asked for its result
        while True:
            done = [h for h in handles if h.done()]
            if done:
                return done
            time.sleep(opts.poll_seconds)

    schedule(jobs, submit_many, wait_any, lambda h: h.result(), on_results)
