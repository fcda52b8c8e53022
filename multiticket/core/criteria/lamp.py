"""``lamp``: layer-adaptive magnitude-based pruning (Lee et al. 2021, "Layer-adaptive Sparsity for
the Magnitude-based Pruning").

Within each parameter, sort the live weights by magnitude ascending (ties by position) and score
weight u by w_u² / Σ_{v ≥ u} w_v² (its square over the squares of itself and every larger weight
of its layer); the largest weight of a layer scores 1, so every layer keeps at least one weight.
The paper then prunes the lowest LAMP scores *globally*: LAMP is this criterion with the
``global`` allocator, and its per-layer budget is what that one ranking leaves in each layer
(hence a criterion here, not an allocator). Within one layer the score is monotone in |w|, so
with the ``layerwise`` allocator it prunes what ``large_final`` prunes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from multiticket.core.criteria.base import Criterion, ScoreContext


def lamp_scores(weights: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """The LAMP score of each live entry of one parameter (0 for pruned entries), in float64."""
    w2 = weights.detach().reshape(-1).to("cpu", torch.float64) ** 2
    live = alive.reshape(-1).cpu().bool()
    out = torch.zeros_like(w2)
    idx = live.nonzero().squeeze(1)
    if idx.numel() == 0:
        return out.reshape(weights.shape)
    order = torch.sort(w2[idx], stable=True).indices
    sorted_w2 = w2[idx][order]
    suffix = torch.flip(torch.cumsum(torch.flip(sorted_w2, [0]), 0), [0])  # Σ_{v >= u} w_v²
    ratio = torch.where(suffix > 0, sorted_w2 / suffix.clamp_min(torch.finfo(torch.float64).tiny),
                        torch.zeros_like(sorted_w2))
    out[idx[order]] = ratio
    return out.reshape(weights.shape)


def _score(ctx: ScoreContext, names: Sequence[str]) -> dict[str, torch.Tensor]:
    return {n: lamp_scores(ctx.final[n], ctx.mask[n]) for n in names}


CRITERION = Criterion("lamp", tensor_score=_score,
                      doc="keep the largest LAMP score w_u² / Σ_{v≥u} w_v² (per layer; ranked globally)",
                      paper="Lee et al. 2021, LAMP")
