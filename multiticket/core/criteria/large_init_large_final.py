"""``large_init_large_final``: keep the weights large both at the rewind point and at the end.

Zhou et al. keep the intersection of two masks: the top p % of |w_i| and the top p % of |w_f|.
That intersection keeps fewer than p % of the weights, so it cannot follow multiticket's exact
counting rule. As a ranking, each live entry scores the *lower* of its two ranks (its rank by
|w_i| and by |w_f| among the group's live entries, ascending, ties by position): the entries kept
are then exactly the intersection {rank_i > t} ∩ {rank_f > t} for the threshold t at which that
intersection holds the count the rule keeps (entries tied at t go by position), i.e. the paper's
selection with its percentile chosen so that the count is exact.
"""

from __future__ import annotations

import torch

from multiticket.core.criteria.base import Criterion, ranks


def _score(init: torch.Tensor | None, final: torch.Tensor) -> torch.Tensor:
    assert init is not None
    return torch.minimum(ranks(init.abs()), ranks(final.abs()))


CRITERION = Criterion("large_init_large_final", _score, needs_init=True,
                      doc="keep the weights large in both |w_i| and |w_f| (lower of the two ranks)")
