"""``multiticket status``: which units of a run are done, running (lock held), failed (a ``FAILED``
record in the unit's directory, see :meth:`IMPRunner.run`) or missing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from multiticket.core.imp import FAILED
from multiticket.core.store import RunStore, Unit
from multiticket.core.units import unit_finished, unit_plan
from multiticket.errors import UserError
from multiticket.launch.jobs import task_from_resolved

STATES = ("done", "running", "failed", "missing")


def read_resolved(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise UserError(f"{run_dir}: not a run directory (no config.yaml)")
    data = yaml.safe_load(path.read_text()) or {}
    data.pop("versions", None)
    return data


def run_status(run_dir: Path) -> dict[Unit, str]:
    """State of every planned unit of a run directory, in plan order."""
    task = task_from_resolved(read_resolved(run_dir), Path(run_dir) / "config.yaml", user_code=False)
    store = RunStore(Path(run_dir))
    k = task.config.rewind_step()
    out = {}
    for planned in unit_plan(task.config):
        unit = planned.unit
        if unit_finished(store, unit, k):
            out[unit] = "done"
        elif store.is_running(unit):
            out[unit] = "running"
        elif (store.unit_dir(unit) / FAILED).is_file():
            out[unit] = "failed"
        else:
            out[unit] = "missing"
    return out


def counts(states: dict[Unit, str]) -> dict[str, Any]:
    """Totals and per (control, level) counts, e.g. for ``--json``."""
    total = Counter(states.values())
    cells: dict[str, dict[int, dict[str, int]]] = {}
    for unit, state in states.items():
        cell = cells.setdefault(unit.control, {}).setdefault(unit.level, dict.fromkeys(STATES, 0))
        cell[state] += 1
    return {"total": {s: total.get(s, 0) for s in STATES}, "by_control_level": cells}


def status_table(run_dir: Path, states: dict[Unit, str]) -> Any:
    """A rich table: one row per control, one column per level, cells ``done/total`` (+ running)."""
    from rich.table import Table

    summary = counts(states)
    levels = sorted({u.level for u in states})
    t = summary["total"]
    table = Table(
        title=Path(run_dir).name,
        caption=f"{t['done']} done · {t['running']} running · {t['failed']} failed · {t['missing']} missing",
        min_width=48,
    )
    table.add_column("control")
    for level in levels:
        table.add_column(f"L{level}", justify="center")
    for control, by_level in summary["by_control_level"].items():
        row = [control]
        for level in levels:
            c = by_level.get(level)
            if c is None:
                row.append("")
                continue
            n = sum(c.values())
            style = "green" if c["done"] == n else ("yellow" if c["running"] else "red")
            text = f"{c['done']}/{n}" + (f" ▶{c['running']}" if c["running"] else "")
            text += f" ✗{c['failed']}" if c["failed"] else ""
            row.append(f"[{style}]{text}[/{style}]")
        table.add_row(*row)
    return table
