"""The driver of ``multiticket run`` and ``multiticket sweep``: validate, lock, dispatch, summarise.

Every task is validated in the driver first (building its adapter resolves the prunable scope),
so bad input fails before any work starts. The driver holds each run directory's lock for the
whole run, writes ``config.yaml``, then either trains in this process (``--backend local
--workers 1``: today's behaviour, with per-step progress) or hands jobs to a backend.

Runs of one call whose dense unit is the same (a criterion, rate or allocator sweep:
:func:`~multiticket.launch.sweep.dense_key`) train it once; the others get a verified copy
(:func:`train_all`). A task's ``tracking:`` trackers log each unit as the driver learns it is
finished (:mod:`multiticket.launch.tracking`), whichever backend trained it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from multiticket.core.imp import IMPRunner, NullReporter
from multiticket.core.legacy import trusted
from multiticket.core.store import RunStore, Unit, write_text_if_changed
from multiticket.core.units import unit_finished
from multiticket.errors import RunFailure, UserError
from multiticket.launch.backends import LaunchOptions, run_local, run_ray, run_slurm, warm_up_workers
from multiticket.launch.baselines import measure_baselines, write_baselines
from multiticket.launch.jobs import PROBE_DIR, SHARED_STORAGE_HINT, Job, RunSpec, make_jobs, user_modules
from multiticket.launch.resources import (
    AUTO,
    SLURM_AUTO_PARALLELISM,
    WorkerNeed,
    allowed_cpus,
    available_memory,
    gpu_free_memory,
    memory_cap,
    worker_memory,
)
from multiticket.launch.sweep import dense_key, share_dense
from multiticket.launch.tracking import check_trackers, tracked
from multiticket.provenance import PROVENANCE, adapter_facts, provenance_record, read_provenance
from multiticket.runtime import library_versions, resolve_device


@dataclass
class PreparedRun:
    task: Any
    run_dir: Path
    runner: IMPRunner
    #: where a new run's adapter prepared its caches, moved to ``run_dir/cache`` by :meth:`commit`
    staging: Path | None = None

    def commit(self) -> None:
        """Create the run directory with the caches its validation prepared (every task is valid)."""
        if self.staging is None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.staging.exists():  # adapters with nothing to cache leave no cache/ behind
            shutil.move(str(self.staging), str(self.run_dir / "cache"))
        self.runner.adapter.workdir = self.run_dir / "cache"
        self.discard()

    def discard(self) -> None:
        """Remove the staging folder (after :meth:`commit`, or when another task was invalid)."""
        if self.staging is not None:
            shutil.rmtree(self.staging.parent, ignore_errors=True)
            self.staging = None


def prepare_run(task: Any, out: Path, device: str) -> PreparedRun:
    """Build the adapter and resolve the scope. A run directory that does not exist yet is not
    created here: its adapter prepares data and caches in a staging folder (inside ``out`` when
    that exists, so moving is a rename; else in the system's temporary folder), and
    :meth:`PreparedRun.commit` moves them in once every task is valid. On bad input nothing
    new is left under ``out``."""
    from multiticket.domains import adapter_class

    run_dir = Path(out) / task.run_name
    staging = None
    if not run_dir.exists():
        parent = Path(out) if Path(out).is_dir() else None
        staging = Path(tempfile.mkdtemp(prefix=".multiticket-prepare-", dir=parent)) / "cache"
    try:
        adapter = adapter_class(task.config.domain)(
            task.config, task.section, staging or run_dir / "cache", resolve_device(device)
        )
        runner = IMPRunner(task, adapter, RunStore(run_dir))
        runner.prepare()
        check_levels_keep_weights(runner)
    except BaseException as exc:
        if staging is not None:
            shutil.rmtree(staging.parent, ignore_errors=True)
        if not isinstance(exc, UserError):
            raise
        msg = str(exc)
        raise UserError(msg if msg.startswith(str(task.source)) else f"{task.source}: {msg}") from None
    return PreparedRun(task, run_dir, runner, staging)


def check_levels_keep_weights(runner: IMPRunner) -> None:
    """Refuse, before any training, a plan whose deepest level keeps no prunable weight alive
    (``prune.rate: 0.999999`` empties the network at level 1; later levels would retrain nothing)."""
    levels = runner.cfg.prune.levels
    empty = next((lv for lv in range(1, levels + 1) if runner.inputs.planned_alive(lv) == 0), None)
    if empty is None:
        return
    p = runner.cfg.prune
    keeps = f"at most {empty - 1} level(s) keep a weight" if empty > 1 else "no level keeps a weight"
    raise UserError(
        f"prune.rate: {p.rate} (rate_of {p.rate_of}) leaves none of the {sum(runner.inputs.scope.sizes.values())} prunable "
        f"weights alive at level {empty} of prune.levels {levels}; {keeps}: lower prune.rate or prune.levels"
    )


def recorded_config(run_dir: Path, task: Any) -> dict[str, Any]:
    """What ``config.yaml`` records: the resolved config, with the seeds of every earlier
    invocation on this run directory first (read and validated from its ``config.yaml``), so the
    file names every seed the directory holds. A resumed run's finished records are validated too."""
    from multiticket.config import validate_task
    from multiticket.rundir import CONFIG, check_resumable, read_baselines, read_run_config

    resolved = dict(task.resolved)
    path = Path(run_dir) / CONFIG
    if not path.exists():
        return resolved
    resolved["seeds"] = list(dict.fromkeys([*read_run_config(run_dir).config.seeds, *resolved["seeds"]]))
    check_resumable(Path(run_dir))
    read_baselines(run_dir)  # a malformed baselines.json fails here, before anything is written
    validate_task(resolved, path)  # the union too must stay within the schema's bounds
    return resolved


def run_tasks(tasks: list[Any], out: Path, opts: LaunchOptions, reporter: Any = None, share: bool = True) -> list[Path]:
    """Run (or resume) every task; returns the run directories. ``reporter`` shows progress.
    ``share``: runs whose dense unit is the same (:func:`~multiticket.launch.sweep.dense_key`)
    train it once (:func:`train_all`)."""
    if opts.backend not in ("local", "ray", "slurm"):
        raise UserError(f"--backend: expected local, ray or slurm, got '{opts.backend}'")
    auto = opts.workers == AUTO
    opts = dataclasses.replace(opts, workers=cpu_workers(opts)) if auto else opts
    if not isinstance(opts.workers, int) or opts.workers < 1:
        raise UserError("--workers: must be >= 1 or 'auto'")
    if Path(out).exists() and not Path(out).is_dir():
        raise UserError(f"--out: {out} is a file, not a directory")
    for task in tasks:
        check_trackers(task)
    reporter = reporter or NullReporter()
    configs = [recorded_config(out / t.run_name, t) for t in tasks]  # a resumed run's files are checked first
    records = [read_provenance(out / t.run_name) for t in tasks]
    warm_up_workers(opts, [t.config.domain for t in tasks], [m for t in tasks for m in user_modules(t)])
    runs: list[PreparedRun] = []
    try:
        for task in tasks:
            runs.append(prepare_run(task, out, opts.device))
        baselines = [measure_baselines(r.run_dir, r.runner.adapter, r.task.config.domain) for r in runs]
    except BaseException:
        for run in runs:
            run.discard()
        raise
    if auto and opts.backend != "slurm" and not opts.address:
        opts = fit_memory(opts, runs)
    # built, before a pool run closes them; the domain's facts over the masked layers (the report reads them)
    facts = [adapter_facts(run.runner.adapter, run.runner.inputs.scope.names) for run in runs]
    groups = dense_groups(runs) if share else []
    with contextlib.ExitStack() as stack:
        lock_all(stack, runs)  # before the first write: a second driver writes nothing
        for run, measured in zip(runs, baselines):
            run.commit()
            write_baselines(run.run_dir, measured)
            for note in run.runner.adapter.notes().values():
                reporter.warn(str(note.get("message", note)) if isinstance(note, dict) else str(note))
            if not opts.in_process:
                run.runner.adapter.close()  # validated; the workers build their own
        for run, resolved, fact, record in zip(runs, configs, facts, records):
            RunStore(run.run_dir).clear_temporaries()
            config = {**resolved, "versions": library_versions()}
            write_text_if_changed(run.run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
            write_text_if_changed(run.run_dir / PROVENANCE, provenance_record(record, fact, opts.command))
        train_all(runs, opts, {r.run_dir: tracked(reporter, r.task, r.run_dir) for r in runs}, groups, stack)
    return [r.run_dir for r in runs]


def train_all(runs: list[PreparedRun], opts: LaunchOptions, reporters: dict[Path, Any],
              groups: list[list[PreparedRun]], stack: contextlib.ExitStack) -> None:
    """Train every unit: in this process run by run, each run first taking the dense units a run of
    its group finished (so the first run of a group trains them); or on a backend
    (:func:`train_on_backend`). One line says what sharing saved."""
    shared: list[float] = []
    for run in runs:
        run.runner.reporter = reporters[run.run_dir]
    if opts.in_process:
        if opts.in_process_threads:
            import torch

            torch.set_num_threads(opts.in_process_threads)
        for run in runs:
            stack.callback(run.runner.adapter.close)
        for run in runs:
            shared += share_into(run, groups)
            run.runner.run()
    else:
        shared = train_on_backend(runs, opts, reporters, groups)
    if shared:
        print(f"multiticket: note: {len(shared)} dense unit(s) copied from a run with the same dense training "
              f"instead of trained again ({sum(shared):.1f}s of training saved; shared_from.json in each)",
              file=sys.stderr)


def train_on_backend(runs: list[PreparedRun], opts: LaunchOptions, reporters: dict[Path, Any],
                     groups: list[list[PreparedRun]]) -> list[float]:
    """Dispatch every unit; when runs share, first the dense units no run of their group has
    finished, then, once every run has copied what it can, the rest. The seconds each copy saved."""
    reported: set[tuple[str, Unit]] = set()
    first = dense_to_train(groups)
    if first:
        with contextlib.suppress(RunFailure):  # a failed dense unit is retried, and reported, below
            dispatch(runs, opts, reporters, reported=reported, only=first)
    shared = [seconds for run in runs for seconds in share_into(run, groups)]
    if first:
        dispatch(runs, opts, reporters, reported=reported)
    else:
        dispatch(runs, opts, reporters)
    return shared


def dense_groups(runs: list[PreparedRun]) -> list[list[PreparedRun]]:
    """The runs grouped by their dense unit (:func:`dense_key`): only groups of two runs or more."""
    by_key: dict[str, list[PreparedRun]] = {}
    for run in runs:
        key = dense_key(run.task, run.runner.adapter.eval_method)
        if key is not None:
            by_key.setdefault(key, []).append(run)
    return [group for group in by_key.values() if len(group) > 1]


def share_into(run: PreparedRun, groups: list[list[PreparedRun]]) -> list[float]:
    """Copy into ``run`` each seed's dense unit that another run of its group has finished (and
    ``run`` has not); the seconds each copy saved. A copy that fails is reported and left to training."""
    saved: list[float] = []
    donors = [o for group in groups if any(r is run for r in group) for o in group if o is not run]
    for seed in run.runner.cfg.seeds:
        for donor in donors:
            if seed not in donor.runner.cfg.seeds:
                continue
            try:
                seconds = share_dense(donor.runner.store, run.runner.store, seed, run.runner.k)
            except RunFailure as exc:
                run.runner.reporter.warn(f"{exc}; training the dense unit instead")
                continue
            if seconds is not None:
                saved.append(seconds)
                break
    return saved


def dense_to_train(groups: list[list[PreparedRun]]) -> set[tuple[Path, Unit]]:
    """The dense units to train before the rest when runs share: one per group and seed that two
    runs or more need (the first such run trains it), none where one of them has it finished."""
    out: set[tuple[Path, Unit]] = set()
    for group in groups:
        for seed in sorted({s for run in group for s in run.runner.cfg.seeds}):
            holders = [run for run in group if seed in run.runner.cfg.seeds]
            unit = Unit(seed, "ticket", 0)
            if len(holders) > 1 and not any(unit_finished(r.runner.store, unit, r.runner.k) for r in holders):
                out.add((holders[0].run_dir, unit))
    return out


def lock_all(stack: contextlib.ExitStack, runs: list[PreparedRun]) -> None:
    """Hold every run directory's lock in ``stack``; if one is taken, discard every staging
    folder and raise, having written nothing (the lock file of a new directory aside)."""
    try:
        for run in runs:
            stack.enter_context(RunStore(run.run_dir).locked())
    except BaseException:
        for run in runs:
            run.discard()
        raise


def cpu_workers(opts: LaunchOptions) -> int:
    """``--workers auto`` before the memory cap: the CPUs this process may use (local pool), that
    many units of ``cpus_per_unit`` CPUs (a local Ray), or the cluster's limit (Slurm, a Ray
    cluster)."""
    if opts.backend == "slurm" or opts.address:
        return SLURM_AUTO_PARALLELISM if opts.backend == "slurm" else allowed_cpus()
    cpus = allowed_cpus()
    if opts.backend == "ray":
        return max(1, math.floor(cpus / max(opts.cpus_per_unit, 1e-9)))
    return cpus


def fit_memory(opts: LaunchOptions, runs: list[PreparedRun]) -> LaunchOptions:
    """``--workers auto`` after the CPUs: no more workers than fit in memory, from each run's
    validated (still open) adapter; one means in-process."""
    needs = [worker_need(r) for r in runs]
    gpu_free = gpu_free_memory() if any(n.gpu for n in needs) else []
    capped = memory_cap(opts.worker_count, needs, available_memory(), gpu_free)
    return dataclasses.replace(opts, workers=capped) if capped < opts.worker_count else opts


def worker_need(run: PreparedRun) -> WorkerNeed:
    """The memory one worker of ``run`` needs, from its built (validated) module."""
    params = list(run.runner.adapter.module.parameters())
    on_gpu = any(p.is_cuda for p in params)
    return worker_memory(type(run.runner.adapter).worker_base_bytes, sum(p.numel() for p in params), on_gpu)


def dispatch(runs: list[PreparedRun], opts: LaunchOptions, reporters: dict[Path, Any],
             reported: set[tuple[str, Unit]] | None = None, only: set[tuple[Path, Unit]] | None = None) -> None:
    """Send every unfinished unit (of ``only``, when given) to the backend; check each result is
    visible here. Finished units are reported as done before, except those in ``reported`` (the
    units an earlier round reported), which collects every unit reported here."""
    reported = set() if reported is None else reported
    jobs: list[Job] = []
    for run in runs:
        spec = RunSpec(str(run.run_dir.resolve()), run.task.resolved, str(run.task.source), opts.device,
                       user_modules(run.task), trusted())
        store, k = run.runner.store, run.runner.k
        plan = [p for p in _plan(run) if not unit_finished(store, p.unit, k)]
        if only is not None:
            plan = [p for p in plan if (run.run_dir, p.unit) in only]
        for p in _plan(run) if only is None else []:
            if (spec.run_dir, p.unit) not in reported and unit_finished(store, p.unit, k):
                reporters[run.run_dir].unit_finished(p.unit, store.metrics(p.unit), skipped=True)
        jobs += make_jobs(spec, plan, opts.resolved_granularity)
    if not jobs:
        return
    stores = {str(r.run_dir.resolve()): r for r in runs}
    probe = secrets.token_hex(8)
    for run_dir in stores:
        probe_file = Path(run_dir) / PROBE_DIR / probe
        probe_file.parent.mkdir(parents=True, exist_ok=True)
        probe_file.write_text("written by the multiticket driver; workers check they can see it\n")

    def on_results(job: Job, results: list[dict[str, Any]]) -> None:
        run = stores[job.spec.run_dir]
        for r in results:
            unit = r["unit"]
            if not unit_finished(run.runner.store, unit, run.runner.k):
                raise RunFailure(
                    f"{job.name()}: unit {unit.relpath()} finished on host {r['host']} but is not "
                    f"finished in {job.spec.run_dir} here: {SHARED_STORAGE_HINT}"
                )
            if r["phases"]:
                run.runner.unit_phases[unit] = r["phases"]
            reported.add((job.spec.run_dir, unit))
            reporters[run.run_dir].unit_finished(unit, r["record"], skipped=r["skipped"])

    try:
        _backend(jobs, opts, probe, on_results, runs)
    finally:
        for run_dir in stores:
            (Path(run_dir) / PROBE_DIR / probe).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                (Path(run_dir) / PROBE_DIR).rmdir()  # only when empty: another driver may probe too


def _backend(jobs: list[Job], opts: LaunchOptions, probe: str, on_results: Any, runs: list[PreparedRun]) -> None:
    """Run ``jobs`` on the backend ``opts`` names."""
    if opts.backend == "local":
        run_local(jobs, opts, probe, on_results)
    elif opts.backend == "ray":
        run_ray(jobs, opts, probe, on_results)
    else:
        folder = Path(opts.slurm_folder) if opts.slurm_folder else runs[0].run_dir.parent / ".submitit"
        run_slurm(jobs, opts, probe, on_results, folder)


def _plan(run: PreparedRun) -> list[Any]:
    from multiticket.core.units import unit_plan

    return unit_plan(run.runner.cfg)
