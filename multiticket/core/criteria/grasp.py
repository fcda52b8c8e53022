"""``grasp``: gradient signal preservation (Wang et al. 2020, "Picking Winning Tickets Before
Training by Preserving Gradient Flow").

GraSP scores S(-θ) = -θ ⊙ Hg (g the loss gradient, H the Hessian, Hg by double backpropagation)
and *removes the weights with the highest S* (the paper's Algorithm 1: τ is the p-th percentile of
S, and m = S < τ keeps the rest; the authors' code removes the top scores): a weight whose removal
reduces the gradient norm least -- or increases it -- goes first. multiticket prunes the lowest
scores first, so ``grasp`` scores -S = θ ⊙ Hg, which removes exactly the weights GraSP removes. g
and Hg are means over the adapter's scoring batches at w_f ⊙ mask (the code's temperature T and
sum over batches only rescale S, which changes no ranking).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from multiticket.core.criteria.base import Criterion, ScoreContext


def _hg(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    probe = ctx.model()
    batches = probe.batches()
    g = ctx.cached("loss_gradient", lambda: probe.loss_gradient(ctx.final, ctx.mask, batches))
    return probe.hessian_gradient(ctx.final, ctx.mask, batches, g)


def _score(ctx: ScoreContext, names: Sequence[str]) -> dict[str, torch.Tensor]:
    hg = ctx.cached("hessian_gradient", lambda: _hg(ctx))
    return {n: ctx.masked(n).double() * hg[n] for n in names}  # -S: GraSP's highest S pruned first


CRITERION = Criterion("grasp", tensor_score=_score, needs_gradients=True,
                      doc="prune the largest GraSP score S = -w ⊙ Hg first (scores -S = w ⊙ Hg)",
                      paper="Wang et al. 2020, GraSP")
