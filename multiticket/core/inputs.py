"""Loading what a recipe names: a unit's mask, start point and pruned-from weights, from the store.

A unit reads its inputs (the previous level's mask and final weights, the ticket's mask, the
rewind points) from the run directory, never from memory, so any process can run any unit whose
dependencies are finished. Random masks and permutations draw from generators derived from the
recipe's ``draws`` (mask first, then permutation, from one generator), so the same unit draws
the same values wherever and whenever it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

import torch
from safetensors.torch import load_file

from multiticket.core.adapter import DomainAdapter
from multiticket.core.criteria.base import Probe
from multiticket.core.criteria.probe import adapter_probe
from multiticket.core.mask import Mask
from multiticket.core.prune import PruneSpec, counted, planned_alive, prune, prune_at_init, random_mask_like, unit_sizes
from multiticket.core.recipe import Recipe
from multiticket.core.rewind import RewindPoint
from multiticket.core.seeding import generator
from multiticket.core.store import RunStore, Unit
from multiticket.core.train import Phases
from multiticket.errors import RunFailure


@dataclass
class Scope:
    """The prunable parameters of a run: names in model order, shapes, sizes, the pruning rule."""

    names: list[str]
    shapes: dict[str, tuple[int, ...]]
    spec: PruneSpec
    sizes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.sizes:
            self.sizes = {n: int(torch.Size(s).numel()) for n, s in self.shapes.items()}

    def dense_mask(self) -> Mask:
        return Mask({n: torch.ones(s, dtype=torch.bool) for n, s in self.shapes.items()})


class StartProvider(Protocol):
    """Where a run's tickets come from when it did not find them itself (a transfer run)."""

    def planned_alive(self, level: int) -> int: ...
    def mask(self, seed: int, level: int) -> Mask: ...
    def start(self, seed: int, adapter: DomainAdapter) -> RewindPoint: ...


@dataclass
class Inputs:
    """A recipe's inputs, loaded: the mask, the start point (None: a fresh build), the trained
    weights the mask was pruned from (the start of ``rewind.mode`` lr/finetune), and the
    generator a permuted start shuffles with (after the random mask drew from it)."""

    mask: Mask
    start: RewindPoint | None = None
    pruned_from: Mapping[str, torch.Tensor] | None = None
    permute: torch.Generator | None = None


class UnitInputs:
    """Loads recipes' inputs from one run directory; keeps the rewind points of the seed last used."""

    def __init__(self, store: RunStore, adapter: DomainAdapter, scope: Scope,
                 provider: StartProvider | None = None) -> None:
        self.store = store
        self.adapter = adapter
        self.scope = scope
        self.provider = provider
        self._rewinds: dict[tuple[int, int], RewindPoint] = {}
        self._starts: dict[int, RewindPoint] = {}

    def planned_alive(self, level: int) -> int:
        """Weights alive at ``level`` by the counting rule (a transfer run: the transferred mask's);
        under ``prune.structure``, its units (neurons, heads: :meth:`alive`)."""
        if self.provider is not None:
            return self.provider.planned_alive(level)
        return planned_alive(unit_sizes(self.scope.shapes, self.scope.spec), self.scope.spec, level)

    def alive(self, mask: Mask) -> int:
        """What :meth:`planned_alive` counts of ``mask``: its live weights, or its live units."""
        if self.provider is not None or self.scope.spec.structure == "weights":
            return mask.num_alive
        return sum(counted(mask, self.scope.spec)[0].values())

    def planned_weights(self, level: int, mask: Mask) -> int:
        """The weights ``level`` plans to keep (``planned_sparsity``); under a structure, the
        count depends on which neurons go, so it is ``mask``'s once its neurons are the plan's."""
        if self.provider is not None or self.scope.spec.structure == "weights":
            return self.planned_alive(level)
        return mask.num_alive

    def remember(self, seed: int, points: dict[int, RewindPoint]) -> None:
        """The rewind points a dense unit just captured (the next levels need them)."""
        self._rewinds = {(seed, s): p for s, p in points.items()}

    def rewind(self, seed: int, step: int, phases: Phases) -> RewindPoint:
        """A stored rewind point, cached for the seed last used (levels reuse it)."""
        key = (seed, step)
        if key not in self._rewinds:
            with phases.timed("load_inputs"):
                point = RewindPoint.load(self.store.rewind_dir(seed, step))
            self._rewinds = {k: v for k, v in self._rewinds.items() if k[0] == seed}
            self._rewinds[key] = point
        return self._rewinds[key]

    def start(self, recipe: Recipe, phases: Phases) -> RewindPoint | None:
        """The recipe's start point: None for a fresh build."""
        seed = recipe.unit.seed
        if recipe.start == "fresh":
            return None
        if recipe.start == "rewind" and self.provider is not None:
            if seed not in self._starts:
                with phases.timed("load_inputs"):
                    self._starts = {seed: self.provider.start(seed, self.adapter)}
            return self._starts[seed]
        return self.rewind(seed, recipe.step, phases)

    def init_weights(self, recipe: Recipe, phases: Phases) -> dict[str, torch.Tensor] | None:
        """The rewind-point weights an init-reading mask criterion ranks against (None when the
        task's criterion reads none, or the recipe's chain has no rewind point)."""
        if recipe.init_step is None or not self.scope.spec.needs_init:
            return None
        return self.rewind(recipe.unit.seed, recipe.init_step, phases).weights

    def probe(self, seed: int, spec: PruneSpec) -> Probe | None:
        """The model a data- or gradient-reading criterion scores with (None for the others);
        a one-line UserError when the domain offers no scoring batches or forward."""
        ranking = spec.ranking
        return adapter_probe(self.adapter, seed, ranking) if ranking is not None else None

    def unit_files(self, unit: Unit, phases: Phases) -> tuple[Mask, dict[str, torch.Tensor]]:
        """A finished unit's mask and final weights."""
        d = self.store.unit_dir(unit)
        with phases.timed("load_inputs"):
            return Mask.load(d / "mask.safetensors"), load_file(str(d / "final.safetensors"))

    def load(self, recipe: Recipe, phases: Phases,
             searched: tuple[Mask, Mapping[str, torch.Tensor]] | None = None) -> Inputs:
        """The recipe's mask (checked against the counts it must keep) and start. ``searched``:
        for an early-bird level, the previous mask and the weights its search stopped at."""
        start = self.start(recipe, phases) if recipe.start in ("rewind", "stored_rewind") else None
        inputs = self._mask(recipe, phases, searched)
        inputs.start = start
        return inputs

    def _check_planned(self, recipe: Recipe, mask: Mask) -> None:
        """A pruned mask keeps exactly the count the counting rule plans for its level."""
        if not recipe.check_planned:
            return
        planned, alive = self.planned_alive(recipe.unit.level), self.alive(mask)
        engine = self.scope.spec.engine if self.provider is None else None
        what = "weights" if engine is None else engine.unit
        if alive != planned:
            raise RunFailure(f"{recipe.unit.relpath()}: {alive} {what} alive, {planned} planned")
        partial = engine.partial(mask) if engine is not None else None
        if partial is not None:
            raise RunFailure(f"{recipe.unit.relpath()}: '{partial}' has a unit ({what}) neither kept nor pruned whole")

    def _mask(self, recipe: Recipe, phases: Phases,
              searched: tuple[Mask, Mapping[str, torch.Tensor]] | None) -> Inputs:
        unit, kind = recipe.unit, recipe.mask
        if kind == "dense":
            return Inputs(self.scope.dense_mask())
        if kind == "transferred":
            assert self.provider is not None, "a transferred mask needs a transfer run"
            with phases.timed("load_inputs"):
                return Inputs(self.provider.mask(unit.seed, unit.level))
        if kind in ("prune", "early_bird"):
            if kind == "prune":
                assert recipe.source is not None
                searched = self.unit_files(recipe.source, phases)
            assert searched is not None, "an early-bird level needs its search's weights"
            prev_mask, weights = searched
            init = self.init_weights(recipe, phases)
            with phases.timed("prune"):
                mask = prune(weights, prev_mask, self.scope.spec, generator(*recipe.prune_draws), init,
                             self.probe(unit.seed, self.scope.spec))
            self._check_planned(recipe, mask)
            return Inputs(mask, None, weights)
        return self._control_mask(recipe, phases)

    def _control_mask(self, recipe: Recipe, phases: Phases) -> Inputs:
        """A control's mask, from the ticket's at this level, at exactly its count."""
        unit, kind = recipe.unit, recipe.mask
        assert recipe.source is not None
        ticket_dir = self.store.unit_dir(Unit(unit.seed, "ticket", unit.level))
        ticket_mask = None
        if recipe.match_ticket:
            with phases.timed("load_inputs"):
                ticket_mask = Mask.load(ticket_dir / "mask.safetensors")
        gen = generator(*recipe.draws) if recipe.draws is not None else None
        with phases.timed("prune"):
            if kind == "one_shot":
                out = self._one_shot(recipe, phases)
            elif kind == "pai":
                out = self._pai(recipe, phases)
            elif kind == "ticket":
                assert ticket_mask is not None
                out = Inputs(ticket_mask)
            else:
                assert ticket_mask is not None and gen is not None
                out = Inputs(self._random_mask(ticket_mask, gen, kind == "random_layer"))
        self._check_planned(recipe, out.mask)
        if ticket_mask is not None and self.alive(out.mask) != self.alive(ticket_mask):
            raise RunFailure(f"{unit.relpath()}: control keeps {self.alive(out.mask)}, "
                             f"ticket {self.alive(ticket_mask)}")
        out.permute = gen if recipe.permute else None
        return out

    def _random_mask(self, ticket: Mask, gen: torch.Generator, per_layer: bool) -> Mask:
        """Random positions at the ticket's counts; under a structure, random units (neurons,
        heads: the engine's ``random_like``, :mod:`multiticket.core.structure`)."""
        engine = self.scope.spec.engine
        if engine is None:
            return random_mask_like(ticket, gen, per_layer=per_layer)
        return Mask(engine.random_like(ticket, gen, per_layer))

    def _one_shot(self, recipe: Recipe, phases: Phases) -> Inputs:
        """``source``'s final weights pruned straight to this level's count (each of the level's
        pruning rounds from a generator of the same parts, as the counting rule was pinned)."""
        assert recipe.source is not None
        _, final = self.unit_files(recipe.source, phases)
        init = self.init_weights(recipe, phases)
        probe = self.probe(recipe.unit.seed, self.scope.spec)
        mask = self.scope.dense_mask()
        for _ in range(recipe.unit.level):
            mask = prune(final, mask, self.scope.spec, generator(*recipe.prune_draws), init, probe)
        return Inputs(mask, None, final)

    def _pai(self, recipe: Recipe, phases: Phases) -> Inputs:
        """Pruning at initialization: the recipe's start point (θ_k, or θ_0) pruned by its criterion
        (and allocator, by default the task's) straight to this level's counts, the task's budget
        groups and counting rule (so the count is the ticket's)."""
        assert recipe.criterion is not None, "a pai mask names its criterion"
        task, names = self.scope.spec, self.scope.names
        spec = replace(task, strategy="global_magnitude", criterion=recipe.criterion,
                       allocator=recipe.allocator or task.allocator_name)
        if [g for g, _ in spec.groups(names)] != [g for g, _ in task.groups(names)]:
            raise RunFailure(f"control '{recipe.unit.control}': allocator '{spec.allocator_name}' splits the budget "
                             f"into other groups than the task's '{task.allocator_name}' (its count would not be "
                             "the ticket's)")
        start = self.rewind(recipe.unit.seed, recipe.step, phases)
        mask = prune_at_init(start.weights, self.scope.dense_mask(), spec, recipe.unit.level,
                             generator(*recipe.prune_draws), self.probe(recipe.unit.seed, spec))
        return Inputs(mask)
