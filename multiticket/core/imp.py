"""The IMP level loop with late rewinding, controls and resume, over any :class:`DomainAdapter`.

For each seed: train the dense network (level 0) from step 0 to T, capturing rewind points at
steps 0 and k. Then for each level L: prune the previous level's final weights (ticket chain),
rewind survivors to θ_k, train k -> T; then train each requested control at the same sparsity.
Every unit is skipped when its directory is already finished, so a rerun resumes at the first
unfinished unit and a finished run does no work.

One unit's path, the same for every control: :func:`~multiticket.core.units.unit_plan` lists it,
:func:`~multiticket.core.recipe.resolve` turns it into a recipe (which mask, which start, which
retraining mode, which monitors), :class:`~multiticket.core.inputs.UnitInputs` loads what the
recipe names from the store, :func:`~multiticket.core.train.train_unit` trains it without
touching the store, and :class:`~multiticket.core.writer.UnitWriter` writes it. A unit reads its
inputs from the run store, never from memory, so :mod:`multiticket.launch` can spread the units
of :func:`unit_plan` over processes and nodes in any order that respects
:func:`unit_dependencies`.
"""

from __future__ import annotations

import time
from typing import Any

from multiticket.core import early_bird_units as eb_units
from multiticket.core import scope as scope_mod
from multiticket.core import train as train_mod
from multiticket.core.adapter import DomainAdapter
from multiticket.core.checkpoint import CheckpointStore
from multiticket.core.controls import CONTROLS
from multiticket.core.criteria.probe import check_scoring
from multiticket.core.curves import Curve
from multiticket.core.early_bird import EarlyBirdMonitor
from multiticket.core.eval_method import run_eval_method, unit_records
from multiticket.core.hooks import NullReporter, Reporter
from multiticket.core.inputs import Inputs, Scope, UnitInputs
from multiticket.core.prune import PruneSpec
from multiticket.core.recipe import Recipe, RunShape, resolve
from multiticket.core.registry import criteria
from multiticket.core.store import RunStore, Unit
from multiticket.core.structure import resolve as resolve_structure
from multiticket.core.td_units import dropout_monitor, evaluate_pruned
from multiticket.core.train import Phases, TrainJob, TrainResult
from multiticket.core.transfer import TransferStarts
from multiticket.core.units import unit_dependencies, unit_finished, unit_plan
from multiticket.core.writer import FAILED, RunInfo, UnitWriter, unit_record
from multiticket.errors import RunFailure, UserError, storage_error

__all__ = ["FAILED", "IMPRunner", "NullReporter"]


class IMPRunner:
    """Runs (or resumes) every unit of one task in one run directory. A task with a ``transfer:``
    section takes its tickets from the source run (:class:`TransferStarts`) instead of pruning."""

    def __init__(self, task: Any, adapter: DomainAdapter, store: RunStore, reporter: Reporter | None = None) -> None:
        self.task = task
        self.cfg = task.config
        self.adapter = adapter
        self.store = store
        self.reporter = reporter or NullReporter()
        self.k = self.cfg.rewind_step()
        self.T = self.cfg.train.steps
        self.transfer = TransferStarts(self.cfg) if getattr(self.cfg, "transfer", None) is not None else None
        td = self.cfg.targeted_dropout
        self.shape = RunShape(self.k, self.cfg.rewind.mode, td.apply_to if td is not None else None,
                              transfer=self.transfer is not None,
                              prune_only=any(CONTROLS[c].start == "none" for c in self.cfg.controls))
        self.info = RunInfo(self.cfg.name, self.cfg.domain, self.T)
        self.writer = UnitWriter(store, adapter)
        self._inputs: UnitInputs | None = None
        #: wall seconds per phase of the unit in progress / of every unit this runner trained
        self.phases = Phases()
        self.unit_phases: dict[Unit, dict[str, float]] = {}

    # -- preparation -------------------------------------------------------------------------
    def prepare(self, seed: int | None = None) -> None:
        """Build once and resolve the prunable scope (raises UserError on a bad scope, or on a
        transfer source that does not fit the target)."""
        p = self.cfg.prune
        self.adapter.eval_method = run_eval_method(self.adapter.eval_methods, unit_records(self.store.root))
        self.adapter.build(self.cfg.seeds[0] if seed is None else seed)
        module = self.adapter.module
        names = scope_mod.select(module, self.adapter.default_prunable(), p.include, p.exclude, p.biases)
        params = dict(module.named_parameters())
        shapes = {n: tuple(params[n].shape) for n in names}
        keep, units = resolve_structure(p.structure, self.adapter, names, shapes)
        spec = PruneSpec(p.strategy, p.rate, p.rate_of, scope_mod.rate_overrides(names, p.rates), p.criterion,
                         p.allocator, p.structure, keep, units)
        self._check_scoring(spec)
        scope = Scope(names, shapes, spec)
        if self.cfg.checkpoint is not None:
            self.adapter.check_resumable()
        if self.cfg.rewind.mode == "finetune" and type(self.adapter).set_constant_lr is DomainAdapter.set_constant_lr:
            raise UserError(f"rewind.mode: finetune needs a constant learning rate, which the "
                            f"'{self.cfg.domain}' adapter does not offer (DomainAdapter.set_constant_lr)")
        if self.transfer is not None:
            scope = self.transfer.scope(self.adapter, spec)
        self._inputs = UnitInputs(self.store, self.adapter, scope, self.transfer)

    def _check_scoring(self, spec: PruneSpec) -> None:
        """Before anything runs: the domain offers what the task's criterion and the pruning-at-init
        controls' criteria read (scoring batches, an all-ones forward), or a one-line UserError."""
        needed = [spec.ranking] if spec.ranking is not None else []
        needed += [criteria.lookup(name) for c in self.cfg.controls if (name := CONTROLS[c].criterion) is not None]
        for criterion in needed:
            check_scoring(self.adapter, criterion)

    @property
    def inputs(self) -> UnitInputs:
        """The run's input loader (built by :meth:`prepare`, which runs on first use)."""
        if self._inputs is None:
            self.prepare()
        assert self._inputs is not None
        return self._inputs

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        """Every unit in dependency order. A unit that fails (NaN, a check) is recorded in its
        ``FAILED`` file; the units that need it are skipped, every other unit (other seeds, other
        controls) still runs, and the run then fails naming what failed."""
        failed: dict[Unit, str] = {}
        blocked: list[Unit] = []
        for planned in unit_plan(self.cfg):
            if any(d in failed or d in blocked for d in planned.deps):
                blocked.append(planned.unit)
                continue
            try:
                self.run_unit(planned.unit)
            except RunFailure as exc:
                failed[planned.unit] = str(exc)
                self.reporter.warn(f"{planned.unit.relpath()} failed: {exc}")
        if failed:
            first, why = next(iter(failed.items()))
            also = f"; {len(blocked)} unit(s) that need them skipped" if blocked else ""
            raise RunFailure(
                f"{len(failed)} unit(s) failed{also}; first {first.relpath()}: {why} "
                f"(see FAILED in each unit's directory; the other units finished)"
            )

    def run_unit(self, unit: Unit) -> tuple[dict[str, Any] | None, bool]:
        """Run one unit alone, loading its inputs (masks, final weights, rewind points) from the
        store; returns ``(record, skipped)``. Holds the unit's lock, so two processes never train
        the same unit: the second waits and then finds it finished. Fails if a dependency is missing."""
        if self._inputs is None:
            self.prepare()
        with self.store.unit_lock(unit):
            if self.unit_done(unit):
                record = self.store.metrics(unit)
                self.reporter.unit_finished(unit, record, skipped=True)
                return record, True
            self._report_corrupt(unit)
            for dep in unit_dependencies(unit):
                if not self.unit_done(dep):
                    raise RunFailure(f"{unit.relpath()}: needs {dep.relpath()}, which is not finished")
            t0 = time.perf_counter()
            self.phases = Phases()
            self.writer.clear_failure(unit)
            try:
                self._produce(resolve(unit, self.shape))
            except RunFailure as exc:
                self.writer.write_failure(unit, str(exc))
                raise RunFailure(f"{unit.relpath()}: {exc}" if str(unit.relpath()) not in str(exc) else str(exc)) from exc
            except Exception as exc:  # a full disk met by a library's own writes (rewind points, export)
                error = storage_error(exc, self.store.unit_dir(unit))
                if error is None:
                    raise
                raise error from exc
            self.phases["unit_total"] = time.perf_counter() - t0
            self.unit_phases[unit] = self.phases
            return self.store.metrics(unit), False

    def unit_done(self, unit: Unit) -> bool:
        return unit_finished(self.store, unit, self.k)

    def _report_corrupt(self, unit: Unit) -> None:
        """Say which artifact of a finished-looking unit (or of its rewind points) failed its
        checksum before the unit is recomputed; a missing DONE (never finished) is not reported."""
        dirs = [self.store.unit_dir(unit)]
        if unit.level == 0:
            dirs += [self.store.rewind_dir(unit.seed, s) for s in sorted({0, self.k})]
        for d in dirs:
            for problem in self.store.problems(d):
                self.reporter.warn(f"{problem}; recomputing {unit.relpath()}")

    # -- one unit: recipe -> inputs -> train_unit -> writer ------------------------------------
    def _produce(self, recipe: Recipe) -> None:
        """Load, train (or, prune-only, evaluate) and write the unit of ``recipe``."""
        unit = recipe.unit
        if recipe.retrain == "none":
            self._prune_only(recipe)
            return
        search = self._early_bird_search(recipe) if recipe.mask == "early_bird" else None
        searched = (search.prev_mask, search.weights) if search is not None else None
        inputs = self.inputs.load(recipe, self.phases, searched)
        job, watch = self.job(recipe, inputs)
        result = self.train(job, checkpoint=watch is None)
        record = self.record(recipe, inputs, result)
        extra: dict[str, Any] = {}
        if watch is not None and search is not None:
            extra = eb_units.finish_level(record, search, watch, unit.level, self.k, self.T, self.adapter.module)
        if result.captured:
            with self.phases.timed("save"):
                self.writer.write_rewinds(unit.seed, result.captured)
            self.inputs.remember(unit.seed, result.captured)
        self._write(unit, inputs, record, extra, recipe.keep_state, result.curve)

    def job(self, recipe: Recipe, inputs: Inputs) -> tuple[TrainJob, EarlyBirdMonitor | None]:
        """The train job of a recipe with its inputs loaded, and its early-bird detector (if any)."""
        unit, mode = recipe.unit, recipe.retrain
        scope = self.inputs.scope
        monitors: list[train_mod.MonitorFactory] = []
        if "targeted_dropout" in recipe.monitors:
            monitors.append(dropout_monitor(self.cfg.targeted_dropout, scope.names, self.T, inputs.mask))
        watch = None
        if "early_bird" in recipe.monitors:
            assert inputs.start is not None
            watch = EarlyBirdMonitor(inputs.mask, scope.spec, eb_units.settings_of(self.cfg), start=inputs.start.step,
                                     stop=False, init=inputs.start.weights)
            monitors.append(eb_units.watch(watch))
        job = TrainJob(
            unit, inputs.mask, scope.names, self.T, start=inputs.start, init_seed=recipe.init_seed,
            weights=inputs.pruned_from if mode in ("lr", "finetune") else None, permute=inputs.permute,
            constant_lr=self.cfg.rewind.finetune_lr if mode == "finetune" else None, captures=recipe.captures,
            restore_optimizer=self.cfg.rewind.optimizer == "restore", monitors=tuple(monitors),
            checkpoint_every=self.cfg.checkpoint.every if self.cfg.checkpoint is not None else 0, curve=True,
        )
        return job, watch

    def train(self, job: TrainJob, checkpoint: bool = True) -> TrainResult:
        """:func:`train_unit` with this run's adapter, reporter, phases and (when ``checkpoint``
        and the task asks for them) the unit's mid-level checkpoints."""
        ckpts = None
        if checkpoint and self.cfg.checkpoint is not None:
            ckpts = CheckpointStore(self.store, self.store.unit_dir(job.unit), self.reporter.warn)
        return train_mod.train_unit(self.adapter, job, ckpts, self.reporter, self.phases)

    def record(self, recipe: Recipe, inputs: Inputs, result: TrainResult, **extra: Any) -> dict[str, Any]:
        """The unit's ``metrics.json`` record; a pruned level retrained by ``rewind.mode`` records it."""
        unit = recipe.unit
        planned = self.inputs.planned_weights(unit.level, inputs.mask)
        spec = CONTROLS.get(unit.control)
        if spec is not None:  # what the control is for, as decided here: analysis reads it back
            extra = {"role": spec.role, **extra}
        record = unit_record(self.info, self.adapter, unit, inputs.mask, planned, result, **extra)
        if recipe.retrain in ("weights", "lr", "finetune"):
            record["retrain_mode"] = recipe.retrain
        return record

    def _write(self, unit: Unit, inputs: Inputs, record: dict[str, Any],
               extra: dict[str, Any] | None = None, keep_state: bool = False, curve: Curve | None = None) -> None:
        with self.phases.timed("save"):
            self.writer.write_unit(unit, inputs.mask, record, extra, keep_state, curve)
        self.reporter.unit_finished(unit, record, skipped=False)

    def _early_bird_search(self, recipe: Recipe) -> eb_units.Search:
        """What an early-bird level prunes: level 1 runs the dense search (trained here, no
        checkpoints), later levels read where the previous level's monitor stopped."""
        unit = recipe.unit
        settings = eb_units.settings_of(self.cfg)
        if unit.level > 1:
            return eb_units.previous_search(self.store, unit, settings, self.phases)
        scope = self.inputs.scope
        dense = scope.dense_mask()
        monitors = (dropout_monitor(self.cfg.targeted_dropout, scope.names, self.T, dense),) \
            if "targeted_dropout" in recipe.monitors else ()
        job = TrainJob(unit, dense, scope.names, self.T, monitors=monitors)
        # checks before k have no rewind point yet: only k = 0 gives init criteria one
        init = self.inputs.rewind(unit.seed, self.k, self.phases).weights if self.k == 0 else None
        return eb_units.dense_search(lambda j: self.train(j, checkpoint=False), job, scope.spec, settings, self.k,
                                     lambda: self.adapter.module, init)

    def _prune_only(self, recipe: Recipe) -> None:
        """Prune a dense unit's final weights straight to this level's count (the ticket's counting
        rule, so the sparsity is the ticket's) and evaluate them without retraining."""
        unit, source = recipe.unit, recipe.source
        assert source is not None
        inputs = self.inputs.load(recipe, self.phases)
        assert inputs.pruned_from is not None
        metrics = evaluate_pruned(self.adapter, self.store, unit, source, inputs.mask, inputs.pruned_from,
                                  self.phases)
        result = TrainResult(metrics, self.T, self.T, 0.0)
        record = self.record(recipe, inputs, result, source=str(source.relpath()), retrained=False)
        self._write(unit, inputs, record)

