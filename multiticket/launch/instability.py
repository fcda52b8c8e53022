"""The driver of ``multiticket instability RUN_DIR``: rebuild the run's task from its
``config.yaml``, check the requested units are finished, hold the run's lock, and run the
instability analysis unit by unit in this process (see :mod:`multiticket.core.instability`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from multiticket.core.controls import CONTROLS
from multiticket.core.hooks import NullReporter
from multiticket.core.imp import IMPRunner
from multiticket.core.instability import InstabilityRunner
from multiticket.core.store import RunStore, Unit
from multiticket.errors import UserError
from multiticket.launch.jobs import refuse_user_code, task_from_resolved
from multiticket.rundir import read_run_config


def plan_instability(
    cfg: Any, seeds: Sequence[int] | None, levels: Sequence[int] | None, controls: Sequence[str] | None
) -> list[Unit]:
    """The units to analyse: level 0 means the dense network (control ``ticket``); a control is
    analysed at every requested level above 0. Defaults: all seeds, all levels, ``ticket`` only."""
    seeds = list(cfg.seeds) if seeds is None else list(seeds)
    levels = list(range(cfg.prune.levels + 1)) if levels is None else list(levels)
    controls = ["ticket"] if controls is None else list(controls)
    known = ["ticket", *cfg.controls]
    for c in controls:
        if c not in known:
            raise UserError(f"--controls: '{c}' is not a control of this run ({', '.join(known)})")
        if c == "early_bird" or CONTROLS[c].start == "none":
            raise UserError(f"--controls: '{c}' has no training run of its own to repeat (early-bird levels "
                            "stop early; prune-only controls are not trained)")
    for lv in levels:
        if not 0 <= lv <= cfg.prune.levels:
            raise UserError(f"--levels: {lv} is outside this run's levels 0-{cfg.prune.levels}")
    bad = [s for s in seeds if s not in cfg.seeds]
    if bad:
        raise UserError(f"--seeds: {bad[0]} is not a seed of this run ({', '.join(map(str, cfg.seeds))})")
    units = []
    for seed in seeds:
        for lv in sorted(set(levels)):
            for c in controls:
                if lv == 0 and c != "ticket":
                    continue
                units.append(Unit(seed, c, lv))
    return units


def run_instability(
    run_dir: Path | str,
    points: int = 11,
    seeds: Sequence[int] | None = None,
    levels: Sequence[int] | None = None,
    controls: Sequence[str] | None = None,
    device: str = "cpu",
    reporter: Any = None,
    trust_code: bool = False,
) -> list[dict[str, Any]]:
    """Analyse every planned unit of a finished run; returns their instability records. A run
    whose config names user code (a torch module, ``rl.imports``) is refused unless ``trust_code``."""
    from multiticket.core.instability import alphas
    from multiticket.domains import adapter_class

    run_dir = Path(run_dir)
    alphas(points)  # validates --points before anything runs
    run_config = read_run_config(run_dir)
    recorded = task_from_resolved(run_config.data, run_config.path, user_code=False, run_dir=run_dir)
    refuse_user_code(recorded, run_dir, trust_code)
    task = task_from_resolved(run_config.data, run_config.path, run_dir=run_dir)
    if task.run_name != run_dir.name:
        raise UserError(f"{run_dir}: its config.yaml resolves to '{task.run_name}' (made by another version?)")
    units = plan_instability(task.config, seeds, levels, controls)
    store = RunStore(run_dir)
    adapter = adapter_class(task.config.domain)(task.config, task.section, run_dir / "cache", device)
    runner = IMPRunner(task, adapter, store, reporter or NullReporter())
    runner.prepare()
    analysis = InstabilityRunner(runner)
    missing = [u for u in units if not runner.unit_done(u)]
    if missing:
        raise UserError(f"{run_dir}: {missing[0].relpath()} is not finished ({len(missing)} requested unit(s) are "
                        "not); finish the run first or choose other --levels/--controls")
    out = []
    try:
        with store.locked():
            for unit in units:
                out.append(analysis.instability(unit, points))
    finally:
        adapter.close()
    return out
