"""Targeted dropout in the level loop (docs/targeted-dropout.md): a monitor for the units that train
with it, and the prune-only units (``prune_dense``, ``prune_dense_td``) that prune a dense
network one-shot and evaluate it without retraining.

Which units train with targeted dropout is the recipe's business (:mod:`multiticket.core.recipe`:
``apply_to: all`` every unit, ``experiment`` only ``dense_td``); this module only builds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from multiticket.core.adapter import DomainAdapter
from multiticket.core.enforce import MaskEnforcer
from multiticket.core.mask import Mask
from multiticket.core.monitors import DropoutMonitor
from multiticket.core.seeding import derive_seed
from multiticket.core.statefile import has_tree, load_tree
from multiticket.core.store import RunStore, Unit
from multiticket.core.targeted_dropout import TargetedDropout, TDSpec
from multiticket.core.train import MonitorFactory, Phases, evaluate_unit, hard_copy_targets


def dropout_monitor(td: Any, names: Sequence[str], stop: int, mask: Mask) -> MonitorFactory:
    """Targeted dropout (the task's ``targeted_dropout:`` section ``td``) over ``names`` as a
    monitor factory; its drops are seeded by the unit it trains, so every unit draws its own."""
    ramp = None if td.ramp is None else (td.ramp.gamma_start, td.ramp.gamma_end, td.ramp.start, td.ramp.end)

    def make(module: torch.nn.Module, unit: Unit) -> DropoutMonitor:
        spec = TDSpec(alpha=td.alpha, gamma=td.gamma, variant=td.variant, ramp=ramp)
        seed = derive_seed(unit.seed, unit.control, "td", unit.level)
        return DropoutMonitor(TargetedDropout(module, list(names), spec, seed, stop, mask))

    return make


def evaluate_pruned(adapter: DomainAdapter, store: RunStore, unit: Unit, source: Unit, mask: Mask,
                    weights: Mapping[str, torch.Tensor], phases: Phases) -> dict[str, float]:
    """Evaluate the dense unit ``source``'s final ``weights`` under ``mask``, not retrained: its
    adapter state (e.g. normalisation statistics) comes back too, target networks are copies."""
    with phases.timed("build"):
        adapter.build(unit.seed)
    module = adapter.module
    with phases.timed("restore"):
        module.load_state_dict(dict(weights), strict=True)
        source_dir = store.unit_dir(source)
        if has_tree(source_dir, "final_state"):
            adapter.load_state(load_tree(source_dir, "final_state"))
        MaskEnforcer(module, mask).zero_weights()
        hard_copy_targets(adapter)
    return evaluate_unit(adapter, unit, mask, phases)
