"""The ``multiticket`` command line: run, sweep, status, report, compare, tasks, transfer, instability, export.

Every failure the user can fix (bad task file, unknown env, missing file) prints one line on
stderr and exits 2 without writing anything; a run that fails while training exits 1. A
traceback appears only with ``--debug``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from multiticket import interrupts
from multiticket.errors import RunFailure, UserError, storage_error
from multiticket.runtime import collector_paused, resolve_device
from multiticket.terminal import printable

#: ``--min-sparsity``'s default, for its help only (the value is core.sparse's DEFAULT_MIN_SPARSITY,
#: whose torch import the parser does not pay; tests/test_sparse_export.py keeps the two equal)
MIN_SPARSITY_DEFAULT = 0.8

if TYPE_CHECKING:
    from multiticket.launch.backends import LaunchOptions


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="multiticket", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_parser(sub)

    sweep = sub.add_parser("sweep", help="run every task x override combination of a sweep file")
    sweep.add_argument("sweep", help="sweep file (YAML: tasks, seeds, set, variants, grid; docs/scale.md)")
    sweep.add_argument("--out", help="parent of the run directories (default: the file's 'out', else runs)")
    _add_launch_args(sweep)

    status = sub.add_parser("status", help="done / running / failed / missing units of a run directory or a sweep")
    status.add_argument("target", help="a run directory, or a sweep file")
    status.add_argument("--out", help="where the sweep's runs are (default: the file's 'out', else runs)")
    status.add_argument("--json", action="store_true", help="print the counts as JSON")

    report = sub.add_parser("report", help="write report.html (plots embedded), plots/ and summary.csv into a run directory")
    report.add_argument("run_dir")
    report.add_argument("--metric", metavar="NAME",
                        help="the headline metric (default: the task's report.metric, else the primary metric), "
                             "e.g. f1_macro, eval_loss, test_accuracy")

    compare = sub.add_parser("compare", help="compare runs side by side (e.g. an RL and an NLP ticket search)")
    compare.add_argument("run_dirs", nargs="*", metavar="RUN_DIR")
    compare.add_argument("--label", action="append", default=[], metavar="NAME=RUN_DIR",
                         help="a run under a name of yours (repeatable; after the plain RUN_DIRs)")
    compare.add_argument("--out", help="output directory (default: <parent of the first run>/comparison)")

    sub.add_parser("tasks", help="list the shipped task files")

    transfer = sub.add_parser("transfer", help="train a run's tickets on another task (docs/transfer-and-stability.md)")
    transfer.add_argument("ticket_dir", help="the source run directory (<task>-<hash>) whose tickets travel")
    transfer.add_argument("--to", required=True, metavar="TASK", help="target task file or shipped task name")
    transfer.add_argument("--out", default="runs", help="parent of the transfer run directory (default: runs)")
    transfer.add_argument("--seeds", type=_seeds, help="source seeds to transfer (default: all finished)")
    transfer.add_argument("--levels", type=int, help="source levels 1..N to transfer (default: all finished)")
    transfer.add_argument("--controls", type=_names, help="default: transfer_mask + the source's random controls")
    transfer.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a target task key")
    _add_launch_args(transfer)

    inst = sub.add_parser("instability", help="linear mode connectivity of a run's units (error barrier)")
    inst.add_argument("run_dir")
    inst.add_argument("--levels", type=_seeds, help="comma-separated levels (0 = dense; default: all)")
    inst.add_argument("--controls", type=_names, help="comma-separated, e.g. ticket,random_reinit (default: ticket)")
    inst.add_argument("--seeds", type=_seeds, help="comma-separated seeds (default: the run's)")
    inst.add_argument("--points", type=int, default=11, help="points on the path, ends included (default 11)")
    inst.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    inst.add_argument("--quiet", action="store_true", help="no progress display")
    _add_trust_arg(inst)
    inst.add_argument("--trust-code", action="store_true",
                      help="import the user code the run directory's config names (a torch module, rl.imports, "
                           "module:EnvId); refused without it, since importing runs that code")
    _add_export_parser(sub)
    return parser


def _add_export_parser(sub: Any) -> None:
    export = sub.add_parser("export", help="write a finished unit as a model its library loads (SB3: a zip; "
                                           "--compact: the pruned neurons removed; --sparse: CSR weights)")
    export.add_argument("run_dir")
    export.add_argument("--seed", type=int, required=True)
    export.add_argument("--level", type=int, required=True)
    export.add_argument("--control", default="ticket", help="default: ticket")
    export.add_argument("--compact", action="store_true",
                        help="remove the neurons the mask prunes whole (prune.structure: neurons) from the network")
    export.add_argument("--sparse", action="store_true",
                        help="the pruned Linear/LSTM weights as CSR (or BSR) safetensors, loaded with "
                             "multiticket.core.sparse.load_sparse into the same architecture (any domain; "
                             "pays only for large layers at high sparsity, docs/results.md)")
    export.add_argument("--min-sparsity", type=float,  # default: core.sparse's, whose torch import waits
                        help=f"with --sparse: a layer goes sparse from this fraction of zeros (default: "
                             f"{MIN_SPARSITY_DEFAULT}, multiticket.core.sparse.DEFAULT_MIN_SPARSITY); "
                             "less sparse layers stay dense")
    export.add_argument("--out", help="the file to write (default: <run>-seed<S>-<control>-level<L>[-compact|-sparse]"
                                      ".zip|.safetensors here)")
    export.add_argument("--trust-code", action="store_true",
                        help="import the user code the run directory's config names; refused without it")


def _add_run_parser(sub: Any) -> None:
    run = sub.add_parser("run", help="run, resume or extend a ticket search")
    run.add_argument("task", help="task file, the name of a shipped task (see 'multiticket tasks'), or a run "
                                  "directory (or its config.yaml) to resume or extend from its own configuration")
    run.add_argument("--out", help="parent of the run directory (default: runs; a run directory's own parent)")
    run.add_argument("--seeds", type=_seeds, help="comma-separated seeds, e.g. 0,1,2")
    run.add_argument("--levels", type=int, help="number of pruning levels")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a task key, e.g. --set rl.env=Acrobot-v1 (repeatable)")
    run.add_argument("--trust-code", action="store_true",
                     help="a run directory: import the user code its config.yaml names (a torch module, rl.imports), "
                          "from your paths, never from the run directory; refused without it")
    _add_launch_args(run)


def _workers(text: str) -> int | str:
    """``auto`` (multiticket.launch.resources) or a count >= 1; parsed here without importing
    the launch package, which imports torch (argparse converts the default on every parse)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a count >= 1 or 'auto', got '{text}'")
    return count


def _names(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _add_trust_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-checkpoints", action="store_true",
                   help="read state files of older multiticket versions (state.pt, core.pt, final_state.pt) even "
                        "if they hold objects outside the allowlist: unpickling them can run code, so only for "
                        "run directories you trust (README: When things go wrong)")


def _add_launch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    _add_trust_arg(p)
    g = p.add_argument_group("where units run (docs/scale.md)")
    g.add_argument("--backend", choices=("local", "ray", "slurm"), default="local",
                   help="local process pool (default), a Ray cluster, or Slurm via submitit")
    g.add_argument("--workers", type=_workers, default="auto",
                   help="units at once: local pool size (1 = in this process), CPUs of a local Ray "
                        "instance, Slurm array parallelism; default 'auto': the CPUs this process may "
                        "use, capped by memory (1 trains in this process; docs/scale.md)")
    g.add_argument("--granularity", choices=("unit", "chain"),
                   help="one job per unit (default; slurm: per seed chain) or per seed chain")
    g.add_argument("--threads", type=int,
                   help="torch threads per worker (default 1; in-process runs keep torch's default)")
    g.add_argument("--address", help="ray: address of an existing cluster (default: start a local one)")
    g.add_argument("--cpus-per-unit", type=float, default=1.0, help="ray/slurm: CPUs per unit")
    g.add_argument("--gpus-per-unit", type=float, default=0.0, help="ray/slurm: GPUs per unit")
    g.add_argument("--slurm-partition")
    g.add_argument("--slurm-time", type=int, default=240, help="minutes per job; a timed-out job requeues")
    g.add_argument("--slurm-mem-gb", type=float)
    g.add_argument("--slurm-folder", help="submitit logs (default: OUT/.submitit; must be shared)")
    g.add_argument("--slurm-cluster", choices=("slurm", "local", "debug"), default="slurm",
                   help="'local'/'debug' run the submitit jobs on this machine (testing without Slurm)")


def launch_options(args: argparse.Namespace) -> LaunchOptions:
    from multiticket.launch.backends import LaunchOptions

    return LaunchOptions(
        backend=args.backend, workers=args.workers, granularity=args.granularity, device=args.device,
        threads=args.threads or 1, in_process_threads=args.threads, address=args.address,
        cpus_per_unit=args.cpus_per_unit, gpus_per_unit=args.gpus_per_unit, slurm_cluster=args.slurm_cluster,
        slurm_partition=args.slurm_partition,
        slurm_time=args.slurm_time, slurm_mem_gb=args.slurm_mem_gb, slurm_folder=args.slurm_folder,
        command=getattr(args, "command_line", None),
    )


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


def entry() -> int:
    """The ``multiticket`` console command (``[project.scripts]``): :func:`main` under the signal
    handlers until the interpreter exits (:func:`multiticket.interrupts.console`). This module's top
    imports little (pydantic, torch and the commands' modules come inside :func:`main`), so the
    handlers are in before anything slow is imported."""
    return interrupts.console(lambda: main)


def main(argv: list[str] | None = None) -> int:
    """Run one command line (``argv``: default ``sys.argv[1:]``) and return its exit code: what the
    console command runs, and what a test or another program calls in-process (the handlers are
    theirs again afterwards)."""
    with interrupts.handled():  # SIGINT / SIGTERM: one line, exit 130 / 143, whenever they land
        args = None
        try:
            from multiticket.provenance import command_line  # (pydantic) under the handlers: see entry

            argv = sys.argv[1:] if argv is None else list(argv)
            args = build_parser().parse_args(argv)
            args.command_line = command_line(argv)  # recorded in provenance.json
            return _dispatch(args)
        except SystemExit:
            raise
        except BaseException as exc:
            code = interrupts.report(lambda line: print(line, file=sys.stderr), exc)
            if code is not None:
                return code
            error = exc if isinstance(exc, (UserError, RunFailure)) else storage_error(exc)
            if error is None or (args is not None and args.debug):
                raise
            for line in getattr(error, "lines", [error]):  # several validation errors: one line each
                print(f"multiticket: error: {printable(line)}", file=sys.stderr)
            return error.exit_code


def _dispatch(args: argparse.Namespace) -> int:
    handlers = {"run": cmd_run, "sweep": cmd_sweep, "status": cmd_status, "report": cmd_report, "compare": cmd_compare,
                "tasks": cmd_tasks, "transfer": cmd_transfer, "instability": cmd_instability, "export": cmd_export}
    if getattr(args, "trust_checkpoints", False):
        from multiticket.core.legacy import trust_checkpoints

        trust_checkpoints()  # this process and the workers it starts (an environment variable)
    return handlers[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
