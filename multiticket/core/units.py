"""The unit graph of a ticket search: which units a task has, what each one reads, when one is
finished. Shared by the level loop (:mod:`multiticket.core.imp`), the launch backends and
``multiticket status``, which must all agree on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from multiticket.core.controls import CONTROLS
from multiticket.core.store import RunStore, Unit


@dataclass(frozen=True)
class PlannedUnit:
    """A unit and the units it reads (which must be finished before it starts)."""

    unit: Unit
    deps: tuple[Unit, ...]


def unit_dependencies(unit: Unit) -> tuple[Unit, ...]:
    """What a unit reads: the dense level 0 needs nothing; a chain level (``ticket``,
    ``rewind_init``, ``early_bird``) needs its previous level (level 1 starts from the dense run;
    early_bird's level 1 runs its own dense search and needs the dense unit for the rewind point);
    every other control at level L needs the ticket at L (``one_shot`` also reads the dense final
    weights). ``prune_dense``/``prune_dense_td`` need only the dense unit they prune (``ticket`` or
    ``dense_td`` level 0). Rewind points are written with the dense unit, so depending on it covers them."""
    dense = Unit(unit.seed, "ticket", 0)
    if unit.level == 0:
        return ()
    spec = CONTROLS.get(unit.control)
    if spec is not None and spec.start == "none":  # prune_dense*: only the dense unit they prune
        return (Unit(unit.seed, spec.source, 0),)
    if spec is not None and spec.is_chain:
        return (Unit(unit.seed, unit.control if unit.level > 1 else "ticket", unit.level - 1),)
    ticket = Unit(unit.seed, "ticket", unit.level)
    return (ticket, dense) if spec is not None and spec.mask == "one_shot" else (ticket,)


def unit_finished(store: RunStore, unit: Unit, k: int) -> bool:
    """Finished: DONE with valid checksums (and, for level 0, both rewind points 0 and k too)."""
    if not store.is_done(store.unit_dir(unit)):
        return False
    if unit.level == 0 and unit.control == "ticket":
        return all(store.is_done(store.rewind_dir(unit.seed, s)) for s in sorted({0, k}))
    return True


def unit_plan(cfg: Any, seeds: Sequence[int] | None = None) -> list[PlannedUnit]:
    """Every unit of a task (config ``cfg``) in an order where dependencies come first."""
    out = []
    for seed in cfg.seeds if seeds is None else seeds:
        out.append(PlannedUnit(Unit(seed, "ticket", 0), ()))
        if any(CONTROLS[c].source == "dense_td" for c in cfg.controls):
            out.append(PlannedUnit(Unit(seed, "dense_td", 0), ()))
        for level in range(1, cfg.prune.levels + 1):
            for control in ["ticket", *cfg.controls]:
                unit = Unit(seed, control, level)
                out.append(PlannedUnit(unit, unit_dependencies(unit)))
    return out
