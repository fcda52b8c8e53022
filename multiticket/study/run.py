"""Running a study: its parts in turn through the library's driver, then the reports, the
comparison and ``results.json`` / ``results.md``; and the command line every study script shares.

Apart from the study file and its task files (:mod:`multiticket.study.file`, :mod:`.tasks`): this
is where compute is spent and the scripts' options are read.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multiticket.analysis.claims.results import collect, results_md, write_reports
from multiticket.errors import RunFailure, UserError
from multiticket.study.file import Study
from multiticket.study.ledger import Invocation, load_ledger, machine_info, write_file
from multiticket.study.tasks import PartTasks, build_tasks, plan


def run_part(pt: PartTasks, out: Path, workers: int | str, device: str, quiet: bool, command: str) -> str | None:
    """Run (or resume) every task of a part; an error line, or None on success."""
    from multiticket.core.hooks import NullReporter
    from multiticket.launch.backends import LaunchOptions
    from multiticket.launch.driver import run_tasks

    opts = LaunchOptions(backend="local", workers=workers, device=device, threads=1, in_process_threads=1,
                         command=command)
    try:
        if quiet:
            run_tasks(pt.tasks, out, opts, NullReporter())
        else:
            from rich.console import Console

            from multiticket.progress import RichReporter

            with RichReporter(Console(stderr=True)) as reporter:
                run_tasks(pt.tasks, out, opts, reporter)
    except (RunFailure, UserError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def run_parts(study: Study, part_tasks: dict[str, PartTasks], args: argparse.Namespace, inv: Invocation,
              prog: str) -> tuple[bool, dict[str, str]]:
    """Run (or resume) each part in turn and write its reports, timing each in the ledger;
    (a part failed, run dir -> report error)."""
    failed = False
    errors: dict[str, str] = {}
    inv.start = inv.clock()
    inv.ledger.append(inv.entry)
    try:
        for key, pt in part_tasks.items():
            workers = args.workers or study.spec.parts[key].budgets[args.budget].workers
            print(f"{prog}: part {key} ({args.budget}, {len(pt.tasks)} task(s), workers {workers})", file=sys.stderr)
            t0 = inv.clock()
            timing: dict[str, Any] = {"load_before": [round(x, 2) for x in os.getloadavg()]}
            inv.entry["parts"][key] = timing
            error = None
            try:
                error = run_part(pt, Path(args.out), workers, args.device, args.quiet, inv.entry["command"])
                errors.update(write_reports(pt.run_dirs))
            finally:
                timing.update(wall_seconds=round(inv.clock() - t0, 1), error=error,
                              load_after=[round(x, 2) for x in os.getloadavg()])
                inv.save()
            if error:
                failed = True
                print(f"{prog}: part {key} failed: {error}", file=sys.stderr)
    except KeyboardInterrupt:
        inv.entry["interrupted"] = True
        raise
    finally:
        inv.save()
    return failed, errors


# -- the command line of a study script -------------------------------------------------------------


@dataclass
class Extras:
    """What a study script adds to its results: per task, baselines measured beside the run (the
    claims read them); ``data`` for ``results.json``; ``lines`` for ``results.md``."""

    facts: dict[str, dict[str, float]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


def study_parser(study: Study, prog: str, doc: str, seeds: Callable[[str], list[int]]) -> argparse.ArgumentParser:
    """The options every study script takes; ``seeds``: the parser of a comma-separated seed list."""
    spec = study.spec
    minutes = {k: p.budgets[spec.default_budget].minutes for k, p in spec.parts.items()}
    estimate = ", ".join(f"{k} ~{m:.0f} min" for k, m in minutes.items() if m)
    total = sum(minutes[k] or 0 for k in study.default_parts)
    p = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0],
                                epilog=f"Estimated wall time of --budget {spec.default_budget}: {estimate or 'none'}"
                                       f"{f'; the default parts ~{total:.0f} min in all' if total else ''}. Settings, "
                                       f"parts, budgets, how each was sized, and the claims: {study.source}.")
    if len(spec.parts) > 1:
        p.add_argument("--parts", type=lambda text: parts_arg(study, text), default=study.default_parts,
                       help=f"comma-separated subset of {','.join(spec.parts)} (default: {','.join(study.default_parts)})")
    p.add_argument("--budget", choices=spec.budgets, default=spec.default_budget,
                   help=f"default {spec.default_budget}; each budget's settings and sizing are in the study file")
    p.add_argument("--seeds", type=seeds, help="comma-separated seeds (default: the part's, see the study file)")
    p.add_argument("--out", default=spec.out, help=f"output directory (default {spec.out})")
    p.add_argument("--workers", type=int, help="units at once (default: the budget's, see the study file)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--levels", type=int, help="override the budget's number of pruning levels (every part)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a task setting in every part, as `multiticket run --set` (repeatable; e.g. "
                        "nlp.adamw_fused=false to extend or report a run made before that default)")
    p.add_argument("--results-only", action="store_true", help="train nothing; rewrite reports and results")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    return p


def parts_arg(study: Study, text: str) -> list[str]:
    """--parts: known part names, in the study's order."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in study.spec.parts]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown part '{(unknown or [''])[0]}' (parts: {', '.join(study.spec.parts)})")
    return [p for p in study.spec.parts if p in names]


def run_study(study: Study, args: argparse.Namespace, command: str, prog: str,
              extras: Callable[[dict[str, PartTasks]], Extras] | None = None,
              clock: Callable[[], float] = time.monotonic) -> int:
    """Run the selected parts (``args.parts``), then write reports, the comparison and the results
    files; 2 on bad input, 1 when a part failed, else 0."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    selected = getattr(args, "parts", None) or study.default_parts
    try:
        machine = machine_info(args.device)
        part_tasks = {k: build_tasks(study, k, args.budget, out, args.seeds, args.levels, args.device,
                                     getattr(args, "set", []))
                      for k in study.spec.parts}
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    ledger_path = out / "timings.json"
    inv = Invocation(ledger_path, load_ledger(ledger_path), {
        "command": command, "budget": args.budget, "seeds": args.seeds, "started": _dt.datetime.now().isoformat(
            timespec="seconds"), "machine": {k: machine[k] for k in ("cpus", "cpu_model", "device", "gpu", "torch")},
        "parts": {}}, clock)
    failed = False
    errors: dict[str, str] = {}
    try:
        if not args.results_only:
            failed, errors = run_parts(study, {k: part_tasks[k] for k in selected}, args, inv, prog)
    finally:
        for key in part_tasks:
            if args.results_only or key not in selected:
                errors.update(write_reports(part_tasks[key].run_dirs))
        extra = extras(part_tasks) if extras else Extras()
        res = collect(plan(study, args.budget, out, part_tasks), inv.ledger, machine, errors, extra.facts)
        res.update({"data": extra.data} if extra.data else {})
        write_file(out / "results.json", json.dumps(res, indent=1, default=str) + "\n")
        write_file(out / "results.md", results_md(res, study.spec.script, extra.lines))
        print(out / "results.md")
        print(out / "results.json")
    return 1 if failed else 0
