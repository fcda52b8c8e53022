"""Budget allocators: how a level's pruning budget splits over the layers (``prune.allocator``).

The counting rule (docs/tasks.md) fixes how many live weights a *budget group* loses in a level:
``n = floor(base × rate + 0.5)``, clamped to [1, alive]. An allocator says what a budget group is
and how its ``n`` splits over the group's parameters; the criterion (:mod:`multiticket.core.criteria`)
then says which entries go within each ranking:

- ``global``: the whole scope is one group ranked at once (the LTH's global magnitude pruning);
  the layers' shares are whatever one ranking leaves. With ``prune.criterion: lamp`` this is
  Lee et al. 2021's LAMP (LAMP is a criterion ranked globally, not an allocator).
- ``layerwise``: each parameter is its own group, the counting rule applied to it alone (a
  uniform rate per layer; Frankle & Carbin's layerwise pruning).
- ``erk``: Erdős–Rényi-Kernel (Evci et al. 2020, RigL; Mocanu et al. 2018's Erdős–Rényi with the
  kernel dimensions): the whole scope is one group whose kept count K (its live count minus n)
  splits so that layer l keeps ε·Σ(dims of l) weights -- density ε·(fan_in + fan_out [+ kernel
  dims]) / (fan_in·fan_out [·kernel]) --, ε chosen so the counts sum to K. A layer whose share
  would exceed what it has alive keeps all of it and the others are rescaled, one tie class at a
  time from the largest ratio, as RigL's code does with density 1 (from a dense mask, the two are
  the same). The real shares are rounded by largest remainder (floors first, then one more to the
  largest fractional parts, ties by scope order), so the total is exact. Each parameter is then
  ranked alone at its own count.

Per-pattern rate overrides (``prune.rates``) are always their own groups, pruned layerwise at their
own rate, whatever the allocator. A package adds an allocator through the ``multiticket.allocators``
entry-point group (:mod:`multiticket.core.registry`): an :class:`Allocator` with a ``split``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from multiticket.core.registry import allocators


@dataclass(frozen=True)
class Budget:
    """One budget group of one pruning step: its parameters (scope order), their shapes and live
    counts, and ``n_prune``, the number of live entries the group loses."""

    names: Sequence[str]
    shapes: Mapping[str, tuple[int, ...]]
    alive: Mapping[str, int]
    n_prune: int


#: ``Budget -> {name: entries that parameter loses}`` (summing to ``n_prune``, each within its live count)
Split = Callable[[Budget], dict[str, int]]


@dataclass(frozen=True)
class Allocator:
    """A registered allocator. ``per_tensor``: every parameter is its own budget group (the
    counting rule per layer). ``split``: how a group's count splits over its parameters, each then
    ranked alone; None: one ranking over the whole group."""

    name: str
    doc: str
    per_tensor: bool = False
    split: Split | None = None
    paper: str = ""

    def groups(self, names: Sequence[str]) -> list[list[str]]:
        """The budget groups of ``names`` (the scope without rate overrides)."""
        if not names:
            return []
        return [[n] for n in names] if self.per_tensor else [list(names)]

    def counts(self, budget: Budget) -> dict[str, int] | None:
        """Entries each parameter loses (None: one ranking over the group), checked."""
        if self.split is None:
            return None
        out = self.split(budget)
        if sum(out.values()) != budget.n_prune or any(not 0 <= out.get(n, 0) <= budget.alive[n] for n in budget.names):
            raise ValueError(f"allocator '{self.name}' split {budget.n_prune} into {out}, which breaks the count")
        return {n: out.get(n, 0) for n in budget.names}


def erk_keep(shapes: Mapping[str, tuple[int, ...]], alive: Mapping[str, int], keep: int) -> dict[str, int]:
    """Kept count per parameter, ``keep`` in total: ERK shares ε·Σdims capped at the live count
    (capped layers keep all they have, the rest rescaled), rounded by largest remainder."""
    names = [n for n in shapes if alive[n] > 0]
    weight = {n: sum(shapes[n]) if shapes[n] else 1 for n in names}
    full: set[str] = set()
    while True:
        free = [n for n in names if n not in full]
        eps = Fraction(keep - sum(alive[n] for n in full), sum(weight[n] for n in free) or 1)
        over = [n for n in free if eps * weight[n] > alive[n]]
        if not over:
            break
        worst = max(Fraction(weight[n], alive[n]) for n in over)  # RigL: the densest layers first
        full |= {n for n in over if Fraction(weight[n], alive[n]) == worst}
    share = {n: Fraction(alive[n]) if n in full else eps * weight[n] for n in names}
    out = {n: math.floor(share[n]) for n in names}
    rest = keep - sum(out.values())
    position = {n: i for i, n in enumerate(names)}
    by_remainder = sorted(names, key=lambda n: (-(share[n] - out[n]), position[n]))
    for n in by_remainder[:rest]:
        out[n] += 1
    return {n: out.get(n, 0) for n in shapes}


def _erk_split(budget: Budget) -> dict[str, int]:
    keep = sum(budget.alive[n] for n in budget.names) - budget.n_prune
    kept = erk_keep({n: budget.shapes[n] for n in budget.names}, budget.alive, keep)
    return {n: budget.alive[n] - kept[n] for n in budget.names}


for _allocator in (
    Allocator("global", "one ranking over the whole scope (global magnitude pruning)"),
    Allocator("layerwise", "the counting rule per parameter: a uniform rate per layer", per_tensor=True),
    Allocator("erk", "Erdős–Rényi-Kernel: layer l keeps ∝ fan_in + fan_out (+ kernel dims), capped at its "
              "live count",
              split=_erk_split, paper="Evci et al. 2020, RigL"),
):
    allocators.register(_allocator.name, _allocator)

#: the allocator of each pruning strategy that names no ``prune.allocator``
STRATEGY_ALLOCATOR = {"global_magnitude": "global", "layerwise_magnitude": "layerwise", "random": "global"}
