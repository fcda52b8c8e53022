"""Learning curves of a run, read for the report: each finished unit's ``curve.csv``, validated,
put on a common step grid and averaged over seeds (mean ± sample std), per level and control.

A curve file is untrusted input like every file of a run directory: it is read with a size bound
and parsed line by line as ``step,series,value`` (:mod:`multiticket.core.curves` writes it); a
malformed one is one line naming the file and the line (:class:`UserError`). Units of runs made
before curves were recorded have no file: they are counted, and the page says so.

On the grid: the steps from 0 to the longest unit's last step are cut into :data:`GRID` equal
bins; a unit's value in a bin is the mean of its rows there (several episodes may end in one
bin, evaluations leave most bins empty), empty bins between two filled ones are interpolated
linearly, and bins before its first or after its last row stay empty. Seeds are then averaged
bin by bin over the units that have a value there.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multiticket.analysis import plots
from multiticket.analysis.htmlpage import png_src
from multiticket.analysis.rundata import RunData
from multiticket.core.curves import CURVE_FILE, CURVE_HEADER
from multiticket.core.store import Unit
from multiticket.errors import UserError
from multiticket.rundir import METRIC_BOUND, read_bounded

#: largest curve.csv read (a million-step RL unit with short episodes writes a few MB)
MAX_CURVE_BYTES = 64 << 20
#: bins of the common step grid
GRID = 60
SERIES = re.compile(r"(train|eval)/[A-Za-z0-9_.\-]{1,64}")
STEP = re.compile(r"\d{1,15}")

#: series -> (steps, values), each an array in file order
Curve = dict[str, tuple[np.ndarray, np.ndarray]]


def read_curve(path: Path) -> Curve:
    """Parse and validate one ``curve.csv``; UserError naming the file and line otherwise."""
    if path.is_symlink():
        raise UserError(f"{path}: a symbolic link, not a file multiticket wrote")
    lines = read_bounded(path, MAX_CURVE_BYTES).splitlines()
    if not lines or lines[0] != CURVE_HEADER:
        raise UserError(f"{path}: not a learning curve (the first line must be '{CURVE_HEADER}')")
    rows: dict[str, tuple[list[int], list[float]]] = {}
    for number, line in enumerate(lines[1:], start=2):
        parts = line.split(",")
        if len(parts) != 3 or not STEP.fullmatch(parts[0]) or not SERIES.fullmatch(parts[1]):
            raise UserError(f"{path}: line {number} is not 'step,series,value' with a step and a train/ or eval/ name")
        try:
            value = float(parts[2])
        except ValueError:
            raise UserError(f"{path}: line {number}: value is not a number") from None
        if not math.isfinite(value) or abs(value) > METRIC_BOUND:
            raise UserError(f"{path}: line {number}: value {parts[2][:32]!r} is not a finite measurement")
        steps, values = rows.setdefault(parts[1], ([], []))
        steps.append(int(parts[0]))
        values.append(value)
    return {name: (np.array(s, dtype=np.int64), np.array(v, dtype=np.float64)) for name, (s, v) in rows.items()}


def on_grid(steps: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """A unit's series on the grid of bins ``edges`` (see the module docstring); NaN where empty."""
    n = len(edges) - 1
    out = np.full(n, np.nan)
    if len(steps) == 0:
        return out
    idx = np.clip(np.searchsorted(edges, steps, side="right") - 1, 0, n - 1)
    counts = np.bincount(idx, minlength=n)
    sums = np.bincount(idx, weights=values, minlength=n)
    filled = counts > 0
    out[filled] = sums[filled] / counts[filled]
    centres = (edges[:-1] + edges[1:]) / 2
    span = (centres >= centres[filled].min()) & (centres <= centres[filled].max())
    out[span] = np.interp(centres[span], centres[filled], out[filled])
    return out


@dataclass
class Band:
    """One control's series at one level: grid centres, mean and sample std over seeds, seeds per bin."""

    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n: np.ndarray


def band(per_seed: list[np.ndarray], x: np.ndarray) -> Band:
    """Mean and sample std (0 for one seed) over the seeds that have a value in each bin."""
    stack = np.vstack(per_seed)
    n = np.sum(~np.isnan(stack), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.nansum(stack, axis=0) / np.maximum(n, 1), np.nan)
        dev = np.nansum((stack - mean) ** 2, axis=0)
        std = np.where(n > 1, np.sqrt(dev / np.maximum(n - 1, 1)), 0.0)
    return Band(x, mean, std, n)


@dataclass
class RunCurves:
    """Every finished unit's curve of one run, and the units that have none (older runs)."""

    curves: dict[Unit, Curve] = field(default_factory=dict)
    missing: list[Unit] = field(default_factory=list)

    def series(self) -> list[str]:
        return sorted({name for c in self.curves.values() for name in c})

    def level_bands(self, level: int, name: str) -> dict[str, Band]:
        """control -> band of series ``name`` at ``level`` (controls with no unit that has it left out)."""
        units = [u for u, c in self.curves.items() if u.level == level and name in c]
        if not units:
            return {}
        last = max(int(self.curves[u][name][0].max(initial=0)) for u in units)
        edges = np.linspace(0.0, max(last, 1), GRID + 1)
        x = (edges[:-1] + edges[1:]) / 2
        out: dict[str, Band] = {}
        for control in dict.fromkeys(u.control for u in sorted(units, key=lambda u: (u.control != "ticket", u.control))):
            rows = [on_grid(*self.curves[u][name], edges) for u in units if u.control == control]
            out[control] = band(rows, x)
        return out


def load_curves(run: RunData) -> RunCurves:
    """Read the ``curve.csv`` of every finished unit of ``run`` (checked by its ``DONE``)."""
    found = RunCurves()
    for record in run.records:
        unit = Unit(int(record["seed"]), str(record["control"]), int(record["level"]))
        path = run.root / unit.relpath() / CURVE_FILE
        if path.is_file() or path.is_symlink():
            found.curves[unit] = read_curve(path)
        elif record.get("retrained", True) is not False:  # prune-only controls train nothing: no curve
            found.missing.append(unit)
    return found


def shown_series(run: RunData, curves: RunCurves) -> list[str]:
    """What the report plots per level: the training return (RL) or loss, and the primary metric
    evaluated during training where some unit has it at two or more steps."""
    names = curves.series()
    train = next((n for n in ("train/episode_return", "train/loss") if n in names), None)
    primary = f"eval/{run.metric}"
    evaluated = any(len(set(c[primary][0].tolist())) > 1 for c in curves.curves.values() if primary in c)
    return [n for n in (train, primary if evaluated else None) if n is not None]


# -- the report's section --------------------------------------------------------------------------


def curves_section(run: RunData, plot_dir: Path) -> dict[str, Any]:
    """The data of ``templates/curves.html.j2``: a figure per level against the domain's step unit,
    the ticket reward figure (where units recorded ``ticket_reward``), how many finished units have
    no curve, and the task-file key that turns evaluations during training on (the domain's)."""
    curves = load_curves(run)
    names = shown_series(run, curves)
    x_label = run.facts.step_unit
    figures = []
    for level in run.levels:
        panels = [(name, bands) for name in names if (bands := curves.level_bands(level, name))]
        if panels:
            fig = plots.curves_figure(run, level, panels, x_label)
            figures.append({"level": level, "src": png_src(plots.save_png(fig, plot_dir / f"curves_level_{level}.png"))})
    reward = None
    if any("ticket_reward" in r["metrics"] for r in run.records):  # recorded by a domain with episodes
        reward = png_src(plots.save_png(plots.reward_figure(run), plot_dir / "ticket_reward.png"))
    return {"figures": figures, "series": names, "missing": len(curves.missing), "units": len(run.records),
            "reward": reward, "eval_every_key": run.facts.eval_every_key, "eval_series": f"eval/{run.metric}",
            "grid": GRID}
