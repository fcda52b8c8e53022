"""Building the task of ``multiticket transfer``: a target task file turned into a transfer task
whose ``transfer:`` section names the source run (the runner is :mod:`multiticket.core.transfer`).

It sits above the core (it validates with :mod:`multiticket.config`), so the core never imports
the config layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from multiticket.config import ResolvedTask, TaskConfig, load_task, validate_task
from multiticket.core.controls import CONTROLS
from multiticket.core.transfer import read_source, transfer_controls
from multiticket.errors import UserError
from multiticket.rundir import read_run_config


def _controls(source_controls: Sequence[str]) -> tuple[list[str], list[str]]:
    """The default controls of a transfer (``transfer_mask`` + the source's transferable random
    controls) and notes about the source controls replaced or dropped."""
    wanted: list[str] = []
    notes: list[str] = []
    for c in source_controls:
        spec = CONTROLS.get(c)
        if spec is not None and spec.mask == "ticket" and spec.start == "fresh":
            notes.append(f"{c} (the ticket's mask, fresh init) is mask transfer here: transfer_mask")
        elif spec is not None and spec.transferable and c != "transfer_mask":
            wanted.append(c)
        else:
            notes.append(f"{c} is not run in a transfer (it needs the target's own dense run or IMP chain)")
    return ["transfer_mask", *wanted], notes


def transfer_task(
    source_dir: Path | str,
    target_path: Path | str,
    overrides: Sequence[str] = (),
    seeds: Sequence[int] | None = None,
    levels: int | None = None,
    controls: Sequence[str] | None = None,
) -> tuple[Any, list[str]]:
    """The target task (``TASK.yaml`` with ``--set`` overrides) turned into a transfer task; returns
    it and notes about source controls that were replaced or dropped."""
    read_run_config(source_dir)  # bounded, validated: a malformed config.yaml is one line before anything else
    source = read_source(source_dir, TaskConfig.model_validate)
    target = load_task(target_path, list(overrides))
    seeds = list(seeds) if seeds is not None else sorted(source.levels)
    found = [s for s in seeds if s in source.levels]
    if not found:
        raise UserError(f"--seeds: source run {source.name} has finished tickets for seeds {sorted(source.levels)}")
    n_levels = min(source.levels[s] for s in found) if levels is None else levels
    if n_levels < 1:
        raise UserError("--levels: must be >= 1")
    notes: list[str] = []
    if controls is None:
        controls, notes = _controls(source.config.get("controls", []))
    allowed = transfer_controls()
    bad = [c for c in controls if c not in allowed]
    if bad:
        raise UserError(f"--controls: '{bad[0]}' cannot run in a transfer (choose from {', '.join(allowed)})")
    if source.config.get("domain") != target.config.domain:
        raise UserError(f"{target_path}: domain '{target.config.domain}' differs from the source's "
                        f"'{source.config.get('domain')}'")
    data = target.resolved
    data["name"] = f"{target.config.name}-from-{source.name}"
    data["seeds"] = seeds
    data["controls"] = list(dict.fromkeys(controls))
    data["prune"] = {**data["prune"], "levels": n_levels}
    data["transfer"] = {"source": source.name, "source_dir": str(source.root.resolve())}
    config = validate_task(data, target_path)
    return ResolvedTask(config=config, section=target.section, source=Path(target_path)), notes
