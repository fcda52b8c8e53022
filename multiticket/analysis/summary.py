"""``summary.csv``: one row per (seed, control, level, metric) of every finished unit."""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from multiticket.analysis.stats import fmt
from multiticket.core.store import write_text_if_changed
from multiticket.rundir import finished_records

COLUMNS = ("task", "domain", "seed", "control", "level", "sparsity", "metric", "value")


def summary_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        for metric, value in sorted(r["metrics"].items()):
            rows.append({
                "task": r["task"], "domain": r["domain"], "seed": r["seed"], "control": r["control"],
                "level": r["level"], "sparsity": round(r["sparsity"], 6), "metric": metric, "value": value,
            })
    return rows


def summary_text(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_summary(run_dir: Path, records: list[dict[str, Any]] | None = None) -> tuple[Path, list[dict[str, Any]]]:
    """(Re)write ``summary.csv`` from the finished units' validated records (read here unless
    given), only if its content changes."""
    if records is None:
        records = finished_records(Path(run_dir))
    path = Path(run_dir) / "summary.csv"
    write_text_if_changed(path, summary_text(summary_rows(records)))
    return path, records


def level_table(records: list[dict[str, Any]], metric: str | None = None) -> tuple[str, list[str], list[list[str]]]:
    """(metric, header, rows): ``metric`` (default: the primary one), mean ± std over seeds, per
    level x control, in plain notation (``170.3 ± 12``)."""
    if not records:
        return "", [], []
    metric = metric or records[0]["metric"]
    controls = list(dict.fromkeys(r["control"] for r in records))
    by: dict[tuple[int, str], list[float]] = defaultdict(list)
    sparsity: dict[int, float] = {}
    for r in records:
        value = r["metrics"].get(metric)
        if type(value) in (int, float):
            by[(r["level"], r["control"])].append(value)
        if r["control"] == "ticket":
            sparsity[r["level"]] = r["sparsity"]
    levels = sorted({r["level"] for r in records})
    rows = []
    for level in levels:
        row = [str(level), f"{100 * sparsity.get(level, float('nan')):.1f}%"]
        for c in controls:
            vals = by.get((level, c), [])
            if not vals:
                row.append("")
            elif len(vals) == 1:
                row.append(fmt(vals[0]))
            else:
                row.append(f"{fmt(statistics.mean(vals))} ± {fmt(statistics.stdev(vals), 2)}")
        rows.append(row)
    return metric, ["level", "sparsity", *controls], rows
