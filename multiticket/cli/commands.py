"""The commands of the command line, one ``cmd_<name>`` per subcommand, and what they print.

Each takes the parsed arguments (:mod:`multiticket.cli.parser`) and returns the exit code; the
modules a command needs (torch, the launch package, the analysis) are imported inside it, so that
:func:`multiticket.cli.main` has its signal handlers in before anything slow is imported.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from multiticket.cli.parser import launch_options
from multiticket.errors import UserError
from multiticket.runtime import collector_paused, resolve_device
from multiticket.terminal import printable


def cmd_run(args: argparse.Namespace) -> int:
    from multiticket.api import extension_note, parent_of, resolve_task, run_directory

    with collector_paused():  # resolving imports the domain's adapter and its library
        task = resolve_task(args.task, args.set, seeds=args.seeds, levels=args.levels, trust_code=args.trust_code)
    run_dir = run_directory(Path(args.task))
    out = Path(args.out) if args.out else (parent_of(run_dir) if run_dir is not None else Path("runs"))
    _warn_name(task, args)
    note = extension_note(task, run_dir, out) if run_dir is not None else None
    if note:
        print(f"multiticket: note: {printable(note)}", file=sys.stderr)
    return _launch([task], out, args)


def _warn_name(task, args: argparse.Namespace) -> None:  # noqa: ANN001
    """One line when a --set (or a sweep's override) changed what the run name describes
    (multiticket.provenance)."""
    from multiticket.provenance import name_warning

    warning = name_warning(task.config.name, task.resolved, task.source) if getattr(args, "set", True) else None
    if warning:
        print(f"multiticket: warning: {warning}", file=sys.stderr)


def cmd_sweep(args: argparse.Namespace) -> int:
    from multiticket.launch.sweep import load_sweep

    with collector_paused():  # as cmd_run's resolution
        sweep = load_sweep(args.sweep)
    out = Path(args.out) if args.out else (sweep.out or Path("runs"))
    for task in sweep.tasks:
        _warn_name(task, args)
    return _launch(sweep.tasks, out, args)


def _launch(tasks: list, out: Path, args: argparse.Namespace) -> int:  # noqa: ANN001
    from rich.console import Console

    from multiticket.api import execute
    from multiticket.core.imp import NullReporter
    from multiticket.progress import RichReporter

    opts = launch_options(args)
    console = Console(stderr=True)
    reporter = NullReporter() if args.quiet else RichReporter(console)
    if isinstance(reporter, RichReporter):
        with reporter:
            results = execute(tasks, out, opts, reporter)
    else:
        results = execute(tasks, out, opts, reporter)
    wanted = {out / t.run_name: t.config.report.metric for t in tasks}
    titles = run_titles(tasks, out)
    for run_dir, records in results:
        _print_table(console, records, table_metric(records, wanted.get(run_dir), console), titles.get(run_dir))
    for t in tasks:
        print(out / t.run_name)
    return 0


def run_titles(tasks: list, out: Path) -> dict[Path, str]:  # noqa: ANN001
    """Run directory -> the task name with what tells it apart from the other runs of that name
    (a sweep over ``prune.criterion``: ``toy-mlp (prune.criterion=movement)``)."""
    from multiticket.rundir import settings, tell_apart

    tags = tell_apart([t.config.name for t in tasks], [settings(t.resolved, t.config) for t in tasks])
    return {out / t.run_name: f"{t.config.name} ({tag})" if tag else t.config.name for t, tag in zip(tasks, tags)}


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.markup import escape

    from multiticket.launch.status import corrupt_lines, counts, status_table, unit_states
    from multiticket.launch.sweep import is_sweep_file, load_sweep

    target = Path(args.target)
    if target.is_dir():
        run_dirs = [target]
    elif target.is_file() and is_sweep_file(target):
        sweep = load_sweep(target, user_code=False)
        out = Path(args.out) if args.out else (sweep.out or Path("runs"))
        run_dirs = [out / t.run_name for t in sweep.tasks]
    else:
        raise UserError(f"{target}: neither a run directory nor a sweep file")
    console = Console()
    report: dict[str, dict[str, Any] | None] = {}
    for d in run_dirs:
        if not (d / "config.yaml").is_file():
            if target.is_dir():
                raise UserError(f"{d}: not a run directory (no config.yaml)")
            report[str(d)] = None
            if not args.json:
                console.print(f"{escape(d.name)}: not started")
            continue
        status = unit_states(d)
        report[str(d)] = counts(status.states)
        if not args.json:
            console.print(status_table(d, status.states))
            for line in corrupt_lines(status):
                console.print(line, style="red", markup=False, highlight=False, soft_wrap=True)
    if args.json:
        print(json.dumps(report, indent=1))
    return 0


def table_metric(records: list, wanted: str | None, console) -> str | None:  # noqa: ANN001
    """The task's ``report.metric`` for the table after a run, if the units record it; else a
    warning line and the primary metric (the run itself succeeded: no reason to fail it)."""
    from multiticket.analysis.metric_choice import choose

    try:
        return choose(records, wanted, "report.metric")
    except UserError as exc:
        console.print(f"multiticket: warning: {exc}; the table shows the primary metric", markup=False,
                      highlight=False, soft_wrap=True)
        return None


def _print_table(console, records, metric: str | None = None, title: str | None = None) -> None:  # noqa: ANN001
    from rich.markup import escape
    from rich.table import Table

    from multiticket.analysis.summary import level_table

    metric, header, rows = level_table(records, metric)
    if not rows:
        return
    safe = lambda text: escape(printable(text))  # noqa: E731 - names from a run directory
    table = Table(title=safe(f"{title or records[0]['task']}: {metric} by level and control (mean ± std over seeds)"))
    for h in header:
        table.add_column(safe(h), justify="right")
    for row in rows:
        table.add_row(*map(safe, row))
    console.print(table)


def cmd_report(args: argparse.Namespace) -> int:
    from rich.console import Console

    from multiticket.analysis.report import save_report
    from multiticket.analysis.rundata import load_run
    from multiticket.analysis.verdicts import verdict_line

    # raises UserError for a directory that is no run, a malformed one, or an unknown --metric
    run = load_run(Path(args.run_dir), args.metric)
    html = save_report(run)
    console = Console()
    _print_table(console, run.records, run.metric)
    if run.records:
        console.print(printable(verdict_line(run)), markup=False, highlight=False, soft_wrap=True)
    print(html)
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from multiticket.paths import resolve_task_path
    from multiticket.transfer_task import transfer_task

    task, notes = transfer_task(args.ticket_dir, resolve_task_path(args.to), args.set, args.seeds, args.levels,
                                args.controls)
    _warn_name(task, args)
    if not args.quiet:
        for note in notes:
            print(f"multiticket: note: {note}", file=sys.stderr)
    return _launch([task], Path(args.out), args)


def cmd_instability(args: argparse.Namespace) -> int:
    from rich.console import Console

    from multiticket.analysis.stats import fmt
    from multiticket.core.hooks import NullReporter
    from multiticket.launch.instability import run_instability
    from multiticket.progress import RichReporter

    reporter = NullReporter() if args.quiet else RichReporter(Console(stderr=True))
    run = lambda: run_instability(args.run_dir, args.points, args.seeds, args.levels, args.controls,  # noqa: E731
                                  resolve_device(args.device), reporter, args.trust_code)
    if isinstance(reporter, RichReporter):
        with reporter:
            records = run()
    else:
        records = run()
    for r in records:
        unit = "dense" if r["level"] == 0 else r["control"]
        print(f"seed {r['seed']} L{r['level']} {unit:<14} sparsity {100 * r['sparsity']:5.1f}%  {printable(r['metric'])} "
              f"{fmt(r['values'][0])} .. {fmt(r['values'][-1])}  barrier {fmt(r['barrier'])} "
              f"(vs the line between the ends {fmt(r['barrier_linear'])})")
    print(Path(args.run_dir))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from multiticket.analysis.compare import write_comparison

    runs: list[tuple[str | None, Path]] = [(None, Path(d)) for d in args.run_dirs]
    runs += [compare_label(text) for text in args.label]
    if not runs:
        raise UserError("compare: give at least one run directory (RUN_DIR or --label NAME=RUN_DIR)")
    names = [n for n, _ in runs if n is not None]
    if len(set(names)) < len(names):
        raise UserError(f"--label: '{next(n for n in names if names.count(n) > 1)}' names two runs")
    out = Path(args.out) if args.out else runs[0][1].parent / "comparison"
    print(write_comparison([d for _, d in runs], out, labels=[n for n, _ in runs]))
    return 0


#: a --label name: plain text (it is drawn into the figures, where '$' would start mathematics)
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.,:+()/%#-]{0,63}")


def compare_label(text: str) -> tuple[str, Path]:
    """``NAME=RUN_DIR`` of ``compare --label``; one line naming the flag otherwise."""
    name, sep, path = text.partition("=")
    name = name.strip()
    if not sep or not path:
        raise UserError(f"--label {text}: expected NAME=RUN_DIR")
    if not LABEL.fullmatch(name):
        raise UserError(f"--label {text}: the name must be 1-64 letters, digits, spaces or _.,:+()/%#- "
                        "(starting with a letter or digit)")
    return name, Path(path)


def cmd_export(args: argparse.Namespace) -> int:
    from multiticket.core.sparse import DEFAULT_MIN_SPARSITY
    from multiticket.export import export_unit

    if args.min_sparsity is not None and not args.sparse:
        raise UserError("--min-sparsity: only with --sparse")
    threshold = DEFAULT_MIN_SPARSITY if args.min_sparsity is None else args.min_sparsity
    done = export_unit(args.run_dir, args.seed, args.level, args.control, args.compact, args.out, args.trust_code,
                       sparse=args.sparse, min_sparsity=threshold)
    s = done.summary
    line = f"{s.get('parameters')} parameters (dense {s.get('dense_parameters')})"
    if args.sparse:
        layers = s.get("sparse_layers", {})
        line = (f"{len(layers)} layers sparse ({', '.join(sorted(set(layers.values()))) or 'none'}) from "
                f"{s.get('min_sparsity')} zeros, {s.get('stored_values')} stored values (dense {s.get('dense_values')})")
    if args.compact:
        channels = f" (of them {s['channels_removed']} Conv channels)" if s.get("channels_removed") else ""
        kept = sum(k.get("channels", 0) for k in s.get("dead_kept") or [] if isinstance(k, dict))
        line += (f", {s.get('neurons_removed')} neurons removed{channels}, net_arch {s.get('net_arch')}, outputs "
                 f"within {s.get('max_abs_diff', 0.0):.2g} of the ticket's"
                 + (f"; {kept} dead kept where removal is not exact (export.json: dead_kept)" if kept else ""))
    print(printable(line), file=sys.stderr)
    print(done.path)
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from multiticket.paths import shipped_tasks

    table = Table(title="shipped tasks (multiticket run NAME)")
    for col in ("name", "domain", "description"):
        table.add_column(col)
    for name, path in shipped_tasks().items():
        data = yaml.safe_load(path.read_text()) or {}
        table.add_row(*(escape(str(v)) for v in (name, data.get("domain", ""), data.get("description", ""))))
    Console().print(table)
    return 0
