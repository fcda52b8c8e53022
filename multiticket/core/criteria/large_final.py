"""``large_final``: keep the weights of largest final magnitude, score |w_f| (the LTH's magnitude
pruning and multiticket's default, what ``global_magnitude`` / ``layerwise_magnitude`` always did)."""

from __future__ import annotations

import torch

from multiticket.core.criteria.base import Criterion


def _score(init: torch.Tensor | None, final: torch.Tensor) -> torch.Tensor:
    return final.abs()


CRITERION = Criterion("large_final", _score, needs_init=False, doc="keep the largest |w_f|")
