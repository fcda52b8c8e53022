"""The IMP level loop with late rewinding, controls and resume, over any :class:`DomainAdapter`.

For each seed: train the dense network (level 0) from step 0 to T, capturing rewind points at
steps 0 and k. Then for each level L: prune the previous level's final weights (ticket chain),
rewind survivors to θ_k, train k -> T; then train each requested control at the same sparsity.
Every unit is skipped when its directory is already finished, so a rerun resumes at the first
unfinished unit and a finished run does no work.

Each unit can also run alone (:meth:`IMPRunner.run_unit`): it reads its inputs (the previous
level's mask and final weights, the ticket's mask, the rewind points) from the run store, never
from memory, so :mod:`multiticket.launch` can spread the units of :func:`unit_plan` over processes
and nodes in any order that respects :func:`unit_dependencies`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from multiticket.core import scope as scope_mod
from multiticket.core.adapter import DomainAdapter
from multiticket.core.checkpoint import Checkpoint, CheckpointStore
from multiticket.core.controls import CONTROLS
from multiticket.core.early_bird import EarlyBirdMonitor
from multiticket.core.early_bird_units import EarlyBirdUnits
from multiticket.core.enforce import MaskEnforcer
from multiticket.core.eval_method import run_eval_method, unit_records
from multiticket.core.hooks import LevelHooks, NullReporter, Reporter, StopTraining
from multiticket.core.mask import Mask
from multiticket.core.prune import PruneSpec, planned_alive, prune, random_mask_like
from multiticket.core.rewind import RewindPoint, copy_state_dict
from multiticket.core.seeding import derive_seed, generator
from multiticket.core.statefile import save_tree
from multiticket.core.store import RunStore, Unit, atomic_write_text
from multiticket.core.td_units import TargetedDropoutUnits, hard_copy_targets
from multiticket.core.units import unit_dependencies, unit_finished, unit_plan
from multiticket.errors import RunFailure, UserError, storage_error

#: written into a unit's directory when it fails (JSON: unit, error, time); removed on retry
FAILED = "FAILED"


class IMPRunner(EarlyBirdUnits, TargetedDropoutUnits):
    """Runs (or resumes) every unit of one task in one run directory."""

    def __init__(self, task: Any, adapter: DomainAdapter, store: RunStore, reporter: Reporter | None = None) -> None:
        self.task = task
        self.cfg = task.config
        self.adapter = adapter
        self.store = store
        self.reporter = reporter or NullReporter()
        self.k = self.cfg.rewind_step()
        self.T = self.cfg.train.steps
        self.names: list[str] = []
        self.spec = PruneSpec(self.cfg.prune.strategy, self.cfg.prune.rate, self.cfg.prune.rate_of,
                              criterion=self.cfg.prune.criterion)
        self._rewinds: dict[tuple[int, int], RewindPoint] = {}
        #: wall seconds per phase of the unit in progress / of every unit this runner trained
        self.phases: dict[str, float] = {}
        self.unit_phases: dict[Unit, dict[str, float]] = {}

    # -- preparation -------------------------------------------------------------------------
    def prepare(self, seed: int | None = None) -> None:
        """Build once and resolve the prunable scope (raises UserError on a bad scope)."""
        p = self.cfg.prune
        self.adapter.eval_method = run_eval_method(self.adapter.eval_methods, unit_records(self.store.root))
        self.adapter.build(self.cfg.seeds[0] if seed is None else seed)
        module = self.adapter.module
        self.names = scope_mod.select(module, self.adapter.default_prunable(), p.include, p.exclude, p.biases)
        overrides = scope_mod.rate_overrides(self.names, p.rates)
        self.spec = PruneSpec(p.strategy, p.rate, p.rate_of, overrides, p.criterion)
        params = dict(module.named_parameters())
        self.shapes = {n: tuple(params[n].shape) for n in self.names}
        self.sizes = {n: params[n].numel() for n in self.names}
        if self.cfg.checkpoint is not None:
            self.adapter.check_resumable()
        if self.cfg.rewind.mode == "finetune" and type(self.adapter).set_constant_lr is DomainAdapter.set_constant_lr:
            raise UserError(f"rewind.mode: finetune needs a constant learning rate, which the "
                            f"'{self.cfg.domain}' adapter does not offer (DomainAdapter.set_constant_lr)")

    def dense_mask(self) -> Mask:
        return Mask({n: torch.ones(s, dtype=torch.bool) for n, s in self.shapes.items()})

    def planned_alive(self, level: int) -> int:
        return planned_alive(self.sizes, self.spec, level)

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        """Every unit in dependency order. A unit that fails (NaN, a check) is recorded in its
        ``FAILED`` file; the units that need it are skipped, every other unit (other seeds, other
        controls) still runs, and the run then fails naming what failed."""
        if not self.names:
            self.prepare()
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
        if not self.names:
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
            self.phases = {}
            failed = self.store.unit_dir(unit) / FAILED
            failed.unlink(missing_ok=True)
            try:
                if unit.level == 0 and unit.control == "dense_td":
                    self._dense_td(unit.seed)
                elif unit.level == 0:
                    self._dense(unit.seed)
                elif unit.control == "early_bird":
                    self._early_bird(unit.seed, unit.level)
                elif unit.control in ("ticket", "rewind_init"):
                    step = self.k if unit.control == "ticket" else 0
                    self._chain(unit.seed, unit.control, unit.level, self._rewind(unit.seed, step))
                elif CONTROLS[unit.control].start == "none":
                    self._prune_only(unit)
                else:
                    self._control(unit.seed, unit.control, unit.level)
            except RunFailure as exc:
                failure = {"unit": str(unit.relpath()), "error": str(exc), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
                atomic_write_text(failed, json.dumps(failure, indent=1) + "\n")
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

    def _checkpoints(self, unit: Unit) -> CheckpointStore | None:
        if self.cfg.checkpoint is None:
            return None
        return CheckpointStore(self.store, self.store.unit_dir(unit), self.reporter.warn)

    def _rewind(self, seed: int, step: int) -> RewindPoint:
        """A rewind point from the store, cached for the seed last used (levels reuse it)."""
        key = (seed, step)
        if key not in self._rewinds:
            with self._phase("load_inputs"):
                point = RewindPoint.load(self.store.rewind_dir(seed, step))
            self._rewinds = {k: v for k, v in self._rewinds.items() if k[0] == seed}
            self._rewinds[key] = point
        return self._rewinds[key]

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        """Accumulate wall time per phase of the current unit (for scripts/bench.py)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - t0

    # -- units ------------------------------------------------------------------------------
    def _dense(self, seed: int) -> None:
        unit = Unit(seed, "ticket", 0)
        steps = sorted({0, self.k})
        mask = self.dense_mask()
        points = self._train_unit(unit, mask, start=None, init_seed=None, captures=steps)
        record = points.pop("__record__")
        with self._phase("save"):
            for s in steps:
                d = self.store.rewind_dir(seed, s)
                self.store.begin(d)
                files = points[s].save(d)
                self.store.finish(d, files)
        self._rewinds = {(seed, s): points[s] for s in steps}
        self._write_unit(unit, mask, record)

    def _load_unit(self, unit: Unit) -> tuple[Mask, dict[str, torch.Tensor]]:
        d = self.store.unit_dir(unit)
        with self._phase("load_inputs"):
            return Mask.load(d / "mask.safetensors"), load_file(str(d / "final.safetensors"))

    def _chain(self, seed: int, chain: str, level: int, rewind: RewindPoint) -> Mask:
        unit = Unit(seed, chain, level)
        prev = Unit(seed, chain if level > 1 else "ticket", level - 1)
        prev_mask, prev_final = self._load_unit(prev)
        with self._phase("prune"):
            mask = prune(prev_final, prev_mask, self.spec, generator(seed, chain, "prune", level), rewind.weights)
        self._check_planned(mask, level, unit)
        record = self._retrain(unit, mask, rewind, prev_final)
        self._write_unit(unit, mask, record["__record__"])
        return mask

    def _retrain(self, unit: Unit, mask: Mask, rewind: RewindPoint, source: Mapping[str, torch.Tensor],
                 monitor: EarlyBirdMonitor | None = None) -> dict[Any, Any]:
        """Train a level whose mask was pruned from the trained weights ``source``, by
        ``rewind.mode`` (Renda et al. 2020): ``weights`` rewinds the survivors to the rewind point;
        ``lr`` starts from ``source`` ⊙ mask and replays the LR schedule from the rewind step (the
        rewind point's counters, adapter state and RNG, so the level still runs k -> T);
        ``finetune`` starts there too but at the constant ``rewind.finetune_lr`` for the same
        T - k steps. The mode is recorded in metrics.json."""
        mode = self.cfg.rewind.mode
        weights = None if mode == "weights" else source
        lr = self.cfg.rewind.finetune_lr if mode == "finetune" else None
        out = self._train_unit(unit, mask, start=rewind, init_seed=None, weights=weights, monitor=monitor,
                               constant_lr=lr)
        out["__record__"]["retrain_mode"] = mode
        return out

    def _control(self, seed: int, control: str, level: int) -> None:
        unit = Unit(seed, control, level)
        with self._phase("load_inputs"):
            ticket_mask = Mask.load(self.store.unit_dir(Unit(seed, "ticket", level)) / "mask.safetensors")
        spec = CONTROLS[control]
        gen = generator(seed, control, level)
        with self._phase("prune"):
            if spec.mask == "ticket":
                mask = ticket_mask
            elif spec.mask in ("random_layer", "random_global"):
                mask = random_mask_like(ticket_mask, gen, per_layer=spec.mask == "random_layer")
            elif spec.mask == "one_shot":
                _, dense_final = self._load_unit(Unit(seed, "ticket", 0))
                source = dense_final
                mask = self.dense_mask()
                init = self._rewind(seed, self.k).weights if self.spec.needs_init else None
                for _ in range(level):
                    mask = prune(dense_final, mask, self.spec, generator(seed, control, "prune", level), init)
                self._check_planned(mask, level, unit)
            else:
                raise ValueError(f"control '{control}' has no per-level mask rule")
        if mask.num_alive != ticket_mask.num_alive:
            raise RunFailure(f"{unit.relpath()}: control keeps {mask.num_alive} weights, ticket {ticket_mask.num_alive}")
        if spec.start == "fresh":
            record = self._train_unit(unit, mask, start=None, init_seed=derive_seed(seed, control, level, "init"))
        else:
            permute = gen if spec.start == "rewind_permuted" else None
            rewind = self._rewind(seed, self.k)
            if spec.mask == "one_shot":  # a pruned trained network: retrained as rewind.mode says
                record = self._retrain(unit, mask, rewind, source)
            else:
                record = self._train_unit(unit, mask, start=rewind, init_seed=None, permute=permute)
        self._write_unit(unit, mask, record["__record__"])

    def _check_planned(self, mask: Mask, level: int, unit: Unit) -> None:
        planned = self.planned_alive(level)
        if mask.num_alive != planned:
            raise RunFailure(f"{unit.relpath()}: {mask.num_alive} weights alive, {planned} planned")

    def _train_unit(
        self,
        unit: Unit,
        mask: Mask,
        start: RewindPoint | None,
        init_seed: int | None,
        captures: Sequence[int] = (),
        permute: torch.Generator | None = None,
        weights: Mapping[str, torch.Tensor] | None = None,
        monitor: EarlyBirdMonitor | None = None,
        constant_lr: float | None = None,
    ) -> dict[Any, Any]:
        """Build, start (rewound or fresh; or from the unit's latest checkpoint), train to T
        under the mask, evaluate. ``weights`` (a state dict of the prunable root) replaces the
        rewind point's weights while its counters, state and RNG stay (``rewind.mode`` lr and
        finetune); ``constant_lr`` replaces the LR schedule (finetune); ``monitor`` watches the next
        mask (early-bird) and may stop training early."""
        adapter = self.adapter
        with self._phase("build"):
            adapter.build(unit.seed, init_seed)
        module = adapter.module
        restore = None
        # an early-bird monitor's window of masks is not in a checkpoint: such units restart whole
        ckpts = self._checkpoints(unit) if monitor is None else None
        resume = ckpts.latest() if ckpts is not None else None
        with self._phase("restore"):
            if resume is not None:
                # everything, target networks included, is in the checkpoint: no hard copy
                resume.point.restore_weights(module)
                adapter.load_resume_state(resume.point.extra)
                restore = resume.point
            elif start is not None:
                start.restore_weights(module)
                if weights is not None:
                    module.load_state_dict(dict(weights), strict=True)
                adapter.load_state(start.extra)
                if permute is not None:
                    _permute_within_layers(module, self.names, permute)
                if self.cfg.rewind.optimizer == "restore":
                    restore = start
            dense = mask.num_alive == mask.numel
            enforcer = None if dense else MaskEnforcer(module, mask, grads=adapter.grad_masking).attach()
            if resume is None:
                hard_copy_targets(adapter)
            if resume is not None:
                resume.point.restore_rng()
            elif start is not None:
                start.restore_rng()
        begin = start.step if start is not None else 0
        train_from = resume.step if resume is not None else begin
        done_before = resume.captured if resume is not None else {}
        hooks = LevelHooks(adapter, enforcer, train_from, [c for c in captures if c not in done_before], restore,
                           self.reporter)
        hooks.captured.update(done_before)
        prior_seconds = resume.train_seconds if resume is not None else 0.0
        t0 = time.perf_counter()
        if ckpts is not None:
            assert self.cfg.checkpoint is not None
            hooks.checkpoint_every, hooks.stop = self.cfg.checkpoint.every, self.T

            def save_checkpoint(step: int) -> None:
                opts = hooks.optimizers or adapter.optimizers()
                point = RewindPoint.capture(module, step, opts, adapter.resume_state())
                seconds = prior_seconds + time.perf_counter() - t0
                core = {"targeted_dropout": hooks.dropout.generator_states()} if hooks.dropout is not None else {}
                with self._phase("checkpoint"):
                    ckpts.save(Checkpoint(point, dict(hooks.captured), seconds, core))

            hooks.checkpoint = save_checkpoint
            ckpts.clear_temporaries()
        hooks.early_bird = monitor
        td = self._targeted_dropout(unit, module, mask)
        hooks.dropout = td
        if td is not None and resume is not None and "targeted_dropout" in resume.core:
            td.load_generator_states(resume.core["targeted_dropout"])
        adapter.set_constant_lr(constant_lr)
        self.reporter.unit_started(unit, train_from, self.T)
        try:
            adapter.train(train_from, self.T, hooks)
        except StopTraining:
            pass  # the adapter did not poll hooks.should_stop: evaluate the weights as they are
        finally:
            if td is not None:
                td.detach()  # full weights back before anything reads them
            if enforcer is not None:
                enforcer.detach()
        seconds = prior_seconds + time.perf_counter() - t0
        self.phases["train"] = self.phases.get("train", 0.0) + seconds
        if hooks.pending:
            raise RunFailure(f"{unit.relpath()}: training ended before the rewind step {hooks.pending[0]}")
        out: dict[Any, Any] = dict(hooks.captured)
        stop = hooks.stopped_at if hooks.stopped_at is not None else self.T
        out["__record__"] = self._evaluated_record(unit, mask, begin, stop, round(seconds, 3))
        return out

    def _evaluated_record(
        self, unit: Unit, mask: Mask, start_step: int, stop_step: int, seconds: float, **extra: Any
    ) -> dict[str, Any]:
        """Check the weights (exact zeros, finite), evaluate, and build the unit's metrics.json."""
        adapter = self.adapter
        _check_weights(adapter.module, mask, unit)
        with self._phase("evaluate"):
            metrics = adapter.evaluate()
        if adapter.metric not in metrics:
            raise RunFailure(f"adapter returned no '{adapter.metric}' metric")
        return {
            "task": self.cfg.name,
            "domain": self.cfg.domain,
            "seed": unit.seed,
            "control": unit.control,
            "level": unit.level,
            "sparsity": mask.sparsity,
            "planned_sparsity": 1.0 - self.planned_alive(unit.level) / mask.numel,
            "alive": mask.num_alive,
            "prunable": mask.numel,
            **extra,
            "start_step": start_step,
            "stop_step": stop_step,
            "train_seconds": seconds,
            "metric": adapter.metric,
            "higher_is_better": adapter.higher_is_better,
            "metrics": {k: float(v) for k, v in metrics.items()},
            **({"eval_method": adapter.eval_method} if adapter.eval_method else {}),
            **({"notes": notes} if (notes := adapter.notes()) else {}),
        }

    def _write_unit(self, unit: Unit, mask: Mask, record: dict[str, Any],
                    extra: dict[str, dict[str, torch.Tensor]] | None = None) -> None:
        with self._phase("save"):
            self._save_unit(unit, mask, record, extra or {})
        self.reporter.unit_finished(unit, record, skipped=False)

    def _save_unit(self, unit: Unit, mask: Mask, record: dict[str, Any],
                   extra: dict[str, dict[str, torch.Tensor]] | None = None) -> None:
        """``extra``: more state dicts to save next to ``final.safetensors`` (file name -> tensors)."""
        d = self.store.unit_dir(unit)
        self.store.begin(d)
        weights = copy_state_dict(self.adapter.module)
        self.store.write_file(d, "mask.safetensors", mask.save)
        self.store.write_file(d, "final.safetensors", lambda p: save_file(weights, str(p)))
        for name, tensors in (extra or {}).items():
            self.store.write_file(d, name, lambda p, t=tensors: save_file(t, str(p)))
        if unit.level == 0 and (unit.control == "dense_td" or self._prune_only_controls()):
            # what evaluating the dense weights needs besides them (e.g. VecNormalize statistics)
            state = self.adapter.state()
            save_tree(d, "final_state", state)
        self.store.write_file(d, "metrics.json", lambda p: p.write_text(json.dumps(record, indent=1) + "\n"))
        self.adapter.export(d)
        files = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))
        self.store.finish(d, files)


@torch.no_grad()
def _permute_within_layers(module: torch.nn.Module, names: list[str], gen: torch.Generator) -> None:
    params = dict(module.named_parameters())
    for n in names:
        p = params[n]
        flat = p.detach().reshape(-1)
        perm = torch.randperm(flat.numel(), generator=gen).to(flat.device)
        p.copy_(flat[perm].reshape(p.shape))


def _check_weights(module: torch.nn.Module, mask: Mask, unit: Unit) -> None:
    """Guard against silent failures: every pruned entry must be exactly zero, all finite."""
    params = dict(module.named_parameters())
    for n, m in mask.items():
        p = params[n].detach()
        if not bool(torch.isfinite(p).all()):
            raise RunFailure(f"{unit.relpath()}: non-finite values in '{n}' after training")
        if bool((p.cpu()[~m] != 0).any()):
            raise RunFailure(f"{unit.relpath()}: pruned entries of '{n}' are non-zero after training")
