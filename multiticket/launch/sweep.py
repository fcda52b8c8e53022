"""Sweep files: tasks x variants x a grid of ``--set`` overrides, each a hashed run directory.

.. code-block:: yaml

    out: runs/sweep            # optional; --out on the command line wins
    tasks: [toy-mlp, tasks/cartpole-ppo.yaml]   # shipped names or paths (relative to this file)
    seeds: [0, 1, 2]           # optional, replaces each task's seeds
    levels: 5                  # optional, replaces prune.levels
    set: [train.steps=3000]    # optional, applied to every run
    variants:                  # optional: a list of override lists (one run each)
      - [rewind.step=0]
      - [rewind.step=2%]
    grid:                      # optional: key -> values; the cartesian product
      prune.rate: [0.2, 0.5]
      toy.lr: [0.01, 0.05]

Runs = tasks x variants x grid points. Two entries that resolve to the same config are one run.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from multiticket.config import ResolvedTask, load_task, read_yaml_file, validate_section
from multiticket.core.textfile import read_yaml
from multiticket.errors import UserError, UserErrors
from multiticket.paths import shipped_tasks
from multiticket.schema import Strict


class SweepFile(Strict):
    tasks: list[str] = Field(min_length=1)
    out: str | None = None
    seeds: list[int] | None = None
    levels: int | None = Field(None, ge=0, le=100)
    set: list[str] = Field(default_factory=list)
    variants: list[list[str]] = Field(default_factory=list)
    grid: dict[str, list[Any]] = Field(default_factory=dict)


@dataclass
class Sweep:
    source: Path
    out: Path | None
    tasks: list[ResolvedTask]


def is_sweep_file(path: Path) -> bool:
    try:
        data = read_yaml(path)
    except UserError:
        return False
    return isinstance(data, dict) and "tasks" in data and "domain" not in data


def _task_path(name: str, base: Path) -> Path:
    for candidate in (base / name, Path(name)):
        if candidate.is_file():
            return candidate
    shipped = shipped_tasks()
    if name in shipped:
        return shipped[name]
    raise UserError(f"tasks: '{name}' is neither a task file nor a shipped task")


def grid_points(grid: dict[str, list[Any]]) -> list[list[str]]:
    """Override lists of the cartesian product of ``grid`` (values written as YAML/JSON scalars)."""
    for key, values in grid.items():
        if not values:
            raise UserError(f"grid.{key}: needs at least one value")
    keys = list(grid)
    return [
        [f"{k}={json.dumps(v)}" for k, v in zip(keys, combo)]
        for combo in itertools.product(*(grid[k] for k in keys))
    ]


def load_sweep(path: Path | str, user_code: bool = True) -> Sweep:
    """Read a sweep file and validate its tasks (``user_code=False``: no module they name is imported)."""
    source = Path(path)
    data = read_yaml_file(source, "sweep")
    sweep = validate_section(SweepFile, data, source, "")
    assert isinstance(sweep, SweepFile)
    try:
        points = grid_points(sweep.grid)
    except UserError as exc:
        raise UserError(f"{source}: {exc}") from None
    by_dir: dict[str, ResolvedTask] = {}
    errors: list[str] = []  # of every task: all are reported together, one line each
    for name in sweep.tasks:
        try:
            task_path = _task_path(name, source.parent)
        except UserError as exc:
            raise UserError(f"{source}: {exc}") from None
        for variant in sweep.variants or [[]]:
            for point in points:
                try:
                    task = load_task(
                        task_path, [*sweep.set, *variant, *point], seeds=sweep.seeds, levels=sweep.levels,
                        user_code=user_code,
                    )
                except UserError as exc:
                    # an override of the sweep's (set, variants, grid) is named as "set key=value"
                    errors += [f"{source}: {line.removeprefix('--set ')}" if line.startswith("--set ") else line
                               for line in getattr(exc, "lines", [str(exc)])]
                    continue
                seen = by_dir.get(task.run_name)
                if seen is not None and seen.resolved != task.resolved:
                    raise UserError(
                        f"{source}: two entries resolve to run '{task.run_name}' with different "
                        "seeds, levels or controls; make them one entry"
                    )
                by_dir[task.run_name] = task
    errors = list(dict.fromkeys(errors))
    if errors:
        raise UserErrors(errors) if len(errors) > 1 else UserError(errors[0])
    out = Path(sweep.out) if sweep.out else None
    if out is not None and not out.is_absolute():
        out = source.parent / out
    return Sweep(source=source, out=out, tasks=list(by_dir.values()))
