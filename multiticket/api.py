"""The Python API: ``multiticket.run(...)`` and ``multiticket.load_run(path)`` (docs/usage.md, "Python API").

:func:`run` takes the path the command line takes (:func:`resolve_task`, then :func:`execute`),
so it writes the same run directory as ``multiticket run``; it trains in this process by default,
so environments registered in a notebook exist where training runs. Bad input raises
:class:`multiticket.errors.UserError` with the command line's one-line message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from multiticket.analysis.results import Run, Ticket
from multiticket.config import ResolvedTask, load_task, task_from_data
from multiticket.errors import UserError
from multiticket.launch.backends import LaunchOptions
from multiticket.paths import resolve_task_path
from multiticket.provenance import command_line

Overrides = Sequence[str] | Mapping[str, Any]


def resolve_task(
    task: str | Path | Mapping[str, Any],
    overrides: Overrides | None = None,
    seeds: Sequence[int] | None = None,
    levels: int | None = None,
) -> ResolvedTask:
    """A validated task from a YAML path, a shipped task's name, or a dict with a task file's keys;
    ``overrides`` are ``--set`` strings (``"rl.env=Acrobot-v1"``) or a mapping ``{"rl.env": ...}``."""
    if isinstance(overrides, str):
        raise UserError("set: expected a list of 'key.path=value' strings or a mapping, got one string")
    seeds = list(seeds) if seeds is not None else None
    if isinstance(task, Mapping):
        source = Path(f"<task {task.get('name', '?')}>")
        return task_from_data(dict(task), source, overrides, seeds, levels)
    return load_task(resolve_task_path(str(task)), overrides, seeds=seeds, levels=levels)


def execute(tasks: list[ResolvedTask], out: Path, opts: LaunchOptions, reporter: Any = None) -> list[tuple[Path, list[dict[str, Any]]]]:
    """Run (or resume) the tasks, then refresh each run's ``summary.csv`` (also after a failure,
    for what finished): what ``multiticket run``, ``sweep`` and ``transfer`` do, and :func:`run`.
    Returns each run directory with its finished units' records."""
    from multiticket.analysis.summary import write_summary
    from multiticket.launch.driver import run_tasks

    run_dirs = [Path(out) / t.run_name for t in tasks]
    summaries = lambda: [(d, write_summary(d)[1]) for d in run_dirs if (d / "config.yaml").is_file()]  # noqa: E731
    try:
        run_tasks(tasks, Path(out), opts, reporter)
    except BaseException:
        with contextlib.suppress(Exception):  # what finished so far; never hides why the run stopped
            summaries()
        raise
    return summaries()


def run(
    task: str | Path | Mapping[str, Any],
    *,
    out: str | Path = "runs",
    seeds: Sequence[int] | None = None,
    levels: int | None = None,
    set: Overrides | None = None,  # noqa: A002 - the command line's --set
    workers: int | str = 1,
    device: str = "auto",
    threads: int | None = None,
    progress: bool = False,
    **launch: Any,
) -> Run:
    """Run (or resume) a ticket search like ``multiticket run`` and open its run directory.

    ``workers=1`` trains in this process; more use the local process pool (their environments must
    come from importable modules, ``rl.imports``); ``"auto"`` is the command line's default (the
    CPUs this process may use, capped by memory; docs/scale.md). ``launch``: other :class:`LaunchOptions` fields
    (``backend``, ``granularity``, ...). ``progress`` shows the command line's progress display."""
    from multiticket.core.hooks import NullReporter

    resolved = resolve_task(task, set, seeds, levels)
    launch.setdefault("command", command_line([], f"python: multiticket.run({task!r}, set={set!r}, seeds={seeds!r}, "
                                                  f"levels={levels!r})"))  # recorded in provenance.json
    try:
        opts = LaunchOptions(workers=workers, device=device, threads=threads or 1, in_process_threads=threads, **launch)
    except TypeError as exc:
        raise UserError(f"multiticket.run: {exc}") from None
    if not progress:
        execute([resolved], Path(out), opts, NullReporter())
    else:
        from rich.console import Console

        from multiticket.progress import RichReporter

        with RichReporter(Console(stderr=True)) as reporter:
            execute([resolved], Path(out), opts, reporter)
    return load_run(Path(out) / resolved.run_name)


def load_run(path: str | Path) -> Run:
    """Open a run directory (read-only, but for refreshing its ``summary.csv``); its finished
    units' summary, masks, weights and tickets (:class:`multiticket.analysis.results.Run`)."""
    from multiticket.analysis.rundata import load_run as read_run

    return Run(read_run(path, lenient=True))


__all__ = ["Run", "Ticket", "execute", "load_run", "resolve_task", "run"]
