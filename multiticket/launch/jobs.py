"""Jobs: groups of units sent to a worker, and the worker side that runs them from the store.

A job carries everything a worker on another process or node needs as plain picklable data: the
resolved config of its run (so the worker rebuilds the same task, checked by the run hash), the run
directory (which must be on storage every worker reaches), the units in dependency order, and a
probe token the driver wrote into the run directory. The worker refuses to start when it cannot
see the probe, so a run directory on a node-local disk fails with a clear message instead of
training into a directory the driver never sees.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multiticket.core.store import Unit
from multiticket.core.units import PlannedUnit
from multiticket.errors import RunFailure, UserError
from multiticket.runtime import resolve_device

PROBE_DIR = ".probes"
SHARED_STORAGE_HINT = (
    "the run directory must be on storage shared by the driver and every worker (docs/scale.md)"
)


@dataclass(frozen=True)
class RunSpec:
    """One run directory and the resolved config that names it."""

    run_dir: str
    resolved: dict[str, Any]
    source: str
    device: str = "auto"
    #: the user's modules the task imports (``rl.imports``): pool workers preload them once
    user_modules: tuple[str, ...] = ()
    #: ``--trust-checkpoints`` of the driver, for workers that do not inherit its environment
    trust_checkpoints: bool = False


@dataclass(frozen=True)
class Job:
    """Units of one run, run in this order by one worker call; ``deps`` are units of other jobs."""

    spec: RunSpec
    units: tuple[Unit, ...]
    deps: tuple[Unit, ...] = field(default=())

    @property
    def key(self) -> tuple[str, Unit]:
        return (self.spec.run_dir, self.units[0])

    def name(self) -> str:
        u = self.units[0]
        tail = f"..{self.units[-1].control}/L{self.units[-1].level}" if len(self.units) > 1 else ""
        return f"{Path(self.spec.run_dir).name}/seed_{u.seed}/{u.control}/L{u.level}{tail}"


def make_jobs(spec: RunSpec, plan: Sequence[PlannedUnit], granularity: str) -> list[Job]:
    """``unit``: one job per unit with its dependencies; ``chain``: one job per seed, no deps."""
    if granularity == "unit":
        return [Job(spec, (p.unit,), p.deps) for p in plan]
    if granularity != "chain":
        raise ValueError(f"granularity must be 'unit' or 'chain', got '{granularity}'")
    by_seed: dict[int, list[Unit]] = {}
    for p in plan:
        by_seed.setdefault(p.unit.seed, []).append(p.unit)
    return [Job(spec, tuple(units)) for units in by_seed.values()]


# -- worker side ----------------------------------------------------------------------------------


def task_from_resolved(resolved: dict[str, Any], source: str | Path, user_code: bool = True,
                       run_dir: Path | None = None) -> Any:
    """Rebuild a :class:`ResolvedTask` from the config recorded in ``config.yaml`` (no file read),
    through the same validators as a task file. Validating the domain section imports the modules
    the task names (``rl.imports``), so they are imported in every worker; ``user_code=False``
    checks their form only (``status``). ``run_dir``: the config was read from that run directory
    (someone else's, maybe), so no path in it may resolve inside it (the section's validators see it)."""
    from multiticket.config import resolve_task, validate_task

    data = {k: v for k, v in resolved.items() if k != "versions"}
    return resolve_task(validate_task(data, source), source, user_code, run_dir=run_dir)


def refuse_user_code(task: Any, run_dir: Path, trust: bool) -> None:
    """UserError unless the run directory's task names no user code or the user trusts it
    (``--trust-code``): importing a module runs it, and a run directory is someone else's input."""
    modules = user_modules(task)
    if modules and not trust:
        raise UserError(f"{run_dir}/config.yaml: names user code ({', '.join(modules[:3])}{' ...' if len(modules) > 3 else ''}), "
                        "which this command would import and run; pass --trust-code if you trust this run "
                        "directory and the modules on your path")


def user_modules(task: Any) -> tuple[str, ...]:
    """The modules of the user's that a task's domain section imports (none for most sections)."""
    modules = getattr(task.section, "user_modules", None)
    return tuple(modules()) if callable(modules) else ()


_RUNNERS: dict[tuple[str, str], Any] = {}


def _runner(spec: RunSpec) -> Any:
    """One runner (adapter, prepared scope) per run directory per worker process, reused."""
    from multiticket.core.imp import IMPRunner
    from multiticket.core.store import RunStore
    from multiticket.domains import adapter_class

    key = (spec.run_dir, spec.device)
    if key not in _RUNNERS:
        task = task_from_resolved(spec.resolved, spec.source)
        run_dir = Path(spec.run_dir)
        if task.run_name != run_dir.name:
            raise RunFailure(
                f"{run_dir}: config resolves to '{task.run_name}' on {socket.gethostname()}; "
                "library versions differ between driver and worker?"
            )
        adapter = adapter_class(task.config.domain)(
            task.config, task.section, run_dir / "cache", resolve_device(spec.device)
        )
        runner = IMPRunner(task, adapter, RunStore(run_dir))
        runner.prepare()
        _RUNNERS[key] = runner
    return _RUNNERS[key]


def check_probe(run_dir: Path, probe: str) -> None:
    if not (run_dir / PROBE_DIR / probe).is_file():
        raise RunFailure(
            f"{run_dir}: not visible (or not the driver's copy) on worker host "
            f"{socket.gethostname()}: {SHARED_STORAGE_HINT}"
        )


def execute_job(
    job: Job, probe: str | None = None, threads: int | None = 1, *_deps: Any
) -> list[dict[str, Any]]:
    """Run a job's units in order (finished ones are skipped) and return one result per unit.

    Extra positional arguments are ignored: the Ray backend passes the object refs of the jobs this
    one depends on there, so Ray starts it only after they finished."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    run_dir = Path(job.spec.run_dir)
    if probe is not None:
        check_probe(run_dir, probe)
    if job.spec.trust_checkpoints:
        from multiticket.core.legacy import trust_checkpoints

        trust_checkpoints()
    runner = _runner(job.spec)
    out = []
    for unit in job.units:
        record, skipped = runner.run_unit(unit)
        out.append(
            {
                "unit": unit,
                "record": record,
                "skipped": skipped,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "phases": runner.unit_phases.get(unit, {}),
            }
        )
    return out


class JobCall:
    """Picklable callable for submitit; ``checkpoint`` makes a preempted or timed-out job requeue
    itself with the same arguments (resuming is free: finished units are skipped)."""

    def __call__(self, job: Job, probe: str | None = None, threads: int | None = 1) -> list[dict[str, Any]]:
        return execute_job(job, probe, threads)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)
