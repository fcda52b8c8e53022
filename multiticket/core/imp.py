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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from multiticket.adapters.base import DomainAdapter
from multiticket.core import scope as scope_mod
from multiticket.core.controls import CONTROLS
from multiticket.core.enforce import MaskEnforcer
from multiticket.core.hooks import LevelHooks, NullReporter, Reporter
from multiticket.core.mask import Mask
from multiticket.core.prune import PruneSpec, planned_alive, prune, random_mask_like
from multiticket.core.rewind import RewindPoint, copy_state_dict
from multiticket.core.seeding import derive_seed, generator
from multiticket.core.store import RunStore, Unit
from multiticket.errors import RunFailure


class IMPRunner:
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
        self.spec = PruneSpec(self.cfg.prune.strategy, self.cfg.prune.rate, self.cfg.prune.rate_of)
        self._rewinds: dict[tuple[int, int], RewindPoint] = {}
        #: wall seconds per phase of the unit in progress / of every unit this runner trained
        self.phases: dict[str, float] = {}
        self.unit_phases: dict[Unit, dict[str, float]] = {}

    # -- preparation -------------------------------------------------------------------------
    def prepare(self, seed: int | None = None) -> None:
        """Build once and resolve the prunable scope (raises UserError on a bad scope)."""
        p = self.cfg.prune
        self.adapter.build(self.cfg.seeds[0] if seed is None else seed)
        module = self.adapter.module
        self.names = scope_mod.select(module, self.adapter.default_prunable(), p.include, p.exclude, p.biases)
        overrides = scope_mod.rate_overrides(self.names, p.rates)
        self.spec = PruneSpec(p.strategy, p.rate, p.rate_of, overrides)
        params = dict(module.named_parameters())
        self.shapes = {n: tuple(params[n].shape) for n in self.names}
        self.sizes = {n: params[n].numel() for n in self.names}

    def dense_mask(self) -> Mask:
        return Mask({n: torch.ones(s, dtype=torch.bool) for n, s in self.shapes.items()})

    def planned_alive(self, level: int) -> int:
        return planned_alive(self.sizes, self.spec, level)

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        if not self.names:
            self.prepare()
        for seed in self.cfg.seeds:
            self.run_seed(seed)

    def run_seed(self, seed: int) -> None:
        """Every unit of one seed, in dependency order (the whole chain in this process)."""
        for planned in unit_plan(self.cfg, [seed]):
            self.run_unit(planned.unit)

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
            for dep in unit_dependencies(unit):
                if not self.unit_done(dep):
                    raise RunFailure(f"{unit.relpath()}: needs {dep.relpath()}, which is not finished")
            t0 = time.perf_counter()
            self.phases = {}
            if unit.level == 0:
                self._dense(unit.seed)
            elif unit.control in ("ticket", "rewind_init"):
                step = self.k if unit.control == "ticket" else 0
                self._chain(unit.seed, unit.control, unit.level, self._rewind(unit.seed, step))
            else:
                self._control(unit.seed, unit.control, unit.level)
            self.phases["unit_total"] = time.perf_counter() - t0
            self.unit_phases[unit] = self.phases
            return self.store.metrics(unit), False

    def unit_done(self, unit: Unit) -> bool:
        return unit_finished(self.store, unit, self.k)

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
            mask = prune(prev_final, prev_mask, self.spec, generator(seed, chain, "prune", level))
        self._check_planned(mask, level, unit)
        record = self._train_unit(unit, mask, start=rewind, init_seed=None)
        self._write_unit(unit, mask, record["__record__"])
        return mask

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
                mask = self.dense_mask()
                for _ in range(level):
                    mask = prune(dense_final, mask, self.spec, generator(seed, control, "prune", level))
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
    ) -> dict[Any, Any]:
        """Build, start (rewound or fresh), train to T under the mask, evaluate."""
        adapter = self.adapter
        with self._phase("build"):
            adapter.build(unit.seed, init_seed)
        module = adapter.module
        restore = None
        with self._phase("restore"):
            if start is not None:
                start.restore_weights(module)
                adapter.load_state(start.extra)
                if permute is not None:
                    _permute_within_layers(module, self.names, permute)
                if self.cfg.rewind.optimizer == "restore":
                    restore = start
            dense = mask.num_alive == mask.numel
            enforcer = None if dense else MaskEnforcer(module, mask).attach()
            _hard_copy_targets(adapter)
            if start is not None:
                start.restore_rng()
        begin = start.step if start is not None else 0
        hooks = LevelHooks(adapter, enforcer, begin, captures, restore, self.reporter)
        self.reporter.unit_started(unit, begin, self.T)
        t0 = time.perf_counter()
        try:
            adapter.train(begin, self.T, hooks)
        finally:
            if enforcer is not None:
                enforcer.detach()
        seconds = time.perf_counter() - t0
        self.phases["train"] = self.phases.get("train", 0.0) + seconds
        if hooks.pending:
            raise RunFailure(f"{unit.relpath()}: training ended before the rewind step {hooks.pending[0]}")
        _check_weights(module, mask, unit)
        with self._phase("evaluate"):
            metrics = adapter.evaluate()
        if adapter.metric not in metrics:
            raise RunFailure(f"adapter returned no '{adapter.metric}' metric")
        out: dict[Any, Any] = dict(hooks.captured)
        out["__record__"] = {
            "task": self.cfg.name,
            "domain": self.cfg.domain,
            "seed": unit.seed,
            "control": unit.control,
            "level": unit.level,
            "sparsity": mask.sparsity,
            "planned_sparsity": 1.0 - self.planned_alive(unit.level) / mask.numel,
            "alive": mask.num_alive,
            "prunable": mask.numel,
            "start_step": begin,
            "stop_step": self.T,
            "train_seconds": round(seconds, 3),
            "metric": adapter.metric,
            "higher_is_better": adapter.higher_is_better,
            "metrics": {k: float(v) for k, v in metrics.items()},
        }
        return out

    def _write_unit(self, unit: Unit, mask: Mask, record: dict[str, Any]) -> None:
        with self._phase("save"):
            self._save_unit(unit, mask, record)
        self.reporter.unit_finished(unit, record, skipped=False)

    def _save_unit(self, unit: Unit, mask: Mask, record: dict[str, Any]) -> None:
        d = self.store.unit_dir(unit)
        self.store.begin(d)
        weights = copy_state_dict(self.adapter.module)
        self.store.write_file(d, "mask.safetensors", mask.save)
        self.store.write_file(d, "final.safetensors", lambda p: save_file(weights, str(p)))
        self.store.write_file(d, "metrics.json", lambda p: p.write_text(json.dumps(record, indent=1) + "\n"))
        self.adapter.export(d)
        files = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))
        self.store.finish(d, files)


# -- the unit graph -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedUnit:
    """A unit and the units it reads (which must be finished before it starts)."""

    unit: Unit
    deps: tuple[Unit, ...]


def unit_dependencies(unit: Unit) -> tuple[Unit, ...]:
    """What a unit reads: the dense level 0 needs nothing; a chain level (``ticket``,
    ``rewind_init``) needs its previous level (level 1 starts from the dense run); every other
    control at level L needs the ticket at L (``one_shot`` also reads the dense final weights).
    Rewind points are written with the dense unit, so depending on it covers them."""
    dense = Unit(unit.seed, "ticket", 0)
    if unit.level == 0:
        return ()
    if unit.control in ("ticket", "rewind_init"):
        return (Unit(unit.seed, unit.control if unit.level > 1 else "ticket", unit.level - 1),)
    ticket = Unit(unit.seed, "ticket", unit.level)
    return (ticket, dense) if unit.control == "one_shot" else (ticket,)


def unit_finished(store: RunStore, unit: Unit, k: int) -> bool:
    """Finished: DONE with valid checksums (and, for level 0, both rewind points 0 and k too)."""
    if not store.is_done(store.unit_dir(unit)):
        return False
    if unit.level == 0:
        return all(store.is_done(store.rewind_dir(unit.seed, s)) for s in sorted({0, k}))
    return True


def unit_plan(cfg: Any, seeds: Sequence[int] | None = None) -> list[PlannedUnit]:
    """Every unit of a task (config ``cfg``) in an order where dependencies come first."""
    out = []
    for seed in cfg.seeds if seeds is None else seeds:
        out.append(PlannedUnit(Unit(seed, "ticket", 0), ()))
        for level in range(1, cfg.prune.levels + 1):
            for control in ["ticket", *cfg.controls]:
                unit = Unit(seed, control, level)
                out.append(PlannedUnit(unit, unit_dependencies(unit)))
    return out


@torch.no_grad()
def _permute_within_layers(module: torch.nn.Module, names: list[str], gen: torch.Generator) -> None:
    params = dict(module.named_parameters())
    for n in names:
        p = params[n]
        flat = p.detach().reshape(-1)
        perm = torch.randperm(flat.numel(), generator=gen).to(flat.device)
        p.copy_(flat[perm].reshape(p.shape))


@torch.no_grad()
def _hard_copy_targets(adapter: DomainAdapter) -> None:
    for online, target in adapter.target_pairs():
        target.load_state_dict(online.state_dict())


def _check_weights(module: torch.nn.Module, mask: Mask, unit: Unit) -> None:
    """Guard against silent failures: every pruned entry must be exactly zero, all finite."""
    params = dict(module.named_parameters())
    for n, m in mask.items():
        p = params[n].detach()
        if not bool(torch.isfinite(p).all()):
            raise RunFailure(f"{unit.relpath()}: non-finite values in '{n}' after training")
        if bool((p.cpu()[~m] != 0).any()):
            raise RunFailure(f"{unit.relpath()}: pruned entries of '{n}' are non-zero after training")
