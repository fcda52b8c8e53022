"""The ``multiticket`` command line: run, sweep, status, report, compare, tasks, transfer, instability, export.

Every failure the user can fix (bad task file, unknown env, missing file) prints one line on
stderr and exits 2 without writing anything; a run that fails while training exits 1. A
traceback appears only with ``--debug``.

Here: the console entry point, :func:`main` (one command line, its errors as one line each) and
the dispatch to the commands; :mod:`.parser` builds the argument parser, :mod:`.commands` holds
the commands (``cmd_<name>``). Their names are re-exported, so ``from multiticket.cli import
main, build_parser`` is the way in.
"""

from __future__ import annotations

import argparse
import sys

from multiticket import interrupts
from multiticket.cli.commands import (
    LABEL,
    cmd_compare,
    cmd_export,
    cmd_instability,
    cmd_report,
    cmd_run,
    cmd_status,
    cmd_sweep,
    cmd_tasks,
    cmd_transfer,
    compare_label,
    run_titles,
    table_metric,
)
from multiticket.cli.parser import MIN_SPARSITY_DEFAULT, _seeds, build_parser, launch_options
from multiticket.errors import RunFailure, UserError, storage_error
from multiticket.terminal import printable

__all__ = [
    "LABEL", "MIN_SPARSITY_DEFAULT", "_seeds", "build_parser", "cmd_compare", "cmd_export", "cmd_instability",
    "cmd_report", "cmd_run", "cmd_status", "cmd_sweep", "cmd_tasks", "cmd_transfer", "compare_label", "entry",
    "launch_options", "main", "run_titles", "table_metric",
]


def entry() -> int:
    """The ``multiticket`` console command (``[project.scripts]``): :func:`main` under the signal
    handlers until the interpreter exits (:func:`multiticket.interrupts.console`). This package's top
    imports little (pydantic, torch and the commands' modules come inside :func:`main` and the
    commands), so the handlers are in before anything slow is imported."""
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
    """Run the command's handler, looked up in this module when called (a test may replace one)."""
    handlers = {"run": cmd_run, "sweep": cmd_sweep, "status": cmd_status, "report": cmd_report, "compare": cmd_compare,
                "tasks": cmd_tasks, "transfer": cmd_transfer, "instability": cmd_instability, "export": cmd_export}
    if getattr(args, "trust_checkpoints", False):
        from multiticket.core.legacy import trust_checkpoints

        trust_checkpoints()  # this process and the workers it starts (an environment variable)
    return handlers[args.command](args)
