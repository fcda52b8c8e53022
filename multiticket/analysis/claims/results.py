"""A study's results, read from its run directories on disk: ``results.json`` and ``results.md``.

Everything is recomputed from the finished units at every call (a rerun of a study resumes its
runs and rewrites both files): per part the runs' status, their metric-vs-sparsity tables (mean ±
std over seeds) and the ticket against each control per level (sign-flip p, uncorrected, beside
the run verdict's "won"); per claim its verdict (:func:`.judges.judge_claim`); the commands that
made the runs, with their dates and wall times (the study's ``timings.json`` ledger).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multiticket.analysis.claims.evidence import pct
from multiticket.analysis.claims.judges import judge_claim
from multiticket.analysis.claims.spec import NOT_RUN, ClaimBase, ClaimResult
from multiticket.analysis.paired import paired
from multiticket.analysis.rundata import RunData, load_run
from multiticket.analysis.stats import fmt, mean_std
from multiticket.analysis.verdicts import run_verdict
from multiticket.core.controls import CONTROLS

#: metrics the tables derive from a recorded one: name -> (recorded metric, transform)
DERIVED = {"log_perplexity": ("perplexity", math.log)}


@dataclass
class TaskRun:
    """One task of a part: its name and label, the task file written for it, its run directory."""

    name: str
    label: str
    task_file: Path
    run_dir: Path


@dataclass
class PartPlan:
    """One part of a study as the results see it."""

    key: str
    title: str
    tasks: list[TaskRun]
    claims: list[ClaimBase]
    #: metrics tabulated after the run's own (Yu's "ticket reward" in RL, ...)
    secondary: list[str] = field(default_factory=list)
    #: estimated wall minutes at this budget (None: not estimated)
    minutes: float | None = None


@dataclass
class StudyPlan:
    """What a study's results cover: its parts in order, the claims no part judges, the order of
    the claims in the tables, and whether a cross-run ``comparison/`` is written."""

    title: str
    paper: str
    script: str
    budget: str
    out: Path
    parts: list[PartPlan]
    claims: list[ClaimBase] = field(default_factory=list)
    claim_order: list[str] = field(default_factory=list)
    comparison: bool = False


def write_reports(run_dirs: list[Path]) -> dict[str, str]:
    """``report.html`` of every run directory that exists; run dir -> error for those that failed."""
    from multiticket.analysis.report import write_report

    errors = {}
    for d in run_dirs:
        if (d / "config.yaml").is_file():
            try:
                write_report(d)
            except Exception as exc:  # noqa: BLE001 - a report bug must not lose the results files
                errors[str(d)] = f"{type(exc).__name__}: {exc}"
    return errors


# -- tables ---------------------------------------------------------------------------------------


def values(run: RunData, control: str, level: int, metric: str) -> dict[int, float]:
    """seed -> value of ``metric``, a recorded metric or one of :data:`DERIVED`."""
    if metric in DERIVED:
        source, f = DERIVED[metric]
        return {s: f(v) for s, v in run.values(control, level, source).items() if v > 0}
    return run.values(control, level, metric)


def metric_table(run: RunData, metric: str, controls: list[str]) -> dict[str, Any]:
    """Levels x controls of ``metric``: sparsity and [mean, std, n] per cell (JSON-friendly)."""
    rows = []
    for lv in run.levels:
        row: dict[str, Any] = {"level": lv, "sparsity": run.sparsity.get(lv)}
        for c in ("ticket", *controls):
            m, s, n = mean_std(list(values(run, c, lv, metric).values()))
            if n:
                row[c] = [m, s, n]
        rows.append(row)
    higher = run.with_metric(DERIVED.get(metric, (metric,))[0]).higher_is_better
    return {"metric": metric, "higher_is_better": higher, "controls": ["ticket", *controls], "rows": rows}


def control_rows(run: RunData) -> list[dict[str, Any]]:
    """Per pruned level: ticket − each control (means, one-sided sign-flip p uncorrected, seeds)
    and whether the run's verdict won the level."""
    verdict = run_verdict(run)
    rows = []
    for lv in (lv for lv in run.levels if lv > 0 and run.values("ticket", lv)):
        row: dict[str, Any] = {"level": lv, "sparsity": run.sparsity[lv], "won": verdict.winning(lv)}
        for c in run.seen_controls[1:]:
            d = paired(run.values("ticket", lv), run.values(c, lv), run.higher_is_better, interval=False)
            if d is not None:
                row[c] = {"diff": d.diff, "p": d.p_better, "n": d.n}
        rows.append(row)
    return rows


def _cell(cell: list[Any], n_max: int) -> str:
    m, s, n = cell
    text = fmt(m) if n == 1 else f"{fmt(m)} ± {fmt(s, 2)}"
    return text if n >= n_max else f"{text} (n={n})"


def table_md(table: dict[str, Any]) -> str:
    """A metric-vs-sparsity markdown table, mean ± std over seeds."""
    controls = [c for c in table["controls"] if any(c in r for r in table["rows"])]
    n_max = max((r[c][2] for r in table["rows"] for c in controls if c in r), default=0)
    head = ["level", "sparsity", *[("ticket (level 0: dense)" if c == "ticket" else c) for c in controls]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table["rows"]:
        cells = [str(r["level"]), pct(r["sparsity"]) if r["sparsity"] is not None else "?"]
        cells += [_cell(r[c], n_max) if c in r else "" for c in controls]
        lines.append("| " + " | ".join(cells) + " |")
    direction = "higher is better" if table["higher_is_better"] else "lower is better"
    return f"*{table['metric']}* ({direction}; mean ± std over seeds)\n\n" + "\n".join(lines)


def control_rows_md(rows: list[dict[str, Any]]) -> str:
    """ticket − control per level, with the one-sided sign-flip p over the paired seeds."""
    controls = list(dict.fromkeys(k for r in rows for k in r if k not in ("level", "sparsity", "won")))
    lines = ["| level | sparsity | won (run verdict) | " + " | ".join(f"ticket − {c}" for c in controls) + " |",
             "|" + "---|" * (3 + len(controls))]
    for r in rows:
        won = {True: "won", False: "not won", None: "–"}[r["won"]]
        cells = ["" if c not in r else f"{fmt(r[c]['diff'])} (p = {fmt(r[c]['p'])}, n = {r[c]['n']})" for c in controls]
        lines.append(f"| {r['level']} | {pct(r['sparsity'])} | {won} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- collecting -----------------------------------------------------------------------------------


def run_info(task: TaskRun, run: RunData | None, out: Path, part: PartPlan, errors: dict[str, str]) -> dict[str, Any]:
    """One run's entry of ``results.json``: status, units, tables, the report and figure."""
    info: dict[str, Any] = {"variant": task.label, "task": task.name, "run_dir": os.path.relpath(task.run_dir, out),
                            "task_file": os.path.relpath(task.task_file, out)}
    if run is None:
        return {**info, "status": NOT_RUN}
    planned = len(run.planned_units())
    report, figure = task.run_dir / "report.html", task.run_dir / "plots" / "metric_vs_sparsity.png"
    controls = [c for c in run.seen_controls if c != "ticket"]
    return {**info, "status": "complete" if not run.missing else "partial", "units_done": planned - len(run.missing),
            "units_planned": planned, "seeds": sorted({r["seed"] for r in run.records}), "metric": run.metric,
            "higher_is_better": run.higher_is_better, "deepest_sparsity": max(run.sparsity.values(), default=0.0),
            "train_seconds": round(sum(float(r.get("train_seconds", 0.0)) for r in run.records), 1),
            "report": os.path.relpath(report, out) if report.is_file() else None,
            "figure": os.path.relpath(figure, out) if figure.is_file() else None,
            "report_error": errors.get(str(task.run_dir)),
            "tables": [metric_table(run, m, controls) for m in dict.fromkeys((run.metric, *part.secondary))
                       if any(values(run, "ticket", lv, m) for lv in run.levels)],
            "levels": control_rows(run) if run.records else [], "controls": run.controls}


def part_results(part: PartPlan, plan: StudyPlan, mine: list[dict[str, Any]], errors: dict[str, str],
                 facts: dict[str, dict[str, float]]) -> tuple[dict[str, Any], list[ClaimResult], list[Path]]:
    """A part's entry of ``results.json``, its judged claims and its run directories with records."""
    wall = sum(float(inv.get("parts", {}).get(part.key, {}).get("wall_seconds", 0.0)) for inv in mine)
    last: dict[str, Any] = next((inv["parts"][part.key] for inv in reversed(mine) if part.key in inv.get("parts", {})), {})
    runs = {t.name: load_run(t.run_dir, lenient=True) for t in part.tasks if (t.run_dir / "config.yaml").is_file()}
    infos = [run_info(t, runs.get(t.name), plan.out, part, errors) for t in part.tasks]
    entry: dict[str, Any] = {"title": part.title, "wall_seconds": round(wall, 1), "estimated_minutes": part.minutes,
                             "error": last.get("error"), "runs": infos}
    entry["status"] = (NOT_RUN if not runs else
                       "complete" if all(i.get("status") == "complete" for i in infos) else "partial")
    finished = {name: run for name, run in runs.items() if run.records}
    if finished:
        claims = [judge_claim(c, part.key, finished, facts.get(c.task or part.tasks[0].name)) for c in part.claims]
    else:
        claims = [ClaimResult(c.id, part.key, "", NOT_RUN, "the part has not run at this budget", text=c.text)
                  for c in part.claims]
    return entry, claims, [run.root for run in finished.values()]


def collect(plan: StudyPlan, ledger: list[dict[str, Any]], machine: dict[str, Any], report_errors: dict[str, str],
            facts: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """Everything ``results.md`` / ``results.json`` say, read from the run directories on disk;
    ``facts``: per task, baselines measured beside its run (the claims read them)."""
    from multiticket.analysis.compare import write_comparison

    mine = [inv for inv in ledger if inv.get("budget") == plan.budget]
    parts: dict[str, Any] = {}
    claims: list[ClaimResult] = [judge_claim(c, "", {}) for c in plan.claims]
    with_records: list[Path] = []
    for part in plan.parts:
        parts[part.key], found, dirs = part_results(part, plan, mine, report_errors, facts or {})
        claims += found
        with_records += dirs
    comparison = None
    if plan.comparison and with_records:
        try:
            comparison = os.path.relpath(write_comparison(with_records, plan.out / "comparison"), plan.out)
        except Exception as exc:  # noqa: BLE001 - keep the results files even if the comparison breaks
            comparison = f"failed: {type(exc).__name__}: {exc}"
    order, keys = plan.claim_order, [p.key for p in plan.parts]
    claims.sort(key=lambda c: (order.index(c.id) if c.id in order else len(order),
                               keys.index(c.part) if c.part in keys else -1))
    return {"study": plan.title, "paper": plan.paper, "budget": plan.budget, "out": str(plan.out), "machine": machine,
            "invocations": mine, "total_wall_seconds": round(sum(float(i.get("wall_seconds", 0)) for i in mine), 1),
            "parts": parts, "claims": [c.as_dict() for c in claims], "comparison": comparison,
            "written": _dt.datetime.now().isoformat(timespec="seconds")}


# -- results.md -----------------------------------------------------------------------------------


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _header_md(res: dict[str, Any], script: str) -> list[str]:
    m = res["machine"]
    lines = [f"# {res['study']} — results ({res['budget']} budget)", "",
             f"Paper: {res['paper']}. Written by `scripts/{script}` on {res['written']} from the run directories "
             "on disk; every number below is computed from finished units (a rerun resumes and rewrites this file).",
             "", "## Commands, machine, wall time", ""]
    for inv in res["invocations"]:
        lines.append(f"- `{inv['command']}` — started {inv['started']}, wall {minutes(inv.get('wall_seconds', 0))}"
                     + (" (interrupted)" if inv.get("interrupted") else ""))
    return lines + ["", f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['platform']}, torch {m['torch']}, device "
                    f"{m['device']}{' (' + m['gpu'] + ')' if m.get('gpu') else ''}; load average at the last start "
                    f"{', '.join(map(str, m['load_average_at_start']))} (other jobs on the machine slow every part).", ""]


def _parts_md(res: dict[str, Any]) -> list[str]:
    lines = ["| part | status | units done / planned | deepest sparsity | wall time (all invocations) | "
             "estimate | unit training time, summed (workers overlap) |", "|---|---|---|---|---|---|---|"]
    for key, p in res["parts"].items():
        runs = p["runs"]
        done, planned = (sum(r.get(k, 0) for r in runs) for k in ("units_done", "units_planned"))
        deep = max((r.get("deepest_sparsity", 0.0) for r in runs), default=0.0)
        est = f"~{p['estimated_minutes']:.0f} min" if p["estimated_minutes"] else "–"
        status = p["status"] + (f" (last error: {p['error']})" if p.get("error") else "")
        lines.append(f"| {key} | {status} | {done} / {planned} | {pct(deep) if planned else '–'} | "
                     f"{minutes(p['wall_seconds'])} | {est} | {minutes(sum(r.get('train_seconds', 0.0) for r in runs))} |")
    return lines + ["", f"Total wall time: {minutes(res['total_wall_seconds'])}.", ""]


def _claims_md(res: dict[str, Any]) -> list[str]:
    lines = ["## Claims", "", "| claim | part | verdict | finding |", "|---|---|---|---|"]
    lines += [f"| {c['id']} | {c['part'] or '–'} | **{c['verdict']}** | {c['detail']} |" for c in res["claims"]]
    tables = {(key, r["task"]): r for key, p in res["parts"].items() for r in p["runs"] if r.get("tables")}
    seen: set[str] = set()
    for c in res["claims"]:
        if c["id"] not in seen:
            seen.add(c["id"])
            lines += ["", f"### {c['id']}", "", f"Paper: {c['claim']}"]
        test = f" (test: {c['test']})" if c["test"] else ""
        lines += ["", f"- **{c['part'] or 'study'}: {c['verdict']}** — {c['detail']}{test}"]
        for task, controls in c.get("tables", []):
            run = tables.get((c["part"], task))
            if run is not None:
                t = dict(next((t for t in run["tables"] if t["metric"] == c.get("metric")), run["tables"][0]))
                lines += ["", f"{c['part']} — {run['variant']}:", "", table_md({**t, "controls": controls})]
    return lines + [""]


def _runs_md(res: dict[str, Any]) -> list[str]:
    lines = ["## Full tables and figures per part", ""]
    for key, p in res["parts"].items():
        lines += [f"### {key}: {p['title']}", ""]
        for r in p["runs"]:
            lines += [f"**{r['variant']}** — task `{r['task']}` (`{r['task_file']}`), run `{r['run_dir']}`: "
                      f"{r['status']}" + (f", report `{r['report']}`" if r.get("report") else "")
                      + (f" (report failed: {r['report_error']})" if r.get("report_error") else ""), ""]
            if r.get("controls"):
                lines += ["Controls: " + "; ".join(f"`{c}`: {_control_doc(c)}" for c in r["controls"]) + ".", ""]
            if r.get("figure"):
                lines += [f"![{key} {r['variant']}: metric vs sparsity]({r['figure']})", ""]
            lines += [x for t in r.get("tables", []) for x in (table_md(t), "")]
            if r.get("levels"):
                lines += ["Ticket − control per level (one-sided sign-flip p over the paired seeds, uncorrected; "
                          "'won' is the run's verdict, corrected):", "", control_rows_md(r["levels"]), ""]
    return lines


def _control_doc(control: str) -> str:
    spec = CONTROLS.get(control)
    return spec.doc if spec is not None else "a control not registered here"


def results_md(res: dict[str, Any], script: str, extra: list[str] | None = None) -> str:
    """The human-readable results page (links relative to the output directory); ``extra``:
    lines the study adds after the header (facts about its data)."""
    lines = _header_md(res, script) + (extra or []) + _parts_md(res) + _claims_md(res) + _runs_md(res)
    if res.get("comparison"):
        lines += ["## Cross-domain comparison", "", f"`{res['comparison']}` (every run normalised to its dense "
                  "network).", ""]
        for png in ("normalised.png", "margin.png"):
            if (Path(res["out"]) / "comparison" / "plots" / png).is_file():
                lines += [f"![{png}](comparison/plots/{png})", ""]
    return "\n".join(lines)

