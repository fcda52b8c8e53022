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

Runs that differ only in what the dense unit never reads share it (:func:`dense_key`): the
driver trains one run's ``seed_<s>/ticket/level_0`` and its rewind points once and copies them,
checksums verified and never as links, into the others, each copy with a ``shared_from.json``
naming the run it came from (:func:`share_dense`).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from multiticket.config import DEFAULTS_KEY, ResolvedTask, load_task, read_yaml_file, validate_section
from multiticket.core.controls import CONTROLS
from multiticket.core.store import RunStore, Unit, atomic_write, atomic_write_text, refuse_links_below
from multiticket.core.textfile import read_yaml
from multiticket.core.units import unit_finished
from multiticket.errors import RunFailure, UserError, UserErrors
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


# -- sharing the dense unit between the runs of a sweep ---------------------------------------------

#: written beside the files of a unit or rewind point copied from another run (and listed in its DONE)
SHARED_FROM = "shared_from.json"
#: keys the dense unit and its rewind points never read: how later levels prune (the whole pruning
#: plan: criterion, rate, rate_of, strategy, allocator, per-pattern rates, levels) and how they
#: rewind and retrain (``rewind.step`` is read: it enters :func:`dense_key` as the step k it resolves to)
NOT_READ_BY_LEVEL_0 = {
    "prune": ("strategy", "rate", "rate_of", "rates", "criterion", "allocator", "levels"),
    "rewind": ("step", "optimizer", "mode", "finetune_lr"),
}
#: top-level keys that never change the dense unit: not hashed and about other units (``seeds``
#: are shared seed by seed; ``controls`` only through prune-only controls, see :func:`dense_key`),
#: or about reading and logging the results (``report``, ``tracking``)
IGNORED_BY_LEVEL_0 = ("description", "seeds", "controls", "report", "checkpoint", "tracking", "versions", DEFAULTS_KEY)


def dense_key(task: ResolvedTask, eval_method: str | None = None) -> str | None:
    """What a run's dense unit (``ticket`` level 0) and its rewind points depend on, as a digest:
    two runs with the same key would write byte-identical dense units (their timing aside). That
    is every setting, the domain section whole (its unhashed keys too: ``eval_every`` shapes the
    curve), except :data:`NOT_READ_BY_LEVEL_0` and :data:`IGNORED_BY_LEVEL_0`; plus the rewind
    step k as a number (``2%`` of 1500 steps and ``30`` are one point; another k is another
    point, captured during the dense run, so it is not shared), whether the dense unit keeps its
    adapter state (prune-only controls), and the run's evaluation method. Not ``prune.include``,
    ``exclude`` or ``biases``: the dense training is the same, but its mask file lists the scope.
    None: never shared (a transfer run takes its start from another run)."""
    resolved = task.resolved
    if resolved.get("transfer") is not None:
        return None
    data = {key: value for key, value in resolved.items() if key not in IGNORED_BY_LEVEL_0}
    for section, keys in NOT_READ_BY_LEVEL_0.items():
        data[section] = {key: value for key, value in (data.get(section) or {}).items() if key not in keys}
    data["rewind"]["k"] = task.config.rewind_step()
    data["keeps_state"] = any(CONTROLS[c].start == "none" for c in task.config.controls)
    data["eval_method"] = eval_method
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def share_dense(donor: RunStore, member: RunStore, seed: int, k: int) -> float | None:
    """Copy ``donor``'s finished dense unit of ``seed`` and its rewind points (steps 0 and k) into
    ``member`` under the member unit's lock, rewind points first and the unit's ``DONE`` last, so
    a kill leaves an unfinished unit that is trained (or copied) again. Returns the seconds the
    donor trained it (what the copy saved), or None when the donor's is not finished or the
    member's already is."""
    unit = Unit(seed, "ticket", 0)
    if not unit_finished(donor, unit, k):
        return None
    with member.unit_lock(unit):
        if unit_finished(member, unit, k):
            return None
        for step in sorted({0, k}):
            copy_finished(donor, donor.rewind_dir(seed, step), member, member.rewind_dir(seed, step))
        copy_finished(donor, donor.unit_dir(unit), member, member.unit_dir(unit))
    record = json.loads((donor.unit_dir(unit) / "metrics.json").read_text())
    seconds = record.get("train_seconds")
    return float(seconds) if isinstance(seconds, int | float) else 0.0


def copy_finished(donor: RunStore, src: Path, member: RunStore, dst: Path) -> None:
    """Copy the files ``src``'s ``DONE`` lists into ``dst`` (cleared first), none through a link,
    each checked against its recorded SHA-256 as it is copied; then :data:`SHARED_FROM` (the donor
    run, its directory, the files and their checksums) and a ``DONE`` that covers it too."""
    files = donor.done_files(src)
    if files is None:
        raise RunFailure(f"{src}: not finished, cannot be shared")
    member.begin(dst)
    for name, digest in sorted(files.items()):
        source = src / name
        refuse_links_below(donor.root, source)
        atomic_write(dst / name, functools.partial(_copy_checked, source, digest=digest))
    provenance = {
        "donor_run": donor.root.name,
        "donor_dir": str(donor.root.resolve()),
        "path": dst.relative_to(member.root).as_posix(),
        "files": dict(sorted(files.items())),
    }
    atomic_write_text(dst / SHARED_FROM, json.dumps(provenance, indent=1) + "\n")
    member.finish(dst, sorted([*files, SHARED_FROM]))


def _copy_checked(source: Path, target: Path, *, digest: str) -> None:
    """Stream ``source`` into ``target``; RunFailure if the bytes are not the ones ``DONE`` vouched for."""
    h = hashlib.sha256()
    with open(source, "rb") as fin, open(target, "wb") as fout:
        for chunk in iter(lambda: fin.read(1 << 20), b""):
            h.update(chunk)
            fout.write(chunk)
    if h.hexdigest() != digest:
        raise RunFailure(f"{source}: changed while being shared (checksum mismatch)")
