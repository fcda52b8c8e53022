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
from multiticket.core.controls import CONTROLS
from multiticket.core.enforce import GradMasking, MaskEnforcer
from multiticket.core.mask import Mask
from multiticket.core.store import RunStore, Unit
from multiticket.core.tensorfile import load_tensors
from multiticket.errors import UserError

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
        """What the recipe (:func:`multiticket.core.recipe.resolve`) started the unit from, read
        from the control's spec: fresh, rewound (to k or 0), or a previous level's weights."""
        spec = CONTROLS.get(control)
        if spec is None or spec.start == "rewind_permuted":
            raise UserError(f"ticket: '{control}' has no start weights in the run directory; use "
                            "Run.mask() and Run.final_weights()")
        if spec.start == "fresh":
            return None
        if spec.start == "none":  # not trained: its weights are the dense ones, pruned
            return self.final_weights(seed, level, control)
        if level == 0:  # the dense network, trained from its initialisation
            return self.rewind_weights(seed, 0)
        mode = (self.config.get("rewind") or {}).get("mode", "weights")
        if mode == "weights" or not (spec.is_chain or spec.mask == "one_shot"):
            return self.rewind_weights(seed, 0 if spec.rewind_to == "init" else None)
        if spec.is_chain:  # lr / finetune: the previous level's final weights, masked
            return self.final_weights(seed, level - 1, control if level > 1 else "ticket")
        return self.final_weights(seed, 0, "ticket")  # one_shot under lr / finetune: the dense final weights
