"""The ``multiticket`` command line: run, report, tasks.

Every failure the user can fix (bad task file, unknown env, missing file) prints one line on
stderr and exits 2 without writing anything; a run that fails while training exits 1. A
traceback appears only with ``--debug``.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
from pathlib import Path

import yaml

from multiticket.errors import RunFailure, UserError


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="multiticket", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run or resume a ticket search")
    run.add_argument("task", help="task file, or the name of a shipped task (see 'multiticket tasks')")
    run.add_argument("--out", default="runs", help="parent of the run directory (default: runs)")
    run.add_argument("--seeds", type=_seeds, help="comma-separated seeds, e.g. 0,1,2")
    run.add_argument("--levels", type=int, help="number of pruning levels")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a task key, e.g. --set rl.env=Acrobot-v1 (repeatable)")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    run.add_argument("--quiet", action="store_true", help="no progress display")

    report = sub.add_parser("report", help="write summary.csv for a run directory and print its table")
    report.add_argument("run_dir")

    sub.add_parser("tasks", help="list the shipped task files")
    return parser


def resolve_device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("--device: cuda requested but no CUDA device is available")
    return choice


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for dist in ("multiticket", "torch", "numpy", "stable-baselines3", "gymnasium", "transformers", "datasets"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[dist] = md.version(dist)
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from multiticket.adapters import adapter_class
    from multiticket.analysis.summary import write_summary
    from multiticket.config import load_task
    from multiticket.core.imp import IMPRunner, NullReporter
    from multiticket.core.store import RunStore, write_text_if_changed
    from multiticket.paths import resolve_task_path
    from multiticket.progress import RichReporter

    task = load_task(resolve_task_path(args.task), args.set, seeds=args.seeds, levels=args.levels)
    device = resolve_device(args.device)
    run_dir = Path(args.out) / task.run_name
    existed = run_dir.exists()
    cls = adapter_class(task.config.domain)
    try:
        adapter = cls(task.config, task.section, run_dir / "cache", device)
        runner = IMPRunner(task, adapter, RunStore(run_dir))
        runner.prepare()
    except UserError as exc:
        if not existed and run_dir.exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        msg = str(exc)
        raise UserError(msg if msg.startswith(str(task.source)) else f"{task.source}: {msg}") from None
    except BaseException:
        if not existed and run_dir.exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    console = Console(stderr=True)
    store = RunStore(run_dir)
    with store.locked():
        config_text = yaml.safe_dump({**task.resolved, "versions": library_versions()}, sort_keys=False)
        write_text_if_changed(run_dir / "config.yaml", config_text)
        reporter = NullReporter() if args.quiet else RichReporter(console)
        runner.reporter = reporter
        try:
            if isinstance(reporter, RichReporter):
                with reporter:
                    runner.run()
            else:
                runner.run()
        finally:
            adapter.close()
            summary, records = write_summary(run_dir)
    _print_table(console, records)
    print(run_dir)
    return 0


def _print_table(console, records) -> None:  # noqa: ANN001
    from rich.table import Table

    from multiticket.analysis.summary import level_table

    metric, header, rows = level_table(records)
    if not rows:
        return
    table = Table(title=f"{records[0]['task']}: {metric} by level and control (mean ± std over seeds)")
    for h in header:
        table.add_column(h, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def cmd_report(args: argparse.Namespace) -> int:
    from rich.console import Console

    from multiticket.analysis.summary import write_summary

    run_dir = Path(args.run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir}: not a run directory (no config.yaml)")
    path, records = write_summary(run_dir)
    _print_table(Console(), records)
    print(path)
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from multiticket.paths import shipped_tasks

    table = Table(title="shipped tasks (multiticket run NAME)")
    for col in ("name", "domain", "description"):
        table.add_column(col)
    for name, path in shipped_tasks().items():
        data = yaml.safe_load(path.read_text()) or {}
        table.add_row(name, str(data.get("domain", "")), str(data.get("description", "")))
    Console().print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"run": cmd_run, "report": cmd_report, "tasks": cmd_tasks}
    try:
        return handlers[args.command](args)
    except (UserError, RunFailure) as exc:
        if args.debug:
            raise
        print(f"multiticket: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("multiticket: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
