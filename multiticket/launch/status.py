"""``multiticket status``: which units of a run are done, running (lock held), failed (a ``FAILED``
record in the unit's directory, see :meth:`IMPRunner.run`), corrupt (a ``DONE`` whose checksums do
not hold, or a ``metrics.json`` that does not pass its schema: the next run recomputes the former)
or missing. Reads the run's ``config.yaml`` through :func:`multiticket.rundir.read_run_config`, so
it needs neither SB3 nor transformers."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape

from multiticket.core.imp import FAILED
from multiticket.core.store import RunStore, Unit
from multiticket.core.units import unit_finished, unit_plan
from multiticket.errors import UserError
from multiticket.rundir import check_finished_unit, corrupt_reason, read_run_config
from multiticket.terminal import printable

STATES = ("done", "running", "failed", "corrupt", "missing")


@dataclass
class RunStatus:
    """State of every planned unit of a run directory, in plan order, and why each corrupt one is."""

    states: dict[Unit, str]
    reasons: dict[Unit, str] = field(default_factory=dict)


def _corrupt(store: RunStore, unit: Unit, k: int) -> tuple[bool, str | None]:
    """(finished, why the unit's ``DONE`` cannot be used or None): checksums, or a malformed
    metrics.json or mask header (which ``report`` refuses with that line). Hashes each artifact
    once for a finished unit."""
    if not unit_finished(store, unit, k):
        return False, corrupt_reason(store, unit)
    reason = corrupt_reason(store, unit, verified=True)
    if reason is None:
        try:
            check_finished_unit(store.unit_dir(unit), unit)  # record and mask header
        except UserError as exc:
            reason = str(exc)
    return True, reason


def unit_states(run_dir: Path) -> RunStatus:
    """Validate the run's config and classify every planned unit."""
    config = read_run_config(run_dir).config
    store = RunStore(Path(run_dir))
    k = config.rewind_step()
    out = RunStatus({})
    for planned in unit_plan(config):
        unit = planned.unit
        finished, reason = _corrupt(store, unit, k)
        if reason is not None:
            out.states[unit], out.reasons[unit] = "corrupt", reason
        elif finished:
            out.states[unit] = "done"
        elif store.is_running(unit):
            out.states[unit] = "running"
        elif (store.unit_dir(unit) / FAILED).is_file():
            out.states[unit] = "failed"
        else:
            out.states[unit] = "missing"
    return out


def run_status(run_dir: Path) -> dict[Unit, str]:
    """State of every planned unit of a run directory, in plan order."""
    return unit_states(run_dir).states


def counts(states: dict[Unit, str]) -> dict[str, Any]:
    """Totals and per (control, level) counts, e.g. for ``--json``."""
    total = Counter(states.values())
    cells: dict[str, dict[int, dict[str, int]]] = {}
    for unit, state in states.items():
        cell = cells.setdefault(unit.control, {}).setdefault(unit.level, dict.fromkeys(STATES, 0))
        cell[state] += 1
    return {"total": {s: total.get(s, 0) for s in STATES}, "by_control_level": cells}


def status_table(run_dir: Path, states: dict[Unit, str]) -> Any:
    """A rich table: one row per control, one column per level, cells ``done/total`` (+ running,
    ✗ failed, ! corrupt). Every name is escaped, so nothing from the run directory is markup."""
    from rich.table import Table

    summary = counts(states)
    levels = sorted({u.level for u in states})
    t = summary["total"]
    caption = (f"{t['done']} done · {t['running']} running · {t['failed']} failed · {t['corrupt']} corrupt · "
               f"{t['missing']} missing")
    table = Table(title=escape(printable(Path(run_dir).name)), caption=caption, min_width=max(48, len(caption)))
    table.add_column("control")
    for level in levels:
        table.add_column(f"L{level}", justify="center")
    for control, by_level in summary["by_control_level"].items():
        row = [escape(control)]
        for level in levels:
            c = by_level.get(level)
            if c is None:
                row.append("")
                continue
            n = sum(c.values())
            style = "green" if c["done"] == n else ("yellow" if c["running"] else "red")
            text = f"{c['done']}/{n}" + (f" ▶{c['running']}" if c["running"] else "")
            text += f" ✗{c['failed']}" if c["failed"] else ""
            text += f" !{c['corrupt']}" if c["corrupt"] else ""
            row.append(f"[{style}]{text}[/{style}]")
        table.add_row(*row)
    return table


def corrupt_lines(status: RunStatus, limit: int = 10) -> list[str]:
    """One line per corrupt unit (the first ``limit``), for the terminal."""
    lines = [f"corrupt: {u.relpath()}: {printable(why)}" for u, why in list(status.reasons.items())[:limit]]
    if len(status.reasons) > limit:
        lines.append(f"... and {len(status.reasons) - limit} more corrupt unit(s)")
    return lines
