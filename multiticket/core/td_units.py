"""The targeted-dropout side of the level loop (docs/targeted-dropout.md): which units train
with targeted dropout, the dense network trained with it (``dense_td``), and the prune-only units
(``prune_dense``, ``prune_dense_td``) that prune a dense network one-shot and evaluate it without
retraining. A mixin of :class:`multiticket.core.imp.IMPRunner`, whose state and helpers it uses.
"""

from __future__ import annotations

from typing import Any

import torch

from multiticket.core.adapter import DomainAdapter
from multiticket.core.controls import CONTROLS
from multiticket.core.enforce import MaskEnforcer
from multiticket.core.mask import Mask
from multiticket.core.prune import prune
from multiticket.core.seeding import derive_seed, generator
from multiticket.core.statefile import has_tree, load_tree
from multiticket.core.store import Unit
from multiticket.core.targeted_dropout import TargetedDropout, TDSpec


@torch.no_grad()
def hard_copy_targets(adapter: DomainAdapter) -> None:
    """Target networks become copies of their online networks (pruned entries included)."""
    for online, target in adapter.target_pairs():
        target.load_state_dict(online.state_dict())


class TargetedDropoutUnits:
    """Targeted-dropout units of an IMP run (mixed into ``IMPRunner``)."""

    cfg: Any
    names: list[str]
    T: int

    def _targeted_dropout(self, unit: Unit, module: torch.nn.Module, mask: Mask) -> TargetedDropout | None:
        """Targeted dropout for this unit (unattached), or None: ``apply_to: all`` trains every
        unit with it (TD + IMP), ``experiment`` only the dense_td unit."""
        td = self.cfg.targeted_dropout
        if td is None or (td.apply_to == "experiment" and unit.control != "dense_td"):
            return None
        ramp = None if td.ramp is None else (td.ramp.gamma_start, td.ramp.gamma_end, td.ramp.start, td.ramp.end)
        spec = TDSpec(alpha=td.alpha, gamma=td.gamma, variant=td.variant, ramp=ramp)
        seed = derive_seed(unit.seed, unit.control, "td", unit.level)
        return TargetedDropout(module, self.names, spec, seed, self.T, mask)

    def _prune_only_controls(self) -> bool:
        return any(CONTROLS[c].start == "none" for c in self.cfg.controls)

    def _dense_td(self, seed: int) -> None:
        """The dense network trained with targeted dropout: same init and data as the dense run."""
        unit = Unit(seed, "dense_td", 0)
        mask = self.dense_mask()
        record = self._train_unit(unit, mask, start=None, init_seed=None)
        self._write_unit(unit, mask, record["__record__"])

    def _prune_only(self, unit: Unit) -> None:
        """Prune a dense unit's final weights straight to this level's count (the ticket's counting
        rule, so the sparsity is the ticket's) and evaluate them without retraining."""
        source = Unit(unit.seed, CONTROLS[unit.control].source, 0)
        _, dense_final = self._load_unit(source)
        with self._phase("prune"):
            mask = self.dense_mask()
            # the dense run's rewind point (dense_td records none: the config refuses init criteria there)
            init = self._rewind(unit.seed, self.k).weights if self.spec.needs_init and source.control == "ticket" else None
            for _ in range(unit.level):
                mask = prune(dense_final, mask, self.spec, generator(unit.seed, unit.control, "prune", unit.level), init)
        self._check_planned(mask, unit.level, unit)
        adapter = self.adapter
        with self._phase("build"):
            adapter.build(unit.seed)
        module = adapter.module
        with self._phase("restore"):
            module.load_state_dict(dense_final, strict=True)
            source_dir = self.store.unit_dir(source)
            if has_tree(source_dir, "final_state"):
                adapter.load_state(load_tree(source_dir, "final_state"))
            MaskEnforcer(module, mask).zero_weights()
            hard_copy_targets(adapter)
        record = self._evaluated_record(unit, mask, self.T, self.T, 0.0, source=str(source.relpath()), retrained=False)
        self._write_unit(unit, mask, record)
