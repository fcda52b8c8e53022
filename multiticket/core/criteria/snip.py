"""``snip``: connection sensitivity (Lee et al. 2019, "SNIP: Single-shot Network Pruning based on
Connection Sensitivity"), score |g ⊙ w|.

With auxiliary gates c on the connections (w ⊙ c), SNIP's saliency is |dL/dc_j| at c = 1, which is
|g_j w_j| for g = dL/dw, the loss gradient at the scored weights; the paper keeps the top-κ
saliencies over one minibatch (its normalisation by the sum changes no ranking). Here g is the
mean gradient over the adapter's scoring batches at w_f ⊙ mask (the current mask plays c), and the
lowest |g ⊙ w| are pruned.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from multiticket.core.criteria.base import Criterion, ScoreContext


def _score(ctx: ScoreContext, names: Sequence[str]) -> dict[str, torch.Tensor]:
    probe = ctx.model()
    g = ctx.cached("loss_gradient", lambda: probe.loss_gradient(ctx.final, ctx.mask, probe.batches()))
    return {n: (g[n] * ctx.masked(n).double()).abs() for n in names}


CRITERION = Criterion("snip", tensor_score=_score, needs_gradients=True,
                      doc="keep the largest connection sensitivity |g ⊙ w| (g: loss gradient on scoring batches)",
                      paper="Lee et al. 2019, SNIP")
