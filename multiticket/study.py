"""A study as data (``studies/*.yaml``): its parts, each part's tasks, budgets, seeds, controls and
the claims it speaks to; loaded, turned into ordinary task files and run.

A study file names, per part, shipped tasks (``multiticket tasks``) and the settings the study
merges into each (nested mappings merge key by key; ``rates``, ``model_args`` and ``overrides``
are replaced whole), per budget the training length, levels, rewind point and more settings, and
the claims of the paper the part can test (:mod:`multiticket.analysis.claims`). Every key is
validated (pydantic, unknown keys refused) and a bad file is one line naming the file and the
field. The task files are written to ``OUT/tasks/`` and run through
:func:`multiticket.launch.driver.run_tasks`, so IMP, the controls, the run store and resume are
the library's own; ``OUT/timings.json`` records every invocation (command, date, wall time per
part), and :mod:`multiticket.analysis.claims.results` writes ``results.json`` / ``results.md``.

.. code-block:: yaml

    title: Reproducing Yu et al. 2019          # the results page's title
    paper: "Yu, Edunov, Tian, Morcos (2019): ..."
    description: Yu et al. 2019 reproduction   # starts each task file's description
    script: reproduce_yu2019.py                # the script that runs it
    out: runs/yu2019                           # default output directory
    budgets: [tiny, cpu, paper]
    default_budget: cpu
    comparison: true                           # write OUT/comparison/ over every run
    claims:                                    # id -> text, judge and the judge's parameters
      ticket-beats-random: {text: "...", judge: beats-random, from_sparsity: 0.8}
      atari: {text: "...", judge: not-attempted, reason: "..."}
    parts:
      cartpole:
        title: CartPole-v1, A2C
        default: true                          # run without --parts
        seeds: [0, 1, 2]
        secondary: [ticket_reward]             # metrics tabulated after the run's own
        tasks:
          - {name: yu2019-cartpole-a2c, base: acrobot-a2c, controls: [random_reinit, ...],
             settings: {rl: {env: CartPole-v1}}, budgets: {paper: {...}}}
        budgets:
          tiny: {steps: 1024, levels: 2, rewind: 128, workers: 1, settings: {...}}
          cpu: {steps: 100000, levels: 10, rewind: 2048, minutes: 13}
          paper: {steps: 1000000, levels: 20, rewind: 19968, cuda: {...}, seeds: [0, 1, 2]}
        claims: [ticket-beats-random, {id: one-shot-below-random, metric: eval_loss}]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field

from multiticket.analysis.claims import ClaimBase, claim_spec
from multiticket.analysis.claims.results import PartPlan, StudyPlan, TaskRun, collect, results_md, write_reports
from multiticket.config import ResolvedTask, load_task, read_yaml_file, validate_section
from multiticket.core.controls import CONTROLS
from multiticket.core.store import atomic_write_text
from multiticket.core.textfile import read_yaml
from multiticket.errors import RunFailure, UserError
from multiticket.paths import shipped_tasks
from multiticket.schema import Strict

#: settings whose mappings replace the task's instead of merging into it
REPLACED = ("rates", "model_args", "overrides")
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class StudyModel(Strict):
    """Unknown keys are errors and nothing is coerced: a study decides hours of compute."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)


class BudgetSpec(StudyModel):
    """One part at one budget: training length, depth, rewind point, and settings merged last."""

    steps: int = Field(gt=0)
    levels: int = Field(ge=0, le=100)
    #: rewind step k: an integer in domain units or 'N%' of steps
    rewind: int | str
    settings: dict[str, Any] = Field(default_factory=dict)
    #: merged too (before ``settings``) when the study runs with --device cuda (bf16, ...)
    cuda: dict[str, Any] = Field(default_factory=dict)
    #: seeds at this budget when --seeds is not given (None: the part's)
    seeds: list[int] | None = None
    #: units at once when --workers is not given ("auto": the CPUs this process may use)
    workers: int | Literal["auto"] = "auto"
    #: estimated wall minutes (shown beside the measured ones)
    minutes: float | None = None


class TaskSpec(StudyModel):
    """One task of a part: a shipped task and the settings the study merges into it."""

    name: str = Field(pattern=NAME, max_length=200)
    #: what distinguishes it within its part (None: the part's title)
    label: str | None = None
    base: str = Field(min_length=1, max_length=200)
    controls: list[str]
    settings: dict[str, Any] = Field(default_factory=dict)
    #: budget -> settings of this task at that budget only (a bigger model on the paper budget)
    budgets: dict[str, dict[str, Any]] = Field(default_factory=dict)


class PartSpec(StudyModel):
    """One part: its tasks, run and judged together (one line of the results' parts table)."""

    title: str = Field(min_length=1, max_length=300)
    default: bool = True
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    secondary: list[str] = Field(default_factory=list)
    tasks: list[TaskSpec] = Field(min_length=1)
    budgets: dict[str, BudgetSpec]
    #: claim ids of the study, or {id: ..., <parameter>: ...} overriding the claim's parameters here
    claims: list[str | dict[str, Any]] = Field(default_factory=list)


class StudyFile(StudyModel):
    """A whole study file (the schema in the module docstring)."""

    title: str = Field(min_length=1, max_length=300)
    paper: str = Field(min_length=1, max_length=1000)
    description: str = Field(min_length=1, max_length=300)
    script: str = Field(min_length=1, max_length=200)
    out: str = Field(min_length=1, max_length=500)
    budgets: list[str] = Field(min_length=1)
    default_budget: str
    comparison: bool = False
    claims: dict[str, dict[str, Any]] = Field(default_factory=dict)
    parts: dict[str, PartSpec] = Field(min_length=1)


@dataclass
class Study:
    """A loaded study: the validated file, and per part its claims with their parameters resolved."""

    source: Path
    spec: StudyFile
    claims: dict[str, list[ClaimBase]]
    #: claims no part judges (not attempted by this study)
    unjudged: list[ClaimBase]

    @property
    def default_parts(self) -> list[str]:
        return [k for k, p in self.spec.parts.items() if p.default]


# -- loading --------------------------------------------------------------------------------------


def _check(ok: bool, source: Path, where: str, why: str) -> None:
    if not ok:
        raise UserError(f"{source}: {where}: {why}")


def _check_part(spec: StudyFile, key: str, part: PartSpec, source: Path) -> None:
    """Budgets, shipped tasks and controls of one part."""
    where = f"parts.{key}"
    _check(bool(re.fullmatch(NAME, key)), source, where, "a part's name is letters, digits, . _ -")
    for b in [*spec.budgets, *part.budgets]:
        _check(b in part.budgets, source, f"{where}.budgets", f"missing budget '{b}'")
        _check(b in spec.budgets, source, f"{where}.budgets.{b}", f"unknown budget (budgets: {', '.join(spec.budgets)})")
    shipped = shipped_tasks()
    for i, task in enumerate(part.tasks):
        _check(task.base in shipped, source, f"{where}.tasks.{i}.base", f"unknown shipped task '{task.base}'")
        for c in task.controls:
            _check(c in CONTROLS and c != "ticket", source, f"{where}.tasks.{i}.controls", CONTROLS.unknown(c))
        for b in task.budgets:
            _check(b in spec.budgets, source, f"{where}.tasks.{i}.budgets.{b}", "unknown budget")


def _part_claims(spec: StudyFile, key: str, part: PartSpec, defs: dict[str, ClaimBase], source: Path) -> list[ClaimBase]:
    """The part's claims: each the study's definition with the part's overrides."""
    out: list[ClaimBase] = []
    tasks = [t.name for t in part.tasks]
    for i, entry in enumerate(part.claims):
        where = f"parts.{key}.claims.{i}"
        given = {"id": entry} if isinstance(entry, str) else dict(entry)
        cid = given.get("id")
        _check(isinstance(cid, str) and cid in defs, source, f"{where}.id",
               f"unknown claim {cid!r} (the study's claims: {', '.join(defs)})")
        claim = claim_spec({**spec.claims[str(cid)], "id": cid, **given}, where, source)
        for name in (claim.task, getattr(claim, "against", None)):
            _check(name is None or name in tasks, source, where, f"task '{name}' is not a task of this part")
        for c in [*claim.controls_needed(), *getattr(claim, "controls", {})]:
            _check(c in CONTROLS, source, f"{where}.control", CONTROLS.unknown(c))
        control = getattr(claim, "control", None)
        _check(claim.judge != "beats-control" or CONTROLS[str(control)].role == "random", source,
               f"{where}.control", f"'{control}' is not a random control")
        _check(claim.id not in [c.id for c in out], source, where, f"claim '{claim.id}' listed twice")
        out.append(claim)
    return out


def load_study(path: Path | str) -> Study:
    """Read (bounded) and validate a study file; a one-line UserError naming the field otherwise."""
    source = Path(path)
    spec = validate_section(StudyFile, read_yaml_file(source, "study"), source, "")
    assert isinstance(spec, StudyFile)
    _check(spec.default_budget in spec.budgets, source, "default_budget", f"not one of {', '.join(spec.budgets)}")
    defs = {cid: claim_spec({**d, "id": cid}, f"claims.{cid}", source) for cid, d in spec.claims.items()}
    claims: dict[str, list[ClaimBase]] = {}
    for key, part in spec.parts.items():
        _check_part(spec, key, part, source)
        claims[key] = _part_claims(spec, key, part, defs, source)
    names = [t.name for p in spec.parts.values() for t in p.tasks]
    _check(len(names) == len(set(names)), source, "parts", "two tasks share a name")
    judged = {c.id for found in claims.values() for c in found}
    for cid, claim in defs.items():
        _check(cid in judged or claim.judge == "not-attempted", source, f"claims.{cid}",
               "no part judges it (list it under a part's claims, or make its judge not-attempted)")
    return Study(source, spec, claims, [c for c in defs.values() if c.id not in judged])


# -- task files -----------------------------------------------------------------------------------


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in: nested mappings merge, anything else (and :data:`REPLACED`) replaces."""
    out = copy.deepcopy(base)
    for k, v in extra.items():
        nested = isinstance(v, dict) and isinstance(out.get(k), dict) and k not in REPLACED
        out[k] = merge(out[k], v) if nested else copy.deepcopy(v)
    return out


def task_data(study: Study, key: str, task: TaskSpec, budget: str, device: str, seeds: Sequence[int]) -> dict[str, Any]:
    """The whole task file of one task at one budget (``multiticket run FILE`` runs it as the study does)."""
    part = study.spec.parts[key]
    b = part.budgets[budget]
    base = read_yaml(shipped_tasks()[task.base])
    data = merge(merge(base, task.settings), task.budgets.get(budget, {}))
    data = merge(merge(data, b.cuda), b.settings) if device == "cuda" else merge(data, b.settings)
    label = task.label or part.title
    data.update(name=task.name, controls=list(task.controls), seeds=list(seeds),
                description=f"{study.spec.description} ({budget} budget): "
                            f"{part.title}{'' if label == part.title else ', ' + label}. "
                            f"Written by scripts/{study.spec.script}.")
    data["train"] = {"steps": b.steps}
    data["rewind"] = {**(data.get("rewind") or {}), "step": b.rewind}
    data["prune"] = {**data["prune"], "levels": b.levels}
    return data


@dataclass
class PartTasks:
    """One part's tasks at one budget: loaded, with their task files and run directories."""

    key: str
    specs: list[TaskSpec]
    tasks: list[ResolvedTask]
    files: list[Path]
    run_dirs: list[Path]


def part_seeds(study: Study, key: str, budget: str, seeds: Sequence[int] | None) -> list[int]:
    part = study.spec.parts[key]
    return list(seeds or part.budgets[budget].seeds or part.seeds)


def build_tasks(study: Study, key: str, budget: str, out: Path, seeds: Sequence[int] | None, levels: int | None,
                device: str, overrides: Sequence[str] = ()) -> PartTasks:
    """Write a part's task files to ``OUT/tasks/`` (only when changed) and load them, validating every key;
    ``overrides`` (``--set KEY=VALUE``) apply to every task as ``multiticket run --set`` does."""
    task_dir = out / "tasks"
    task_dir.mkdir(parents=True, exist_ok=True)
    chosen = part_seeds(study, key, budget, seeds)
    specs = study.spec.parts[key].tasks
    tasks, files = [], []
    for spec in specs:
        data = task_data(study, key, spec, budget, device, chosen)
        if levels is not None:
            data["prune"]["levels"] = levels
        path = task_dir / f"{spec.name}.{budget}.yaml"
        text = yaml.safe_dump(data, sort_keys=False)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        tasks.append(load_task(path, list(overrides), seeds=chosen, levels=levels))
        files.append(path)
    return PartTasks(key, list(specs), tasks, files, [out / t.run_name for t in tasks])


def plan(study: Study, budget: str, out: Path, part_tasks: dict[str, PartTasks]) -> StudyPlan:
    """What the results cover (:mod:`multiticket.analysis.claims.results`)."""
    parts = []
    for key, pt in part_tasks.items():
        part = study.spec.parts[key]
        runs = [TaskRun(s.name, s.label or part.title, f, d) for s, f, d in zip(pt.specs, pt.files, pt.run_dirs)]
        parts.append(PartPlan(key, part.title, runs, study.claims[key], part.secondary, part.budgets[budget].minutes))
    return StudyPlan(study.spec.title, study.spec.paper, study.spec.script, budget, out, parts, study.unjudged,
                     list(study.spec.claims), study.spec.comparison)


# -- running --------------------------------------------------------------------------------------


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


def machine_info(device: str) -> dict[str, Any]:
    """What the results were measured on (CPU count and model, torch, device, load)."""
    import torch

    from multiticket.runtime import library_versions, resolve_device

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    resolved = resolve_device(device)
    return {"cpus": os.cpu_count(), "cpu_model": model, "platform": platform.platform(), "torch": torch.__version__,
            "device": resolved, "gpu": torch.cuda.get_device_name(0) if resolved == "cuda" else None,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()], "versions": library_versions()}


def load_ledger(path: Path) -> list[dict[str, Any]]:
    """The invocations recorded in ``timings.json`` ([] when there is none or it is unreadable)."""
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return []
    return list(data.get("invocations", [])) if isinstance(data, dict) else []


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


@dataclass
class Invocation:
    """This invocation's entry of ``timings.json``, saved after every part and on an interrupt."""

    path: Path
    ledger: list[dict[str, Any]]
    entry: dict[str, Any]
    clock: Callable[[], float] = time.monotonic
    start: float = field(default=0.0)

    def save(self) -> None:
        self.entry["wall_seconds"] = round(self.clock() - self.start, 1)
        _write(self.path, json.dumps({"invocations": self.ledger}, indent=1) + "\n")


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
        _write(out / "results.json", json.dumps(res, indent=1, default=str) + "\n")
        _write(out / "results.md", results_md(res, study.spec.script, extra.lines))
        print(out / "results.md")
        print(out / "results.json")
    return 1 if failed else 0
