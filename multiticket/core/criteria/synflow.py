"""``synflow``: iterative synaptic flow pruning (Tanaka et al. 2020, "Pruning neural networks
without any data by iteratively conserving synaptic flow").

Data-free: every parameter is replaced by its absolute value and R = 1ᵀ(Π_l |W_l|)1 is the summed
output of the network on one all-ones input; the score of a weight is |dR/dw ⊙ w|. For a network
without biases this is exactly the paper's R; like the authors' code, the biases (and the rest of
the state dict) enter as their absolute values too. Pruning at initialization takes 100 rounds
with an exponential schedule (round r keeps a fraction d^(r/100) of the weights, d the final
density; :func:`multiticket.core.prune.prune_at_init`), rescoring at each round's mask; an IMP
level prunes in one round.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from multiticket.core.criteria.base import Criterion, ScoreContext

#: the paper's number of pruning rounds at initialization
ROUNDS = 100


def _score(ctx: ScoreContext, names: Sequence[str]) -> dict[str, torch.Tensor]:
    probe = ctx.model()
    grad = ctx.cached("ones_gradient", lambda: probe.ones_gradient(ctx.final, ctx.mask))
    return {n: (grad[n] * ctx.masked(n).double()).abs() for n in names}


CRITERION = Criterion("synflow", tensor_score=_score, needs_ones=True, init_rounds=ROUNDS,
                      doc="keep the largest synaptic flow |dR/dw ⊙ w|, R = 1ᵀ(Π|W|)1 (data-free)",
                      paper="Tanaka et al. 2020, SynFlow")
