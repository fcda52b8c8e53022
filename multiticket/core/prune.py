"""Pruning strategies as pure functions: (weights, mask, spec) -> new mask.

Counting rule (exact, documented in docs/tasks.md): a group of parameters with ``alive`` live
entries out of ``total`` loses ``n = floor(base * rate + 0.5)`` entries (rounded half up), where
``base`` is ``alive`` (``rate_of: remaining``, the LTH default) or ``total`` (``rate_of: original``,
BERT-Tickets style), clamped to ``[1, alive]`` while any entry is alive. A group is the whole scope
for global strategies, one parameter for layerwise ones, and one parameter for every parameter
matched by a per-pattern rate override (those are always pruned layerwise at their own rate).

Ranking is by the task's mask criterion (``prune.criterion``, :mod:`multiticket.core.criteria`;
default ``large_final``: |w| of the given final weights) among live entries, or uniformly random
for the ``random`` strategy; the lowest scores are pruned, ties broken by position (the earlier
parameter in scope order, then the lower flat index, is pruned first), so masks are identical
across reruns and processes. The strategy decides the scope (global or layerwise), the criterion
the score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from multiticket.core.criteria import DEFAULT as DEFAULT_CRITERION
from multiticket.core.mask import Mask
from multiticket.core.registry import criteria
from multiticket.errors import UserError

STRATEGIES = ("global_magnitude", "layerwise_magnitude", "random")


@dataclass(frozen=True)
class PruneSpec:
    """How one IMP level prunes. ``overrides`` maps parameter name -> its own rate; ``criterion``
    names a registered mask criterion (unused by the ``random`` strategy)."""

    strategy: str = "global_magnitude"
    rate: float = 0.2
    rate_of: str = "remaining"
    overrides: Mapping[str, float] = field(default_factory=dict)
    criterion: str = DEFAULT_CRITERION

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy '{self.strategy}' (known: {', '.join(STRATEGIES)})")
        if not 0 < self.rate < 1:
            raise ValueError(f"rate must be in (0, 1), got {self.rate}")
        if self.rate_of not in ("remaining", "original"):
            raise ValueError(f"rate_of must be 'remaining' or 'original', got '{self.rate_of}'")
        criteria.lookup(self.criterion)

    @property
    def needs_init(self) -> bool:
        """True when ranking reads the rewind-point weights (an init-based criterion)."""
        return self.strategy != "random" and criteria[self.criterion].needs_init

    def groups(self, names: list[str]) -> list[tuple[list[str], float]]:
        """Partition of ``names`` into groups ranked together, each with its rate."""
        own = [([n], self.overrides[n]) for n in names if n in self.overrides]
        rest = [n for n in names if n not in self.overrides]
        if self.strategy == "layerwise_magnitude":
            shared = [([n], self.rate) for n in rest]
        else:
            shared = [(rest, self.rate)] if rest else []
        return own + shared


def prune_count(alive: int, total: int, rate: float, rate_of: str = "remaining") -> int:
    """How many live entries a group loses in one level (see module docstring)."""
    if alive <= 0:
        return 0
    base = alive if rate_of == "remaining" else total
    return min(alive, max(1, math.floor(base * rate + 0.5)))


def planned_alive(sizes: Mapping[str, int], spec: PruneSpec, level: int) -> int:
    """Live entries after ``level`` levels, from the counting rule alone (no weights needed)."""
    alive_total = 0
    for names, rate in spec.groups(list(sizes)):
        total = sum(sizes[n] for n in names)
        alive = total
        for _ in range(level):
            alive -= prune_count(alive, total, rate, spec.rate_of)
        alive_total += alive
    return alive_total


def planned_sparsity(sizes: Mapping[str, int], spec: PruneSpec, level: int) -> float:
    total = sum(sizes.values())
    return 1.0 - planned_alive(sizes, spec, level) / total if total else 0.0


def _flat(tensors: Mapping[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    return torch.cat([tensors[n].detach().reshape(-1).float().cpu() for n in names])


def _live_scores(weights: Mapping[str, torch.Tensor], init: Mapping[str, torch.Tensor] | None, names: list[str],
                 live_idx: torch.Tensor, spec: PruneSpec, generator: torch.Generator | None) -> torch.Tensor:
    """Scores of a group's live entries (in scope order): random draws, or the criterion's."""
    if spec.strategy == "random":
        if generator is None:
            raise ValueError("the random strategy needs a torch.Generator")
        return torch.cat([torch.rand(weights[n].numel(), generator=generator) for n in names])[live_idx]
    criterion = criteria[spec.criterion]
    w_init = _flat(init, names)[live_idx] if init is not None and criterion.needs_init else None
    return criterion(w_init, _flat(weights, names)[live_idx])


def prune(
    weights: Mapping[str, torch.Tensor],
    mask: Mask,
    spec: PruneSpec,
    generator: torch.Generator | None = None,
    init: Mapping[str, torch.Tensor] | None = None,
) -> Mask:
    """The mask of the next level: ``mask`` minus the lowest-ranked live entries of each group.
    ``weights`` are the final weights the level prunes; ``init`` the chain's rewind-point weights,
    required by the criteria that read them (UserError when there are none)."""
    if init is None and spec.needs_init:
        raise UserError(f"prune.criterion: '{spec.criterion}' needs the rewind-point weights, "
                        "which this pruning step does not have")
    names = list(mask)
    new = {n: mask[n].clone() for n in names}
    for group, rate in spec.groups(names):
        alive = torch.cat([mask[n].reshape(-1).cpu() for n in group])
        live_idx = alive.nonzero().squeeze(1)
        scores = _live_scores(weights, init, group, live_idx, spec, generator)  # draws even when none is pruned
        n_prune = prune_count(int(alive.sum()), alive.numel(), rate, spec.rate_of)
        if n_prune == 0:
            continue
        order = torch.sort(scores, stable=True).indices
        drop = live_idx[order[:n_prune]]
        flat_alive = alive.clone()
        flat_alive[drop] = False
        offset = 0
        for n in group:
            k = new[n].numel()
            new[n] = flat_alive[offset:offset + k].reshape(new[n].shape)
            offset += k
    return Mask(new)


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
