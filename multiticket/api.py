"""The Python API: ``multiticket.run(...)`` and ``multiticket.load_run(path)`` (docs/usage.md, "Python API").

:func:`run` takes the path the command line takes (:func:`resolve_task`, then :func:`execute`),
so it writes the same run directory as ``multiticket run``; it trains in this process by default,
so environments registered in a notebook exist where training runs. Bad input raises
:class:`multiticket.errors.UserError` with the command line's one-line message.

A run directory is a task too (:func:`extend_task`): its own ``config.yaml``, read as untrusted
input, with the overrides on top, so a run made from a file, a shipped task or a dict is resumed
or extended (``levels``, ``seeds``) by naming its directory.
"""

from __future__ import annotations

import ast
import contextlib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from multiticket.analysis.results import Run, Ticket
from multiticket.config import DEFAULTS_KEY, ResolvedTask, load_task, task_from_data
from multiticket.errors import UserError, UserErrors
from multiticket.launch.backends import LaunchOptions
from multiticket.paths import resolve_task_path
from multiticket.provenance import command_line

Overrides = Sequence[str] | Mapping[str, Any]


def resolve_task(
    task: str | Path | Mapping[str, Any],
    overrides: Overrides | None = None,
    seeds: Sequence[int] | None = None,
    levels: int | None = None,
    trust_code: bool = False,
) -> ResolvedTask:
    """A validated task from a YAML path, a shipped task's name, a dict with a task file's keys,
    or a run directory (or its ``config.yaml``: :func:`extend_task`, ``trust_code`` there);
    ``overrides`` are ``--set`` strings (``"rl.env=Acrobot-v1"``) or a mapping ``{"rl.env": ...}``."""
    if isinstance(overrides, str):
        raise UserError("set: expected a list of 'key.path=value' strings or a mapping, got one string")
    seeds = list(seeds) if seeds is not None else None
    if isinstance(task, Mapping):
        source = Path(f"<task {task.get('name', '?')}>")
        return task_from_data(dict(task), source, overrides, seeds, levels)
    run_dir = run_directory(Path(task))
    if run_dir is not None:
        return extend_task(run_dir, overrides, seeds, levels, trust_code)
    return load_task(resolve_task_path(str(task)), overrides, seeds=seeds, levels=levels)


def run_directory(path: Path) -> Path | None:
    """The run directory ``path`` names (the directory, or its ``config.yaml``), or None for a task
    file. A ``config.yaml`` is a run's when it records ``versions`` or sits beside ``provenance.json``;
    a directory without one is an error (it is no task file either)."""
    from multiticket.rundir import CONFIG, MAX_CONFIG_BYTES, MAX_YAML_NODES, read_yaml

    if path.is_dir():
        if not (path / CONFIG).exists():
            raise UserError(f"{path}: not a run directory (no {CONFIG}; pass the <task>-<hash> directory) nor a task file")
        return path
    if path.name != CONFIG or not path.is_file():
        return None
    if (path.parent / "provenance.json").exists():
        return path.parent
    data = read_yaml(path, MAX_CONFIG_BYTES, MAX_YAML_NODES)
    return path.parent if isinstance(data, dict) and "versions" in data else None


def extend_task(
    run_dir: Path,
    overrides: Overrides | None = None,
    seeds: Sequence[int] | None = None,
    levels: int | None = None,
    trust_code: bool = False,
) -> ResolvedTask:
    """The task of a run directory: its ``config.yaml`` read with the bounded reader and validated
    like a task file, then ``overrides`` / ``seeds`` / ``levels`` on top. While nothing hashed
    changes it names the same directory (resumed or extended in place); else a new one. User code
    the config names (a torch module, ``rl.imports``) is imported only with ``trust_code``, and
    never from inside the run directory: its folders leave ``sys.path`` first. The run's own
    ``tracking:`` (a tracker URI) is kept only with ``trust_code``; ``--set tracking...`` sets one."""
    from multiticket.launch.jobs import refuse_user_code
    from multiticket.rundir import read_run_config

    root = Path(run_dir)
    recorded = read_run_config(root)
    data = {k: v for k, v in recorded.data.items() if k != DEFAULTS_KEY}
    as_run = task_from_data(dict(data), recorded.path, user_code=False, run_dir=root)
    if as_run.run_name != root.resolve().name:
        raise UserError(f"{root}: its config.yaml resolves to '{as_run.run_name}', not the directory's name "
                        "(renamed, edited, or made by another multiticket version?)")
    refuse_user_code(as_run, root, trust_code)
    leave_path(root)
    if not trust_code:  # where results (and MLflow's token) would be sent: the user's to say, not the run's
        data.pop("tracking", None)
    return task_from_data(dict(data), recorded.path, overrides, list(seeds) if seeds is not None else None, levels,
                          run_dir=root)


def parent_of(run_dir: Path) -> Path:
    """Where an extended run goes by default: the run directory's parent (``.`` named too)."""
    return run_dir.parent if run_dir.name not in ("", "..") else run_dir.resolve().parent


def leave_path(run_dir: Path) -> None:
    """Drop every ``sys.path`` entry inside ``run_dir`` (``''`` when the working directory is
    there): no module is imported from a run directory, which is someone else's input."""
    root = Path(run_dir).resolve()
    inside = lambda entry: (p := Path(entry or ".").resolve()) == root or root in p.parents  # noqa: E731
    sys.path[:] = [entry for entry in sys.path if not inside(entry)]


def extension_note(task: ResolvedTask, run_dir: Path, out: Path) -> str | None:
    """One line when an extended run goes to another directory than ``run_dir`` (a hashed setting
    changed, or ``out`` is elsewhere), naming the settings that changed; None when it stays."""
    from multiticket.rundir import differing, read_run_config, setting_text, settings, telling

    target = Path(out) / task.run_name
    if target.resolve() == Path(run_dir).resolve():
        return None
    before = read_run_config(run_dir)
    changed = [f"{key}={setting_text(values[1])}" for key, values in
               differing([settings(before.data, before.config), settings(task.resolved, task.config)]) if telling(key)]
    why = f"changed: {', '.join(changed[:4])}{' ...' if len(changed) > 4 else ''}" if changed else "another --out"
    return f"{run_dir}: {why}; the run goes to a new run directory {target} ({Path(run_dir).name} stays as it is)"


def execute(tasks: list[ResolvedTask], out: Path, opts: LaunchOptions, reporter: Any = None) -> list[tuple[Path, list[dict[str, Any]]]]:
    """Run (or resume) the tasks, then refresh each run's ``summary.csv`` (also after a failure,
    for what finished): what ``multiticket run``, ``sweep`` and ``transfer`` do, and :func:`run`.
    Returns each run directory with its finished units' records. An error found while building
    a task's adapter (an environment rejecting ``env_kwargs``) names the ``--set`` that caused it."""
    from multiticket.analysis.summary import write_summary
    from multiticket.launch.driver import run_tasks

    run_dirs = [Path(out) / t.run_name for t in tasks]
    summaries = lambda: [(d, write_summary(d)[1]) for d in run_dirs if (d / "config.yaml").is_file()]  # noqa: E731
    try:
        run_tasks(tasks, Path(out), opts, reporter)
    except UserError as exc:
        with contextlib.suppress(Exception):
            summaries()
        raise relabelled(exc, tasks) from None
    except BaseException:
        with contextlib.suppress(Exception):  # what finished so far; never hides why the run stopped
            summaries()
        raise
    return summaries()


def relabelled(exc: UserError, tasks: Sequence[ResolvedTask]) -> UserError:
    """``exc`` naming the override behind its field instead of the task file (``<task>: rl.env_kwargs:
    ...`` -> ``--set rl.env_kwargs.x=1: rl.env_kwargs: ...``), when an override set that field."""
    if isinstance(exc, UserErrors):
        return exc
    message = str(exc)
    for task in tasks:
        prefix = f"{task.source}: "
        if not message.startswith(prefix):
            continue
        field, _, why = message[len(prefix):].partition(": ")
        for key, label in task.overrides:
            if why and (key == field or key.startswith(f"{field}.") or field.startswith(f"{key}.")):
                return UserError(f"{label}: {field}: {why}")
    return exc


def run(
    task: str | Path | Mapping[str, Any],
    *,
    out: str | Path | None = None,
    seeds: Sequence[int] | None = None,
    levels: int | None = None,
    set: Overrides | None = None,  # noqa: A002 - the command line's --set
    workers: int | str = 1,
    device: str = "auto",
    threads: int | None = None,
    progress: bool = False,
    trust_code: bool = False,
    **launch: Any,
) -> Run:
    """Run (or resume) a ticket search like ``multiticket run`` and open its run directory.

    ``task``: a task file, a shipped task's name, a dict, or a run directory to resume or extend
    (``levels``, ``seeds``, ``set``; ``trust_code`` to import the user code its config names).
    ``out``: the parent of the run directory (default ``runs``; a run directory's own parent).
    ``workers=1`` trains in this process; more use the local process pool (their environments must
    come from importable modules, ``rl.imports``; a script must call this under
    ``if __name__ == "__main__":``, which is checked at once); ``"auto"`` is the command line's default
    (the CPUs this process may use, capped by memory; docs/scale.md). ``launch``: other
    :class:`LaunchOptions` fields (``backend``, ``granularity``, ...). ``progress`` shows the
    command line's progress display."""
    try:
        resolved = resolve_task(task, set, seeds, levels, trust_code)
    except UserError as exc:  # the command line's words, but for the flag
        if isinstance(exc, UserErrors) or "--trust-code" not in str(exc):
            raise
        raise UserError(str(exc).replace("pass --trust-code", "pass trust_code=True")) from None
    run_dir = run_directory(Path(task)) if isinstance(task, str | Path) else None
    where = Path(out) if out is not None else (parent_of(run_dir) if run_dir is not None else Path("runs"))
    launch.setdefault("command", command_line([], f"python: multiticket.run({task!r}, set={set!r}, seeds={seeds!r}, "
                                                  f"levels={levels!r})"))  # recorded in provenance.json
    try:
        opts = LaunchOptions(workers=workers, device=device, threads=threads or 1, in_process_threads=threads, **launch)
    except TypeError as exc:
        raise UserError(f"multiticket.run: {exc}") from None
    check_main_guard(opts)
    _execute_with_progress([resolved], where, opts, progress)
    return load_run(where / resolved.run_name)


def _execute_with_progress(tasks: list[ResolvedTask], out: Path, opts: LaunchOptions, progress: bool) -> None:
    from multiticket.core.hooks import NullReporter

    if not progress:
        execute(tasks, out, opts, NullReporter())
        return
    from rich.console import Console

    from multiticket.progress import RichReporter

    with RichReporter(Console(stderr=True)) as reporter:
        execute(tasks, out, opts, reporter)


def check_main_guard(opts: LaunchOptions) -> None:
    """Refuse at once a process pool started by code at a script's top level: each pool worker
    imports the script as ``__mp_main__`` on starting and would run that code again (a second
    run on the locked run directory, and a broken pool). A call under
    ``if __name__ == "__main__":`` (or from a notebook, ``python -c``, a module's ``__main__``) is fine."""
    if opts.backend != "local" or opts.in_process:
        return
    if opts.workers == "auto":
        from multiticket.launch.driver import cpu_workers

        if cpu_workers(opts) <= 1:
            return  # in this process
    script, line = _unguarded_call()
    if script is not None:
        raise UserError(f"multiticket.run(workers={opts.workers!r}): {script} calls it at its top level (line {line}), "
                        "which every worker process runs again on starting; put that code under "
                        "'if __name__ == \"__main__\":' (or pass workers=1)")


def _unguarded_call() -> tuple[str | None, int]:
    """(the main script, line) when this call comes from a statement at its top level that a pool
    worker would run again (not under a ``__name__ == "__main__"`` test); else (None, 0)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    path = getattr(spec, "origin", None) if spec is not None else getattr(main, "__file__", None)
    if main is None or path is None or (spec is not None and spec.name.rpartition(".")[2] == "__main__"):
        return None, 0  # workers do not import such a main module (multiprocessing.spawn)
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and not (frame.f_globals is vars(main) and frame.f_code.co_name == "<module>"):
        frame = frame.f_back
    if frame is None:
        return None, 0
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None, 0
    line = frame.f_lineno
    statement = next((n for n in tree.body if n.lineno <= line <= (n.end_lineno or n.lineno)), None)
    if statement is None or (isinstance(statement, ast.If) and _is_main_test(statement.test)):
        return None, 0
    return Path(path).name, line


def _is_main_test(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either way round), alone or in an ``and``."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return any(_is_main_test(v) for v in test.values)
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    consts = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return bool(names and consts)


def load_run(path: str | Path) -> Run:
    """Open a run directory (read-only, but for refreshing its ``summary.csv``); its finished
    units' summary, masks, weights and tickets (:class:`multiticket.analysis.results.Run`)."""
    from multiticket.analysis.rundata import load_run as read_run

    return Run(read_run(path, lenient=True))


__all__ = ["Run", "Ticket", "execute", "extend_task", "load_run", "resolve_task", "run"]
