"""Pruning as pure functions: (weights, mask, spec[, model]) -> new mask.

Counting rule (exact, documented in docs/tasks.md): a budget group of parameters with ``alive``
live entries out of ``total`` loses ``n = floor(base * rate + 0.5)`` entries (rounded half up),
where ``base`` is ``alive`` (``rate_of: remaining``, the LTH default) or ``total`` (``rate_of:
original``, BERT-Tickets style), clamped to ``[1, alive]`` while any entry is alive. The budget
allocator (``prune.allocator``, :mod:`multiticket.core.criteria.allocators`; default: the
strategy's, ``global`` or ``layerwise``) says what a budget group is (the whole scope, or each
parameter) and how its ``n`` splits over the group's parameters (ERK); every parameter matched by a
per-pattern rate override is its own group at its own rate, whatever the allocator.

Ranking is by the task's mask criterion (``prune.criterion``, :mod:`multiticket.core.criteria`;
default ``large_final``: |w| of the given final weights) among live entries, or uniformly random
for the ``random`` strategy; the lowest scores are pruned, ties broken by position (the earlier
parameter in scope order, then the lower flat index, is pruned first), so masks are identical
across reruns and processes. :func:`prune` is one IMP level; :func:`prune_at_init` prunes a
network at its rewind point straight to a level's counts (pruning at initialization), in the
criterion's number of rounds (SynFlow: 100, on an exponential schedule).

Under ``structure: neurons`` (:mod:`multiticket.core.structure`) the same rule counts neurons (rows
of the structured weights) instead of entries: groups, counts and ties as above, one row at a time.
Under ``structure: heads`` (:mod:`multiticket.core.structure_units`) it counts attention heads and
feed-forward neurons, each kind in budget groups of its own (the allocator's groups within a kind);
under ``structure: units`` LSTM hidden units, the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from multiticket.core import structure as structure_mod
from multiticket.core.criteria import DEFAULT as DEFAULT_CRITERION
from multiticket.core.criteria.allocators import STRATEGY_ALLOCATOR, Allocator, Budget
from multiticket.core.criteria.base import Criterion, Probe, ScoreContext
from multiticket.core.mask import Mask
from multiticket.core.registry import allocators, criteria
from multiticket.core.structure_units import Layout
from multiticket.errors import UserError

STRATEGIES = tuple(STRATEGY_ALLOCATOR)


@dataclass(frozen=True)
class PruneSpec:
    """How one IMP level prunes. ``overrides`` maps parameter name -> its own rate; ``criterion``
    names a registered mask criterion (unused by the ``random`` strategy); ``allocator`` a
    registered budget allocator (None: the strategy's); ``structure`` what one pruned unit is
    (``weights``, ``neurons`` or ``heads``: :mod:`multiticket.core.structure`), ``keep`` the
    parameters a structure never prunes (the output layers), and ``layout`` the adapter's unit
    families of a structure that needs them (:class:`multiticket.core.structure_units.Layout`)."""

    strategy: str = "global_magnitude"
    rate: float = 0.2
    rate_of: str = "remaining"
    overrides: Mapping[str, float] = field(default_factory=dict)
    criterion: str = DEFAULT_CRITERION
    allocator: str | None = None
    structure: str = "weights"
    keep: tuple[str, ...] = ()
    layout: Layout | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy '{self.strategy}' (known: {', '.join(STRATEGIES)})")
        if not 0 < self.rate < 1:
            raise ValueError(f"rate must be in (0, 1), got {self.rate}")
        if self.rate_of not in ("remaining", "original"):
            raise ValueError(f"rate_of must be 'remaining' or 'original', got '{self.rate_of}'")
        criteria.lookup(self.criterion)
        allocators.lookup(self.allocator_name)
        if self.strategy == "layerwise_magnitude" and self.allocator not in (None, "layerwise"):
            raise ValueError(f"allocator '{self.allocator}' contradicts the layerwise_magnitude strategy")
        if self.structure not in structure_mod.STRUCTURES:
            raise ValueError(f"unknown structure '{self.structure}' (known: {', '.join(structure_mod.STRUCTURES)})")
        if self.structure != "weights" and allocators[self.allocator_name].split is not None:
            raise ValueError(f"allocator '{self.allocator_name}' splits a budget of weights by layer shape, not "
                             f"{self.structure}")
        if structure_mod.STRUCTURES[self.structure].units and self.layout is None:
            raise ValueError(f"structure '{self.structure}' needs the adapter's unit layout (structure.resolve)")

    @property
    def engine(self) -> structure_mod.Engine | None:
        """What prunes under the structure (None: single weights)."""
        return structure_mod.engine(self.structure, self.keep, self.layout)

    @property
    def allocator_name(self) -> str:
        return self.allocator or STRATEGY_ALLOCATOR[self.strategy]

    @property
    def ranking(self) -> Criterion | None:
        """The criterion that ranks (None: the ``random`` strategy's draws)."""
        return None if self.strategy == "random" else criteria[self.criterion]

    @property
    def needs_init(self) -> bool:
        """True when ranking reads the rewind-point weights (an init-based criterion)."""
        ranking = self.ranking
        return ranking is not None and ranking.needs_init

    @property
    def needs_model(self) -> bool:
        """True when ranking reads the model's batches or gradients (SNIP, GraSP, SynFlow)."""
        ranking = self.ranking
        return ranking is not None and ranking.needs_model

    def groups(self, names: list[str]) -> list[tuple[list[str], float]]:
        """Partition of ``names`` into budget groups, each with its rate (overrides first)."""
        own = [([n], self.overrides[n]) for n in names if n in self.overrides]
        rest = [n for n in names if n not in self.overrides]
        engine = self.engine
        kinds = engine.kinds(rest) if engine is not None else [rest]
        return own + [(g, self.rate) for kind in kinds for g in allocators[self.allocator_name].groups(kind)]


def prune_count(alive: int, total: int, rate: float, rate_of: str = "remaining") -> int:
    """How many live entries a group loses in one level (see module docstring)."""
    if alive <= 0:
        return 0
    base = alive if rate_of == "remaining" else total
    return min(alive, max(1, math.floor(base * rate + 0.5)))


def alive_after(total: int, rate: float, rate_of: str, level: int) -> int:
    """A budget group's live count after ``level`` levels of the counting rule, from dense."""
    alive = total
    for _ in range(level):
        alive -= prune_count(alive, total, rate, rate_of)
    return alive


def counted(mask: Mapping[str, torch.Tensor], spec: PruneSpec) -> tuple[dict[str, int], dict[str, int]]:
    """(live, total) per rankable parameter in the spec's units: entries of every parameter, or
    the structure's units (neurons of the structured weights, heads of a layer:
    :mod:`multiticket.core.structure`)."""
    engine = spec.engine
    if engine is None:
        return {n: int(m.sum()) for n, m in mask.items()}, {n: m.numel() for n, m in mask.items()}
    return engine.alive(mask), engine.sizes({n: tuple(m.shape) for n, m in mask.items()})


def unit_sizes(shapes: Mapping[str, tuple[int, ...]], spec: PruneSpec) -> dict[str, int]:
    """What the counting rule plans with: entries per parameter, or the structure's units per
    structured weight (neurons) or family (heads)."""
    engine = spec.engine
    if engine is None:
        return {n: math.prod(s) for n, s in shapes.items()}
    return engine.sizes(shapes)


def planned_alive(sizes: Mapping[str, int], spec: PruneSpec, level: int) -> int:
    """Live entries (of ``sizes``' units: :func:`unit_sizes`) after ``level`` levels, from the
    counting rule alone (no weights needed)."""
    return sum(alive_after(sum(sizes[n] for n in names), rate, spec.rate_of, level)
               for names, rate in spec.groups(list(sizes)))


def planned_sparsity(sizes: Mapping[str, int], spec: PruneSpec, level: int) -> float:
    total = sum(sizes.values())
    return 1.0 - planned_alive(sizes, spec, level) / total if total else 0.0


def _live_scores(ctx: ScoreContext, spec: PruneSpec, names: list[str], live_idx: torch.Tensor,
                 generator: torch.Generator | None) -> torch.Tensor:
    """Scores of a ranking group's live entries (in scope order): random draws, or the criterion's."""
    ranking = spec.ranking
    if ranking is None:
        if generator is None:
            raise ValueError("the random strategy needs a torch.Generator")
        return torch.cat([torch.rand(ctx.final[n].numel(), generator=generator) for n in names])[live_idx]
    return ranking.group_scores(ctx, names, live_idx)


def _drop(ctx: ScoreContext, spec: PruneSpec, names: list[str], n_prune: int, new: dict[str, torch.Tensor],
          generator: torch.Generator | None) -> None:
    """Prune the ``n_prune`` lowest-ranked live entries of one ranking group (into ``new``)."""
    alive = torch.cat([ctx.mask[n].reshape(-1).cpu() for n in names])
    live_idx = alive.nonzero().squeeze(1)
    scores = _live_scores(ctx, spec, names, live_idx, generator)  # draws even when none is pruned
    if n_prune == 0:
        return
    order = torch.sort(scores, stable=True).indices
    flat_alive = alive.clone()
    flat_alive[live_idx[order[:n_prune]]] = False
    offset = 0
    for n in names:
        k = new[n].numel()
        new[n] = flat_alive[offset:offset + k].reshape(new[n].shape)
        offset += k


def _apply(ctx: ScoreContext, spec: PruneSpec, plan: list[tuple[list[str], int]],
           generator: torch.Generator | None) -> Mask:
    """The mask after each budget group of ``plan`` lost its count (split by the allocator; under a
    structure, the group's lowest-ranked neurons)."""
    engine = spec.engine
    if engine is not None:
        return Mask(engine.drop(ctx, spec.ranking, plan, generator))
    allocator: Allocator = allocators[spec.allocator_name]
    new = {n: ctx.mask[n].clone() for n in ctx.mask}
    for group, n_prune in plan:
        alive = {n: int(ctx.mask[n].sum()) for n in group}
        counts = allocator.counts(Budget(group, {n: tuple(ctx.mask[n].shape) for n in group}, alive, n_prune)) \
            if len(group) > 1 else None
        if counts is None:
            _drop(ctx, spec, group, n_prune, new, generator)
            continue
        for n in group:
            _drop(ctx, spec, [n], counts[n], new, generator)
    return Mask(new)


def _context(weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], spec: PruneSpec,
             init: Mapping[str, torch.Tensor] | None, probe: Probe | None) -> ScoreContext:
    """The context a pruning step's criterion reads; refuses (one line) what the step lacks."""
    if init is None and spec.needs_init:
        raise UserError(f"prune.criterion: '{spec.criterion}' needs the rewind-point weights, "
                        "which this pruning step does not have")
    if probe is None and spec.needs_model:
        raise UserError(f"prune.criterion: '{spec.criterion}' needs the model's scoring batches or gradients, "
                        "which this pruning step does not have")
    return ScoreContext(weights, mask, init, probe if spec.needs_model else None, spec.criterion)


def prune(
    weights: Mapping[str, torch.Tensor],
    mask: Mask,
    spec: PruneSpec,
    generator: torch.Generator | None = None,
    init: Mapping[str, torch.Tensor] | None = None,
    probe: Probe | None = None,
) -> Mask:
    """The mask of the next level: ``mask`` minus the lowest-ranked live entries of each group.
    ``weights`` are the final weights the level prunes; ``init`` the chain's rewind-point weights,
    required by the criteria that read them; ``probe`` the model, required by the criteria that
    read batches or gradients (UserError when either is missing)."""
    ctx = _context(weights, mask, spec, init, probe)
    alive, total = counted(mask, spec)
    plan = []
    for group, rate in spec.groups(list(alive)):
        plan.append((group, prune_count(sum(alive[n] for n in group), sum(total[n] for n in group), rate,
                                        spec.rate_of)))
    return _apply(ctx, spec, plan, generator)


def schedule(total: int, start: int, target: int, rounds: int, r: int) -> int:
    """Live count after round ``r`` of ``rounds`` (1-based) on the exponential schedule from
    ``start`` live of ``total`` down to ``target``: round r keeps density d^(r/rounds) of
    ``total`` (d = target / total, SynFlow's schedule), rounded half up, never above ``start`` or
    below ``target``; the last round keeps exactly ``target``."""
    if r >= rounds or total == 0:
        return target
    kept = math.floor(total * (target / total) ** (r / rounds) + 0.5)
    return max(target, min(start, kept))


def prune_at_init(
    weights: Mapping[str, torch.Tensor],
    mask: Mask,
    spec: PruneSpec,
    level: int,
    generator: torch.Generator | None = None,
    probe: Probe | None = None,
    rounds: int | None = None,
) -> Mask:
    """Prune ``weights`` (a network at its rewind point, also the criterion's w_i) from ``mask``
    (dense) straight to level ``level``'s counts, each budget group to its counting-rule count,
    in ``rounds`` rounds (default: the criterion's ``init_rounds``), rescoring at each round's mask."""
    _, total = counted(mask, spec)
    groups = spec.groups(list(total))
    targets = [alive_after(sum(total[n] for n in g), rate, spec.rate_of, level) for g, rate in groups]
    ranking = spec.ranking
    rounds = rounds or (ranking.init_rounds if ranking is not None else 1)
    for r in range(1, rounds + 1):
        ctx = _context(weights, mask, spec, weights, probe)
        live, _ = counted(mask, spec)
        plan = []
        for (group, _), target in zip(groups, targets):
            alive = sum(live[n] for n in group)
            size = sum(total[n] for n in group)
            plan.append((group, alive - schedule(size, alive, target, rounds, r)))
        mask = _apply(ctx, spec, plan, generator)
    return mask


def random_mask_like(reference: Mask, generator: torch.Generator, per_layer: bool = True) -> Mask:
    """A mask with the reference's live counts, at uniformly random positions: per parameter
    (``per_layer``) or over the whole scope (only the total count is kept)."""
    if per_layer:
        out = {}
        for n, ref in reference.items():
            k = int(ref.sum())
            flat = torch.zeros(ref.numel(), dtype=torch.bool)
            flat[torch.randperm(ref.numel(), generator=generator)[:k]] = True
            out[n] = flat.reshape(ref.shape)
        return Mask(out)
    total, k = reference.numel, reference.num_alive
    flat = torch.zeros(total, dtype=torch.bool)
    flat[torch.randperm(total, generator=generator)[:k]] = True
    out, offset = {}, 0
    for n, ref in reference.items():
        out[n] = flat[offset:offset + ref.numel()].reshape(ref.shape)
        offset += ref.numel()
    return Mask(out)
