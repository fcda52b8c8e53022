"""A run directory for the Python API: its summary as a table, masks, weights, and tickets.

Everything is read through :mod:`multiticket.analysis.rundata` (the same finished units, checked
against their ``DONE`` checksums, that the report shows) and from safetensors files only: a run
directory is untrusted input, so nothing here unpickles.
"""

from __future__ import annotations

import math
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


def mismatch(model: dict[str, tuple[int, ...]], run: dict[str, tuple[int, ...]], missing: bool = True,
             most: int = 5) -> str | None:
    """What keeps ``run``'s tensors (name -> shape) from loading into ``model``'s: the names the
    model has and the run lacks (``missing``: the weights must cover the whole model; a mask need
    not), those the run has and the model lacks, and those of another shape; None when they fit."""
    def names(found: list[str]) -> str:
        return ", ".join(found[:most]) + (f" (+{len(found) - most} more)" if len(found) > most else "")

    parts = []
    absent = [n for n in model if n not in run]
    unexpected = [n for n in run if n not in model]
    shaped = [f"{n} (model {_shape(model[n])}, run {_shape(run[n])})" for n in model if n in run and model[n] != run[n]]
    if missing and absent:
        parts.append(f"missing in the run: {names(absent)}")
    if unexpected:
        parts.append(f"not in the model: {names(unexpected)}")
    if shaped:
        parts.append(f"mis-shaped: {names(shaped)}")
    return "; ".join(parts) or None


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) or "scalar"


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
            own = {name: tuple(t.shape) for name, t in model.state_dict().items()}
            problem = mismatch(own, {name: tuple(t.shape) for name, t in self.start.items()})
            if problem:
                raise UserError(f"ticket.apply: the model does not match the run's weights: {problem}")
            model.load_state_dict(self.start, strict=True)
        params = {name: tuple(p.shape) for name, p in model.named_parameters()}
        problem = mismatch(params, {name: tuple(m.shape) for name, m in self.mask.items()}, missing=False)
        if problem:
            raise UserError(f"ticket.apply: the model does not match the mask: {problem}")
        try:
            enforcer = MaskEnforcer(model, self.mask, strict=strict, grads=grads)
        except (KeyError, ValueError) as exc:
            raise UserError(f"ticket.apply: the model does not match the mask: {exc}") from None
        enforcer.zero_weights()
        return enforcer


def _pandas(what: str) -> Any:
    """pandas, or one line saying how to install it."""
    try:
        import pandas as pd
    except ModuleNotFoundError:
        raise UserError(f"{what}: needs pandas (pip install 'multiticket[api]')") from None
    return pd


def _verdict_words(verdict: Any, level: int) -> str:
    """A level's verdict as the report words it: won, not won, or why it was not judged."""
    test = verdict.tests.get(level)
    if test is None:
        return "not judged (no random control finished, or the metric has no better direction)"
    if test.flagged:
        return "not judged (degenerate level)"
    if test.n < verdict.needed:
        return f"too few seeds ({test.n}; {verdict.needed} needed)"
    return "won" if level in verdict.won else "not won"


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
        pd = _pandas("Run.summary")
        return pd.DataFrame(summary_rows(self.data.records), columns=list(COLUMNS))

    def curves(self) -> pd.DataFrame:
        """The learning curves of every finished unit, one row per recorded point: seed, control,
        level, sparsity, step, metric (the series: ``train/loss``, ``eval/accuracy``, ...), value.
        Units made before curves were recorded have none (``curve.csv``, validated when read)."""
        from multiticket.analysis.curves import read_curve
        from multiticket.core.curves import CURVE_FILE

        pd = _pandas("Run.curves")
        rows = []
        for r in self.data.records:
            path = self.store.unit_dir(Unit(r["seed"], r["control"], r["level"])) / CURVE_FILE
            if not path.is_file():
                continue
            for metric, (steps, values) in read_curve(path).items():
                rows += [(r["seed"], r["control"], r["level"], r["sparsity"], int(step), metric, float(value))
                         for step, value in zip(steps, values)]
        return pd.DataFrame(rows, columns=["seed", "control", "level", "sparsity", "step", "metric", "value"])

    def verdicts(self) -> pd.DataFrame:
        """The report's winning verdict per pruned level (:func:`multiticket.analysis.verdicts.run_verdict`):
        level, sparsity, won (True / False; None where not judged), verdict (in words), note,
        p_value (the largest one-sided p over the random controls), n_seeds (paired), test, correction."""
        from multiticket.analysis.paired import TEST_NAME
        from multiticket.analysis.verdicts import run_verdict, win_note

        pd = _pandas("Run.verdicts")
        verdict = run_verdict(self.data)
        rows = []
        for level in [lv for lv in self.data.levels if lv > 0]:
            test = verdict.tests.get(level)
            rows.append({"level": level, "sparsity": self.data.sparsity[level], "won": verdict.winning(level),
                         "verdict": _verdict_words(verdict, level), "note": win_note(verdict, level),
                         "p_value": test.p if test is not None else math.nan, "n_seeds": test.n if test is not None else 0,
                         "test": TEST_NAME, "correction": verdict.correction})
        columns = ["level", "sparsity", "won", "verdict", "note", "p_value", "n_seeds", "test", "correction"]
        return pd.DataFrame(rows, columns=columns)

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

    def export(self, seed: int, level: int, control: str = "ticket", compact: bool | None = None,
               path: Path | str | None = None, trust_code: bool = False, sparse: bool = False,
               min_sparsity: float | None = None) -> Path:
        """Write a finished unit as a model its library loads (SB3: one zip ``ALGO.load`` reads;
        ``compact``, the default unless ``sparse``: the neurons its mask prunes whole removed, a
        narrower ``net_arch``; ``sparse``: its pruned Linear / LSTM layers of at least
        ``min_sparsity`` zeros as CSR safetensors that ``multiticket.core.sparse.load_sparse``
        reads, for any domain) and return where (``multiticket export``, :mod:`multiticket.export`)."""
        from multiticket.core.sparse import DEFAULT_MIN_SPARSITY
        from multiticket.export import export_unit

        if min_sparsity is not None and not sparse:
            raise UserError("min_sparsity: only with sparse=True")
        compact = not sparse if compact is None else compact
        threshold = DEFAULT_MIN_SPARSITY if min_sparsity is None else min_sparsity
        return export_unit(self.path, seed, level, control, compact, path, trust_code, sparse, threshold).path

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
