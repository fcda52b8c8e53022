"""What a mask criterion is: a pure score over the live weights of one pruning group.

Zhou et al. 2019 ("Deconstructing Lottery Tickets") compare mask criteria that keep the weights
with the highest score of the *initial* weights w_i and the *final* weights w_f. Here w_i is the
chain's rewind point (the weights at step k; step 0 for ``rewind_init``) and w_f the weights the
level prunes (the previous level's final weights). The pruning step (:func:`multiticket.core.prune.prune`)
removes the live entries with the lowest scores, as many as the counting rule says, ties broken
by position; so a criterion only scores, and every criterion keeps the exact count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

#: ``(w_i or None, w_f) -> score``: 1-D float tensors of a group's live entries in scope order
Score = Callable[[torch.Tensor | None, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Criterion:
    """A registered mask criterion; the entries with the lowest ``score`` are pruned first."""

    name: str
    score: Score
    #: True when ``score`` reads the initial (rewind-point) weights
    needs_init: bool
    doc: str

    def __call__(self, init: torch.Tensor | None, final: torch.Tensor) -> torch.Tensor:
        if self.needs_init and init is None:
            raise ValueError(f"criterion '{self.name}' needs the initial weights")
        return self.score(init, final)


def ranks(values: torch.Tensor) -> torch.Tensor:
    """Rank of each entry in ascending order (0 = smallest), ties broken by position."""
    order = torch.sort(values, stable=True).indices
    out = torch.empty_like(order)
    out[order] = torch.arange(values.numel())
    return out
