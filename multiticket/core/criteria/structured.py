"""``l1_norm`` and ``l2_norm``: the norm of each neuron's weights, for ``prune.structure: neurons``.

A context criterion (:mod:`multiticket.core.criteria.base`) whose score of an entry is the norm
of its row (dim-0 slice: a Linear layer's output neuron, a Conv layer's output channel) of the
final weights w_f ⊙ mask: Li et al. 2017 ("Pruning Filters for Efficient ConvNets") rank filters
by their L1 norm, He et al. 2018 (soft filter pruning) by their L2 norm. Under a structure every
entry of a row scores the same, so the row's score (the mean over its live entries,
:mod:`multiticket.core.structure`) is exactly its norm. Unlike ``large_final`` (mean |w| per
row: the L1 norm over the fan-in) a raw norm grows with the fan-in, so a ``global`` ranking over
layers of different widths favours the wider layers' neurons; ``layerwise`` ranks each layer
alone, where both agree. Under ``prune.structure: weights`` the criterion still counts entries:
it prunes the entries of the lowest-norm rows first, in position order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from multiticket.core.criteria.base import Criterion, ScoreContext


def row_norms(weights: torch.Tensor, p: int) -> torch.Tensor:
    """Each entry replaced by the p-norm of its row (a 1-D tensor: each entry its own row), float64."""
    w = weights.detach().to("cpu", torch.float64)
    if w.dim() < 2:
        return w.abs()
    norms = torch.linalg.vector_norm(w.reshape(w.shape[0], -1), ord=p, dim=1)
    return norms.reshape((w.shape[0],) + (1,) * (w.dim() - 1)).expand(w.shape).clone()


def _l1(ctx: ScoreContext, names: Sequence[str]) -> dict[str, torch.Tensor]:
    return {n: row_norms(ctx.masked(n), 1) for n in names}


def _l2(ctx: ScoreContext, names: Sequence[str]) -> dict[str, torch.Tensor]:
    return {n: row_norms(ctx.masked(n), 2) for n in names}


L1_NORM = Criterion("l1_norm", tensor_score=_l1, doc="keep the neurons (rows) of largest L1 norm of w_f",
                    paper="Li et al. 2017, Pruning Filters for Efficient ConvNets")
L2_NORM = Criterion("l2_norm", tensor_score=_l2, doc="keep the neurons (rows) of largest L2 norm of w_f",
                    paper="He et al. 2018, Soft Filter Pruning")
