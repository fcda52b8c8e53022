"""A run directory for the Python API: its summary as a table, masks, weights, and tickets.

Everything is read through :mod:`multiticket.analysis.rundata` (the same finished units, checked
against their ``DONE`` checksums, that the report shows) and from safetensors files only: a run
directory is untrusted input, so nothing here unpickles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from multiticket.analysis.rundata import RunData
from multiticket.analysis.summary import COLUMNS, summary_rows
from multiticket.core.early_bird_units import SEARCH_FILE
from multiticket.core.enforce import GradMasking, MaskEnforcer
from multiticket.core.mask import Mask
from multiticket.core.recipe import Recipe, RunShape, resolve
from multiticket.core.store import RunStore, Unit
from multiticket.core.tensorfile import load_tensors
from multiticket.errors import RunFailure, UserError

if TYPE_CHECKING:
    import pandas as pd

def _tensors(path: Path) -> dict[str, torch.Tensor]:
    """A weights file, its header checked against its size first (:func:`load_tensors`)."""
    try:
        return load_tensors(path)
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None


@dataclass
class Ticket:
    """A unit's mask and the weights its training started from (None: a fresh initialisation,
    so :meth:`apply` keeps the model's own weights, as the ``random_*`` controls did)."""

    seed: int
    level: int
    control: str
    mask: Mask
    start: dict[str, torch.Tensor] | None

    def apply(self, model: nn.Module, strict: bool = False, grads: GradMasking = "hook") -> MaskEnforcer:
        """Load the start weights into ``model`` (the run's prunable module, same architecture),
        zero the pruned entries, and return the :class:`MaskEnforcer` that keeps them zero:
        ``with enforcer.attach([optimizer]): ...`` (or ``with enforcer:``) around one's own loop."""
        if self.start is not None:
            try:
                model.load_state_dict(self.start, strict=True)
            except RuntimeError as exc:
                first = str(exc).strip().splitlines()[0]
                raise UserError(f"ticket.apply: the model does not match the run's weights: {first}") from None
        try:
            enforcer = MaskEnforcer(model, self.mask, strict=strict, grads=grads)
        except (KeyError, ValueError) as exc:
            raise UserError(f"ticket.apply: the model does not match the mask: {exc}") from None
        enforcer.zero_weights()
        return enforcer


class Run:
    """One run directory (``multiticket.load_run(path)``): finished units only."""

    def __init__(self, data: RunData) -> None:
        self.data = data
        self.path: Path = data.root
        self.store = RunStore(data.root)

    def __repr__(self) -> str:
        return f"Run('{self.path}', {len(self.data.records)} finished units, {len(self.data.missing)} missing)"

    @property
    def config(self) -> dict[str, Any]:
        """The resolved task recorded in ``config.yaml``."""
        return self.data.config

    @property
    def rewind_step(self) -> int:
        """The rewind step k in domain units (``config.yaml`` was validated when the run was read)."""
        return self.data.task_config.rewind_step()

    def summary(self) -> pd.DataFrame:
        """One row per (seed, control, level, metric) of every finished unit, as ``summary.csv``."""
        try:
            import pandas as pd
        except ModuleNotFoundError:
            raise UserError("Run.summary: needs pandas (pip install 'multiticket[api]')") from None
        return pd.DataFrame(summary_rows(self.data.records), columns=list(COLUMNS))

    def _finished(self, seed: int, level: int, control: str) -> Path:
        if not any((r["seed"], r["level"], r["control"]) == (seed, level, control) for r in self.data.records):
            raise UserError(f"{self.path}: {Unit(seed, control, level).relpath()} is not a finished unit")
        return self.store.unit_dir(Unit(seed, control, level))

    def mask(self, seed: int, level: int, control: str = "ticket") -> Mask:
        """The mask of a finished unit (parameter name -> bool tensor, True = kept)."""
        self._finished(seed, level, control)
        mask = self.data.mask(seed, level, control)
        assert mask is not None
        return mask

    def final_weights(self, seed: int, level: int, control: str = "ticket") -> dict[str, torch.Tensor]:
        """The state dict a finished unit ended with (pruned entries exactly zero)."""
        return _tensors(self._finished(seed, level, control) / "final.safetensors")

    def rewind_weights(self, seed: int, step: int | None = None) -> dict[str, torch.Tensor]:
        """The state dict of a seed's rewind point (default: the run's rewind step k)."""
        step = self.rewind_step if step is None else step
        directory = self.store.rewind_dir(seed, step)
        if not self.store.is_done(directory):
            raise UserError(f"{directory}: no finished rewind point")
        return _tensors(directory / "weights.safetensors")

    def ticket(self, seed: int, level: int, control: str = "ticket") -> Ticket:
        """A unit's mask with the weights its training started from (see :class:`Ticket`)."""
        return Ticket(seed, level, control, self.mask(seed, level, control), self._start(seed, level, control))

    def _start(self, seed: int, level: int, control: str) -> dict[str, torch.Tensor] | None:
        """The weights the unit's training started from, where the core's recipe
        (:func:`multiticket.core.recipe.resolve`) says it took them: None for a fresh build, the
        initialisation a dense unit captured, a rewind point, the weights a pruned level of
        ``rewind.mode`` lr/finetune continues from, or, for a unit not trained, its own."""
        recipe = self._recipe(Unit(seed, control, level))
        if recipe.permute or (recipe.start == "rewind" and self._shape.transfer):
            where = "were shuffled" if recipe.permute else "are the transfer source's"
            raise UserError(f"ticket: the start weights of '{control}' {where}, not in the run directory; use "
                            "Run.mask() and Run.final_weights()")
        if recipe.start == "trained":  # not trained: its weights are its source's, pruned
            return self.final_weights(seed, level, control)
        if recipe.start == "fresh":  # a dense unit captured its own initialisation as rewind point 0
            return self.rewind_weights(seed, 0) if 0 in recipe.captures else None
        if recipe.retrain in ("lr", "finetune"):
            return self._pruned_from(recipe)
        return self.rewind_weights(seed, recipe.step)

    def _recipe(self, unit: Unit) -> Recipe:
        try:
            return resolve(unit, self._shape)
        except RunFailure as exc:
            raise UserError(f"ticket: {exc}") from None

    @property
    def _shape(self) -> RunShape:
        """What of the run's config decides recipes (as :class:`~multiticket.core.imp.IMPRunner` reads it)."""
        cfg = self.data.task_config
        td = cfg.targeted_dropout
        return RunShape(cfg.rewind_step(), cfg.rewind.mode, td.apply_to if td is not None else None,
                        transfer=cfg.transfer is not None)

    def _pruned_from(self, recipe: Recipe) -> dict[str, torch.Tensor]:
        """The trained weights a level of ``rewind.mode`` lr/finetune was pruned from and continues
        from: its source unit's final weights, or where the previous early-bird search stopped."""
        unit = recipe.unit
        if recipe.mask == "early_bird":
            if unit.level == 1:  # the dense search ran inside the unit and kept no weights
                raise UserError(f"ticket: {unit.relpath()} continued from its search's weights, which the run "
                                "directory does not keep")
            self._finished(unit.seed, unit.level - 1, unit.control)
            return _tensors(self.store.unit_dir(Unit(unit.seed, unit.control, unit.level - 1)) / SEARCH_FILE)
        assert recipe.source is not None
        return self.final_weights(recipe.source.seed, recipe.source.level, recipe.source.control)
